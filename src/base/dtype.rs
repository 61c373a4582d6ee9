//! Element types and the ONE table that maps them to every format's spelling.
//!
//! numpy descriptors, safetensors dtype strings and ggml type ids all live in [`DTYPES`];
//! conversions in both directions look rows up there, so names cannot drift apart.

use std::fmt;

/// A dense (unquantized) element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (top half of an f32).
    BF16,
    /// signed 8-bit integer.
    I8,
    /// unsigned 8-bit integer.
    U8,
    /// signed 16-bit integer.
    I16,
    /// signed 32-bit integer.
    I32,
    /// unsigned 32-bit integer.
    U32,
    /// signed 64-bit integer.
    I64,
    /// IEEE binary64.
    F64,
}

/// One row of the dtype table.
#[derive(Clone, Copy, Debug)]
pub struct DTypeInfo {
    /// The type.
    pub dtype: DType,
    /// Short lower-case name used by grokit's CLI and reports.
    pub name: &'static str,
    /// Size of one element in bytes.
    pub size: usize,
    /// safetensors `dtype` string (safetensors `tensor.rs` `enum Dtype`).
    pub safetensors: &'static str,
    /// ggml tensor type id (ggml.h `enum ggml_type`), where ggml has the type.
    pub ggml: Option<u32>,
    /// numpy `dtype(...)` string forms a pickle may carry (`"f4"`, `"<f4"`, ...). bf16 has none:
    /// numpy pickles it as the global `ml_dtypes.bfloat16`.
    pub numpy: &'static [&'static str],
}

/// The dtype table: the single source of truth for names, sizes and format ids.
pub const DTYPES: &[DTypeInfo] = &[
    DTypeInfo {
        dtype: DType::F32,
        name: "f32",
        size: 4,
        safetensors: "F32",
        ggml: Some(0),
        numpy: &["f4", "<f4", "float32"],
    },
    DTypeInfo {
        dtype: DType::F16,
        name: "f16",
        size: 2,
        safetensors: "F16",
        ggml: Some(1),
        numpy: &["f2", "<f2", "float16"],
    },
    DTypeInfo {
        dtype: DType::BF16,
        name: "bf16",
        size: 2,
        safetensors: "BF16",
        ggml: Some(30),
        numpy: &[],
    },
    DTypeInfo {
        dtype: DType::I8,
        name: "i8",
        size: 1,
        safetensors: "I8",
        ggml: Some(24),
        numpy: &["i1", "|i1", "int8"],
    },
    DTypeInfo {
        dtype: DType::U8,
        name: "u8",
        size: 1,
        safetensors: "U8",
        ggml: None,
        numpy: &["u1", "|u1", "uint8"],
    },
    DTypeInfo {
        dtype: DType::I16,
        name: "i16",
        size: 2,
        safetensors: "I16",
        ggml: Some(25),
        numpy: &["i2", "<i2", "int16"],
    },
    DTypeInfo {
        dtype: DType::I32,
        name: "i32",
        size: 4,
        safetensors: "I32",
        ggml: Some(26),
        numpy: &["i4", "<i4", "int32"],
    },
    DTypeInfo {
        dtype: DType::U32,
        name: "u32",
        size: 4,
        safetensors: "U32",
        ggml: None,
        numpy: &["u4", "<u4", "uint32"],
    },
    DTypeInfo {
        dtype: DType::I64,
        name: "i64",
        size: 8,
        safetensors: "I64",
        ggml: Some(27),
        numpy: &["i8", "<i8", "int64"],
    },
    DTypeInfo {
        dtype: DType::F64,
        name: "f64",
        size: 8,
        safetensors: "F64",
        ggml: Some(28),
        numpy: &["f8", "<f8", "float64"],
    },
];

// `all_variants_have_rows` pins one row per variant.
super::row_accessors!(DType => DTypeInfo, DTYPES, dtype {
    /// Element size in bytes.
    size: usize,
    /// Short name (`"bf16"`).
    name: &'static str,
    /// safetensors dtype string (`"BF16"`).
    safetensors: &'static str,
});

impl DType {
    /// Look a type up by its safetensors string.
    pub fn from_safetensors(s: &str) -> Option<DType> {
        DTYPES.iter().find(|r| r.safetensors == s).map(|r| r.dtype)
    }
    /// Look a type up by a numpy descriptor string.
    pub fn from_numpy(s: &str) -> Option<DType> {
        DTYPES
            .iter()
            .find(|r| r.numpy.contains(&s))
            .map(|r| r.dtype)
    }
    /// Look a type up by its short name.
    pub fn from_name(s: &str) -> Option<DType> {
        DTYPES.iter().find(|r| r.name == s).map(|r| r.dtype)
    }
    /// Look a type up by ggml type id.
    pub fn from_ggml(id: u32) -> Option<DType> {
        DTYPES.iter().find(|r| r.ggml == Some(id)).map(|r| r.dtype)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_variants_have_rows() {
        for d in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::I8,
            DType::U8,
            DType::I16,
            DType::I32,
            DType::U32,
            DType::I64,
            DType::F64,
        ] {
            assert_eq!(d.info().dtype, d);
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert_eq!(DType::from_safetensors(d.safetensors()), Some(d));
        }
        assert_eq!(DType::from_numpy("f4"), Some(DType::F32));
        assert_eq!(DType::from_numpy("i1"), Some(DType::I8));
        assert_eq!(DType::from_ggml(30), Some(DType::BF16));
    }
}
