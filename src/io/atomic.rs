//! Atomic outputs: write to a hidden sibling temp file, then rename over the final name.
//!
//! A crash, kill or full disk therefore never leaves a partial file under the final name, and a
//! failed write removes its temporary. Data is written with ordinary buffered `write` calls
//! (never through a writable map), so ENOSPC surfaces as an error naming the file.

use super::IoError;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; becomes visible under its final name only on [`AtomicFile::commit`].
pub struct AtomicFile {
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

/// The temp name used for `path`: `.<name>.grokit-tmp` in the same directory (same filesystem,
/// so the rename is atomic).
pub fn temp_path_for(path: &Path) -> PathBuf {
    // Built as an OsString so a non-UTF-8 final name keeps its exact bytes in the temp name.
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".grokit-tmp");
    path.with_file_name(name)
}

impl AtomicFile {
    /// Create the temp file for `final_path` (replacing a stale temp from an earlier crash).
    pub fn create(final_path: &Path) -> Result<AtomicFile, IoError> {
        let tmp_path = temp_path_for(final_path);
        let f = File::create(&tmp_path).map_err(|e| IoError::new("create", &tmp_path, e))?;
        Ok(AtomicFile {
            final_path: final_path.to_path_buf(),
            tmp_path,
            out: Some(BufWriter::with_capacity(8 << 20, f)),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Append bytes.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), IoError> {
        let out = self.out.as_mut().ok_or_else(|| {
            IoError::new(
                "write",
                &self.tmp_path,
                std::io::Error::other("already closed"),
            )
        })?;
        out.write_all(buf)
            .map_err(|e| IoError::new("write", &self.tmp_path, e))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Append `n` zero bytes.
    pub fn write_zeros(&mut self, mut n: u64) -> Result<(), IoError> {
        const Z: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(Z.len() as u64) as usize;
            self.write_all(&Z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Flush, fsync and rename to the final name. On failure (a full disk usually surfaces
    /// here, when the buffer is flushed) the temporary is removed.
    pub fn commit(mut self) -> Result<PathBuf, IoError> {
        let out = self.out.take().ok_or_else(|| {
            IoError::new(
                "commit",
                &self.tmp_path,
                std::io::Error::other("already closed"),
            )
        })?;
        let done = (|| {
            let f = out
                .into_inner()
                .map_err(|e| IoError::new("write", &self.tmp_path, e.into_error()))?;
            f.sync_all()
                .map_err(|e| IoError::new("fsync", &self.tmp_path, e))?;
            drop(f);
            fs::rename(&self.tmp_path, &self.final_path)
                .map_err(|e| IoError::new("rename", &self.final_path, e))
        })();
        match done {
            Ok(()) => Ok(self.final_path.clone()),
            Err(e) => {
                // `out` is gone, so Drop would not clean up: do it here.
                let _ = fs::remove_file(&self.tmp_path);
                Err(e)
            }
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map_err(|e| e.source)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Not committed: remove the temporary so nothing half-written is left behind.
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Write a whole small file atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn commit_and_abandon() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
            assert!(!p.exists());
        }
        assert!(!p.exists());
        assert!(!temp_path_for(&p).exists());
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"whole").unwrap();
        f.write_zeros(3).unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole\0\0\0");
    }

    #[test]
    fn failed_commit_removes_the_temporary() {
        let d = tempfile::tempdir().unwrap();
        // Renaming onto a non-empty directory fails after the flush and fsync succeeded.
        let p = d.path().join("out");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"data").unwrap();
        assert!(f.commit().is_err());
        assert!(!temp_path_for(&p).exists());
        assert!(p.join("keep").exists());
    }
}
