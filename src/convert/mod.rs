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
pub mod weights;

pub use error::ConvertError;

use crate::io::atomic::Written;
use crate::source::Checkpoint;
use crate::tokenizer::Tokenizer;
use encode::Measure;
use exec::{stream_tensor_with, Scratch};
use output::{check_outputs, Existing, Inputs, FORCE_OR_RESUME};
use plan::OutTensor;
use report::{ConvertReport, TensorReport};
use sink::{ByName, FileLoop, OutputFile};
use std::path::{Path, PathBuf};

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

/// The name a report gives an output tensor's stored type.
type TypeName<'a> = dyn Fn(&OutTensor) -> Result<&'static str, ConvertError> + 'a;

/// The importance weights a tensor is encoded with (`None`: plain encoding).
type Weights<'a> = dyn Fn(&OutTensor) -> Result<Option<Vec<f32>>, ConvertError> + 'a;

/// Write a release conversion's `files` (this run's, per `run.shard`): refuse outputs that
/// would replace an input or, without `--force`/`--resume`, an existing file; keep finished
/// files `keep` accepts; stream every planned tensor (looked up by name in an index, once);
/// tell `done` about each finished file. `weights` gives a tensor's importance weights
/// (`--imatrix`). Returns the report and every file written or kept.
#[allow(clippy::too_many_arguments)]
fn convert_files<F: OutputFile>(
    ck: &Checkpoint,
    tensors: &[OutTensor],
    files: &[F],
    run: &RunOptions,
    progress: &(dyn Fn(u64) + Sync),
    type_name: &TypeName<'_>,
    weights: &Weights<'_>,
    keep: &mut dyn FnMut(&F) -> Result<Option<Written>, ConvertError>,
    done: &mut dyn FnMut(&Written) -> Result<(), ConvertError>,
) -> Result<(ConvertReport, Vec<Written>), ConvertError> {
    let files_loop = FileLoop {
        shard: run.shard,
        resume: run.resume,
        progress,
    };
    // With --shard, other workers' files may already exist in the shared output: check only ours.
    let paths = files_loop.paths(files);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    check_outputs(Inputs::checkpoint(&ck.dir), &refs, run.existing())?;
    let index = ByName::new(tensors, |t| t.name.as_str());
    let mut report = ConvertReport::default();
    let mut scratch = Scratch::default();
    let outcome = files_loop.run(
        files,
        keep,
        &mut |file, name, chunks| {
            let t = index.get(file, name)?;
            let w = weights(t)?;
            let stats = stream_tensor_with(
                ck,
                t,
                run.measure,
                run.jobs,
                w.as_deref(),
                &mut scratch,
                chunks,
            )?;
            report
                .tensors
                .push(TensorReport::new(t, type_name(t)?, stats));
            Ok(())
        },
        done,
    )?;
    let all = outcome
        .written
        .iter()
        .chain(&outcome.kept)
        .cloned()
        .collect();
    report.add(outcome);
    Ok((report, all))
}
