//! `grokit forward` and `grokit compare`: run Grok-1 on CPU from any format grokit reads or
//! writes, and measure how far a converted model is from the release.

use super::Outcome;
use crate::npy::{self, NpyF32};
use crate::reference::compare::{compare_arrays, per_row, Thresholds};
use crate::reference::sources::Model;
use crate::reference::{forward, greedy, ModelDims, Precision};
use crate::source::grok::OpenOptions;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Numerics.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PrecisionArg {
    /// f32 everywhere (matches the release run in f32 to ~1e-5).
    F32,
    /// The release's default bf16 path, emulated.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// Input tokens, shared by `forward` and `compare`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Text to encode with the SentencePiece tokenizer (no BOS, like the release's runner).
    #[arg(long, conflicts_with_all = ["tokens", "tokens_file"])]
    pub prompt: Option<String>,
    /// Comma-separated token ids.
    #[arg(long, conflicts_with = "tokens_file")]
    pub tokens: Option<String>,
    /// JSON file: {"tokens": [[...], ...]} (rows right-padded with 0) or a list of lists.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// tokenizer.model (default: beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Head dimension for a release checkpoint without config.json.
    #[arg(long)]
    pub key_size: Option<u64>,
}

/// Run Grok-1's forward pass on CPU and print the next-token distribution.
///
/// MODEL is a release checkpoint (ckpt-0/...), a grokit GGUF (any type grokit writes; the first
/// file of a split set) or a grokit safetensors directory (hf or jax layout; bf16/f16/f32/int8/int4).
/// Rows are right-padded with the pad id 0 like the release; pads are masked as keys.
/// Weights are read one band at a time (at most 128 MiB of f32), so the full Grok-1 runs in under
/// 1 GiB of RAM besides the page cache (for short prompts), at minutes per token on 2 cores.
///
/// Examples:
///   grokit forward fixtures/tiny --prompt "The answer to life" --top-k 5
///   grokit forward model.gguf --tokens 422,3033,356 --logits-out logits.npy
///   grokit forward /data/grok-1 --prompt "The answer to life the universe and everything is of course" --generate 8
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ForwardArgs {
    /// Model: release directory, .gguf, or safetensors directory.
    pub model: PathBuf,
    /// Tokens.
    #[command(flatten)]
    pub input: TokenArgs,
    /// How many next-token candidates to print per row.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Greedily generate this many tokens after the prompt (one row only).
    #[arg(long)]
    pub generate: Option<usize>,
    /// Numerics.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Write all logits [B, T, V] as .npy (or .npy.zst).
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn find_tokenizer(model: &Path, explicit: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.clone());
    }
    let base = if model.is_dir() {
        model.to_path_buf()
    } else {
        model.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    [
        base.join("tokenizer.model"),
        base.join("../tokenizer.model"),
        base.join("ckpt-0/../tokenizer.model"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Token rows from the arguments (and the tokenizer, when one was found).
pub fn token_rows(
    model: &Path,
    a: &TokenArgs,
) -> anyhow::Result<(Vec<Vec<u32>>, Option<Tokenizer>)> {
    let tok = match find_tokenizer(model, &a.tokenizer) {
        Some(p) => Some(
            Tokenizer::from_file(&p)
                .with_context(|| format!("reading tokenizer {}", p.display()))?,
        ),
        None => None,
    };
    let rows = if let Some(text) = &a.prompt {
        let Some(t) = &tok else {
            bail!(
                "--prompt needs a tokenizer.model: none beside {}; pass --tokenizer",
                model.display()
            )
        };
        vec![t.encode(text)]
    } else if let Some(s) = &a.tokens {
        vec![s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<u32>()
                    .with_context(|| format!("--tokens: {x:?} is not a token id"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?]
    } else if let Some(f) = &a.tokens_file {
        let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        anyhow::ensure!(text.len() < 64 << 20, "{}: larger than 64 MiB", f.display());
        let v: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", f.display()))?;
        let rows = v.get("tokens").cloned().unwrap_or(v);
        serde_json::from_value::<Vec<Vec<u32>>>(rows).with_context(|| {
            format!(
                "{}: expected {{\"tokens\": [[ids...], ...]}} or [[ids...], ...]",
                f.display()
            )
        })?
    } else {
        bail!("give --prompt, --tokens or --tokens-file");
    };
    anyhow::ensure!(
        !rows.is_empty() && rows.iter().all(|r| !r.is_empty()),
        "no tokens"
    );
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    Ok((
        rows.into_iter()
            .map(|mut r| {
                r.resize(t, 0);
                r
            })
            .collect(),
        tok,
    ))
}

fn softmax_top(row: &[f32], k: usize) -> Vec<(usize, f32, f64)> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = row.iter().map(|&x| f64::from(x - m).exp()).sum();
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i, row[i], f64::from(row[i] - m).exp() / z))
        .collect()
}

/// Run `forward`.
pub fn run_forward(a: ForwardArgs) -> anyhow::Result<Outcome> {
    let model = Model::open(
        &a.model,
        &OpenOptions {
            key_size: a.input.key_size,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", a.model.display()))?;
    let dims = ModelDims::from_config(model.config())?;
    let (rows, tok) = token_rows(&a.model, &a.input)?;
    for r in &rows {
        if let Some(bad) = r.iter().find(|&&t| t as usize >= dims.vocab) {
            bail!(
                "token id {bad} is outside the vocabulary (0..{})",
                dims.vocab
            );
        }
    }
    let piece = |id: usize| {
        tok.as_ref()
            .and_then(|t| t.id_to_piece(id as u32))
            .unwrap_or("")
            .to_string()
    };
    let mut out = std::io::stdout().lock();
    if let Some(n) = a.generate {
        anyhow::ensure!(rows.len() == 1, "--generate takes one row");
        let prompt: Vec<u32> = rows[0].iter().copied().take_while(|&t| t != 0).collect();
        let gen = greedy(
            model.weights(),
            &dims,
            a.precision.into(),
            &prompt,
            n,
            Some(model.config().eos_token),
        )?;
        let text = tok.as_ref().map(|t| t.decode(&gen)).unwrap_or_default();
        if a.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &json!({"prompt": prompt, "generated": gen, "text": text})
                )?
            )?;
        } else {
            writeln!(out, "generated ids: {gen:?}")?;
            if tok.is_some() {
                writeln!(out, "text: {text}")?;
            }
        }
        return Ok(Outcome::Ok);
    }
    let lo = forward(model.weights(), &dims, a.precision.into(), &rows)?;
    let mut rows_json = Vec::new();
    for (b, r) in rows.iter().enumerate() {
        let last = r
            .iter()
            .rposition(|&t| t != dims.pad_id)
            .unwrap_or(r.len() - 1);
        let logits = lo.at(b, last).context("missing logits")?;
        let top = softmax_top(logits, a.top_k);
        if a.json {
            rows_json.push(json!({"row": b, "position": last, "top": top.iter().map(|(i, l, p)| json!({"id": i, "piece": piece(*i), "logit": l, "prob": p})).collect::<Vec<_>>()}));
        } else {
            writeln!(
                out,
                "row {b}, position {last}: next-token candidates ({}, {:?})",
                model.kind(),
                a.precision
            )?;
            for (i, l, p) in top {
                writeln!(
                    out,
                    "  {i:>7} {:<20} logit {l:>10.4} prob {p:.5}",
                    format!("{:?}", piece(i))
                )?;
            }
        }
    }
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &json!({"model": a.model, "format": model.kind(), "rows": rows_json})
            )?
        )?;
    }
    if let Some(p) = &a.logits_out {
        npy::write(p, &NpyF32::from(lo)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(Outcome::Ok)
}

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
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn is_npy(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.ends_with(".npy") || s.ends_with(".npy.zst")
}

fn logits_of(p: &Path, a: &CompareArgs, rows: &Option<Vec<Vec<u32>>>) -> anyhow::Result<NpyF32> {
    if is_npy(p) {
        return npy::read(p).with_context(|| format!("reading {}", p.display()));
    }
    let model = Model::open(
        p,
        &OpenOptions {
            key_size: a.input.key_size,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", p.display()))?;
    let dims = ModelDims::from_config(model.config())?;
    let rows = rows
        .as_ref()
        .context("comparing models needs --prompt, --tokens or --tokens-file")?;
    Ok(NpyF32::from(forward(
        model.weights(),
        &dims,
        a.precision.into(),
        rows,
    )?))
}

/// Run `compare`.
pub fn run_compare(a: CompareArgs) -> anyhow::Result<Outcome> {
    let has_tokens =
        a.input.prompt.is_some() || a.input.tokens.is_some() || a.input.tokens_file.is_some();
    let rows = if has_tokens {
        Some(token_rows(&a.a, &a.input)?.0)
    } else {
        None
    };
    let ra = logits_of(&a.a, &a, &rows)?;
    let rb = logits_of(&a.b, &a, &rows)?;
    let mask: Option<Vec<bool>> = rows.as_ref().map(|r| {
        r.iter()
            .flat_map(|row| row.iter().map(|&t| t != 0))
            .collect()
    });
    let m = compare_arrays(&ra, &rb, mask.as_deref())?;
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
    let v = th.check(&m);
    let rows_m = match &rows {
        Some(r) => per_row(&ra, &rb, r, 0)?,
        None => Vec::new(),
    };
    let max_kl = rows_m.iter().map(|r| r.max_kl).fold(0f64, f64::max);
    let total_ppl = |f: fn(&crate::reference::compare::RowMetrics) -> f64| {
        let (mut s, mut n) = (0f64, 0usize);
        for r in &rows_m {
            let k = rows
                .as_ref()
                .map(|rr| {
                    rr[r.row]
                        .iter()
                        .filter(|&&t| t != 0)
                        .count()
                        .saturating_sub(1)
                })
                .unwrap_or(0);
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
    };
    let (ppl_a, ppl_b) = (total_ppl(|r| r.ppl_a), total_ppl(|r| r.ppl_b));
    let mut out = std::io::stdout().lock();
    if a.json {
        let j = json!({"a": a.a, "b": a.b, "positions": m.positions, "max_abs": m.max_abs, "rms": m.rms, "mean_kl": m.mean_kl, "max_kl": max_kl, "top1_agreement": m.top1_agreement,
            "perplexity_a": ppl_a, "perplexity_b": ppl_b, "per_prompt": rows_m,
            "thresholds": {"max_abs": th.max_abs, "rms": th.rms, "mean_kl": th.mean_kl, "min_top1": th.min_top1}, "pass": v.pass, "failures": v.failures});
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
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
        if !rows_m.is_empty() {
            writeln!(out, "max KL(A||B):       {max_kl:.6e}")?;
            writeln!(out, "perplexity:         A {ppl_a:.4}  B {ppl_b:.4}")?;
            for r in &rows_m {
                writeln!(out, "  prompt {}: {} positions, mean KL {:.3e}, max KL {:.3e}, top-1 {:.3}, max |d| {:.3e}, ppl A {:.4} B {:.4}", r.row, r.positions, r.mean_kl, r.max_kl, r.top1_agreement, r.max_abs, r.ppl_a, r.ppl_b)?;
            }
        }
        for f in &v.failures {
            writeln!(out, "FAIL: {f}")?;
        }
        writeln!(out, "{}", if v.pass { "PASS" } else { "FAIL" })?;
    }
    Ok(if v.pass {
        Outcome::Ok
    } else {
        Outcome::Mismatch
    })
}
