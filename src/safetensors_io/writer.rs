//! Streaming one planned shard to disk, plus the small files around it (index, `SHA256SUMS`).
//!
//! Why a state machine instead of "write these bytes": a converter that produces tensors in the
//! wrong order, or one byte short, would otherwise write a file whose header lies about its
//! data. [`ShardWriter`] knows the shard's layout, so it rejects a chunk that overruns the
//! current tensor, a tensor begun out of order, and a `finish` with anything missing, naming the
//! tensor each time. The file is written under a temporary name ([`AtomicFile`]) and renamed
//! only when complete, so an interrupted run never leaves a plausible-looking partial shard.
//! The SHA-256 of the whole file is computed from the bytes as they are written (no second
//! read pass over hundreds of GB).

use super::plan::{PlannedTensor, Shard};
use super::{Result, StError};
use crate::base::hex;
use crate::io::AtomicFile;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A finished output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Final path.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
}

impl Written {
    /// The file name (last path component), as `SHA256SUMS` and the index use it.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Writes one shard of a [`super::ShardPlan`]: header first, then tensor bytes in layout order.
pub struct ShardWriter {
    shard: Shard,
    /// Computes the shard's SHA-256 as it is written (on its own thread with direct I/O).
    file: AtomicFile,
    /// Index into the layout of the tensor receiving bytes, if one has begun.
    current: Option<usize>,
    /// Index of the next tensor to begin.
    next: usize,
    /// Bytes written into the current tensor.
    filled: u64,
}

impl ShardWriter {
    /// Create `dir/<shard file name>` (under its temporary name) and write the header.
    pub fn create(dir: &Path, shard: &Shard) -> Result<ShardWriter> {
        let path = dir.join(shard.file_name());
        let mut file = AtomicFile::create_large_hashed(&path)?;
        file.write_all(shard.header())?;
        Ok(ShardWriter {
            shard: shard.clone(),
            file,
            current: None,
            next: 0,
            filled: 0,
        })
    }

    /// The shard's tensors in the order their bytes must arrive.
    pub fn layout(&self) -> &[PlannedTensor] {
        self.shard.tensors()
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Bytes written so far (header included).
    pub fn written(&self) -> u64 {
        self.file.written()
    }

    /// The tensor the next bytes belong to (None when every tensor is complete).
    pub fn expected_next(&self) -> Option<&PlannedTensor> {
        let layout = self.shard.tensors();
        if let Some(i) = self.current {
            if let Some(t) = layout.get(i) {
                if self.filled < t.byte_len() {
                    return Some(t);
                }
            }
        }
        layout.get(self.next..)?.iter().find(|t| t.byte_len() > 0)
    }

    /// Declare that the bytes of tensor `name` start now. Optional (chunks alone follow the
    /// layout), but it turns an orchestrator's ordering bug into an error naming both tensors.
    /// Empty tensors in between are skipped.
    pub fn begin_tensor(&mut self, name: &str) -> Result<()> {
        self.check_current_complete()?;
        let layout = self.shard.tensors();
        while let Some(t) = layout.get(self.next) {
            if t.name == name {
                self.current = Some(self.next);
                self.next += 1;
                self.filled = 0;
                return Ok(());
            }
            if t.byte_len() > 0 {
                return Err(StError::OutOfOrder {
                    path: self.path().to_path_buf(),
                    expected: t.name.clone(),
                    got: name.to_string(),
                });
            }
            self.next += 1;
        }
        Err(StError::OutOfOrder {
            path: self.path().to_path_buf(),
            expected: "(none: all tensors written)".into(),
            got: name.to_string(),
        })
    }

    /// Append bytes to the current tensor (starting the next one in layout order when the
    /// current is complete). A chunk must not cross a tensor boundary.
    pub fn write_tensor_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let chunk = bytes.len() as u64;
        let layout = self.shard.tensors();
        let need_next = match self.current.and_then(|i| layout.get(i)) {
            Some(t) => self.filled >= t.byte_len(),
            None => true,
        };
        if need_next {
            // Skip empty tensors: they are complete without any bytes.
            while layout.get(self.next).is_some_and(|t| t.byte_len() == 0) {
                self.next += 1;
            }
            if self.next >= layout.len() {
                return Err(StError::TooMuchData {
                    path: self.path().to_path_buf(),
                    extra: chunk,
                });
            }
            self.current = Some(self.next);
            self.next += 1;
            self.filled = 0;
        }
        let Some(t) = self.current.and_then(|i| layout.get(i)) else {
            return Err(StError::TooMuchData {
                path: self.path().to_path_buf(),
                extra: chunk,
            });
        };
        let left = t.byte_len() - self.filled;
        if chunk > left {
            return Err(StError::ChunkOverrun {
                path: self.path().to_path_buf(),
                tensor: t.name.clone(),
                chunk,
                left,
            });
        }
        self.file.write_all(bytes)?;
        self.filled += chunk;
        Ok(())
    }

    /// Write a whole tensor: [`ShardWriter::begin_tensor`] plus one chunk of exactly its size.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.begin_tensor(name)?;
        self.write_tensor_chunk(bytes)?;
        self.check_current_complete()
    }

    fn check_current_complete(&self) -> Result<()> {
        if let Some(t) = self.current.and_then(|i| self.shard.tensors().get(i)) {
            if self.filled != t.byte_len() {
                return Err(StError::IncompleteTensor {
                    path: self.path().to_path_buf(),
                    tensor: t.name.clone(),
                    written: self.filled,
                    expected: t.byte_len(),
                });
            }
        }
        Ok(())
    }

    /// Check that every tensor is complete, then flush, fsync and rename into place.
    /// On error the temporary file is removed and nothing appears under the final name.
    pub fn finish(self) -> Result<Written> {
        self.check_current_complete()?;
        let layout = self.shard.tensors();
        if let Some(t) = layout
            .get(self.next..)
            .and_then(|rest| rest.iter().find(|t| t.byte_len() > 0))
        {
            return Err(StError::IncompleteTensor {
                path: self.path().to_path_buf(),
                tensor: t.name.clone(),
                written: 0,
                expected: t.byte_len(),
            });
        }
        // Every tensor is complete and chunks never overrun, so this is the planned file size.
        let bytes = self.file.written();
        let (path, digest) = self.file.commit_with_sha256()?;
        let digest = digest.ok_or_else(|| {
            StError::Io(crate::io::IoError::new(
                "hash",
                &path,
                std::io::Error::other("no SHA-256 was computed"),
            ))
        })?;
        let sha256 = hex::encode(&digest);
        Ok(Written {
            path,
            bytes,
            sha256,
        })
    }
}

/// Write a whole plan into `dir`: every shard in order (tensors requested in each shard's
/// layout order), then `model.safetensors.index.json` when sharded. `produce` is called once
/// per tensor, after [`ShardWriter::begin_tensor`], and must feed exactly the tensor's bytes
/// through [`ShardWriter::write_tensor_chunk`] (in as many chunks as it likes). Returns the
/// written files (shards, then the index) for [`write_sha256sums`], to which the caller may add
/// its own files (config.json, tokenizer) first.
pub fn write_plan<E, F>(
    dir: &Path,
    plan: &super::ShardPlan,
    mut produce: F,
) -> std::result::Result<Vec<Written>, E>
where
    E: From<StError>,
    F: FnMut(&PlannedTensor, &mut ShardWriter) -> std::result::Result<(), E>,
{
    let mut out = Vec::with_capacity(plan.shards().len() + 1);
    for shard in plan.shards() {
        let mut w = ShardWriter::create(dir, shard)?;
        for t in shard.tensors() {
            w.begin_tensor(&t.name)?;
            produce(t, &mut w)?;
        }
        out.push(w.finish()?);
    }
    if plan.is_sharded() {
        out.push(write_small_file(
            dir,
            super::plan::INDEX_FILE_NAME,
            plan.index_json().as_bytes(),
        )?);
    }
    Ok(out)
}

/// Write a small file (index JSON, config) atomically and return its size and SHA-256.
pub fn write_small_file(dir: &Path, name: &str, contents: &[u8]) -> Result<Written> {
    check_plain_name(name)?;
    let path = dir.join(name);
    let mut f = AtomicFile::create(&path)?;
    f.write_all(contents)?;
    let path = f.commit()?;
    Ok(Written {
        path,
        bytes: contents.len() as u64,
        sha256: hex::encode(&Sha256::digest(contents)),
    })
}

/// `SHA256SUMS` text for files in one directory: `<hex>  <name>\n` per file (two spaces: the
/// text-mode form `sha256sum -c` accepts), sorted by name so reruns are byte-identical.
pub fn sha256sums_text(files: &[Written]) -> Result<String> {
    let mut rows: Vec<(String, &str)> = Vec::with_capacity(files.len());
    for w in files {
        let name = w.file_name();
        check_plain_name(&name)?;
        rows.push((name, &w.sha256));
    }
    rows.sort();
    Ok(rows.iter().map(|(n, h)| format!("{h}  {n}\n")).collect())
}

/// Write `dir/SHA256SUMS` for `files` (see [`sha256sums_text`]).
pub fn write_sha256sums(dir: &Path, files: &[Written]) -> Result<Written> {
    write_small_file(dir, "SHA256SUMS", sha256sums_text(files)?.as_bytes())
}

/// A name that is one path component and safe in a `SHA256SUMS` line (sha256sum escapes
/// backslashes and newlines, which grokit never needs).
pub(crate) fn check_plain_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\n', '\r', '\0']);
    if bad {
        return Err(StError::BadFileName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::DType;
    use crate::safetensors_io::plan::{plan_shards, StTensor};

    fn plan() -> crate::safetensors_io::ShardPlan {
        let t = vec![
            StTensor::new("small", DType::I8, vec![3]),
            StTensor::new("empty", DType::F32, vec![0, 2]),
            StTensor::new("w", DType::F32, vec![2]),
        ];
        plan_shards(&t, 1 << 20).unwrap()
    }

    #[test]
    fn chunks_follow_layout() {
        let d = tempfile::tempdir().unwrap();
        let p = plan();
        let mut w = ShardWriter::create(d.path(), &p.shards()[0]).unwrap();
        let order: Vec<_> = w.layout().iter().map(|t| t.name.clone()).collect();
        assert_eq!(order, ["empty", "w", "small"]);
        assert_eq!(w.expected_next().unwrap().name, "w");
        w.write_tensor_chunk(&[0; 3]).unwrap();
        // 5 more bytes would overrun `w` (8 bytes).
        let e = w.write_tensor_chunk(&[0; 6]).unwrap_err();
        assert!(
            matches!(&e, StError::ChunkOverrun { tensor, chunk: 6, left: 5, .. } if tensor == "w"),
            "{e}"
        );
        w.write_tensor_chunk(&[0; 5]).unwrap();
        // Out of order: `small` is next, not `empty` again.
        let e = w.begin_tensor("w").unwrap_err();
        assert!(
            matches!(&e, StError::OutOfOrder { expected, .. } if expected == "small"),
            "{e}"
        );
        w.begin_tensor("small").unwrap();
        w.write_tensor_chunk(&[1, 2]).unwrap();
        let e = w.write_tensor("x", &[]).unwrap_err();
        assert!(
            matches!(&e, StError::IncompleteTensor { tensor, written: 2, expected: 3, .. } if tensor == "small"),
            "{e}"
        );
        w.write_tensor_chunk(&[3]).unwrap();
        let e = w.write_tensor_chunk(&[4]).unwrap_err();
        assert!(matches!(e, StError::TooMuchData { extra: 1, .. }));
        let out = w.finish().unwrap();
        let bytes = std::fs::read(&out.path).unwrap();
        assert_eq!(out.bytes, bytes.len() as u64);
        assert_eq!(out.sha256, hex::encode(&Sha256::digest(&bytes)));
        assert_eq!(&bytes[bytes.len() - 3..], &[1, 2, 3]);
    }

    #[test]
    fn finish_refuses_incomplete_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = plan();
        let mut w = ShardWriter::create(d.path(), &p.shards()[0]).unwrap();
        w.write_tensor("w", &[0; 8]).unwrap();
        let e = w.finish().unwrap_err();
        assert!(
            matches!(&e, StError::IncompleteTensor { tensor, written: 0, expected: 3, .. } if tensor == "small"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn write_plan_writes_shards_and_index() {
        let d = tempfile::tempdir().unwrap();
        let t = vec![
            StTensor::new("a", DType::F32, vec![4]),
            StTensor::new("b", DType::I8, vec![20]),
        ];
        let p = plan_shards(&t, 16).unwrap();
        let files = write_plan(d.path(), &p, |t, w| -> Result<()> {
            let bytes = vec![t.name.as_bytes()[0]; t.byte_len() as usize];
            w.write_tensor_chunk(&bytes)
        })
        .unwrap();
        let names: Vec<_> = files.iter().map(Written::file_name).collect();
        assert_eq!(
            names,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json"
            ]
        );
        // A producer that comes up short fails at the next tensor, naming it.
        let e = write_plan(d.path(), &p, |_, w| w.write_tensor_chunk(&[0])).unwrap_err();
        // (`b` is over the budget, so hub-style planning puts it in the first shard.)
        assert!(
            matches!(&e, StError::IncompleteTensor { tensor, .. } if tensor == "b"),
            "{e}"
        );
        write_sha256sums(d.path(), &files).unwrap();
        let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
        assert_eq!(sums.lines().count(), 3);
    }

    #[test]
    fn sums_text() {
        let w = |n: &str, h: &str| Written {
            path: PathBuf::from("/x").join(n),
            bytes: 0,
            sha256: h.into(),
        };
        let t = sha256sums_text(&[w("b", "22"), w("a", "11")]).unwrap();
        assert_eq!(t, "11  a\n22  b\n");
        assert!(sha256sums_text(&[w("a\nb", "11")]).is_err());
        assert!(check_plain_name("..").is_err());
        assert!(check_plain_name("model.safetensors").is_ok());
    }
}
