//! `grokit forward`: run Grok-1 on CPU from any format grokit reads or writes, print the
//! next-token distribution (or greedily generate), with llama.cpp-style timings.
//!
//! Raw arguments ([`ForwardArgs`]) → validated options ([`ForwardOptions`]: the model opened and
//! checked, the tokens read, the context and memory bounds enforced) → run ([`execute`]) →
//! render. The token arguments and the precision flag are shared with `compare`.

use super::Outcome;
use crate::io::output::OutputRules;
use crate::npy::{self, NpyF32};
use crate::reference::sources::Source;
use crate::reference::{generate, Model, ModelDims, Positions, Precision, Session};
use crate::source::grok::OpenOptions;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// Largest `--tokens-file` read (checked while reading, not after).
pub const TOKENS_FILE_MAX_BYTES: u64 = 64 << 20;

/// Input tokens, shared by `forward` and `compare`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Text to encode with the SentencePiece tokenizer (no BOS, like the release's runner).
    #[arg(long, conflicts_with_all = ["tokens", "tokens_file"])]
    pub prompt: Option<String>,
    /// Comma-separated token ids.
    #[arg(long, conflicts_with = "tokens_file")]
    pub tokens: Option<String>,
    /// JSON file: {"tokens": [[...], ...]} (rows right-padded with 0) or a list of lists (at
    /// most 64 MiB).
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// tokenizer.model (default: beside the model; for a GGUF without one, the vocabulary in
    /// its tokenizer.ggml.* metadata).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Head dimension for a release checkpoint without config.json.
    #[arg(long)]
    pub key_size: Option<u64>,
}

impl TokenArgs {
    /// True when tokens were given.
    pub fn given(&self) -> bool {
        self.prompt.is_some() || self.tokens.is_some() || self.tokens_file.is_some()
    }
    /// Open options for a release checkpoint.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            key_size: self.key_size,
            ..Default::default()
        }
    }
}

/// Run Grok-1's forward pass on CPU and print the next-token distribution.
///
/// MODEL is a release checkpoint (ckpt-0/...), a grokit GGUF (any type grokit writes; the first
/// file of a split set) or a grokit safetensors directory (hf or jax layout; bf16/f16/f32/int8/int4).
/// Rows are right-padded with the pad id 0 like the release; pads are masked as keys.
/// Weights are used as stored (int8, GGUF blocks, packed int4...), one matrix or band at a
/// time, so the full Grok-1 runs in under 1 GiB of RAM besides the page cache for short prompts.
/// Logits are computed for the last real position of each row only, unless --logits-out asks for
/// all. Prompt plus generated tokens must fit the model's context, and the batch's activations
/// the memory budget.
///
/// --json adds timings like llama-bench's: load, prefill seconds and tokens/s, seconds per decode
/// step (--generate) and tokens/s.
///
/// Examples:
///   grokit forward fixtures/tiny --prompt "The answer to life" --top-k 5
///   grokit forward model.gguf --tokens 422,3033,356 --logits-out logits.npy
///   grokit forward /data/grok-1 --prompt "The answer to life the universe and everything is of course" --generate 8
///   grokit forward model.gguf --tokens 1,2,3,4,5,6,7,8 --generate 5 --ignore-eos --json
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
    /// Keep generating after the end-of-sequence token (for benchmarks).
    #[arg(long, requires = "generate")]
    pub ignore_eos: bool,
    /// Numerics.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Write all logits [B, T, V] as .npy (or .npy.zst).
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Memory budget (K/M/G/T suffixes) for activations, logits, KV cache and resident weights: a
    /// batch that needs more is refused, a long prompt is prefilled in chunks that fit, and a
    /// mapped GGUF/safetensors stays resident only if it fits too (else its pages are dropped
    /// after each use, keeping RSS near 0.5 GB of weights whatever the file size).
    #[arg(long, default_value = "8G", value_parser = super::args::parse_size)]
    pub mem_budget: u64,
    /// Soft-cap router logits with c·tanh(x/c) (not the release; SGLang uses 30).
    #[arg(long, hide = true)]
    pub router_cap: Option<f32>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn find_tokenizer(model: &Path, explicit: &Option<PathBuf>) -> Option<PathBuf> {
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
    .find(|p| crate::io::input::present(p))
}

/// Token rows from the arguments (right-padded with 0 to equal length), and the tokenizer when
/// one was found.
pub fn token_rows(
    model: &Path,
    a: &TokenArgs,
) -> anyhow::Result<(Vec<Vec<u32>>, Option<Tokenizer>)> {
    let tok = match find_tokenizer(model, &a.tokenizer) {
        Some(p) => Some(
            Tokenizer::from_file(&p)
                .with_context(|| format!("reading tokenizer {}", p.display()))?,
        ),
        // A GGUF carries its vocabulary: the encoder is built from its metadata (proven to
        // encode as `tokenizer.model` does; tests/tokenizer.rs).
        None if a.prompt.is_some() && model.extension().is_some_and(|e| e == "gguf") => {
            let g = crate::gguf::GgufSet::open(model)
                .with_context(|| format!("reading GGUF {}", model.display()))?;
            crate::gguf::vocab::tokenizer_of(&|k| g.get(k), model)
                .with_context(|| format!("the tokenizer metadata of {}", model.display()))?
        }
        None => None,
    };
    let rows = if let Some(text) = &a.prompt {
        let Some(t) = &tok else {
            bail!(
                "--prompt needs a tokenizer.model (or a GGUF with tokenizer metadata): none beside {}; pass --tokenizer",
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
        let text = crate::io::read_capped(f, TOKENS_FILE_MAX_BYTES)
            .with_context(|| format!("reading {}", f.display()))?
            .with_context(|| {
                format!("{}: larger than {TOKENS_FILE_MAX_BYTES} bytes", f.display())
            })?;
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

/// Memory the weights in flight may take besides the batch's activations (two batches of
/// products, or two release expert matrices).
pub const WEIGHTS_IN_FLIGHT: u64 = 512 << 20;

/// A byte count in the decimal units `--mem-budget` takes.
fn human(b: u64) -> String {
    if b >= 1_000_000_000 {
        format!("{:.1} GB", b as f64 / 1e9)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

/// How a run fits its memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Positions per prefill chunk.
    pub chunk: usize,
    /// Whether mapped weights may stay resident (they fit the budget beside the activations).
    pub keep_resident: bool,
}

/// The bounds every model run obeys: tokens inside the vocabulary, prompt plus generated
/// positions inside the model's context, and activations, logits and KV cache inside `budget`
/// (a long prompt is prefilled in chunks that fit). Mapped weights (`mapped` bytes) stay resident
/// when they fit too; otherwise their pages are dropped after each use.
pub fn check_bounds(
    dims: &ModelDims,
    rows: &[Vec<u32>],
    generate: usize,
    all_logits: bool,
    budget: u64,
    mapped: u64,
) -> anyhow::Result<Bounds> {
    let (b, t) = (rows.len(), rows.first().map_or(0, Vec::len));
    if let Some(bad) = rows.iter().flatten().find(|&&x| x as usize >= dims.vocab) {
        bail!(
            "token id {bad} is outside the vocabulary (0..{})",
            dims.vocab
        );
    }
    let total = t.saturating_add(generate);
    if total > dims.max_seq {
        bail!(
            "{t} prompt positions + {generate} generated = {total} exceed the model's context of {} positions",
            dims.max_seq
        );
    }
    let (b64, t64) = (b as u64, t as u64);
    let kv = b64
        .saturating_mul(total as u64)
        .saturating_mul(dims.kv_bytes_per_position());
    let logit_rows = if all_logits {
        b64.saturating_mul(t64)
    } else {
        b64
    };
    let logits = logit_rows.saturating_mul(dims.logit_row_bytes());
    let per_pos = b64.saturating_mul(dims.bytes_per_position());
    let fixed = WEIGHTS_IN_FLIGHT
        .saturating_add(kv)
        .saturating_add(logits)
        .saturating_add(b64.saturating_mul(dims.n_layers as u64).saturating_mul(64));
    let room = budget.saturating_sub(fixed);
    if room / per_pos.max(1) == 0 {
        bail!(
            "a batch of {b} rows × {t} positions needs about {} (KV cache {}, logits {}, {} per position of activations) besides the weights, over the memory budget of {} (--mem-budget)",
            human(fixed.saturating_add(per_pos)),
            human(kv),
            human(logits),
            human(per_pos),
            human(budget)
        );
    }
    let whole = per_pos.saturating_mul(t64);
    let keep_resident = mapped > 0 && mapped.saturating_add(whole) <= room;
    let room = if keep_resident { room - mapped } else { room };
    let chunk = usize::try_from(room / per_pos.max(1)).unwrap_or(usize::MAX);
    Ok(Bounds {
        chunk: chunk.clamp(1, t.max(1)),
        keep_resident,
    })
}

/// Validated `forward` options: the model opened and checked, tokens read and bounded.
pub struct ForwardOptions {
    source: Source,
    dims: ModelDims,
    rows: Vec<Vec<u32>>,
    tok: Option<Tokenizer>,
    precision: Precision,
    top_k: usize,
    generate: Option<usize>,
    eos: Option<u32>,
    logits_out: Option<PathBuf>,
    /// The output policy of `--logits-out`: the model's files, tokenizer and tokens file.
    out_rules: OutputRules,
    chunk: usize,
    json: bool,
    model_path: PathBuf,
    load_s: f64,
}

impl ForwardOptions {
    /// Open the model, read the tokens, enforce the bounds.
    pub fn new(a: ForwardArgs) -> anyhow::Result<ForwardOptions> {
        let t = Instant::now();
        let source = Source::open(&a.model, &a.input.open_options())?;
        let load_s = t.elapsed().as_secs_f64();
        let mut dims = source.dims().clone();
        if let Some(c) = a.router_cap {
            dims.router_cap = Some(c);
            dims.validate()?;
        }
        let (mut rows, tok) = token_rows(&a.model, &a.input)?;
        if a.generate.is_some() {
            anyhow::ensure!(rows.len() == 1, "--generate takes one row");
            let real = rows[0].iter().take_while(|&&t| t != dims.pad_id).count();
            rows[0].truncate(real.max(1));
        }
        let bounds = check_bounds(
            &dims,
            &rows,
            a.generate.unwrap_or(0),
            a.logits_out.is_some(),
            a.mem_budget,
            source.mapped_bytes(),
        )?;
        source.set_keep_resident(bounds.keep_resident);
        let eos = (!a.ignore_eos).then_some(source.config().eos_token);
        let mut out_rules = source.output_rules();
        out_rules.inputs.push(a.model.clone());
        out_rules.inputs.extend(
            a.input
                .tokenizer
                .iter()
                .chain(&a.input.tokens_file)
                .cloned(),
        );
        if let Some(p) = &a.logits_out {
            // Refused before the forward pass, not after it.
            npy::check_output(p, &out_rules)
                .with_context(|| format!("--logits-out {}", p.display()))?;
        }
        Ok(ForwardOptions {
            dims,
            rows,
            tok,
            precision: a.precision.into(),
            top_k: a.top_k,
            generate: a.generate,
            eos,
            logits_out: a.logits_out,
            out_rules,
            chunk: bounds.chunk,
            json: a.json,
            model_path: a.model,
            load_s,
            source,
        })
    }
}

/// What a `forward` run produced.
pub struct ForwardReport {
    /// Per row: the position and its top candidates.
    top: Vec<(usize, Vec<Candidate>)>,
    /// Generated tokens (with --generate).
    generated: Option<Vec<u32>>,
    /// All logits (with --logits-out).
    all: Option<NpyF32>,
    prefill_s: f64,
    prefill_tokens: usize,
    prefill_flops: u64,
    step_s: Vec<f64>,
}

/// A next-token candidate: `(id, logit, probability)`.
type Candidate = (usize, f32, f64);

fn softmax_top(row: &[f32], k: usize) -> Vec<Candidate> {
    let lp = crate::reference::compare::log_softmax(row);
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i, row[i], lp[i].exp()))
        .collect()
}

/// Run the validated options.
pub fn execute(o: &ForwardOptions) -> anyhow::Result<ForwardReport> {
    let model = Model::new(o.source.weights(), o.dims.clone(), o.precision)?;
    let mut session = Session::from_model(model, o.rows.len())?;
    session.set_max_chunk(o.chunk);
    let prefill_tokens = o.rows.len() * o.rows[0].len();
    if let Some(n) = o.generate {
        let g = generate(&mut session, &o.rows[0], n, o.eos)?;
        return Ok(ForwardReport {
            top: Vec::new(),
            generated: Some(g.tokens),
            all: None,
            prefill_s: g.prefill_s,
            prefill_tokens,
            prefill_flops: g.prefill_flops,
            step_s: g.step_s,
        });
    }
    let want = if o.logits_out.is_some() {
        Positions::All
    } else {
        Positions::Last
    };
    let t = Instant::now();
    let lo = session.prefill_select(&o.rows, want)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let prefill_flops = session.model().weight_flops();
    let pad = o.dims.pad_id;
    let mut top = Vec::new();
    for (b, r) in o.rows.iter().enumerate() {
        let last = r.iter().rposition(|&t| t != pad).unwrap_or(r.len() - 1);
        let logits = lo.at(b, last).context("missing logits")?;
        top.push((last, softmax_top(logits, o.top_k)));
    }
    Ok(ForwardReport {
        top,
        generated: None,
        all: o.logits_out.is_some().then(|| NpyF32::from(lo)),
        prefill_s,
        prefill_tokens,
        prefill_flops,
        step_s: Vec::new(),
    })
}

fn timings(o: &ForwardOptions, r: &ForwardReport) -> serde_json::Value {
    let steps = r.step_s.len();
    let decode: f64 = r.step_s.iter().sum();
    let per = (steps > 0).then(|| decode / steps as f64);
    json!({
        "load_s": o.load_s,
        "prefill_s": r.prefill_s,
        "prefill_tokens": r.prefill_tokens,
        "prefill_tokens_per_s": r.prefill_tokens as f64 / r.prefill_s.max(1e-9),
        "prefill_weight_gflop": r.prefill_flops as f64 / 1e9,
        "prefill_weight_gflop_per_s": r.prefill_flops as f64 / 1e9 / r.prefill_s.max(1e-9),
        "decode_steps": steps,
        "decode_s_per_token": per,
        "decode_tokens_per_s": per.map(|p| 1.0 / p.max(1e-9)),
        "threads": rayon::current_num_threads(),
    })
}

fn render(o: &ForwardOptions, r: &ForwardReport) -> anyhow::Result<()> {
    let piece = |id: usize| {
        o.tok
            .as_ref()
            .and_then(|t| t.id_to_piece(id as u32))
            .unwrap_or("")
            .to_string()
    };
    let mut out = std::io::stdout().lock();
    let t = timings(o, r);
    if let Some(gen) = &r.generated {
        let text = o.tok.as_ref().map(|t| t.decode(gen)).unwrap_or_default();
        if o.json {
            let j = json!({"model": crate::io::term::path_string(&o.model_path), "format": o.source.kind(), "prompt": o.rows[0], "generated": gen, "text": text, "timings": t});
            writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        } else {
            writeln!(out, "generated ids: {gen:?}")?;
            if o.tok.is_some() {
                writeln!(out, "text: {text}")?;
            }
            render_timings(&mut out, &t)?;
        }
        return Ok(());
    }
    if o.json {
        let rows: Vec<_> = r
            .top
            .iter()
            .enumerate()
            .map(|(b, (pos, top))| {
                json!({"row": b, "position": pos, "top": top.iter().map(|(i, l, p)| json!({"id": i, "piece": piece(*i), "logit": l, "prob": p})).collect::<Vec<_>>()})
            })
            .collect();
        let j = json!({"model": crate::io::term::path_string(&o.model_path), "format": o.source.kind(), "rows": rows, "timings": t});
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        return Ok(());
    }
    for (b, (pos, top)) in r.top.iter().enumerate() {
        writeln!(
            out,
            "row {b}, position {pos}: next-token candidates ({}, {:?})",
            o.source.kind(),
            o.precision
        )?;
        for (i, l, p) in top {
            writeln!(
                out,
                "  {i:>7} {:<20} logit {l:>10.4} prob {p:.5}",
                format!("{:?}", piece(*i))
            )?;
        }
    }
    render_timings(&mut out, &t)
}

fn render_timings(out: &mut impl Write, t: &serde_json::Value) -> anyhow::Result<()> {
    let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    write!(
        out,
        "timings: load {:.2} s, prefill {} tokens in {:.3} s ({:.2} tokens/s)",
        f("load_s"),
        t["prefill_tokens"],
        f("prefill_s"),
        f("prefill_tokens_per_s")
    )?;
    if t["decode_steps"].as_u64().unwrap_or(0) > 0 {
        write!(
            out,
            ", {} decode steps at {:.3} s/token ({:.2} tokens/s)",
            t["decode_steps"],
            f("decode_s_per_token"),
            f("decode_tokens_per_s")
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// Run `forward`.
pub fn run(a: ForwardArgs) -> anyhow::Result<Outcome> {
    let o = ForwardOptions::new(a)?;
    let r = execute(&o)?;
    render(&o, &r)?;
    if let (Some(p), Some(all)) = (&o.logits_out, &r.all) {
        npy::write_with(p, all, &o.out_rules)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(Outcome::Ok)
}
