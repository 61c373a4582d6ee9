//! Shard results (`--shard K/N`) and their merge (`--finish`).
//!
//! A shard evaluates a contiguous block of chunks ([`super::chunks::shard_range`]) and writes
//! `part-KKKK-of-NNNN.json`: the run's identity, its block, and its [`ChunkResult`]s (f64 sums
//! written in serde_json's shortest round-trip form, so they read back bit for bit); with
//! `--save-logits`, also `part-KKKK-of-NNNN.logits`, its chunks' KL base rows, whose size and
//! SHA-256 the JSON records. `--finish` reads all N parts, checks they belong to the same run
//! and tile the chunks, and folds the chunk results in order: exactly the single-machine totals.

use super::kldfile::{chunk_row_bytes, write_header};
use super::perplexity::ChunkResult;
use super::state::Identity;
use super::EvalError;
use crate::io::atomic::AtomicFile;
use crate::io::IoError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

const FORMAT: &str = "grokit-perplexity-part";
const VERSION: u32 = 1;
/// Largest part file read (its per-position KL values are 8 bytes of JSON-ish text each).
pub const PART_MAX_BYTES: u64 = 4 << 30;

/// The logits rows a shard wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogitsPart {
    /// File name (beside the part).
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// One shard's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `grokit-perplexity-part`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The run (its `chunks` is this shard's block).
    pub identity: Identity,
    /// What was computed: `ppl`, `save`, or `kl:<fingerprint of the base file>`.
    pub mode: String,
    /// K and N.
    pub shard: (usize, usize),
    /// The chunks' results, in order.
    pub results: Vec<ChunkResult>,
    /// The KL base rows of these chunks (with `--save-logits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits: Option<LogitsPart>,
}

/// The part file name of shard `k` of `n`.
pub fn part_name(k: usize, n: usize) -> String {
    format!("part-{k:04}-of-{n:04}.json")
}

/// The logits file name of shard `k` of `n`.
pub fn logits_name(k: usize, n: usize) -> String {
    format!("part-{k:04}-of-{n:04}.logits")
}

impl Part {
    /// A part for shard `(k, n)`.
    pub fn new(
        identity: Identity,
        mode: String,
        shard: (usize, usize),
        results: Vec<ChunkResult>,
        logits: Option<LogitsPart>,
    ) -> Part {
        Part {
            format: FORMAT.into(),
            version: VERSION,
            identity,
            mode,
            shard,
            results,
            logits,
        }
    }

    /// Write it atomically to `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, EvalError> {
        let p = dir.join(part_name(self.shard.0, self.shard.1));
        let j = serde_json::to_vec(self).map_err(|e| EvalError::Input(e.to_string()))?;
        crate::io::atomic::write_file(&p, &j)?;
        Ok(p)
    }

    /// Read `path`, with its size capped.
    pub fn read(path: &Path) -> Result<Part, EvalError> {
        let meta = std::fs::metadata(path).map_err(|e| IoError::new("open", path, e))?;
        if !meta.is_file() {
            return Err(EvalError::file(path, None, "not a regular file"));
        }
        let b = crate::io::read_capped(path, PART_MAX_BYTES)?.ok_or_else(|| {
            EvalError::file(path, None, format!("larger than {PART_MAX_BYTES} bytes"))
        })?;
        let p: Part = serde_json::from_slice(&b).map_err(|e| {
            EvalError::file(
                path,
                None,
                format!(
                    "not a perplexity part (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if p.format != FORMAT || p.version != VERSION {
            return Err(EvalError::file(
                path,
                None,
                format!("format {:?} version {}", p.format, p.version),
            ));
        }
        Ok(p)
    }
}

/// Identities equal but for the shard's block.
fn same_run(a: &Identity, b: &Identity) -> bool {
    let mut x = a.clone();
    x.chunks = b.chunks.clone();
    x == *b
}

/// Read and check all parts in `dir` against `identity` (whose `chunks` is the whole run) and
/// `mode`; returns them in shard order.
pub fn read_all(dir: &Path, identity: &Identity, mode: &str) -> Result<Vec<Part>, EvalError> {
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("read", dir, e))?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("part-") && n.ends_with(".json"))
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        return Err(EvalError::Input(format!(
            "{}: no part-K-of-N.json files (run the shards first)",
            dir.display()
        )));
    };
    let first = Part::read(&dir.join(first))?;
    let n = first.shard.1;
    let mut parts = Vec::with_capacity(n);
    let mut next = 0usize;
    for k in 0..n {
        let p = dir.join(part_name(k, n));
        if !p.exists() {
            return Err(EvalError::Input(format!(
                "{}: shard {k} of {n} is missing ({})",
                dir.display(),
                part_name(k, n)
            )));
        }
        let part = Part::read(&p)?;
        let mism = |r: String| EvalError::Mismatch {
            path: p.clone(),
            reason: r,
        };
        if part.shard != (k, n) {
            return Err(mism(format!("holds shard {:?}", part.shard)));
        }
        if !same_run(&part.identity, identity) {
            return Err(mism(
                "belongs to another run (model, tokens, ctx, chunks, BOS, precision or grokit version differ)"
                    .into(),
            ));
        }
        if part.mode != mode {
            return Err(mism(format!("computed {:?}, this run {mode:?}", part.mode)));
        }
        let r = &part.identity.chunks;
        let chunks: Vec<usize> = part.results.iter().map(|c| c.chunk).collect();
        if r.start != next || chunks != r.clone().collect::<Vec<_>>() {
            return Err(mism(format!(
                "chunks {r:?} (results for {} chunks) do not continue at chunk {next}",
                chunks.len()
            )));
        }
        next = r.end;
        parts.push(part);
    }
    if next != identity.n_chunks {
        return Err(EvalError::Mismatch {
            path: dir.to_path_buf(),
            reason: format!("the parts cover {next} of {} chunks", identity.n_chunks),
        });
    }
    let extra = names.len() - n;
    if extra > 0 {
        return Err(EvalError::Mismatch {
            path: dir.to_path_buf(),
            reason: format!("{extra} part files of other shard counts beside the {n} of this run"),
        });
    }
    Ok(parts)
}

/// Concatenate the parts' logits rows under a KL base file header into `out` (atomically),
/// checking each part's size and SHA-256.
pub fn write_merged_logits(
    dir: &Path,
    parts: &[Part],
    out: &Path,
    n_ctx: usize,
    n_vocab: usize,
    tokens: &[u32],
) -> Result<(), EvalError> {
    let mut f = AtomicFile::create_large(out)?;
    write_header(&mut f, n_ctx, n_vocab, tokens).map_err(|e| IoError::new("write", out, e))?;
    let per_chunk = chunk_row_bytes(n_ctx, n_vocab).unwrap_or(0);
    let mut buf = vec![0u8; 8 << 20];
    for part in parts {
        let lp = part.logits.as_ref().ok_or_else(|| {
            EvalError::Input(format!(
                "shard {} of {} saved no logits (run the shards with --save-logits)",
                part.shard.0, part.shard.1
            ))
        })?;
        let p = dir.join(&lp.file);
        let want = per_chunk * part.results.len() as u64;
        let mut src = std::fs::File::open(&p).map_err(|e| IoError::new("open", &p, e))?;
        let size = src
            .metadata()
            .map_err(|e| IoError::new("stat", &p, e))?
            .len();
        if size != want || lp.bytes != want {
            return Err(EvalError::file(
                &p,
                Some(size.min(want)),
                format!(
                    "{size} bytes, expected {want} for {} chunks",
                    part.results.len()
                ),
            ));
        }
        let mut sha = Sha256::new();
        let mut left = size;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            src.read_exact(&mut buf[..k])
                .map_err(|e| IoError::new("read", &p, e))?;
            sha.update(&buf[..k]);
            f.write_all(&buf[..k])?;
            left -= k as u64;
        }
        if crate::base::hex::encode(&sha.finalize()) != lp.sha256 {
            return Err(EvalError::file(
                &p,
                None,
                "SHA-256 differs from the part's record",
            ));
        }
    }
    f.commit()?;
    Ok(())
}

/// The chunk results of all parts, in order.
pub fn results(parts: &[Part]) -> Vec<ChunkResult> {
    parts
        .iter()
        .flat_map(|p| p.results.iter().cloned())
        .collect()
}
