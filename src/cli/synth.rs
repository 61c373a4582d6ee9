//! `grokit synth`: write a synthetic checkpoint in the release's exact format.
//!
//! [`SynthArgs`] → [`Synth`] (a checked geometry) → [`Synth::execute`] → [`Synth::render`].

use super::progress::{human, Progress};
use super::Outcome;
use crate::model::{Config, ParamTable};
use crate::source::grok::expected_file_size;
use crate::synth::{synth, SynthOptions};
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Model geometries `synth` can write.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// 2 layers, d=64, vocab 512: the fixture in fixtures/tiny (about 1 MB).
    Tiny,
    /// Grok-1's real geometry (6.5 GB per layer; use --layers, or --sparse for the whole release).
    #[value(name = "grok-1")]
    Grok1,
}

/// Write a synthetic checkpoint (ckpt-0/ + config.json) with the release's exact pickle format.
///
/// Examples:
///   grokit synth /tmp/tiny --preset tiny
///   grokit synth -o /tmp/wide --preset tiny --d-model 96 --q-heads 6 --head-dim 16 --vocab 131072
///   grokit synth /data/grok2l --preset grok-1 --layers 2      # 13 GB, real tensor sizes
///   grokit synth /data/sparse --preset grok-1 --sparse        # all 770 files, 318 GB apparent, holes
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct SynthArgs {
    /// Output directory (ckpt-0/ and config.json are created inside it).
    #[arg(required_unless_present = "out_flag")]
    pub out: Option<PathBuf>,
    /// Output directory (same as the positional argument).
    #[arg(short = 'o', long = "out", conflicts_with = "out")]
    pub out_flag: Option<PathBuf>,
    /// Model width (default: the preset's).
    #[arg(long)]
    pub d_model: Option<u64>,
    /// Query heads (default: the preset's).
    #[arg(long)]
    pub q_heads: Option<u64>,
    /// KV heads (default: the preset's).
    #[arg(long)]
    pub kv_heads: Option<u64>,
    /// Head dimension (default: the preset's).
    #[arg(long)]
    pub head_dim: Option<u64>,
    /// Vocabulary size (default: the preset's).
    #[arg(long)]
    pub vocab: Option<u64>,
    /// Experts per layer (default 8).
    #[arg(long)]
    pub experts: Option<u64>,
    /// Expert FFN width (default: Grok-1's rule from --d-model).
    #[arg(long)]
    pub ffn: Option<u64>,
    /// Geometry.
    #[arg(long, value_enum, default_value = "tiny")]
    pub preset: Preset,
    /// Number of layers (default: 2 for tiny, 64 for grok-1).
    #[arg(long)]
    pub layers: Option<u64>,
    /// PRNG seed (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leave payloads as holes: real headers and file sizes, no data (for structural tests).
    #[arg(long)]
    pub sparse: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `synth`'s options, validated: a consistent geometry and an output directory.
#[derive(Debug)]
pub struct Synth {
    out: PathBuf,
    config: Config,
    seed: u64,
    sparse: bool,
    quiet: bool,
}

impl Synth {
    /// Build the geometry from the preset and the overrides, and check it.
    pub fn resolve(a: SynthArgs) -> anyhow::Result<Synth> {
        let mut config = match a.preset {
            Preset::Tiny => Config::tiny(),
            Preset::Grok1 => Config::grok1(),
        };
        if let Some(n) = a.layers {
            anyhow::ensure!(
                (1..=4096).contains(&n),
                "--layers must be between 1 and 4096"
            );
            config.num_layers = n;
        }
        let out = a
            .out
            .or(a.out_flag)
            .ok_or_else(|| anyhow::anyhow!("give the output directory"))?;
        if let Some(d) = a.d_model {
            config.emb_size = d;
            config.ffn_size = Config::ffn_rule(d);
        }
        for (v, slot) in [
            (a.q_heads, &mut config.num_q_heads),
            (a.kv_heads, &mut config.num_kv_heads),
            (a.head_dim, &mut config.key_size),
            (a.vocab, &mut config.vocab_size),
            (a.experts, &mut config.num_experts),
            (a.ffn, &mut config.ffn_size),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        let problems = config.problems();
        anyhow::ensure!(
            problems.is_empty(),
            "inconsistent geometry: {}",
            problems.join("; ")
        );
        anyhow::ensure!(config.num_q_heads * config.key_size % 8 == 0 && config.ffn_size % 8 == 0, "the O and down projections have 8 scale row blocks: q_heads x head_dim and the ffn width must be multiples of 8");
        Ok(Synth {
            out,
            config,
            seed: a.seed,
            sparse: a.sparse,
            quiet: a.quiet,
        })
    }

    /// Check the free space (dense output) and write the checkpoint; returns the bytes written,
    /// the file count and the seconds taken.
    fn execute(&self) -> anyhow::Result<(u64, usize, f64)> {
        for v in self.config.rule_violations() {
            eprintln!("warning: {v} (inspect will report it)");
        }
        let table = ParamTable::new(&self.config);
        let total: u64 = table
            .params
            .iter()
            .map(|p| expected_file_size(p, &self.config))
            .sum();
        if !self.sparse {
            if let Some(avail) = fs_available(&self.out) {
                anyhow::ensure!(
                    avail > total,
                    "{} needs {} but only {} is free there",
                    self.out.display(),
                    human(total),
                    human(avail)
                );
            }
        }
        let p = Progress::new("synth", total, self.quiet);
        let written = synth(
            &self.out,
            &SynthOptions {
                config: self.config.clone(),
                seed: self.seed,
                sparse: self.sparse,
            },
            &|n, _| p.inc(n),
        )
        .with_context(|| format!("writing {}", self.out.display()))?;
        p.finish();
        Ok((written, table.len(), p.elapsed()))
    }

    /// The closing status line (stderr).
    fn render(&self, (written, files, secs): (u64, usize, f64)) {
        if !self.quiet {
            eprintln!(
                "wrote {} files, {} ({}), in {:.1} s to {}",
                files,
                human(written),
                if self.sparse { "sparse" } else { "dense" },
                secs,
                self.out.join("ckpt-0").display()
            );
        }
    }
}

/// Run `synth`: resolve, execute, render.
pub fn run(a: SynthArgs) -> anyhow::Result<Outcome> {
    let s = Synth::resolve(a)?;
    let done = s.execute()?;
    s.render(done);
    Ok(Outcome::Ok)
}

fn fs_available(p: &std::path::Path) -> Option<u64> {
    // `df`-free estimate via statvfs is not in std; walk up to an existing dir and ask `df`.
    let mut d = p.to_path_buf();
    while !d.exists() {
        d = d.parent()?.to_path_buf();
    }
    let out = std::process::Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(&d)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}
