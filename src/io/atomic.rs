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

use super::IoError;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

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
    /// SHA-256 of the bytes written, for buffered files asked to hash (direct files hash on
    /// their own thread).
    hasher: Option<Sha256>,
}

enum Out {
    Buffered(BufWriter<File>),
    Direct(Direct),
}

/// A `DIRECT_ALIGN`-aligned window of `DIRECT_CHUNK` bytes inside an ordinary `Vec` (found
/// with `align_offset`, so no allocator tricks and no `unsafe`).
struct Window {
    buf: Vec<u8>,
    start: usize,
    fill: usize,
}

impl Window {
    fn new() -> Window {
        let buf = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        Window {
            buf,
            start,
            fill: 0,
        }
    }
}

/// One filled window for the I/O thread: write `len` bytes of it at `pos`; `truncate_to` (the
/// file's final length) set for the last window, whose padding it cuts off.
struct Job {
    w: Window,
    pos: u64,
    len: usize,
    truncate_to: Option<u64>,
}

/// Windows in flight per file: one being filled, one being hashed, one queued, one being
/// written.
const WINDOWS: usize = 4;

/// Direct-I/O writer: the caller fills aligned windows; a per-file I/O thread writes them
/// whole at their offsets, so the caller (which also hashes and encodes) never waits for the
/// disk unless it gets `WINDOWS` chunks ahead of it.
struct Direct {
    cur: Window,
    /// File offset of `cur`'s first byte.
    pos: u64,
    /// Windows allocated so far (at most `WINDOWS`).
    windows: usize,
    /// To the hashing thread when there is one, else to the I/O thread.
    tx: Option<SyncSender<Job>>,
    free: Receiver<Window>,
    io: Option<JoinHandle<std::io::Result<(File, bool)>>>,
    hash: Option<JoinHandle<[u8; 32]>>,
}

impl Direct {
    /// Open `tmp` and start its I/O thread, and with `hash` a SHA-256 thread in front of it
    /// (windows pass through it in file order, so hashing overlaps both the caller's work
    /// and the disk's).
    fn open(tmp: &Path, hash: bool) -> std::io::Result<Direct> {
        let (file, direct) = open_direct(tmp)?;
        let (io_tx, io_rx) = sync_channel::<Job>(1);
        let (free_tx, free) = channel::<Window>();
        let tmp = tmp.to_path_buf();
        let io = std::thread::Builder::new()
            .name("grokit-direct-io".into())
            .spawn(move || io_thread(file, direct, &tmp, &io_rx, &free_tx))?;
        let (tx, hash) = if hash {
            let (h_tx, h_rx) = sync_channel::<Job>(1);
            let h = std::thread::Builder::new()
                .name("grokit-sha256".into())
                .spawn(move || hash_thread(&h_rx, &io_tx))?;
            (h_tx, Some(h))
        } else {
            (io_tx, None)
        };
        Ok(Direct {
            cur: Window::new(),
            pos: 0,
            windows: 1,
            tx: Some(tx),
            free,
            io: Some(io),
            hash,
        })
    }

    fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let w = &mut self.cur;
            let k = (DIRECT_CHUNK - w.fill).min(data.len());
            let at = w.start + w.fill;
            w.buf[at..at + k].copy_from_slice(&data[..k]);
            w.fill += k;
            data = &data[k..];
            if w.fill == DIRECT_CHUNK {
                self.submit(DIRECT_CHUNK, None)?;
            }
        }
        Ok(())
    }

    /// Hand `cur` to the I/O thread and take a free window (a new one while fewer than
    /// `WINDOWS` exist, else the next one the thread has finished with; none after the last,
    /// which carries `truncate_to`).
    fn submit(&mut self, len: usize, truncate_to: Option<u64>) -> std::io::Result<()> {
        let next = if truncate_to.is_some() {
            // the last window: nothing follows it
            Window {
                buf: Vec::new(),
                start: 0,
                fill: 0,
            }
        } else if self.windows < WINDOWS {
            match self.free.try_recv() {
                Ok(w) => w,
                Err(_) => {
                    self.windows += 1;
                    Window::new()
                }
            }
        } else {
            match self.free.recv() {
                Ok(w) => w,
                Err(_) => return Err(self.io_error()),
            }
        };
        let w = std::mem::replace(&mut self.cur, next);
        self.cur.fill = 0;
        let job = Job {
            w,
            pos: self.pos,
            len,
            truncate_to,
        };
        self.pos += len as u64;
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.io_error())
        }
    }

    /// The I/O thread stopped: join it and return the error it stopped on.
    fn io_error(&mut self) -> std::io::Error {
        self.tx = None;
        if let Some(h) = self.hash.take() {
            let _ = h.join();
        }
        match self.io.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => std::io::Error::other("the I/O thread panicked"),
            _ => std::io::Error::other("the I/O thread stopped"),
        }
    }

    /// Write what is left (padded to the alignment, the file then truncated back to its
    /// length), wait for the threads, and return the file for the fsync and the SHA-256 if
    /// one was computed.
    fn finish(mut self) -> std::io::Result<(File, Option<[u8; 32]>)> {
        let fill = self.cur.fill;
        if fill > 0 {
            let len = fill.next_multiple_of(DIRECT_ALIGN);
            let (a, b) = (self.cur.start + fill, self.cur.start + len);
            self.cur.buf[a..b].fill(0);
            self.submit(len, Some(self.pos + fill as u64))?;
        }
        self.tx = None;
        let digest = match self.hash.take().map(JoinHandle::join) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => return Err(std::io::Error::other("the hashing thread panicked")),
            None => None,
        };
        match self.io.take().map(JoinHandle::join) {
            Some(Ok(r)) => r.map(|(f, _)| (f, digest)),
            Some(Err(_)) => Err(std::io::Error::other("the I/O thread panicked")),
            None => Err(std::io::Error::other("the I/O thread stopped")),
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // Abandoned (or finished): let the I/O thread drain and stop before the temporary
        // is removed.
        self.tx = None;
        if let Some(h) = self.hash.take() {
            let _ = h.join();
        }
        if let Some(h) = self.io.take() {
            let _ = h.join();
        }
    }
}

/// The per-file hashing thread: hashes each window's real bytes (not the padding of the last)
/// and passes it on to the I/O thread; stops when the I/O thread does.
fn hash_thread(rx: &Receiver<Job>, io: &SyncSender<Job>) -> [u8; 32] {
    let mut h = Sha256::new();
    for job in rx {
        let real = job
            .truncate_to
            .map_or(job.len, |end| (end - job.pos) as usize);
        h.update(&job.w.buf[job.w.start..job.w.start + real]);
        if io.send(job).is_err() {
            break;
        }
    }
    h.finalize().into()
}

/// The per-file I/O thread: writes each job's window at its offset; on `EINVAL` from a
/// filesystem that does not do direct I/O after all, reopens the file buffered and writes
/// again. Stops at the first error, which `Direct` then reports.
fn io_thread(
    mut file: File,
    mut direct: bool,
    tmp: &Path,
    rx: &Receiver<Job>,
    free: &Sender<Window>,
) -> std::io::Result<(File, bool)> {
    for job in rx {
        let w = &job.w.buf[job.w.start..job.w.start + job.len];
        // A buffered fallback writes only the real bytes of a padded last window.
        let real = job
            .truncate_to
            .map_or(job.len, |end| (end - job.pos) as usize);
        #[cfg(test)]
        let refused = direct && tests::REFUSE_DIRECT.load(Ordering::Relaxed);
        #[cfg(not(test))]
        let refused = false;
        let r = if refused {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            file.write_all_at(w, job.pos)
        };
        match r {
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                file = OpenOptions::new().write(true).open(tmp)?;
                direct = false;
                file.write_all_at(&w[..real], job.pos)?;
            }
            r => r?,
        }
        if let Some(end) = job.truncate_to {
            file.set_len(end)?;
        }
        let _ = free.send(job.w);
    }
    Ok((file, direct))
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
            hasher: None,
        })
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
            let mut f = Self::create(final_path)?;
            f.hasher = hash.then(Sha256::new);
            return Ok(f);
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

    /// [`AtomicFile::commit`], also returning the SHA-256 of the bytes written when the file
    /// was created with [`AtomicFile::create_large_hashed`].
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
        for (i, len) in [
            0usize,
            1,
            4095,
            4096,
            4097,
            DIRECT_CHUNK,
            2 * DIRECT_CHUNK + 12345,
        ]
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
        // hashed, both ways
        for direct in [true, false] {
            set_direct_writes(direct);
            let p = d.path().join(format!("hashed-{direct}.bin"));
            let data: Vec<u8> = (0..2 * DIRECT_CHUNK + 999)
                .map(|k| (k % 253) as u8)
                .collect();
            let mut f = AtomicFile::create_large_hashed(&p).unwrap();
            for piece in data.chunks(3_000_017) {
                f.write_all(piece).unwrap();
            }
            let (_, digest) = f.commit_with_sha256().unwrap();
            let want: [u8; 32] = Sha256::digest(&data).into();
            assert_eq!(digest, Some(want));
            assert!(fs::read(&p).unwrap() == data);
        }
        set_direct_writes(true);
        // abandoned: nothing left
        let p = d.path().join("abandoned.bin");
        {
            let mut f = AtomicFile::create_large(&p).unwrap();
            f.write_all(&vec![7u8; DIRECT_CHUNK + 5]).unwrap();
        }
        assert!(!p.exists() && !temp_path_for(&p).exists());
    }

    /// Makes every direct write of the I/O threads fail with `EINVAL`, as a filesystem that
    /// accepts `O_DIRECT` at open but not at write does.
    pub(super) static REFUSE_DIRECT: AtomicBool = AtomicBool::new(false);

    /// The buffered fallback after `EINVAL` writes exactly the same bytes, padded last window
    /// included (only its real bytes), and the same SHA-256.
    #[test]
    fn a_refused_direct_write_falls_back_to_buffered() {
        let d = tempfile::tempdir().unwrap();
        REFUSE_DIRECT.store(true, Ordering::Relaxed);
        for len in [1usize, DIRECT_CHUNK + 4097] {
            let p = d.path().join(format!("fallback{len}.bin"));
            let data: Vec<u8> = (0..len).map(|k| (k % 241) as u8).collect();
            let mut f = AtomicFile::create_large_hashed(&p).unwrap();
            f.write_all(&data).unwrap();
            let (_, digest) = f.commit_with_sha256().unwrap();
            assert!(fs::read(&p).unwrap() == data, "length {len}");
            let want: [u8; 32] = Sha256::digest(&data).into();
            assert_eq!(digest, Some(want));
        }
        REFUSE_DIRECT.store(false, Ordering::Relaxed);
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
