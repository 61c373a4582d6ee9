//! Running a set of independent products `x · W` over weights as stored, in bounded memory.
//!
//! Why one scheduler: every matrix product of the model (the attention projections, the
//! router, the chosen experts, the output head) goes through [`run`], which
//! - cuts each matrix that can be banded ([`MatrixInfo::bandable`]) into pieces of at most
//!   [`Budget::piece_bytes`] stored bytes (the output head, 3.2 GB of f32 in the release, is
//!   never held whole), and loads the release's int8 matrices whole (201 MB at Grok-1's widths);
//! - submits the pieces in batches of at most [`Budget::batch_bytes`] through
//!   [`kernel::run`](crate::kernel::run), which splits each batch over (job, column tile), so a
//!   decode step's few products still keep every core busy;
//! - loads batch i+1 on a helper thread while batch i is computed (for the release, `pread`
//!   overlaps the arithmetic; for mapped sources loading is free), so at most two batches are
//!   held at once, and drops each piece (its buffer, or a map's resident pages) as soon as its
//!   batch is done.
//!
//! Results do not depend on the budget: the kernel's output `(i, j)` depends only on row `i` of
//! `x` and column `j` of `W` (its contract), so banded and whole products agree bit for bit.

use super::store::{weight_err, Loaded, MatrixInfo, WeightId, Weights};
use super::ReferenceError;
use crate::kernel::{self, Job};
use std::ops::Range;
use std::sync::mpsc::sync_channel;

/// Memory limits of [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Largest band of a bandable matrix, in stored bytes.
    pub piece_bytes: u64,
    /// Stored bytes submitted to the kernel together (a batch holds at least one piece).
    pub batch_bytes: u64,
}

/// Default band size: 128 MiB of stored weights.
pub const PIECE_BYTES: u64 = 128 << 20;
/// Default batch size: 256 MiB of stored weights (two batches in flight: 512 MiB at most, or
/// two whole matrices when one is bigger).
pub const BATCH_BYTES: u64 = 256 << 20;

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            piece_bytes: PIECE_BYTES,
            batch_bytes: BATCH_BYTES,
        }
    }
}

/// One product to run: `x[m, k] · W(id)` with `W` of logical shape `[k, n]`.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    /// The weights.
    pub id: WeightId,
    /// Activations, `m · k` values.
    pub x: &'a [f32],
    /// Rows of `x`.
    pub m: usize,
    /// Expected input width.
    pub k: usize,
    /// Expected output width.
    pub n: usize,
}

/// A piece of a product: which product, which columns, how many stored bytes.
#[derive(Clone, Debug)]
struct Piece {
    product: usize,
    cols: Range<usize>,
    bytes: u64,
}

/// Split `0..n` into near-equal bands of at most `per` items (at least one item each).
pub fn bands(n: usize, per: usize) -> Vec<Range<usize>> {
    let per = per.max(1);
    let count = n.div_ceil(per).max(1);
    let width = n.div_ceil(count).max(1);
    (0..n)
        .step_by(width)
        .map(|s| s..(s + width).min(n))
        .collect()
}

fn pieces(specs: &[Spec<'_>], infos: &[MatrixInfo], budget: &Budget) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, (s, info)) in specs.iter().zip(infos).enumerate() {
        if s.m == 0 || s.n == 0 {
            continue;
        }
        let per_col = info.bytes.div_ceil(info.n.max(1) as u64).max(1);
        if !info.bandable {
            out.push(Piece {
                product: i,
                cols: 0..s.n,
                bytes: info.bytes,
            });
            continue;
        }
        let per = usize::try_from(budget.piece_bytes / per_col).unwrap_or(usize::MAX);
        for c in bands(s.n, per) {
            let bytes = per_col * c.len() as u64;
            out.push(Piece {
                product: i,
                cols: c,
                bytes,
            });
        }
    }
    out
}

fn batches(pieces: Vec<Piece>, budget: &Budget) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = Vec::new();
    let mut held = 0u64;
    for p in pieces {
        match out.last_mut() {
            Some(b) if held.saturating_add(p.bytes) <= budget.batch_bytes => {
                held += p.bytes;
                b.push(p);
            }
            _ => {
                held = p.bytes;
                out.push(vec![p]);
            }
        }
    }
    out
}

/// Run `specs` and return their outputs (`[m, n]` each, in order). `round_weights` rounds every
/// weight to bf16 first (the bf16 plan's optional point; slow: it decodes to f32 copies).
pub fn run(
    w: &dyn Weights,
    specs: &[Spec<'_>],
    budget: &Budget,
    round_weights: bool,
) -> Result<Vec<Vec<f32>>, ReferenceError> {
    let mut infos = Vec::with_capacity(specs.len());
    let mut outs = Vec::with_capacity(specs.len());
    for s in specs {
        let info = w.info(s.id)?;
        if (info.k, info.n) != (s.k, s.n) {
            return Err(ReferenceError::Shape {
                path: s.id.to_string(),
                got: vec![info.k, info.n],
                expected: vec![s.k, s.n],
            });
        }
        let len = s.m.checked_mul(s.k).filter(|&l| l == s.x.len());
        let out_len = s.m.checked_mul(s.n);
        let (Some(_), Some(out_len)) = (len, out_len) else {
            return Err(ReferenceError::Input(format!(
                "{}: {} activations for {} rows of {}",
                s.id,
                s.x.len(),
                s.m,
                s.k
            )));
        };
        infos.push(info);
        outs.push(vec![0f32; out_len]);
    }
    let plan = batches(pieces(specs, &infos, budget), budget);
    if plan.is_empty() {
        return Ok(outs);
    }
    let load = |batch: &[Piece]| -> Result<Vec<Loaded<'_>>, ReferenceError> {
        batch
            .iter()
            .map(|p| {
                let id = specs[p.product].id;
                let l = w.load(id, p.cols.clone())?;
                if l.cols != p.cols {
                    return Err(weight_err(
                        id,
                        format!("asked for columns {:?}, got {:?}", p.cols, l.cols),
                    ));
                }
                if round_weights {
                    return l.rounded_bf16().map_err(|e| weight_err(id, e));
                }
                Ok(l)
            })
            .collect()
    };
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Vec<Loaded<'_>>, ReferenceError>>(0);
        let plan_ref = &plan;
        let loader = scope.spawn(move || {
            for b in plan_ref {
                let r = load(b);
                let stop = r.is_err();
                if tx.send(r).is_err() || stop {
                    break;
                }
            }
        });
        let mut result = Ok(());
        for b in &plan {
            let loaded = match rx.recv() {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    result = Err(e);
                    break;
                }
                Err(_) => {
                    result = Err(ReferenceError::Input("weight loader stopped".into()));
                    break;
                }
            };
            if let Err(e) = compute(specs, b, &loaded, &mut outs) {
                result = Err(e);
                break;
            }
        }
        drop(rx);
        let _ = loader.join();
        result
    })?;
    Ok(outs)
}

/// Run one batch and scatter its pieces into the outputs.
fn compute(
    specs: &[Spec<'_>],
    batch: &[Piece],
    loaded: &[Loaded<'_>],
    outs: &mut [Vec<f32>],
) -> Result<(), ReferenceError> {
    let mats = batch
        .iter()
        .zip(loaded)
        .map(|(p, l)| l.matrix().map_err(|e| weight_err(specs[p.product].id, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut parts: Vec<Vec<f32>> = batch
        .iter()
        .map(|p| vec![0f32; specs[p.product].m * p.cols.len()])
        .collect();
    let mut jobs: Vec<Job<'_, '_>> = batch
        .iter()
        .zip(&mats)
        .zip(parts.iter_mut())
        .map(|((p, m), out)| Job {
            x: specs[p.product].x,
            m: specs[p.product].m,
            w: *m,
            out,
        })
        .collect();
    kernel::run(&mut jobs).map_err(|e| {
        let what = batch
            .first()
            .map(|p| specs[p.product].id.to_string())
            .unwrap_or_default();
        ReferenceError::Weight {
            path: what,
            reason: e.to_string(),
        }
    })?;
    drop(jobs);
    for (p, part) in batch.iter().zip(parts) {
        let n = specs[p.product].n;
        let w = p.cols.len();
        if w == n {
            outs[p.product] = part;
            continue;
        }
        let out = &mut outs[p.product];
        for (orow, prow) in out.chunks_exact_mut(n).zip(part.chunks_exact(w)) {
            orow[p.cols.clone()].copy_from_slice(prow);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_and_respect_the_width() {
        assert_eq!(bands(10, 3), vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(bands(10, 100), vec![0..10]);
        assert_eq!(bands(5, 0), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(bands(0, 4).is_empty());
        let b = bands(131_072, 5461);
        assert!(b.iter().all(|r| r.len() <= 5461));
        assert_eq!(b.last().map(|r| r.end), Some(131_072));
    }
}
