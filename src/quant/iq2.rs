//! IQ2_XXS, IQ2_XS and IQ2_S: 2-bit-class i-quants. Eight magnitudes at a time come from a
//! codebook of 256/512/1024 points on a 3-level lattice ([`super::iq_grid`]); signs are stored
//! separately (7 bits with even parity for IQ2_XXS/IQ2_XS, 8 bits for IQ2_S); 4-bit scales per
//! 32 (IQ2_XXS) or 16 (IQ2_XS, IQ2_S) elements under one f16 scale per 256. Layouts:
//! docs/formats/iquants.md.
//!
//! The encoders port ggml's `quantize_row_iq2_{xxs,xs,s}_impl` (what `ggml_quantize_chunk`
//! runs): per group, flip the signs into positive magnitudes (IQ2_XXS/XS flip the least
//! important one back when the count of negatives is odd), search trial scales, snap each
//! 8-tuple to the codebook (its index, or the nearest of its precomputed neighbours), and keep
//! the weighted least-squares best. IQ2_XXS and IQ2_XS need importance weights (ggml asserts
//! them); IQ2_S uses `σ²/4 + x²` without. Same operation order as ggml, nothing fused.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::iq_grid::{iq2, Iq2, Lattice, Lookup};
use super::iq_tables::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, KSIGNS_IQ2XS};
use super::kutil::{nearest_int, GROUP_MAX_EPS};
use super::weighted::make_qp_quants;
use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

const QK_K: usize = 256;
const KMAXQ: i32 = 3;
const GROUP_MAX_EPS_IQ2_S: f32 = 1e-8;

/// Make the `8·G` values of a group non-negative: `xval = |x|`, and the sign bits per 8.
/// With `parity`, an odd count of negatives in an 8-tuple flips back the element with the
/// smallest `w·x²` (only 7 sign bits are stored; the eighth is implied by even parity) and the
/// stored bits are the low 7.
#[inline]
pub(crate) fn fold_signs<const N: usize, const G: usize>(
    xb: &[f32],
    weight: &[f32; N],
    parity: bool,
    xval: &mut [f32; N],
    signs: &mut [u8; G],
) {
    for k in 0..G {
        let mut nflip = 0;
        let mut s = 0u8;
        for i in 0..8 {
            let v = xb[8 * k + i];
            if v >= 0.0 {
                xval[8 * k + i] = v;
            } else {
                xval[8 * k + i] = -v;
                nflip += 1;
                s |= 1 << i;
            }
        }
        if parity {
            if nflip % 2 == 1 {
                let mut imin = 0;
                let mut min = weight[8 * k] * xb[8 * k] * xb[8 * k];
                for i in 1..8 {
                    let ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if ax < min {
                        min = ax;
                        imin = i;
                    }
                }
                xval[8 * k + imin] = -xval[8 * k + imin];
                s ^= 1 << imin;
            }
            s &= 127;
        }
        signs[k] = s;
    }
}

/// C's `MAX(a, b)` on floats: `a > b ? a : b`.
#[inline(always)]
pub(crate) fn cmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `Σ w·xval·q` and `Σ w·q²` with `q = 2l + 1`.
#[inline(always)]
pub(crate) fn sums(weight: &[f32], xval: &[f32], l: &[i8]) -> (f32, f32) {
    let mut sumqx = 0f32;
    let mut sumq2 = 0f32;
    for i in 0..l.len() {
        let w = weight[i];
        let q = f32::from(2 * l[i] + 1);
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// Snap the `D`-tuple `xval` at inverse scale `id` to levels `0..kmax` and form its index;
/// writes the levels to `l`.
#[inline(always)]
pub(crate) fn snap<const D: usize>(
    xval: &[f32],
    id: f32,
    kmax: i32,
    bits: u32,
    l: &mut [i8],
) -> usize {
    let mut u = 0usize;
    for i in 0..D {
        let q = nearest_int(0.5 * (id * xval[i] - 1.0)).clamp(0, kmax - 1);
        l[i] = q as i8;
        u |= (q as usize) << (bits as usize * i);
    }
    u
}

/// Snap, then move to the best neighbour when off the codebook. Returns (entry, was on it).
#[inline(always)]
pub(crate) fn snap_to_grid<const D: usize>(
    lat: &Lattice<D>,
    xval: &[f32],
    waux: &[f32],
    id: f32,
    scale: f32,
    kmax: i32,
    bits: u32,
    l: &mut [i8],
) -> (usize, bool) {
    let u = snap::<D>(xval, id, kmax, bits, l);
    match lat.lookup(u) {
        Lookup::On(j) => (j, true),
        Lookup::Near(c) => (lat.best_neighbour(c, xval, waux, scale, l), false),
    }
}

/// The codebook entry of final levels (ggml aborts when they are off the codebook, which its
/// own search never produces; so does this search, so the fallback is unreachable).
#[inline(always)]
pub(crate) fn entry_of<const D: usize>(lat: &Lattice<D>, l: &[i8], bits: u32) -> usize {
    let u: usize = (0..D).map(|i| (l[i] as usize) << (bits as usize * i)).sum();
    lat.entry(u).unwrap_or(0)
}

fn sub<const N: usize>(x: &[f32], i: usize) -> &[f32; N] {
    x[N * i..N * i + N].try_into().expect("block in range")
}

/// The 4-bit scale code of a block scale against `id = 1/d`.
#[inline(always)]
pub(crate) fn scale_code(id: f32, s: f32) -> u8 {
    nearest_int(0.5 * (id * s - 1.0)).clamp(0, 15) as u8
}

/// IQ2_XXS: `d f16; qs[32] u16` (66 bytes): per 32 elements one u32 of four codebook indices and
/// one u32 of four 7-bit sign groups plus the 4-bit scale in the top bits.
pub(crate) fn iq2_xxs_block(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 66]) {
    let lat = iq2(Iq2::Xxs);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    let mut q2 = [0u32; 16];
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    for ib in 0..8 {
        let xb: &[f32; 32] = sub(x, ib);
        let qwb: &[f32; 32] = sub(qw, ib);
        let mut weight = [0f32; 32];
        let mut waux = [0f32; 32];
        for i in 0..32 {
            weight[i] = qwb[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        for i in 0..32 {
            waux[i] = weight[i].sqrt();
        }
        let mut xval = [0f32; 32];
        let mut signs = [0u8; 4];
        fold_signs(xb, &weight, true, &mut xval, &mut signs);
        let mut max = xval[0];
        for i in 1..32 {
            max = cmax(max, xval[i]);
        }
        let mut l = [0i8; 32];
        if max < GROUP_MAX_EPS {
            continue;
        }
        let mut lp = [0u8; 32];
        let mut scale = make_qp_quants(KMAXQ + 1, &xval, &mut lp, &weight);
        for i in 0..32 {
            l[i] = lp[i] as i8;
        }
        let eff_max = scale * KMAXQ as f32;
        if eff_max <= 0.0 {
            continue;
        }
        let mut best = 0f32;
        let mut laux = [0i8; 32];
        for is in -6i32..=6 {
            let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.1) / eff_max;
            let this_scale = 1.0 / id;
            for k in 0..4 {
                let r = 8 * k..8 * k + 8;
                snap_to_grid::<8>(
                    lat,
                    &xval[r.clone()],
                    &waux[r.clone()],
                    id,
                    this_scale,
                    KMAXQ,
                    2,
                    &mut laux[r],
                );
            }
            let (sumqx, sumq2) = sums(&weight, &xval, &laux);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                l = laux;
            }
        }
        if scale > 0.0 {
            let id = 1.0 / scale;
            for k in 0..4 {
                let r = 8 * k..8 * k + 8;
                let (j, _) = snap_to_grid::<8>(
                    lat,
                    &xval[r.clone()],
                    &waux[r.clone()],
                    id,
                    scale,
                    KMAXQ,
                    2,
                    &mut l[r.clone()],
                );
                lat.set_levels(j, &mut l[r]);
            }
            let (sumqx, sumq2) = sums(&weight, &xval, &l);
            if sumq2 > 0.0 {
                scale = sumqx / sumq2;
            }
        }
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..4 {
            let j = entry_of::<8>(lat, &l[8 * k..8 * k + 8], 2);
            q2[2 * ib] |= (j as u32) << (8 * k);
            q2[2 * ib + 1] |= u32::from(signs[k]) << (7 * k);
        }
        scales[ib] = scale;
        max_scale = cmax(max_scale, scale);
    }
    y.fill(0);
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..8 {
        q2[2 * ib + 1] |= u32::from(scale_code(id, scales[ib])) << 28;
    }
    for (o, w) in y[2..].chunks_exact_mut(4).zip(q2) {
        o.copy_from_slice(&w.to_le_bytes());
    }
}

/// The shared search of IQ2_XS and IQ2_S over one 16-element group (two 8-tuples): returns the
/// scale and leaves the levels in `l`.
#[inline]
fn search16(
    lat: &Lattice<8>,
    xval: &[f32; 16],
    weight: &[f32; 16],
    waux: &[f32; 16],
    max: f32,
    l: &mut [i8; 16],
) -> f32 {
    let mut best = 0f32;
    let mut scale = max / (2 * KMAXQ - 1) as f32;
    let mut on_grid = [true; 2];
    let mut laux = [0i8; 16];
    for is in -9i32..=9 {
        let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.1) / max;
        let this_scale = 1.0 / id;
        let mut on_aux = [true; 2];
        for k in 0..2 {
            let r = 8 * k..8 * k + 8;
            on_aux[k] = snap_to_grid::<8>(
                lat,
                &xval[r.clone()],
                &waux[r.clone()],
                id,
                this_scale,
                KMAXQ,
                2,
                &mut laux[r],
            )
            .1;
        }
        let (sumqx, sumq2) = sums(weight, xval, &laux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            *l = laux;
            on_grid = on_aux;
        }
    }
    if on_grid.iter().any(|&o| !o) && scale > 0.0 {
        let id = 1.0 / scale;
        for k in 0..2 {
            if on_grid[k] {
                continue;
            }
            let r = 8 * k..8 * k + 8;
            snap_to_grid::<8>(
                lat,
                &xval[r.clone()],
                &waux[r.clone()],
                id,
                scale,
                KMAXQ,
                2,
                &mut l[r],
            );
        }
        let (sumqx, sumq2) = sums(weight, xval, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// IQ2_XS: `d f16; qs[32] u16; scales[8]` (74 bytes): per 8 elements a u16 of a 9-bit codebook
/// index and 7 sign bits; a 4-bit scale per 16 elements.
pub(crate) fn iq2_xs_block(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 74]) {
    let lat = iq2(Iq2::Xs);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    let mut q2 = [0u16; 32];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    for ib in 0..16 {
        let xb: &[f32; 16] = sub(x, ib);
        let qwb: &[f32; 16] = sub(qw, ib);
        let mut weight = [0f32; 16];
        let mut waux = [0f32; 16];
        for i in 0..16 {
            weight[i] = qwb[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        for i in 0..16 {
            waux[i] = weight[i].sqrt();
        }
        let mut xval = [0f32; 16];
        let mut signs = [0u8; 2];
        fold_signs(xb, &weight, true, &mut xval, &mut signs);
        let mut max = xval[0];
        for i in 1..16 {
            max = cmax(max, xval[i]);
        }
        let mut l = [0i8; 16];
        if max < GROUP_MAX_EPS {
            continue;
        }
        let mut scale = search16(lat, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..2 {
            let j = entry_of::<8>(lat, &l[8 * k..8 * k + 8], 2);
            q2[2 * ib + k] = j as u16 | (u16::from(signs[k]) << 9);
        }
        scales[ib] = scale;
        max_scale = cmax(max_scale, scale);
    }
    y.fill(0);
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..16 {
        let c = scale_code(id, scales[ib]);
        y[66 + ib / 2] |= if ib % 2 == 0 { c } else { c << 4 };
    }
    for (o, w) in y[2..66].chunks_exact_mut(2).zip(q2) {
        o.copy_from_slice(&w.to_le_bytes());
    }
}

/// IQ2_S: `d f16; qs[64]; qh[8]; scales[8]` (82 bytes): per 8 elements the low byte of a 10-bit
/// codebook index (`qs[0..32]`) and 8 sign bits (`qs[32..64]`); 2 high index bits each in `qh`;
/// a 4-bit scale per 16 elements. Works without importance weights.
pub(crate) fn iq2_s_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut [u8; 82]) {
    let lat = iq2(Iq2::S);
    y.fill(0);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    for ib in 0..16 {
        let xb: &[f32; 16] = sub(x, ib);
        let mut weight = [0f32; 16];
        let mut waux = [0f32; 16];
        match qw {
            Some(q) => {
                let qwb: &[f32; 16] = sub(q, ib);
                for i in 0..16 {
                    weight[i] = qwb[i] * (sigma2 + xb[i] * xb[i]).sqrt();
                }
            }
            None => {
                for i in 0..16 {
                    weight[i] = 0.25 * sigma2 + xb[i] * xb[i];
                }
            }
        }
        for i in 0..16 {
            waux[i] = weight[i].sqrt();
        }
        let mut xval = [0f32; 16];
        let mut signs = [0u8; 2];
        fold_signs(xb, &weight, false, &mut xval, &mut signs);
        let mut max = xval[0];
        for i in 1..16 {
            max = cmax(max, xval[i]);
        }
        let mut l = [0i8; 16];
        if max < GROUP_MAX_EPS_IQ2_S {
            continue;
        }
        let mut scale = search16(lat, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s;
            }
        }
        for k in 0..2 {
            let j = entry_of::<8>(lat, &l[8 * k..8 * k + 8], 2);
            let i8_ = 2 * ib + k;
            y[2 + i8_] = (j & 255) as u8;
            y[66 + i8_ / 4] |= ((j >> 8) as u8) << (2 * (i8_ % 4));
            y[2 + 32 + i8_] = signs[k];
        }
        scales[ib] = scale;
        max_scale = cmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y[..2].copy_from_slice(&f32_to_f16_bits(d * 0.9875).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..16 {
        let c = scale_code(id, scales[ib]);
        y[74 + ib / 2] |= if ib % 2 == 0 { c } else { c << 4 };
    }
}

#[inline(always)]
fn signed(v: f32, signs: u8, j: usize) -> f32 {
    if signs & (1 << j) != 0 {
        -v
    } else {
        v
    }
}

#[inline(always)]
fn mag(e: u64, j: usize) -> f32 {
    f32::from((e >> (8 * j)) as u8)
}

/// Decode IQ2_XXS.
pub(crate) fn iq2_xxs_dequant(y: &[u8; 66], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for ib in 0..8 {
        let q = &y[2 + 8 * ib..2 + 8 * ib + 8];
        let a1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
        let db = d * (0.5 + (a1 >> 28) as f32) * 0.25;
        for l in 0..4 {
            let e = IQ2XXS_GRID[usize::from(q[l])];
            let signs = KSIGNS_IQ2XS[((a1 >> (7 * l)) & 127) as usize];
            for j in 0..8 {
                out[32 * ib + 8 * l + j] = signed(db * mag(e, j), signs, j);
            }
        }
    }
}

/// Decode IQ2_XS.
pub(crate) fn iq2_xs_dequant(y: &[u8; 74], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for ib in 0..8 {
        let sc = y[66 + ib];
        let db = [
            d * (0.5 + f32::from(sc & 0xF)) * 0.25,
            d * (0.5 + f32::from(sc >> 4)) * 0.25,
        ];
        for l in 0..4 {
            let at = 2 + 2 * (4 * ib + l);
            let q = u16::from_le_bytes([y[at], y[at + 1]]);
            let e = IQ2XS_GRID[usize::from(q & 511)];
            let signs = KSIGNS_IQ2XS[usize::from(q >> 9)];
            for j in 0..8 {
                out[32 * ib + 8 * l + j] = signed(db[l / 2] * mag(e, j), signs, j);
            }
        }
    }
}

/// Decode IQ2_S.
pub(crate) fn iq2_s_dequant(y: &[u8; 82], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for ib in 0..8 {
        let sc = y[74 + ib];
        let db = [
            d * (0.5 + f32::from(sc & 0xF)) * 0.25,
            d * (0.5 + f32::from(sc >> 4)) * 0.25,
        ];
        let qh = usize::from(y[66 + ib]);
        for l in 0..4 {
            let idx = usize::from(y[2 + 4 * ib + l]) | ((qh << (8 - 2 * l)) & 0x300);
            let e = IQ2S_GRID[idx];
            let signs = y[34 + 4 * ib + l];
            for j in 0..8 {
                out[32 * ib + 8 * l + j] = signed(db[l / 2] * mag(e, j), signs, j);
            }
        }
    }
}
