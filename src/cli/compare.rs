//! `grokit compare`: how far a converted model (or a logits file) is from a reference, on the
//! same tokens; exit 1 when a threshold is exceeded.
//!
//! Raw arguments ([`CompareArgs`]) → validated options ([`CompareOptions`]: thresholds resolved,
//! tokens read) → run ([`execute`]: logits of both sides, metrics) → render.

use super::forward::{check_bounds, token_rows, PrecisionArg, TokenArgs};
use super::Outcome;
use crate::npy::{self, NpyF32};
use crate::reference::compare::{
    compare_arrays, per_row, Metrics, RowMetrics, Thresholds, Verdict,
};
use crate::reference::sources::Source;
use crate::reference::{Model, Positions, Precision, Session};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Threshold presets.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ThresholdArg {
    /// Float noise only (two f32 runs of the same weights).
    F32,
    /// A bf16 model or bf16 numerics.
    Bf16,
    /// 8-bit quantization (Q8_0, int8).
    Q8,
    /// 4-bit quantization (Q4_0, Q4_K_M, int4).
    Q4,
}

/// Compare two models (or two .npy logits files) on the same tokens; exit 1 when the
/// difference exceeds the thresholds. Metrics over real (non-pad) positions: max |Δlogit|, RMS,
/// mean KL(A‖B) and top-1 agreement.
///
/// Examples:
///   grokit compare /data/grok-1 grok-1-q8_0.gguf --tokens-file prompts.json --thresholds q8
///   grokit compare ref.npy test.npy --tokens-file prompts.json --max-kl 1e-3
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CompareArgs {
    /// Reference: a model or a .npy/.npy.zst of logits.
    pub a: PathBuf,
    /// Candidate: a model or a .npy/.npy.zst of logits.
    pub b: PathBuf,
    /// Tokens (required when A or B is a model; used as the pad mask for .npy inputs).
    #[command(flatten)]
    pub input: TokenArgs,
    /// Numerics for models.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Threshold preset.
    #[arg(long, value_enum, default_value = "q8")]
    pub thresholds: ThresholdArg,
    /// Override: maximum max |Δlogit|.
    #[arg(long)]
    pub max_abs: Option<f32>,
    /// Override: maximum mean KL divergence.
    #[arg(long)]
    pub max_kl: Option<f64>,
    /// Override: minimum top-1 agreement (0..1).
    #[arg(long)]
    pub min_top1: Option<f64>,
    /// Memory budget per model run (activations, all logits, KV cache; K/M/G/T suffixes).
    #[arg(long, default_value = "8G", value_parser = super::args::parse_size)]
    pub mem_budget: u64,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Validated `compare` options.
pub struct CompareOptions {
    a: PathBuf,
    b: PathBuf,
    rows: Option<Vec<Vec<u32>>>,
    input: TokenArgs,
    precision: Precision,
    thresholds: Thresholds,
    mem_budget: u64,
    json: bool,
}

impl CompareOptions {
    /// Resolve the thresholds and read the tokens.
    pub fn new(a: CompareArgs) -> anyhow::Result<CompareOptions> {
        let rows = if a.input.given() {
            // The model side's tokenizer (a GGUF's own metadata when it has no file beside).
            let model = if is_npy(&a.a) { &a.b } else { &a.a };
            Some(token_rows(model, &a.input)?.0)
        } else {
            None
        };
        let mut th = match a.thresholds {
            ThresholdArg::F32 => Thresholds::f32_exact(),
            ThresholdArg::Bf16 => Thresholds::bf16(),
            ThresholdArg::Q8 => Thresholds::q8(),
            ThresholdArg::Q4 => Thresholds::q4(),
        };
        if let Some(x) = a.max_abs {
            th.max_abs = x;
        }
        if let Some(x) = a.max_kl {
            th.mean_kl = x;
        }
        if let Some(x) = a.min_top1 {
            th.min_top1 = x;
        }
        Ok(CompareOptions {
            a: a.a,
            b: a.b,
            rows,
            input: a.input,
            precision: a.precision.into(),
            thresholds: th,
            mem_budget: a.mem_budget,
            json: a.json,
        })
    }
}

fn is_npy(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.ends_with(".npy") || s.ends_with(".npy.zst")
}

/// The logits of one side: read from a `.npy`, or computed by the model at every position.
fn logits_of(p: &Path, o: &CompareOptions) -> anyhow::Result<NpyF32> {
    if is_npy(p) {
        // Two sides in memory at once: each within half the budget (and npy's own cap).
        let cap = (o.mem_budget / 2).min(npy::NPY_MAX_DATA_BYTES);
        return npy::read_limited(p, cap).with_context(|| format!("reading {}", p.display()));
    }
    let source = Source::open(p, &o.input.open_options())?;
    let rows = o
        .rows
        .as_ref()
        .context("comparing models needs --prompt, --tokens or --tokens-file")?;
    let dims = source.dims().clone();
    let bounds = check_bounds(&dims, rows, 0, true, o.mem_budget, source.mapped_bytes())?;
    source.set_keep_resident(bounds.keep_resident);
    let mut s = Session::from_model(Model::new(source.weights(), dims, o.precision)?, rows.len())?;
    s.set_max_chunk(bounds.chunk);
    Ok(NpyF32::from(s.prefill_select(rows, Positions::All)?))
}

/// What a comparison found.
pub struct CompareReport {
    metrics: Metrics,
    verdict: Verdict,
    per_prompt: Vec<RowMetrics>,
    max_kl: f64,
    ppl: (f64, f64),
}

/// Perplexity over all prompts, weighting each prompt by its scored positions.
fn total_ppl(rows: &[Vec<u32>], per: &[RowMetrics], f: fn(&RowMetrics) -> f64) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for r in per {
        let k = rows[r.row]
            .iter()
            .filter(|&&t| t != 0)
            .count()
            .saturating_sub(1);
        if k > 0 && f(r).is_finite() {
            s += f(r).ln() * k as f64;
            n += k;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        (s / n as f64).exp()
    }
}

/// Compute both sides and the metrics.
pub fn execute(o: &CompareOptions) -> anyhow::Result<CompareReport> {
    let ra = logits_of(&o.a, o)?;
    let rb = logits_of(&o.b, o)?;
    let mask: Option<Vec<bool>> = o.rows.as_ref().map(|r| {
        r.iter()
            .flat_map(|row| row.iter().map(|&t| t != 0))
            .collect()
    });
    let metrics = compare_arrays(&ra, &rb, mask.as_deref())?;
    let verdict = o.thresholds.check(&metrics);
    let per_prompt = match &o.rows {
        Some(r) => per_row(&ra, &rb, r, 0)?,
        None => Vec::new(),
    };
    let max_kl = per_prompt.iter().map(|r| r.max_kl).fold(0f64, f64::max);
    let ppl = match &o.rows {
        Some(rows) => (
            total_ppl(rows, &per_prompt, |r| r.ppl_a),
            total_ppl(rows, &per_prompt, |r| r.ppl_b),
        ),
        None => (f64::NAN, f64::NAN),
    };
    Ok(CompareReport {
        metrics,
        verdict,
        per_prompt,
        max_kl,
        ppl,
    })
}

fn render(o: &CompareOptions, r: &CompareReport) -> anyhow::Result<()> {
    let (m, th, v) = (&r.metrics, &o.thresholds, &r.verdict);
    let mut out = std::io::stdout().lock();
    if o.json {
        let j = json!({"a": crate::io::term::path_string(&o.a), "b": crate::io::term::path_string(&o.b), "positions": m.positions, "max_abs": m.max_abs, "rms": m.rms, "mean_kl": m.mean_kl, "max_kl": r.max_kl, "top1_agreement": m.top1_agreement,
            "perplexity_a": r.ppl.0, "perplexity_b": r.ppl.1, "per_prompt": r.per_prompt,
            "thresholds": {"max_abs": th.max_abs, "rms": th.rms, "mean_kl": th.mean_kl, "min_top1": th.min_top1}, "pass": v.pass, "failures": v.failures});
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        return Ok(());
    }
    writeln!(out, "positions compared: {}", m.positions)?;
    writeln!(
        out,
        "max |dlogit|:       {:.6e}  (limit {:.3e})",
        m.max_abs, th.max_abs
    )?;
    writeln!(
        out,
        "rms dlogit:         {:.6e}  (limit {:.3e})",
        m.rms, th.rms
    )?;
    writeln!(
        out,
        "mean KL(A||B):      {:.6e}  (limit {:.3e})",
        m.mean_kl, th.mean_kl
    )?;
    writeln!(
        out,
        "top-1 agreement:    {:.4}  (minimum {:.4})",
        m.top1_agreement, th.min_top1
    )?;
    if !r.per_prompt.is_empty() {
        writeln!(out, "max KL(A||B):       {:.6e}", r.max_kl)?;
        writeln!(
            out,
            "perplexity:         A {:.4}  B {:.4}",
            r.ppl.0, r.ppl.1
        )?;
        for p in &r.per_prompt {
            writeln!(out, "  prompt {}: {} positions, mean KL {:.3e}, max KL {:.3e}, top-1 {:.3}, max |d| {:.3e}, ppl A {:.4} B {:.4}", p.row, p.positions, p.mean_kl, p.max_kl, p.top1_agreement, p.max_abs, p.ppl_a, p.ppl_b)?;
        }
    }
    for f in &v.failures {
        writeln!(out, "FAIL: {f}")?;
    }
    writeln!(out, "{}", if v.pass { "PASS" } else { "FAIL" })?;
    Ok(())
}

/// Run `compare`.
pub fn run(a: CompareArgs) -> anyhow::Result<Outcome> {
    let o = CompareOptions::new(a)?;
    let r = execute(&o)?;
    render(&o, &r)?;
    Ok(if r.verdict.pass {
        Outcome::Ok
    } else {
        Outcome::Mismatch
    })
}
