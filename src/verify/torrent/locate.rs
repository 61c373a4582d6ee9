//! Finding a torrent's files on disk.
//!
//! Why: a torrent's paths are relative to its top folder (`info.name`), and which directory on
//! disk that is depends on how the torrent was made. Torrenting the checkpoint folder itself
//! gives a torrent named `ckpt-0` whose files are `tensor00000_000`...; torrenting the folder
//! that holds it gives `ckpt-0/tensor00000_000`... Before this search, `verify DIR` and
//! `verify DIR/ckpt-0` both reported every file missing for the first kind unless
//! `--torrent-root` was given (issue #18). Now the candidates below are tried, by the torrent's
//! own name and file list. The directory given is used whenever it holds any of the files (a
//! partial download is verified where the user said it is, never swapped for another copy;
//! the note says so when another candidate holds more); otherwise the candidate holding most
//! files is used; when none holds any, the report names every place looked at and what
//! `--torrent-root` would have to be.
//!
//! Candidates, in order (duplicates dropped), for a directory `D` given by the user: `D`,
//! `D/<name>`, `D/ckpt-0`, the parent of `D`, and `<parent>/<name>`. Only `stat` is used (no
//! file is opened or read), and the torrent's paths were checked component by component when
//! it was parsed, so no candidate reaches outside these directories.

use super::check::disk_path;
use super::meta::Torrent;
use crate::io::term::{escape, escape_path};
use std::path::{Path, PathBuf};

/// Where a torrent's files were looked for and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSearch {
    /// The directory (or single file) the user gave.
    pub given: PathBuf,
    /// Each candidate looked at, in order, with how many of the torrent's files it holds.
    pub looked: Vec<(PathBuf, usize)>,
    /// The candidate chosen: `given` when it holds any file, else the one holding most files
    /// (the first on a tie), else `given`.
    pub root: PathBuf,
    /// Files found under `root`.
    pub found: usize,
    /// Files the torrent has on disk (padding files excluded).
    pub wanted: usize,
}

/// The candidate directories for `given`, in the order they are tried.
fn candidates(given: &Path, t: &Torrent) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = vec![
        given.to_path_buf(),
        given.join(&t.name),
        given.join("ckpt-0"),
    ];
    // The parent of a relative single-component path is the current directory.
    match given.parent() {
        Some(p) if p.as_os_str().is_empty() => {
            out.extend([PathBuf::from("."), t.name.clone().into()])
        }
        Some(p) => out.extend([p.to_path_buf(), p.join(&t.name)]),
        None => {}
    }
    let mut seen = Vec::new();
    out.retain(|c| {
        let new = !seen.contains(c);
        seen.push(c.clone());
        new
    });
    out
}

/// How many of `t`'s files are regular files under `root` (and how many of those have the
/// declared length, the tie-breaker).
fn count(root: &Path, t: &Torrent) -> (usize, usize) {
    let (mut present, mut exact) = (0, 0);
    for f in t.files.iter().filter(|f| !f.padding) {
        if let Ok(m) = std::fs::metadata(disk_path(root, t, f)) {
            if m.is_file() {
                present += 1;
                exact += usize::from(m.len() == f.length);
            }
        }
    }
    (present, exact)
}

/// Look for `t`'s files around `given` (see the module docs).
pub fn find_root(given: &Path, t: &Torrent) -> RootSearch {
    let wanted = t.files.iter().filter(|f| !f.padding).count();
    let mut looked = Vec::new();
    let mut best: Option<(PathBuf, (usize, usize))> = None;
    for (i, c) in candidates(given, t).into_iter().enumerate() {
        let n = count(&c, t);
        looked.push((c.clone(), n.0));
        if i == 0 && n.0 == wanted && n.1 == wanted {
            break; // everything is where the user said: no need to look further
        }
        if n.0 > 0 && best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((c, n));
        }
    }
    let here = looked.first().map_or(0, |(_, n)| *n);
    let (root, found) = match best {
        _ if here > 0 => (given.to_path_buf(), here),
        Some((r, (n, _))) => (r, n),
        None => (given.to_path_buf(), 0),
    };
    RootSearch {
        given: given.to_path_buf(),
        looked,
        root,
        found,
        wanted,
    }
}

impl RootSearch {
    /// A note for the report: where the files were found when it is not the directory given,
    /// or, when nothing was found, every place looked at and what `--torrent-root` must name.
    /// `None` when the files are where the user said.
    pub fn note(&self, t: &Torrent) -> Option<String> {
        if self.wanted == 0 {
            return None;
        }
        if self.found > 0 && self.root == self.given {
            // Verified where the user said; mention a candidate that holds more.
            let (more, n) = self.looked.iter().max_by_key(|(_, n)| *n)?;
            return (*n > self.found).then(|| {
                format!(
                    "{n} of the torrent's {} files are under {} ({} here); if that is the download, pass --torrent-root {}",
                    self.wanted,
                    escape_path(more),
                    self.found,
                    escape_path(more)
                )
            });
        }
        if self.found > 0 {
            return Some(format!(
                "the torrent's files were found under {} (its top folder \"{}\"), not directly under {}: verified there",
                escape_path(&self.root),
                escape(&t.name),
                escape_path(&self.given)
            ));
        }
        let looked = self
            .looked
            .iter()
            .map(|(p, _)| escape_path(p).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let first = t
            .files
            .iter()
            .find(|f| !f.padding)
            .map(|f| escape_path(&f.path).into_owned())
            .unwrap_or_default();
        Some(if t.single_file {
            format!(
                "none of the torrent's files were found: looked for \"{first}\" in {looked}; pass --torrent-root with the file itself or the directory that holds it"
            )
        } else {
            format!(
                "none of the torrent's {} files were found: looked in {looked}; the torrent's top folder is \"{}\", so pass --torrent-root DIR where DIR/{first} is its first file",
                self.wanted,
                escape(&t.name)
            )
        })
    }
}
