//! Finding the shards: a directory that is `ckpt-0/` or `ckpt/` (the Hugging Face repo used both
//! names over time) or contains one of them. Missing and unexpected files are reported together,
//! like `checkpoint.py`'s key-set comparison.

use super::SourceError;
use crate::base::limits::CKPT_MAX_FILES;
use crate::io::IoError;
use crate::model::ParamTable;
use std::path::{Path, PathBuf};

/// The shard files found.
#[derive(Debug, Clone)]
pub struct CkptFiles {
    /// The directory holding the shards.
    pub dir: PathBuf,
    /// `(index, path)` in index order, complete from 0.
    pub files: Vec<(usize, PathBuf)>,
    /// Number of layers implied by the file count.
    pub num_layers: u64,
}

fn parse_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("tensor")?;
    let (i, h) = rest.split_once('_')?;
    if i.len() != 5
        || h.len() != 3
        || !i.bytes().all(|b| b.is_ascii_digit())
        || !h.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((i.parse().ok()?, h.parse().ok()?))
}

fn has_shards(dir: &Path) -> bool {
    dir.join("tensor00000_000").exists()
        || std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tensor"))
            })
            .unwrap_or(false)
}

/// Locate the shard directory for a user-given path.
pub fn find_dir(path: &Path) -> Result<PathBuf, SourceError> {
    if !path.is_dir() {
        let why = if path.exists() {
            "not a directory".to_string()
        } else {
            "no such directory".to_string()
        };
        return Err(SourceError::NotACheckpoint {
            path: path.to_path_buf(),
            why,
        });
    }
    if has_shards(path) {
        return Ok(path.to_path_buf());
    }
    for sub in ["ckpt-0", "ckpt"] {
        let d = path.join(sub);
        if d.is_dir() {
            return Ok(d);
        }
    }
    Err(SourceError::NotACheckpoint {
        path: path.to_path_buf(),
        why: "no tensorNNNNN_000 files, and no ckpt-0/ or ckpt/ directory inside".into(),
    })
}

/// Discover the shards under `path`.
pub fn discover(path: &Path) -> Result<CkptFiles, SourceError> {
    let dir = find_dir(path)?;
    let rd = std::fs::read_dir(&dir).map_err(|e| IoError::new("list", &dir, e))?;
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    let mut unexpected = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| IoError::new("list", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match parse_name(&name) {
            Some((i, 0)) => {
                if found.len() >= CKPT_MAX_FILES {
                    return Err(SourceError::NotACheckpoint {
                        path: dir,
                        why: format!("more than {CKPT_MAX_FILES} shard files"),
                    });
                }
                found.push((i, entry.path()));
            }
            Some(_) => unexpected.push(name), // another host's shard: the release has only _000
            None if name.starts_with("tensor") => unexpected.push(name),
            None => {} // README, config.json, tokenizer.model... are allowed beside the shards
        }
    }
    found.sort();
    if found.is_empty() && unexpected.is_empty() {
        return Err(SourceError::NotACheckpoint {
            path: dir,
            why: "no tensorNNNNN_000 files".into(),
        });
    }
    // The expected count is the smallest 2 + 12k covering every index found.
    let max = found.last().map(|f| f.0 + 1).unwrap_or(0).max(2);
    let n = if max <= 2 {
        2
    } else {
        2 + (max - 2).div_ceil(12) * 12
    };
    let mut missing = Vec::new();
    let mut it = found.iter().peekable();
    for i in 0..n {
        if it.peek().map(|f| f.0) == Some(i) {
            it.next();
        } else {
            missing.push(crate::model::params::file_name(i));
        }
    }
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(SourceError::Files {
            dir,
            missing,
            unexpected,
        });
    }
    let num_layers = ParamTable::layers_for_files(n).unwrap_or(0);
    Ok(CkptFiles {
        dir,
        files: found,
        num_layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        assert_eq!(parse_name("tensor00769_000"), Some((769, 0)));
        assert_eq!(parse_name("tensor00769_001"), Some((769, 1)));
        assert_eq!(parse_name("tensor0769_000"), None);
        assert_eq!(parse_name("tensor00769_000.tmp"), None);
    }
    #[test]
    fn reports_all_missing_and_unexpected() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("ckpt-0");
        std::fs::create_dir(&c).unwrap();
        for i in [0usize, 1, 2, 5, 13] {
            std::fs::write(c.join(crate::model::params::file_name(i)), b"x").unwrap();
        }
        std::fs::write(c.join("tensor00003_001"), b"x").unwrap();
        std::fs::write(c.join("README"), b"x").unwrap();
        match discover(d.path()) {
            Err(SourceError::Files {
                missing,
                unexpected,
                ..
            }) => {
                assert_eq!(missing.len(), 9, "{missing:?}");
                assert_eq!(missing[0], "tensor00003_000");
                assert_eq!(unexpected, vec!["tensor00003_001".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
