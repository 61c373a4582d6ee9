//! Reading a `.safetensors` file or a sharded set (directory or `model.safetensors.index.json`)
//! through memory maps, validated before any tensor is handed out.
//!
//! Why so strict: this reader verifies grokit's own outputs and feeds tools that trust its
//! slices. Every file is checked in full at open (bounded header, coverage, no gaps or overlaps,
//! sizes match shapes; then the `safetensors` crate re-validates), and a set is checked for
//! consistency with its index (every tensor mapped to exactly the shard that holds it). Nothing
//! is allocated from a declared length: the header is parsed in place from the mapped bytes,
//! which were capped first.

use super::header::{self, Parsed, UniqueStrMap};
use super::plan::{INDEX_FILE_NAME, SINGLE_FILE_NAME};
use super::writer::check_plain_name;
use super::{Result, StError};
use crate::base::limits::{ST_MAX_INDEX_BYTES, ST_MAX_SHARDS};
use crate::base::DType;
use crate::io::MappedFile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One tensor of an opened file or set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<u64>,
    /// The file holding it.
    pub file: PathBuf,
    /// `data_offsets`, relative to that file's data buffer.
    pub data_offsets: (u64, u64),
    /// File offset of the first byte.
    pub file_offset: u64,
}

struct StFile {
    map: MappedFile,
    parsed: Parsed,
}

/// An opened, validated safetensors file or sharded set.
pub struct StReader {
    files: Vec<StFile>,
    /// Sorted by name; `usize` indexes `files`.
    tensors: Vec<(TensorEntry, usize)>,
    index: Option<PathBuf>,
    declared_total_size: Option<u64>,
}

impl StReader {
    /// Open `path`: a `.safetensors` file, a `model.safetensors.index.json`, or a directory
    /// holding either (the index wins when both exist).
    pub fn open(path: &Path) -> Result<StReader> {
        if path.is_dir() {
            let idx = path.join(INDEX_FILE_NAME);
            if crate::io::input::present(&idx) {
                return Self::open_index(&idx);
            }
            let single = path.join(SINGLE_FILE_NAME);
            if crate::io::input::present(&single) {
                return Self::open_file(&single);
            }
            return Err(StError::NoModel {
                path: path.to_path_buf(),
            });
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_file(path)
    }

    /// Open one `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<StReader> {
        let f = load(path)?;
        let mut r = StReader {
            files: vec![f],
            tensors: Vec::new(),
            index: None,
            declared_total_size: None,
        };
        r.collect_tensors();
        Ok(r)
    }

    /// Open a sharded set from its index; shards are looked up beside the index.
    pub fn open_index(index_path: &Path) -> Result<StReader> {
        let bad = |msg: String| StError::BadIndex {
            path: index_path.to_path_buf(),
            msg,
        };
        let map = MappedFile::open(index_path)?;
        if map.len() > ST_MAX_INDEX_BYTES {
            return Err(bad(format!(
                "{} bytes, over the {ST_MAX_INDEX_BYTES}-byte limit",
                map.len()
            )));
        }
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            metadata: Option<serde_json::Map<String, serde_json::Value>>,
            weight_map: UniqueStrMap,
        }
        let idx: Index = serde_json::from_slice(map.bytes()).map_err(|e| bad(e.to_string()))?;
        let weight_map = idx.weight_map.0;
        if weight_map.is_empty() {
            return Err(bad("empty weight_map".into()));
        }
        let declared_total_size = idx
            .metadata
            .as_ref()
            .and_then(|m| m.get("total_size"))
            .and_then(|v| v.as_u64());
        let mut shard_names: Vec<&String> = weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        if shard_names.len() > ST_MAX_SHARDS {
            return Err(bad(format!(
                "{} shards, over the limit of {ST_MAX_SHARDS}",
                shard_names.len()
            )));
        }
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut files = Vec::with_capacity(shard_names.len());
        for name in &shard_names {
            check_plain_name(name)
                .map_err(|_| bad(format!("shard name `{name}` is not a plain file name")))?;
            let f = load(&dir.join(name))?;
            for e in &f.parsed.entries {
                match weight_map.get(&e.name) {
                    Some(s) if s == *name => {}
                    Some(s) => {
                        return Err(bad(format!(
                            "tensor `{}` is in {name} but the index maps it to {s}",
                            e.name
                        )))
                    }
                    None => {
                        return Err(bad(format!(
                            "tensor `{}` in {name} is missing from weight_map",
                            e.name
                        )))
                    }
                }
            }
            files.push(f);
        }
        let mut r = StReader {
            files,
            tensors: Vec::new(),
            index: Some(index_path.to_path_buf()),
            declared_total_size,
        };
        r.collect_tensors();
        for (t, shard) in &weight_map {
            if r.entry(t).is_none() {
                return Err(bad(format!(
                    "weight_map names tensor `{t}` in {shard}, which does not hold it"
                )));
            }
        }
        Ok(r)
    }

    fn collect_tensors(&mut self) {
        let mut v = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            for e in &f.parsed.entries {
                let entry = TensorEntry {
                    name: e.name.clone(),
                    dtype: e.dtype,
                    shape: e.shape.clone(),
                    file: f.map.path().to_path_buf(),
                    data_offsets: (e.begin, e.end),
                    file_offset: f.parsed.data_start + e.begin,
                };
                v.push((entry, i));
            }
        }
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        self.tensors = v;
    }

    fn entry(&self, name: &str) -> Option<&(TensorEntry, usize)> {
        let i = self
            .tensors
            .binary_search_by(|(e, _)| e.name.as_str().cmp(name))
            .ok()?;
        self.tensors.get(i)
    }

    /// All tensors, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorEntry> {
        self.tensors.iter().map(|(e, _)| e)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// One tensor's description.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.entry(name).map(|(e, _)| e)
    }

    /// One tensor's bytes (little-endian, row-major), borrowed from the map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let (e, fi) = self
            .entry(name)
            .ok_or_else(|| StError::NotFound(name.to_string()))?;
        let f = self
            .files
            .get(*fi)
            .ok_or_else(|| StError::NotFound(name.to_string()))?;
        let (start, end) = (e.file_offset, f.parsed.data_start + e.data_offsets.1);
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        range
            .and_then(|(s, t)| f.map.bytes().get(s..t))
            .ok_or_else(|| StError::Truncated {
                path: e.file.clone(),
                needed: e.data_offsets.1,
                present: f.map.len().saturating_sub(f.parsed.data_start),
            })
    }

    /// Drop the resident pages of bytes `range` of tensor `name`'s data, widened by `margin`
    /// bytes on each side (kept inside the file), once they have been consumed, so streaming
    /// through a large file keeps peak RSS independent of its size. Pages are re-read from the
    /// file if touched again. The margin catches pages the kernel mapped around a fault
    /// ("fault-around"). Unknown names are ignored.
    pub fn release(&self, name: &str, range: std::ops::Range<u64>, margin: u64) {
        let Some((e, fi)) = self.entry(name) else {
            return;
        };
        let Some(f) = self.files.get(*fi) else {
            return;
        };
        let start = e
            .file_offset
            .saturating_add(range.start)
            .saturating_sub(margin);
        let end = e
            .file_offset
            .saturating_add(range.end)
            .saturating_add(margin)
            .min(f.map.len());
        if let (Ok(s), Ok(l)) = (
            usize::try_from(start),
            usize::try_from(end.saturating_sub(start)),
        ) {
            if l > 0 {
                f.map.release(s, l);
            }
        }
    }

    /// `__metadata__` of the first file (for a set, every grokit shard carries the same map).
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.files.first().and_then(|f| f.parsed.metadata.as_ref())
    }

    /// The files, in shard-name order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.map.path())
    }

    /// `__metadata__` of file `i` (see [`StReader::files`]).
    pub fn file_metadata(&self, i: usize) -> Option<&BTreeMap<String, String>> {
        self.files.get(i).and_then(|f| f.parsed.metadata.as_ref())
    }

    /// The index file, when opened as a set.
    pub fn index_path(&self) -> Option<&Path> {
        self.index.as_deref()
    }

    /// Sum of all tensor data bytes.
    pub fn total_size(&self) -> u64 {
        self.tensors
            .iter()
            .map(|(e, _)| e.data_offsets.1 - e.data_offsets.0)
            .sum()
    }

    /// The index's `metadata.total_size`, if it has an integer one. Not enforced on open
    /// (third-party indexes disagree about it); compare with [`StReader::total_size`].
    pub fn declared_total_size(&self) -> Option<u64> {
        self.declared_total_size
    }
}

/// Parse and validate one safetensors file held in memory (header, layout, coverage), as
/// [`StReader::open_file`] does for a mapped file; `path` is only used in errors. Lets fuzzers
/// and tools check bytes that are not on disk.
pub fn entries_from_bytes(bytes: &[u8], path: &Path) -> Result<Vec<TensorEntry>> {
    let parsed = header::parse(path, bytes)?;
    Ok(parsed
        .entries
        .iter()
        .map(|e| TensorEntry {
            name: e.name.clone(),
            dtype: e.dtype,
            shape: e.shape.clone(),
            file: path.to_path_buf(),
            data_offsets: (e.begin, e.end),
            file_offset: parsed.data_start.saturating_add(e.begin),
        })
        .collect())
}

fn load(path: &Path) -> Result<StFile> {
    let map = MappedFile::open(path)?;
    let parsed = header::parse(path, map.bytes())?;
    Ok(StFile { map, parsed })
}
