//! SHA-256 manifests in the formats GNU `sha256sum` reads and writes, and checking a
//! directory against one.
//!
//! Why this format: users already have `sha256sum -c`; a manifest grokit writes must be
//! accepted by it byte for byte, and a manifest from anywhere (a mirror, a Hugging Face LFS
//! listing turned into `sha256sum` lines) must be readable here. Accepted line forms:
//!
//! - `<64 hex>  <path>` (text mode; what `sha256sum FILE` prints on GNU/Linux)
//! - `<64 hex> *<path>` (binary marker)
//! - `SHA256 (<path>) = <64 hex>` (BSD / `--tag`)
//! - any of these prefixed with `\`, meaning the path is escaped: `\\` is a backslash, `\n` a
//!   newline and `\r` a carriage return (coreutils 9.1 escapes exactly these three).
//!
//! Blank lines and lines starting with `#` are skipped; a trailing `\r` (CRLF files) is
//! dropped. Anything else is an error naming the line. Duplicate paths are an error (two
//! different expectations for one file cannot both hold). Paths are bytes on Unix.
//!
//! Checking never stops at the first problem: [`check_manifest`] hashes every entry and sorts
//! the outcomes into ok / mismatched / missing / unreadable / extra.
//!
//! Checks that would pass while checking nothing do not pass (issue #18, class 9): a manifest
//! with no entries (empty, blank or comment-only) is not clean, as `sha256sum -c` exits 1 on
//! it ("no properly formatted checksum lines found"); writing a manifest of zero files is an
//! error; and an entry that resolves, through a symlink anywhere on its path, to a file
//! outside the root is refused rather than followed and hashed.
//!
//! Writing goes through the output policy (`io::output`): never over one of the files the
//! manifest lists, never over a device (a character device or FIFO such as `/dev/stdout` is
//! streamed into), and never over an existing file that is not itself a manifest.

use super::hash::{hash_files, FileDigest, HashError, HashOptions, Progress};
use crate::base::hex;
use crate::base::limits::{
    VERIFY_MANIFEST_MAX_BYTES, VERIFY_MANIFEST_MAX_ENTRIES, VERIFY_MANIFEST_MAX_LINE,
    VERIFY_MAX_WALK_DEPTH, VERIFY_MAX_WALK_ENTRIES,
};
use crate::io::output::{resolve_output, OutputError, OutputRules};
use crate::io::term::escape_path;
use crate::io::IoError;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// A manifest defect, with the 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading the manifest file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A line is not in any accepted form.
    #[error("{source_name}:{line}: {why}")]
    Malformed {
        /// The manifest's name (its file path, or whatever the caller of `Manifest::parse` gave).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A bound from `base::limits` was exceeded.
    #[error("{source_name}: {what} exceeds the cap of {cap}")]
    TooBig {
        /// The manifest's name.
        source_name: String,
        /// What was too big.
        what: &'static str,
        /// The cap.
        cap: u64,
    },
    /// Hashing a file for a manifest being written failed.
    #[error("hashing for the manifest: {0}")]
    Hash(#[from] HashError),
    /// A path given to the writer cannot be written in `sha256sum` form.
    #[error("{}: {why}", escape_path(path))]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },
    /// A file to list lies outside the root its path must be relative to.
    #[error("{}: outside the manifest root {}; manifest paths are relative to the root (choose a --root that contains every file)", escape_path(path), escape_path(root))]
    OutsideRoot {
        /// The file.
        path: PathBuf,
        /// The root.
        root: PathBuf,
    },
    /// A manifest of zero files would be written: it would verify anything.
    #[error(
        "no files to list under {}: refusing to write an empty manifest (it would verify anything)",
        escape_path(root)
    )]
    NothingToWrite {
        /// The root.
        root: PathBuf,
    },
    /// The output path was refused by the output policy.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The output exists and is not a manifest.
    #[error("{}: already exists and is not a sha256sum manifest; refusing to replace it (remove it or choose another name)", escape_path(path))]
    NotAManifest {
        /// The output path.
        path: PathBuf,
    },
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The path as written (relative to the manifest's directory, by convention).
    pub path: PathBuf,
    /// The expected SHA-256.
    pub sha256: [u8; 32],
    /// Whether the line used the binary marker `*` (informational; hashing is the same).
    pub binary: bool,
    /// 1-based line number in the source (0 for entries built in memory).
    pub line: usize,
}

/// A parsed manifest, entries in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The entries.
    pub entries: Vec<ManifestEntry>,
    /// For a manifest built by [`write_manifest`]: the files hashed, which [`Manifest::write`]
    /// never writes over.
    hashed: Vec<PathBuf>,
}

impl Manifest {
    /// Read and parse a manifest file (size-capped).
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let name = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|e| IoError::new("stat", path, e))?
            .len();
        if len > VERIFY_MANIFEST_MAX_BYTES {
            return Err(ManifestError::TooBig {
                source_name: name,
                what: "manifest size",
                cap: VERIFY_MANIFEST_MAX_BYTES,
            });
        }
        // Bounded read: the file may grow after the stat, or be a FIFO/device reporting 0.
        let Some(bytes) = crate::io::read_capped(path, VERIFY_MANIFEST_MAX_BYTES)? else {
            return Err(ManifestError::TooBig {
                source_name: name,
                what: "manifest size",
                cap: VERIFY_MANIFEST_MAX_BYTES,
            });
        };
        Manifest::parse(&bytes, &name)
    }

    /// Parse manifest text; `source_name` appears in errors.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Manifest, ManifestError> {
        if bytes.len() as u64 > VERIFY_MANIFEST_MAX_BYTES {
            return Err(ManifestError::TooBig {
                source_name: source_name.into(),
                what: "manifest size",
                cap: VERIFY_MANIFEST_MAX_BYTES,
            });
        }
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let bad = |why: String| ManifestError::Malformed {
                source_name: source_name.into(),
                line,
                why,
            };
            if raw.len() > VERIFY_MANIFEST_MAX_LINE {
                return Err(bad(format!(
                    "line longer than {VERIFY_MANIFEST_MAX_LINE} bytes"
                )));
            }
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| b.is_ascii_whitespace()) || raw.first() == Some(&b'#') {
                continue;
            }
            let (hash, path, binary) = parse_line(raw).map_err(|w| bad(w.into()))?;
            let path = bytes_to_path(&path).ok_or_else(|| bad("path is not valid UTF-8".into()))?;
            if !seen.insert(path.clone()) {
                return Err(bad(format!("duplicate entry for {}", escape_path(&path))));
            }
            if entries.len() >= VERIFY_MANIFEST_MAX_ENTRIES {
                return Err(ManifestError::TooBig {
                    source_name: source_name.into(),
                    what: "entry count",
                    cap: VERIFY_MANIFEST_MAX_ENTRIES as u64,
                });
            }
            entries.push(ManifestEntry {
                path,
                sha256: hash,
                binary,
                line,
            });
        }
        Ok(Manifest {
            entries,
            hashed: Vec::new(),
        })
    }

    /// Render exactly as GNU `sha256sum` (text mode, untagged) would: `<hex>  <path>\n`, or
    /// `\<hex>  <escaped path>\n` when the path holds a backslash, newline or carriage return.
    /// Entries marked `binary` get `*` instead of the second space, as `sha256sum -b` writes.
    pub fn to_gnu_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            let p = path_to_bytes(&e.path);
            let escape = p.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\r'));
            if escape {
                out.push(b'\\');
            }
            out.extend_from_slice(hex::encode(&e.sha256).as_bytes());
            out.push(b' ');
            out.push(if e.binary { b'*' } else { b' ' });
            push_path(&mut out, &p, escape);
            out.push(b'\n');
        }
        out
    }

    /// Render in BSD tagged form, as `sha256sum --tag` writes: `SHA256 (<path>) = <hex>\n`.
    pub fn to_tagged_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            let p = path_to_bytes(&e.path);
            let escape = p.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\r'));
            if escape {
                out.push(b'\\');
            }
            out.extend_from_slice(b"SHA256 (");
            push_path(&mut out, &p, escape);
            out.extend_from_slice(b") = ");
            out.extend_from_slice(hex::encode(&e.sha256).as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Write [`Manifest::to_gnu_bytes`] to `path` under the output policy, with the files this
    /// manifest was built from as the inputs it may not replace (see [`Manifest::write_with`]).
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        self.write_with(path, &OutputRules::default())
    }

    /// Write [`Manifest::to_gnu_bytes`] to `path` under `rules` (the command's inputs and
    /// input directories, `--force`), adding the files hashed for this manifest as inputs.
    /// Files: atomically (temporary, then rename). A character device or FIFO (`/dev/stdout`
    /// piped) is streamed into. An existing regular file is replaced only if it is itself a
    /// `sha256sum` manifest (or empty), or with `rules.force`: a model, shard or `config.json`
    /// given by mistake is never overwritten.
    pub fn write_with(&self, path: &Path, rules: &OutputRules) -> Result<(), ManifestError> {
        let mut rules = rules.clone();
        rules.inputs.extend(self.hashed.iter().cloned());
        rules.streams = true;
        let is_manifest = crate::io::read_capped(path, VERIFY_MANIFEST_MAX_BYTES)
            .ok()
            .flatten()
            .is_some_and(|b| Manifest::parse(&b, "").is_ok());
        rules.replace_without_force |= is_manifest;
        let target = match resolve_output(path, &rules) {
            Err(OutputError::Exists { path }) => return Err(ManifestError::NotAManifest { path }),
            r => r?,
        };
        let mut f = target.create()?;
        f.write_all(&self.to_gnu_bytes())?;
        f.commit()?;
        Ok(())
    }
}

fn push_path(out: &mut Vec<u8>, p: &[u8], escape: bool) {
    for &b in p {
        match (escape, b) {
            (true, b'\\') => out.extend_from_slice(b"\\\\"),
            (true, b'\n') => out.extend_from_slice(b"\\n"),
            (true, b'\r') => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Split one non-empty line into (hash, unescaped path, binary flag).
fn parse_line(raw: &[u8]) -> Result<([u8; 32], Vec<u8>, bool), &'static str> {
    let (escaped, l) = match raw.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (hash_hex, path, binary) = if let Some(rest) = l.strip_prefix(b"SHA256 (") {
        let close = rest
            .windows(4)
            .rposition(|w| w == b") = ")
            .ok_or("tagged line without \") = \"")?;
        (&rest[close + 4..], &rest[..close], true)
    } else {
        if l.len() < 66 {
            return Err("line too short for a SHA-256 entry");
        }
        let (h, rest) = l.split_at(64);
        let binary = match rest {
            [b' ', b' ', ..] => false,
            [b' ', b'*', ..] => true,
            _ => return Err("expected two spaces or \" *\" after the 64-digit hash"),
        };
        (h, &rest[2..], binary)
    };
    if hash_hex.len() != 64 {
        return Err("hash is not 64 hex digits");
    }
    let h = std::str::from_utf8(hash_hex)
        .ok()
        .and_then(hex::decode)
        .ok_or("hash is not 64 hex digits")?;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&h);
    if path.is_empty() {
        return Err("empty path");
    }
    let path = if escaped {
        unescape(path)?
    } else {
        path.to_vec()
    };
    Ok((hash, path, binary))
}

fn unescape(p: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(p.len());
    let mut it = p.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            _ => return Err("bad escape in path (only \\\\, \\n and \\r are defined)"),
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn bytes_to_path(b: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(b)))
}
#[cfg(not(unix))]
fn bytes_to_path(b: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(b).ok().map(PathBuf::from)
}
#[cfg(unix)]
fn path_to_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}
#[cfg(not(unix))]
fn path_to_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().replace('\\', "/").into_bytes()
}

/// Refuse paths from untrusted input that would leave `root`: absolute paths, `..`, or
/// (on Windows) prefixes. `.` components are allowed and ignored.
pub fn safe_join(root: &Path, rel: &Path) -> Result<PathBuf, HashError> {
    let shown = || rel.display().to_string();
    let mut out = root.to_path_buf();
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(n) => {
                out.push(n);
                any = true;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(HashError::UnsafePath {
                    path: shown(),
                    why: "contains '..'".into(),
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(HashError::UnsafePath {
                    path: shown(),
                    why: "is absolute".into(),
                })
            }
        }
    }
    if !any {
        return Err(HashError::UnsafePath {
            path: shown(),
            why: "names no file".into(),
        });
    }
    Ok(out)
}

/// [`safe_join`], then refuse a path that resolves (through a symlink anywhere on it) to a
/// file outside `root`. Returns the resolved path when the file exists (so the file checked is
/// the file hashed), else the joined path (which then hashes as missing).
pub fn contained_path(root: &Path, rel: &Path) -> Result<PathBuf, HashError> {
    let joined = safe_join(root, rel)?;
    let Ok(resolved) = joined.canonicalize() else {
        return Ok(joined);
    };
    let Ok(croot) = root.canonicalize() else {
        return Ok(joined);
    };
    if resolved.starts_with(&croot) {
        Ok(resolved)
    } else {
        Err(HashError::UnsafePath {
            path: rel.display().to_string(),
            why: format!(
                "resolves through a symlink to {}, outside the root {}",
                escape_path(&resolved),
                escape_path(&croot)
            ),
        })
    }
}

/// Options for [`check_manifest`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Hashing parallelism and memory.
    pub hash: HashOptions,
    /// Also list regular files under the root that the manifest does not name.
    pub find_extra: bool,
    /// Relative paths never reported as extra (e.g. the manifest itself).
    pub ignore: Vec<PathBuf>,
}

/// A file whose content differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The path as written in the manifest.
    pub path: PathBuf,
    /// The manifest's hash.
    pub expected: [u8; 32],
    /// The file's hash.
    pub actual: [u8; 32],
    /// The file's size.
    pub size: u64,
}

/// Everything a manifest check found; nothing is dropped at the first problem.
#[derive(Debug, Default)]
pub struct ManifestReport {
    /// Entries whose file matched, with their sizes.
    pub ok: Vec<(PathBuf, u64)>,
    /// Entries whose file has different content.
    pub mismatched: Vec<Mismatch>,
    /// Entries whose file does not exist.
    pub missing: Vec<PathBuf>,
    /// Entries that exist but could not be read, or whose path was refused (absolute, `..`).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Regular files under the root that the manifest does not name (if requested), sorted.
    pub extra: Vec<PathBuf>,
    /// Bytes hashed in total.
    pub bytes_hashed: u64,
    /// The manifest had no entries, so nothing was checked (never clean).
    pub no_entries: bool,
}

/// What a report says when the manifest had no entries (GNU `sha256sum -c`'s wording).
pub const NO_ENTRIES: &str =
    "no properly formatted checksum lines found: the manifest checks nothing";

impl ManifestReport {
    /// True when at least one entry was checked, every entry matched and nothing is missing,
    /// unreadable or extra.
    pub fn is_clean(&self) -> bool {
        !self.no_entries
            && self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.extra.is_empty()
    }
}

/// Hash every manifest entry under `root` and report all outcomes.
pub fn check_manifest(
    root: &Path,
    manifest: &Manifest,
    opts: &CheckOptions,
    progress: Progress<'_>,
) -> ManifestReport {
    let mut report = ManifestReport {
        no_entries: manifest.entries.is_empty(),
        ..Default::default()
    };
    let mut jobs = Vec::new(); // (entry index, absolute path)
    for (i, e) in manifest.entries.iter().enumerate() {
        match contained_path(root, &e.path) {
            Ok(p) => jobs.push((i, p)),
            Err(err) => report.unreadable.push((e.path.clone(), err.to_string())),
        }
    }
    let paths: Vec<PathBuf> = jobs.iter().map(|(_, p)| p.clone()).collect();
    let results = hash_files(&paths, &opts.hash, progress);
    for ((i, _), r) in jobs.iter().zip(results) {
        let e = &manifest.entries[*i];
        match r {
            Ok(FileDigest { sha256, size }) => {
                report.bytes_hashed += size;
                if sha256 == e.sha256 {
                    report.ok.push((e.path.clone(), size));
                } else {
                    report.mismatched.push(Mismatch {
                        path: e.path.clone(),
                        expected: e.sha256,
                        actual: sha256,
                        size,
                    });
                }
            }
            Err(HashError::NotFound { .. }) => report.missing.push(e.path.clone()),
            Err(err) => report.unreadable.push((e.path.clone(), err.to_string())),
        }
    }
    if opts.find_extra {
        let named: BTreeSet<PathBuf> = manifest
            .entries
            .iter()
            .map(|e| normalize(&e.path))
            .chain(opts.ignore.iter().map(|p| normalize(p)))
            .collect();
        match list_files(root) {
            Ok(files) => report.extra = files.into_iter().filter(|f| !named.contains(f)).collect(),
            Err(why) => report.unreadable.push((root.to_path_buf(), why)),
        }
    }
    report
}

fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Regular files (and symlinks to them) under `root`, relative and sorted. Symlinked
/// directories are not followed (no cycles). Bounded by the walk caps.
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut visited = 0usize;
    let mut stack = vec![(PathBuf::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let dir = root.join(&rel);
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        for ent in rd {
            let ent = ent.map_err(|e| format!("listing {}: {e}", dir.display()))?;
            visited += 1;
            if visited > VERIFY_MAX_WALK_ENTRIES {
                return Err(format!(
                    "more than {VERIFY_MAX_WALK_ENTRIES} entries under {}",
                    root.display()
                ));
            }
            let ft = ent
                .file_type()
                .map_err(|e| format!("{}: {e}", ent.path().display()))?;
            let r = rel.join(ent.file_name());
            if ft.is_dir() {
                if depth + 1 > VERIFY_MAX_WALK_DEPTH {
                    return Err(format!(
                        "directories nested deeper than {VERIFY_MAX_WALK_DEPTH} under {}",
                        root.display()
                    ));
                }
                stack.push((r, depth + 1));
            } else if ft.is_file() || (ft.is_symlink() && ent.path().is_file()) {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hash `files` (relative to `root`, or absolute paths under it; in the order given) and build
/// a manifest of them. Fails on the first file that cannot be hashed (a manifest must not
/// silently omit files), on a file outside `root` (directly or through a symlink), and when
/// there are no files at all (an empty manifest would verify anything).
pub fn write_manifest(
    root: &Path,
    files: &[PathBuf],
    opts: &HashOptions,
    progress: Progress<'_>,
) -> Result<Manifest, ManifestError> {
    if files.is_empty() {
        return Err(ManifestError::NothingToWrite {
            root: root.to_path_buf(),
        });
    }
    let mut rels = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    for f in files {
        let rel = if f.is_absolute() {
            f.strip_prefix(root)
                .map_err(|_| ManifestError::OutsideRoot {
                    path: f.clone(),
                    root: root.to_path_buf(),
                })?
                .to_path_buf()
        } else {
            f.clone()
        };
        paths.push(contained_path(root, &rel)?);
        rels.push(rel);
    }
    let mut entries = Vec::with_capacity(files.len());
    for (f, r) in rels.into_iter().zip(hash_files(&paths, opts, progress)) {
        let d = r?;
        entries.push(ManifestEntry {
            path: f,
            sha256: d.sha256,
            binary: false,
            line: 0,
        });
    }
    Ok(Manifest {
        entries,
        hashed: paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn all_forms() {
        let text = format!(
            "{H}  plain name\n{H} *bin\n\\{H}  back\\\\slash\\nnl\nSHA256 (tag (x)) = {H}\r\n\n# comment\n\\SHA256 (t\\\\b) = {}\n",
            H.to_uppercase()
        );
        let m = Manifest::parse(text.as_bytes(), "m").unwrap();
        let names: Vec<_> = m
            .entries
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["plain name", "bin", "back\\slash\nnl", "tag (x)", "t\\b"]
        );
        assert!(m.entries[1].binary);
        assert_eq!(m.entries[3].line, 4);
        assert_eq!(m.entries[4].line, 7);
        let again = Manifest::parse(&m.to_gnu_bytes(), "again").unwrap();
        assert_eq!(
            again.entries.iter().map(|e| &e.path).collect::<Vec<_>>(),
            m.entries.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        let tagged = Manifest::parse(&m.to_tagged_bytes(), "t").unwrap();
        assert_eq!(tagged.entries.len(), 5);
    }

    #[test]
    fn errors_name_lines() {
        for (text, line) in [
            (format!("{H}  a\nzz  b\n"), 2),
            (format!("{H}  a\n{H}  a\n"), 2),
            (format!("{H}\n"), 1),
            (format!("{H} x\n"), 1),
            (format!("\\{H}  bad\\q\n"), 1),
            (format!("SHA256 (a) = {}\n", &H[..10]), 1),
        ] {
            match Manifest::parse(text.as_bytes(), "m") {
                Err(ManifestError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_paths() {
        let r = Path::new("/r");
        assert!(safe_join(r, Path::new("../x")).is_err());
        assert!(safe_join(r, Path::new("/etc/passwd")).is_err());
        assert!(safe_join(r, Path::new("a/../../x")).is_err());
        assert!(safe_join(r, Path::new(".")).is_err());
        assert_eq!(
            safe_join(r, Path::new("./a/b")).unwrap(),
            Path::new("/r/a/b")
        );
    }
}
