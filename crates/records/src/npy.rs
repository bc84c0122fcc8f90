//! The one reader of `.npy` arrays (images, latents, tensor conditions): float32, little-endian,
//! C order, every value finite. The header is parsed and the bytes its shape claims compared
//! with the bytes the file holds before anything is allocated for the values, so a 200-byte
//! file whose header claims 1e11 images is refused, not read.
//!
//! ```
//! let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
//! let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
//! bytes.extend((header.len() as u16).to_le_bytes());
//! bytes.extend(header.bytes());
//! bytes.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
//! let array = bitsearch_records::npy::from_bytes(&bytes)?;
//! assert_eq!((array.shape, array.values), (vec![2], vec![1.5, -2.0]));
//! # Ok::<(), bitsearch_records::RecordError>(())
//! ```

use crate::error::{RecordError, Result};
use std::path::Path;

/// A float32 array: its shape and its values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Largest file of images or latents read: 16 GiB, some 5000 images of 3×512×512, past any
/// set a command scores or starts from.
pub const MAX_ARRAY_BYTES: u64 = 16 << 30;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Most dimensions an array may have (numpy's own limit).
const MAX_RANK: usize = 64;
/// Longest header read: numpy writes well under 200 bytes.
const MAX_HEADER_BYTES: usize = 1 << 16;

/// The array `bytes` hold, as an `.npy` file; errors name the part of the file at fault
/// (`header`, `descr`, `shape`, `values[2, 0]`).
pub fn from_bytes(bytes: &[u8]) -> Result<Npy> {
    if !bytes.starts_with(MAGIC) || bytes.len() < MAGIC.len() + 2 {
        return Err(field("header", "not an .npy file (no \\x93NUMPY magic)"));
    }
    let length_bytes = match bytes[MAGIC.len()] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(field("header", format!("version {v} is not one of .npy's 1, 2 and 3"))),
    };
    let start = MAGIC.len() + 2 + length_bytes;
    let length = bytes.get(MAGIC.len() + 2..start).ok_or_else(|| field("header", "the file ends inside it"))?;
    let length = length.iter().rev().fold(0usize, |n, &b| (n << 8) | usize::from(b));
    if length > MAX_HEADER_BYTES {
        return Err(field("header", format!("{length} bytes long, more than {MAX_HEADER_BYTES}")));
    }
    let header = bytes.get(start..start + length).ok_or_else(|| field("header", "the file ends inside it"))?;
    let header = std::str::from_utf8(header).map_err(|_| field("header", "not text"))?;
    let descr = quoted(entry(header, "descr")?).ok_or_else(|| field("descr", "not a quoted type"))?;
    if descr != "<f4" {
        return Err(field("descr", format!("'{descr}' is not little-endian float32 ('<f4')")));
    }
    if !entry(header, "fortran_order")?.starts_with("False") {
        return Err(field("fortran_order", "only C-order arrays are read (fortran_order: False)"));
    }
    let shape = shape(entry(header, "shape")?)?;
    // Checked before the values are looked at: the size of the non-empty dimensions must be
    // addressable, and the bytes the shape claims must be the bytes that follow the header.
    let nonzero = shape.iter().filter(|&&d| d > 0).try_fold(4u64, |n, &d| n.checked_mul(d as u64));
    let Some(nonzero) = nonzero.filter(|&n| n <= isize::MAX as u64) else {
        return Err(field("shape", format!("{shape:?}: the sizes multiply past what memory can address")));
    };
    let needed = if shape.contains(&0) { 0 } else { nonzero };
    let data = &bytes[start + length..];
    if needed != data.len() as u64 {
        return Err(field(
            "shape",
            format!("{shape:?} needs {needed} bytes of float32 values; the file holds {}", data.len()),
        ));
    }
    let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(field(format!("values{:?}", unravel(at, &shape)), format!("{} is not finite", values[at])));
    }
    Ok(Npy { shape, values })
}

fn field(field: impl Into<String>, message: impl Into<String>) -> RecordError {
    RecordError::field(field, message)
}

/// The array in the `.npy` file at `path`, a file of at most `max_bytes`; errors name the file.
pub fn read(path: &Path, max_bytes: u64) -> Result<Npy> {
    let bytes = crate::read_bounded(path, max_bytes, ".npy array")?;
    from_bytes(&bytes).map_err(|e| RecordError::file(path, e.to_string()))
}

/// The text after `'key':` in the header's dict.
fn entry<'h>(header: &'h str, key: &str) -> Result<&'h str> {
    let missing = || field(key, "missing from the header");
    let at = [format!("'{key}'"), format!("\"{key}\"")]
        .iter()
        .find_map(|k| header.find(k.as_str()).map(|at| at + k.len()))
        .ok_or_else(missing)?;
    header[at..].trim_start().strip_prefix(':').map(str::trim_start).ok_or_else(missing)
}

/// The string a value starts with, in single or double quotes.
fn quoted(value: &str) -> Option<&str> {
    let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &value[1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// A shape tuple: `(3, 32)`, `(3,)`, `()`.
fn shape(value: &str) -> Result<Vec<usize>> {
    let Some((inside, _)) = value.strip_prefix('(').and_then(|v| v.split_once(')')) else {
        return Err(field("shape", "not a tuple of sizes"));
    };
    let bad = || field("shape", format!("'({inside})' is not a tuple of sizes"));
    let shape = inside
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    if shape.len() > MAX_RANK {
        return Err(field("shape", format!("{} dimensions, more than {MAX_RANK}", shape.len())));
    }
    Ok(shape)
}

/// The index in `shape` of the `flat`-th value in C order.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = flat % d;
        flat /= d;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_seeds_read_back() {
        for seed in crate::fuzz_seed_files("npy") {
            let array = from_bytes(&std::fs::read(&seed).unwrap()).unwrap();
            assert_eq!(array.values.len(), array.shape.iter().product::<usize>(), "{}", seed.display());
        }
    }

    fn npy(header: &str, values: &[f32]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
        bytes.extend(header.bytes());
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    }

    fn header(shape: &str) -> String {
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
    }

    fn refused(bytes: &[u8]) -> String {
        from_bytes(bytes).unwrap_err().to_string()
    }

    #[test]
    fn float32_arrays_are_read_in_c_order() {
        let array = from_bytes(&npy(&header("(2, 3)"), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])).unwrap();
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.values[4], 4.0);
        assert_eq!(from_bytes(&npy(&header("()"), &[7.0])).unwrap().shape, Vec::<usize>::new());
        assert_eq!(from_bytes(&npy(&header("(0, 3)"), &[])).unwrap().values.len(), 0);
    }

    #[test]
    fn a_header_claiming_more_than_the_file_holds_is_refused_before_allocating() {
        // 1e11 images of 3×64×64: 4.9 TB claimed by a 200-byte file.
        let message = refused(&npy(&header("(100000000000, 3, 64, 64)"), &[0.0; 8]));
        assert!(message.starts_with("shape: [100000000000, 3, 64, 64] needs 4915200000000000 bytes"), "{message}");
        for huge in ["(18446744073709551615, 2)", "(0, 18446744073709551615)"] {
            assert!(refused(&npy(&header(huge), &[])).contains("past what memory can address"), "{huge}");
        }
        assert!(refused(&npy(&header("(2,)"), &[1.0, 2.0, 3.0])).contains("the file holds 12"));
    }

    #[test]
    fn other_types_layouts_and_damaged_headers_are_named() {
        let cases = [
            (npy(&header("(2,)").replace("<f4", "<f8"), &[1.0, 2.0, 3.0, 4.0]), "descr: '<f8'"),
            (npy(&header("(2,)").replace("False", "True"), &[1.0, 2.0]), "fortran_order:"),
            (npy(&header("(2, x)"), &[1.0, 2.0]), "shape: '(2, x)"),
            (npy("{'descr': '<f4', 'fortran_order': False}", &[1.0]), "shape: missing"),
            (b"\x93NUMPY\x01\x00\xff\xff{".to_vec(), "header: the file ends inside it"),
            (b"PK\x03\x04".to_vec(), "header: not an .npy file"),
        ];
        for (bytes, expected) in cases {
            assert!(refused(&bytes).starts_with(expected), "{expected}: {}", refused(&bytes));
        }
    }

    #[test]
    fn the_first_value_that_is_not_finite_is_named_by_its_index() {
        let message = refused(&npy(&header("(2, 3)"), &[0.0, 1.0, 2.0, 3.0, f32::NAN, f32::INFINITY]));
        assert_eq!(message, "values[1, 1]: NaN is not finite");
    }
}
