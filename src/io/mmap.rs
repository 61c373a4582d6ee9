//! Read-only memory maps of input files. THE ONLY MODULE in grokit's I/O layer with `unsafe`.
//!
//! Why map at all: the release's shards are up to 3.2 GB and their payloads are used in place
//! (zero-copy byte ranges), so mapping costs no memory beyond the page cache and lets the kernel
//! read ahead. Why it is `unsafe`: if another process truncates or rewrites a mapped file, reads
//! of the vanished pages raise SIGBUS (or see changed bytes). grokit accepts this contract for
//! inputs it was pointed at, as ripgrep and every GGUF/safetensors loader do; it never maps its
//! own outputs (those are written with ordinary `write` calls, so a full disk is an error, not
//! a signal). Files are checked for a stable size at open; `docs/security.md` states the rest.

use super::IoError;
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// A read-only mapping of a whole file (empty files are represented without a mapping).
pub struct MappedFile {
    path: PathBuf,
    map: Option<Mmap>,
    len: u64,
}

impl MappedFile {
    /// Map `path` read-only.
    pub fn open(path: &Path) -> Result<MappedFile, IoError> {
        let file = super::input::open_regular(path)?;
        let meta = file.metadata().map_err(|e| IoError::new("stat", path, e))?;
        if meta.is_dir() {
            return Err(IoError::new(
                "map",
                path,
                std::io::Error::other("is a directory"),
            ));
        }
        let len = meta.len();
        if len == 0 {
            return Ok(MappedFile {
                path: path.to_path_buf(),
                map: None,
                len: 0,
            });
        }
        // SAFETY: the mapping is read-only and private to this process. The remaining hazard,
        // another process truncating or modifying the file while it is mapped, is the documented
        // contract of this module (see the module docs and docs/security.md): grokit only maps
        // files the user named as inputs and never writes to them.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| IoError::new("map", path, e))?;
        if map.len() as u64 != len {
            return Err(IoError::new(
                "map",
                path,
                std::io::Error::other("file changed size while being mapped"),
            ));
        }
        Ok(MappedFile {
            path: path.to_path_buf(),
            map: Some(map),
            len,
        })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => m,
            None => &[],
        }
    }

    /// File length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drop the pages of a range from this process's resident set once it has been consumed, so
    /// peak RSS stays independent of file size. Safe here because the map is read-only and
    /// file-backed: dropped pages are re-read from the file if touched again.
    /// The range is clamped to the map (memmap2 requires it inside), so any caller's
    /// arithmetic is harmless.
    pub fn release(&self, start: usize, len: usize) {
        if let Some(m) = &self.map {
            let start = start.min(m.len());
            let len = len.min(m.len() - start);
            if len == 0 {
                return;
            }
            // SAFETY: MADV_DONTNEED on a read-only, file-backed, private mapping never changes
            // the contents a later read observes (pages are refaulted from the file); no
            // reference into the range outlives this advice in a way that could observe a
            // different value, because the file is not modified through this mapping.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        }
    }
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}
