//! The streaming piece hasher: one run of consecutive pieces, read across file boundaries
//! through the hashing pipeline, each piece judged good, bad or missing.

use super::super::hash::{stream, Chunk, Extent, HashOptions, IssueKind, Progress, Src};
use super::check::PieceState;
use super::meta::Torrent;
use sha1::{Digest, Sha1};
use std::path::PathBuf;

pub(super) type RunResult = (Vec<PieceState>, u64, Vec<(usize, String)>);

/// Hash pieces `range` by streaming their bytes across file boundaries.
pub(super) fn hash_run(
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
