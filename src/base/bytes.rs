//! A bounded little-endian cursor over a byte slice.
//!
//! Every read checks the remaining length first and reports the absolute offset where it
//! failed, so parsers built on it can never read past a buffer or panic on truncated input.

/// Reading past the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected end of data at byte offset {offset}: needed {needed} bytes, {available} left")]
pub struct CursorError {
    /// Absolute offset (buffer base + position) of the failed read.
    pub offset: u64,
    /// Bytes requested.
    pub needed: u64,
    /// Bytes that were left.
    pub available: u64,
}

/// A cursor over `data`, whose position 0 corresponds to absolute offset `base`.
#[derive(Clone, Debug)]
pub struct ByteCursor<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> ByteCursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        ByteCursor {
            data,
            pos: 0,
            base: 0,
        }
    }
    /// A cursor whose offsets are reported relative to `base`.
    pub fn with_base(data: &'a [u8], base: u64) -> Self {
        ByteCursor { data, pos: 0, base }
    }
    /// Position within `data`.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Absolute offset of the position.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    /// The whole underlying slice.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Move to `pos` (must be within the buffer).
    pub fn seek(&mut self, pos: usize) -> Result<(), CursorError> {
        if pos > self.data.len() {
            return Err(CursorError {
                offset: self.base + pos as u64,
                needed: 0,
                available: 0,
            });
        }
        self.pos = pos;
        Ok(())
    }
    /// Take `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], CursorError> {
        let avail = self.remaining() as u64;
        if n > avail {
            return Err(CursorError {
                offset: self.offset(),
                needed: n,
                available: avail,
            });
        }
        let n = n as usize;
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Skip `n` bytes.
    pub fn skip(&mut self, n: u64) -> Result<(), CursorError> {
        self.take(n).map(|_| ())
    }
    /// Take exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CursorError> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// Read a u8.
    pub fn u8(&mut self) -> Result<u8, CursorError> {
        Ok(self.array::<1>()?[0])
    }
    /// Read a little-endian u16.
    pub fn u16_le(&mut self) -> Result<u16, CursorError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Read a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32, CursorError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Read a little-endian i32.
    pub fn i32_le(&mut self) -> Result<i32, CursorError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    /// Read a little-endian u64.
    pub fn u64_le(&mut self) -> Result<u64, CursorError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Read a protobuf/LEB128 varint (at most 10 bytes).
    pub fn varint(&mut self) -> Result<u64, CursorError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CursorError {
            offset: self.offset(),
            needed: 1,
            available: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bounded_reads() {
        let d = [1u8, 0, 0, 0, 0xff];
        let mut c = ByteCursor::with_base(&d, 100);
        assert_eq!(c.u32_le().unwrap(), 1);
        assert_eq!(c.offset(), 104);
        let e = c.u16_le().unwrap_err();
        assert_eq!(
            e,
            CursorError {
                offset: 104,
                needed: 2,
                available: 1
            }
        );
        assert!(c.take(u64::MAX).is_err());
        assert_eq!(c.u8().unwrap(), 0xff);
        assert!(c.is_empty());
        assert_eq!(ByteCursor::new(&[0x96, 0x01]).varint().unwrap(), 150);
        assert!(ByteCursor::new(&[0xff; 11]).varint().is_err());
    }
}
