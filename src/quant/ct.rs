//! compressed-tensors `pack-quantized` weights (symmetric int4/int8, group strategy), the
//! int4/int8 safetensors that vLLM and transformers load (output-formats.md §7.1, §7.4).
//!
//! Rules followed (compressed-tensors `52792be0`):
//! - per group of `G` consecutive input elements: min/max widened to include 0,
//!   `scale = max(|min|, |max|) / ((2^b − 1)/2)` (int4: amax/7.5, int8: amax/127.5), clamped to
//!   at least `f32::EPSILON`;
//! - `q = round_half_even(clamp(x/scale, −2^(b−1), 2^(b−1)−1))`;
//! - packing: `q + 2^(b−1)` as unsigned, element k of a row in word `k / (32/b)` at bit
//!   `b·(k mod 32/b)` (first element in the lowest bits), rows padded with zero bits to a
//!   multiple of `32/b` elements; words are i32 (the `weight_packed` dtype).
//!
//! grokit's decision on scale precision: the writer stores `weight_scale` as **BF16**, so the
//! scale is rounded to bf16 *before* `q` is computed, and the returned f32 scales are exactly
//! those bf16 values. What a loader reconstructs, `q·bf16(scale)`, is then the value the
//! encoder optimised for (otherwise every q would be chosen against a scale the loader never
//! sees). `x/scale` is computed in f32 (the input rows are f32). Rounding is to nearest, as
//! compressed-tensors does when it computes the scale in a bf16 model's dtype; when it rounds
//! down (by at most 2^-8 relative) the group's extreme element may clamp, so the worst-case
//! error is 0.53·scale instead of 0.5·scale.
//!
//! The lossless int8 path ([`ct_int8_from_grok`]) keeps the release's int8 values and bf16
//! scales verbatim: the release's dequantization is `q·s`, compressed-tensors' is `q·scale`, so
//! storing `scale = s` and `q` unchanged is exact. `q + 128` fits the 8-bit field for every
//! int8 including −128, so no value is rejected.

use super::QuantError;
use crate::base::float::round_bf16;

fn check_bits(bits: u32, what: &str) -> Result<usize, QuantError> {
    match bits {
        4 => Ok(8),
        8 => Ok(4),
        _ => Err(QuantError::Unsupported {
            what: format!("{what}: {bits}-bit packing"),
        }),
    }
}

fn check_group(group: usize, len: usize, what: &str) -> Result<usize, QuantError> {
    if group == 0 || !len.is_multiple_of(group) {
        return Err(QuantError::NotBlockAligned {
            what: what.to_string(),
            len: len as u64,
            block: group as u64,
        });
    }
    Ok(len / group)
}

/// Number of i32 words a row of `n` elements packs into at `bits` bits.
pub fn packed_words(bits: u32, n: usize) -> Result<usize, QuantError> {
    Ok(n.div_ceil(check_bits(bits, "compressed-tensors")?))
}

/// Pack one row of signed levels (already in range) into i32 words, appending to `packed`.
fn pack_row(
    bits: u32,
    per_word: usize,
    q: impl ExactSizeIterator<Item = i32>,
    packed: &mut Vec<i32>,
) {
    let offset = 1i32 << (bits - 1);
    let mask = (1u32 << bits) - 1;
    let mut word = 0u32;
    let mut k = 0usize;
    packed.reserve(q.len().div_ceil(per_word));
    for v in q {
        let u = ((v + offset) as u32) & mask;
        word |= u << (bits as usize * k);
        k += 1;
        if k == per_word {
            packed.push(word as i32);
            word = 0;
            k = 0;
        }
    }
    if k != 0 {
        packed.push(word as i32);
    }
}

/// Quantize one row `x` (length a multiple of `group`) to `bits` (4 or 8) symmetric
/// group-wise levels: appends the packed words (`ceil(len / (32/bits))`) to `packed` and one
/// scale per group (bf16-representable f32, see the module docs) to `scales`.
pub fn ct_quantize_row(
    bits: u32,
    group: usize,
    x: &[f32],
    packed: &mut Vec<i32>,
    scales: &mut Vec<f32>,
) -> Result<(), QuantError> {
    let per_word = check_bits(bits, "ct quantize")?;
    let n_groups = check_group(group, x.len(), "ct quantize")?;
    let qmax = (1i32 << (bits - 1)) - 1;
    let qmin = -(1i32 << (bits - 1));
    let half_range = ((1u32 << bits) - 1) as f32 / 2.0;
    let first_scale = scales.len();
    scales.reserve(n_groups);
    for g in x.chunks_exact(group) {
        let mut min = 0f32;
        let mut max = 0f32;
        for &v in g {
            min = min.min(v);
            max = max.max(v);
        }
        let amax = (-min).max(max);
        let s = (amax / half_range).max(f32::EPSILON);
        scales.push(round_bf16(s).max(f32::EPSILON));
    }
    let sc = &scales[first_scale..];
    let levels = x.iter().enumerate().map(|(k, &v)| {
        let s = sc[k / group];
        (v / s).clamp(qmin as f32, qmax as f32).round_ties_even() as i32
    });
    pack_row(bits, per_word, levels, packed);
    Ok(())
}

/// Trial divisors of the weighted scale search, relative to the plain `(2^b − 1)/2`: from
/// 8 % larger scales (less clipping) to 22 % smaller ones (finer steps, the extremes clip).
const SEARCH_STEPS: std::ops::RangeInclusive<i32> = -4..=12;

/// [`ct_quantize_row`] with importance weights `qw` (one per element of `x`, as from an
/// importance matrix): per group, the plain scale and trial scales around it (each rounded to
/// bf16, as stored) are scored by the weighted squared error `Σ w·(x − q·s)²` of the levels
/// they give, and the best is kept (the plain scale on ties). The format is unchanged: a loader
/// still computes `q·scale`. Without weights this is [`ct_quantize_row`].
pub fn ct_quantize_row_weighted(
    bits: u32,
    group: usize,
    x: &[f32],
    qw: Option<&[f32]>,
    packed: &mut Vec<i32>,
    scales: &mut Vec<f32>,
) -> Result<(), QuantError> {
    let Some(w) = qw else {
        return ct_quantize_row(bits, group, x, packed, scales);
    };
    if w.len() != x.len() {
        return Err(QuantError::LengthMismatch {
            what: "ct quantize: importance weights".to_string(),
            expected: x.len() as u64,
            got: w.len() as u64,
        });
    }
    let per_word = check_bits(bits, "ct quantize")?;
    let n_groups = check_group(group, x.len(), "ct quantize")?;
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let qmin = -(1i32 << (bits - 1)) as f32;
    let half_range = ((1u32 << bits) - 1) as f32 / 2.0;
    let first_scale = scales.len();
    scales.reserve(n_groups);
    let err = |g: &[f32], wg: &[f32], s: f32| -> f64 {
        let mut e = 0f64;
        for (&v, &wi) in g.iter().zip(wg) {
            let q = (v / s).clamp(qmin, qmax).round_ties_even();
            let d = f64::from(v - q * s);
            e += f64::from(wi) * d * d;
        }
        e
    };
    for (g, wg) in x.chunks_exact(group).zip(w.chunks_exact(group)) {
        let amax = g.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let plain = round_bf16((amax / half_range).max(f32::EPSILON)).max(f32::EPSILON);
        let mut best = (err(g, wg, plain), plain);
        for i in SEARCH_STEPS {
            let s = round_bf16(
                (amax / (half_range + 0.1 * half_range / 7.5 * i as f32)).max(f32::EPSILON),
            )
            .max(f32::EPSILON);
            let e = err(g, wg, s);
            if e < best.0 {
                best = (e, s);
            }
        }
        scales.push(best.1);
    }
    let sc = &scales[first_scale..];
    let levels = x
        .iter()
        .enumerate()
        .map(|(k, &v)| (v / sc[k / group]).clamp(qmin, qmax).round_ties_even() as i32);
    pack_row(bits, per_word, levels, packed);
    Ok(())
}

/// Lossless W8A16 from the release's int8: packs `q` verbatim (8-bit, +128 offset) and appends
/// `scales` (one per `group` elements, normally the release's bf16 scales widened to f32 — they
/// must be bf16-exact for the BF16 `weight_scale` to stay lossless, which the release's are).
pub fn ct_int8_from_grok(
    q: &[i8],
    scales_in: &[f32],
    group: usize,
    packed: &mut Vec<i32>,
    scales: &mut Vec<f32>,
) -> Result<(), QuantError> {
    let n_groups = check_group(group, q.len(), "ct int8 from grok")?;
    if scales_in.len() != n_groups {
        return Err(QuantError::LengthMismatch {
            what: "ct int8 from grok: scales".to_string(),
            expected: n_groups as u64,
            got: scales_in.len() as u64,
        });
    }
    pack_row(8, 4, q.iter().map(|&v| i32::from(v)), packed);
    scales.extend_from_slice(scales_in);
    Ok(())
}

/// Decode one packed row of `out.len()` elements: `x = q·scale`.
pub fn ct_dequantize_row(
    bits: u32,
    group: usize,
    packed: &[i32],
    scales: &[f32],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let per_word = check_bits(bits, "ct dequantize")?;
    let n = out.len();
    let n_groups = check_group(group, n, "ct dequantize")?;
    let words = n.div_ceil(per_word);
    if packed.len() != words {
        return Err(QuantError::LengthMismatch {
            what: "ct dequantize: packed words".to_string(),
            expected: words as u64,
            got: packed.len() as u64,
        });
    }
    if scales.len() != n_groups {
        return Err(QuantError::LengthMismatch {
            what: "ct dequantize: scales".to_string(),
            expected: n_groups as u64,
            got: scales.len() as u64,
        });
    }
    let offset = 1i32 << (bits - 1);
    let mask = (1u32 << bits) - 1;
    for (k, o) in out.iter_mut().enumerate() {
        let w = packed[k / per_word] as u32;
        let u = (w >> (bits as usize * (k % per_word))) & mask;
        *o = (u as i32 - offset) as f32 * scales[k / group];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_packing_order_and_values() {
        // One group of 8: amax 7.5 -> scale 1.0 (bf16-exact).
        let x = [-7.5f32, -1.0, 0.0, 1.0, 2.5, 3.5, 7.5, 0.4];
        let mut p = Vec::new();
        let mut s = Vec::new();
        ct_quantize_row(4, 8, &x, &mut p, &mut s).unwrap();
        assert_eq!(s, vec![1.0]);
        // q = clamp then round-half-even: -7.5 -> -8, -1, 0, 1, 2.5 -> 2, 3.5 -> 4, 7.5 -> 7, 0.4 -> 0
        let q = [-8, -1, 0, 1, 2, 4, 7, 0];
        let mut want = 0u32;
        for (k, &v) in q.iter().enumerate() {
            want |= ((v + 8) as u32) << (4 * k);
        }
        assert_eq!(p, vec![want as i32]);
        let mut y = [0f32; 8];
        ct_dequantize_row(4, 8, &p, &s, &mut y).unwrap();
        assert_eq!(y, [-8.0, -1.0, 0.0, 1.0, 2.0, 4.0, 7.0, 0.0]);
    }

    #[test]
    fn padding_and_int8() {
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
        let mut p = Vec::new();
        let mut s = Vec::new();
        ct_quantize_row(4, 12, &x, &mut p, &mut s).unwrap();
        assert_eq!(p.len(), 2); // 12 nibbles -> 2 words, the second half-padded
        assert_eq!(p[1] as u32 >> 16, 0);
        let mut p8 = Vec::new();
        let mut s8 = Vec::new();
        ct_quantize_row(8, 6, &x, &mut p8, &mut s8).unwrap();
        assert_eq!(p8.len(), 3);
        let mut y = vec![0f32; 12];
        ct_dequantize_row(8, 6, &p8, &s8, &mut y).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= s8[0] * 0.5 + 1e-6);
        }
        assert!(ct_quantize_row(3, 6, &x, &mut p8, &mut s8).is_err());
        assert!(ct_quantize_row(4, 5, &x, &mut p8, &mut s8).is_err());
    }

    #[test]
    fn scales_are_bf16_and_zero_groups_clamp() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i as f32) * 0.731).sin() * 0.37)
            .collect();
        let mut p = Vec::new();
        let mut s = Vec::new();
        let mut x2 = x.clone();
        x2[128..].fill(0.0);
        ct_quantize_row(4, 128, &x2, &mut p, &mut s).unwrap();
        assert_eq!(s[1], f32::EPSILON.max(round_bf16(f32::EPSILON)));
        assert_eq!(round_bf16(s[0]), s[0]);
        let mut y = vec![0f32; 256];
        ct_dequantize_row(4, 128, &p, &s, &mut y).unwrap();
        assert!(y[128..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn grok_int8_is_lossless() {
        let q: Vec<i8> = (0..256).map(|i| (i - 128) as i8).collect();
        let sc = [0.015625f32, 0.0078125];
        let mut p = Vec::new();
        let mut s = Vec::new();
        ct_int8_from_grok(&q, &sc, 128, &mut p, &mut s).unwrap();
        let mut y = vec![0f32; 256];
        ct_dequantize_row(8, 128, &p, &s, &mut y).unwrap();
        for (k, (&a, &b)) in y.iter().zip(&q).enumerate() {
            assert_eq!(a, f32::from(b) * sc[k / 128]);
        }
        assert!(ct_int8_from_grok(&q, &sc[..1], 128, &mut p, &mut s).is_err());
    }
}
