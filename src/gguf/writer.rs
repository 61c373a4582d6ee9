//! Streaming one planned GGUF file to disk.
//!
//! Why a chunked, in-order writer: Grok's tensors are up to 3 GB each and the whole output is
//! ~300 GB, so no tensor needs to sit in memory whole, and nothing is zero-filled and rewritten
//! (a GGUF writer that preallocates and then patches writes every byte twice). ggml requires
//! data in tensor-info order anyway (offset_i = running padded sum,
//! docs/formats/gguf-output.md "Byte layout"), so the writer accepts bytes only in plan order,
//! counts them per tensor, inserts the zero padding itself, and commits the file (temp +
//! rename) only when every tensor received exactly its planned byte count. A crash or an error
//! leaves no file under the final name. The order and counting are
//! [`crate::io::atomic::sequence`]'s, shared with the safetensors writer.

use super::error::Result;
use super::plan::{FilePlan, PlannedTensor};
use crate::io::atomic::sequence::{SequencedFile, Slot};
use crate::io::atomic::Written;
use crate::io::AtomicFile;

/// Writes one [`FilePlan`]: the header at creation, then tensor bytes in plan order.
pub struct GgufFileWriter {
    plan: FilePlan,
    out: SequencedFile,
}

impl GgufFileWriter {
    /// Create the temporary file and write the header (KVs, tensor infos, padding).
    pub fn create(plan: FilePlan) -> Result<GgufFileWriter> {
        Self::create_with(plan, false)
    }

    /// [`GgufFileWriter::create`], also computing the file's SHA-256 while it is written
    /// (returned in [`Written::sha256`]); with direct I/O on a thread of its own.
    pub fn create_hashed(plan: FilePlan) -> Result<GgufFileWriter> {
        Self::create_with(plan, true)
    }

    fn create_with(plan: FilePlan, hash: bool) -> Result<GgufFileWriter> {
        let file = if hash {
            AtomicFile::create_large_hashed(plan.path())?
        } else {
            AtomicFile::create_large(plan.path())?
        };
        let slots = plan
            .tensors()
            .iter()
            .map(|t| Slot {
                name: t.name.clone(),
                len: t.nbytes,
                pad: t.padded - t.nbytes,
            })
            .collect();
        let out = SequencedFile::new(file, &plan.header_bytes(), slots)?;
        Ok(GgufFileWriter { plan, out })
    }

    /// The plan being written.
    pub fn plan(&self) -> &FilePlan {
        &self.plan
    }

    /// The tensor that the next chunk belongs to, or `None` when all are complete.
    pub fn current_tensor(&self) -> Option<&PlannedTensor> {
        self.plan.tensors().get(self.out.current_index())
    }

    /// Append bytes to the current tensor. A chunk may not cross into the next tensor: a chunk
    /// that would give the tensor more than its planned bytes is refused (naming it) and
    /// nothing is written. When a tensor becomes complete its padding is written and the next
    /// tensor becomes current.
    pub fn write_tensor_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.out.write_chunk(bytes)?)
    }

    /// Write one whole tensor: `bytes` must be exactly the current tensor's remaining bytes
    /// (fewer is [`TensorIncomplete`](super::GgufError::TensorIncomplete), more is [`ChunkOverflow`](super::GgufError::ChunkOverflow)).
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.out.write_rest(bytes)?)
    }

    /// Commit (fsync + rename) if every tensor is complete; otherwise the temporary file is
    /// removed and the first incomplete tensor is named.
    pub fn finish(self) -> Result<Written> {
        let w = self.out.finish()?;
        debug_assert_eq!(w.bytes, self.plan.file_len());
        Ok(w)
    }

    /// Declare that tensor `name`'s bytes start now (optional; an out-of-order name is
    /// [`OutOfOrder`](super::GgufError::OutOfOrder)).
    pub fn begin_tensor(&mut self, name: &str) -> Result<()> {
        Ok(self.out.begin_tensor(name)?)
    }
}
