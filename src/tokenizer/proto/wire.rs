//! The protobuf wire format, read field by field over a bounded cursor: tags, varints, fixed
//! widths and length-delimited payloads, each checked against the bytes present, each error
//! at its absolute byte offset.

use crate::base::ByteCursor;

/// A wire-level or schema-level problem, with the absolute byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte offset {offset}: {reason}")]
pub struct ProtoError {
    /// Absolute offset in the file.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

pub(super) fn err(offset: u64, reason: impl Into<String>) -> ProtoError {
    ProtoError {
        offset,
        reason: reason.into(),
    }
}

/// The value of one protobuf field, by wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2 (strings, bytes, embedded messages, packed arrays).
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl WireValue<'_> {
    fn wire_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "fixed64",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "fixed32",
        }
    }
}

/// One field: its number, the offset of its tag, the offset of its value, and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    /// Field number (>= 1).
    pub number: u32,
    /// Absolute offset of the tag.
    pub offset: u64,
    /// Absolute offset of the payload (after the length prefix for length-delimited fields).
    pub value_offset: u64,
    /// The payload.
    pub value: WireValue<'a>,
}

/// Iterates the fields of one message held in a byte slice.
pub struct FieldReader<'a> {
    cur: ByteCursor<'a>,
}

impl<'a> FieldReader<'a> {
    /// A reader over `data`, which starts at absolute offset `base` in the file.
    pub fn new(data: &'a [u8], base: u64) -> Self {
        FieldReader {
            cur: ByteCursor::with_base(data, base),
        }
    }

    /// The next field, or `None` at the end of the message. Groups (wire types 3/4, deprecated
    /// and never written by SentencePiece) and wire types 6/7 are errors.
    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, ProtoError> {
        if self.cur.is_empty() {
            return Ok(None);
        }
        let offset = self.cur.offset();
        let tag = self
            .cur
            .varint()
            .map_err(|e| err(e.offset, "truncated or overlong field tag"))?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(err(offset, format!("invalid field number {number}")));
        }
        let number = number as u32;
        let wire = (tag & 7) as u8;
        let value = match wire {
            0 => WireValue::Varint(self.cur.varint().map_err(|e| {
                err(
                    e.offset,
                    format!("field {number}: truncated or overlong varint"),
                )
            })?),
            1 => WireValue::Fixed64(
                self.cur
                    .u64_le()
                    .map_err(|e| err(e.offset, format!("field {number}: truncated fixed64")))?,
            ),
            2 => {
                let len_off = self.cur.offset();
                let len = self
                    .cur
                    .varint()
                    .map_err(|e| err(e.offset, format!("field {number}: truncated length")))?;
                let avail = self.cur.remaining() as u64;
                if len > avail {
                    return Err(err(
                        len_off,
                        format!("field {number}: declared length {len} exceeds the {avail} bytes left in the enclosing message"),
                    ));
                }
                let value_offset = self.cur.offset();
                let data = self
                    .cur
                    .take(len)
                    .map_err(|e| err(e.offset, format!("field {number}: truncated payload")))?;
                return Ok(Some(Field {
                    number,
                    offset,
                    value_offset,
                    value: WireValue::Bytes(data),
                }));
            }
            5 => WireValue::Fixed32(
                self.cur
                    .u32_le()
                    .map_err(|e| err(e.offset, format!("field {number}: truncated fixed32")))?,
            ),
            3 | 4 => {
                return Err(err(
                    offset,
                    format!("field {number}: protobuf groups (wire type {wire}) are not supported"),
                ))
            }
            _ => {
                return Err(err(
                    offset,
                    format!("field {number}: invalid wire type {wire}"),
                ))
            }
        };
        let value_offset = offset; // scalar: report the tag position
        Ok(Some(Field {
            number,
            offset,
            value_offset,
            value,
        }))
    }
}

impl<'a> Field<'a> {
    fn wrong(&self, want: &str, msg: &str) -> ProtoError {
        err(
            self.offset,
            format!(
                "{msg} field {}: expected {want}, found {}",
                self.number,
                self.value.wire_name()
            ),
        )
    }
    /// The varint payload, or a wire-type error naming `msg`.
    pub fn varint(&self, msg: &str) -> Result<u64, ProtoError> {
        match self.value {
            WireValue::Varint(v) => Ok(v),
            _ => Err(self.wrong("varint", msg)),
        }
    }
    /// The payload as `int32`/enum (protobuf truncates the varint to its low 32 bits).
    pub fn int32(&self, msg: &str) -> Result<i32, ProtoError> {
        Ok(self.varint(msg)? as u32 as i32)
    }
    /// The payload as `bool`.
    pub fn boolean(&self, msg: &str) -> Result<bool, ProtoError> {
        Ok(self.varint(msg)? != 0)
    }
    /// The payload as `float` (bit pattern kept).
    pub fn float(&self, msg: &str) -> Result<f32, ProtoError> {
        match self.value {
            WireValue::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(self.wrong("fixed32", msg)),
        }
    }
    /// The length-delimited payload, at most `cap` bytes.
    pub fn bytes(&self, msg: &str, cap: u64) -> Result<&'a [u8], ProtoError> {
        match self.value {
            WireValue::Bytes(b) if b.len() as u64 > cap => Err(err(
                self.value_offset,
                format!(
                    "{msg} field {}: {} bytes exceeds the cap of {cap}",
                    self.number,
                    b.len()
                ),
            )),
            WireValue::Bytes(b) => Ok(b),
            _ => Err(self.wrong("length-delimited", msg)),
        }
    }
    /// The payload as a UTF-8 string, at most `cap` bytes.
    pub fn string(&self, msg: &str, cap: u64) -> Result<String, ProtoError> {
        let b = self.bytes(msg, cap)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(err(
                self.value_offset + e.valid_up_to() as u64,
                format!("{msg} field {}: string is not valid UTF-8", self.number),
            )),
        }
    }
}
