//! Parsing `.torrent` metainfo (BEP 3; BEP 47 padding files): bounded, every path component
//! checked, the infohash taken over the `info` value's exact bytes.

use super::super::bencode::{self, BencodeError, Value};
use crate::base::hex;
use crate::base::limits::{
    TORRENT_MAX_BYTES, TORRENT_MAX_COMPONENT_BYTES, TORRENT_MAX_FILES, TORRENT_MAX_PATH_COMPONENTS,
    TORRENT_MAX_PIECE_LENGTH,
};
use crate::io::term::escape;
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
    #[error("torrent: unsafe path in {key}: \"{}\" {why}", escape(component))]
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
    } else if String::from_utf8_lossy(c).chars().any(char::is_control) {
        Some("contains a control character")
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
