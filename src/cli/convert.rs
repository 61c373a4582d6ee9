//! `grokit convert`: the release to GGUF or safetensors, streaming, in bounded memory.
//!
//! [`ConvertArgs`] (what clap parsed) → [`Convert`] (every value parsed and checked, before the
//! checkpoint is opened) → [`Convert::execute`] (the conversion, with progress on stderr) →
//! [`Convert::render`] (the plan, the report or JSON on stdout, status lines on stderr).

use super::args::{self, parse_shard, parse_size, WriteArgs};
use super::progress::{human, Progress};
use super::render::{print_written, write_json};
use super::Outcome;
use crate::base::DType;
use crate::convert::encode::Measure;
use crate::convert::gguf::{
    convert_gguf, ggml_type_of, plan_tensors_with, GgufOptions, TypeChoice,
};
use crate::convert::plan::{st_tensors, Layout, OutTensor, StDtype};
use crate::convert::report::ConvertReport;
use crate::convert::safetensors::{
    convert_safetensors, finish_safetensors, planned_bytes, StOptions,
};
use crate::convert::RunOptions;
use crate::imatrix::Imatrix;
use crate::quant::policy::Policy;
use crate::quant::GgmlType;
use crate::source::grok::{Checkpoint, OpenOptions};
use anyhow::{bail, Context};
use clap::builder::PossibleValuesParser;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum To {
    /// llama.cpp's GGUF (`grok` architecture), one file or a split set.
    Gguf,
    /// Hugging Face safetensors shards with index, config and tokenizer files.
    Safetensors,
}

/// safetensors layouts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LayoutArg {
    /// hpcai-tech / vLLM Grok1ModelForCausalLM names (model.layers.N.attn.q_proj.weight, ...).
    Hf,
    /// The release's own paths (transformer.decoder_layer.N...), which llama.cpp's HF converter maps.
    Jax,
}

/// safetensors dtypes for matrices (the long help above says what each one is; doc comments on
/// the variants would make clap print a second, shorter list).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DtypeArg {
    Bf16,
    F16,
    F32,
    Int8,
    Int4,
}

/// Convert a release checkpoint to GGUF or safetensors.
///
/// GGUF (llama.cpp, architecture `grok`): matrices are transposed to [out, in], experts stacked,
/// norms and router kept F32, the embedding tied (no output.weight). `--type q8_0` copies the
/// release's int8 bit for bit into Q8_0 blocks wherever the scale allows (all of Grok-1).
/// `--quant` takes a preset (listed under --quant below) or per-class types such as
/// `experts=q4_k,attn=q8_0,embed=q6_k` (see docs/quantization.md). `--imatrix FILE`
/// (llama-imatrix's .gguf or legacy .dat) weights the encoders as `llama-quantize --imatrix`
/// does, per expert from the release's exact int8 × scale values; IQ2_XXS/IQ2_XS/IQ2_S/IQ3_XXS
/// need one. With `--dtype int4` it chooses each group's scale by a weighted search.
///
/// safetensors: `--dtype bf16` (default) is bit-identical to the weights the release computes
/// with; `int8` is lossless compressed-tensors (pack-quantized, group 128); `int4` is
/// compressed-tensors W4A16 group 128. (Small checkpoints whose widths or scale blocks 128 does
/// not divide get the largest power-of-two group that does, e.g. 32 for fixtures/tiny.)
///
/// Outputs are written to temporary names and renamed when complete; an interrupted run leaves
/// no partial file, and `--resume` keeps the finished ones. Sizes are decimal (50G = 50·10⁹
/// bytes), like huggingface_hub and gguf-split.
///
/// Examples:
///   grokit convert /data/grok-1 --to gguf -o grok-1-q8_0.gguf --type q8_0 --split-max-size 50G
///   grokit convert /data/grok-1 --to gguf -o grok-1-q4_k_m.gguf --quant q4_k_m
///   grokit convert /data/grok-1 --to gguf -o grok-1-mixed.gguf --quant experts=q4_k,attn=q8_0
///   grokit convert /data/grok-1 --to gguf -o grok-1-iq2_m.gguf --quant iq2_m --imatrix grok-1.imatrix.gguf
///   grokit convert /data/grok-1 --to gguf -o grok-1-f32.gguf --type f32 --dry-run
///   grokit convert /data/grok-1 --to safetensors -o grok-1-hf --dtype bf16
///   grokit convert /data/grok-1 --to safetensors -o grok-1-int8 --dtype int8 --shard 0/2   # worker 0 of 2
///   grokit convert /data/grok-1 --to safetensors -o grok-1-int8 --dtype int8 --finish      # after all workers
///   grokit convert fixtures/tiny --to gguf -o /tmp/tiny.gguf --report
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ConvertArgs {
    /// Checkpoint directory (ckpt-0/, ckpt/, or a directory containing one).
    pub ckpt: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub to: To,
    /// Output: a .gguf file, or a directory for safetensors.
    #[arg(short, long)]
    pub out: PathBuf,
    /// GGUF tensor type for matrices and the embedding.
    #[arg(long, value_parser = PossibleValuesParser::new(args::weight_type_names()), default_value = "bf16")]
    pub r#type: String,
    /// GGUF quantization policy: a preset or class=type pairs (overrides --type).
    #[arg(long, help = quant_help())]
    pub quant: Option<String>,
    /// Importance matrix (llama-imatrix's .gguf or legacy .dat): GGUF quantization weighted as
    /// `llama-quantize --imatrix`; safetensors `--dtype int4` scales chosen by a weighted search.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// SentencePiece tokenizer.model (default: beside the checkpoint).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// GGUF general.name.
    #[arg(long, default_value = "Grok-1")]
    pub name: String,
    /// GGUF: set tokenizer.ggml.add_bos_token (the release's runner adds no BOS).
    #[arg(long)]
    pub add_bos: bool,
    /// safetensors dtype for matrices (norms and router stay F32).
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: DtypeArg,
    /// safetensors naming layout.
    #[arg(long, value_enum, default_value = "hf")]
    pub layout: LayoutArg,
    /// safetensors shard size (decimal units, like huggingface_hub).
    #[arg(long, default_value = "5G")]
    pub shard_size: String,
    /// Keep output files that already exist with their planned size and header; write the rest.
    #[arg(long)]
    pub resume: bool,
    /// Write only output files K, K+N, ... (0-based K of N workers; same plan everywhere).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// After --shard workers: check every output file and write the index/config/SHA256SUMS.
    #[arg(long)]
    pub finish: bool,
    /// Output, reporting and parallelism (shared with `quantize`).
    #[command(flatten)]
    pub write: WriteArgs,
    /// Head dimension when there is no config.json.
    #[arg(long)]
    pub key_size: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

fn quant_help() -> String {
    format!(
        "GGUF quantization policy: a preset ({}) or class=type pairs (overrides --type)",
        args::preset_names().join(", ")
    )
}

/// `convert`'s options, validated.
#[derive(Debug)]
pub struct Convert {
    ckpt: PathBuf,
    key_size: Option<u64>,
    out: PathBuf,
    target: Target,
    /// `--tokenizer`; otherwise looked up beside the checkpoint.
    tokenizer: Option<PathBuf>,
    shard: Option<(usize, usize)>,
    resume: bool,
    force: bool,
    mode: Mode,
    jobs: usize,
    measure: Measure,
    buffered_io: bool,
    show: Show,
    /// `--imatrix`.
    imatrix: Option<PathBuf>,
}

/// The output format and its settings.
#[derive(Debug)]
enum Target {
    Gguf {
        types: TypeChoice,
        split_max: Option<u64>,
        name: String,
        add_bos: bool,
    },
    Safetensors {
        layout: Layout,
        dtype: StDtype,
        shard_size: u64,
    },
}

/// What the run does (`--dry-run` wins over `--finish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    DryRun,
    Finish,
}

/// What to print.
#[derive(Debug, Clone, Copy)]
struct Show {
    json: bool,
    report: bool,
    quiet: bool,
}

/// What a run did, for [`Convert::render`].
enum Done {
    /// `--dry-run`: the planned tensors.
    Plan(Vec<OutTensor>),
    /// `--finish` for GGUF, which needs none.
    NothingToFinish,
    /// `--finish` for safetensors: shards checked.
    Finished(usize),
    /// The conversion, and how long it took.
    Converted(ConvertReport, f64),
}

impl Convert {
    /// Parse and check every argument; nothing is opened yet. Arguments of the other format
    /// (`--shard-size` for GGUF, `--type` for safetensors, ...) are ignored, as before.
    pub fn resolve(a: ConvertArgs) -> anyhow::Result<Convert> {
        let shard = a.shard.as_deref().map(parse_shard).transpose()?;
        let target = match a.to {
            To::Gguf => Target::Gguf {
                types: match &a.quant {
                    Some(q) => TypeChoice::Policy(
                        Policy::parse(q).map_err(|e| anyhow::anyhow!("--quant {q}: {e}"))?,
                    ),
                    None => TypeChoice::Uniform(
                        GgmlType::from_name(&a.r#type).context("unknown --type")?,
                    ),
                },
                split_max: a.write.split_max()?,
                name: a.name,
                add_bos: a.add_bos,
            },
            To::Safetensors => Target::Safetensors {
                layout: match a.layout {
                    LayoutArg::Hf => Layout::Hf,
                    LayoutArg::Jax => Layout::Jax,
                },
                dtype: match a.dtype {
                    DtypeArg::Bf16 => StDtype::Float(DType::BF16),
                    DtypeArg::F16 => StDtype::Float(DType::F16),
                    DtypeArg::F32 => StDtype::Float(DType::F32),
                    DtypeArg::Int8 => StDtype::Ct(8),
                    DtypeArg::Int4 => StDtype::Ct(4),
                },
                shard_size: parse_size(&a.shard_size)?,
            },
        };
        if a.imatrix.is_some()
            && matches!(&target, Target::Safetensors { dtype, .. } if *dtype != StDtype::Ct(4))
        {
            bail!("--imatrix applies to --to gguf and to --to safetensors --dtype int4 (bf16, f16, f32 and int8 are lossless or unquantized)");
        }
        let mode = if a.write.dry_run {
            Mode::DryRun
        } else if a.finish {
            Mode::Finish
        } else {
            Mode::Write
        };
        Ok(Convert {
            jobs: a.write.jobs(),
            measure: if a.write.no_error_stats {
                Measure::No
            } else {
                Measure::Errors
            },
            buffered_io: a.write.buffered_io,
            force: a.write.force,
            show: Show {
                json: a.write.json,
                report: a.write.report,
                quiet: a.quiet,
            },
            imatrix: a.imatrix,
            ckpt: a.ckpt,
            key_size: a.key_size,
            out: a.out,
            target,
            tokenizer: a.tokenizer,
            shard,
            resume: a.resume,
            mode,
        })
    }

    /// Open the checkpoint and do the work.
    /// The library's run options (which files, workers, resume or replace).
    fn run(&self) -> RunOptions {
        RunOptions {
            shard: self.shard,
            resume: self.resume,
            force: self.force,
            jobs: self.jobs,
            measure: self.measure,
        }
    }

    /// Read `--imatrix`, if given (its errors name the file and byte offset).
    fn open_imatrix(&self) -> anyhow::Result<Option<std::sync::Arc<Imatrix>>> {
        Ok(match &self.imatrix {
            Some(p) => Some(std::sync::Arc::new(Imatrix::open(p)?)),
            None => None,
        })
    }

    fn execute(&self) -> anyhow::Result<Done> {
        let open = OpenOptions {
            key_size: self.key_size,
            ..Default::default()
        };
        let ck = Checkpoint::open(&self.ckpt, &open)
            .with_context(|| format!("reading checkpoint {}", self.ckpt.display()))?;
        args::apply_buffered_io(self.buffered_io);
        let tokenizer = self.tokenizer.clone().or_else(|| find_tokenizer(&ck));
        let started = Instant::now();
        let quiet = self.show.quiet || self.show.json;
        let report = match &self.target {
            Target::Gguf {
                types,
                split_max,
                name,
                add_bos,
            } => {
                let Some(tokenizer) = tokenizer else {
                    bail!("no tokenizer.model beside {}: pass --tokenizer FILE (GGUF files carry the vocabulary)", ck.dir.display());
                };
                let imatrix = self.open_imatrix()?;
                let tensors = plan_tensors_with(&ck, types, imatrix.as_deref())?;
                match self.mode {
                    Mode::DryRun => return Ok(Done::Plan(tensors)),
                    Mode::Finish => return Ok(Done::NothingToFinish),
                    Mode::Write => {}
                }
                let o = GgufOptions {
                    out: self.out.clone(),
                    types: types.clone(),
                    tokenizer,
                    split_max: *split_max,
                    name: name.clone(),
                    add_bos: *add_bos,
                    run: self.run(),
                    imatrix: imatrix.zip(self.imatrix.as_ref().map(|p| p.display().to_string())),
                };
                let total: u64 = tensors.iter().map(|t| t.nbytes).sum();
                let p = Progress::new("convert", total, quiet);
                for t in tensors.iter().filter(|t| t.note.is_some()) {
                    p.println(&format!(
                        "warning: {}: {}",
                        t.name,
                        t.note.as_deref().unwrap_or("")
                    ));
                }
                let r = convert_gguf(&ck, &o, &|n| p.inc(n))?;
                p.finish();
                r
            }
            Target::Safetensors {
                layout,
                dtype,
                shard_size,
            } => {
                let o = StOptions {
                    out_dir: self.out.clone(),
                    layout: *layout,
                    dtype: *dtype,
                    shard_size: *shard_size,
                    tokenizer,
                    run: self.run(),
                    imatrix: self.open_imatrix()?,
                };
                match self.mode {
                    Mode::DryRun => {
                        let tensors =
                            st_tensors(&ck, o.layout, o.dtype).map_err(|e| anyhow::anyhow!(e))?;
                        return Ok(Done::Plan(tensors));
                    }
                    Mode::Finish => return Ok(Done::Finished(finish_safetensors(&ck, &o)?.len())),
                    Mode::Write => {}
                }
                let total = planned_bytes(&ck, &o)?;
                let p = Progress::new("convert", total, quiet);
                let r = convert_safetensors(&ck, &o, &|n| p.inc(n))?;
                p.finish();
                r
            }
        };
        Ok(Done::Converted(report, started.elapsed().as_secs_f64()))
    }

    /// Print what the run did.
    fn render(&self, done: &Done) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match done {
            Done::Plan(tensors) => self.render_plan(&mut out, tensors)?,
            Done::NothingToFinish => {
                eprintln!(
                    "GGUF outputs need no finishing step: each split is complete when renamed"
                )
            }
            Done::Finished(shards) => {
                if !self.show.quiet {
                    eprintln!(
                        "checked {shards} shard(s) and wrote the index, configs and SHA256SUMS in {}",
                        self.out.display()
                    );
                }
            }
            Done::Converted(r, secs) => self.render_report(&mut out, r, *secs)?,
        }
        Ok(())
    }

    fn render_plan(&self, out: &mut impl Write, tensors: &[OutTensor]) -> anyhow::Result<()> {
        let mut total = 0;
        for t in tensors {
            let ty = match self.target {
                Target::Gguf { .. } => ggml_type_of(t).to_string(),
                Target::Safetensors { .. } => t.st_dtype().safetensors().to_string(),
            };
            total += t.nbytes;
            writeln!(
                out,
                "{:<60} {:<22} {ty:<6} {:>14}{}",
                t.name,
                format!("{:?}", t.shape),
                t.nbytes,
                t.note
                    .as_deref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            )?;
        }
        writeln!(out, "total tensor bytes: {total} ({})", human(total))?;
        Ok(())
    }

    fn render_report(
        &self,
        out: &mut impl Write,
        r: &ConvertReport,
        secs: f64,
    ) -> anyhow::Result<()> {
        if self.show.json {
            let v = serde_json::json!({"output": self.out, "seconds": secs, "report": r});
            write_json(out, &v)?;
            return Ok(());
        }
        if self.show.report {
            writeln!(
                out,
                "{:<48} {:<6} {:>13} {:>6} {:>11} {:>11} {:>9}",
                "tensor", "type", "bytes", "bpw", "rms err", "max err", "lossless"
            )?;
            for t in &r.tensors {
                let total = t.lossless_blocks + t.requantized_blocks;
                let ll = if total == 0 {
                    "-".to_string()
                } else {
                    format!("{:.1}%", 100.0 * t.lossless_blocks as f64 / total as f64)
                };
                writeln!(
                    out,
                    "{:<48} {:<6} {:>13} {:>6.2} {:>11.3e} {:>11.3e} {:>9}",
                    t.name, t.ty, t.bytes, t.bpw, t.rms, t.max_abs, ll
                )?;
            }
        }
        if !self.show.quiet {
            print_written(&r.files, &r.skipped, r.tensors.len(), secs);
        }
        Ok(())
    }
}

fn find_tokenizer(ck: &Checkpoint) -> Option<PathBuf> {
    [
        Some(ck.dir.join("tokenizer.model")),
        ck.dir.parent().map(|p| p.join("tokenizer.model")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// Run `convert`: resolve, execute, render.
pub fn run(a: ConvertArgs) -> anyhow::Result<Outcome> {
    let c = Convert::resolve(a)?;
    let done = c.execute()?;
    c.render(&done)?;
    Ok(Outcome::Ok)
}
