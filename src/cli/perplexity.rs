//! `grokit perplexity`: llama-perplexity's perplexity and KL divergence, layer by layer.
//! Raw arguments → [`Options`] (validated) → [`run`] (library calls) → rendering.

use super::forward::PrecisionArg;
use super::progress::{human, Progress};
use super::Outcome;
use crate::eval::chunks::{bos_rule, read_text, shard_range, tokenize, BosRule, ChunkPlan};
use crate::eval::engine::{plan_layout, Calls, Layout, Step};
use crate::eval::footprint::{storage_read_bytes, Footprint};
use crate::eval::kldfile::{write_header, KlBase, HEADER_BYTES};
use crate::eval::logprob::{KLD_QUANTILES, P_DIFF_QUANTILES};
use crate::eval::parts::{logits_name, part_name, read_all, write_merged_logits, LogitsPart, Part};
use crate::eval::perplexity::{evaluate, ChunkResult, Scoring, Summary};
use crate::eval::state::{tokens_hash, Found, Identity, StateDir};
use crate::eval::Model;
use crate::io::atomic::AtomicFile;
use crate::io::output::{resolve_output, OutputRules, OutputTarget};
use crate::reference::sources::Source;
use crate::reference::{ModelDims, Precision};
use crate::source::grok::OpenOptions;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Whether each chunk starts with BOS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BosArg {
    /// As the model says (GGUF: tokenizer.ggml.add_bos_token, else llama.cpp's default;
    /// release: no BOS, as its runner).
    Auto,
    /// Always.
    Yes,
    /// Never.
    No,
}

/// Perplexity and KL divergence like llama-perplexity, layer by layer (any model grokit reads)
///
/// Perplexity of a model over a text file, or KL divergence against a base model's logits,
/// computed exactly as llama-perplexity does, but layer by layer: every chunk through layer 0,
/// then every chunk through layer 1, ... so each layer's weights are read once per run
/// whatever the number of chunks. Only hidden states move between layers (ctx x d_model f32
/// per chunk: 12.6 MB at Grok-1's width and --ctx 512): in RAM within --mem-budget, else in the
/// scratch directory. After every layer they are saved there (atomic, checksummed), so a
/// killed run continues with --resume.
///
/// MODEL is a release checkpoint, a GGUF (first file of a split set) or a safetensors
/// directory. The text is tokenized with tokenizer.model (beside the model, or --tokenizer;
/// a GGUF without one: its own vocabulary), BOS as the model's metadata says (--add-bos), cut into chunks of --ctx tokens, and the
/// second half of each chunk is scored, as llama-perplexity does: the same model and text give
/// the same numbers. --save-logits writes llama-perplexity's --kl-divergence-base file (read
/// by `llama-perplexity --kl-divergence`), --kl-base reads one (written by either tool) and
/// prints llama-perplexity's KL statistics.
///
/// Several machines: run `--shard K/N --parts DIR` on each (K = 0..N-1), then the same command
/// with `--finish --parts DIR` merges the shards into exactly the single-machine result
/// (docs/distributed.md).
///
/// Exit codes: 0 done, 2 error (bad input, short text, a base file of another model or text,
/// a state or part of another run).
///
/// Examples:
///   grokit perplexity grok-1-q8_0.gguf -f wiki.test.raw --chunks 16
///   grokit perplexity /data/grok-1 -f wiki.test.raw --save-logits grok-1.kld --scratch /data/tmp
///   grokit perplexity grok-1-q4_k_m.gguf --kl-base grok-1.kld --json
///   grokit perplexity /data/grok-1 -f wiki.test.raw --scratch /data/tmp --resume
///   grokit perplexity /shared/grok-1 -f wiki.test.raw --shard 2/8 --parts /shared/ppl
///   grokit perplexity /shared/grok-1 -f wiki.test.raw --finish --parts /shared/ppl
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PerplexityArgs {
    /// Model: release directory, .gguf, or safetensors directory.
    pub model: PathBuf,
    /// Text file to evaluate (UTF-8; one trailing newline is dropped, as llama-perplexity does).
    /// Optional with --kl-base, whose file holds the tokens (given, it must tokenize to them).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Tokens per chunk [default: 512; with --kl-base: the base file's].
    #[arg(short = 'c', long)]
    pub ctx: Option<usize>,
    /// Evaluate at most this many chunks [default: all].
    #[arg(long)]
    pub chunks: Option<usize>,
    /// tokenizer.model [default: beside the model; for a GGUF without one, the vocabulary in
    /// its metadata].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// BOS at the start of the text and of every chunk.
    #[arg(long, value_enum, default_value = "auto")]
    pub add_bos: BosArg,
    /// Numerics.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Write the logits as llama-perplexity's --kl-divergence-base file (with --shard, each
    /// shard's rows go to --parts and --finish writes FILE).
    #[arg(long, conflicts_with = "kl_base")]
    pub save_logits: Option<PathBuf>,
    /// KL divergence against this base file (llama-perplexity --kl-divergence-base output).
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
    /// Replace an existing --save-logits file (never an input, never a non-regular file).
    #[arg(long)]
    pub force: bool,
    /// Memory for hidden states and activations: 12GiB, 800M (K/M/G/T and KiB/MiB/GiB/TiB
    /// are binary, KB/MB/GB/TB decimal).
    #[arg(long, default_value = "12GiB")]
    pub mem_budget: String,
    /// Directory for the saved state (and spilled hidden states) [default: a directory
    /// named after the run in the system temp dir]; the run removes it when done.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Continue a killed run from its saved state (refused if the state is another run's).
    #[arg(long)]
    pub resume: bool,
    /// Evaluate only block K of N of the chunks (0-based) and write the result to --parts.
    #[arg(long, requires = "parts", conflicts_with = "finish")]
    pub shard: Option<String>,
    /// Merge the N shard results in --parts into the run's result.
    #[arg(long, requires = "parts")]
    pub finish: bool,
    /// Directory of the shard results (part-K-of-N.json, .logits).
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

/// What the run does besides perplexity.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Extra {
    None,
    Save(PathBuf),
    Kl(PathBuf),
}

/// How the chunks are spread.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Spread {
    Single,
    Shard { k: usize, n: usize, dir: PathBuf },
    Finish { dir: PathBuf },
}

/// Validated options.
#[derive(Debug)]
pub(super) struct Options {
    pub(super) model: PathBuf,
    pub(super) text: Option<PathBuf>,
    pub(super) ctx: Option<usize>,
    pub(super) chunks: Option<usize>,
    pub(super) tokenizer: Option<PathBuf>,
    pub(super) bos: BosArg,
    pub(super) precision: Precision,
    pub(super) extra: Extra,
    pub(super) force: bool,
    pub(super) budget: u64,
    pub(super) scratch: Option<PathBuf>,
    pub(super) resume: bool,
    pub(super) spread: Spread,
    pub(super) key_size: Option<u64>,
    pub(super) json: bool,
    pub(super) quiet: bool,
}

/// Parse `12GiB`, `800M`, `1.5G`, `4096`: K/M/G/T and KiB… binary, KB/MB/GB/TB decimal.
fn parse_budget(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .with_context(|| format!("--mem-budget {s:?}: expected a number and a unit, e.g. 12GiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        u => bail!("--mem-budget {s:?}: unknown unit {u:?}"),
    };
    ensure!(
        v > 0.0 && v.is_finite(),
        "--mem-budget {s:?} must be positive"
    );
    Ok((v * mult) as u64)
}

impl Options {
    pub(super) fn from_args(a: PerplexityArgs) -> anyhow::Result<Options> {
        ensure!(
            a.file.is_some() || a.kl_base.is_some(),
            "give the text with -f FILE (or a KL base file with --kl-base, which holds the tokens)"
        );
        if let Some(c) = a.chunks {
            ensure!(c > 0, "--chunks 0: nothing to evaluate");
        }
        let spread = match (&a.shard, a.finish, &a.parts) {
            (Some(s), _, Some(dir)) => {
                let (k, n) = s
                    .split_once('/')
                    .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)))
                    .with_context(|| format!("--shard {s:?}: expected K/N, e.g. 0/4"))?;
                ensure!(n >= 1 && k < n, "--shard {s}: K must be in 0..N");
                Spread::Shard {
                    k,
                    n,
                    dir: dir.clone(),
                }
            }
            (None, true, Some(dir)) => Spread::Finish { dir: dir.clone() },
            (None, false, Some(_)) => bail!("--parts goes with --shard K/N or --finish"),
            _ => Spread::Single,
        };
        let extra = match (a.save_logits, a.kl_base) {
            (Some(p), _) => Extra::Save(p),
            (None, Some(p)) => Extra::Kl(p),
            (None, None) => Extra::None,
        };
        Ok(Options {
            model: a.model,
            text: a.file,
            ctx: a.ctx,
            chunks: a.chunks,
            tokenizer: a.tokenizer,
            bos: a.add_bos,
            precision: a.precision.into(),
            extra,
            force: a.force,
            budget: parse_budget(&a.mem_budget)?,
            scratch: a.scratch,
            resume: a.resume,
            spread,
            key_size: a.key_size,
            json: a.json,
            quiet: a.quiet,
        })
    }
}

/// The tokenizer, as `forward` finds it: `--tokenizer`, else the `tokenizer.model` beside the
/// model, else (a GGUF) the vocabulary in its metadata (`gguf::vocab`, proven to encode as
/// `tokenizer.model` does; llama-perplexity tokenizes with that vocabulary too). Returns it with
/// its name for messages and the file it came from when that is not the model itself.
fn tokenizer(
    model: &Path,
    explicit: &Option<PathBuf>,
) -> anyhow::Result<(Tokenizer, String, Option<PathBuf>)> {
    if let Some(p) = super::forward::find_tokenizer(model, explicit) {
        let t = Tokenizer::from_file(&p)
            .with_context(|| format!("reading tokenizer {}", p.display()))?;
        return Ok((t, p.display().to_string(), Some(p)));
    }
    if model.extension().is_some_and(|e| e == "gguf") {
        let g = crate::gguf::GgufSet::open(model)
            .with_context(|| format!("reading GGUF {}", model.display()))?;
        if let Some(t) = crate::gguf::vocab::tokenizer_of(&|k| g.get(k), model)
            .with_context(|| format!("the tokenizer metadata of {}", model.display()))?
        {
            return Ok((t, format!("the vocabulary of {}", model.display()), None));
        }
    }
    bail!(
        "no tokenizer.model beside {} (and no GGUF tokenizer metadata): pass --tokenizer",
        model.display()
    )
}

/// The run's inputs, resolved: model, chunks, identity.
pub(super) struct Setup {
    pub(super) src: Source,
    pub(super) dims: ModelDims,
    pub(super) foot: Footprint,
    pub(super) plan: ChunkPlan,
    pub(super) bos: BosRule,
    pub(super) text_tokens: usize,
    pub(super) kl: Option<KlBase>,
    pub(super) identity: Identity,
    pub(super) mode: String,
    pub(super) inputs: Vec<PathBuf>,
    /// The model's directory (release, safetensors): no output may go inside it.
    pub(super) input_dirs: Vec<PathBuf>,
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16",
    }
}

pub(super) fn setup(o: &Options) -> anyhow::Result<Setup> {
    let src = Source::open(
        &o.model,
        &OpenOptions {
            key_size: o.key_size,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", o.model.display()))?;
    // The source's own checked dims (as `forward` runs them).
    let dims = src.dims().clone();
    let foot = Footprint::of(&o.model, &src, dims.n_layers)?;
    let mut bos = bos_rule(&o.model, &src)?;
    match o.bos {
        BosArg::Auto => {}
        BosArg::Yes => {
            bos.bos = Some(bos.bos.unwrap_or(src.config().bos_token));
            bos.reason = "--add-bos yes".into();
        }
        BosArg::No => {
            bos.bos = None;
            bos.reason = "--add-bos no".into();
        }
    }
    let mut inputs: Vec<PathBuf> = foot.files.iter().map(|f| f.0.clone()).collect();
    let max_ctx = dims.max_seq;
    let check_ctx = |ctx: usize| -> anyhow::Result<()> {
        ensure!(
            ctx <= max_ctx,
            "--ctx {ctx} is beyond the model's context of {max_ctx} tokens"
        );
        Ok(())
    };
    let text_tokens = |inputs: &mut Vec<PathBuf>| -> anyhow::Result<Vec<u32>> {
        let path = o.text.as_ref().context("no text")?;
        let text = read_text(path)?;
        let (tok, name, file) = tokenizer(&o.model, &o.tokenizer)?;
        inputs.extend(file);
        ensure!(
            tok.len() == dims.vocab,
            "tokenizer {name} has {} pieces but the model's vocabulary is {}: pass the model's --tokenizer",
            tok.len(),
            dims.vocab
        );
        let t = tokenize(&tok, &text, bos.bos);
        ensure!(
            !t.is_empty() && !text.trim().is_empty(),
            "{}: no text to evaluate",
            path.display()
        );
        Ok(t)
    };
    let (plan, kl, n_text) = match &o.extra {
        Extra::Kl(p) => {
            let base = KlBase::open(p)?;
            inputs.push(p.clone());
            ensure!(
                base.n_vocab == dims.vocab,
                "{}: computed for a vocabulary of {} tokens, but the model's is {}",
                p.display(),
                base.n_vocab,
                dims.vocab
            );
            if let Some(c) = o.ctx {
                ensure!(
                    c == base.n_ctx,
                    "--ctx {c}, but {} was computed with a context of {}",
                    p.display(),
                    base.n_ctx
                );
            }
            check_ctx(base.n_ctx)?;
            let n_chunk = match o.chunks {
                Some(c) => {
                    ensure!(
                        c <= base.n_chunk,
                        "--chunks {c}, but {} holds {} chunks",
                        p.display(),
                        base.n_chunk
                    );
                    c
                }
                None => base.n_chunk,
            };
            let toks = base.tokens()[..n_chunk * base.n_ctx].to_vec();
            if o.text.is_some() {
                let mine = text_tokens(&mut inputs)?;
                if let Some(i) = (0..toks.len()).find(|&i| mine.get(i) != Some(&toks[i])) {
                    bail!(
                        "{}: holds other tokens than the text gives: position {i} (byte offset {}) is {} in the file, {} from the text",
                        p.display(),
                        HEADER_BYTES + 4 * i as u64,
                        toks[i],
                        mine.get(i).map_or("nothing".into(), |t| t.to_string())
                    );
                }
            }
            let plan = ChunkPlan::exact(toks, base.n_ctx, bos.bos)?;
            let n = plan.tokens().len();
            (plan, Some(base), n)
        }
        _ => {
            let ctx = o.ctx.unwrap_or(512);
            check_ctx(ctx)?;
            let toks = text_tokens(&mut inputs)?;
            let n = toks.len();
            (ChunkPlan::new(toks, ctx, o.chunks, bos.bos)?, None, n)
        }
    };
    if let Some(t) = &o.text {
        inputs.push(t.clone());
    }
    let mode = match (&o.extra, &kl) {
        (Extra::Kl(p), Some(_)) => {
            let f = Footprint {
                files: vec![(p.clone(), std::fs::metadata(p)?.len())],
                ..Footprint::default()
            };
            format!("kl:{}", f.fingerprint()?)
        }
        (Extra::Save(_), _) => "save".into(),
        _ => "ppl".into(),
    };
    let identity = Identity {
        grokit: env!("CARGO_PKG_VERSION").into(),
        model: foot.fingerprint()?,
        n_layers: dims.n_layers,
        d_model: dims.d_model,
        tokens: tokens_hash(plan.tokens()),
        ctx: plan.ctx,
        n_chunks: plan.n_chunks,
        chunks: 0..plan.n_chunks,
        bos: plan.bos,
        precision: precision_name(o.precision).into(),
    };
    Ok(Setup {
        src,
        dims,
        foot,
        plan,
        bos,
        text_tokens: n_text,
        kl,
        identity,
        mode,
        inputs,
        input_dirs: if o.model.is_dir() {
            vec![o.model.clone()]
        } else {
            Vec::new()
        },
    })
}

/// Where a file this run writes goes, decided by the one output policy (`io::output`) before
/// any work: never one of the inputs or a file inside the model's directory, never a device,
/// FIFO or directory (perplexity's outputs are files written to a temporary, then renamed); an
/// existing file needs `--force` unless `owned` (the run's own state and shard files, whose
/// reuse the caller has already decided). Returns the path to write (a symlink's target).
pub(super) fn output_rules(s: &Setup, force: bool, owned: bool) -> OutputRules {
    OutputRules {
        inputs: s.inputs.clone(),
        input_dirs: s.input_dirs.clone(),
        force,
        replace_without_force: owned,
        ..OutputRules::default()
    }
}

pub(super) fn output_path(
    p: &Path,
    s: &Setup,
    force: bool,
    owned: bool,
) -> anyhow::Result<PathBuf> {
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    ensure!(
        parent.is_dir(),
        "{}: directory {} does not exist",
        p.display(),
        parent.display()
    );
    match resolve_output(p, &output_rules(s, force, owned))? {
        OutputTarget::File { path, .. } => Ok(path),
        OutputTarget::Stream { path, kind } => bail!(
            "{}: refused as an output: it is {}; perplexity writes its files to a temporary \
             beside them, then renames",
            path.display(),
            kind.describe()
        ),
    }
}

/// Bytes of weights a run read, computed from the calls it made.
pub(super) fn computed_bytes(foot: &Footprint, calls: &Calls, vocab: usize) -> u64 {
    let layers: u64 = calls
        .layer
        .iter()
        .zip(&foot.per_layer)
        .map(|(c, b)| c * b)
        .sum();
    layers
        + calls.head * (foot.embed + foot.other)
        + calls.embedded * (foot.embed / vocab.max(1) as u64)
}

/// Run `perplexity`.
pub fn run(a: PerplexityArgs) -> anyhow::Result<Outcome> {
    let o = Options::from_args(a)?;
    let s = setup(&o)?;
    match &o.spread {
        Spread::Finish { dir } => finish(&o, &s, dir),
        Spread::Single => single(&o, &s, 0..s.plan.n_chunks, None),
        Spread::Shard { k, n, dir } => {
            let r = shard_range(s.plan.n_chunks, *k, *n);
            ensure!(
                !r.is_empty(),
                "--shard {k}/{n}: {} chunks leave shard {k} empty; use at most {} shards",
                s.plan.n_chunks,
                s.plan.n_chunks
            );
            single(&o, &s, r, Some((*k, *n, dir.as_path())))
        }
    }
}

/// What a run reports besides its result.
struct RunStats {
    seconds: f64,
    layout: Layout,
    state_dir: PathBuf,
    resumed_from: Option<usize>,
    calls: Calls,
    computed: u64,
    storage: Option<u64>,
}

/// One process's chunks: the whole run, or a shard.
fn single(
    o: &Options,
    s: &Setup,
    chunks: Range<usize>,
    shard: Option<(usize, usize, &Path)>,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut identity = s.identity.clone();
    identity.chunks = chunks.clone();
    // Outputs are checked before any work.
    let part_path = shard.map(|(k, n, dir)| dir.join(part_name(k, n)));
    if let Some((k, n, dir)) = shard {
        ensure!(dir.is_dir(), "--parts {}: not a directory", dir.display());
        let p = dir.join(part_name(k, n));
        if p.exists() {
            let done = Part::read(&p)
                .ok()
                .filter(|part| part.identity == identity && part.mode == s.mode && o.resume);
            if done.is_some() {
                println!(
                    "shard {k}/{n}: already complete in {} (nothing to do)",
                    p.display()
                );
                return Ok(Outcome::Ok);
            }
            ensure!(
                o.force,
                "{}: exists (another run's, or this shard without --resume); pass --force to replace it",
                p.display()
            );
        }
        output_path(&p, s, o.force, true)?;
    }
    if let Some(k) = &s.kl {
        k.check_rows(chunks.clone())?;
    }
    let save_path = match (&o.extra, shard) {
        (Extra::Save(p), None) => Some(output_path(p, s, o.force, false)?),
        (Extra::Save(_), Some((k, n, dir))) => {
            Some(output_path(&dir.join(logits_name(k, n)), s, o.force, true)?)
        }
        _ => None,
    };
    let dims = &s.dims;
    let layout = plan_layout(dims, s.plan.ctx, chunks.len(), s.plan.scored(), o.budget);
    let state_dir = o.scratch.clone().unwrap_or_else(|| {
        let h = crate::base::hex::encode(&identity.hash());
        std::env::temp_dir().join(format!("grokit-perplexity-{}", &h[..16]))
    });
    // The state files follow the output policy too: never inside the model's directory, never
    // over a device or FIFO (the directory may not exist yet: it is judged by its ancestors).
    resolve_output(&state_dir.join("run.json"), &output_rules(s, o.force, true))
        .with_context(|| format!("--scratch {}", state_dir.display()))?;
    let d = dims.d_model as u64;
    let ctx = s.plan.ctx as u64;
    let (state, found) = StateDir::open(
        &state_dir,
        &identity,
        layout.groups.clone(),
        |r| r.len() as u64 * ctx * d,
        o.resume,
    )?;
    let resumed_from = match found {
        Found::Fresh => {
            if o.resume && !o.quiet {
                eprintln!(
                    "note: no saved state in {}: starting from layer 0",
                    state_dir.display()
                );
            }
            None
        }
        Found::Resumed(l) => Some(l),
    };
    let model = Model::new(s.src.weights(), dims.clone(), o.precision)?;
    // Progress in bytes of weights applied: each layer once per group, the head per call.
    let groups = state.groups().to_vec();
    let head_calls: u64 = groups
        .iter()
        .map(|g| g.len().div_ceil(layout.head_batch.max(1)) as u64)
        .sum();
    let todo: u64 = (0..dims.n_layers)
        .map(|l| {
            let left = state.done.iter().filter(|&&dn| dn <= l).count() as u64;
            left * s.foot.per_layer[l]
        })
        .sum::<u64>()
        + head_calls * s.foot.embed;
    let prog = Progress::new("perplexity (weights applied)", todo, o.quiet);
    let per_layer = s.foot.per_layer.clone();
    let embed = s.foot.embed;
    let mut on = |st: Step| match st {
        Step::LayerDone { layer, .. } => prog.inc(per_layer[layer]),
        Step::HeadDone { .. } => prog.inc(embed),
    };
    let read0 = storage_read_bytes();
    let mut save_file = match &save_path {
        Some(p) => {
            let mut f = AtomicFile::create_large_hashed(p)?;
            if shard.is_none() {
                write_header(&mut f, s.plan.ctx, dims.vocab, s.plan.tokens())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Some((f, p.clone()))
        }
        None => None,
    };
    let (results, calls) = {
        let mut scoring = match (&mut save_file, &s.kl) {
            (Some((f, p)), _) => Scoring::Save(f, p.as_path()),
            (None, Some(k)) => Scoring::Kl(k),
            (None, None) => Scoring::Ppl,
        };
        evaluate(
            &model,
            &s.plan,
            chunks.clone(),
            &state,
            layout.in_ram,
            layout.head_batch,
            &mut scoring,
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
        })?
    };
    prog.finish();
    let storage = read0.zip(storage_read_bytes()).map(|(a, b)| b - a);
    let logits = match save_file {
        Some((f, p)) => {
            let bytes = f.written();
            let (_, sha) = f.commit_with_sha256()?;
            Some(LogitsPart {
                file: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
                sha256: sha
                    .map(|h| crate::base::hex::encode(&h))
                    .unwrap_or_default(),
            })
        }
        None => None,
    };
    let computed = computed_bytes(&s.foot, &calls, dims.vocab);
    let state_path = state.dir().to_path_buf();
    let stats = RunStats {
        seconds: start.elapsed().as_secs_f64(),
        layout,
        state_dir: state_path,
        resumed_from,
        calls,
        computed,
        storage,
    };
    let out = if let (Some((k, n, dir)), Some(pp)) = (shard, &part_path) {
        let part = Part::new(identity, s.mode.clone(), (k, n), results, logits);
        part.write(dir)?;
        render_shard(o, s, (k, n), &chunks, pp, &stats)?;
        Outcome::Ok
    } else {
        let summary = Summary::of(&results, s.plan.scored())?;
        render(o, s, &summary, &run_json(o, s, &stats), Some(&stats))?;
        Outcome::Ok
    };
    state.remove()?;
    Ok(out)
}

fn finish(o: &Options, s: &Setup, dir: &Path) -> anyhow::Result<Outcome> {
    let parts = read_all(dir, &s.identity, &s.mode)?;
    let results: Vec<ChunkResult> = crate::eval::parts::results(&parts);
    if let Extra::Save(p) = &o.extra {
        let p = output_path(p, s, o.force, false)?;
        write_merged_logits(dir, &parts, &p, s.plan.ctx, s.dims.vocab, s.plan.tokens())?;
    }
    let summary = Summary::of(&results, s.plan.scored())?;
    let run = json!({"finished_from": dir, "shards": parts.len()});
    render(o, s, &summary, &run, None)?;
    Ok(Outcome::Ok)
}

fn run_json(o: &Options, s: &Setup, st: &RunStats) -> serde_json::Value {
    json!({
        "seconds": st.seconds,
        "mem_budget": o.budget,
        "groups": st.layout.groups.len(),
        "hidden_in_ram": st.layout.in_ram,
        "hidden_bytes": st.layout.state_per_seq * st.layout.groups.iter().map(|g| g.len() as u64).sum::<u64>(),
        "expected_peak_bytes": st.layout.peak,
        "state_dir": st.state_dir,
        "resumed_from_layer": st.resumed_from,
        "layer_calls": st.calls.layer,
        "head_calls": st.calls.head,
        "model_bytes": s.foot.file_bytes(),
        "bytes_read_computed": st.computed,
        "bytes_read_storage": st.storage,
    })
}

fn render_shard(
    o: &Options,
    s: &Setup,
    (k, n): (usize, usize),
    chunks: &Range<usize>,
    part: &Path,
    st: &RunStats,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if o.json {
        let j = json!({"shard": [k, n], "chunks": [chunks.start, chunks.end], "part": part, "run": run_json(o, s, st)});
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        writeln!(
            out,
            "shard {k}/{n}: chunks {}..{} of {} done in {:.1} s -> {}",
            chunks.start,
            chunks.end,
            s.plan.n_chunks,
            st.seconds,
            part.display()
        )?;
        writeln!(out, "{}", bytes_line(s, st))?;
        writeln!(
            out,
            "when all {n} shards are done: the same command with --finish --parts {}",
            part.parent().unwrap_or(Path::new(".")).display()
        )?;
    }
    Ok(())
}

fn bytes_line(s: &Setup, st: &RunStats) -> String {
    let layer_reads = st.calls.layer.iter().copied().max().unwrap_or(0);
    format!(
        "weights read per run: {} computed from the tensors touched (each layer {} time{}; model {}), {} from storage (/proc/self/io read_bytes, page-cache hits excluded)",
        human(st.computed),
        layer_reads,
        if layer_reads == 1 { "" } else { "s" },
        human(s.foot.file_bytes()),
        st.storage.map_or("unknown".into(), human)
    )
}

fn render(
    o: &Options,
    s: &Setup,
    sum: &Summary,
    run: &serde_json::Value,
    st: Option<&RunStats>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if o.json {
        let j = json!({
            "model": o.model,
            "format": s.src.kind(),
            "layers": s.dims.n_layers,
            "text": o.text,
            "kl_base": match &o.extra { Extra::Kl(p) => Some(p), _ => None },
            "save_logits": match &o.extra { Extra::Save(p) => Some(p), _ => None },
            "text_tokens": s.text_tokens,
            "ctx": s.plan.ctx,
            "chunks": s.plan.n_chunks,
            "bos": s.plan.bos,
            "bos_rule": s.bos.reason,
            "precision": precision_name(o.precision),
            "result": sum,
            "run": run,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "model: {} ({}, {} layers, {}); {} tokens, {} chunks of {} scoring {} positions each; BOS: {} ({}); {}",
        o.model.display(),
        s.src.kind(),
        s.dims.n_layers,
        human(s.foot.file_bytes()),
        s.text_tokens,
        s.plan.n_chunks,
        s.plan.ctx,
        s.plan.scored(),
        s.plan.bos.map_or("no".into(), |b| format!("id {b}")),
        s.bos.reason,
        precision_name(o.precision)
    )?;
    if let Some(st) = st {
        writeln!(
            out,
            "layer-major: {} group{} of chunks, hidden states {} ({} per chunk), state in {}{}",
            st.layout.groups.len(),
            if st.layout.groups.len() == 1 { "" } else { "s" },
            if st.layout.in_ram {
                "in RAM"
            } else {
                "spilled to disk"
            },
            human(st.layout.state_per_seq),
            st.state_dir.display(),
            st.resumed_from
                .map_or(String::new(), |l| format!("; resumed at layer {l}"))
        )?;
    }
    if let Some(p) = &sum.perplexity {
        let line: String = p
            .running
            .iter()
            .enumerate()
            .map(|(i, x)| format!("[{}]{x:.4},", i + 1))
            .collect();
        writeln!(out, "{line}")?;
        match p.error {
            Some(e) => writeln!(out, "Final estimate: PPL = {:.4} +/- {e:.5}", p.ppl)?,
            None => writeln!(out, "Unexpected negative standard deviation of log(prob)")?,
        }
    }
    if let Some(k) = &sum.kl {
        render_kl(&mut out, k)?;
    }
    if let Some(st) = st {
        writeln!(out, "{}", bytes_line(s, st))?;
        writeln!(out, "{:.1} s", st.seconds)?;
    }
    if let Extra::Save(p) = &o.extra {
        writeln!(out, "logits saved to {}", p.display())?;
    }
    Ok(())
}

fn render_kl(out: &mut dyn Write, k: &crate::eval::perplexity::KlSummary) -> anyhow::Result<()> {
    writeln!(out, "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p")?;
    for (i, r) in k.running.iter().enumerate() {
        writeln!(
            out,
            "{:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
            i + 1,
            r.ppl.0,
            r.ppl.1,
            r.ln_ppl_ratio.0,
            r.ln_ppl_ratio.1,
            r.kld.0,
            r.kld.1,
            100.0 * r.p_diff_rms.0,
            100.0 * r.p_diff_rms.1,
            100.0 * r.same_top.0,
            100.0 * r.same_top.1
        )?;
    }
    writeln!(out)?;
    let Some(r) = &k.report else {
        return Ok(());
    };
    if r.count < 100 {
        writeln!(
            out,
            "note: {} positions; llama-perplexity prints no statistics below 100",
            r.count
        )?;
    }
    writeln!(out, "====== Perplexity statistics ======")?;
    let est = [
        ("Mean PPL(Q)                   ", r.ppl),
        ("Mean PPL(base)                ", r.ppl_base),
    ];
    for (label, (v, e)) in est {
        writeln!(out, "{label}: {v:10.6} ± {e:10.6}")?;
    }
    writeln!(
        out,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * r.cor
    )?;
    let est = [
        ("Mean ln(PPL(Q)/PPL(base))     ", r.ln_ppl_ratio),
        ("Mean PPL(Q)/PPL(base)         ", r.ppl_ratio),
        ("Mean PPL(Q)-PPL(base)         ", r.ppl_diff),
    ];
    for (label, (v, e)) in est {
        writeln!(out, "{label}: {v:10.6} ± {e:10.6}")?;
    }
    writeln!(out)?;
    writeln!(out, "====== KL divergence statistics ======")?;
    writeln!(out, "Mean    KLD: {:10.6} ± {:10.6}", r.kld.0, r.kld.1)?;
    for ((label, _), v) in KLD_QUANTILES.iter().zip(&r.kld_quantiles) {
        writeln!(out, "{label} KLD: {v:10.6}")?;
    }
    writeln!(out)?;
    writeln!(out, "====== Token probability statistics ======")?;
    writeln!(
        out,
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * r.p_diff.0,
        100.0 * r.p_diff.1
    )?;
    for ((label, _), v) in P_DIFF_QUANTILES.iter().zip(&r.p_diff_quantiles) {
        writeln!(out, "{label} Δp: {:6.3}%", 100.0 * f64::from(*v))?;
    }
    writeln!(
        out,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * r.p_diff_rms.0,
        100.0 * r.p_diff_rms.1
    )?;
    writeln!(
        out,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * r.same_top.0,
        100.0 * r.same_top.1
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn budgets() {
        assert_eq!(parse_budget("12GiB").unwrap(), 12 << 30);
        assert_eq!(parse_budget("12G").unwrap(), 12 << 30);
        assert_eq!(parse_budget("800M").unwrap(), 800 << 20);
        assert_eq!(parse_budget("1.5gb").unwrap(), 1_500_000_000);
        assert_eq!(parse_budget("4096").unwrap(), 4096);
        assert!(parse_budget("0").is_err());
        assert!(parse_budget("12 parsecs").is_err());
        assert!(parse_budget("-1G").is_err());
    }
}
