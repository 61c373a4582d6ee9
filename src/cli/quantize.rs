//! `grokit quantize`: an existing GGUF (file or split set) to another GGUF type mixture.
//!
//! [`QuantizeArgs`] → [`Quantize`] (policy and sizes parsed before the input is opened) →
//! [`Quantize::execute`] → [`Quantize::render`], as in `convert`.

use super::args::{self, WriteArgs};
use super::progress::{human, Progress};
use super::render::{print_written, write_json};
use super::Outcome;
use crate::convert::requant::{
    plan_requant_with, requantize_with, Action, RequantOptions, RequantPlan, RequantReport,
};
use crate::gguf::GgufSet;
use crate::imatrix::Imatrix;
use crate::quant::policy::Policy;
use anyhow::bail;
use clap::builder::PossibleValuesParser;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Requantize a GGUF file (or split set) into another GGUF, like llama-quantize
///
/// Every tensor is decoded to f32 and encoded with ggml's reference quantizers (bit for bit),
/// streaming in bounded memory. Metadata is copied; `general.file_type` and split keys are set
/// anew. Norms, the router and 1-D tensors stay F32; a tensor already in its target type is
/// copied verbatim. Quantizing an already block-quantized tensor to another block type needs
/// `--allow-requantize` (quality suffers: quantize from an F32/BF16 file instead).
///
/// `--preset` takes llama-quantize's mixtures by name (q4_k_m gives attn_k/v Q8_0, attn_output
/// Q5_K, ffn_down Q6_K on half the layers, token_embd Q6_K; also q2_k..q6_k, q4_0..q5_1,
/// iq4_xs, iq4_nl, iq3_m, iq3_s, iq3_xs, iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs); `--quant`
/// takes a preset and/or class=type items (see docs/quantization.md); classes it does not
/// list keep their type. `--imatrix FILE` (llama-imatrix's GGUF or .dat) weights the
/// encoders as `llama-quantize --imatrix` does; IQ2_XXS/IQ2_XS/IQ2_S/IQ3_XXS need one. A
/// matrix made for another model (names, widths, expert counts) is refused naming the tensor;
/// a tensor the matrix has no entry for is quantized without weights and reported.
///
/// From an F32 GGUF made by `grokit convert --type f32`, `--preset X` writes the same
/// metadata and tensors as `grokit convert --quant X`, except Q8_0 matrices: convert copies
/// those losslessly from the release's int8, quantize re-derives them from f32 (ggml's Q8_0).
///
/// Examples:
///   grokit quantize grok-1-f32.gguf -o grok-1-q4_k_m.gguf --preset q4_k_m
///   grokit quantize grok-1-bf16-00001-of-00012.gguf -o grok-1-q8_0.gguf --preset q8_0 --split-max-size 50G
///   grokit quantize grok-1-bf16.gguf -o mixed.gguf --quant experts=q4_k,attn=q8_0 --report
///   grokit quantize grok-1-f32.gguf -o grok-1-q6_k.gguf --preset q6_k --dry-run
///   grokit quantize grok-1-q8_0.gguf -o grok-1-q4_0.gguf --preset q4_0 --allow-requantize
///   grokit quantize grok-1-f32.gguf -o grok-1-iq2_xs.gguf --preset iq2_xs --imatrix grok-1.imatrix.gguf
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct QuantizeArgs {
    /// Input GGUF (a single file, or the first shard of a split set).
    pub input: PathBuf,
    /// Output .gguf (split shards are named from it).
    #[arg(short, long)]
    pub out: PathBuf,
    /// A llama-quantize-like preset.
    #[arg(long, value_parser = PossibleValuesParser::new(args::preset_names()), required_unless_present = "quant", conflicts_with = "quant")]
    pub preset: Option<String>,
    /// A quantization policy: a preset and/or class=type items (experts=q4_k,attn=q8_0,...).
    #[arg(long)]
    pub quant: Option<String>,
    /// Importance matrix (llama-imatrix's .gguf or legacy .dat) to weight the quantization.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Allow quantizing tensors that are already block-quantized to another block type.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Output, reporting and parallelism (shared with `convert`).
    #[command(flatten)]
    pub write: WriteArgs,
    /// No progress output or warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `quantize`'s options, validated.
#[derive(Debug)]
pub struct Quantize {
    input: PathBuf,
    policy: Policy,
    imatrix: Option<PathBuf>,
    allow_requantize: bool,
    dry_run: bool,
    buffered_io: bool,
    options: RequantOptions,
    json: bool,
    report: bool,
    quiet: bool,
}

/// What a run did, for [`Quantize::render`].
enum Done {
    /// `--dry-run`: the plan.
    Plan(RequantPlan),
    /// The requantization, and how long it took.
    Quantized(RequantReport, f64),
}

impl Quantize {
    /// Parse the policy and sizes; nothing is opened yet.
    pub fn resolve(a: QuantizeArgs) -> anyhow::Result<Quantize> {
        let spec = match (&a.preset, &a.quant) {
            (Some(p), _) => p,
            (None, Some(q)) => q,
            (None, None) => bail!("pass --preset or --quant"),
        };
        let policy = Policy::parse(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Quantize {
            policy,
            imatrix: a.imatrix,
            allow_requantize: a.allow_requantize,
            dry_run: a.write.dry_run,
            buffered_io: a.write.buffered_io,
            options: RequantOptions {
                out: a.out,
                split_max: a.write.split_max()?,
                jobs: a.write.jobs(),
                force: a.write.force,
                measure: !a.write.no_error_stats,
                chunk_elems: 0,
            },
            json: a.write.json,
            report: a.write.report,
            quiet: a.quiet,
            input: a.input,
        })
    }

    /// Open the input, plan, and (unless `--dry-run`) write.
    fn execute(&self) -> anyhow::Result<Done> {
        // GGUF errors name the file (and byte offset) themselves.
        let set = GgufSet::open(&self.input)?;
        let imatrix = self.imatrix.as_deref().map(Imatrix::open).transpose()?;
        let given = self.imatrix.as_deref().map(|p| p.display().to_string());
        let plan = plan_requant_with(
            &set,
            &self.policy,
            self.allow_requantize,
            imatrix.as_ref().zip(given.as_deref()),
        )?;
        if self.dry_run {
            return Ok(Done::Plan(plan));
        }
        args::apply_buffered_io(self.buffered_io);
        let started = Instant::now();
        let p = Progress::new("quantize", plan.out_bytes(), self.quiet || self.json);
        if !self.quiet {
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
        let r = requantize_with(&set, &plan, &self.options, imatrix.as_ref(), &|n| p.inc(n))?;
        p.finish();
        Ok(Done::Quantized(r, started.elapsed().as_secs_f64()))
    }

    /// Print what the run did.
    fn render(&self, done: &Done) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match done {
            Done::Plan(plan) => render_plan(&mut out, plan),
            Done::Quantized(r, secs) => self.render_report(&mut out, r, *secs),
        }
    }

    fn render_report(
        &self,
        out: &mut impl Write,
        r: &RequantReport,
        secs: f64,
    ) -> anyhow::Result<()> {
        if self.json {
            let v = serde_json::json!({"input": self.input, "output": self.options.out, "seconds": secs, "report": r});
            write_json(out, &v)?;
            return Ok(());
        }
        if self.report {
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
        if !self.quiet {
            print_written(&r.files, &[], r.tensors.len(), secs);
        }
        Ok(())
    }
}

fn render_plan(out: &mut impl Write, plan: &RequantPlan) -> anyhow::Result<()> {
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
    Ok(())
}

/// Run `quantize`: resolve, execute, render.
pub fn run(a: QuantizeArgs) -> anyhow::Result<Outcome> {
    let q = Quantize::resolve(a)?;
    let done = q.execute()?;
    q.render(&done)?;
    Ok(Outcome::Ok)
}
