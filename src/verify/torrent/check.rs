//! Verifying a torrent's pieces against the files on disk, and the report.

use super::super::hash::{par_jobs, HashOptions, Progress};
use super::locate::{find_root, RootSearch};
use super::meta::{Torrent, TorrentFile};
use super::pieces::hash_run;
use crate::io::input::FileKind;
use std::path::{Path, PathBuf};

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
    /// Parse warnings carried over, and the note on where the files were looked for.
    pub warnings: Vec<String>,
    /// The directory verified as the torrent's top folder.
    pub root: PathBuf,
    /// How `root` was chosen: the candidates looked at and what was found in each
    /// (`None` for [`check_torrent_at`], which uses the root it is given).
    pub search: Option<RootSearch>,
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
    if t.single_file && crate::io::input::is_non_dir(root) {
        root.to_path_buf()
    } else {
        root.join(&f.path)
    }
}

/// Verify every piece of `t`, looking for its files first ([`find_root`]): `root` is where the
/// user says the download is (the torrent's top folder, or the directory holding it, or the
/// top folder's `ckpt-0`...); the candidate holding most of the torrent's files is verified,
/// and the report says which one (`root`, `search`) with a note in `warnings` when it is not
/// `root` itself or when nothing was found anywhere (naming every place looked at and what
/// `--torrent-root` would have to be).
pub fn check_torrent(
    root: &Path,
    t: &Torrent,
    opts: &HashOptions,
    progress: Progress<'_>,
) -> TorrentReport {
    let search = find_root(root, t);
    let mut r = check_torrent_at(&search.root, t, opts, progress);
    if let Some(note) = search.note(t) {
        r.warnings.push(note);
    }
    r.search = Some(search);
    r
}

/// Verify every piece of `t` against the files under exactly `root` (see [`disk_path`]).
/// Pieces are hashed in parallel in contiguous runs of 8 blocks (64 MiB by default), each run
/// streamed by one worker's reader thread, so memory stays within
/// [`HashOptions::memory_bound`].
pub fn check_torrent_at(
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
    let mut r = build_report(t, piece_state, states, bytes_hashed);
    r.root = root.to_path_buf();
    r
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
        Ok(m) => FileState::Unreadable(format!(
            "is {}, not a regular file",
            FileKind::of_meta(&m).describe()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
        Err(e) => FileState::Unreadable(e.to_string()),
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
        root: PathBuf::new(),
        search: None,
    }
}
