//! GGUF metadata values and their little-endian encoding.
//!
//! Why typed, homogeneous arrays (`ArrayValue::F32(Vec<f32>)` rather than `Vec<Value>`): GGUF
//! arrays carry one element type, llama.cpp reads token scores and types as raw `float*`/`int*`
//! with no per-element check, so the type is part of the contract
//! (docs/formats/gguf-output.md "Tokenizer metadata"), and an array of arrays, which ggml
//! rejects, cannot even be built.

use super::constants::{ValueType, STRING_LEN_BYTES};
use crate::model::KeyValue;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ArrayValue),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous array value (no nested arrays: ggml's reader refuses them).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum ArrayValue {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// Append a GGUF string (u64 length, bytes, no NUL).
pub fn encode_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encoded size of a GGUF string.
pub fn str_len(s: &str) -> u64 {
    STRING_LEN_BYTES + s.len() as u64
}

macro_rules! put_all {
    ($out:expr, $v:expr) => {
        for x in $v {
            $out.extend_from_slice(&x.to_le_bytes());
        }
    };
}

impl Value {
    /// The value type stored before this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Type as text: `UINT32`, or `ARRAY[FLOAT32]` for arrays.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => format!("ARRAY[{}]", a.elem_type().name()),
            v => v.value_type().name().to_string(),
        }
    }

    /// Bytes of the encoded value (without the u32 type id in front of it).
    pub fn encoded_len(&self) -> u64 {
        match self {
            Value::String(s) => str_len(s),
            Value::Array(a) => a.encoded_len(),
            v => v.value_type().fixed_size().unwrap_or(0),
        }
    }

    /// Append the encoded value (without its type id).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(u8::from(*x)),
            Value::String(s) => encode_str(out, s),
            Value::Array(a) => a.encode(out),
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }

    /// The value if it is a u32.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(x) => Some(*x),
            _ => None,
        }
    }
    /// The value as a configuration key's value ([`crate::model::read_config`]): integers as
    /// counts, f32 and f64 as reals; `None` (which the reader refuses, naming the key) for a
    /// negative integer, a string, an array or a bool. A reader passes
    /// `|k| set.get(k).map(Value::key_value)`.
    pub fn key_value(&self) -> Option<KeyValue> {
        let count = |x: i64| u64::try_from(x).ok().map(KeyValue::Int);
        match self {
            Value::U8(x) => Some(KeyValue::Int(u64::from(*x))),
            Value::U16(x) => Some(KeyValue::Int(u64::from(*x))),
            Value::U32(x) => Some(KeyValue::Int(u64::from(*x))),
            Value::U64(x) => Some(KeyValue::Int(*x)),
            Value::I8(x) => count(i64::from(*x)),
            Value::I16(x) => count(i64::from(*x)),
            Value::I32(x) => count(i64::from(*x)),
            Value::I64(x) => count(*x),
            Value::F32(x) => Some(KeyValue::Float(f64::from(*x))),
            Value::F64(x) => Some(KeyValue::Float(*x)),
            Value::Bool(_) | Value::String(_) | Value::Array(_) => None,
        }
    }
    /// The value if it is an i32.
    pub fn as_i32(&self) -> Option<i32> {
        match self {
            Value::I32(x) => Some(*x),
            _ => None,
        }
    }
    /// The value if it is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(x) => Some(*x),
            _ => None,
        }
    }
    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The value if it is an array.
    pub fn as_array(&self) -> Option<&ArrayValue> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl ArrayValue {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        match self {
            ArrayValue::U8(_) => ValueType::U8,
            ArrayValue::I8(_) => ValueType::I8,
            ArrayValue::U16(_) => ValueType::U16,
            ArrayValue::I16(_) => ValueType::I16,
            ArrayValue::U32(_) => ValueType::U32,
            ArrayValue::I32(_) => ValueType::I32,
            ArrayValue::F32(_) => ValueType::F32,
            ArrayValue::Bool(_) => ValueType::Bool,
            ArrayValue::Str(_) => ValueType::String,
            ArrayValue::U64(_) => ValueType::U64,
            ArrayValue::I64(_) => ValueType::I64,
            ArrayValue::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayValue::U8(v) => v.len(),
            ArrayValue::I8(v) => v.len(),
            ArrayValue::U16(v) => v.len(),
            ArrayValue::I16(v) => v.len(),
            ArrayValue::U32(v) => v.len(),
            ArrayValue::I32(v) => v.len(),
            ArrayValue::F32(v) => v.len(),
            ArrayValue::Bool(v) => v.len(),
            ArrayValue::Str(v) => v.len(),
            ArrayValue::U64(v) => v.len(),
            ArrayValue::I64(v) => v.len(),
            ArrayValue::F64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the encoded array: u32 element type, u64 count, elements.
    pub fn encoded_len(&self) -> u64 {
        let body = match self {
            ArrayValue::Str(v) => v.iter().map(|s| str_len(s)).sum(),
            a => a.len() as u64 * a.elem_type().fixed_size().unwrap_or(0),
        };
        4 + 8 + body
    }

    /// Append the encoded array.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.elem_type().id().to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        match self {
            ArrayValue::U8(v) => out.extend_from_slice(v),
            ArrayValue::I8(v) => put_all!(out, v),
            ArrayValue::U16(v) => put_all!(out, v),
            ArrayValue::I16(v) => put_all!(out, v),
            ArrayValue::U32(v) => put_all!(out, v),
            ArrayValue::I32(v) => put_all!(out, v),
            ArrayValue::F32(v) => put_all!(out, v),
            ArrayValue::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            ArrayValue::Str(v) => v.iter().for_each(|s| encode_str(out, s)),
            ArrayValue::U64(v) => put_all!(out, v),
            ArrayValue::I64(v) => put_all!(out, v),
            ArrayValue::F64(v) => put_all!(out, v),
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$v(x) }
        }
        impl From<Vec<$t>> for Value {
            fn from(x: Vec<$t>) -> Value { Value::Array(ArrayValue::$v(x)) }
        }
    )*};
}
from_scalar!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, u64 => U64, i64 => I64, f64 => F64);

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::Array(ArrayValue::Str(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn encoded_len_matches_encoding() {
        let vals: Vec<Value> = vec![
            1u8.into(),
            (-1i8).into(),
            2u16.into(),
            (-2i16).into(),
            3u32.into(),
            (-3i32).into(),
            1.5f32.into(),
            true.into(),
            "héllo".into(),
            4u64.into(),
            (-4i64).into(),
            2.5f64.into(),
            vec![1.0f32, 2.0].into(),
            vec!["a".to_string(), String::new()].into(),
            vec![true, false].into(),
            vec![1u8, 2, 3].into(),
            vec![-1i32].into(),
        ];
        for v in vals {
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(out.len() as u64, v.encoded_len(), "{v:?}");
        }
        let mut out = Vec::new();
        Value::from(vec![7u16]).encode(&mut out);
        assert_eq!(out, [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(Value::from(vec![7u16]).type_name(), "ARRAY[UINT16]");
    }
}
