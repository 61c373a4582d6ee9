//! A GGUF model that may span a split set (`model-00001-of-00009.gguf` ...).
//!
//! Why mirror llama.cpp's loader checks (docs/formats/gguf-output.md "Splits"): a set that grokit accepts
//! must load in llama.cpp, which rebuilds the shard names from the first one, requires
//! `split.no` to equal each shard's index, `split.tensors.count` to equal the tensors found, and
//! tensor names to be unique across shards.

use super::constants::{keys, ValueType};
use super::error::{GgufError, Result};
use super::plan::split_key_type;
use super::reader::{GgufFile, TensorInfo};
use super::value::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One file or a whole split set, with tensor lookup by name across shards.
#[derive(Debug)]
pub struct GgufSet {
    files: Vec<GgufFile>,
    index: HashMap<String, (usize, usize)>,
}

fn bad(path: &Path, reason: String) -> GgufError {
    GgufError::BadSplit {
        path: path.to_path_buf(),
        reason,
    }
}

/// Read a split key with the type gguf-split writes (u16 / u16 / i32), widened to i64.
fn split_value(f: &GgufFile, key: &str) -> Result<Option<i64>> {
    let ty = split_key_type(key).unwrap_or(ValueType::U16);
    Ok(f.typed(key, ty)?.map(|v| match v {
        Value::U16(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        _ => -1,
    }))
}

/// The prefix of a first-shard name `<prefix>-00001-of-<count>.gguf`, if it has that form.
fn split_prefix(path: &Path, count: u16) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(&format!("-00001-of-{count:05}.gguf"))
        .map(str::to_string)
}

impl GgufSet {
    /// Open a single GGUF file, or, when it carries `split.count`, the whole set it starts
    /// (it must be shard 1, named `<prefix>-00001-of-<count>.gguf`).
    pub fn open(path: &Path) -> Result<GgufSet> {
        let first = GgufFile::open(path)?;
        let count = match split_value(&first, keys::SPLIT_COUNT)? {
            None => return GgufSet::from_files(vec![first]),
            Some(c) => c,
        };
        let count = u16::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(bad(path, "split.count is 0".into()));
        }
        if count == 1 {
            return GgufSet::from_files(vec![first]);
        }
        let prefix = split_prefix(path, count).ok_or_else(|| {
            bad(
                path,
                format!(
                    "split.count = {count}, but the name does not end in -00001-of-{count:05}.gguf"
                ),
            )
        })?;
        let mut files = vec![first];
        for i in 2..=count {
            let p = path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf"));
            if !p.exists() {
                return Err(bad(
                    path,
                    format!("shard {i} of {count} is missing: {}", p.display()),
                ));
            }
            files.push(GgufFile::open(&p)?);
        }
        GgufSet::from_files(files)
    }

    /// Check already parsed files as a set in shard order (one file without split keys is a
    /// set of one) and index their tensors.
    pub fn from_files(files: Vec<GgufFile>) -> Result<GgufSet> {
        let Some(first) = files.first() else {
            return Err(bad(Path::new(""), "no files".into()));
        };
        let n = files.len();
        let total = split_value(first, keys::SPLIT_TENSORS_COUNT)?;
        if n > 1 || first.get(keys::SPLIT_COUNT).is_some() {
            for (i, f) in files.iter().enumerate() {
                let expect = |key: &str, want: i64| -> Result<()> {
                    match split_value(f, key)? {
                        Some(v) if v == want => Ok(()),
                        Some(v) => Err(bad(f.path(), format!("{key} = {v}, expected {want}"))),
                        None => Err(bad(f.path(), format!("{key} is missing"))),
                    }
                };
                expect(keys::SPLIT_NO, i as i64)?;
                expect(keys::SPLIT_COUNT, n as i64)?;
                if let Some(t) = total {
                    expect(keys::SPLIT_TENSORS_COUNT, t)?;
                }
            }
        }
        let mut index = HashMap::new();
        for (fi, f) in files.iter().enumerate() {
            for (ti, t) in f.tensors().iter().enumerate() {
                if index.insert(t.name.clone(), (fi, ti)).is_some() {
                    return Err(GgufError::DuplicateTensor {
                        path: f.path().to_path_buf(),
                        name: t.name.clone(),
                        offset: t.info_offset,
                    });
                }
            }
        }
        if let Some(t) = total {
            if t != index.len() as i64 {
                return Err(bad(
                    first.path(),
                    format!(
                        "split.tensors.count = {t}, but the shards hold {} tensors",
                        index.len()
                    ),
                ));
            }
        }
        Ok(GgufSet { files, index })
    }

    /// The files in shard order.
    pub fn files(&self) -> &[GgufFile] {
        &self.files
    }
    /// Paths in shard order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path().to_path_buf()).collect()
    }
    /// The model's metadata: the first shard's KVs (the others hold only split keys).
    pub fn kvs(&self) -> &[(String, Value)] {
        self.files.first().map_or(&[], |f| f.kvs())
    }
    /// A metadata value from the first shard.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.files.first().and_then(|f| f.get(key))
    }
    /// Number of tensors across all shards.
    pub fn tensor_count(&self) -> usize {
        self.index.len()
    }
    /// All tensors in shard order, with the file that holds each.
    pub fn tensors(&self) -> impl Iterator<Item = (&GgufFile, &TensorInfo)> {
        self.files
            .iter()
            .flat_map(|f| f.tensors().iter().map(move |t| (f, t)))
    }
    /// A tensor by name, with its file.
    pub fn tensor(&self, name: &str) -> Option<(&GgufFile, &TensorInfo)> {
        let &(fi, ti) = self.index.get(name)?;
        let f = self.files.get(fi)?;
        Some((f, f.tensors().get(ti)?))
    }
    /// A tensor's bytes by name.
    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|(f, t)| f.tensor_data(t))
    }
}
