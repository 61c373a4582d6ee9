//! The SentencePiece encoder of a GGUF: its `tokenizer.ggml.*` metadata handed to
//! [`Tokenizer::from_gguf_metadata`].
//!
//! Why here: the tokenizer layer (L1) cannot see GGUF values (L2), so it takes plain slices
//! ([`GgufVocab`]); this is the one mapping from a GGUF's key-value table to those slices,
//! shared by `forward`/`compare --prompt` on a GGUF and the tests. The keys are
//! [`keys`], the one table also used by the writer (`convert::gguf::tokenizer_kvs`). A key that
//! is present with the wrong GGUF type is an error naming it, not taken for absent.

use super::{ArrayValue, Value};
use crate::tokenizer::gguf_vocab::{keys, GgufVocab};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::Path;

/// Whether the metadata carries a vocabulary at all (`tokenizer.ggml.tokens` present).
pub fn has_vocab<'v>(get: &dyn Fn(&str) -> Option<&'v Value>) -> bool {
    get(keys::TOKENS).is_some()
}

/// Build the encoder from the metadata `get` looks up (a GGUF file's or set's `get`); `path`
/// names the GGUF in errors. `Ok(None)` when the GGUF has no `tokenizer.ggml.tokens`.
pub fn tokenizer_of<'v>(
    get: &dyn Fn(&str) -> Option<&'v Value>,
    path: &Path,
) -> Result<Option<Tokenizer>, TokenizerError> {
    if !has_vocab(get) {
        return Ok(None);
    }
    let bad = |key: &str, want: &str, got: &Value| TokenizerError::Invalid {
        path: path.into(),
        reason: format!("{key} is {}, expected {want}", got.type_name()),
    };
    let string = |k: &str| -> Result<&'v str, TokenizerError> {
        match get(k) {
            None => Ok(""),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(v) => Err(bad(k, "a string", v)),
        }
    };
    let id = |k: &str| -> Result<Option<u64>, TokenizerError> {
        let v = match get(k) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: Option<u64> = match *v {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => return Err(bad(k, "an unsigned integer", v)),
        };
        n.map(Some).ok_or_else(|| TokenizerError::Invalid {
            path: path.into(),
            reason: format!("{k} is negative"),
        })
    };
    let flag = |k: &str| -> Result<Option<bool>, TokenizerError> {
        match get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(bad(k, "a bool", v)),
        }
    };
    let tokens = match get(keys::TOKENS) {
        Some(Value::Array(ArrayValue::Str(v))) => v.as_slice(),
        Some(v) => return Err(bad(keys::TOKENS, "an array of strings", v)),
        None => &[],
    };
    let scores = match get(keys::SCORES) {
        Some(Value::Array(ArrayValue::F32(v))) => Some(v.as_slice()),
        Some(v) => return Err(bad(keys::SCORES, "an array of f32", v)),
        None => None,
    };
    let token_types = match get(keys::TOKEN_TYPE) {
        Some(Value::Array(ArrayValue::I32(v))) => Some(v.as_slice()),
        Some(v) => return Err(bad(keys::TOKEN_TYPE, "an array of i32", v)),
        None => None,
    };
    let precompiled_charsmap = match get(keys::PRECOMPILED_CHARSMAP) {
        Some(Value::Array(ArrayValue::U8(v))) => Some(v.as_slice()),
        Some(v) => return Err(bad(keys::PRECOMPILED_CHARSMAP, "an array of u8", v)),
        None => None,
    };
    let v = GgufVocab {
        model: string(keys::MODEL)?,
        tokens,
        scores,
        token_types,
        unknown_token_id: id(keys::UNK_ID)?,
        bos_token_id: id(keys::BOS_ID)?,
        eos_token_id: id(keys::EOS_ID)?,
        padding_token_id: id(keys::PAD_ID)?,
        add_space_prefix: flag(keys::ADD_SPACE_PREFIX)?,
        remove_extra_whitespaces: flag(keys::REMOVE_EXTRA_WHITESPACES)?,
        precompiled_charsmap,
    };
    Tokenizer::from_gguf_metadata(&v, path).map(Some)
}

impl super::GgufFile {
    /// The encoder of this GGUF's tokenizer metadata (see [`tokenizer_of`]).
    pub fn tokenizer(&self) -> Result<Option<Tokenizer>, TokenizerError> {
        tokenizer_of(&|k| self.get(k), self.path())
    }
}
