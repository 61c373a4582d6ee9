//! Bounded decoding of GGUF strings and metadata values.
//!
//! Why every length is checked twice: a GGUF header is untrusted input whose u64 lengths and
//! counts size allocations. Each one is compared with its named cap (`base::limits`, ggml's
//! values) and with the bytes actually left in the file BEFORE anything is allocated, so a
//! 100-byte file declaring a 2^60-element array costs nothing and reports where it lies.

use super::constants::ValueType;
use super::error::{GgufError, Result};
use super::value::{ArrayValue, Value};
use crate::base::limits::{GGUF_MAX_ARRAY_ELEMS, GGUF_MAX_STRING_LEN};
use crate::base::{ByteCursor, CursorError};
use std::path::Path;

/// A cursor over a whole file that turns every failure into a [`GgufError`] naming the file.
pub(crate) struct Parser<'a> {
    pub(crate) path: &'a Path,
    pub(crate) cur: ByteCursor<'a>,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        Parser {
            path,
            cur: ByteCursor::new(bytes),
        }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.cur.offset()
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> u64 {
        self.cur.remaining() as u64
    }

    pub(crate) fn truncated(&self, e: CursorError, what: &str) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset: e.offset,
            needed: e.needed,
            available: e.available,
        }
    }

    pub(crate) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        self.cur.take(n).map_err(|e| self.truncated(e, what))
    }
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        self.cur.u8().map_err(|e| self.truncated(e, what))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        self.cur.u32_le().map_err(|e| self.truncated(e, what))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        self.cur.u64_le().map_err(|e| self.truncated(e, what))
    }

    /// A declared count must be at most `cap` and at most what `remaining` bytes can hold at
    /// `min_size` bytes per item.
    pub(crate) fn check_count(
        &self,
        what: &str,
        at: u64,
        count: u64,
        cap: u64,
        min_size: u64,
    ) -> Result<()> {
        let fit = self.remaining() / min_size.max(1);
        let (limit, why) = if cap <= fit {
            (cap, "cap")
        } else {
            (fit, "bytes present")
        };
        if count > limit {
            return Err(GgufError::CountTooLarge {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: at,
                count,
                limit,
                why,
            });
        }
        Ok(())
    }

    /// A GGUF string: u64 length (at most 1 GiB and the bytes left), then UTF-8 bytes.
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let at = self.offset();
        let len = self.u64(what)?;
        let limit = GGUF_MAX_STRING_LEN.min(self.remaining());
        if len > limit {
            return Err(GgufError::StringTooLong {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: at,
                len,
                limit,
            });
        }
        let body_at = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::BadUtf8 {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: body_at,
            }),
        }
    }

    /// A value type id.
    pub(crate) fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.offset();
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::BadValueType {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset: at,
            id,
        })
    }

    fn bool(&mut self, what: &str) -> Result<bool> {
        let at = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::BadBool {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: at,
                byte,
            }),
        }
    }

    /// One value of type `ty`.
    pub(crate) fn value(&mut self, ty: ValueType, what: &str) -> Result<Value> {
        macro_rules! le {
            ($t:ty, $v:ident) => {{
                let b = self.take(std::mem::size_of::<$t>() as u64, what)?;
                Value::$v(<$t>::from_le_bytes(b.try_into().unwrap_or_default()))
            }};
        }
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(what)?),
            ValueType::I8 => le!(i8, I8),
            ValueType::U16 => le!(u16, U16),
            ValueType::I16 => le!(i16, I16),
            ValueType::U32 => le!(u32, U32),
            ValueType::I32 => le!(i32, I32),
            ValueType::F32 => le!(f32, F32),
            ValueType::Bool => Value::Bool(self.bool(what)?),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => Value::Array(self.array(what)?),
            ValueType::U64 => le!(u64, U64),
            ValueType::I64 => le!(i64, I64),
            ValueType::F64 => le!(f64, F64),
        })
    }

    /// An array: u32 element type (not ARRAY), u64 count (capped), elements.
    fn array(&mut self, what: &str) -> Result<ArrayValue> {
        let at = self.offset();
        let ety = self.value_type(what)?;
        if ety == ValueType::Array {
            return Err(GgufError::NestedArray {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: at,
            });
        }
        let count_at = self.offset();
        let n = self.u64(what)?;
        self.check_count(
            &format!("{what}: array count"),
            count_at,
            n,
            GGUF_MAX_ARRAY_ELEMS,
            ety.min_size(),
        )?;
        macro_rules! fixed {
            ($t:ty, $v:ident) => {{
                const W: usize = std::mem::size_of::<$t>();
                let bytes = self.take(n * W as u64, what)?;
                ArrayValue::$v(
                    bytes
                        .chunks_exact(W)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
            }};
        }
        Ok(match ety {
            ValueType::U8 => ArrayValue::U8(self.take(n, what)?.to_vec()),
            ValueType::I8 => fixed!(i8, I8),
            ValueType::U16 => fixed!(u16, U16),
            ValueType::I16 => fixed!(i16, I16),
            ValueType::U32 => fixed!(u32, U32),
            ValueType::I32 => fixed!(i32, I32),
            ValueType::F32 => fixed!(f32, F32),
            ValueType::U64 => fixed!(u64, U64),
            ValueType::I64 => fixed!(i64, I64),
            ValueType::F64 => fixed!(f64, F64),
            ValueType::Bool => {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.bool(what)?);
                }
                ArrayValue::Bool(v)
            }
            ValueType::String | ValueType::Array => {
                // Strings are pushed as parsed (no capacity from the declared count): each one
                // costs at least 8 bytes of file, so memory stays proportional to the input.
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.string(what)?);
                }
                ArrayValue::Str(v)
            }
        })
    }
}
