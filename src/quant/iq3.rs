//! IQ3_XXS and IQ3_S: 3-bit-class i-quants. Four magnitudes at a time come from a codebook of
//! 256/512 points on an 8-level lattice ([`super::iq_grid`]); signs per 8 elements (7 bits with
//! even parity for IQ3_XXS, 8 bits for IQ3_S); a 4-bit scale per 32 elements under one f16
//! scale per 256. Layouts: docs/formats/iquants.md.
//!
//! The encoders port ggml's `quantize_row_iq3_xxs_impl` (grid 256) and `quantize_row_iq3_s_impl`
//! (grid 512, block 32), what `ggml_quantize_chunk` runs: weights `qw·sqrt(σ² + x²)` with a
//! matrix (σ² = 2·mean(x²) over the super-block) or `x²` without; 31 (IQ3_XXS) or 19 (IQ3_S)
//! trial scales; each 4-tuple snapped to the codebook or its nearest precomputed neighbour;
//! the weighted least-squares best kept. The stored super-block scale carries ggml's fudge
//! factor (×1.0125 for IQ3_XXS, ×1.033 for IQ3_S). Same operation order, nothing fused.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::iq2::{cmax, entry_of, fold_signs, scale_code, snap_to_grid, sums};
use super::iq_grid::{iq3, Iq3, Lattice};
use super::iq_tables::{IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

const QK_K: usize = 256;
const KMAXQ: i32 = 8;
const GROUP_MAX_EPS_IQ3_XXS: f32 = 1e-8;

fn sub<const N: usize>(x: &[f32], i: usize) -> &[f32; N] {
    x[N * i..N * i + N].try_into().expect("block in range")
}

/// Per-32 weights: `qw·sqrt(σ² + x²)` or `x²`, and their square roots.
#[inline]
fn weights(xb: &[f32; 32], qw: Option<&[f32; 32]>, sigma2: f32) -> ([f32; 32], [f32; 32]) {
    let mut weight = [0f32; 32];
    match qw {
        Some(q) => {
            for i in 0..32 {
                weight[i] = q[i] * (sigma2 + xb[i] * xb[i]).sqrt();
            }
        }
        None => {
            for i in 0..32 {
                weight[i] = xb[i] * xb[i];
            }
        }
    }
    let mut waux = [0f32; 32];
    for i in 0..32 {
        waux[i] = weight[i].sqrt();
    }
    (weight, waux)
}

/// The trial-scale search over one 32-block of eight 4-tuples: `nis` trials each side with step
/// 0.2, then the re-snap of off-codebook tuples (all of them when `resnap_all`, as IQ3_S
/// does; IQ3_S also starts from "not on the codebook"). Returns the scale; levels in `l`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn search32(
    lat: &Lattice<4>,
    xval: &[f32; 32],
    weight: &[f32; 32],
    waux: &[f32; 32],
    max: f32,
    nis: i32,
    start_on_grid: bool,
    resnap_all: bool,
    l: &mut [i8; 32],
) -> f32 {
    let mut best = 0f32;
    let mut scale = max / (2 * KMAXQ - 1) as f32;
    let mut on_grid = [start_on_grid; 8];
    let mut laux = [0i8; 32];
    for is in -nis..=nis {
        let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.2) / max;
        let this_scale = 1.0 / id;
        let mut on_aux = [true; 8];
        for k in 0..8 {
            let r = 4 * k..4 * k + 4;
            on_aux[k] = snap_to_grid::<4>(
                lat,
                &xval[r.clone()],
                &waux[r.clone()],
                id,
                this_scale,
                KMAXQ,
                3,
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
        for k in 0..8 {
            if on_grid[k] && !resnap_all {
                continue;
            }
            let r = 4 * k..4 * k + 4;
            // ggml computes the index here without storing the levels, then takes them from
            // the chosen codebook entry: the same values.
            let mut tmp = [0i8; 4];
            let (j, _) = snap_to_grid::<4>(
                lat,
                &xval[r.clone()],
                &waux[r.clone()],
                id,
                scale,
                KMAXQ,
                3,
                &mut tmp,
            );
            lat.set_levels(j, &mut l[r]);
        }
        let (sumqx, sumq2) = sums(weight, xval, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// IQ3_XXS: `d f16; qs[64]; scales_and_signs[8] u32` (98 bytes): per 4 elements a codebook
/// index byte; per 32 elements a u32 of four 7-bit sign groups and a 4-bit scale on top.
pub(crate) fn iq3_xxs_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut [u8; 98]) {
    let lat = iq3(Iq3::Xxs);
    y.fill(0);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    let mut sas = [0u32; 8];
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    for ib in 0..8 {
        let xb: &[f32; 32] = sub(x, ib);
        let (weight, waux) = weights(xb, qw.map(|q| sub(q, ib)), sigma2);
        let mut xval = [0f32; 32];
        let mut signs = [0u8; 4];
        fold_signs(xb, &weight, true, &mut xval, &mut signs);
        let mut max = xval[0];
        for i in 1..32 {
            max = cmax(max, xval[i]);
        }
        let mut l = [0i8; 32];
        if max < GROUP_MAX_EPS_IQ3_XXS {
            continue;
        }
        let mut scale = search32(lat, &xval, &weight, &waux, max, 15, true, false, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..8 {
            y[2 + 8 * ib + k] = entry_of::<4>(lat, &l[4 * k..4 * k + 4], 3) as u8;
        }
        sas[ib] = u32::from(signs[0])
            | (u32::from(signs[1]) << 7)
            | (u32::from(signs[2]) << 14)
            | (u32::from(signs[3]) << 21);
        scales[ib] = scale;
        max_scale = cmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        y.fill(0);
        return;
    }
    let d = max_scale / 31.0;
    y[..2].copy_from_slice(&f32_to_f16_bits(d * 1.0125).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..8 {
        sas[ib] |= u32::from(scale_code(id, scales[ib])) << 28;
        y[66 + 4 * ib..70 + 4 * ib].copy_from_slice(&sas[ib].to_le_bytes());
    }
}

/// IQ3_S: `d f16; qs[64]; qh[8]; signs[32]; scales[4]` (110 bytes): per 4 elements the low
/// byte of a 9-bit codebook index, the high bits in `qh`; 8 sign bits per 8 elements; a 4-bit
/// scale per 32 elements.
pub(crate) fn iq3_s_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut [u8; 110]) {
    let lat = iq3(Iq3::S);
    y.fill(0);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    // ggml advances its `qs`/`signs` write pointers at the end of a block's loop body, which
    // an all-zero block skips (`continue`): the following blocks' indices and signs land one
    // block earlier, and the tail stays zero. Reproduced, for byte equality.
    let mut slot = 0usize;
    for ib in 0..8 {
        let xb: &[f32; 32] = sub(x, ib);
        let (weight, waux) = weights(xb, qw.map(|q| sub(q, ib)), sigma2);
        let mut xval = [0f32; 32];
        let mut signs = [0u8; 4];
        fold_signs(xb, &weight, false, &mut xval, &mut signs);
        let mut max = xval[0];
        for i in 1..32 {
            max = cmax(max, xval[i]);
        }
        let mut l = [0i8; 32];
        if max == 0.0 {
            continue;
        }
        let mut scale = search32(lat, &xval, &weight, &waux, max, 9, false, true, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s;
            }
        }
        for k in 0..8 {
            let j = entry_of::<4>(lat, &l[4 * k..4 * k + 4], 3);
            y[2 + 8 * slot + k] = (j & 255) as u8;
            let bit = 8 * ib + k;
            y[66 + bit / 8] |= ((j >> 8) as u8) << (bit % 8);
        }
        y[74 + 4 * slot..78 + 4 * slot].copy_from_slice(&signs);
        slot += 1;
        scales[ib] = scale;
        max_scale = cmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y[..2].copy_from_slice(&f32_to_f16_bits(d * 1.033).to_le_bytes());
    let id = 1.0 / d;
    for ib in (0..8).step_by(2) {
        y[106 + ib / 2] = scale_code(id, scales[ib]) | (scale_code(id, scales[ib + 1]) << 4);
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
fn mag(e: u32, j: usize) -> f32 {
    f32::from((e >> (8 * j)) as u8)
}

/// Decode IQ3_XXS.
pub(crate) fn iq3_xxs_dequant(y: &[u8; 98], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for ib in 0..8 {
        let a = &y[66 + 4 * ib..70 + 4 * ib];
        let aux = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        let qs = &y[2 + 8 * ib..10 + 8 * ib];
        for l in 0..4 {
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let g1 = IQ3XXS_GRID[usize::from(qs[2 * l])];
            let g2 = IQ3XXS_GRID[usize::from(qs[2 * l + 1])];
            for j in 0..4 {
                out[32 * ib + 8 * l + j] = signed(db * mag(g1, j), signs, j);
                out[32 * ib + 8 * l + j + 4] = signed(db * mag(g2, j), signs, j + 4);
            }
        }
    }
}

/// Decode IQ3_S.
pub(crate) fn iq3_s_dequant(y: &[u8; 110], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    for ib in 0..8 {
        let sc = y[106 + ib / 2];
        let s4 = if ib % 2 == 0 { sc & 0xF } else { sc >> 4 };
        let db = d * (1 + 2 * i32::from(s4)) as f32;
        let qh = usize::from(y[66 + ib]);
        let qs = &y[2 + 8 * ib..10 + 8 * ib];
        let signs = &y[74 + 4 * ib..78 + 4 * ib];
        for l in 0..4 {
            let g1 = IQ3S_GRID[usize::from(qs[2 * l]) | ((qh << (8 - 2 * l)) & 256)];
            let g2 = IQ3S_GRID[usize::from(qs[2 * l + 1]) | ((qh << (7 - 2 * l)) & 256)];
            for j in 0..4 {
                out[32 * ib + 8 * l + j] = signed(db * mag(g1, j), signs[l], j);
                out[32 * ib + 8 * l + j + 4] = signed(db * mag(g2, j), signs[l], j + 4);
            }
        }
    }
}
