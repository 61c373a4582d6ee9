//! `grokit convert`: the release to GGUF or safetensors, streaming, in bounded memory.

use super::progress::{human, Progress};
use super::Outcome;
use crate::base::DType;
use crate::convert::encode::Measure;
use crate::convert::gguf::{convert_gguf, plan_tensors_with, GgufOptions, TypeChoice};
use crate::convert::plan::{Layout, StDtype};
use crate::convert::report::ConvertReport;
use crate::convert::safetensors::{
    convert_safetensors, finish_safetensors, planned_bytes, StOptions,
};
use crate::quant::policy::Policy;
use crate::quant::GgmlType;
use crate::source::grok::{Checkpoint, OpenOptions};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Convert a release checkpoint to GGUF or safetensors.
///
/// GGUF (llama.cpp, architecture `grok`): matrices are transposed to [out, in], experts stacked,
/// norms and router kept F32, the embedding tied (no output.weight). `--type q8_0` copies the
/// release's int8 bit for bit into Q8_0 blocks wherever the scale allows (all of Grok-1).
/// `--quant` takes a preset (q8_0, q4_0, q4_k_m, q5_k_m, q6_k) or per-class types such as
/// `experts=q4_k,attn=q8_0,embed=q6_k` (see docs/quantization.md).
///
/// safetensors: `--dtype bf16` (default) is bit-identical to the weights the release computes
/// with; `int8` is lossless compressed-tensors (pack-quantized, group 128); `int4` is
/// compressed-tensors W4A16 group 128. (Small checkpoints whose widths or scale blocks 128 does
/// not divide get the largest power-of-two group that does, e.g. 32 for fixtures/tiny.)
///
/// Outputs are written to temporary names and renamed when complete; an interrupted run leaves
/// no partial file, and `--resume` keeps the finished ones.
///
/// Examples:
///   grokit convert /data/grok-1 --to gguf -o grok-1-q8_0.gguf --type q8_0 --split-max-size 50G
///   grokit convert /data/grok-1 --to gguf -o grok-1-q4_k_m.gguf --quant q4_k_m
///   grokit convert /data/grok-1 --to safetensors -o grok-1-hf --dtype bf16
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
    #[arg(long, value_parser = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"], default_value = "bf16")]
    pub r#type: String,
    /// GGUF quantization policy: a preset or class=type pairs (overrides --type).
    #[arg(long)]
    pub quant: Option<String>,
    /// Importance matrix (llama-imatrix's .gguf or legacy .dat): GGUF quantization weighted as
    /// `llama-quantize --imatrix`; safetensors `--dtype int4` scales chosen by a weighted search.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// SentencePiece tokenizer.model (default: beside the checkpoint).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// GGUF: split into files of at most this size (e.g. 50G; decimal units).
    #[arg(long)]
    pub split_max_size: Option<String>,
    /// GGUF general.name.
    #[arg(long, default_value = "Grok-1")]
    pub name: String,
    /// GGUF: set tokenizer.ggml.add_bos_token (the release's runner adds no BOS).
    #[arg(long)]
    pub add_bos: bool,
    /// safetensors dtype for matrices (norms and router stay F32).
    #[arg(long, value_parser = ["bf16", "f16", "f32", "int8", "int4"], default_value = "bf16")]
    pub dtype: String,
    /// safetensors naming layout.
    #[arg(long, value_enum, default_value = "hf")]
    pub layout: LayoutArg,
    /// safetensors shard size (decimal units, like huggingface_hub).
    #[arg(long, default_value = "5G")]
    pub shard_size: String,
    /// Keep output files that already exist with their planned size and header; write the rest.
    #[arg(long)]
    pub resume: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// Write only output files K, K+N, ... (0-based K of N workers; same plan everywhere).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// After --shard workers: check every output file and write the index/config/SHA256SUMS.
    #[arg(long)]
    pub finish: bool,
    /// Print the plan (names, shapes, types, bytes) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the per-tensor report (type, bytes, bits per weight, RMS and max error).
    #[arg(long)]
    pub report: bool,
    /// Machine-readable JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the error statistics (faster for quantized types).
    #[arg(long)]
    pub no_error_stats: bool,
    /// Parallel workers (default: all cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Write outputs through the page cache instead of with direct I/O (direct I/O is the
    /// default for GGUF files and safetensors shards on Linux: it reaches the disk's speed
    /// where buffered writes are limited by the cache; also GROKIT_DIRECT_IO=0).
    #[arg(long)]
    pub buffered_io: bool,
    /// Head dimension when there is no config.json.
    #[arg(long)]
    pub key_size: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parse `50G`, `5GB`, `500M`, `1000` (decimal units).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().with_context(|| {
        format!("size {s:?}: expected a number with an optional K/M/G/T suffix")
    })?;
    anyhow::ensure!(v > 0.0, "size {s:?} must be positive");
    Ok((v * mult) as u64)
}

fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("--shard takes K/N, e.g. 0/3")?;
    let (k, n): (usize, usize) = (k.trim().parse()?, n.trim().parse()?);
    anyhow::ensure!(n >= 1 && k < n, "--shard {s}: K must be in 0..N");
    Ok((k, n))
}

fn find_tokenizer(ck: &Checkpoint, explicit: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.clone());
    }
    [
        Some(ck.dir.join("tokenizer.model")),
        ck.dir.parent().map(|p| p.join("tokenizer.model")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// Run `convert`.
pub fn run(a: ConvertArgs) -> anyhow::Result<Outcome> {
    let ck = Checkpoint::open(
        &a.ckpt,
        &OpenOptions {
            key_size: a.key_size,
            ..Default::default()
        },
    )
    .with_context(|| format!("reading checkpoint {}", a.ckpt.display()))?;
    if a.buffered_io {
        crate::io::atomic::set_direct_writes(false);
    }
    let jobs = a.jobs.unwrap_or_else(rayon::current_num_threads).max(1);
    let measure = if a.no_error_stats {
        Measure::No
    } else {
        Measure::Errors
    };
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let tokenizer = find_tokenizer(&ck, &a.tokenizer);
    let started = std::time::Instant::now();
    let report: ConvertReport = match a.to {
        To::Gguf => {
            let types = match &a.quant {
                Some(q) => TypeChoice::Policy(
                    Policy::parse(q).map_err(|e| anyhow::anyhow!("--quant {q}: {e}"))?,
                ),
                None => {
                    TypeChoice::Uniform(GgmlType::from_name(&a.r#type).context("unknown --type")?)
                }
            };
            let Some(tokenizer) = tokenizer else {
                bail!("no tokenizer.model beside {}: pass --tokenizer FILE (GGUF files carry the vocabulary)", ck.dir.display());
            };
            let o = GgufOptions {
                out: a.out.clone(),
                types: types.clone(),
                tokenizer,
                split_max: a.split_max_size.as_deref().map(parse_size).transpose()?,
                name: a.name.clone(),
                add_bos: a.add_bos,
                shard,
                resume: a.resume,
                force: a.force,
                jobs,
                measure,
                imatrix: match &a.imatrix {
                    Some(p) => Some((
                        std::sync::Arc::new(crate::imatrix::Imatrix::open(p)?),
                        p.display().to_string(),
                    )),
                    None => None,
                },
            };
            let tensors =
                plan_tensors_with(&ck, &types, o.imatrix.as_ref().map(|(m, _)| m.as_ref()))?;
            if a.dry_run {
                print_plan(tensors.iter().map(|t| {
                    (
                        t.name.as_str(),
                        &t.shape[..],
                        crate::convert::gguf::ggml_type_of(t).to_string(),
                        t.nbytes,
                        t.note.as_deref(),
                    )
                }))?;
                return Ok(Outcome::Ok);
            }
            if a.finish {
                eprintln!(
                    "GGUF outputs need no finishing step: each split is complete when renamed"
                );
                return Ok(Outcome::Ok);
            }
            let total: u64 = tensors.iter().map(|t| t.nbytes).sum();
            let p = Progress::new("convert", total, a.quiet || a.json);
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
        To::Safetensors => {
            let dtype = match a.dtype.as_str() {
                "int8" => StDtype::Ct(8),
                "int4" => StDtype::Ct(4),
                d => StDtype::Float(DType::from_name(d).context("unknown --dtype")?),
            };
            let imatrix = match &a.imatrix {
                Some(p) if a.dtype == "int4" => Some(std::sync::Arc::new(
                    crate::imatrix::Imatrix::open(p)?,
                )),
                Some(_) => bail!(
                    "--imatrix applies to --to gguf and to --to safetensors --dtype int4 (bf16 and int8 are lossless)"
                ),
                None => None,
            };
            let o = StOptions {
                imatrix,
                out_dir: a.out.clone(),
                layout: match a.layout {
                    LayoutArg::Hf => Layout::Hf,
                    LayoutArg::Jax => Layout::Jax,
                },
                dtype,
                shard_size: parse_size(&a.shard_size)?,
                tokenizer,
                resume: a.resume,
                force: a.force,
                shard,
                jobs,
                measure,
            };
            if a.dry_run {
                let tensors = crate::convert::plan::st_tensors(&ck, o.layout, o.dtype)
                    .map_err(|e| anyhow::anyhow!(e))?;
                print_plan(tensors.iter().map(|t| {
                    (
                        t.name.as_str(),
                        &t.shape[..],
                        t.st_dtype().safetensors().to_string(),
                        t.nbytes,
                        t.note.as_deref(),
                    )
                }))?;
                return Ok(Outcome::Ok);
            }
            if a.finish {
                let w = finish_safetensors(&ck, &o)?;
                if !a.quiet {
                    eprintln!(
                        "checked {} shard(s) and wrote the index, configs and SHA256SUMS in {}",
                        w.len(),
                        a.out.display()
                    );
                }
                return Ok(Outcome::Ok);
            }
            let total = planned_bytes(&ck, &o)?;
            let p = Progress::new("convert", total, a.quiet || a.json);
            let r = convert_safetensors(&ck, &o, &|n| p.inc(n))?;
            p.finish();
            r
        }
    };
    let secs = started.elapsed().as_secs_f64();
    render(&a, &report, secs, &a.out)?;
    Ok(Outcome::Ok)
}

fn print_plan<'a>(
    rows: impl Iterator<Item = (&'a str, &'a [u64], String, u64, Option<&'a str>)>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut total = 0;
    for (name, shape, ty, bytes, note) in rows {
        total += bytes;
        writeln!(
            out,
            "{name:<60} {:<22} {ty:<6} {bytes:>14}{}",
            format!("{shape:?}"),
            note.map(|n| format!("  ({n})")).unwrap_or_default()
        )?;
    }
    writeln!(out, "total tensor bytes: {total} ({})", human(total))?;
    Ok(())
}

fn render(a: &ConvertArgs, r: &ConvertReport, secs: f64, out_path: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({"output": out_path, "seconds": secs, "report": r});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if a.report {
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
    let bytes: u64 = r.files.iter().map(|f| f.1).sum();
    if !a.quiet {
        for (p, n) in &r.files {
            eprintln!("wrote {} ({})", p.display(), human(*n));
        }
        for p in &r.skipped {
            eprintln!("kept {} (already complete)", p.display());
        }
        eprintln!(
            "{} tensors, {} in {:.1} s ({:.0} MB/s)",
            r.tensors.len(),
            human(bytes),
            secs,
            bytes as f64 / 1e6 / secs.max(1e-9)
        );
    }
    Ok(())
}
