//! IQ4_NL and IQ4_XS: 4-bit indices into a non-linear 16-level codebook
//! ([`KVALUES_IQ4NL`]), one f16 scale per 32 (IQ4_NL) or per 256 elements with 6-bit sub-scales
//! per 32 (IQ4_XS). Layouts: docs/formats/iquants.md.
//!
//! The encoder is a port of what ggml's `quantize_iq4_nl`/`quantize_iq4_xs` do (the path
//! `ggml_quantize_chunk`, hence llama-quantize, takes, with or without an importance matrix):
//! per 32-block, weights `qw·sqrt(σ² + x²)` (with a matrix; σ² = 2·mean(x²) over the
//! super-block) or `x²`, a first scale `-max/-127`, then 15 trial inverse scales
//! `(t − 127)/max` for t in −7..=7, keeping the weighted least-squares best. IQ4_XS then
//! quantizes each block's scale to 6 bits against `d = −max_scale/32` and re-picks the indices.
//! Sums run left to right in f32, products keep C's operand order (`w*q*x` is `(w*q)*x`), and
//! nothing is fused, so the bytes equal ggml's.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::iq_tables::KVALUES_IQ4NL;
use super::kutil::{nearest_int, GROUP_MAX_EPS};
use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

/// Trial scales on each side of the first guess.
const NTRY: i32 = 7;

/// ggml's `best_index_int8` over the 16 levels: the nearest level, the upper one on a tie.
/// Branch-free: for `v0 < x < v15` its binary search ends at the largest `k` with
/// `v[k] <= x` (the levels are strictly increasing, so that `k` does not depend on the search
/// path), then picks `k` or `k + 1` with ggml's exact float comparison. `best_index_ref` is
/// the search as ggml writes it; the test checks they agree.
#[inline(always)]
pub(crate) fn best_index(x: f32) -> u8 {
    let v = &KVALUES_F;
    if x.is_nan() {
        return 15; // ggml's search runs to its last pair and keeps the upper one
    }
    if x <= v[0] {
        return 0;
    }
    if x >= v[15] {
        return 15;
    }
    let mut k = 0usize;
    for &t in &v[1..15] {
        k += usize::from(t <= x);
    }
    if x - v[k] < v[k + 1] - x {
        k as u8
    } else {
        (k + 1) as u8
    }
}

/// The levels as f32 (each exact).
const KVALUES_F: [f32; 16] = {
    let mut o = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        o[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    o
};

/// ggml's `best_index_int8` as written (binary search), the reference for [`best_index`].
#[cfg(test)]
fn best_index_ref(x: f32) -> u8 {
    let v = &KVALUES_IQ4NL;
    if x <= f32::from(v[0]) {
        return 0;
    }
    if x >= f32::from(v[15]) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < f32::from(v[mav]) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - f32::from(v[mu - 1]) < f32::from(v[mu]) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// The level nearest `x` (what `KVALUES_IQ4NL[best_index(x)]` gives), branch-free so lanes
/// vectorize: the largest level `<= x` and the smallest `> x`, then ggml's comparison.
#[inline(always)]
fn best_value(x: f32) -> f32 {
    let v = &KVALUES_F;
    let mut lo = v[0];
    let mut hi = v[15];
    for k in 1..15 {
        lo = if v[k] <= x { v[k] } else { lo };
        hi = if v[15 - k] > x { v[15 - k] } else { hi };
    }
    let q = if x - lo < hi - x { lo } else { hi };
    if x.is_nan() {
        v[15]
    } else {
        q
    }
}

/// Fit `L` 32-element blocks at once (lane k = block k; see `k_lanes` for why lanes): per lane
/// the weights `qw·sqrt(σ² + x²)` or `x²`, the first scale `-max/-127`, then the 15 trial
/// inverse scales, keeping the weighted least-squares best. Returns each block's scale (0 for
/// an all-zero block). The per-lane operations are exactly the scalar sequence of ggml's
/// `quantize_row_iq4_nl_impl`.
#[inline]
fn fit_lanes<const L: usize>(
    xt: &[[f32; L]; 32],
    qw: Option<&[[f32; L]; 32]>,
    sigma2: &[f32; L],
) -> [f32; L] {
    let mut w = [[0f32; L]; 32];
    for j in 0..32 {
        for k in 0..L {
            let x = xt[j][k];
            w[j][k] = match qw {
                Some(q) => q[j][k] * (sigma2[k] + x * x).sqrt(),
                None => x * x,
            };
        }
    }
    let mut amax = [0f32; L];
    let mut max = [0f32; L];
    for row in xt {
        for k in 0..L {
            let ax = row[k].abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = row[k];
            }
        }
    }
    let v0 = KVALUES_F[0];
    let sums = |id: &[f32; L]| {
        let mut sumqx = [0f32; L];
        let mut sumq2 = [0f32; L];
        for j in 0..32 {
            for k in 0..L {
                let q = best_value(id[k] * xt[j][k]);
                let wq = w[j][k] * q;
                sumqx[k] += wq * xt[j][k];
                sumq2[k] += wq * q;
            }
        }
        (sumqx, sumq2)
    };
    let mut id = [0f32; L];
    for k in 0..L {
        id[k] = 1.0 / (-max[k] / v0);
    }
    let (sumqx, sumq2) = sums(&id);
    let mut d = [0f32; L];
    let mut best = [0f32; L];
    for k in 0..L {
        d[k] = if sumq2[k] > 0.0 {
            sumqx[k] / sumq2[k]
        } else {
            0.0
        };
        best[k] = d[k] * sumqx[k];
    }
    for itry in -NTRY..=NTRY {
        let t = (itry + i32::from(KVALUES_IQ4NL[0])) as f32;
        for k in 0..L {
            id[k] = t / max[k];
        }
        let (sumqx, sumq2) = sums(&id);
        for k in 0..L {
            if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best[k] * sumq2[k] {
                d[k] = sumqx[k] / sumq2[k];
                best[k] = d[k] * sumqx[k];
            }
        }
    }
    for k in 0..L {
        if amax[k] < GROUP_MAX_EPS {
            d[k] = 0.0;
        }
    }
    d
}

#[inline]
fn pack_nibbles(l: &[u8], qs: &mut [u8]) {
    for (lb, qb) in l.chunks_exact(32).zip(qs.chunks_exact_mut(16)) {
        for j in 0..16 {
            qb[j] = lb[j] | (lb[16 + j] << 4);
        }
    }
}

fn sub<const N: usize>(x: &[f32], i: usize) -> &[f32; N] {
    x[N * i..N * i + N].try_into().expect("block in range")
}

#[inline]
fn sq_sum(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// IQ4_NL: `d f16; qs[16]` (18 bytes) per 32 elements, for a run of whole blocks `x` (and their
/// importance weights), eight blocks at a time as lanes.
pub(crate) fn iq4_nl_run(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let (xs, _) = x.as_chunks::<32>();
    let start = out.len();
    out.resize(start + 18 * xs.len(), 0);
    let mut i = 0;
    while i < xs.len() {
        let n = (xs.len() - i).min(8);
        if n == 8 {
            nl_lanes::<8>(
                &xs[i..i + 8],
                qw.map(|w| &w[32 * i..32 * (i + 8)]),
                &mut out[start + 18 * i..],
            );
        } else {
            for k in 0..n {
                let j = i + k;
                nl_lanes::<1>(
                    &xs[j..j + 1],
                    qw.map(|w| &w[32 * j..32 * (j + 1)]),
                    &mut out[start + 18 * j..],
                );
            }
        }
        i += n;
    }
}

fn nl_lanes<const L: usize>(xs: &[[f32; 32]], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut xt = [[0f32; L]; 32];
    let mut wt = [[0f32; L]; 32];
    let mut sigma2 = [0f32; L];
    for k in 0..L {
        sigma2[k] = sq_sum(&xs[k]) * (2.0 / 32.0);
        for j in 0..32 {
            xt[j][k] = xs[k][j];
            if let Some(w) = qw {
                wt[j][k] = w[32 * k + j];
            }
        }
    }
    let d = fit_lanes::<L>(&xt, qw.map(|_| &wt), &sigma2);
    for k in 0..L {
        let yb = &mut y[18 * k..18 * k + 18];
        yb[..2].copy_from_slice(&f32_to_f16_bits(d[k]).to_le_bytes());
        let id = if d[k] != 0.0 { 1.0 / d[k] } else { 0.0 };
        let mut l = [0u8; 32];
        for j in 0..32 {
            l[j] = best_index(id * xs[k][j]);
        }
        pack_nibbles(&l, &mut yb[2..]);
    }
}

/// IQ4_XS: `d f16; scales_h u16; scales_l[4]; qs[128]` (136 bytes). `qw`: the super-block's
/// 256 importance weights.
pub(crate) fn iq4_xs_block(x: &[f32; 256], qw: Option<&[f32; 256]>, y: &mut [u8; 136]) {
    let sigma2 = sq_sum(x) * (2.0 / 256.0);
    let mut xt = [[0f32; 8]; 32];
    let mut wt = [[0f32; 8]; 32];
    for k in 0..8 {
        for j in 0..32 {
            xt[j][k] = x[32 * k + j];
            if let Some(w) = qw {
                wt[j][k] = w[32 * k + j];
            }
        }
    }
    let scales = fit_lanes::<8>(&xt, qw.map(|_| &wt), &[sigma2; 8]);
    let mut max_scale = 0f32;
    let mut amax_scale = 0f32;
    for &d in &scales {
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let mut l = [0u8; 256];
    let d = -max_scale / 32.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut scales_h = 0u16;
    let mut scales_l = [0u8; 4];
    for ib in 0..8 {
        let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
        let dl = d * ls as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let xb: &[f32; 32] = sub(x, ib);
        for j in 0..32 {
            l[32 * ib + j] = best_index(idl * xb[j]);
        }
        let u = (ls + 32) as u16;
        if ib % 2 == 0 {
            scales_l[ib / 2] = (u & 0xF) as u8;
        } else {
            scales_l[ib / 2] |= ((u & 0xF) as u8) << 4;
        }
        scales_h |= (u >> 4) << (2 * ib);
    }
    y[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    y[2..4].copy_from_slice(&scales_h.to_le_bytes());
    y[4..8].copy_from_slice(&scales_l);
    pack_nibbles(&l, &mut y[8..]);
}

/// Decode IQ4_NL.
pub(crate) fn iq4_nl_dequant(y: &[u8; 18], out: &mut [f32; 32]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for j in 0..16 {
        let b = y[2 + j];
        out[j] = d * f32::from(KVALUES_IQ4NL[usize::from(b & 0xF)]);
        out[j + 16] = d * f32::from(KVALUES_IQ4NL[usize::from(b >> 4)]);
    }
}

/// Decode IQ4_XS.
pub(crate) fn iq4_xs_dequant(y: &[u8; 136], out: &mut [f32; 256]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    let scales_h = u16::from_le_bytes([y[2], y[3]]);
    for ib in 0..8 {
        let ls = i32::from((y[4 + ib / 2] >> (4 * (ib % 2))) & 0xF)
            | (i32::from((scales_h >> (2 * ib)) & 3) << 4);
        let dl = d * (ls - 32) as f32;
        let qs = &y[8 + 16 * ib..8 + 16 * ib + 16];
        for j in 0..16 {
            out[32 * ib + j] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0xF)]);
            out[32 * ib + j + 16] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_is_nearest_level_upper_on_ties() {
        let v = KVALUES_IQ4NL;
        for k in 0..16 {
            assert_eq!(best_index(f32::from(v[k])), k as u8);
        }
        assert_eq!(best_index(-1000.0), 0);
        assert_eq!(best_index(1000.0), 15);
        // midpoint of -10 and 1 is -4.5: a tie goes to the upper level (strict <)
        assert_eq!(best_index(-4.5), 8);
        assert_eq!(best_index(-4.6), 7);
        assert_eq!(best_index(f32::NAN), best_index_ref(f32::NAN));
        // every level, every midpoint and its float neighbours, and a dense random sweep
        let mut xs: Vec<f32> = Vec::new();
        for k in 0..16 {
            let a = f32::from(v[k]);
            xs.extend([a, a.next_up(), a.next_down()]);
            if k < 15 {
                let m = (a + f32::from(v[k + 1])) / 2.0;
                xs.extend([m, m.next_up(), m.next_down()]);
            }
        }
        let mut s: u32 = 7;
        for _ in 0..200_000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            xs.push((s >> 8) as f32 / 8_388_608.0 * 300.0 - 150.0);
        }
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-30, -1e-30]);
        for x in xs {
            assert_eq!(best_index(x), best_index_ref(x), "{x}");
        }
    }
}
