//! Perplexity and KL divergence over chunks, as `llama-perplexity` computes them, on the
//! layer-major [`super::engine`].
//!
//! Each chunk's scored positions are reduced to a [`ChunkResult`] (sums of the negative
//! log-likelihood and, against a KL base file, llama-perplexity's KL sums and every position's
//! KLD and Δp). Totals are always folded from chunk results in chunk order ([`Summary::of`]),
//! so a single run and the merge of shard results (`--finish`) give the same bits.

use super::chunks::ChunkPlan;
use super::engine::{Calls, Pass, Step};
use super::kldfile::{write_rows, KlBase};
use super::logprob::{
    kl_row, nll, ppl_estimate, quantize_row, row_u16s, KlReport, KlRunning, KlSums,
};
use super::state::StateDir;
use super::{EvalError, Model};
use crate::io::IoError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::ops::Range;
use std::path::Path;

/// What is computed from each chunk's logits.
pub enum Scoring<'a> {
    /// Perplexity only.
    Ppl,
    /// Perplexity, and every scored row written as a KL base file row to `out` (path for
    /// error messages).
    Save(&'a mut dyn Write, &'a Path),
    /// KL divergence against a base file (and perplexity of the model).
    Kl(&'a KlBase),
}

/// A chunk's KL sums and per-position values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlChunk {
    /// llama-perplexity's sums over the chunk.
    pub sums: KlSums,
    /// KL divergence at each scored position (f32 values, as llama-perplexity keeps them;
    /// stored as f64 so they serialize exactly).
    pub kld: Vec<f64>,
    /// Δp at each scored position (f32 values, stored as f64).
    pub p_diff: Vec<f64>,
}

/// One chunk's contribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// Chunk index in the run.
    pub chunk: usize,
    /// Σ negative log-likelihood over its scored positions.
    pub nll: f64,
    /// Σ nll².
    pub nll2: f64,
    /// Scored positions.
    pub count: u64,
    /// Against a KL base file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<KlChunk>,
}

/// Score chunk `c` from its logits at the scored positions (`[plan.scored(), V]`).
pub fn score_chunk(
    plan: &ChunkPlan,
    c: usize,
    logits: &[f32],
    vocab: usize,
    scoring: &mut Scoring<'_>,
) -> Result<ChunkResult, EvalError> {
    let n = plan.scored();
    if logits.len() != n * vocab {
        return Err(EvalError::Input(format!(
            "chunk {c}: {} logits for {n} positions of {vocab}",
            logits.len()
        )));
    }
    let mut r = ChunkResult {
        chunk: c,
        nll: 0.0,
        nll2: 0.0,
        count: n as u64,
        kl: None,
    };
    match scoring {
        Scoring::Ppl => {
            for (j, row) in logits.chunks_exact(vocab).enumerate() {
                let v = nll(row, plan.target(c, j) as usize);
                r.nll += v;
                r.nll2 += v * v;
            }
        }
        Scoring::Save(out, path) => {
            let nv = row_u16s(vocab);
            let mut rows = vec![0u16; n * nv];
            for (j, (row, q)) in logits
                .chunks_exact(vocab)
                .zip(rows.chunks_exact_mut(nv))
                .enumerate()
            {
                let v = quantize_row(row, plan.target(c, j) as usize, q);
                r.nll += v;
                r.nll2 += v * v;
            }
            write_rows(*out, &rows).map_err(|e| IoError::new("write", *path, e))?;
        }
        Scoring::Kl(base) => {
            if base.n_vocab != vocab {
                return Err(EvalError::Input(format!(
                    "{}: vocabulary {} but the model's is {vocab}",
                    base.path().display(),
                    base.n_vocab
                )));
            }
            let rows = base.chunk_rows(c)?;
            let nv = row_u16s(vocab);
            let mut k = KlChunk {
                sums: KlSums::default(),
                kld: Vec::with_capacity(n),
                p_diff: Vec::with_capacity(n),
            };
            for (j, (row, b)) in logits
                .chunks_exact(vocab)
                .zip(rows.chunks_exact(nv))
                .enumerate()
            {
                let (kld, dp) = kl_row(row, b, plan.target(c, j) as usize, &mut k.sums);
                k.kld.push(f64::from(kld as f32));
                k.p_diff.push(f64::from(dp));
            }
            r.nll = k.sums.sum_nll;
            r.nll2 = k.sums.sum_nll2;
            r.kl = Some(k);
        }
    }
    Ok(r)
}

/// Evaluate chunks `chunks` of `plan` layer-major: every remaining layer, then the output head
/// at the scored positions, each chunk scored as it comes out (in order). `state` holds (and
/// may already hold, when resumed) the hidden states; `in_ram` and `head_batch` come from
/// [`super::engine::plan_layout`].
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &Model<'_>,
    plan: &ChunkPlan,
    chunks: Range<usize>,
    state: &StateDir,
    in_ram: bool,
    head_batch: usize,
    scoring: &mut Scoring<'_>,
    on: &mut dyn FnMut(Step),
) -> Result<(Vec<ChunkResult>, Calls), EvalError> {
    let seqs: Vec<Vec<u32>> = chunks.clone().map(|c| plan.eval_tokens(c)).collect();
    let mut pass = Pass::new(model, &seqs, state, in_ram)?;
    pass.run_layers(None, on)?;
    let vocab = model.dims().vocab;
    let first = plan.first();
    let mut out = Vec::with_capacity(seqs.len());
    pass.head(
        head_batch,
        first..first + plan.scored(),
        &mut |s, logits| {
            out.push(score_chunk(plan, chunks.start + s, logits, vocab, scoring)?);
            Ok(())
        },
        on,
    )?;
    Ok((out, pass.calls))
}

/// Perplexity totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PplSummary {
    /// Perplexity after each chunk (llama-perplexity's `[i]x` line).
    pub running: Vec<f64>,
    /// Final estimate.
    pub ppl: f64,
    /// Its error (`None` when the variance is not positive).
    pub error: Option<f64>,
    /// Scored positions.
    pub count: u64,
    /// Σ nll.
    pub nll: f64,
    /// Σ nll².
    pub nll2: f64,
}

/// KL totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlSummary {
    /// The running statistics after each chunk.
    pub running: Vec<KlRunning>,
    /// The final statistics (llama-perplexity prints them for 100 positions or more).
    pub report: Option<KlReport>,
    /// The total sums.
    pub sums: KlSums,
}

/// The result of a run (or of merged shards).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Chunks.
    pub chunks: usize,
    /// Positions scored per chunk.
    pub scored_per_chunk: usize,
    /// Perplexity (without a KL base file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<PplSummary>,
    /// KL divergence (against a base file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<KlSummary>,
}

impl Summary {
    /// Fold chunk results, which must be chunks `0..n` in order.
    pub fn of(results: &[ChunkResult], scored: usize) -> Result<Summary, EvalError> {
        if let Some((i, r)) = results.iter().enumerate().find(|(i, r)| r.chunk != *i) {
            return Err(EvalError::Input(format!(
                "chunk results out of order: position {i} holds chunk {}",
                r.chunk
            )));
        }
        let kl = results.first().is_some_and(|r| r.kl.is_some());
        if results.iter().any(|r| r.kl.is_some() != kl) {
            return Err(EvalError::Input(
                "chunk results mix perplexity and KL".into(),
            ));
        }
        let mut s = Summary {
            chunks: results.len(),
            scored_per_chunk: scored,
            perplexity: None,
            kl: None,
        };
        if kl {
            let mut sums = KlSums::default();
            let (mut kld, mut dp) = (Vec::new(), Vec::new());
            let mut running = Vec::with_capacity(results.len());
            for k in results.iter().filter_map(|r| r.kl.as_ref()) {
                sums.add(&k.sums);
                kld.extend_from_slice(&k.kld);
                dp.extend_from_slice(&k.p_diff);
                running.push(KlRunning::of(&sums));
            }
            s.kl = Some(KlSummary {
                running,
                report: KlReport::of(&sums, &kld, &dp),
                sums,
            });
        } else {
            let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0u64);
            let mut running = Vec::with_capacity(results.len());
            for r in results {
                nll += r.nll;
                nll2 += r.nll2;
                count += r.count;
                running.push((nll / count as f64).exp());
            }
            let (ppl, error) = ppl_estimate(nll, nll2, count);
            s.perplexity = Some(PplSummary {
                running,
                ppl,
                error,
                count,
                nll,
                nll2,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::state::{tokens_hash, Identity};
    use crate::reference::sources::Source;
    use crate::reference::{forward, Precision};

    /// The layer-major evaluation is the forward pass: on the tiny release, in two groups (so
    /// the second group's layers run after the first group's head is planned), every chunk's
    /// NLL sums equal those computed from `reference::forward`'s logits of the same tokens, bit
    /// for bit, in both precisions.
    #[test]
    fn layer_major_scores_equal_the_forward_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny");
        let src = Source::open(&dir, &Default::default()).unwrap();
        let dims = src.dims().clone();
        let ctx = 12;
        let tokens: Vec<u32> = (0..ctx as u32 * 3)
            .map(|i| (i * 7919 + 13) % dims.vocab as u32)
            .collect();
        let plan = ChunkPlan::new(tokens, ctx, None, Some(1)).unwrap();
        for precision in [Precision::F32, Precision::Bf16] {
            let model = Model::new(src.weights(), dims.clone(), precision).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let id = Identity {
                grokit: "test".into(),
                model: "tiny".into(),
                n_layers: dims.n_layers,
                d_model: dims.d_model,
                tokens: tokens_hash(plan.tokens()),
                ctx,
                n_chunks: plan.n_chunks,
                chunks: 0..plan.n_chunks,
                bos: plan.bos,
                precision: format!("{precision:?}"),
            };
            let d = dims.d_model as u64;
            let (state, _) = StateDir::open(
                &scratch.path().join("s"),
                &id,
                vec![0..2, 2..3],
                |r| r.len() as u64 * ctx as u64 * d,
                false,
            )
            .unwrap();
            let (got, _) = evaluate(
                &model,
                &plan,
                0..plan.n_chunks,
                &state,
                false,
                2,
                &mut Scoring::Ppl,
                &mut |_| {},
            )
            .unwrap();
            let seqs: Vec<Vec<u32>> = (0..plan.n_chunks).map(|c| plan.eval_tokens(c)).collect();
            let l = forward(src.weights(), &dims, precision, &seqs).unwrap();
            assert_eq!(got.len(), plan.n_chunks);
            for (c, r) in got.iter().enumerate() {
                let (mut s, mut s2) = (0f64, 0f64);
                for j in 0..plan.scored() {
                    let row = c * ctx + plan.first() + j;
                    assert_eq!(l.positions[row], (c, plan.first() + j));
                    let v = nll(
                        &l.data[row * l.vocab..(row + 1) * l.vocab],
                        plan.target(c, j) as usize,
                    );
                    s += v;
                    s2 += v * v;
                }
                assert_eq!((r.nll, r.nll2), (s, s2), "{precision:?} chunk {c}");
            }
        }
    }
}
