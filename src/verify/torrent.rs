//! BitTorrent v1 metainfo (`.torrent`) parsing and piece verification of a download on disk.
//!
//! Why: the release's only official integrity anchor is its magnet link (infohash
//! `5f96d435…`). Given the `.torrent` (or its info dict), this checks every piece's SHA-1
//! against the files on disk and reports the infohash so the user can compare it with the
//! magnet. Partial downloads are common, so the report distinguishes *bad* pieces (data present
//! but wrong) from *missing* ones (a file absent or short), and gives each file's verified
//! fraction.
//!
//! Facts honoured (BEP 3, BEP 47): the infohash is SHA-1 over the `info` value's exact bytes
//! (never re-encoded; see `bencode`); pieces run over the concatenation of files in `files`
//! order, crossing file boundaries; the last piece is short; padding files (`attr` contains
//! `p`) are virtual zeros never read from disk. A hostile torrent must not make grokit read
//! outside the root: every path component is checked (no `..`, `.`, empty, separators, NUL,
//! or over-long names). v2 (`meta version` 2, `file tree`) and hybrid torrents are refused.

use super::bencode::{self, BencodeError, Value};
use super::hash::{par_jobs, stream, Chunk, Extent, HashOptions, IssueKind, Progress, Src};
use crate::base::hex;
use crate::base::limits::{
    TORRENT_MAX_BYTES, TORRENT_MAX_COMPONENT_BYTES, TORRENT_MAX_FILES, TORRENT_MAX_PATH_COMPONENTS,
    TORRENT_MAX_PIECE_LENGTH,
};
use crate::io::IoError;
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};

/// Why a `.torrent` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Larger than `TORRENT_MAX_BYTES`.
    #[error("torrent file is {size} bytes, over the cap of {cap}")]
    TooBig {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Not valid bencode.
    #[error(transparent)]
    Bencode(#[from] BencodeError),
    /// A required key is absent or has the wrong type.
    #[error("torrent: {key}: {why}")]
    Field {
        /// The key path, e.g. `info.files[3].length`.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A path component that could escape the root or is not a plain name.
    #[error("torrent: unsafe path in {key}: {component:?} {why}")]
    UnsafePath {
        /// Where it was found.
        key: String,
        /// The component (lossy UTF-8).
        component: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// BitTorrent v2 or hybrid metainfo.
    #[error("torrent: BitTorrent v2/hybrid metainfo ({why}) is not supported; verify with a v1 torrent of the release (magnet btih)")]
    V2 {
        /// What revealed it.
        why: &'static str,
    },
}

/// One file of the torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// Path relative to the torrent's top directory (single-file: the `name`).
    pub path: PathBuf,
    /// Declared length.
    pub length: u64,
    /// Offset of its first byte in the concatenated piece stream.
    pub offset: u64,
    /// BEP 47 padding file: zeros, not read from disk.
    pub padding: bool,
}

/// A parsed v1 torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torrent {
    /// `info.name` (the top folder for multi-file torrents, the file name for single-file).
    pub name: String,
    /// `info.piece length`.
    pub piece_length: u64,
    /// `info.pieces`, one SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// Files in torrent order.
    pub files: Vec<TorrentFile>,
    /// Sum of file lengths.
    pub total_length: u64,
    /// True for the single-file form (`info.length`).
    pub single_file: bool,
    /// SHA-1 of the exact `info` bytes.
    pub infohash: [u8; 20],
    /// Notes that do not prevent verification (e.g. unsorted dictionary keys).
    pub warnings: Vec<String>,
}

impl Torrent {
    /// Read and parse a `.torrent` file (size-capped).
    pub fn read(path: &Path) -> Result<Torrent, TorrentError> {
        let size = std::fs::metadata(path)
            .map_err(|e| IoError::new("stat", path, e))?
            .len();
        if size > TORRENT_MAX_BYTES {
            return Err(TorrentError::TooBig {
                size,
                cap: TORRENT_MAX_BYTES,
            });
        }
        // Bounded read: the file may grow after the stat, or be a FIFO/device reporting 0.
        let bytes =
            crate::io::read_capped(path, TORRENT_MAX_BYTES)?.ok_or(TorrentError::TooBig {
                size: TORRENT_MAX_BYTES + 1,
                cap: TORRENT_MAX_BYTES,
            })?;
        Torrent::parse(&bytes)
    }

    /// Parse metainfo bytes.
    pub fn parse(bytes: &[u8]) -> Result<Torrent, TorrentError> {
        if bytes.len() as u64 > TORRENT_MAX_BYTES {
            return Err(TorrentError::TooBig {
                size: bytes.len() as u64,
                cap: TORRENT_MAX_BYTES,
            });
        }
        let doc = bencode::parse(bytes)?;
        if doc.root.as_dict().is_none() {
            return Err(field("(top level)", "is not a dictionary"));
        }
        let info = doc
            .root
            .get(b"info")
            .ok_or_else(|| field("info", "missing"))?;
        if info.as_dict().is_none() {
            return Err(field("info", "is not a dictionary"));
        }
        if doc.root.get(b"piece layers").is_some() {
            return Err(TorrentError::V2 {
                why: "top-level `piece layers`",
            });
        }
        if let Some(v) = info.get(b"meta version") {
            if v.as_int() != Some(1) {
                return Err(TorrentError::V2 {
                    why: "`meta version` is not 1",
                });
            }
        }
        if info.get(b"file tree").is_some() {
            return Err(TorrentError::V2 {
                why: "`file tree` present",
            });
        }
        let name_bytes = bytes_of(info, "info.name", b"name")?;
        check_component(name_bytes, "info.name")?;
        let name = String::from_utf8(name_bytes.to_vec())
            .map_err(|_| field("info.name", "is not UTF-8"))?;
        let piece_length = uint_of(info, "info.piece length", b"piece length")?;
        if piece_length == 0 || piece_length > TORRENT_MAX_PIECE_LENGTH {
            return Err(field(
                "info.piece length",
                &format!("{piece_length} is outside 1..={TORRENT_MAX_PIECE_LENGTH}"),
            ));
        }
        let (files, single_file) = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(field("info", "has both `length` and `files`")),
            (None, None) => return Err(field("info", "has neither `length` nor `files`")),
            (Some(_), None) => {
                let length = uint_of(info, "info.length", b"length")?;
                (
                    vec![TorrentFile {
                        path: PathBuf::from(&name),
                        length,
                        offset: 0,
                        padding: false,
                    }],
                    true,
                )
            }
            (None, Some(list)) => (parse_files(list)?, false),
        };
        let total_length = files.last().map_or(0, |f| f.offset + f.length);
        let raw = bytes_of(info, "info.pieces", b"pieces")?;
        if raw.len() % 20 != 0 {
            return Err(field(
                "info.pieces",
                &format!("length {} is not a multiple of 20", raw.len()),
            ));
        }
        let want = total_length.div_ceil(piece_length);
        if raw.len() as u64 / 20 != want {
            return Err(field(
                "info.pieces",
                &format!("holds {} hashes but {total_length} bytes in pieces of {piece_length} need {want}", raw.len() / 20),
            ));
        }
        let pieces = raw.chunks_exact(20).map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        });
        let mut warnings = Vec::new();
        if doc.noncanonical {
            warnings.push("dictionary keys are not in sorted order (tolerated; infohash taken over the original bytes)".into());
        }
        let span = bytes
            .get(info.span.clone())
            .ok_or_else(|| field("info", "span out of range"))?;
        Ok(Torrent {
            name,
            piece_length,
            pieces: pieces.collect(),
            files,
            total_length,
            single_file,
            infohash: Sha1::digest(span).into(),
            warnings,
        })
    }

    /// The infohash as 40 lower-case hex digits (compare with a magnet's `btih`).
    pub fn infohash_hex(&self) -> String {
        hex::encode(&self.infohash)
    }

    /// Length of piece `i` (the last one may be short).
    pub fn piece_len(&self, i: u64) -> u64 {
        let start = i.saturating_mul(self.piece_length);
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    /// Indices of the files that piece `i` touches (zero-length files excluded).
    pub fn files_of_piece(&self, i: u64) -> Vec<usize> {
        let a = i.saturating_mul(self.piece_length);
        let b = a.saturating_add(self.piece_len(i));
        let first = self.files.partition_point(|f| f.offset + f.length <= a);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(|(_, f)| f.offset < b)
            .filter(|(_, f)| f.length > 0)
            .map(|(k, _)| first + k)
            .collect()
    }
}

fn field(key: &str, why: &str) -> TorrentError {
    TorrentError::Field {
        key: key.into(),
        why: why.into(),
    }
}

fn bytes_of<'a>(d: &Value<'a>, key: &str, k: &[u8]) -> Result<&'a [u8], TorrentError> {
    d.get(k)
        .ok_or_else(|| field(key, "missing"))?
        .as_bytes()
        .ok_or_else(|| field(key, "is not a byte string"))
}

fn uint_of(d: &Value<'_>, key: &str, k: &[u8]) -> Result<u64, TorrentError> {
    let i = d
        .get(k)
        .ok_or_else(|| field(key, "missing"))?
        .as_int()
        .ok_or_else(|| field(key, "is not an integer"))?;
    u64::try_from(i).map_err(|_| field(key, "is negative"))
}

fn check_component(c: &[u8], key: &str) -> Result<(), TorrentError> {
    let why = if c.is_empty() {
        Some("is empty")
    } else if c == b"." || c == b".." {
        Some("is a relative directory reference")
    } else if c.contains(&b'/') || c.contains(&b'\\') {
        Some("contains a path separator")
    } else if c.contains(&0) {
        Some("contains NUL")
    } else if c.len() > TORRENT_MAX_COMPONENT_BYTES {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(TorrentError::UnsafePath {
            key: key.into(),
            component: String::from_utf8_lossy(c).into_owned(),
            why,
        }),
        None => Ok(()),
    }
}

fn parse_files(list: &Value<'_>) -> Result<Vec<TorrentFile>, TorrentError> {
    let items = list
        .as_list()
        .ok_or_else(|| field("info.files", "is not a list"))?;
    if items.is_empty() {
        return Err(field("info.files", "is empty"));
    }
    if items.len() > TORRENT_MAX_FILES {
        return Err(field(
            "info.files",
            &format!(
                "{} entries exceed the cap of {TORRENT_MAX_FILES}",
                items.len()
            ),
        ));
    }
    let mut files = Vec::with_capacity(items.len());
    let mut offset = 0u64;
    for (i, f) in items.iter().enumerate() {
        let key = format!("info.files[{i}]");
        if f.as_dict().is_none() {
            return Err(field(&key, "is not a dictionary"));
        }
        let length = uint_of(f, &format!("{key}.length"), b"length")?;
        let comps = f
            .get(b"path")
            .ok_or_else(|| field(&format!("{key}.path"), "missing"))?;
        let comps = comps
            .as_list()
            .ok_or_else(|| field(&format!("{key}.path"), "is not a list"))?;
        if comps.is_empty() || comps.len() > TORRENT_MAX_PATH_COMPONENTS {
            return Err(field(
                &format!("{key}.path"),
                &format!(
                    "has {} components (1..={TORRENT_MAX_PATH_COMPONENTS})",
                    comps.len()
                ),
            ));
        }
        let mut path = PathBuf::new();
        for c in comps {
            let b = c
                .as_bytes()
                .ok_or_else(|| field(&format!("{key}.path"), "component is not a byte string"))?;
            check_component(b, &format!("{key}.path"))?;
            let s = std::str::from_utf8(b)
                .map_err(|_| field(&format!("{key}.path"), "component is not UTF-8"))?;
            path.push(s);
        }
        let padding = f
            .get(b"attr")
            .and_then(|a| a.as_bytes())
            .is_some_and(|a| a.contains(&b'p'));
        files.push(TorrentFile {
            path,
            length,
            offset,
            padding,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| field(&key, "total length overflows"))?;
    }
    Ok(files)
}

// ---- verification ---------------------------------------------------------------------------

/// What a piece turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceState {
    /// Hash matches.
    Good,
    /// All bytes present, hash differs.
    Bad,
    /// Some byte could not be read (file missing, short, unreadable).
    Missing,
}

/// A piece whose data is present but wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPiece {
    /// Piece index.
    pub index: u64,
    /// Paths (torrent-relative) of the files it touches.
    pub files: Vec<PathBuf>,
}

/// On-disk state of one torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present with the declared length.
    Present,
    /// BEP 47 padding (not read).
    Padding,
    /// Absent.
    Missing,
    /// Shorter than declared (size on disk given).
    Short(u64),
    /// Longer than declared (size on disk given); the extra tail is not verified.
    Long(u64),
    /// Present but not readable (error text).
    Unreadable(String),
}

/// Verification result for one torrent file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// Torrent-relative path.
    pub path: PathBuf,
    /// Declared length.
    pub length: u64,
    /// On-disk state.
    pub state: FileState,
    /// Bytes of this file inside good pieces.
    pub verified_bytes: u64,
    /// `verified_bytes / length` (1.0 for empty files).
    pub verified_fraction: f64,
}

/// Everything a torrent check found.
#[derive(Debug, Clone)]
pub struct TorrentReport {
    /// Infohash, 40 hex digits.
    pub infohash: String,
    /// Torrent name.
    pub name: String,
    /// Piece length.
    pub piece_length: u64,
    /// Total bytes.
    pub total_length: u64,
    /// Number of pieces.
    pub pieces: u64,
    /// Pieces that verified.
    pub good_pieces: u64,
    /// Pieces present but wrong, with the files they touch.
    pub bad_pieces: Vec<BadPiece>,
    /// Indices of pieces that could not be fully read, as half-open ranges.
    pub missing_pieces: Vec<std::ops::Range<u64>>,
    /// Per-file results in torrent order.
    pub files: Vec<FileReport>,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
    /// Parse warnings carried over.
    pub warnings: Vec<String>,
}

impl TorrentReport {
    /// True when every piece verified.
    pub fn is_complete(&self) -> bool {
        self.good_pieces == self.pieces
    }
    /// Number of missing pieces.
    pub fn missing_count(&self) -> u64 {
        self.missing_pieces.iter().map(|r| r.end - r.start).sum()
    }
}

/// Where torrent file `f` lives on disk. `root` is the directory that corresponds to the
/// torrent's `name` (it may be named differently); for a single-file torrent, `root` may be the
/// file itself or the directory holding a file called `name`.
pub fn disk_path(root: &Path, t: &Torrent, f: &TorrentFile) -> PathBuf {
    if t.single_file && root.is_file() {
        root.to_path_buf()
    } else {
        root.join(&f.path)
    }
}

/// Verify every piece of `t` against the files under `root` (see [`disk_path`]). Pieces are
/// hashed in parallel in contiguous runs of 8 blocks (64 MiB by default), each run streamed by one worker's
/// reader thread, so memory stays within [`HashOptions::memory_bound`].
pub fn check_torrent(
    root: &Path,
    t: &Torrent,
    opts: &HashOptions,
    progress: Progress<'_>,
) -> TorrentReport {
    let paths: Vec<PathBuf> = t.files.iter().map(|f| disk_path(root, t, f)).collect();
    let mut states: Vec<FileState> = t
        .files
        .iter()
        .zip(&paths)
        .map(|(f, p)| stat_file(f, p))
        .collect();
    let npieces = t.pieces.len() as u64;
    // A job is a contiguous run of about 8 blocks (64 MiB by default): long enough for
    // sequential reads, short enough that all workers stay busy to the end.
    let job_bytes = 8 * opts.effective_block() as u64;
    let per_job = job_bytes.div_ceil(t.piece_length).max(1);
    let njobs = usize::try_from(npieces.div_ceil(per_job)).unwrap_or(usize::MAX);
    let results = par_jobs(njobs, opts, |j, bufs| {
        let first = j as u64 * per_job;
        let last = (first + per_job).min(npieces);
        hash_run(t, &paths, first..last, opts, bufs, progress)
    });
    let mut piece_state = Vec::with_capacity(t.pieces.len());
    let mut bytes_hashed = 0;
    for (st, hashed, issues) in results {
        piece_state.extend(st);
        bytes_hashed += hashed;
        for (fi, msg) in issues {
            if let Some(s) = states.get_mut(fi) {
                if *s == FileState::Present {
                    *s = FileState::Unreadable(msg);
                }
            }
        }
    }
    build_report(t, piece_state, states, bytes_hashed)
}

fn stat_file(f: &TorrentFile, p: &Path) -> FileState {
    if f.padding {
        return FileState::Padding;
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => match m.len().cmp(&f.length) {
            std::cmp::Ordering::Equal => FileState::Present,
            std::cmp::Ordering::Less => FileState::Short(m.len()),
            std::cmp::Ordering::Greater => FileState::Long(m.len()),
        },
        Ok(_) => FileState::Unreadable("not a regular file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.to_string()),
    }
}

type RunResult = (Vec<PieceState>, u64, Vec<(usize, String)>);

/// Hash pieces `range` by streaming their bytes across file boundaries.
fn hash_run(
    t: &Torrent,
    paths: &[PathBuf],
    range: std::ops::Range<u64>,
    opts: &HashOptions,
    bufs: &mut Vec<Vec<u8>>,
    progress: Progress<'_>,
) -> RunResult {
    let a = range.start * t.piece_length;
    let b = (range.end * t.piece_length).min(t.total_length);
    let first = t.files.partition_point(|f| f.offset + f.length <= a);
    let mut extents = Vec::new();
    let mut owners = Vec::new();
    for (k, f) in t.files.iter().enumerate().skip(first) {
        if f.offset >= b {
            break;
        }
        let s = a.max(f.offset);
        let e = b.min(f.offset + f.length);
        if e <= s {
            continue;
        }
        let src = if f.padding {
            Src::Zeros
        } else {
            Src::File(&paths[k])
        };
        extents.push(Extent {
            src,
            offset: s - f.offset,
            len: Some(e - s),
        });
        owners.push(k);
    }
    let mut cur = PieceCursor {
        t,
        index: range.start,
        filled: 0,
        tainted: false,
        h: Sha1::new(),
        out: Vec::new(),
    };
    let mut hashed = 0u64;
    let issues = stream(&extents, opts, bufs, |c| match c {
        Chunk::Data(d) => {
            hashed += d.len() as u64;
            progress(d.len() as u64);
            cur.data(d);
        }
        Chunk::Gap(len) => cur.gap(len),
    });
    let mut out = cur.out;
    out.resize(
        usize::try_from(range.end - range.start).unwrap_or(0),
        PieceState::Missing,
    );
    let issues = issues
        .into_iter()
        .filter_map(|i| {
            let fi = *owners.get(i.extent)?;
            match i.kind {
                IssueKind::Open(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Some((fi, format!("open: {e}")))
                }
                IssueKind::Read(e) => Some((fi, format!("read at byte {}: {e}", i.at))),
                _ => None, // missing / short: already known from stat
            }
        })
        .collect();
    (out, hashed, issues)
}

struct PieceCursor<'t> {
    t: &'t Torrent,
    index: u64,
    filled: u64,
    tainted: bool,
    h: Sha1,
    out: Vec<PieceState>,
}

impl PieceCursor<'_> {
    fn need(&self) -> u64 {
        self.t.piece_len(self.index) - self.filled
    }
    fn data(&mut self, mut d: &[u8]) {
        while !d.is_empty() {
            let need = self.need();
            if need == 0 {
                return; // more bytes than pieces: cannot happen, extents are exact
            }
            let k = usize::try_from(need).unwrap_or(usize::MAX).min(d.len());
            if !self.tainted {
                self.h.update(&d[..k]);
            }
            self.advance(k as u64);
            d = &d[k..];
        }
    }
    fn gap(&mut self, mut len: u64) {
        while len > 0 {
            let need = self.need();
            if need == 0 {
                return;
            }
            let k = need.min(len);
            self.tainted = true;
            self.advance(k);
            len -= k;
        }
    }
    fn advance(&mut self, k: u64) {
        self.filled += k;
        if self.need() == 0 {
            let digest: [u8; 20] = self.h.finalize_reset().into();
            let want = usize::try_from(self.index)
                .ok()
                .and_then(|i| self.t.pieces.get(i));
            self.out.push(if self.tainted {
                PieceState::Missing
            } else if want == Some(&digest) {
                PieceState::Good
            } else {
                PieceState::Bad
            });
            self.index += 1;
            self.filled = 0;
            self.tainted = false;
        }
    }
}

fn build_report(
    t: &Torrent,
    ps: Vec<PieceState>,
    states: Vec<FileState>,
    bytes_hashed: u64,
) -> TorrentReport {
    let mut verified = vec![0u64; t.files.len()];
    let mut bad_pieces = Vec::new();
    let mut missing: Vec<std::ops::Range<u64>> = Vec::new();
    let mut good = 0;
    for (i, s) in ps.iter().enumerate() {
        let i = i as u64;
        match s {
            PieceState::Good => {
                good += 1;
                let (a, b) = (i * t.piece_length, i * t.piece_length + t.piece_len(i));
                for fi in t.files_of_piece(i) {
                    let f = &t.files[fi];
                    verified[fi] += b.min(f.offset + f.length) - a.max(f.offset);
                }
            }
            PieceState::Bad => bad_pieces.push(BadPiece {
                index: i,
                files: t
                    .files_of_piece(i)
                    .into_iter()
                    .filter(|&k| !t.files[k].padding)
                    .map(|k| t.files[k].path.clone())
                    .collect(),
            }),
            PieceState::Missing => match missing.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => missing.push(i..i + 1),
            },
        }
    }
    let files = t
        .files
        .iter()
        .zip(states)
        .zip(verified)
        .map(|((f, state), v)| FileReport {
            path: f.path.clone(),
            length: f.length,
            state,
            verified_bytes: v,
            verified_fraction: if f.length == 0 {
                1.0
            } else {
                v as f64 / f.length as f64
            },
        })
        .collect();
    TorrentReport {
        infohash: t.infohash_hex(),
        name: t.name.clone(),
        piece_length: t.piece_length,
        total_length: t.total_length,
        pieces: ps.len() as u64,
        good_pieces: good,
        bad_pieces,
        missing_pieces: missing,
        files,
        bytes_hashed,
        warnings: t.warnings.clone(),
    }
}
