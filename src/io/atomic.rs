//! Atomic outputs: write to a hidden sibling temp file, then rename over the final name.
//!
//! A crash, kill or full disk therefore never leaves a partial file under the final name, and a
//! failed write removes its temporary. Data is written with ordinary `write` calls (never
//! through a writable map), so ENOSPC surfaces as an error naming the file.
//!
//! Large outputs (GGUF files, safetensors shards: [`AtomicFile::create_large`]) are written
//! with direct I/O on Linux (`O_DIRECT`, whole 8 MiB aligned chunks, the unaligned tail padded
//! and the file truncated back to its length). Why: on the machines we measured, the page
//! cache, not the disk, is the limit of a buffered write — copying every byte into freshly
//! allocated cache pages ran at about 400 MB/s while the disk took 1.9 GB/s directly (see
//! docs/PERFORMANCE.md) — and a 300 GB conversion has no use for the cache it would evict.
//! A filesystem that refuses direct I/O (tmpfs, some network filesystems: `EINVAL`) gets
//! ordinary buffered writes instead, transparently; `set_direct_writes(false)` (the CLI's
//! `--buffered-io`, or `GROKIT_DIRECT_IO=0`) turns direct I/O off for the whole process.

use super::IoError;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes per direct write: a multiple of every logical block size in use (512, 4096).
const DIRECT_CHUNK: usize = 8 << 20;
/// Alignment of direct-I/O buffers, sizes and offsets.
const DIRECT_ALIGN: usize = 4096;

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
}

enum Out {
    Buffered(BufWriter<File>),
    Direct(Direct),
}

/// Direct-I/O writer: an aligned window inside `buf` is filled and written whole at `pos`.
struct Direct {
    file: File,
    /// `O_DIRECT` still in effect (false once the filesystem refused it).
    direct: bool,
    buf: Vec<u8>,
    /// Offset of the `DIRECT_ALIGN`-aligned window of `DIRECT_CHUNK` bytes in `buf`.
    start: usize,
    /// Bytes in the window.
    fill: usize,
    /// File offset of the window's first byte.
    pos: u64,
}

impl Direct {
    fn open(tmp: &Path) -> std::io::Result<Direct> {
        let (file, direct) = open_direct(tmp)?;
        let buf = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        Ok(Direct {
            file,
            direct,
            buf,
            start,
            fill: 0,
            pos: 0,
        })
    }

    fn write_all(&mut self, mut data: &[u8], tmp: &Path) -> std::io::Result<()> {
        while !data.is_empty() {
            let k = (DIRECT_CHUNK - self.fill).min(data.len());
            let at = self.start + self.fill;
            self.buf[at..at + k].copy_from_slice(&data[..k]);
            self.fill += k;
            data = &data[k..];
            if self.fill == DIRECT_CHUNK {
                self.write_window(DIRECT_CHUNK, tmp)?;
                self.pos += DIRECT_CHUNK as u64;
                self.fill = 0;
            }
        }
        Ok(())
    }

    /// Write the first `len` bytes of the window at `pos`; on `EINVAL` from a filesystem that
    /// does not do direct I/O after all, reopen buffered and write again.
    fn write_window(&mut self, len: usize, tmp: &Path) -> std::io::Result<()> {
        let w = &self.buf[self.start..self.start + len];
        match self.file.write_all_at(w, self.pos) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.file = OpenOptions::new().write(true).open(tmp)?;
                self.direct = false;
                self.file.write_all_at(w, self.pos)
            }
            r => r,
        }
    }

    /// Write what is left (padded to the alignment, then truncated back) and fsync.
    fn finish(mut self, tmp: &Path) -> std::io::Result<File> {
        if self.fill > 0 {
            let len = if self.direct {
                self.fill.next_multiple_of(DIRECT_ALIGN)
            } else {
                self.fill
            };
            let (a, b) = (self.start + self.fill, self.start + len);
            self.buf[a..b].fill(0);
            self.write_window(len, tmp)?;
            let end = self.pos + self.fill as u64;
            if len != self.fill {
                self.file.set_len(end)?;
            }
            self.pos = end;
            self.fill = 0;
        }
        Ok(self.file)
    }
}

#[cfg(target_os = "linux")]
fn open_direct(tmp: &Path) -> std::io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    match o.clone().custom_flags(libc::O_DIRECT).open(tmp) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((o.open(tmp)?, false)),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(tmp: &Path) -> std::io::Result<(File, bool)> {
    Ok((File::create(tmp)?, false))
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
    /// Create the temp file for `final_path` (replacing a stale temp from an earlier crash),
    /// written through an 8 MiB buffer.
    pub fn create(final_path: &Path) -> Result<AtomicFile, IoError> {
        let tmp_path = temp_path_for(final_path);
        let f = File::create(&tmp_path).map_err(|e| IoError::new("create", &tmp_path, e))?;
        Ok(AtomicFile {
            final_path: final_path.to_path_buf(),
            tmp_path,
            out: Some(Out::Buffered(BufWriter::with_capacity(8 << 20, f))),
            written: 0,
        })
    }

    /// Like [`AtomicFile::create`], for a large output written sequentially: with direct I/O
    /// when [`direct_writes`] allows and the filesystem supports it (see the module docs).
    pub fn create_large(final_path: &Path) -> Result<AtomicFile, IoError> {
        if !direct_writes() {
            return Self::create(final_path);
        }
        let tmp_path = temp_path_for(final_path);
        let d = Direct::open(&tmp_path).map_err(|e| IoError::new("create", &tmp_path, e))?;
        Ok(AtomicFile {
            final_path: final_path.to_path_buf(),
            tmp_path,
            out: Some(Out::Direct(d)),
            written: 0,
        })
    }

    /// Whether this file is being written with direct I/O (false after a fallback).
    pub fn is_direct(&self) -> bool {
        matches!(&self.out, Some(Out::Direct(d)) if d.direct)
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
            Some(Out::Buffered(o)) => o.write_all(buf),
            Some(Out::Direct(d)) => d.write_all(buf, &self.tmp_path),
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
    pub fn commit(mut self) -> Result<PathBuf, IoError> {
        let out = self.out.take().ok_or_else(|| {
            IoError::new(
                "commit",
                &self.tmp_path,
                std::io::Error::other("already closed"),
            )
        })?;
        let done = (|| {
            let f = match out {
                Out::Buffered(b) => b
                    .into_inner()
                    .map_err(|e| IoError::new("write", &self.tmp_path, e.into_error()))?,
                Out::Direct(d) => d
                    .finish(&self.tmp_path)
                    .map_err(|e| IoError::new("write", &self.tmp_path, e))?,
            };
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

    /// Direct writes of every size class (empty, under a block, several chunks plus an odd
    /// tail, written in odd pieces) give exactly the bytes written, on whatever filesystem the
    /// temp dir is (direct or fallen back).
    #[test]
    fn large_files_hold_exactly_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        for (i, len) in [0usize, 1, 4095, 4096, 4097, DIRECT_CHUNK, 2 * DIRECT_CHUNK + 12345]
            .into_iter()
            .enumerate()
        {
            let p = d.path().join(format!("big{i}.bin"));
            let data: Vec<u8> = (0..len).map(|k| (k * 31 + k / 7) as u8).collect();
            let mut f = AtomicFile::create_large(&p).unwrap();
            for piece in data.chunks(1_000_003) {
                f.write_all(piece).unwrap();
            }
            assert_eq!(f.written(), len as u64);
            assert!(!p.exists());
            f.commit().unwrap();
            assert!(!temp_path_for(&p).exists());
            assert!(fs::read(&p).unwrap() == data, "length {len}");
        }
        // abandoned: nothing left
        let p = d.path().join("abandoned.bin");
        {
            let mut f = AtomicFile::create_large(&p).unwrap();
            f.write_all(&vec![7u8; DIRECT_CHUNK + 5]).unwrap();
        }
        assert!(!p.exists() && !temp_path_for(&p).exists());
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
