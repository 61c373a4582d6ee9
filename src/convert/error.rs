//! The conversion layer's one error type: a variant per defect, each carrying the file, tensor
//! or key involved and its cause (never flattened to text), so the CLI can render it and a
//! caller can match on it. I/O failures of the writers arrive as [`ConvertError::Io`] with the
//! OS error and the path, whichever writer they happened in.

use crate::gguf::GgufError;
use crate::imatrix::ImatrixError;
use crate::io::IoError;
use crate::quant::{GgmlType, QuantError};
use crate::safetensors_io::StError;
use crate::source::SourceError;
use crate::tokenizer::TokenizerError;
use std::path::PathBuf;

/// Why a conversion (`convert`) or a requantization (`quantize`) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    // ---- inputs -------------------------------------------------------------------------
    /// Reading the release checkpoint failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The checkpoint has structural problems.
    #[error(
        "{dir}: {count} structural problem(s); run `grokit inspect` to list them (first: {first})"
    )]
    Problems {
        /// checkpoint dir
        dir: PathBuf,
        /// number of problems
        count: usize,
        /// the first one
        first: String,
    },
    /// The tokenizer could not be read.
    #[error("tokenizer {}: {source}", path.display())]
    Tokenizer {
        /// The `tokenizer.model`.
        path: PathBuf,
        /// Cause.
        source: TokenizerError,
    },
    /// The tokenizer's vocabulary is not the checkpoint's.
    #[error("tokenizer {} has {pieces} pieces but the checkpoint's vocabulary is {vocab}; pass the matching --tokenizer", path.display())]
    VocabMismatch {
        /// The `tokenizer.model`.
        path: PathBuf,
        /// Its pieces.
        pieces: u64,
        /// The embedding's rows.
        vocab: u64,
    },

    // ---- planning -----------------------------------------------------------------------
    /// A compressed-tensors group does not divide a matrix's input width.
    #[error("{tensor}: input width {width} is not a multiple of the group size {group}")]
    GroupWidth {
        /// Output tensor.
        tensor: String,
        /// Its input width.
        width: u64,
        /// The group size.
        group: usize,
    },
    /// A planned tensor's encoding has no GGUF type (compressed-tensors, raw bytes).
    #[error("{tensor}: its encoding has no GGUF type")]
    NotGguf {
        /// Output tensor.
        tensor: String,
    },
    /// A GGUF plan, read or write failed (not I/O: that is [`ConvertError::Io`]).
    #[error(transparent)]
    Gguf(GgufError),
    /// A safetensors plan, read or write failed (not I/O: that is [`ConvertError::Io`]).
    #[error(transparent)]
    Safetensors(StError),
    /// A tensor of an output file's plan that the conversion did not plan (a bug).
    #[error("{}: tensor {tensor} planned but not found", file.display())]
    Unplanned {
        /// Output file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
    },

    // ---- refusals: outputs never replace inputs or existing files ----------------------------
    /// An output path with no resolvable location.
    #[error("{}: cannot resolve the output path", path.display())]
    Unresolvable {
        /// The output.
        path: PathBuf,
    },
    /// An output inside (or on) the input checkpoint.
    #[error("{}: output inside the input checkpoint {} is refused", output.display(), input.display())]
    InsideInput {
        /// The output.
        output: PathBuf,
        /// The checkpoint directory.
        input: PathBuf,
    },
    /// An output that would replace `config.json`/`tokenizer.model` beside the checkpoint.
    #[error("{}: would overwrite a file of the input checkpoint's directory", output.display())]
    OverwritesInput {
        /// The output.
        output: PathBuf,
    },
    /// An output that is one of the input files.
    #[error("{}: the output would replace an input file", output.display())]
    ReplacesInput {
        /// The output.
        output: PathBuf,
    },
    /// An output that exists, without `--force` (or `--resume`).
    #[error("{}: already exists (use {hint})", path.display())]
    Exists {
        /// The output.
        path: PathBuf,
        /// The options that allow it.
        hint: &'static str,
    },
    /// A shard another worker should have written has the wrong size (`--finish`).
    #[error("{}: {len} bytes but the plan says {planned}; rerun the worker that owns it", path.display())]
    ShardSize {
        /// The shard.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The planned size.
        planned: u64,
    },

    // ---- streaming ----------------------------------------------------------------------
    /// Writing, reading or renaming a file failed (a full disk arrives here).
    #[error(transparent)]
    Io(IoError),
    /// An encoder refused an output tensor's values.
    #[error("tensor {tensor}: {source}")]
    Encode {
        /// Output tensor.
        tensor: String,
        /// Cause.
        source: QuantError,
    },
    /// The thread writing a tensor's bytes panicked.
    #[error("{tensor}: the writer thread panicked")]
    WriterPanicked {
        /// Output tensor.
        tensor: String,
    },
    /// A tensor's encoding produced another byte count than planned (a bug).
    #[error("{tensor}: encoded {encoded} bytes but the plan says {planned}")]
    EncodedLength {
        /// Output tensor.
        tensor: String,
        /// Bytes produced.
        encoded: u64,
        /// Bytes planned.
        planned: u64,
    },
    /// A planned source parameter that the checkpoint does not have (a bug).
    #[error("{tensor}: source index {index} out of range")]
    NoSource {
        /// Output tensor.
        tensor: String,
        /// Release file index.
        index: usize,
    },
    /// A plain (f32) source parameter that is neither 1-D nor 2-D.
    #[error("{tensor}: unexpected source shape {shape:?}")]
    SourceShape {
        /// Output tensor.
        tensor: String,
        /// The source's shape.
        shape: Vec<u64>,
    },

    // ---- requantization (`quantize`) -------------------------------------------------------
    /// A codec refused an input GGUF tensor's data.
    #[error("{}: tensor '{tensor}': {source}", path.display())]
    Quant {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Cause.
        source: QuantError,
    },
    /// A block-quantized tensor would be quantized again without `allow_requantize`.
    #[error("{}: tensor '{tensor}' is already {from}; quantizing it again to {to} compounds two rounding errors (quantize from an F32/F16/BF16 file, or pass --allow-requantize)", path.display())]
    Requantize {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Input type.
        from: GgmlType,
        /// Requested type.
        to: GgmlType,
    },
    /// A type change grokit cannot decode or encode.
    #[error("{}: tensor '{tensor}': cannot convert {from} to {to}", path.display())]
    Unconvertible {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Input type.
        from: GgmlType,
        /// Requested type.
        to: GgmlType,
    },
    /// The requested type's block does not fit the tensor's rows.
    #[error("{}: tensor '{tensor}': {to} does not fit ne {ne:?}", path.display())]
    DoesNotFit {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Requested type.
        to: GgmlType,
        /// ggml dims.
        ne: Vec<u64>,
    },
    // ---- importance matrices (`--imatrix`) --------------------------------------------------
    /// The importance matrix is unreadable, or made for another model (names, widths, expert
    /// counts): the error names the tensor.
    #[error(transparent)]
    Imatrix(#[from] ImatrixError),
    /// A tensor's type cannot be made without an importance matrix (llama-quantize refuses it).
    #[error("tensor '{tensor}': {ty} needs an importance matrix{}", match imatrix {
        None => " (llama-quantize refuses it too); pass --imatrix FILE, or choose a type that does not need one (e.g. iq4_xs, q4_k_m)".to_string(),
        Some(p) => format!(", and {} has no entry for it", p.display()),
    })]
    NeedsImatrix {
        /// Output tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The matrix given, if any.
        imatrix: Option<PathBuf>,
    },
    /// A tensor's importance weights do not cover one of its experts (a bug: the matrix was
    /// checked against the model).
    #[error("{tensor}: importance weights of {values} values do not cover expert {expert:?} of {row} columns")]
    ImatrixCoverage {
        /// Output tensor.
        tensor: String,
        /// Values in its entry.
        values: usize,
        /// The expert.
        expert: Option<usize>,
        /// Row length.
        row: usize,
    },
    /// A tensor planned with an importance matrix, encoded without one (a bug).
    #[error("{tensor}: planned with an importance matrix, none given")]
    ImatrixNotGiven {
        /// Output tensor.
        tensor: String,
    },

    /// A planned tensor the input GGUF does not hold (a bug).
    #[error("{tensor}: not in the input")]
    NotInInput {
        /// Tensor name.
        tensor: String,
    },
}

impl From<IoError> for ConvertError {
    fn from(e: IoError) -> Self {
        ConvertError::Io(e)
    }
}

/// A GGUF error, with its I/O failures as [`ConvertError::Io`].
impl From<GgufError> for ConvertError {
    fn from(e: GgufError) -> Self {
        match e {
            GgufError::Io(e) => ConvertError::Io(e),
            e => ConvertError::Gguf(e),
        }
    }
}

/// A safetensors error, with its I/O failures as [`ConvertError::Io`].
impl From<StError> for ConvertError {
    fn from(e: StError) -> Self {
        match e {
            StError::Io(e) => ConvertError::Io(e),
            e => ConvertError::Safetensors(e),
        }
    }
}
