//! `grokit imatrix`: llama-imatrix's statistics, layer by layer, on perplexity's machinery
//! (the same chunks, BOS rule, memory budget, state, `--resume`, `--shard`/`--finish` and
//! output policy; [`super::perplexity`]'s setup is reused as is). Raw arguments → perplexity's
//! validated options → [`crate::eval::imatrix::collect`] → the matrix file
//! ([`crate::imatrix::write_gguf`] / [`crate::imatrix::write_dat`]).

use super::forward::PrecisionArg;
use super::perplexity::{
    computed_bytes, output_path, output_rules, setup, BosArg, Options, PerplexityArgs, Setup,
    Spread,
};
use super::progress::{human, Progress};
use super::Outcome;
use crate::eval::chunks::shard_range;
use crate::eval::engine::{plan_layout, Step};
use crate::eval::imatrix::{collect, entries, finish_parts, remove_accs, write_part, LayerAcc};
use crate::eval::state::{Found, StateDir};
use crate::eval::Model;
use crate::imatrix::{write_dat, write_gguf, EntryData, EntryShape, Format, ImatrixError, Meta};
use crate::io::output::resolve_output;
use anyhow::{bail, ensure, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Output format of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// GGUF (`general.type = imatrix`), llama-imatrix's current default.
    Gguf,
    /// The legacy `.dat` format.
    Dat,
}

/// Compute an importance matrix like llama-imatrix, layer by layer (any model grokit reads)
///
/// For every weight matrix of every layer (attn_q/k/v/output, the router ffn_gate_inp, and per
/// expert ffn_gate_exps/ffn_up_exps/ffn_down_exps), the sum over the calibration text of the
/// squared input activations per input column, and the number of activation rows (per expert:
/// the tokens routed to it): the statistics llama-imatrix collects, written in its GGUF format
/// (or the legacy .dat), which `llama-quantize --imatrix` and `grokit quantize --imatrix` read.
///
/// The text is tokenized and cut into chunks of --ctx tokens exactly as llama-imatrix and
/// `grokit perplexity` do (BOS as the model's metadata says), and every token of every chunk
/// is counted. The pass is layer-major, as `grokit perplexity`'s: every chunk through layer 0,
/// then every chunk through layer 1, ... so each layer's weights are read once per run; hidden
/// states stay within --mem-budget (else in --scratch), and after every layer they are saved
/// with that layer's statistics, so a killed run continues with --resume. The output head is
/// not run (llama-imatrix does not collect output.weight by default).
///
/// Several machines: `--shard K/N --parts DIR` on each, then `--finish --parts DIR -o OUT`
/// sums the shards' statistics (docs/imatrix.md).
///
/// Exit codes: 0 done, 2 error (bad input, short text, an existing output without --force, a
/// state or part of another run).
///
/// Examples:
///   grokit imatrix grok-1-q8_0.gguf -f calibration.txt -o grok-1.imatrix.gguf
///   grokit imatrix /data/grok-1 -f calibration.txt -o grok-1.imatrix.gguf --chunks 100 --scratch /data/tmp
///   grokit imatrix /data/grok-1 -f calibration.txt -o grok-1.imatrix.gguf --scratch /data/tmp --resume
///   grokit imatrix /shared/grok-1 -f calibration.txt --shard 0/4 --parts /shared/imx
///   grokit imatrix /shared/grok-1 -f calibration.txt --finish --parts /shared/imx -o grok-1.imatrix.gguf
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ImatrixArgs {
    /// Model: release directory, .gguf, or safetensors directory.
    pub model: PathBuf,
    /// Calibration text (UTF-8).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The matrix to write (not with --shard, whose result goes to --parts).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Tokens per chunk.
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx: usize,
    /// Use at most this many chunks [default: all].
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Output format [default: dat for a .dat name, else gguf].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// tokenizer.model [default: beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// BOS at the start of the text and of every chunk.
    #[arg(long, value_enum, default_value = "auto")]
    pub add_bos: BosArg,
    /// Numerics.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Replace an existing output (never an input, never a non-regular file).
    #[arg(long)]
    pub force: bool,
    /// Memory for hidden states and activations: 12GiB, 800M (K/M/G/T and KiB/MiB/GiB/TiB
    /// are binary, KB/MB/GB/TB decimal).
    #[arg(long, default_value = "12GiB")]
    pub mem_budget: String,
    /// Directory for the saved state [default: a directory named after the run in the system
    /// temp dir]; the run removes it when done.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Continue a killed run from its saved state (refused if the state is another run's).
    #[arg(long)]
    pub resume: bool,
    /// Process only block K of N of the chunks (0-based) and write its sums to --parts.
    #[arg(long, requires = "parts", conflicts_with = "finish")]
    pub shard: Option<String>,
    /// Sum the N shards' statistics in --parts into the matrix (-o).
    #[arg(long, requires = "parts")]
    pub finish: bool,
    /// Directory of the shard results (imatrix-K-of-N/).
    #[arg(long)]
    pub parts: Option<PathBuf>,
    /// Head dimension for a release checkpoint without config.json.
    #[arg(long)]
    pub key_size: Option<u64>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run `imatrix`.
pub fn run(a: ImatrixArgs) -> anyhow::Result<Outcome> {
    ensure!(a.ctx > 0, "--ctx 0: no tokens per chunk");
    let output = a.output.clone();
    let fmt = match (a.format, &output) {
        (Some(FormatArg::Gguf), _) => Format::Gguf,
        (Some(FormatArg::Dat), _) => Format::Dat,
        (None, Some(p)) => Format::from_path(p),
        (None, None) => Format::Gguf,
    };
    let o = Options::from_args(PerplexityArgs {
        model: a.model,
        file: Some(a.file),
        ctx: Some(a.ctx),
        chunks: a.chunks,
        tokenizer: a.tokenizer,
        add_bos: a.add_bos,
        precision: a.precision,
        save_logits: None,
        kl_base: None,
        force: a.force,
        mem_budget: a.mem_budget,
        scratch: a.scratch,
        resume: a.resume,
        shard: a.shard,
        finish: a.finish,
        parts: a.parts,
        key_size: a.key_size,
        json: a.json,
        quiet: a.quiet,
    })?;
    match (&o.spread, &output) {
        (Spread::Shard { .. }, Some(_)) => {
            bail!("-o goes with a whole run or --finish; a shard writes its sums to --parts")
        }
        (Spread::Shard { .. }, None) => {}
        (_, None) => bail!("give the matrix to write with -o FILE"),
        _ => {}
    }
    let s = setup(&o)?;
    // The output is checked before any work.
    let out = match &output {
        Some(p) => Some(output_path(p, &s, o.force, false)?),
        None => None,
    };
    let start = Instant::now();
    let (totals, run) = match &o.spread {
        Spread::Finish { dir } => {
            let n = shard_count(dir)?;
            let t = finish_parts(dir, &s.identity, n, &s.dims)?;
            (t, json!({"finished_from": dir, "shards": n}))
        }
        Spread::Single => single(&o, &s, 0..s.plan.n_chunks, None)?,
        Spread::Shard { k, n, dir } => {
            let r = shard_range(s.plan.n_chunks, *k, *n);
            ensure!(
                !r.is_empty(),
                "--shard {k}/{n}: {} chunks leave shard {k} empty; use at most {} shards",
                s.plan.n_chunks,
                s.plan.n_chunks
            );
            ensure!(dir.is_dir(), "--parts {}: not a directory", dir.display());
            let (t, run) = single(&o, &s, r.clone(), Some((*k, *n)))?;
            let mut id = s.identity.clone();
            id.chunks = r.clone();
            let p = write_part(dir, &id, (*k, *n), &t)?;
            let mut stdout = std::io::stdout().lock();
            if o.json {
                let j = json!({"shard": [k, n], "chunks": [r.start, r.end], "part": p, "run": run});
                writeln!(stdout, "{}", serde_json::to_string_pretty(&j)?)?;
            } else {
                writeln!(
                    stdout,
                    "shard {k}/{n}: chunks {}..{} of {} done in {:.1} s -> {}\nwhen all {n} \
                     shards are done: the same command with --finish --parts {} -o FILE",
                    r.start,
                    r.end,
                    s.plan.n_chunks,
                    start.elapsed().as_secs_f64(),
                    p.display(),
                    dir.display()
                )?;
            }
            return Ok(Outcome::Ok);
        }
    };
    let out = out.context("no output")?;
    let written = write_matrix(&o, &s, &totals, &out, fmt)?;
    render(
        &o,
        &s,
        &written,
        &out,
        fmt,
        start.elapsed().as_secs_f64(),
        run,
    )?;
    Ok(Outcome::Ok)
}

/// N of the shards in `dir` (from its `imatrix-0000-of-NNNN` directory).
fn shard_count(dir: &Path) -> anyhow::Result<usize> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("--parts {}", dir.display()))?;
    let mut ns: Vec<usize> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("imatrix-0000-of-")
                .and_then(|t| t.parse().ok())
        })
        .collect();
    ns.sort_unstable();
    ns.dedup();
    match ns.as_slice() {
        [n] => Ok(*n),
        [] => bail!(
            "--parts {}: no shard results (imatrix-0000-of-N): run the shards with --shard K/N first",
            dir.display()
        ),
        _ => bail!(
            "--parts {}: results of several shardings ({ns:?} shards): keep one",
            dir.display()
        ),
    }
}

/// One process's chunks: the whole run or a shard; returns the per-layer totals and the run's
/// description.
fn single(
    o: &Options,
    s: &Setup,
    chunks: std::ops::Range<usize>,
    shard: Option<(usize, usize)>,
) -> anyhow::Result<(Vec<LayerAcc>, serde_json::Value)> {
    let start = Instant::now();
    let mut identity = s.identity.clone();
    identity.chunks = chunks.clone();
    if let (Some((k, n)), Spread::Shard { dir, .. }) = (shard, &o.spread) {
        let p = crate::eval::imatrix::part_dir(dir, k, n).join("part.json");
        ensure!(
            !p.exists() || o.force,
            "{}: exists (this shard is done, or another run's); pass --force to replace it",
            p.display()
        );
    }
    let dims = &s.dims;
    let layout = plan_layout(dims, s.plan.ctx, chunks.len(), 1, o.budget);
    let state_dir = o.scratch.clone().unwrap_or_else(|| {
        let h = crate::base::hex::encode(&identity.hash());
        std::env::temp_dir().join(format!("grokit-imatrix-{}", &h[..16]))
    });
    resolve_output(&state_dir.join("run.json"), &output_rules(s, o.force, true))
        .with_context(|| format!("--scratch {}", state_dir.display()))?;
    let (d, ctx) = (dims.d_model as u64, s.plan.ctx as u64);
    let (state, found) = StateDir::open(
        &state_dir,
        &identity,
        layout.groups.clone(),
        |r| r.len() as u64 * ctx * d,
        o.resume,
    )?;
    let resumed_from = match found {
        Found::Fresh => None,
        Found::Resumed(l) => Some(l),
    };
    let model = Model::new(s.src.weights(), dims.clone(), o.precision)?;
    let todo: u64 = (0..dims.n_layers)
        .map(|l| state.done.iter().filter(|&&dn| dn <= l).count() as u64 * s.foot.per_layer[l])
        .sum();
    let prog = Progress::new("imatrix (weights applied)", todo, o.quiet);
    let per_layer = s.foot.per_layer.clone();
    let mut on = |st: Step| {
        if let Step::LayerDone { layer, .. } = st {
            prog.inc(per_layer[layer])
        }
    };
    let (totals, calls) = collect(
        &model,
        &s.plan,
        chunks.clone(),
        &state,
        &identity,
        layout.in_ram,
        &mut on,
    )
    .with_context(|| {
        format!(
            "the state is kept in {}: rerun with --resume{} to continue",
            state.dir().display(),
            if o.scratch.is_some() {
                ""
            } else {
                " (same options)"
            }
        )
    })?;
    prog.finish();
    let run = json!({
        "seconds": start.elapsed().as_secs_f64(),
        "chunks": [chunks.start, chunks.end],
        "mem_budget": o.budget,
        "groups": state.groups().len(),
        "hidden_in_ram": layout.in_ram,
        "expected_peak_bytes": layout.peak,
        "state_dir": state.dir(),
        "resumed_from_layer": resumed_from,
        "layer_calls": calls.layer,
        "model_bytes": s.foot.file_bytes(),
        "bytes_read_computed": computed_bytes(&s.foot, &calls, dims.vocab),
    });
    remove_accs(&state, dims.n_layers)?;
    state.remove()?;
    Ok((totals, run))
}

/// What was written: entries and the ones with partial data (experts never routed to).
struct Written {
    entries: usize,
    partial: Vec<(String, f64)>,
}

fn write_matrix(
    o: &Options,
    s: &Setup,
    totals: &[LayerAcc],
    out: &Path,
    fmt: Format,
) -> anyhow::Result<Written> {
    let ents = entries(&s.dims, totals)?;
    let meta = Meta {
        datasets: o
            .text
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        chunk_count: u32::try_from(s.plan.n_chunks).context("chunk count")?,
        chunk_size: u32::try_from(s.plan.ctx).context("chunk size")?,
    };
    let shapes: Vec<EntryShape> = ents
        .iter()
        .map(|e| EntryShape {
            name: e.name.clone(),
            ne0: e.ne0,
            n_mat: e.counts.len(),
            counts: e.counts.clone(),
        })
        .collect();
    let data = |name: &str| -> Result<EntryData, ImatrixError> {
        let e = ents
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ImatrixError::Entry {
                path: out.to_path_buf(),
                entry: name.into(),
                what: "not computed".into(),
            })?;
        Ok(EntryData {
            name: e.name.clone(),
            sums: e.sums.clone(),
            counts: e.counts.clone(),
        })
    };
    let n = match fmt {
        Format::Gguf => write_gguf(out, &meta, &shapes, data, true),
        Format::Dat => write_dat(out, &meta, &shapes, data, true),
    }
    .with_context(|| format!("writing {}", out.display()))?;
    let partial = ents
        .iter()
        .filter(|e| e.counts.contains(&0))
        .map(|e| {
            let z = e.counts.iter().filter(|&&c| c == 0).count();
            (
                e.name.clone(),
                100.0 * (e.counts.len() - z) as f64 / e.counts.len() as f64,
            )
        })
        .collect();
    Ok(Written {
        entries: n,
        partial,
    })
}

fn render(
    o: &Options,
    s: &Setup,
    w: &Written,
    out: &Path,
    fmt: Format,
    seconds: f64,
    run: serde_json::Value,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let fmt_name = match fmt {
        Format::Gguf => "gguf",
        Format::Dat => "dat",
    };
    if o.json {
        let j = json!({
            "output": out,
            "format": fmt_name,
            "entries": w.entries,
            "chunks": s.plan.n_chunks,
            "chunk_size": s.plan.ctx,
            "text_tokens": s.text_tokens,
            "bos": s.plan.bos,
            "partial": w.partial.iter().map(|(n, p)| json!({"entry": n, "percent_with_data": p})).collect::<Vec<_>>(),
            "seconds": seconds,
            "run": run,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        for (n, p) in &w.partial {
            writeln!(
                stdout,
                "warning: entry {n} has partial data ({p:.2}% of its experts)"
            )?;
        }
        writeln!(
            stdout,
            "imatrix: {} entries from {} chunks of {} tokens ({} tokens of text, BOS {}) -> {} ({fmt_name}) in {seconds:.1} s",
            w.entries,
            s.plan.n_chunks,
            s.plan.ctx,
            s.text_tokens,
            s.plan.bos.map_or("none".into(), |b| b.to_string()),
            out.display(),
        )?;
        if let Some(b) = run.get("bytes_read_computed").and_then(|v| v.as_u64()) {
            writeln!(
                stdout,
                "weights read: {} (model {})",
                human(b),
                human(s.foot.file_bytes())
            )?;
        }
    }
    Ok(())
}
