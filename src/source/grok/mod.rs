//! The Grok-1 release reader: discover `ckpt-0/tensorNNNNN_000` ([`layout`]), run the
//! allow-list pickle machine over each file (`reader`: opening), infer the configuration
//! (`config`), check every tensor against the parameter table (`check`), and hand out exact
//! dequantized values (`access`, `dequant`). Files are mapped on demand and payloads are used
//! in place. docs/formats/grok-checkpoint.md describes the format.

mod access;
mod check;
mod config;
mod dequant;
pub mod layout;
mod reader;

pub use access::OwnedMatrix;
pub use check::expected_file_size;
pub use dequant::{dequant_block_rows, dequant_matrix_rows, Matrix};
pub use layout::{discover, CkptFiles};
pub use reader::{open_options, Checkpoint, OpenOptions, Problem, Tensor};

use std::path::PathBuf;

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An I/O error on a file.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// The path is not a checkpoint directory.
    #[error(
        "{}: not a Grok-1 checkpoint: {why}",
        crate::io::term::escape_path(path)
    )]
    NotACheckpoint {
        /// path given
        path: PathBuf,
        /// why
        why: String,
    },
    /// Files are missing or unexpected (all of them listed).
    #[error("{}: {} missing and {} unexpected files{}{}", dir.display(), missing.len(), unexpected.len(), list(" missing: ", missing), list(" unexpected: ", unexpected))]
    Files {
        /// the ckpt dir
        dir: PathBuf,
        /// missing file names
        missing: Vec<String>,
        /// unexpected file names
        unexpected: Vec<String>,
    },
    /// A pickle could not be parsed.
    #[error("{} (tensor {tensor_e}): {source}", crate::io::term::escape_path(file), tensor_e = crate::io::term::Escaped(tensor))]
    Pickle {
        /// file
        file: PathBuf,
        /// parameter path
        tensor: String,
        /// cause (carries the byte offset)
        source: crate::pickle::PickleError,
    },
    /// A pickle parsed but is not an array the release contains.
    #[error("{} (tensor {tensor_e}): {source}", crate::io::term::escape_path(file), tensor_e = crate::io::term::Escaped(tensor))]
    Numpy {
        /// file
        file: PathBuf,
        /// parameter path
        tensor: String,
        /// cause
        source: crate::numpy::NumpyError,
    },
    /// The configuration could not be determined or is inconsistent.
    #[error("{}: {msg}", crate::io::term::escape_path(dir))]
    Config {
        /// the ckpt dir
        dir: PathBuf,
        /// what
        msg: String,
    },
    /// A tensor does not fit the model (wrong dtype, shape or scales), or is asked for wrongly.
    #[error("{} (tensor {tensor_e}): {msg}", crate::io::term::escape_path(file), tensor_e = crate::io::term::Escaped(tensor))]
    Tensor {
        /// file
        file: PathBuf,
        /// parameter path
        tensor: String,
        /// what
        msg: String,
    },
}

fn list(prefix: &str, v: &[String]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = v.iter().take(20).map(String::as_str).collect();
    let more = if v.len() > 20 {
        format!(" (+{} more)", v.len() - 20)
    } else {
        String::new()
    };
    format!(";{prefix}{}{more}", shown.join(", "))
}
