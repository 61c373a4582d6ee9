//! L3: conversions of the release to GGUF and safetensors (`convert`), and of a GGUF into
//! another (`quantize`, [`requant`]). Plan everything first ([`plan`]), then stream one tensor
//! at a time in bounded bands ([`exec`]) through the one file loop both formats share
//! ([`sink`]). docs/architecture.md "How a tensor flows" walks through it.

pub mod band;
pub mod encode;
mod error;
pub mod exec;
pub mod gguf;
pub mod output;
pub mod plan;
pub mod report;
pub mod requant;
pub mod safetensors;
pub mod sink;

pub use error::ConvertError;

use crate::source::Checkpoint;
use crate::tokenizer::Tokenizer;
use encode::Measure;
use output::{Existing, FORCE_OR_RESUME};
use plan::OutTensor;
use std::collections::HashMap;
use std::path::Path;

/// How a conversion runs, whatever its output format.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Write only output files `k` (0-based) of every `n` (`--shard K/N`).
    pub shard: Option<(usize, usize)>,
    /// Keep output files that already exist as planned (`--resume`).
    pub resume: bool,
    /// Replace existing outputs (`--force`).
    pub force: bool,
    /// Parallel bands.
    pub jobs: usize,
    /// Measure quantization errors.
    pub measure: Measure,
}

impl RunOptions {
    /// Whether existing outputs may be replaced or kept.
    fn existing(&self) -> Existing {
        if self.force || self.resume {
            Existing::Allow
        } else {
            Existing::Refuse(FORCE_OR_RESUME)
        }
    }
}

/// Refuse a checkpoint with structural problems (`grokit inspect` lists them).
fn refuse_problems(ck: &Checkpoint) -> Result<(), ConvertError> {
    match ck.problems.first() {
        None => Ok(()),
        Some(p) => Err(ConvertError::Problems {
            dir: ck.dir.clone(),
            count: ck.problems.len(),
            first: format!("{}: {}", p.tensor, p.msg),
        }),
    }
}

/// Load a tokenizer, refusing one whose vocabulary is not the checkpoint's.
fn load_tokenizer(ck: &Checkpoint, path: &Path) -> Result<Tokenizer, ConvertError> {
    let tok = Tokenizer::from_file(path).map_err(|source| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        source,
    })?;
    let pieces = tok.pieces().len() as u64;
    if pieces != ck.config.vocab_size {
        return Err(ConvertError::VocabMismatch {
            path: path.to_path_buf(),
            pieces,
            vocab: ck.config.vocab_size,
        });
    }
    Ok(tok)
}

/// Planned tensors by name: each file's loop looks its tensors up here (once each).
fn index_by_name(tensors: &[OutTensor]) -> HashMap<&str, usize> {
    tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect()
}

/// The planned tensor `name` of an output file.
fn planned<'t>(
    index: &HashMap<&str, usize>,
    tensors: &'t [OutTensor],
    name: &str,
    file: &Path,
) -> Result<&'t OutTensor, ConvertError> {
    index
        .get(name)
        .and_then(|&i| tensors.get(i))
        .ok_or_else(|| ConvertError::Unplanned {
            file: file.to_path_buf(),
            tensor: name.to_string(),
        })
}
