//! Atomic outputs: write to a hidden sibling temp file, then rename over the final name.
//!
//! A crash, kill or full disk therefore never leaves a partial file under the final name, and a
//! failed write removes its temporary. Data is written with ordinary `write` calls (never
//! through a writable map), so ENOSPC surfaces as an error naming the file.
//!
//! Large outputs (GGUF files, safetensors shards: [`AtomicFile::create_large`]) are written
//! with direct I/O on Linux (`O_DIRECT`, whole 8 MiB aligned chunks, the unaligned tail padded
//! and the file truncated back to its length) by a per-file I/O thread, so the thread that
//! encodes and hashes does not wait for the disk. Why: on the machines we measured, the page
//! cache, not the disk, is the limit of a buffered write — copying every byte into freshly
//! allocated cache pages ran at about 400 MB/s while the disk took 1.9 GB/s directly (see
//! docs/PERFORMANCE.md) — and a 300 GB conversion has no use for the cache it would evict.
//! A filesystem that refuses direct I/O (tmpfs, some network filesystems: `EINVAL`) gets
//! ordinary buffered writes instead, transparently; `set_direct_writes(false)` (the CLI's
//! `--buffered-io`, or `GROKIT_DIRECT_IO=0`) turns direct I/O off for the whole process.
//! The direct writer is `direct`; [`sequence`] writes a planned run of named tensors into an
//! atomic file (what the GGUF and safetensors writers share).

mod direct;
pub mod sequence;

use super::IoError;
use direct::Direct;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static DIRECT_WRITES: AtomicBool = AtomicBool::new(true);

/// Turn direct I/O for large outputs on or off for the whole process (on by default, except
/// when the environment says `GROKIT_DIRECT_IO=0`).
pub fn set_direct_writes(on: bool) {
    DIRECT_WRITES.store(on, Ordering::Relaxed);
}

/// Whether large outputs are written with direct I/O (when the filesystem allows).
pub fn direct_writes() -> bool {
    DIRECT_WRITES.load(Ordering::Relaxed)
        && std::env::var_os("GROKIT_DIRECT_IO").is_none_or(|v| v != "0")
}

/// A file being written; becomes visible under its final name only on [`AtomicFile::commit`].
pub struct AtomicFile {
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<Out>,
    written: u64,
    /// SHA-256 of the bytes written, for buffered files asked to hash (direct files hash on
    /// their own thread).
    hasher: Option<Sha256>,
}

enum Out {
    Buffered(BufWriter<File>),
    Direct(Direct),
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

/// Create the temporary `tmp` afresh: a stale one (a regular file left by a crash) is removed
/// first, then the file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (`create_new`), so a
/// symlink, FIFO or device planted under the temporary's name is never followed, opened or
/// written through: the create fails instead (`EEXIST`). Only a regular file or a symlink
/// (the link itself, not its target) is removed as stale; anything else is refused by name.
/// `extra_flags` are more `open(2)` flags (`O_DIRECT`).
pub fn create_temp(tmp: &Path, extra_flags: i32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::symlink_metadata(tmp) {
        Ok(m) if m.file_type().is_file() || m.file_type().is_symlink() => fs::remove_file(tmp)?,
        Ok(m) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "a temporary's name is taken by {}; remove it",
                    super::input::FileKind::of_meta(&m).describe()
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | extra_flags)
        .open(tmp)
}

impl AtomicFile {
    /// Create the temp file for `final_path` (replacing a stale temp from an earlier crash),
    /// written through an 8 MiB buffer.
    pub fn create(final_path: &Path) -> Result<AtomicFile, IoError> {
        let tmp_path = temp_path_for(final_path);
        let f = create_temp(&tmp_path, 0).map_err(|e| IoError::new("create", &tmp_path, e))?;
        Ok(AtomicFile {
            final_path: final_path.to_path_buf(),
            tmp_path,
            out: Some(Out::Buffered(BufWriter::with_capacity(8 << 20, f))),
            written: 0,
            hasher: None,
        })
    }

    /// [`AtomicFile::create`] that also computes the SHA-256 of everything written.
    pub fn create_hashed(final_path: &Path) -> Result<AtomicFile, IoError> {
        let mut f = Self::create(final_path)?;
        f.hasher = Some(Sha256::new());
        Ok(f)
    }

    /// Like [`AtomicFile::create`], for a large output written sequentially: with direct I/O
    /// when [`direct_writes`] allows and the filesystem supports it (see the module docs).
    pub fn create_large(final_path: &Path) -> Result<AtomicFile, IoError> {
        Self::create_large_with(final_path, false)
    }

    /// [`AtomicFile::create_large`] that also computes the SHA-256 of everything written
    /// (returned by [`AtomicFile::commit_with_sha256`]); with direct I/O on a thread of its own.
    pub fn create_large_hashed(final_path: &Path) -> Result<AtomicFile, IoError> {
        Self::create_large_with(final_path, true)
    }

    fn create_large_with(final_path: &Path, hash: bool) -> Result<AtomicFile, IoError> {
        if !direct_writes() {
            return if hash {
                Self::create_hashed(final_path)
            } else {
                Self::create(final_path)
            };
        }
        let tmp_path = temp_path_for(final_path);
        let d = Direct::open(&tmp_path, hash).map_err(|e| IoError::new("create", &tmp_path, e))?;
        Ok(AtomicFile {
            final_path: final_path.to_path_buf(),
            tmp_path,
            out: Some(Out::Direct(d)),
            written: 0,
            hasher: None,
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
        let r = match self.out.as_mut() {
            Some(Out::Buffered(o)) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(buf);
                }
                o.write_all(buf)
            }
            Some(Out::Direct(d)) => d.write_all(buf),
            None => Err(std::io::Error::other("already closed")),
        };
        r.map_err(|e| IoError::new("write", &self.tmp_path, e))?;
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
    pub fn commit(self) -> Result<PathBuf, IoError> {
        self.commit_with_sha256().map(|(p, _)| p)
    }

    /// [`AtomicFile::commit`], returning what was written: path, size and, for a hashed file,
    /// its SHA-256.
    pub fn commit_written(self) -> Result<Written, IoError> {
        let bytes = self.written;
        let (path, digest) = self.commit_with_sha256()?;
        Ok(Written {
            path,
            bytes,
            sha256: Sha256Sum(digest.map(|d| crate::base::hex::encode(&d))),
        })
    }

    /// [`AtomicFile::commit`], also returning the SHA-256 of the bytes written when the file
    /// was created hashed ([`AtomicFile::create_hashed`], [`AtomicFile::create_large_hashed`]).
    pub fn commit_with_sha256(mut self) -> Result<(PathBuf, Option<[u8; 32]>), IoError> {
        let out = self.out.take().ok_or_else(|| {
            IoError::new(
                "commit",
                &self.tmp_path,
                std::io::Error::other("already closed"),
            )
        })?;
        let hasher = self.hasher.take();
        let done = (|| {
            let (f, digest) = match out {
                Out::Buffered(b) => (
                    b.into_inner()
                        .map_err(|e| IoError::new("write", &self.tmp_path, e.into_error()))?,
                    hasher.map(|h| h.finalize().into()),
                ),
                Out::Direct(d) => d
                    .finish()
                    .map_err(|e| IoError::new("write", &self.tmp_path, e))?,
            };
            f.sync_all()
                .map_err(|e| IoError::new("fsync", &self.tmp_path, e))?;
            drop(f);
            super::output::check_replaceable(&self.final_path)?;
            fs::rename(&self.tmp_path, &self.final_path)
                .map_err(|e| IoError::new("rename", &self.final_path, e))?;
            Ok(digest)
        })();
        match done {
            Ok(digest) => Ok((self.final_path.clone(), digest)),
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
    /// Buffered files flush their buffer; direct files keep their partial chunk until
    /// [`AtomicFile::commit`] (a direct write must be whole aligned blocks).
    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(Out::Buffered(o)) => o.flush(),
            _ => Ok(()),
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

/// A committed output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Final path.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
    /// Its SHA-256, when it was computed while writing.
    pub sha256: Sha256Sum,
}

impl Written {
    /// The file name (last path component), as `SHA256SUMS` and indexes use it.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A file's SHA-256 in lower-case hex, or nothing when the file was not hashed while written
/// (GGUF outputs by default: hashing is a serial chain of its own, see docs/PERFORMANCE.md).
/// Displays as the hex digest, or `-` when not computed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Sha256Sum(pub Option<String>);

impl Sha256Sum {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Sum {
        Sha256Sum(Some(crate::base::hex::encode(&Sha256::digest(bytes))))
    }
    /// The hex digest, if computed.
    pub fn hex(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Display for Sha256Sum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hex().unwrap_or("-"))
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

    /// A symlink planted under the temporary's name is removed, not followed (the file it
    /// names keeps its bytes); a FIFO there is refused by name, never opened.
    #[test]
    fn temporaries_are_created_afresh_never_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        for large in [false, true] {
            let p = d.path().join(if large { "big.bin" } else { "out.bin" });
            std::os::unix::fs::symlink(&victim, temp_path_for(&p)).unwrap();
            let mut f = if large {
                AtomicFile::create_large(&p).unwrap()
            } else {
                AtomicFile::create(&p).unwrap()
            };
            f.write_all(b"new").unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"new");
            assert_eq!(fs::read(&victim).unwrap(), b"precious");
            assert!(fs::symlink_metadata(temp_path_for(&p)).is_err());
        }
        let p = d.path().join("f.bin");
        let st = std::process::Command::new("mkfifo")
            .arg(temp_path_for(&p))
            .status()
            .unwrap();
        assert!(st.success());
        let e = AtomicFile::create(&p).err().unwrap().to_string();
        assert!(e.contains("FIFO"), "{e}");
    }

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
        let mut f = AtomicFile::create_large(&p).unwrap();
        f.write_all(b"data").unwrap();
        assert!(f.commit().is_err());
        assert!(!temp_path_for(&p).exists());
    }
}
