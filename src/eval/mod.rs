//! L3: whole-model evaluation, layer-major: perplexity and KL divergence the way
//! `llama-perplexity` computes them, on any model grokit reads, in bounded memory.
//!
//! Why layer-major: llama.cpp runs every chunk of text through all layers before the next
//! chunk, so every chunk reads the whole model; for the 318 GB release on a 24 GiB machine
//! that is a full read of the disk per chunk. Here the loop is turned inside out
//! ([`engine`]): every chunk goes through layer 0, then every chunk through layer 1, and so
//! on. Each layer's weights are requested once per group of chunks (one group whenever the
//! hidden states and the layer's working set fit the memory budget; otherwise the later groups
//! find the layer in the page cache), and only hidden states move between layers: in RAM
//! under the budget, else spilled to a scratch directory. After every layer the hidden states
//! are written to the state directory atomically and checksummed ([`state`]), so a killed run
//! continues from its last completed layer.
//!
//! The pieces:
//! - [`chunks`]: llama-perplexity's cutting of a token stream into chunks (BOS handling, the
//!   scored half of each chunk) and the shards of `--shard K/N`;
//! - [`logprob`]: the per-position arithmetic of llama-perplexity (negative log-likelihood,
//!   the quantized log-probability rows of its KL base file, the KL/Δp statistics) and the
//!   statistics it prints;
//! - [`kldfile`]: llama.cpp's `--kl-divergence-base` file, read and written;
//! - [`engine`]: the layer-major pass (embedding, layers, output head) under a memory budget,
//!   with an [`Observer`] seam for statistics of matrix inputs (what `imatrix` needs);
//! - [`state`]: per-group hidden states on disk, atomic and checksummed, and the run identity
//!   that makes `--resume` refuse a state that belongs to another run;
//! - [`perplexity`]: the evaluation itself (chunk results, totals) and [`parts`]: per-shard
//!   results and their merge (`--finish`);
//! - [`footprint`]: the model's stored bytes per layer (to report bytes read per run) and its
//!   fingerprint.
//!
//! The model is the reference model's layer-major API, `reference::Model` (embed / layer /
//! head): the forward pass's own kernels and numerics.

pub mod chunks;
pub mod engine;
pub mod footprint;
pub mod imatrix;
pub mod kldfile;
pub mod logprob;
pub mod parts;
pub mod perplexity;
pub mod state;

pub use crate::reference::{Model, Observer};

use crate::io::IoError;
use crate::reference::ReferenceError;
use std::path::PathBuf;

/// Errors of the evaluation layer.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model failed (a weight could not be read, bad dims, ...).
    #[error(transparent)]
    Model(#[from] ReferenceError),
    /// An I/O failure, with its path.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Bad input that is not a file format problem (text too short, bad `--ctx`, ...).
    #[error("{0}")]
    Input(String),
    /// A file grokit reads (KL base file, state, shard result) is malformed or inconsistent.
    #[error("{}{}: {reason}", path.display(), offset.map(|o| format!(" at byte offset {o}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// Where in it, when known.
        offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A saved state or shard result belongs to another run.
    #[error("{}: {reason}", path.display())]
    Mismatch {
        /// The state directory or result file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

impl EvalError {
    /// A format error in `path` at `offset`.
    pub fn file(path: impl Into<PathBuf>, offset: Option<u64>, reason: impl Into<String>) -> Self {
        EvalError::File {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
