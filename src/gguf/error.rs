//! The GGUF module's one error type. Every reader variant names the file, the key or tensor
//! (in `what`/`key`/`name`) and the absolute byte offset where the defect was found, because a
//! user holding a 300 GB file needs to know where it is broken, not just that it is.

use crate::io::atomic::sequence::with_sequence_defects;
use crate::io::IoError;
use std::path::PathBuf;

with_sequence_defects! {
/// Anything that can go wrong planning, writing or reading GGUF files.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are described by each variant's message
pub enum GgufError {
    /// Opening, mapping, writing or renaming a file failed.
    #[error(transparent)]
    Io(#[from] IoError),

    // ---- reader: structure -------------------------------------------------------------
    /// The file ended inside a field.
    #[error("{}: truncated at byte {offset} reading {what}: needed {needed} bytes, {available} left", crate::io::term::escape_path(path))]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file: magic {found:02x?} at byte 0", crate::io::term::escape_path(path))]
    BadMagic { path: PathBuf, found: Vec<u8> },
    /// Version 0, 1 or > 3 (or a byte-swapped version).
    #[error("{}: unsupported GGUF version {version} at byte 4{note}", crate::io::term::escape_path(path))]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        note: &'static str,
    },
    /// A declared count (KVs, tensors, array elements) exceeds its cap or the bytes present.
    #[error("{}: {what} at byte {offset} declares {count}, more than the {limit} possible ({why})", crate::io::term::escape_path(path))]
    CountTooLarge {
        path: PathBuf,
        what: String,
        offset: u64,
        count: u64,
        limit: u64,
        why: &'static str,
    },
    /// A declared string length exceeds 1 GiB or the bytes present.
    #[error("{}: {what} at byte {offset}: string of {len} bytes exceeds the {limit} possible", crate::io::term::escape_path(path))]
    StringTooLong {
        path: PathBuf,
        what: String,
        offset: u64,
        len: u64,
        limit: u64,
    },
    /// A string is not UTF-8.
    #[error("{}: {what} at byte {offset}: string is not valid UTF-8", crate::io::term::escape_path(path))]
    BadUtf8 {
        path: PathBuf,
        what: String,
        offset: u64,
    },
    /// A value type id outside 0..=12.
    #[error("{}: {what} at byte {offset}: unknown value type id {id}", crate::io::term::escape_path(path))]
    BadValueType {
        path: PathBuf,
        what: String,
        offset: u64,
        id: u32,
    },
    /// An array whose element type is ARRAY (ggml rejects these).
    #[error("{}: {what} at byte {offset}: array of arrays (ggml rejects nested arrays)", crate::io::term::escape_path(path))]
    NestedArray {
        path: PathBuf,
        what: String,
        offset: u64,
    },
    /// A bool byte other than 0 or 1.
    #[error("{}: {what} at byte {offset}: bool byte {byte} is neither 0 nor 1", crate::io::term::escape_path(path))]
    BadBool {
        path: PathBuf,
        what: String,
        offset: u64,
        byte: u8,
    },
    /// A key that appears twice.
    #[error("{}: duplicate key '{key_e}' at byte {offset}", crate::io::term::escape_path(path), key_e = crate::io::term::Escaped(key))]
    DuplicateKey {
        path: PathBuf,
        key: String,
        offset: u64,
    },
    /// A key grokit interprets (alignment, split keys) has the wrong value type.
    #[error("{}: key '{key_e}' at byte {offset} has type {found}, expected {expected}", crate::io::term::escape_path(path), key_e = crate::io::term::Escaped(key))]
    WrongKeyType {
        path: PathBuf,
        key: String,
        offset: u64,
        found: String,
        expected: &'static str,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("{}: general.alignment = {value} at byte {offset} is not a non-zero power of two", crate::io::term::escape_path(path))]
    BadAlignment {
        path: PathBuf,
        value: u32,
        offset: u64,
    },

    // ---- reader: tensor infos and data --------------------------------------------------
    /// A tensor info that breaks a rule (name length, n_dims, ne range, block multiple, size).
    #[error("{}: tensor '{name_e}' (info at byte {offset}): {reason}", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    BadTensorInfo {
        path: PathBuf,
        name: String,
        offset: u64,
        reason: String,
    },
    /// A ggml type id grokit does not know.
    #[error("{}: tensor '{name_e}' (info at byte {offset}): unknown ggml type id {id}", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    UnknownTensorType {
        path: PathBuf,
        name: String,
        offset: u64,
        id: u32,
    },
    /// Two tensors with one name (in one file or across a split set).
    #[error("{}: duplicate tensor name '{name_e}' (info at byte {offset})", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    DuplicateTensor {
        path: PathBuf,
        name: String,
        offset: u64,
    },
    /// A data offset that is not a multiple of the alignment.
    #[error("{}: tensor '{name_e}' (info at byte {offset}) has data offset {found}, not a multiple of the alignment {alignment}", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    MisalignedOffset {
        path: PathBuf,
        name: String,
        offset: u64,
        found: u64,
        alignment: u32,
    },
    /// A data offset other than the running padded sum (ggml's rule: data in info order).
    #[error("{}: tensor '{name_e}' (info at byte {offset}) has data offset {found}, expected {expected}", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    UnexpectedOffset {
        path: PathBuf,
        name: String,
        offset: u64,
        found: u64,
        expected: u64,
    },
    /// Tensor bytes past the end of the file.
    #[error("{}: tensor '{name_e}' data [{start}, {end}) is not within the file ({file_len} bytes)", crate::io::term::escape_path(path), name_e = crate::io::term::Escaped(name))]
    DataOutOfBounds {
        path: PathBuf,
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    // ---- reader: split sets -------------------------------------------------------------
    /// A split set that is not consistent (naming, missing shard, wrong counts).
    #[error("{}: split set: {reason}", crate::io::term::escape_path(path))]
    BadSplit { path: PathBuf, reason: String },

    // ---- plan ---------------------------------------------------------------------------
    /// A metadata key or value the plan may not write.
    #[error("GGUF plan: key '{key_e}': {reason}", key_e = crate::io::term::Escaped(key))]
    PlanKey { key: String, reason: String },
    /// A tensor the plan may not write.
    #[error("GGUF plan: tensor '{name_e}': {reason}", name_e = crate::io::term::Escaped(name))]
    PlanTensor { name: String, reason: String },
    /// Alignment zero or not a power of two.
    #[error("GGUF plan: alignment {alignment} is not a non-zero power of two")]
    PlanAlignment { alignment: u32 },
    /// The split request cannot be honoured (zero size, too many shards, bad output name).
    #[error("GGUF plan: split: {reason}")]
    PlanSplit { reason: String },
    // ---- streaming writer: `io::atomic::sequence`'s defects, added by the macro ----------
}
}

crate::io::atomic::sequence::from_sequence_error!(GgufError);

/// Result alias for this module.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
