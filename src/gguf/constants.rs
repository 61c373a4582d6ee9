//! GGUF constants, written once: the magic, the version grokit writes, the default alignment,
//! the metadata value-type table, and the key names grokit itself reads or writes.
//!
//! Why one table for value types: the id, the name printed in errors and the fixed encoded size
//! are needed by the encoder, the decoder and the error messages; keeping them in one row each
//! means they cannot drift (candle's reader and writer each matched ids by hand, and drifted).
//! Layout: docs/formats/gguf-output.md "Byte layout" (ggml `docs/gguf.md`, `include/gguf.h`).

/// The four magic bytes at offset 0 (`GGUF`, u32 0x46554747 read little-endian).
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version grokit writes (`GGUF_VERSION`).
pub const GGUF_VERSION: u32 = 3;
/// Oldest version the reader accepts: v1 used u32 counts and is not supported by ggml either;
/// v2 has the same layout as v3.
pub const GGUF_MIN_READ_VERSION: u32 = 2;
/// Alignment of the data section and of every tensor when `general.alignment` is absent
/// (`GGUF_DEFAULT_ALIGNMENT`).
pub const GGUF_DEFAULT_ALIGNMENT: u32 = 32;

/// A metadata value type (the u32 stored after each key and at the head of each array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

/// One row of the value-type table.
#[derive(Clone, Copy, Debug)]
pub struct ValueTypeInfo {
    /// The type.
    pub ty: ValueType,
    /// The id stored in the file (`enum gguf_type`).
    pub id: u32,
    /// gguf-py's name (`GGUFValueType`), used in messages and in the interop JSON.
    pub name: &'static str,
    /// Encoded size of one value, or `None` for the variable-size string and array.
    pub fixed_size: Option<u64>,
}

/// The value-type table (`enum gguf_type`, ids 0..=12).
pub const VALUE_TYPES: &[ValueTypeInfo] = &[
    ValueTypeInfo {
        ty: ValueType::U8,
        id: 0,
        name: "UINT8",
        fixed_size: Some(1),
    },
    ValueTypeInfo {
        ty: ValueType::I8,
        id: 1,
        name: "INT8",
        fixed_size: Some(1),
    },
    ValueTypeInfo {
        ty: ValueType::U16,
        id: 2,
        name: "UINT16",
        fixed_size: Some(2),
    },
    ValueTypeInfo {
        ty: ValueType::I16,
        id: 3,
        name: "INT16",
        fixed_size: Some(2),
    },
    ValueTypeInfo {
        ty: ValueType::U32,
        id: 4,
        name: "UINT32",
        fixed_size: Some(4),
    },
    ValueTypeInfo {
        ty: ValueType::I32,
        id: 5,
        name: "INT32",
        fixed_size: Some(4),
    },
    ValueTypeInfo {
        ty: ValueType::F32,
        id: 6,
        name: "FLOAT32",
        fixed_size: Some(4),
    },
    ValueTypeInfo {
        ty: ValueType::Bool,
        id: 7,
        name: "BOOL",
        fixed_size: Some(1),
    },
    ValueTypeInfo {
        ty: ValueType::String,
        id: 8,
        name: "STRING",
        fixed_size: None,
    },
    ValueTypeInfo {
        ty: ValueType::Array,
        id: 9,
        name: "ARRAY",
        fixed_size: None,
    },
    ValueTypeInfo {
        ty: ValueType::U64,
        id: 10,
        name: "UINT64",
        fixed_size: Some(8),
    },
    ValueTypeInfo {
        ty: ValueType::I64,
        id: 11,
        name: "INT64",
        fixed_size: Some(8),
    },
    ValueTypeInfo {
        ty: ValueType::F64,
        id: 12,
        name: "FLOAT64",
        fixed_size: Some(8),
    },
];

/// Bytes of the u64 length that precedes every GGUF string.
pub const STRING_LEN_BYTES: u64 = 8;

// `table_is_complete_and_consistent` pins one row per variant.
crate::base::row_accessors!(ValueType => ValueTypeInfo, VALUE_TYPES, ty {
    /// The id stored in files.
    id: u32,
    /// gguf-py's name (`UINT32`, `STRING`, ...).
    name: &'static str,
    /// Fixed encoded size, `None` for string and array.
    fixed_size: Option<u64>,
});

impl ValueType {
    /// Smallest encoded size of one value of this type (a string is at least its u64 length;
    /// an array at least its u32 type and u64 count). Used to bound declared counts.
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::String => STRING_LEN_BYTES,
            ValueType::Array => 4 + 8,
            t => t.fixed_size().unwrap_or(1),
        }
    }
    /// Look up by id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        VALUE_TYPES.iter().find(|r| r.id == id).map(|r| r.ty)
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `general.*` keys (docs/formats/gguf-output.md "General metadata").
pub mod keys {
    /// string: model architecture (`grok`).
    pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
    /// string: model name.
    pub const GENERAL_NAME: &str = "general.name";
    /// string: `model`.
    pub const GENERAL_TYPE: &str = "general.type";
    /// u32: llama_ftype.
    pub const GENERAL_FILE_TYPE: &str = "general.file_type";
    /// u32: `GGML_QNT_VERSION` (2).
    pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";
    /// u32: data alignment; must be a non-zero power of two.
    pub const GENERAL_ALIGNMENT: &str = "general.alignment";
    /// u16 in every shard: 0-based shard index (docs/formats/gguf-output.md "Splits").
    pub const SPLIT_NO: &str = "split.no";
    /// u16 in every shard: number of shards.
    pub const SPLIT_COUNT: &str = "split.count";
    /// i32 in every shard: total tensors across all shards.
    pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";
    /// Keys the split machinery owns: a plan may not set them itself.
    pub const SPLIT_KEYS: [&str; 3] = [SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT];
}

/// An accepted type for a key llama.cpp reads through a typed getter: the value type and,
/// for arrays, the element type.
pub type KeyType = (ValueType, Option<ValueType>);

const U32: KeyType = (ValueType::U32, None);
const F32: KeyType = (ValueType::F32, None);
const STR: KeyType = (ValueType::String, None);
const BOOL: KeyType = (ValueType::Bool, None);
const I32_ARRAY: KeyType = (ValueType::Array, Some(ValueType::I32));

/// The value types llama.cpp accepts for the keys a Grok conversion writes
/// (docs/formats/gguf-output.md "General metadata", "Grok metadata" and "Tokenizer metadata"):
/// its typed getters throw "key %s has wrong type" or assert otherwise, and
/// token scores/types are read as raw `float*`/`int*`. `{arch}.` stands for the value of
/// `general.architecture`. Keys not listed are free-form. [`GgufPlan::validate`] checks these.
///
/// [`GgufPlan::validate`]: super::GgufPlan::validate
pub const KEY_TYPES: &[(&str, &[KeyType])] = &[
    ("general.architecture", &[STR]),
    ("general.name", &[STR]),
    ("general.type", &[STR]),
    ("general.file_type", &[U32]),
    ("general.quantization_version", &[U32]),
    ("general.alignment", &[U32]),
    ("tokenizer.ggml.model", &[STR]),
    ("tokenizer.ggml.pre", &[STR]),
    (
        "tokenizer.ggml.tokens",
        &[(ValueType::Array, Some(ValueType::String))],
    ),
    (
        "tokenizer.ggml.scores",
        &[(ValueType::Array, Some(ValueType::F32))],
    ),
    ("tokenizer.ggml.token_type", &[I32_ARRAY]),
    ("tokenizer.ggml.bos_token_id", &[U32]),
    ("tokenizer.ggml.eos_token_id", &[U32]),
    ("tokenizer.ggml.unknown_token_id", &[U32]),
    ("tokenizer.ggml.padding_token_id", &[U32]),
    ("tokenizer.ggml.add_bos_token", &[BOOL]),
    ("tokenizer.ggml.add_eos_token", &[BOOL]),
    ("tokenizer.ggml.remove_extra_whitespaces", &[BOOL]),
    ("{arch}.context_length", &[U32]),
    ("{arch}.embedding_length", &[U32]),
    ("{arch}.block_count", &[U32]),
    ("{arch}.feed_forward_length", &[U32, I32_ARRAY]),
    ("{arch}.expert_feed_forward_length", &[U32]),
    ("{arch}.attention.head_count", &[U32, I32_ARRAY]),
    ("{arch}.attention.head_count_kv", &[U32, I32_ARRAY]),
    ("{arch}.attention.layer_norm_rms_epsilon", &[F32]),
    ("{arch}.attention.output_scale", &[F32]),
    ("{arch}.expert_count", &[U32]),
    ("{arch}.expert_used_count", &[U32]),
    ("{arch}.rope.freq_base", &[F32]),
    ("{arch}.rope.dimension_count", &[U32]),
    ("{arch}.vocab_size", &[U32]),
    ("{arch}.embedding_scale", &[F32]),
    ("{arch}.logit_scale", &[F32]),
    ("{arch}.attn_logit_softcapping", &[F32]),
    ("{arch}.final_logit_softcapping", &[F32]),
    ("{arch}.router_logit_softcapping", &[F32]),
];

/// The types llama.cpp accepts for `key` (see [`KEY_TYPES`]), given the plan's architecture.
pub fn expected_key_types(key: &str, arch: Option<&str>) -> Option<&'static [KeyType]> {
    let rel = arch
        .and_then(|a| key.strip_prefix(a))
        .and_then(|r| r.strip_prefix('.'));
    KEY_TYPES.iter().find_map(|&(k, t)| {
        let hit = match (k.strip_prefix("{arch}."), rel) {
            (Some(suffix), Some(r)) => suffix == r,
            (Some(_), None) => false,
            (None, _) => k == key,
        };
        hit.then_some(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn table_is_complete_and_consistent() {
        for (i, r) in VALUE_TYPES.iter().enumerate() {
            assert_eq!(r.id as usize, i);
            assert_eq!(ValueType::from_id(r.id), Some(r.ty));
            assert_eq!(r.ty.info().id, r.id);
        }
        assert_eq!(ValueType::from_id(13), None);
        assert_eq!(u32::from_le_bytes(GGUF_MAGIC), 0x4655_4747);
        assert_eq!(
            expected_key_types("grok.block_count", Some("grok")),
            Some(&[U32][..])
        );
        assert_eq!(expected_key_types("grok.block_count", Some("llama")), None);
        assert_eq!(
            expected_key_types("general.file_type", None),
            Some(&[U32][..])
        );
        assert_eq!(expected_key_types("grok.something_new", Some("grok")), None);
    }
}
