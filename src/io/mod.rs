//! Layer 0 file I/O: memory maps of inputs (the only `unsafe` in grokit's I/O) and atomic
//! outputs (temp file, then rename), so a crash never leaves a half-written file under its
//! final name. (`ignore_file_size_signal` is the one other `unsafe` call: a signal disposition.)

pub mod atomic;
pub mod mmap;
pub mod signal;

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
/// grows meanwhile or a FIFO / character device (`/dev/zero`) that reports length 0.
pub fn read_capped(path: &std::path::Path, cap: u64) -> Result<Option<Vec<u8>>, IoError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| IoError::new("open", path, e))?;
    let mut out = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| IoError::new("read", path, e))?;
    Ok(if out.len() as u64 > cap {
        None
    } else {
        Some(out)
    })
}

pub use atomic::AtomicFile;
pub use mmap::MappedFile;
