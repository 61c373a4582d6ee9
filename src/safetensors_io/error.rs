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
    #[error("safetensors plan: tensor `{tensor}` shape {shape} overflows")]
    ShapeOverflow {
        /// Tensor name.
        tensor: String,
        /// Rendered shape.
        shape: String,
    },
    /// A dtype the `safetensors` crate cannot represent (should not happen for grokit's table).
    #[error("safetensors plan: tensor `{tensor}`: dtype {dtype} unknown to the safetensors crate")]
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
    #[error("{}: {len} bytes, too small for the 8-byte header length", path.display())]
    TooSmall {
        /// File.
        path: PathBuf,
        /// File length.
        len: u64,
    },
    /// Declared header length over the cap.
    #[error("{}: header length {len} exceeds the {max}-byte limit", path.display())]
    HeaderTooLarge {
        /// File.
        path: PathBuf,
        /// Declared header length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Declared header runs past the end of the file.
    #[error("{}: header of {len} bytes runs past the end of the {file_len}-byte file", path.display())]
    HeaderPastEnd {
        /// File.
        path: PathBuf,
        /// Declared header length.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// Header is not UTF-8.
    #[error("{}: header is not UTF-8 (bad byte at file offset {offset})", path.display())]
    HeaderNotUtf8 {
        /// File.
        path: PathBuf,
        /// File offset of the first invalid byte.
        offset: u64,
    },
    /// Header is not the expected JSON.
    #[error("{}: bad header JSON: {msg}", path.display())]
    HeaderJson {
        /// File.
        path: PathBuf,
        /// What is wrong (serde_json's message or ours).
        msg: String,
    },
    /// A tensor dtype grokit does not handle.
    #[error("{}: tensor `{tensor}` has dtype {dtype}, which grokit does not support", path.display())]
    UnsupportedDtype {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The dtype string.
        dtype: String,
    },
    /// A tensor with more dims than [`crate::base::limits::ST_MAX_DIMS`].
    #[error("{}: tensor `{tensor}` has {dims} dims, over the limit of {max}", path.display())]
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
    #[error("{}: tensor `{tensor}`: data_offsets [{begin}, {end}] do not hold {expected} bytes", path.display())]
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
    #[error("{}: gap in the data buffer: tensor `{tensor}` starts at {begin}, previous data ends at {expected}", path.display())]
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
    #[error("{}: tensor `{tensor}` at {begin} overlaps the previous tensor, which ends at {expected}", path.display())]
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
    #[error("{}: truncated: tensors need {needed} data bytes, file holds {present}", path.display())]
    Truncated {
        /// File.
        path: PathBuf,
        /// Bytes required after the header.
        needed: u64,
        /// Bytes present after the header.
        present: u64,
    },
    /// Bytes after the last tensor.
    #[error("{}: {extra} trailing bytes after the last tensor", path.display())]
    TrailingBytes {
        /// File.
        path: PathBuf,
        /// Extra bytes.
        extra: u64,
    },
    /// The `safetensors` crate rejected a file grokit's own checks accepted.
    #[error("{}: rejected by the safetensors crate: {source}", path.display())]
    Crate {
        /// File.
        path: PathBuf,
        /// The crate's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A bad `model.safetensors.index.json`.
    #[error("{}: bad index: {msg}", path.display())]
    BadIndex {
        /// Index file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A directory with neither an index nor `model.safetensors`.
    #[error("{}: no model.safetensors.index.json or model.safetensors here", path.display())]
    NoModel {
        /// Directory.
        path: PathBuf,
    },
    /// A tensor name not in the file or set.
    #[error("tensor `{0}` not found")]
    NotFound(String),
}
}

crate::io::atomic::sequence::from_sequence_error!(StError);
