//! One output-path policy for every command: what an output path may name, and how it is
//! written.
//!
//! Why: `forward --logits-out` and `verify --write-manifest` replaced the model file, a shard
//! or `config.json` when given one as their output, and, run as root, an output naming a
//! character device (`--logits-out /dev/null`, `quantize -o /dev/full --force`) replaced the
//! device node with a regular file, breaking `/dev/null` for the whole machine (issue #18,
//! classes 5 and 6). The rules, decided once here and listed in `docs/security.md`:
//!
//! - **Absent, or a regular file** (after following symlinks): written to a temporary beside
//!   the file and renamed over it when complete ([`super::AtomicFile`]). A symlink is followed
//!   and its *target* replaced (the link stays a link); a dangling symlink is refused. An
//!   existing file needs `--force` unless the command's rules say its outputs may be replaced.
//! - **A character device or a FIFO** (`/dev/null`, a terminal, a pipe): streamed into, with
//!   no temporary and no rename, when the command can write sequentially (`streams`);
//!   refused otherwise. Nothing is ever renamed over a device.
//! - **`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`**: always streamed into
//!   (appending, when the descriptor is a redirected regular file), never renamed over: the
//!   name is a window on a descriptor the shell opened, not a file to replace.
//! - **A directory, a block device, a socket**: refused.
//! - **One of the command's inputs** (same device and inode, so through symlinks and hard
//!   links), or a path **inside one of its input directories**: refused, also with `--force`
//!   unless the rules say `--force` may replace an input.
//!
//! The check is done before anything is written ([`resolve_output`]) and repeated at the last
//! moment: [`check_replaceable`] runs in `AtomicFile::commit` right before the rename, so a
//! device node that appeared under the final name meanwhile is still never replaced.

use super::input::FileKind;
use super::{AtomicFile, IoError};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a command's output may be: its inputs and the options that relax the defaults.
#[derive(Debug, Clone, Default)]
pub struct OutputRules {
    /// Files the command reads: the output may not be any of them.
    pub inputs: Vec<PathBuf>,
    /// Directories the command reads (a checkpoint directory): the output may not be inside.
    pub input_dirs: Vec<PathBuf>,
    /// `--force` was given: an existing output file may be replaced.
    pub force: bool,
    /// Existing regular files are replaced without `--force` (for derived files such as
    /// logits dumps whose callers check the existing file's kind themselves).
    pub replace_without_force: bool,
    /// `--force` also allows replacing one of the inputs (never the default).
    pub force_replaces_inputs: bool,
    /// The command writes sequentially and may stream into a character device or FIFO.
    pub streams: bool,
}

/// Where and how an output will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A regular file (absent or to be replaced): temporary beside it, then rename.
    File {
        /// The path to write, symlinks resolved (the link's target).
        path: PathBuf,
        /// A file exists there now and will be replaced.
        replaces: bool,
    },
    /// Written into directly: a character device, a FIFO, or a descriptor path.
    Stream {
        /// The path as given.
        path: PathBuf,
        /// What it is (a regular file only behind a descriptor path such as `/dev/stdout`).
        kind: FileKind,
    },
}

/// Why an output path was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// It names something grokit never writes over.
    #[error("{}: refused as an output: it is {}; grokit replaces only regular files{}", path.display(), kind.describe(), stream_hint(*kind))]
    NotReplaceable {
        /// The output path.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// It is one of the command's inputs.
    #[error("{}: refused as an output: it is the input {} (the same file)", path.display(), input.display())]
    IsInput {
        /// The output path.
        path: PathBuf,
        /// The input it is.
        input: PathBuf,
    },
    /// It lies inside a directory the command reads.
    #[error("{}: refused as an output: it is inside the input directory {}", path.display(), dir.display())]
    InsideInput {
        /// The output path.
        path: PathBuf,
        /// The input directory.
        dir: PathBuf,
    },
    /// It exists and the command was not given `--force`.
    #[error("{}: already exists (use --force to replace it)", path.display())]
    Exists {
        /// The output path.
        path: PathBuf,
    },
    /// A symlink whose target does not exist.
    #[error("{}: refused as an output: it is a symbolic link to {}, which does not exist", path.display(), target.display())]
    DanglingSymlink {
        /// The output path.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// Looking at the path failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

fn stream_hint(kind: FileKind) -> &'static str {
    match kind {
        FileKind::CharDevice | FileKind::Fifo => {
            " (this command cannot stream into a device or pipe)"
        }
        _ => "",
    }
}

/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: names of descriptors the
/// process already has, which are streamed into and never renamed over.
pub fn is_descriptor_path(path: &Path) -> bool {
    let s = path.as_os_str().as_encoded_bytes();
    s == b"/dev/stdout"
        || s == b"/dev/stderr"
        || s.starts_with(b"/dev/fd/")
        || s.starts_with(b"/proc/self/fd/")
        || s.starts_with(b"/proc/thread-self/fd/")
}

type FileId = (u64, u64);

fn id(m: &Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// Decide how `path` may be written under `rules`, before anything is written.
pub fn resolve_output(path: &Path, rules: &OutputRules) -> Result<OutputTarget, OutputError> {
    let io = |op, e| OutputError::Io(IoError::new(op, path, e));
    let lmeta = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("stat", e)),
    };
    let descriptor = is_descriptor_path(path);
    let (resolved, meta) = match lmeta {
        None => {
            check_not_inside(path, rules)?;
            return Ok(OutputTarget::File {
                path: path.to_path_buf(),
                replaces: false,
            });
        }
        Some(m) if m.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(target_meta) => {
                let target = if descriptor {
                    path.to_path_buf()
                } else {
                    path.canonicalize().map_err(|e| io("resolve", e))?
                };
                (target, target_meta)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OutputError::DanglingSymlink {
                    path: path.to_path_buf(),
                    target: std::fs::read_link(path).unwrap_or_default(),
                })
            }
            Err(e) => return Err(io("stat", e)),
        },
        Some(m) => (path.to_path_buf(), m),
    };
    let kind = FileKind::of_meta(&meta);
    // Inputs first: an input is refused whatever else the path is.
    if !(rules.force && rules.force_replaces_inputs) {
        let mine = id(&meta);
        for input in &rules.inputs {
            if std::fs::metadata(input).is_ok_and(|m| id(&m) == mine) {
                return Err(OutputError::IsInput {
                    path: path.to_path_buf(),
                    input: input.clone(),
                });
            }
        }
    }
    let refuse = || OutputError::NotReplaceable {
        path: path.to_path_buf(),
        kind,
    };
    match kind {
        FileKind::Regular if descriptor => Ok(OutputTarget::Stream {
            path: path.to_path_buf(),
            kind,
        }),
        FileKind::Regular => {
            check_not_inside(&resolved, rules)?;
            if !(rules.force || rules.replace_without_force) {
                return Err(OutputError::Exists {
                    path: path.to_path_buf(),
                });
            }
            Ok(OutputTarget::File {
                path: resolved,
                replaces: true,
            })
        }
        FileKind::CharDevice | FileKind::Fifo if rules.streams || descriptor => {
            Ok(OutputTarget::Stream {
                path: path.to_path_buf(),
                kind,
            })
        }
        _ => Err(refuse()),
    }
}

/// Refuse `path` when it lies inside one of `rules.input_dirs` (symlinks resolved, so an
/// output directory that does not exist yet is judged by its deepest existing ancestor).
fn check_not_inside(path: &Path, rules: &OutputRules) -> Result<(), OutputError> {
    if rules.input_dirs.is_empty() {
        return Ok(());
    }
    let dirs: Vec<(FileId, &PathBuf)> = rules
        .input_dirs
        .iter()
        .filter_map(|d| std::fs::metadata(d).ok().map(|m| (id(&m), d)))
        .collect();
    // The deepest existing ancestor of the path (the path itself counts), canonicalized.
    let mut cur = path;
    let start = loop {
        let probe = if cur.as_os_str().is_empty() {
            Path::new(".")
        } else {
            cur
        };
        if let Ok(c) = probe.canonicalize() {
            break c;
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => return Ok(()),
        }
    };
    for a in start.ancestors() {
        if let Ok(m) = std::fs::metadata(a) {
            if let Some((_, d)) = dirs.iter().find(|(i, _)| *i == id(&m)) {
                return Err(OutputError::InsideInput {
                    path: path.to_path_buf(),
                    dir: (*d).clone(),
                });
            }
        }
    }
    Ok(())
}

/// The commit-time re-check (called by `AtomicFile::commit` right before its rename): `path`
/// must be absent or a regular file, never a device, FIFO, socket, directory or symlink.
pub fn check_replaceable(path: &Path) -> Result<(), IoError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("stat", path, e)),
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(IoError::new(
            "rename",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "refusing to replace {}: grokit replaces only regular files",
                    FileKind::of_meta(&m).describe()
                ),
            ),
        )),
    }
}

/// An output being written: an [`AtomicFile`] or a stream into a device, FIFO or descriptor.
pub enum OutputFile {
    /// Temporary then rename (boxed: it is five times the size of a stream).
    Atomic(Box<AtomicFile>),
    /// Written in place, sequentially.
    Stream(StreamFile),
}

/// A device, FIFO or descriptor being written into (no temporary, no rename).
pub struct StreamFile {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

impl OutputTarget {
    /// The path that will be written (for a replaced symlink, its target).
    pub fn path(&self) -> &Path {
        match self {
            OutputTarget::File { path, .. } | OutputTarget::Stream { path, .. } => path,
        }
    }

    /// True when the output is streamed (no temporary, no rename).
    pub fn is_stream(&self) -> bool {
        matches!(self, OutputTarget::Stream { .. })
    }

    /// Start writing: an [`AtomicFile`] for files; for streams, the path opened for writing
    /// (never created or truncated) after checking that it is still the kind it was resolved
    /// as. A FIFO's open waits for a reader, as `cat > fifo` does.
    pub fn create(&self) -> Result<OutputFile, IoError> {
        match self {
            OutputTarget::File { path, .. } => {
                Ok(OutputFile::Atomic(Box::new(AtomicFile::create(path)?)))
            }
            OutputTarget::Stream { path, kind } => {
                let mut o = OpenOptions::new();
                o.write(true).custom_flags(libc::O_NOCTTY);
                if *kind == FileKind::Regular {
                    o.append(true);
                }
                let f = o.open(path).map_err(|e| IoError::new("open", path, e))?;
                let now = f.metadata().map_err(|e| IoError::new("stat", path, e))?;
                if FileKind::of_meta(&now) != *kind {
                    return Err(IoError::new(
                        "open",
                        path,
                        std::io::Error::other(format!(
                            "changed from {} to {} since it was checked",
                            kind.describe(),
                            FileKind::of_meta(&now).describe()
                        )),
                    ));
                }
                Ok(OutputFile::Stream(StreamFile {
                    path: path.clone(),
                    out: BufWriter::with_capacity(1 << 20, f),
                    written: 0,
                }))
            }
        }
    }
}

impl OutputFile {
    /// Append bytes.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), IoError> {
        match self {
            OutputFile::Atomic(a) => AtomicFile::write_all(a, buf),
            OutputFile::Stream(s) => {
                s.out
                    .write_all(buf)
                    .map_err(|e| IoError::new("write", &s.path, e))?;
                s.written += buf.len() as u64;
                Ok(())
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        match self {
            OutputFile::Atomic(a) => a.written(),
            OutputFile::Stream(s) => s.written,
        }
    }

    /// Finish: rename the temporary into place, or flush the stream (a full `/dev/full` or
    /// a closed pipe surfaces here at the latest). Returns the path written.
    pub fn commit(self) -> Result<PathBuf, IoError> {
        match self {
            OutputFile::Atomic(a) => (*a).commit(),
            OutputFile::Stream(mut s) => {
                s.out
                    .flush()
                    .map_err(|e| IoError::new("write", &s.path, e))?;
                Ok(s.path)
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map_err(|e| e.source)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OutputFile::Atomic(a) => a.flush(),
            OutputFile::Stream(s) => s.out.flush(),
        }
    }
}

/// Resolve `path` under `rules` and write `bytes` to it whole (temporary + rename, or stream).
pub fn write_output(
    path: &Path,
    rules: &OutputRules,
    bytes: &[u8],
) -> Result<PathBuf, OutputError> {
    let target = resolve_output(path, rules)?;
    let mut f = target.create()?;
    f.write_all(bytes)?;
    Ok(f.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    #[test]
    fn inputs_are_refused_through_links() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("model.gguf");
        std::fs::write(&input, b"GGUF").unwrap();
        let hard = d.path().join("hard");
        std::fs::hard_link(&input, &hard).unwrap();
        let soft = d.path().join("soft");
        std::os::unix::fs::symlink(&input, &soft).unwrap();
        let rules = OutputRules {
            inputs: vec![input.clone()],
            force: true,
            ..Default::default()
        };
        for p in [&input, &hard, &soft] {
            let e = resolve_output(p, &rules).unwrap_err();
            assert!(matches!(e, OutputError::IsInput { .. }), "{p:?}: {e}");
        }
        // --force may replace an input only where the rules say so
        let lax = OutputRules {
            force_replaces_inputs: true,
            ..rules.clone()
        };
        assert!(resolve_output(&input, &lax).is_ok());
        assert_eq!(std::fs::read(&input).unwrap(), b"GGUF");
    }

    #[test]
    fn existing_needs_force_and_symlinks_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("out.npy");
        let rules = OutputRules::default();
        assert_eq!(
            resolve_output(&f, &rules).unwrap(),
            OutputTarget::File {
                path: f.clone(),
                replaces: false
            }
        );
        std::fs::write(&f, b"old").unwrap();
        assert!(matches!(
            resolve_output(&f, &rules),
            Err(OutputError::Exists { .. })
        ));
        let force = OutputRules {
            force: true,
            ..Default::default()
        };
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let t = resolve_output(&link, &force).unwrap();
        assert_eq!(t.path(), f.canonicalize().unwrap());
        let mut w = t.create().unwrap();
        w.write_all(b"new").unwrap();
        w.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            resolve_output(&dangling, &force),
            Err(OutputError::DanglingSymlink { .. })
        ));
    }

    #[test]
    fn inside_an_input_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("ckpt-0");
        std::fs::create_dir(&ck).unwrap();
        let alias = d.path().join("alias");
        std::os::unix::fs::symlink(&ck, &alias).unwrap();
        let rules = OutputRules {
            input_dirs: vec![ck.clone()],
            ..Default::default()
        };
        for p in [
            ck.join("m.sha256"),
            alias.join("m.sha256"),
            alias.join("new/sub/x"),
        ] {
            assert!(
                matches!(
                    resolve_output(&p, &rules),
                    Err(OutputError::InsideInput { .. })
                ),
                "{p:?}"
            );
        }
        assert!(resolve_output(&d.path().join("m.sha256"), &rules).is_ok());
    }

    #[test]
    fn devices_fifos_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let force = OutputRules {
            force: true,
            ..Default::default()
        };
        let e = resolve_output(Path::new("/dev/null"), &force).unwrap_err();
        assert!(
            matches!(
                e,
                OutputError::NotReplaceable {
                    kind: FileKind::CharDevice,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("cannot stream"), "{e}");
        assert!(matches!(
            resolve_output(d.path(), &force),
            Err(OutputError::NotReplaceable {
                kind: FileKind::Directory,
                ..
            })
        ));
        // streaming into /dev/null: written into, never renamed over
        let streams = OutputRules {
            streams: true,
            ..Default::default()
        };
        let t = resolve_output(Path::new("/dev/null"), &streams).unwrap();
        assert!(t.is_stream());
        let mut w = t.create().unwrap();
        w.write_all(&[1u8; 100_000]).unwrap();
        assert_eq!(w.commit().unwrap(), Path::new("/dev/null"));
        assert_eq!(
            FileKind::of_meta(&std::fs::metadata("/dev/null").unwrap()),
            FileKind::CharDevice
        );
        // /dev/full: the error arrives, the device stays
        let t = resolve_output(Path::new("/dev/full"), &streams).unwrap();
        let mut w = t.create().unwrap();
        let r = w
            .write_all(&[1u8; 3 << 20])
            .and_then(|_| w.commit().map(|_| ()));
        assert!(r.is_err());
        // a FIFO with a reader
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let t = resolve_output(&fifo, &streams).unwrap();
        let mut w = t.create().unwrap();
        w.write_all(b"through the pipe").unwrap();
        w.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert_eq!(
            FileKind::of_meta(&std::fs::metadata(&fifo).unwrap()),
            FileKind::Fifo
        );
    }

    /// As root, a device node under the final name at commit time is not replaced.
    #[test]
    fn commit_never_renames_over_a_device() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("full");
        if !is_root() {
            eprintln!("SKIP commit_never_renames_over_a_device: needs root for mknod");
            return;
        }
        let mut w = AtomicFile::create(&p).unwrap();
        w.write_all(b"payload").unwrap();
        // the device appears after the output was checked and opened
        let st = std::process::Command::new("mknod")
            .arg(&p)
            .args(["c", "1", "7"])
            .status()
            .unwrap();
        assert!(st.success());
        let e = w.commit().unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert_eq!(
            FileKind::of(std::fs::symlink_metadata(&p).unwrap().file_type()),
            FileKind::CharDevice
        );
        assert!(!super::super::atomic::temp_path_for(&p).exists());
        assert!(check_replaceable(&d.path().join("absent")).is_ok());
    }

    #[test]
    fn descriptor_paths_are_streams() {
        assert!(is_descriptor_path(Path::new("/dev/stdout")));
        assert!(is_descriptor_path(Path::new("/proc/self/fd/1")));
        assert!(!is_descriptor_path(Path::new("/dev/null")));
        assert!(!is_descriptor_path(Path::new("dev/stdout")));
    }
}
