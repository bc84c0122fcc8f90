//! Support for the fuzz targets (`make fuzz`): a record whose pages were changed gets the
//! checksum of its new pages, so that mutations reach the Parquet decoder and the field checks
//! the checksum otherwise stops them in front of.

/// Writes the sha256 of the pages of `bytes` over the checksum its footer stores, in place (the
/// footer keeps its length). False when the bytes are not laid out as a record with a checksum.
pub fn reseal_parquet(bytes: &mut [u8]) -> bool {
    let Some((pages, footer)) = crate::parts(bytes) else { return false };
    let checksum = bitsearch_types::sha256_hex(&bytes[pages]);
    let footer = &mut bytes[footer];
    let key = crate::PAGES_SHA256_KEY.as_bytes();
    let Some(at) = footer.windows(key.len()).rposition(|w| w == key) else { return false };
    // Thrift compact: the key, then the value's field header (0x18: field 2, binary), its
    // length (64) and the hex digits.
    let value = at + key.len();
    match footer.get_mut(value..value + 66) {
        Some([0x18, 0x40, digits @ ..]) => {
            digits.copy_from_slice(checksum.as_bytes());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::table::tests::{meta, row};
    use crate::{SensitivityTable, Shard};
    use std::path::Path;

    #[test]
    fn a_resealed_table_passes_the_checksum_and_reaches_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let table = SensitivityTable { meta: meta(Shard::WHOLE), rows: vec![row(0, 12.5)] };
        table.write(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(SensitivityTable::from_bytes(&bytes, Path::new("t")).unwrap(), table);
        bytes[50] ^= 0x08;
        let refused = |bytes: &[u8]| SensitivityTable::from_bytes(bytes, Path::new("t")).err().map(|e| e.to_string());
        assert!(refused(&bytes).is_some_and(|m| m.contains("do not match their checksum")));
        assert!(super::reseal_parquet(&mut bytes));
        assert!(refused(&bytes).is_none_or(|m| !m.contains("checksum")), "{:?}", refused(&bytes));
        assert!(!super::reseal_parquet(&mut b"PAR1 not a table PAR1".to_vec()));
    }

    /// Crashes the fuzz targets found, kept in `fuzz/regressions/TARGET/`: each is refused with an
    /// error now (before its fix, this test process aborted).
    #[test]
    fn the_fuzz_regressions_are_refused() {
        let folders = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
        for (target, sealed) in [("table", false), ("table_sealed", true)] {
            for file in std::fs::read_dir(folders.join(target)).unwrap() {
                let path = file.unwrap().path();
                let mut bytes = std::fs::read(&path).unwrap();
                if sealed {
                    super::reseal_parquet(&mut bytes);
                }
                let refused = SensitivityTable::from_bytes(&bytes, &path).unwrap_err().to_string();
                assert!(refused.contains("damaged Parquet file") && refused.contains("claim"), "{refused}");
            }
        }
    }
}
