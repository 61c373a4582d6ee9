//! `grokit quantize`: an existing GGUF (file or split set) to another GGUF type mixture.

use super::convert::parse_size;
use super::progress::{human, Progress};
use super::Outcome;
use crate::convert::requant::{
    plan_requant_with, requantize_with, Action, RequantOptions, RequantReport,
};
use crate::gguf::GgufSet;
use crate::quant::policy::Policy;
use anyhow::bail;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `grokit quantize` (the help text is on `Command::Quantize`).
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Input GGUF (a single file, or the first shard of a split set).
    pub input: PathBuf,
    /// Output .gguf (split shards are named from it).
    #[arg(short, long)]
    pub out: PathBuf,
    /// A llama-quantize preset (q4_k_m, q8_0, iq4_xs, iq2_m, ...; see docs/quantization.md).
    #[arg(long, value_parser = parse_preset, required_unless_present = "quant", conflicts_with = "quant")]
    pub preset: Option<String>,
    /// Importance matrix (llama-imatrix's .gguf or legacy .dat) to weight the quantization.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// A quantization policy: a preset and/or class=type items (experts=q4_k,attn=q8_0,...).
    #[arg(long)]
    pub quant: Option<String>,
    /// Allow quantizing tensors that are already block-quantized to another block type.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Split into files of at most this size (e.g. 50G; decimal units).
    #[arg(long)]
    pub split_max_size: Option<String>,
    /// Parallel workers (default: all cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Write outputs through the page cache instead of with direct I/O (direct I/O is the
    /// default for GGUF files and safetensors shards on Linux: it reaches the disk's speed
    /// where buffered writes are limited by the cache; also GROKIT_DIRECT_IO=0).
    #[arg(long)]
    pub buffered_io: bool,
    /// Print the per-tensor report (types, bytes, bits per weight, RMS and max error).
    #[arg(long)]
    pub report: bool,
    /// Machine-readable JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the error statistics (faster).
    #[arg(long)]
    pub no_error_stats: bool,
    /// Print the plan (names, types, bytes) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// No progress output or warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A preset name grokit implements (llama-quantize's names, any case).
pub fn parse_preset(s: &str) -> Result<String, String> {
    match crate::quant::policy::Preset::from_name(s) {
        Some(p) if p.is_supported() => Ok(s.to_string()),
        _ => Err(format!(
            "unknown preset; one of: {}",
            crate::quant::ftype::preset_names().join(", ")
        )),
    }
}

/// Run `quantize`.
pub fn run(a: QuantizeArgs) -> anyhow::Result<Outcome> {
    let spec = match (&a.preset, &a.quant) {
        (Some(p), _) => p.clone(),
        (None, Some(q)) => q.clone(),
        (None, None) => bail!("pass --preset or --quant"),
    };
    let policy = Policy::parse(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    // GGUF errors name the file (and byte offset) themselves.
    let set = GgufSet::open(&a.input)?;
    let imatrix = a
        .imatrix
        .as_deref()
        .map(crate::imatrix::Imatrix::open)
        .transpose()?;
    let given = a.imatrix.as_deref().map(|p| p.display().to_string());
    let plan = plan_requant_with(
        &set,
        &policy,
        a.allow_requantize,
        imatrix.as_ref().zip(given.as_deref()),
    )?;
    if a.dry_run {
        let mut out = std::io::stdout().lock();
        for t in &plan.tensors {
            let note = t
                .note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<48} {:<22} {:<5} -> {:<5} {:>14}{note}",
                t.name,
                format!("{:?}", t.shape),
                t.in_ty.name(),
                t.out_ty.name(),
                t.out_bytes
            )?;
        }
        writeln!(
            out,
            "general.file_type {}; total tensor bytes: {} ({})",
            plan.file_type,
            plan.out_bytes(),
            human(plan.out_bytes())
        )?;
        return Ok(Outcome::Ok);
    }
    if a.buffered_io {
        crate::io::atomic::set_direct_writes(false);
    }
    let o = RequantOptions {
        out: a.out.clone(),
        split_max: a.split_max_size.as_deref().map(parse_size).transpose()?,
        jobs: a.jobs.unwrap_or_else(rayon::current_num_threads).max(1),
        force: a.force,
        measure: !a.no_error_stats,
        chunk_elems: 0,
    };
    let started = std::time::Instant::now();
    let p = Progress::new("quantize", plan.out_bytes(), a.quiet || a.json);
    if !a.quiet {
        for t in plan.tensors.iter().filter(|t| t.note.is_some()) {
            let kind = if t.action == Action::Requantize {
                "warning"
            } else {
                "note"
            };
            p.println(&format!(
                "{kind}: {}: {}",
                t.name,
                t.note.as_deref().unwrap_or("")
            ));
        }
    }
    let r = requantize_with(&set, &plan, &o, imatrix.as_ref(), &|n| p.inc(n))?;
    p.finish();
    render(&a, &r, started.elapsed().as_secs_f64())?;
    Ok(Outcome::Ok)
}

fn render(a: &QuantizeArgs, r: &RequantReport, secs: f64) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if a.json {
        let v =
            serde_json::json!({"input": a.input, "output": a.out, "seconds": secs, "report": r});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if a.report {
        writeln!(
            out,
            "{:<44} {:<5} {:<5} {:>12} {:>6} {:>11} {:>11} action",
            "tensor", "in", "out", "bytes", "bpw", "rms err", "max err"
        )?;
        for t in &r.tensors {
            let action = match (t.action, t.imatrix) {
                (Action::Copy, _) => "copy",
                (Action::Encode, false) => "encode",
                (Action::Encode, true) => "encode+imatrix",
                (Action::Requantize, false) => "requantize",
                (Action::Requantize, true) => "requantize+imatrix",
            };
            writeln!(
                out,
                "{:<44} {:<5} {:<5} {:>12} {:>6.2} {:>11.3e} {:>11.3e} {action}",
                t.name, t.in_type, t.ty, t.bytes, t.bpw, t.rms, t.max_abs
            )?;
        }
        let tt = &r.totals;
        writeln!(
            out,
            "total: {} tensors, {} -> {} bytes, {:.2} bpw, rms err {:.3e}, max err {:.3e} ({} copied, {} encoded, {} requantized)",
            tt.tensors, tt.in_bytes, tt.out_bytes, tt.bpw, tt.rms, tt.max_abs, tt.copied, tt.encoded, tt.requantized
        )?;
    }
    if !a.quiet {
        let bytes: u64 = r.files.iter().map(|f| f.1).sum();
        for (p, n) in &r.files {
            eprintln!("wrote {} ({})", p.display(), human(*n));
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
