//! The one error type of `safetensors_io`: every variant names the file, tensor and/or byte
//! offset involved, so a message alone is enough to find the defect.

use crate::io::atomic::sequence::with_sequence_defects;
use crate::io::IoError;
use std::path::PathBuf;

with_sequence_defects! {
/// A safetensors planning, writing or reading failure.
#[derive(Debug, thiserror::Error)]
pub enum StError {
    /// An OS-level I/O failure (carries its path).
    #[error(transparent)]
    Io(#[from] IoError),

    // ---- planning -------------------------------------------------------------------------
    /// Nothing to write.
    #[error("safetensors plan: no tensors")]
    NoTensors,
    /// Two tensors share a name.
    #[error("safetensors plan: tensor `{0}` appears twice")]
    DuplicateTensor(String),
    /// A tensor name the format reserves or cannot carry.
    #[error("safetensors plan: tensor name `{0}` is reserved or invalid")]
    BadTensorName(String),
    /// A shape whose element count or byte length overflows u64.
    #[error("safetensors plan: tensor `{tensor_e}` shape {shape} overflows", tensor_e = crate::io::term::Escaped(tensor))]
    ShapeOverflow {
        /// Tensor name.
        tensor: String,
        /// Rendered shape.
        shape: String,
    },
    /// A dtype the `safetensors` crate cannot represent (should not happen for grokit's table).
    #[error("safetensors plan: tensor `{tensor_e}`: dtype {dtype} unknown to the safetensors crate", tensor_e = crate::io::term::Escaped(tensor))]
    DtypeNotInCrate {
        /// Tensor name.
        tensor: String,
        /// safetensors dtype string.
        dtype: String,
    },
    /// A planned header would exceed [`crate::base::limits::ST_MAX_HEADER`].
    #[error("safetensors plan: header of {file} would be {len} bytes, over the {max}-byte limit readers enforce")]
    HeaderTooLargeToWrite {
        /// Shard file name.
        file: String,
        /// Header length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A metadata map that is not valid.
    #[error("safetensors plan: bad metadata: {0}")]
    BadMetadata(String),

    // ---- writing (and `io::atomic::sequence`'s defects, added by the macro) ---------------
    /// A file listed for `SHA256SUMS` whose SHA-256 was not computed while it was written.
    #[error("{0}: no SHA-256 was computed while it was written")]
    NotHashed(String),
    /// A file name that cannot appear in a `SHA256SUMS` line or an index.
    #[error("file name `{0}` is not a plain file name")]
    BadFileName(String),

    // ---- reading --------------------------------------------------------------------------
    /// File shorter than the 8-byte length prefix.
    #[error("{}: {len} bytes, too small for the 8-byte header length", crate::io::term::escape_path(path))]
    TooSmall {
        /// File.
        path: PathBuf,
        /// File length.
        len: u64,
    },
    /// Declared header length over the cap.
    #[error("{}: header length {len} exceeds the {max}-byte limit", crate::io::term::escape_path(path))]
    HeaderTooLarge {
        /// File.
        path: PathBuf,
        /// Declared header length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Declared header runs past the end of the file.
    #[error("{}: header of {len} bytes runs past the end of the {file_len}-byte file", crate::io::term::escape_path(path))]
    HeaderPastEnd {
        /// File.
        path: PathBuf,
        /// Declared header length.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// Header is not UTF-8.
    #[error("{}: header is not UTF-8 (bad byte at file offset {offset})", crate::io::term::escape_path(path))]
    HeaderNotUtf8 {
        /// File.
        path: PathBuf,
        /// File offset of the first invalid byte.
        offset: u64,
    },
    /// Header is not the expected JSON.
    #[error("{}: bad header JSON: {msg}", crate::io::term::escape_path(path))]
    HeaderJson {
        /// File.
        path: PathBuf,
        /// What is wrong (serde_json's message or ours).
        msg: String,
    },
    /// A tensor dtype grokit does not handle.
    #[error("{}: tensor `{tensor_e}` has dtype {dtype}, which grokit does not support", crate::io::term::escape_path(path), tensor_e = crate::io::term::Escaped(tensor))]
    UnsupportedDtype {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The dtype string.
        dtype: String,
    },
    /// A tensor with more dims than [`crate::base::limits::ST_MAX_DIMS`].
    #[error("{}: tensor `{tensor_e}` has {dims} dims, over the limit of {max}", crate::io::term::escape_path(path), tensor_e = crate::io::term::Escaped(tensor))]
    TooManyDims {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its rank.
        dims: usize,
        /// The cap.
        max: usize,
    },
    /// `data_offsets` do not match `shape` x dtype size (or end < begin, or overflow).
    #[error("{}: tensor `{tensor_e}`: data_offsets [{begin}, {end}] do not hold {expected} bytes", crate::io::term::escape_path(path), tensor_e = crate::io::term::Escaped(tensor))]
    SizeMismatch {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Declared begin.
        begin: u64,
        /// Declared end.
        end: u64,
        /// Bytes the shape and dtype need (u64::MAX when that overflows).
        expected: u64,
    },
    /// A hole in the byte buffer before a tensor.
    #[error("{}: gap in the data buffer: tensor `{tensor_e}` starts at {begin}, previous data ends at {expected}", crate::io::term::escape_path(path), tensor_e = crate::io::term::Escaped(tensor))]
    Gap {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its begin offset.
        begin: u64,
        /// Where it should begin.
        expected: u64,
    },
    /// Two tensors share bytes.
    #[error("{}: tensor `{tensor_e}` at {begin} overlaps the previous tensor, which ends at {expected}", crate::io::term::escape_path(path), tensor_e = crate::io::term::Escaped(tensor))]
    Overlap {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its begin offset.
        begin: u64,
        /// Where the previous tensor ends.
        expected: u64,
    },
    /// The data buffer is shorter than the tensors need.
    #[error("{}: truncated: tensors need {needed} data bytes, file holds {present}", crate::io::term::escape_path(path))]
    Truncated {
        /// File.
        path: PathBuf,
        /// Bytes required after the header.
        needed: u64,
        /// Bytes present after the header.
        present: u64,
    },
    /// Bytes after the last tensor.
    #[error("{}: {extra} trailing bytes after the last tensor", crate::io::term::escape_path(path))]
    TrailingBytes {
        /// File.
        path: PathBuf,
        /// Extra bytes.
        extra: u64,
    },
    /// The `safetensors` crate rejected a file grokit's own checks accepted.
    #[error("{}: rejected by the safetensors crate: {source}", crate::io::term::escape_path(path))]
    Crate {
        /// File.
        path: PathBuf,
        /// The crate's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A bad `model.safetensors.index.json`.
    #[error("{}: bad index: {msg}", crate::io::term::escape_path(path))]
    BadIndex {
        /// Index file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A directory with neither an index nor `model.safetensors`.
    #[error("{}: no model.safetensors.index.json or model.safetensors here", crate::io::term::escape_path(path))]
    NoModel {
        /// Directory.
        path: PathBuf,
    },
    /// A tensor name not in the file or set.
    #[error("tensor `{}` not found", crate::io::term::Escaped(.0))]
    NotFound(String),
}
}

crate::io::atomic::sequence::from_sequence_error!(StError);
