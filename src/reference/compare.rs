//! Comparing two logits arrays `[B, T, V]`: the numbers behind `grokit compare A B`.
//!
//! Why these four: max |Δ| catches a single broken position, RMS the overall noise level,
//! mean KL(P_ref ‖ P_test) (softmax in f64) what a sampler would actually see, and top-1
//! agreement whether greedy decoding changes. Only real (non-pad) positions count, because
//! pad positions' logits are whatever the padding produced and no one samples from them.

use super::ReferenceError;
use crate::npy::NpyF32;

/// Comparison results over the counted positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// Positions compared.
    pub positions: usize,
    /// Largest absolute difference of any logit.
    pub max_abs: f32,
    /// Root mean square of all logit differences.
    pub rms: f64,
    /// Mean over positions of KL(softmax(reference) ‖ softmax(test)), in nats.
    pub mean_kl: f64,
    /// Fraction of positions whose argmax (ties → lower index) agrees.
    pub top1_agreement: f64,
}

/// Pass/fail limits; a metric passes when it is within its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Maximum allowed max |Δ|.
    pub max_abs: f32,
    /// Maximum allowed RMS.
    pub rms: f64,
    /// Maximum allowed mean KL.
    pub mean_kl: f64,
    /// Minimum required top-1 agreement.
    pub min_top1: f64,
}

impl Thresholds {
    /// Two runs of the same f32 math (different summation orders): float noise only.
    pub fn f32_exact() -> Thresholds {
        Thresholds {
            max_abs: 1e-3,
            rms: 1e-4,
            mean_kl: 1e-8,
            min_top1: 1.0,
        }
    }
    /// A bf16 run against an f32 (or bf16) reference.
    pub fn bf16() -> Thresholds {
        Thresholds {
            max_abs: 0.5,
            rms: 0.05,
            mean_kl: 1e-3,
            min_top1: 0.98,
        }
    }
    /// An 8-bit quantization (Q8_0, int8) against the release.
    pub fn q8() -> Thresholds {
        Thresholds {
            max_abs: 1.0,
            rms: 0.1,
            mean_kl: 5e-3,
            min_top1: 0.95,
        }
    }
    /// A 4-bit quantization against the release.
    pub fn q4() -> Thresholds {
        Thresholds {
            max_abs: 4.0,
            rms: 0.5,
            mean_kl: 0.1,
            min_top1: 0.8,
        }
    }

    /// Judge `m`: the list of failed checks, empty when everything passes.
    pub fn check(&self, m: &Metrics) -> Verdict {
        let mut failures = Vec::new();
        if m.max_abs.is_nan() || m.max_abs > self.max_abs {
            failures.push(format!("max |Δ| {} > {}", m.max_abs, self.max_abs));
        }
        if m.rms.is_nan() || m.rms > self.rms {
            failures.push(format!("RMS {} > {}", m.rms, self.rms));
        }
        if m.mean_kl.is_nan() || m.mean_kl > self.mean_kl {
            failures.push(format!("mean KL {} > {}", m.mean_kl, self.mean_kl));
        }
        if m.top1_agreement.is_nan() || m.top1_agreement < self.min_top1 {
            failures.push(format!(
                "top-1 agreement {} < {}",
                m.top1_agreement, self.min_top1
            ));
        }
        Verdict {
            pass: failures.is_empty(),
            failures,
        }
    }
}

/// Outcome of [`Thresholds::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// All checks passed.
    pub pass: bool,
    /// One line per failed check.
    pub failures: Vec<String>,
}

/// The argmax of a row (ties → lower index).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// `log softmax` of a row, in f64 (max-subtracted).
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row
        .iter()
        .map(|&x| f64::from(x))
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row
        .iter()
        .map(|&x| (f64::from(x) - m).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&x| f64::from(x) - lse).collect()
}

/// Compare `reference` and `test`, both `[B, T, V]` = `shape`, over the positions where
/// `mask` (length B·T, e.g. `token != pad`) is true; all positions when `mask` is `None`.
pub fn compare(
    reference: &[f32],
    test: &[f32],
    shape: [usize; 3],
    mask: Option<&[bool]>,
) -> Result<Metrics, ReferenceError> {
    let [b, t, v] = shape;
    let n = b.checked_mul(t).and_then(|x| x.checked_mul(v));
    if n != Some(reference.len()) || n != Some(test.len()) || v == 0 {
        return Err(ReferenceError::Input(format!(
            "compare: shape {shape:?} vs lengths {} and {}",
            reference.len(),
            test.len()
        )));
    }
    if mask.is_some_and(|m| m.len() != b * t) {
        return Err(ReferenceError::Input(
            "compare: mask length differs from B·T".into(),
        ));
    }
    let (mut positions, mut max_abs, mut sq, mut kl, mut agree) =
        (0usize, 0f32, 0f64, 0f64, 0usize);
    for (p, (ra, rb)) in reference
        .chunks_exact(v)
        .zip(test.chunks_exact(v))
        .enumerate()
    {
        if mask.is_some_and(|m| !m[p]) {
            continue;
        }
        positions += 1;
        for (x, y) in ra.iter().zip(rb) {
            let d = (x - y).abs();
            if d > max_abs || d.is_nan() {
                max_abs = if d.is_nan() { f32::NAN } else { d.max(max_abs) };
            }
            sq += f64::from(x - y) * f64::from(x - y);
        }
        let (la, lb) = (log_softmax(ra), log_softmax(rb));
        kl += la
            .iter()
            .zip(&lb)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
        agree += usize::from(argmax(ra) == argmax(rb));
    }
    if positions == 0 {
        return Err(ReferenceError::Input(
            "compare: no positions selected".into(),
        ));
    }
    Ok(Metrics {
        positions,
        max_abs,
        rms: (sq / (positions * v) as f64).sqrt(),
        mean_kl: kl / positions as f64,
        top1_agreement: agree as f64 / positions as f64,
    })
}

/// [`compare`] for two `.npy` arrays of equal shape `[B, T, V]` (e.g. two `--logits-out` files).
pub fn compare_arrays(
    reference: &NpyF32,
    test: &NpyF32,
    mask: Option<&[bool]>,
) -> Result<Metrics, ReferenceError> {
    match (reference.shape.as_slice(), test.shape.as_slice()) {
        (&[b, t, v], s) if s == reference.shape.as_slice() => {
            compare(&reference.data, &test.data, [b, t, v], mask)
        }
        _ => Err(ReferenceError::Input(format!(
            "compare: shapes {:?} and {:?} (need equal [B, T, V])",
            reference.shape, test.shape
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn metrics_and_verdict() {
        let a = [0.0, 1.0, 2.0, 5.0, 0.0, 0.0];
        let m = compare(&a, &a, [1, 2, 3], None).unwrap();
        assert_eq!(
            (m.positions, m.max_abs, m.rms, m.top1_agreement),
            (2, 0.0, 0.0, 1.0)
        );
        assert!(m.mean_kl.abs() < 1e-15);
        assert!(Thresholds::f32_exact().check(&m).pass);
        let b = [0.0, 3.0, 2.0, 5.0, 0.0, 9.0];
        let m = compare(&a, &b, [1, 2, 3], Some(&[true, false])).unwrap();
        assert_eq!((m.positions, m.max_abs, m.top1_agreement), (1, 2.0, 0.0));
        assert!(m.mean_kl > 0.0);
        let v = Thresholds::bf16().check(&m);
        assert!(!v.pass && v.failures.len() == 4);
        assert!(compare(&a, &b[..5], [1, 2, 3], None).is_err());
        assert!(compare(&a, &b, [1, 2, 3], Some(&[false, false])).is_err());
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        let na = NpyF32 {
            shape: vec![1, 2, 3],
            data: a.to_vec(),
        };
        assert_eq!(compare_arrays(&na, &na, None).unwrap().max_abs, 0.0);
        let nb = NpyF32 {
            shape: vec![2, 3],
            data: a.to_vec(),
        };
        assert!(compare_arrays(&na, &nb, None).is_err());
    }
}

/// Per-prompt numbers for `grokit compare`: KL (mean and max), top-1, max |Δ|, and each model's
/// perplexity on the prompt's own next tokens.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RowMetrics {
    /// Prompt (row) index.
    pub row: usize,
    /// Real (non-pad) positions.
    pub positions: usize,
    /// Mean KL(A‖B) over the positions.
    pub mean_kl: f64,
    /// Largest KL(A‖B) at any position.
    pub max_kl: f64,
    /// Top-1 agreement.
    pub top1_agreement: f64,
    /// Largest |Δlogit|.
    pub max_abs: f32,
    /// Perplexity of A on the prompt's next tokens (NaN when the prompt has one token).
    pub ppl_a: f64,
    /// Perplexity of B.
    pub ppl_b: f64,
}

/// Per-row metrics of two `[B, T, V]` logits arrays for token rows right-padded with `pad`.
pub fn per_row(
    a: &NpyF32,
    b: &NpyF32,
    rows: &[Vec<u32>],
    pad: u32,
) -> Result<Vec<RowMetrics>, ReferenceError> {
    let (bn, t, v) = match (a.shape.as_slice(), b.shape.as_slice()) {
        (&[bn, t, v], s)
            if s == a.shape.as_slice()
                && rows.len() == bn
                && rows.iter().all(|r| r.len() == t)
                && v > 0 =>
        {
            (bn, t, v)
        }
        _ => {
            return Err(ReferenceError::Input(format!(
                "compare: shapes {:?} / {:?} do not fit {} rows",
                a.shape,
                b.shape,
                rows.len()
            )))
        }
    };
    let mut out = Vec::with_capacity(bn);
    for (r, toks) in rows.iter().enumerate() {
        let (mut kl_sum, mut kl_max, mut agree, mut n, mut max_abs) =
            (0f64, 0f64, 0usize, 0usize, 0f32);
        let (mut nll_a, mut nll_b, mut nn) = (0f64, 0f64, 0usize);
        for pos in 0..t {
            if toks[pos] == pad {
                continue;
            }
            let off = (r * t + pos) * v;
            let (ra, rb) = (&a.data[off..off + v], &b.data[off..off + v]);
            let (la, lb) = (log_softmax(ra), log_softmax(rb));
            let kl: f64 = la.iter().zip(&lb).map(|(&x, &y)| x.exp() * (x - y)).sum();
            kl_sum += kl;
            kl_max = kl_max.max(kl);
            agree += usize::from(argmax(ra) == argmax(rb));
            max_abs = ra
                .iter()
                .zip(rb)
                .fold(max_abs, |m, (x, y)| m.max((x - y).abs()));
            n += 1;
            if let Some(&next) = toks.get(pos + 1) {
                if next != pad && (next as usize) < v {
                    nll_a -= la[next as usize];
                    nll_b -= lb[next as usize];
                    nn += 1;
                }
            }
        }
        let ppl = |s: f64| {
            if nn == 0 {
                f64::NAN
            } else {
                (s / nn as f64).exp()
            }
        };
        out.push(RowMetrics {
            row: r,
            positions: n,
            mean_kl: if n == 0 { 0.0 } else { kl_sum / n as f64 },
            max_kl: kl_max,
            top1_agreement: if n == 0 { 1.0 } else { agree as f64 / n as f64 },
            max_abs,
            ppl_a: ppl(nll_a),
            ppl_b: ppl(nll_b),
        });
    }
    Ok(out)
}
