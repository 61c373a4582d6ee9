//! The direct-I/O writer behind [`super::AtomicFile::create_large`]: the caller fills aligned
//! windows, a per-file I/O thread writes them whole at their offsets with `O_DIRECT` (and a
//! SHA-256 thread in front of it when the file is hashed), so encoding and hashing do not wait
//! for the disk. Why direct I/O at all: docs/decisions/0003-direct-io-writes.md.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Bytes per direct write: a multiple of every logical block size in use (512, 4096).
const DIRECT_CHUNK: usize = 8 << 20;
/// Alignment of direct-I/O buffers, sizes and offsets.
const DIRECT_ALIGN: usize = 4096;

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
pub(super) struct Direct {
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
    pub(super) fn open(tmp: &Path, hash: bool) -> std::io::Result<Direct> {
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

    pub(super) fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
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
    pub(super) fn finish(mut self) -> std::io::Result<(File, Option<[u8; 32]>)> {
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
                file = std::os::unix::fs::OpenOptionsExt::custom_flags(
                    OpenOptions::new().write(true),
                    libc::O_NOFOLLOW,
                )
                .open(tmp)?;
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
    // O_EXCL | O_NOFOLLOW through `create_temp`. A filesystem refusing O_DIRECT fails the open
    // with EINVAL (possibly after creating the file); the buffered retry removes that regular
    // file and creates it afresh.
    match super::create_temp(tmp, libc::O_DIRECT) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Ok((super::create_temp(tmp, 0)?, false))
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(tmp: &Path) -> std::io::Result<(File, bool)> {
    Ok((super::create_temp(tmp, 0)?, false))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{set_direct_writes, temp_path_for, AtomicFile};
    use super::*;
    use std::fs;
    use std::sync::atomic::AtomicBool;

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
}
