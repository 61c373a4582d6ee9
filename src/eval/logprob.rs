//! The per-position arithmetic of `llama-perplexity`, and the statistics it prints.
//!
//! Written from llama.cpp's `tools/perplexity/perplexity.cpp` (docs/perplexity.md describes
//! each formula), keeping its float/double mix so the numbers agree to the last printed digit:
//! - perplexity: `nll = −log softmax(logits)[tok]`, summed in f64; with `--save-logits` the
//!   f32 form `max + log Σ exp − logit[tok]` that llama-perplexity uses on that path;
//! - the KL base file's rows: log-probabilities quantized to u16 over `[max − 16, max]`
//!   ([`quantize_row`]);
//! - against a base row: KL(base ‖ model) over the base's entries above −16, Δp of the scored
//!   token, same-top-token, and the sums the ± errors come from ([`kl_row`]).
//!
//! Unlike llama-perplexity, which accumulates on several threads in whatever order they finish,
//! grokit sums each chunk's positions in order and then the chunks in order: the result does not
//! depend on threads, and shard results merge into exactly the single-machine totals.

use serde::{Deserialize, Serialize};

/// u16 values per row of a KL base file: the vocabulary rounded up to even, plus two f32
/// (scale and minimum log-probability).
pub fn row_u16s(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

fn max_of(x: &[f32]) -> f32 {
    x.iter().fold(x[0], |m, &v| if m < v { v } else { m })
}

fn sum_exp(x: &[f32], max: f32) -> f64 {
    x.iter().map(|&v| f64::from((v - max).exp())).sum()
}

/// Negative log-likelihood of `tok` (llama-perplexity without `--kl-divergence-base`).
pub fn nll(logits: &[f32], tok: usize) -> f64 {
    let max = max_of(logits);
    let s = sum_exp(logits, max);
    -(f64::from(logits[tok] - max) - s.ln())
}

/// ggml's `nearest_int`: round to nearest (ties to even) by adding 1.5·2²³.
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// One row of a KL base file from `logits` (`out.len() == row_u16s(logits.len())`), and the
/// negative log-likelihood of `tok` as llama-perplexity computes it on this path.
pub fn quantize_row(logits: &[f32], tok: usize, out: &mut [u16]) -> f64 {
    let max = max_of(logits);
    let min = logits
        .iter()
        .fold(logits[0], |m, &v| if v < m { v } else { m });
    let min = if min < max - 16.0 { max - 16.0 } else { min };
    let lse = sum_exp(logits, max).ln() as f32;
    let min_log_prob = min - max - lse;
    let scale = (max - min) / 65535.0;
    let (s, m) = (scale.to_bits(), min_log_prob.to_bits());
    out[0] = s as u16;
    out[1] = (s >> 16) as u16;
    out[2] = m as u16;
    out[3] = (m >> 16) as u16;
    let body = &mut out[4..];
    body.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (o, &l) in body.iter_mut().zip(logits) {
            if l > min {
                *o = nearest_int(inv * (l - min)) as u16;
            }
        }
    }
    f64::from(max + lse - logits[tok])
}

/// The scale and minimum log-probability at the start of a base row.
pub fn row_header(row: &[u16]) -> (f32, f32) {
    let f = |i: usize| f32::from_bits(u32::from(row[i]) | (u32::from(row[i + 1]) << 16));
    (f(0), f(2))
}

/// The sums llama-perplexity's KL statistics come from (its `kl_divergence_result`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KlSums {
    /// Σ nll of the model.
    pub sum_nll: f64,
    /// Σ nll².
    pub sum_nll2: f64,
    /// Σ nll of the base.
    pub sum_nll_base: f64,
    /// Σ nll_base².
    pub sum_nll_base2: f64,
    /// Σ nll · nll_base.
    pub sum_nll_nll_base: f64,
    /// Σ KL(base ‖ model).
    pub sum_kld: f64,
    /// Σ KL².
    pub sum_kld2: f64,
    /// Σ Δp (model − base probability of the scored token).
    pub sum_p_diff: f64,
    /// Σ Δp².
    pub sum_p_diff2: f64,
    /// Σ Δp⁴.
    pub sum_p_diff4: f64,
    /// max |Δp| (an f32 value, kept as f64 so it serializes exactly).
    pub max_p_diff: f64,
    /// Positions where the model's and the base's most likely tokens agree.
    pub n_same_top: u64,
    /// Positions.
    pub count: u64,
}

impl KlSums {
    /// Add another chunk's sums (in chunk order, for reproducible totals).
    pub fn add(&mut self, o: &KlSums) {
        self.sum_nll += o.sum_nll;
        self.sum_nll2 += o.sum_nll2;
        self.sum_nll_base += o.sum_nll_base;
        self.sum_nll_base2 += o.sum_nll_base2;
        self.sum_nll_nll_base += o.sum_nll_nll_base;
        self.sum_kld += o.sum_kld;
        self.sum_kld2 += o.sum_kld2;
        self.sum_p_diff += o.sum_p_diff;
        self.sum_p_diff2 += o.sum_p_diff2;
        self.sum_p_diff4 += o.sum_p_diff4;
        self.max_p_diff = self.max_p_diff.max(o.max_p_diff);
        self.n_same_top += o.n_same_top;
        self.count += o.count;
    }
}

/// One position against a base row: adds to `s` and returns (KL divergence, Δp).
pub fn kl_row(logits: &[f32], base: &[u16], tok: usize, s: &mut KlSums) -> (f64, f32) {
    let (mut max, mut imax) = (logits[0], 0usize);
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let lse = sum_exp(logits, max).ln() as f32;
    let (scale, min_log_prob) = row_header(base);
    let base = &base[4..];
    let nll = max + lse - logits[tok];
    s.sum_nll += f64::from(nll);
    s.sum_nll2 += f64::from(nll * nll);
    let nll_base = -(scale * f32::from(base[tok]) + min_log_prob);
    s.sum_nll_base += f64::from(nll_base);
    s.sum_nll_base2 += f64::from(nll_base * nll_base);
    s.sum_nll_nll_base += f64::from(nll * nll_base);
    let max = max + lse;
    let mut kld = 0f64;
    let (mut imax_base, mut pmax) = (0usize, 0f32);
    for (i, (&q, &l)) in base.iter().zip(logits).enumerate() {
        let p_log = scale * f32::from(q) + min_log_prob;
        if i == 0 || p_log > pmax {
            pmax = p_log;
            imax_base = i;
        }
        if p_log > -16.0 {
            kld += f64::from(p_log.exp() * (p_log - l + max));
        }
    }
    s.sum_kld += kld;
    s.sum_kld2 += kld * kld;
    s.count += 1;
    if imax == imax_base {
        s.n_same_top += 1;
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    s.sum_p_diff += f64::from(p_diff);
    let p_diff2 = f64::from(p_diff * p_diff);
    s.sum_p_diff2 += p_diff2;
    s.sum_p_diff4 += p_diff2 * p_diff2;
    s.max_p_diff = s.max_p_diff.max(f64::from(p_diff.abs()));
    (kld, p_diff)
}

/// llama-perplexity's `mean_and_uncertainty`: mean and its standard error (0 for ≤ 10 values).
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: u64) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let c = count as f64;
    let f = sum / c;
    let df = sum2 / c - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (c - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// llama-perplexity's `covariance` of the two means (0 for fewer than 10 values).
pub fn covariance(suma: f64, sumb: f64, sumab: f64, count: u64) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let c = count as f64;
    (sumab / c - (suma / c) * (sumb / c)) / (c - 1.0)
}

/// llama-perplexity's interpolated percentile of sorted `v` (f32 arithmetic).
pub fn percentile(v: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return v[0];
    }
    if fraction >= 1.0 {
        return v[v.len() - 1];
    }
    let p = fraction * (v.len() - 1) as f32;
    let ip = p as usize;
    let p = p - ip as f32;
    (1.0 - p) * v[ip] + p * v[(ip + 1).min(v.len() - 1)]
}

/// llama-perplexity's median of sorted `v`.
pub fn median(v: &[f32]) -> f32 {
    let n = v.len();
    if n.is_multiple_of(2) {
        0.5 * (v[n / 2] + v[n / 2 - 1])
    } else {
        v[n / 2]
    }
}

/// The perplexity and its error: `exp(mean nll)` and `ppl · sqrt(var / (count − 1))`, as in
/// llama-perplexity's "Final estimate" (the error is `None` when the variance is not positive).
pub fn ppl_estimate(nll: f64, nll2: f64, count: u64) -> (f64, Option<f64>) {
    let c = count as f64;
    let (m, m2) = (nll / c, nll2 / c);
    let ppl = m.exp();
    let var = m2 - m * m;
    (
        ppl,
        (var > 0.0 && count > 1).then(|| (var / (c - 1.0)).sqrt() * ppl),
    )
}

/// Which value of a sorted list a printed quantile is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantile {
    /// [`percentile`] at this fraction (1 is the maximum, 0 the minimum).
    At(f32),
    /// [`median`] (not the 0.5 percentile: llama-perplexity averages the two middle values).
    Median,
}

/// The KLD quantiles llama-perplexity prints, with its labels (padded as it prints them).
pub const KLD_QUANTILES: [(&str, Quantile); 11] = [
    ("Maximum", Quantile::At(1.0)),
    ("99.9%  ", Quantile::At(0.999)),
    ("99.0%  ", Quantile::At(0.990)),
    ("95.0%  ", Quantile::At(0.950)),
    ("90.0%  ", Quantile::At(0.900)),
    ("Median ", Quantile::Median),
    ("10.0%  ", Quantile::At(0.100)),
    (" 5.0%  ", Quantile::At(0.050)),
    (" 1.0%  ", Quantile::At(0.010)),
    (" 0.1%  ", Quantile::At(0.001)),
    ("Minimum", Quantile::At(0.0)),
];

/// The Δp quantiles llama-perplexity prints, with its labels.
pub const P_DIFF_QUANTILES: [(&str, Quantile); 13] = [
    ("Maximum", Quantile::At(1.0)),
    ("99.9%  ", Quantile::At(0.999)),
    ("99.0%  ", Quantile::At(0.990)),
    ("95.0%  ", Quantile::At(0.950)),
    ("90.0%  ", Quantile::At(0.900)),
    ("75.0%  ", Quantile::At(0.750)),
    ("Median ", Quantile::Median),
    ("25.0%  ", Quantile::At(0.250)),
    ("10.0%  ", Quantile::At(0.100)),
    (" 5.0%  ", Quantile::At(0.050)),
    (" 1.0%  ", Quantile::At(0.010)),
    (" 0.1%  ", Quantile::At(0.001)),
    ("Minimum", Quantile::At(0.0)),
];

fn quantiles<const N: usize>(sorted: &[f32], table: &[(&str, Quantile); N]) -> [f32; N] {
    table.map(|(_, q)| match q {
        Quantile::At(f) => percentile(sorted, f),
        Quantile::Median => median(sorted),
    })
}

/// Every statistic llama-perplexity prints at the end of `--kl-divergence`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlReport {
    /// Positions compared.
    pub count: u64,
    /// Mean PPL(Q) and its error.
    pub ppl: (f64, f64),
    /// Mean PPL(base) and its error.
    pub ppl_base: (f64, f64),
    /// Cor(ln PPL(Q), ln PPL(base)) as a fraction.
    pub cor: f64,
    /// Mean ln(PPL(Q)/PPL(base)) and its error.
    pub ln_ppl_ratio: (f64, f64),
    /// Mean PPL(Q)/PPL(base) and its error.
    pub ppl_ratio: (f64, f64),
    /// Mean PPL(Q) − PPL(base) and its error.
    pub ppl_diff: (f64, f64),
    /// Mean KLD and its error.
    pub kld: (f64, f64),
    /// KLD at [`KLD_QUANTILES`] (maximum, 99.9 %, …, median, …, 0.1 %, minimum).
    pub kld_quantiles: [f32; 11],
    /// Mean Δp and its error (fractions, printed as %).
    pub p_diff: (f64, f64),
    /// Δp at [`P_DIFF_QUANTILES`] (maximum, 99.9 %, …, median, …, 0.1 %, minimum).
    pub p_diff_quantiles: [f32; 13],
    /// RMS Δp and its error.
    pub p_diff_rms: (f64, f64),
    /// Same-top-token rate and its error.
    pub same_top: (f64, f64),
}

/// The running line llama-perplexity prints after each chunk of `--kl-divergence`:
/// PPL(Q), ln(PPL(Q)/PPL(base)), KLD, RMS Δp and same-top rate, each with its error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlRunning {
    /// PPL(Q) ± error.
    pub ppl: (f64, f64),
    /// ln(PPL(Q)/PPL(base)) ± error.
    pub ln_ppl_ratio: (f64, f64),
    /// KLD ± error.
    pub kld: (f64, f64),
    /// RMS Δp ± error (fractions).
    pub p_diff_rms: (f64, f64),
    /// Same top ± error (fractions).
    pub same_top: (f64, f64),
}

/// A value and its error.
type Est = (f64, f64);

/// ln PPL(Q), ln PPL(base), their difference (each ± error) and the covariance of the two.
fn ln_ratio(s: &KlSums) -> (Est, Est, Est, f64) {
    let lp = mean_and_uncertainty(s.sum_nll, s.sum_nll2, s.count);
    let lb = mean_and_uncertainty(s.sum_nll_base, s.sum_nll_base2, s.count);
    let cov = covariance(s.sum_nll, s.sum_nll_base, s.sum_nll_nll_base, s.count);
    let r = (lp.0 - lb.0, (lp.1 * lp.1 + lb.1 * lb.1 - 2.0 * cov).sqrt());
    (lp, lb, r, cov)
}

fn rms(s: &KlSums) -> (f64, f64) {
    let mse = mean_and_uncertainty(s.sum_p_diff2, s.sum_p_diff4, s.count);
    let v = mse.0.sqrt();
    (v, 0.5 / v * mse.1)
}

fn same_top(s: &KlSums) -> (f64, f64) {
    let p = s.n_same_top as f64 / s.count as f64;
    (p, (p * (1.0 - p) / (s.count as f64 - 1.0)).sqrt())
}

impl KlRunning {
    /// The running statistics of the sums so far.
    pub fn of(s: &KlSums) -> KlRunning {
        let (lp, _, r, _) = ln_ratio(s);
        let ppl = lp.0.exp();
        KlRunning {
            ppl: (ppl, ppl * lp.1),
            ln_ppl_ratio: r,
            kld: mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count),
            p_diff_rms: rms(s),
            same_top: same_top(s),
        }
    }
}

impl KlReport {
    /// The final statistics from the total sums and every position's KLD and Δp (any order;
    /// f32 values, as llama-perplexity keeps them). `None` when there are no positions.
    pub fn of(s: &KlSums, kld: &[f64], p_diff: &[f64]) -> Option<KlReport> {
        if s.count == 0 || kld.is_empty() || p_diff.is_empty() {
            return None;
        }
        let mut k: Vec<f32> = kld.iter().map(|&x| x as f32).collect();
        let mut p: Vec<f32> = p_diff.iter().map(|&x| x as f32).collect();
        k.sort_by(f32::total_cmp);
        p.sort_by(f32::total_cmp);
        let (lp, lb, r, cov) = ln_ratio(s);
        let (ppl, ppl_b) = (lp.0.exp(), lb.0.exp());
        let (ppl_u, ppl_bu) = (ppl * lp.1, ppl_b * lb.1);
        let ratio = r.0.exp();
        let pcov = ppl * ppl_b * cov;
        Some(KlReport {
            count: s.count,
            ppl: (ppl, ppl_u),
            ppl_base: (ppl_b, ppl_bu),
            cor: cov / (lp.1 * lb.1),
            ln_ppl_ratio: r,
            ppl_ratio: (ratio, ratio * r.1),
            ppl_diff: (
                ppl - ppl_b,
                (ppl_u * ppl_u + ppl_bu * ppl_bu - 2.0 * pcov).sqrt(),
            ),
            kld: mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count),
            kld_quantiles: quantiles(&k, &KLD_QUANTILES),
            p_diff: mean_and_uncertainty(s.sum_p_diff, s.sum_p_diff2, s.count),
            p_diff_quantiles: quantiles(&p, &P_DIFF_QUANTILES),
            p_diff_rms: rms(s),
            same_top: same_top(s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(2_654_435_761);
                x as f32 / u32::MAX as f32 * 12.0 - 4.0
            })
            .collect()
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (v, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (65534.5, 65534),
            (65535.0, 65535),
            (3.49, 3),
        ] {
            assert_eq!(nearest_int(v), want, "{v}");
        }
    }

    #[test]
    fn row_round_trip_and_nll_paths_agree() {
        let l = logits(7, 513);
        let mut row = vec![0u16; row_u16s(l.len())];
        assert_eq!(row.len(), 514 + 4);
        let a = quantize_row(&l, 17, &mut row);
        let b = nll(&l, 17);
        assert!((a - b).abs() < 1e-5, "{a} {b}");
        assert_eq!(row[row.len() - 1], 0, "padding stays zero");
        let (scale, minlp) = row_header(&row);
        assert!(scale > 0.0 && minlp < 0.0);
        // The model against its own base row: KL ≈ 0, same top, Δp ≈ 0.
        let mut s = KlSums::default();
        let (kld, dp) = kl_row(&l, &row, 17, &mut s);
        assert!(kld.abs() < 1e-3, "{kld}");
        assert!(dp.abs() < 1e-3, "{dp}");
        assert_eq!((s.count, s.n_same_top), (1, 1));
        // Another model: positive KL.
        let m = logits(99, 513);
        let (kld, _) = kl_row(&m, &row, 17, &mut s);
        assert!(kld > 0.1, "{kld}");
    }

    #[test]
    fn flat_logits_give_a_zero_scale_row() {
        let l = vec![1.0f32; 6];
        let mut row = vec![7u16; row_u16s(6)];
        let n = quantize_row(&l, 2, &mut row);
        assert!((n - 6f64.ln()).abs() < 1e-6);
        assert_eq!(row_header(&row).0, 0.0);
        assert!(row[4..].iter().all(|&x| x == 0));
    }

    #[test]
    fn statistics_match_llama_perplexity_definitions() {
        assert_eq!(mean_and_uncertainty(10.0, 30.0, 5), (2.0, 0.0));
        let (m, u) = mean_and_uncertainty(11.0, 13.0, 11);
        assert!((m - 1.0).abs() < 1e-12 && (u - (2.0f64 / 11.0 / 10.0).sqrt()).abs() < 1e-12);
        let v = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(median(&v), 2.5);
        assert_eq!(median(&v[..3]), 2.0);
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        let (p, e) = ppl_estimate(2.0, 5.0, 2);
        assert!((p - 1f64.exp()).abs() < 1e-12);
        assert!((e.unwrap() - (1.5f64).sqrt() * p).abs() < 1e-12);
    }
}
