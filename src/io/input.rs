//! Opening inputs: only regular files are data.
//!
//! Why: a FIFO in place of a shard, a GGUF part or a `config.json` made every command block
//! forever in `open(2)` or `read(2)` (issue #18, class 1); a character device such as
//! `/dev/zero` or `/dev/urandom` reads without end; opening some devices has side effects (a
//! tape rewinds, a watchdog arms). grokit therefore reads data only from regular files and says
//! what the path is otherwise, with exit code 2 from the CLI.
//!
//! How, without blocking and without a race: [`open_regular`] first `stat`s the path (following
//! symlinks, as the user means the file a link names) and refuses anything that is not a
//! regular file WITHOUT opening it; then it opens with `O_NONBLOCK | O_NOCTTY`, so that if the
//! path was replaced by a FIFO between the `stat` and the `open` the open returns at once
//! instead of waiting for a writer (and a terminal never becomes the controlling one); and then
//! it checks the metadata of the descriptor it actually opened (`fstat`), which is what every
//! later read uses. `O_NONBLOCK` stays set on the returned file: for regular files Linux ignores
//! it (reads of regular files never return `EAGAIN`), and clearing it would need `fcntl`, one
//! more `unsafe` call for no effect.
//!
//! Side files are read whole through [`read_to_end_capped`] (`Read::take(cap + 1)`), so a
//! file that grows after it was opened cannot make grokit allocate beyond its cap.

use super::IoError;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a path names, as far as grokit's input and output rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: the only kind grokit reads data from or replaces.
    Regular,
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device (`/dev/null`, a terminal, `/dev/zero`).
    CharDevice,
    /// A block device (a disk or partition).
    BlockDevice,
    /// A symbolic link (seen only where links are not followed).
    Symlink,
}

impl FileKind {
    /// The kind of a file type from `stat`/`lstat`.
    pub fn of(ft: std::fs::FileType) -> FileKind {
        if ft.is_file() {
            FileKind::Regular
        } else if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else {
            // The only type left on Unix.
            FileKind::BlockDevice
        }
    }

    /// The kind of the file `meta` describes.
    pub fn of_meta(meta: &Metadata) -> FileKind {
        FileKind::of(meta.file_type())
    }

    /// "a FIFO (named pipe)", "a directory", ... for messages.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Symlink => "a symbolic link",
        }
    }
}

/// The cause carried by an [`IoError`] when an input is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is {}, not a regular file (grokit reads data only from regular files)", kind.describe())]
pub struct NotRegular {
    /// What the path is instead.
    pub kind: FileKind,
}

impl NotRegular {
    /// As an OS-style error (kind `InvalidInput`) that keeps this value for
    /// [`IoError::not_regular`].
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, self)
    }
}

impl IoError {
    /// `Some(kind)` when this error is the refusal of a path that is not a regular file.
    pub fn not_regular(&self) -> Option<FileKind> {
        not_regular_kind(&self.source)
    }
}

/// `Some(kind)` when `e` carries a [`NotRegular`] refusal.
pub fn not_regular_kind(e: &std::io::Error) -> Option<FileKind> {
    e.get_ref()
        .and_then(|x| x.downcast_ref::<NotRegular>())
        .map(|n| n.kind)
}

fn regular_or_refuse(meta: &Metadata) -> std::io::Result<()> {
    match FileKind::of_meta(meta) {
        FileKind::Regular => Ok(()),
        kind => Err(NotRegular { kind }.into_io()),
    }
}

/// [`open_regular`] with a bare `std::io::Error` (for code that reports its own context, such
/// as the hashing pipeline). A refusal carries [`NotRegular`]; see [`not_regular_kind`].
pub fn open_regular_io(path: &Path) -> std::io::Result<File> {
    // 1. Refuse without opening: opening a FIFO blocks, opening a device may act.
    regular_or_refuse(&std::fs::metadata(path)?)?;
    // 2. Open without blocking even if the path was swapped for a FIFO since the stat.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // 3. Decide on what was actually opened.
    regular_or_refuse(&f.metadata()?)?;
    Ok(f)
}

/// Open `path` for reading only if it is a regular file (after following symlinks), never
/// blocking; anything else is an error naming the path and what it is ("open /x/shard: is a
/// FIFO (named pipe), not a regular file ...").
pub fn open_regular(path: &Path) -> Result<File, IoError> {
    open_regular_io(path).map_err(|e| IoError::new("open", path, e))
}

/// True when anything is at `path` (following symlinks): a regular file or not. Code that looks
/// for an optional input (`config.json`, `tokenizer.model`, an index) asks this instead of
/// `is_file()`, then opens with [`open_regular`]: a FIFO or a device in place of the file is
/// refused with its name and kind instead of being taken for an absent file.
pub fn present(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}

/// True when `path` names something that is not a directory (a regular file, or a special
/// file that [`open_regular`] will refuse by name): for telling a file input from a directory
/// input (format sniffing) without taking a FIFO for "not a file".
pub fn is_non_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
}

/// Read everything `r` yields, but at most `cap` bytes: `Ok(None)` when there is more.
/// The buffer grows with the bytes actually read (never sized by a declared length).
pub fn read_to_end_capped(r: impl Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    r.take(cap.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= cap).then_some(out))
}

/// Read a whole regular file of at most `cap` bytes: `Ok(None)` when it holds more. The file
/// is opened with [`open_regular`] and read with [`read_to_end_capped`].
pub fn read_regular_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, IoError> {
    let f = open_regular(path)?;
    read_to_end_capped(f, cap).map_err(|e| IoError::new("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(p: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn regular_files_open_everything_else_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"data").unwrap();
        let mut s = String::new();
        open_regular(&f).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
        // through a symlink
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert!(open_regular(&l).is_ok());
        // a FIFO with no writer: refused at once, never blocking
        let fifo = d.path().join("fifo");
        mkfifo(&fifo);
        let t = Instant::now();
        let e = open_regular(&fifo).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(e.not_regular(), Some(FileKind::Fifo));
        let msg = e.to_string();
        assert!(
            msg.contains(&fifo.display().to_string()) && msg.contains("FIFO"),
            "{msg}"
        );
        // a symlink to a FIFO is the FIFO
        let lf = d.path().join("lf");
        std::os::unix::fs::symlink(&fifo, &lf).unwrap();
        assert_eq!(
            open_regular(&lf).unwrap_err().not_regular(),
            Some(FileKind::Fifo)
        );
        // a directory, a character device, a socket
        assert_eq!(
            open_regular(d.path()).unwrap_err().not_regular(),
            Some(FileKind::Directory)
        );
        assert_eq!(
            open_regular(Path::new("/dev/null"))
                .unwrap_err()
                .not_regular(),
            Some(FileKind::CharDevice)
        );
        let sock = d.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(
            open_regular(&sock).unwrap_err().not_regular(),
            Some(FileKind::Socket)
        );
        // missing: the OS error, not a kind
        let e = open_regular(&d.path().join("absent")).unwrap_err();
        assert_eq!(e.not_regular(), None);
        assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn probes_see_special_files_as_present() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("config.json");
        mkfifo(&fifo);
        // `is_file()` says "absent" for a FIFO; these say "there is something to open".
        assert!(!fifo.is_file());
        assert!(present(&fifo) && is_non_dir(&fifo));
        assert!(present(d.path()) && !is_non_dir(d.path()));
        assert!(!present(&d.path().join("absent")) && !is_non_dir(&d.path().join("absent")));
        assert!(present(Path::new("/dev/null")) && is_non_dir(Path::new("/dev/null")));
    }

    #[test]
    fn capped_reads_stop_at_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, vec![7u8; 100]).unwrap();
        assert_eq!(read_regular_capped(&f, 100).unwrap().unwrap().len(), 100);
        assert_eq!(read_regular_capped(&f, 99).unwrap(), None);
        // an endless reader is cut at cap + 1 bytes
        assert_eq!(read_to_end_capped(std::io::repeat(1), 1000).unwrap(), None);
        assert_eq!(
            read_regular_capped(Path::new("/dev/zero"), 10)
                .unwrap_err()
                .not_regular(),
            Some(FileKind::CharDevice)
        );
    }
}
