//! Streaming one planned shard to disk, plus the small files around it (index, `SHA256SUMS`).
//!
//! Why a state machine instead of "write these bytes": a converter that produces tensors in the
//! wrong order, or one byte short, would otherwise write a file whose header lies about its
//! data. [`ShardWriter`] knows the shard's layout ([`crate::io::atomic::sequence`], shared
//! with the GGUF writer), so it rejects a chunk that overruns the current tensor, a tensor
//! begun out of order, and a `finish` with anything missing, naming the tensor each time. The
//! file is written under a temporary name ([`AtomicFile`]) and renamed only when complete, so
//! an interrupted run never leaves a plausible-looking partial shard. The SHA-256 of the whole
//! file is computed from the bytes as they are written (no second read pass over hundreds of
//! GB).

use super::plan::{PlannedTensor, Shard};
use super::{Result, StError};
use crate::io::atomic::sequence::{SequencedFile, Slot};
use crate::io::AtomicFile;
use std::path::Path;

pub use crate::io::atomic::Written;

/// Writes one shard of a [`super::ShardPlan`]: header first, then tensor bytes in layout order.
pub struct ShardWriter {
    shard: Shard,
    /// Computes the shard's SHA-256 as it is written (on its own thread with direct I/O).
    out: SequencedFile,
}

impl ShardWriter {
    /// Create `dir/<shard file name>` (under its temporary name) and write the header.
    pub fn create(dir: &Path, shard: &Shard) -> Result<ShardWriter> {
        let path = dir.join(shard.file_name());
        let file = AtomicFile::create_large_hashed(&path)?;
        let slots = shard
            .tensors()
            .iter()
            .map(|t| Slot {
                name: t.name.clone(),
                len: t.byte_len(),
                pad: 0,
            })
            .collect();
        let out = SequencedFile::new(file, shard.header(), slots)?;
        Ok(ShardWriter {
            shard: shard.clone(),
            out,
        })
    }

    /// The shard's tensors in the order their bytes must arrive.
    pub fn layout(&self) -> &[PlannedTensor] {
        self.shard.tensors()
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        self.out.path()
    }

    /// Bytes written so far (header included).
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// Declare that the bytes of tensor `name` start now. Optional (chunks alone follow the
    /// layout), but it turns an orchestrator's ordering bug into an error naming both tensors.
    /// Empty tensors in between are skipped.
    pub fn begin_tensor(&mut self, name: &str) -> Result<()> {
        Ok(self.out.begin_tensor(name)?)
    }

    /// Write a whole tensor: [`ShardWriter::begin_tensor`] plus exactly its bytes (fewer is an
    /// incomplete tensor, with nothing written).
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.begin_tensor(name)?;
        Ok(self.out.write_rest(bytes)?)
    }

    /// Append bytes to the current tensor (the next one in layout order once the current is
    /// complete). A chunk must not cross a tensor boundary.
    pub fn write_tensor_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.out.write_chunk(bytes)?)
    }

    /// Check that every tensor is complete, then flush, fsync and rename into place.
    /// On error the temporary file is removed and nothing appears under the final name.
    pub fn finish(self) -> Result<Written> {
        Ok(self.out.finish()?)
    }
}

/// Write a small file (index JSON, config) atomically and return its size and SHA-256.
pub fn write_small_file(dir: &Path, name: &str, contents: &[u8]) -> Result<Written> {
    check_plain_name(name)?;
    let mut f = AtomicFile::create_hashed(&dir.join(name))?;
    f.write_all(contents)?;
    Ok(f.commit_written()?)
}

/// `SHA256SUMS` text for files in one directory: `<hex>  <name>\n` per file (two spaces: the
/// text-mode form `sha256sum -c` accepts), sorted by name so reruns are byte-identical.
pub fn sha256sums_text(files: &[Written]) -> Result<String> {
    let mut rows: Vec<(String, &str)> = Vec::with_capacity(files.len());
    for w in files {
        let name = w.file_name();
        check_plain_name(&name)?;
        let Some(hex) = w.sha256.hex() else {
            return Err(StError::NotHashed(name));
        };
        rows.push((name, hex));
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
    use crate::io::atomic::Sha256Sum;
    use crate::safetensors_io::plan::{plan_shards, StTensor};
    use std::path::PathBuf;

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
        w.write_tensor_chunk(&[0; 3]).unwrap();
        // 5 more bytes would overrun `w` (8 bytes).
        let e = w.write_tensor_chunk(&[0; 6]).unwrap_err();
        assert!(
            matches!(&e, StError::ChunkOverflow { name, chunk: 6, expected: 8, got: 9, .. } if name == "w"),
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
            matches!(&e, StError::TensorIncomplete { name, got: 2, expected: 3, .. } if name == "small"),
            "{e}"
        );
        w.write_tensor_chunk(&[3]).unwrap();
        let e = w.write_tensor_chunk(&[4]).unwrap_err();
        assert!(matches!(e, StError::NoTensorPending { len: 1, .. }));
        let out = w.finish().unwrap();
        let bytes = std::fs::read(&out.path).unwrap();
        assert_eq!(out.bytes, bytes.len() as u64);
        assert_eq!(out.sha256, Sha256Sum::of(&bytes));
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
            matches!(&e, StError::TensorIncomplete { name, got: 0, expected: 3, .. } if name == "small"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn sums_text() {
        let w = |n: &str, h: &str| Written {
            path: PathBuf::from("/x").join(n),
            bytes: 0,
            sha256: Sha256Sum(Some(h.into())),
        };
        let t = sha256sums_text(&[w("b", "22"), w("a", "11")]).unwrap();
        assert_eq!(t, "11  a\n22  b\n");
        assert!(sha256sums_text(&[w("a\nb", "11")]).is_err());
        assert!(check_plain_name("..").is_err());
        assert!(check_plain_name("model.safetensors").is_ok());
    }
}
