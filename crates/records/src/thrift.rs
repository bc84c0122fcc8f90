//! A walk over a Parquet footer (one struct in Thrift's compact encoding) that checks every count
//! in it against the bytes left. polars' footer reader makes room for a list by the count it
//! reads, before reading an element: a forged count (the `table` fuzz target found one) asked for
//! gigabytes, which aborts a process rather than failing.

/// Deepest nesting of structs and containers a footer may use (Parquet's own is a handful).
const MAX_DEPTH: usize = 32;

/// Whether every list, set, map and binary value of the struct in `footer` claims no more
/// elements or bytes than remain after it; the error says where one did not.
pub(crate) fn counts_fit(footer: &[u8]) -> Result<(), String> {
    Walk { bytes: footer, at: 0 }.fields(0)
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.left() {
            return Err(format!("footer byte {}: {n} bytes claimed, {} left", self.at, self.left()));
        }
        self.at += n as usize;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| format!("footer ends at byte {}", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("footer byte {}: a varint longer than 10 bytes", self.at))
    }

    /// A count of `size` elements of at least one byte each.
    fn count(&mut self, size: u64) -> Result<(), String> {
        if size > self.left() {
            return Err(format!("footer byte {}: {size} elements claimed, {} bytes left", self.at, self.left()));
        }
        Ok(())
    }

    /// Fields up to the struct's stop byte.
    fn fields(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("footer byte {}: nested deeper than {MAX_DEPTH}", self.at));
        }
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            // A zero delta means the field id follows in full.
            if header >> 4 == 0 {
                self.varint()?;
            }
            self.value(header & 0x0f, depth)?;
        }
    }

    /// One value of compact type `kind` (a field's: booleans live in the field header).
    fn value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        match kind {
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let header = self.byte()?;
                let size = match u64::from(header >> 4) {
                    15 => self.varint()?,
                    size => size,
                };
                self.count(size)?;
                for _ in 0..size {
                    self.element(header & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                self.count(size.saturating_mul(2))?;
                for _ in 0..size {
                    self.element(types >> 4, depth + 1)?;
                    self.element(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.fields(depth + 1),
            other => Err(format!("footer byte {}: no Thrift type {other}", self.at)),
        }
    }

    /// One element of a container: a boolean there takes a byte of its own.
    fn element(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        match kind {
            1 | 2 => self.skip(1),
            kind => self.value(kind, depth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counts_fit;

    #[test]
    fn counts_past_the_bytes_left_are_refused() {
        // Field 1, a list of 3 i32s (1, 2, 3), stop.
        assert_eq!(counts_fit(&[0x19, 0x35, 2, 4, 6, 0]), Ok(()));
        // The same list claiming 2^31 elements (size 15: the count follows as a varint).
        let forged = [0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x08, 2, 4, 6, 0];
        assert!(counts_fit(&forged).unwrap_err().contains("2147483648 elements claimed"));
        // A string claiming more bytes than there are.
        assert!(counts_fit(&[0x18, 0x7f, b'a', 0]).unwrap_err().contains("127 bytes claimed"));
        // Structs nested past the limit, and a footer cut short.
        assert!(counts_fit(&[0x1c; 40]).unwrap_err().contains("nested deeper"));
        assert!(counts_fit(&[0x15]).unwrap_err().contains("footer ends"));
    }
}
