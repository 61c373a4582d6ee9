//! Streaming one planned GGUF file to disk.
//!
//! Why a chunked, in-order writer: Grok's tensors are up to 3 GB each and the whole output is
//! ~300 GB, so no tensor needs to sit in memory whole, and nothing is zero-filled and rewritten
//! (gguf-rs's mistake, rust-crates.md §3.1). ggml requires data in tensor-info order anyway
//! (offset_i = running padded sum), so the writer accepts bytes only in plan order, counts them
//! per tensor, inserts the zero padding itself, and commits the file (temp + rename) only when
//! every tensor received exactly its planned byte count. A crash or an error leaves no file
//! under the final name.

use super::error::{GgufError, Result};
use super::plan::{FilePlan, PlannedTensor};
use crate::io::AtomicFile;
use std::path::PathBuf;

/// A finished, committed GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Final path.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
}

/// Writes one [`FilePlan`]: the header at creation, then tensor bytes in plan order.
pub struct GgufFileWriter {
    plan: FilePlan,
    out: AtomicFile,
    /// Index of the tensor receiving bytes (== tensor count when all are complete).
    current: usize,
    /// Bytes the current tensor has received.
    received: u64,
}

impl GgufFileWriter {
    /// Create the temporary file and write the header (KVs, tensor infos, padding).
    pub fn create(plan: FilePlan) -> Result<GgufFileWriter> {
        let mut out = AtomicFile::create_large(plan.path())?;
        out.write_all(&plan.header_bytes())?;
        let mut w = GgufFileWriter {
            plan,
            out,
            current: 0,
            received: 0,
        };
        w.skip_empty()?;
        Ok(w)
    }

    /// The plan being written.
    pub fn plan(&self) -> &FilePlan {
        &self.plan
    }

    /// The tensor that the next chunk belongs to, or `None` when all are complete.
    pub fn current_tensor(&self) -> Option<&PlannedTensor> {
        self.plan.tensors().get(self.current)
    }

    /// Bytes the current tensor still needs.
    pub fn remaining_in_tensor(&self) -> u64 {
        self.current_tensor()
            .map_or(0, |t| t.nbytes - self.received)
    }

    /// Append bytes to the current tensor. A chunk may not cross into the next tensor: a chunk
    /// that would give the tensor more than its planned bytes is refused (naming it) and
    /// nothing is written. When a tensor becomes complete its padding is written and the next
    /// tensor becomes current.
    pub fn write_tensor_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        let Some(t) = self.plan.tensors().get(self.current) else {
            if len == 0 {
                return Ok(());
            }
            return Err(GgufError::NoTensorPending {
                path: self.plan.path().to_path_buf(),
                len,
            });
        };
        let got = self.received.saturating_add(len);
        if got > t.nbytes {
            return Err(GgufError::ChunkOverflow {
                path: self.plan.path().to_path_buf(),
                name: t.name.clone(),
                expected: t.nbytes,
                got,
            });
        }
        self.out.write_all(bytes)?;
        self.received = got;
        if got == t.nbytes {
            let pad = t.padded - t.nbytes;
            self.out.write_zeros(pad)?;
            self.current += 1;
            self.received = 0;
            self.skip_empty()?;
        }
        Ok(())
    }

    /// Write one whole tensor: `bytes` must be exactly the current tensor's remaining bytes
    /// (fewer is [`GgufError::TensorIncomplete`], more is [`GgufError::ChunkOverflow`]).
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(t) = self.current_tensor() {
            let expected = t.nbytes;
            let got = self.received.saturating_add(bytes.len() as u64);
            if got < expected {
                return Err(GgufError::TensorIncomplete {
                    path: self.plan.path().to_path_buf(),
                    name: t.name.clone(),
                    expected,
                    got,
                });
            }
        }
        self.write_tensor_chunk(bytes)
    }

    /// Zero-byte tensors are complete as soon as they become current.
    fn skip_empty(&mut self) -> Result<()> {
        while let Some(t) = self.plan.tensors().get(self.current) {
            if t.nbytes != 0 {
                break;
            }
            self.out.write_zeros(t.padded)?;
            self.current += 1;
        }
        Ok(())
    }

    /// Commit (fsync + rename) if every tensor is complete; otherwise the temporary file is
    /// removed and the first incomplete tensor is named.
    pub fn finish(self) -> Result<WrittenFile> {
        if let Some(t) = self.current_tensor() {
            return Err(GgufError::TensorIncomplete {
                path: self.plan.path().to_path_buf(),
                name: t.name.clone(),
                expected: t.nbytes,
                got: self.received,
            });
        }
        let bytes = self.out.written();
        debug_assert_eq!(bytes, self.plan.file_len());
        let path = self.out.commit()?;
        Ok(WrittenFile { path, bytes })
    }
}

/// Write every planned file, asking `data` for each tensor's bytes in order (convenient when
/// tensors are small or already in memory; large outputs should stream chunks through
/// [`GgufFileWriter`] directly).
pub fn write_files<F>(files: &[FilePlan], mut data: F) -> Result<Vec<WrittenFile>>
where
    F: FnMut(&PlannedTensor) -> Result<Vec<u8>>,
{
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let mut w = GgufFileWriter::create(f.clone())?;
        for t in f.tensors() {
            if t.nbytes == 0 {
                continue;
            }
            let bytes = data(t)?;
            w.write_tensor(&bytes)?;
        }
        written.push(w.finish()?);
    }
    Ok(written)
}
