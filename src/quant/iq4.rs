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
#[inline(always)]
pub(crate) fn best_index(x: f32) -> u8 {
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

/// Fit one 32-element block: indices into `l`, returns the block's scale (0 for an all-zero
/// block, whose indices are left for the caller to recompute).
#[inline]
fn fit_block(xb: &[f32; 32], qw: Option<&[f32; 32]>, sigma2: f32, l: &mut [u8; 32]) -> f32 {
    let mut weight = [0f32; 32];
    match qw {
        Some(q) => {
            for j in 0..32 {
                weight[j] = q[j] * (sigma2 + xb[j] * xb[j]).sqrt();
            }
        }
        None => {
            for j in 0..32 {
                weight[j] = xb[j] * xb[j];
            }
        }
    }
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in xb {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let mut d = -max / v0;
    let mut id = 1.0 / d;
    let mut sumqx = 0f32;
    let mut sumq2 = 0f32;
    for j in 0..32 {
        let k = best_index(id * xb[j]);
        l[j] = k;
        let q = f32::from(KVALUES_IQ4NL[k as usize]);
        let w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        id = (itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max;
        sumqx = 0.0;
        sumq2 = 0.0;
        for j in 0..32 {
            let q = f32::from(KVALUES_IQ4NL[best_index(id * xb[j]) as usize]);
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
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

/// IQ4_NL: `d f16; qs[16]` (18 bytes). `qw`: the block's 32 importance weights.
pub(crate) fn iq4_nl_block(x: &[f32; 32], qw: Option<&[f32; 32]>, y: &mut [u8; 18]) {
    let mut sigma2 = 0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / 32.0;
    let mut l = [0u8; 32];
    let d = fit_block(x, qw, sigma2, &mut l);
    y[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..32 {
        l[j] = best_index(id * x[j]);
    }
    pack_nibbles(&l, &mut y[2..]);
}

/// IQ4_XS: `d f16; scales_h u16; scales_l[4]; qs[128]` (136 bytes). `qw`: the super-block's
/// 256 importance weights.
pub(crate) fn iq4_xs_block(x: &[f32; 256], qw: Option<&[f32; 256]>, y: &mut [u8; 136]) {
    let mut sigma2 = 0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / 256.0;
    let mut l = [0u8; 256];
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    let mut amax_scale = 0f32;
    for ib in 0..8 {
        let lb: &mut [u8; 32] = (&mut l[32 * ib..32 * ib + 32]).try_into().expect("block");
        let d = fit_block(sub(x, ib), qw.map(|q| sub(q, ib)), sigma2, lb);
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
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
    }
}
