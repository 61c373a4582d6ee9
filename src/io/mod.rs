//! Layer 0 file I/O: memory maps of inputs (the only `unsafe` in grokit's I/O) and atomic
//! outputs (temp file, then rename), so a crash never leaves a half-written file under its
//! final name. (`ignore_file_size_signal` is the one other `unsafe` call: a signal disposition.)

pub mod atomic;
pub mod input;
pub mod mmap;
pub mod output;
pub mod signal;
pub mod term;

use std::path::PathBuf;

/// An I/O failure with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done ("open", "read", "write", "rename", ...).
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// Wrap an OS error with its operation and path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }
}

pub use signal::ignore_file_size_signal;
/// Read a whole small file, refusing to read more than `cap` bytes: `Ok(None)` when it holds
/// more. Unlike `metadata().len()` followed by `fs::read`, this is bounded even for a file that
/// grows meanwhile; only regular files are read (`input::open_regular`: a FIFO or `/dev/zero` is
/// an error naming the path, never a hang or an endless read).
pub fn read_capped(path: &std::path::Path, cap: u64) -> Result<Option<Vec<u8>>, IoError> {
    input::read_regular_capped(path, cap)
}

pub use atomic::AtomicFile;
pub use mmap::MappedFile;
