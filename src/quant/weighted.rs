//! Importance-weighted encoders of the existing types: what ggml's `quantize_q{2,3,4,5,6}_K` and
//! `quantize_q{4,5}_{0,1}` do when llama-quantize hands them an importance matrix (the
//! `quantize_row_*_impl` paths). Without a matrix those functions fall back to the reference
//! encoders in `legacy`, `k_quants` and `k_low`, so only the weighted forms live here.
//!
//! The weights are the matrix's per-column mean squared activations `qw` (one per element of a
//! row). Each encoder turns them into per-element weights `qw·sqrt(σ² + x²)`, where σ² is the
//! mean square of the 256-element super-block (K-quants; twice it for Q3_K–Q5_K) or of the
//! whole row (Q4_0–Q5_1, which is why those take the row's σ² from their caller), and fits
//! with those: `make_qkx3_quants` (asymmetric, 37 trial scales from −0.9 in steps of 0.05),
//! `make_qx_quants` with weights (symmetric), and `make_qp_quants` for the K-quants'
//! super-block scales. As everywhere in this module, sums run left to right in f32 and
//! products keep C's operand order, so the bytes equal ggml's.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::k_lanes::{make_qkx2_lanes, make_qx_lanes_w};
use super::k_low::{finish_q2_k, finish_q3_k};
use super::k_quants::{finish_q6_k, pack_q4_k, pack_q5_k, requant_k4};
use super::kutil::{nearest_int, GROUP_MAX_EPS};
use crate::base::float::f32_to_f16_bits;

const QK_K: usize = 256;

/// ggml `make_qp_quants`: fit non-negative values `x` (sub-block scales or mins) to
/// `0..=nmax` with weights `qw`, by 8 trial scales then coordinate descent. Levels go to `l`
/// (stored as C's `uint8_t`: a negative level would wrap, exactly as there). Returns the scale.
pub(crate) fn make_qp_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    l: &mut [u8; N],
    qw: &[f32; N],
) -> f32 {
    let mut max = 0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..N {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..N {
        let diff = x[i] - scale * f32::from(l[i]);
        best_mse += qw[i] * diff * diff;
    }
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1f32 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..N {
            let q = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * q as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..N {
        let q = nearest_int(iscale * x[i]).min(nmax);
        l[i] = q as u8;
        // the sums use the int level, the later passes the stored uint8 (as in C)
        let lf = q as f32;
        sumlx += qw[i] * x[i] * lf;
        suml2 += qw[i] * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..N {
            let w = qw[i];
            let li = f32::from(l[i]);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(l[i]) {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Mean of squares, summed left to right.
#[inline]
fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// The weighted asymmetric fit of `LANES` sub-blocks of `N` (`make_qkx3_quants` with
/// rmin −0.9, rdelta 0.05, 36 steps, squared error): levels into `l` (element-major), scales,
/// mins (as `-min` ≥ 0) and each sub-block's weight sum.
#[inline]
fn fit_qkx3<const LANES: usize, const N: usize>(
    nmax: i32,
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    sigma2: f32,
    l: &mut [u8; QK_K],
) -> ([f32; LANES], [f32; LANES], [f32; LANES]) {
    let mut xt = [[0f32; LANES]; N];
    let mut wt = [[0f32; LANES]; N];
    let mut sw = [0f32; LANES];
    for j in 0..LANES {
        let mut s = 0f32;
        for i in 0..N {
            let v = x[N * j + i];
            xt[i][j] = v;
            let w = qw[N * j + i] * (sigma2 + v * v).sqrt();
            wt[i][j] = w;
            s += w;
        }
        sw[j] = s;
    }
    let mut lt = [[0u8; LANES]; N];
    let (scales, mins) = make_qkx2_lanes(nmax, &xt, &wt, &mut lt, -0.9, 0.05, 36, false);
    for i in 0..N {
        for j in 0..LANES {
            l[N * j + i] = lt[i][j];
        }
    }
    (scales, mins, sw)
}

/// Weighted Q2_K (`quantize_row_q2_K_impl`).
pub(crate) fn q2_k_block_w(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 84]) {
    let sigma2 = sum_sq(x) / QK_K as f32;
    let mut l = [0u8; QK_K];
    let (scales, mins, sw) = fit_qkx3::<16, 16>(3, x, qw, sigma2, &mut l);
    let mut ls = [0u8; 16];
    let mut lm = [0u8; 16];
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    let mut sc = [0u8; 16];
    for j in 0..16 {
        sc[j] = ls[j] | (lm[j] << 4);
    }
    finish_q2_k(x, &mut l, &sc, f32_to_f16_bits(dm), f32_to_f16_bits(mm), y);
}

/// Weighted Q3_K (`quantize_row_q3_K_impl`).
pub(crate) fn q3_k_block_w(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 110]) {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let mut xt = [[0f32; 16]; 16];
    let mut wt = [[0f32; 16]; 16];
    let mut sw = [[0f32; 1]; 16];
    for j in 0..16 {
        let mut s = 0f32;
        for i in 0..16 {
            let v = x[16 * j + i];
            xt[i][j] = v;
            let w = qw[16 * j + i] * (sigma2 + v * v).sqrt();
            wt[i][j] = w;
            s += w;
        }
        sw[j][0] = s;
    }
    let mut lt = [[0u8; 16]; 16];
    let scales = make_qx_lanes_w(4, &xt, &wt, &mut lt);
    let mut l = [0u8; QK_K];
    for i in 0..16 {
        for j in 0..16 {
            l[16 * j + i] = lt[i][j];
        }
    }
    let sc: [[f32; 1]; 16] = std::array::from_fn(|j| [scales[j]]);
    let mut lsc = [[0u8; 1]; 16];
    let d_block = make_qx_lanes_w(32, &sc, &sw, &mut lsc)[0];
    let mut s = [0u8; 12];
    for j in 0..16 {
        let q = lsc[j][0];
        if j < 8 {
            s[j] = q & 0xF;
        } else {
            s[j - 8] |= (q & 0xF) << 4;
        }
        s[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
    }
    finish_q3_k(x, &mut l, &s, f32_to_f16_bits(d_block), y);
}

/// The weighted Q4_K/Q5_K fit: levels, packed 6-bit scales/mins, d and dmin bits.
fn fit_k4_w(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    l: &mut [u8; QK_K],
    nmax: i32,
    clamp63: bool,
) -> ([u8; 12], u16, u16) {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let (scales, mins, sw) = fit_qkx3::<8, 32>(nmax, x, qw, sigma2, l);
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if clamp63 {
        for j in 0..8 {
            ls[j] = ls[j].min(63);
            lm[j] = lm[j].min(63);
        }
    }
    // ggml's packing, without the 6-bit masking of `pack_scale_min_k4` (a value above 63 would
    // spill into the neighbouring fields there too).
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    (s, f32_to_f16_bits(d_block), f32_to_f16_bits(m_block))
}

/// Weighted Q4_K (`quantize_row_q4_K_impl`).
pub(crate) fn q4_k_block_w(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 144]) {
    let mut l = [0u8; QK_K];
    let (s, d, dmin) = fit_k4_w(x, qw, &mut l, 15, false);
    requant_k4(x, &mut l, &s, d, dmin, 15);
    pack_q4_k(&l, &s, d, dmin, y);
}

/// Weighted Q5_K (`quantize_row_q5_K_impl`).
pub(crate) fn q5_k_block_w(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 176]) {
    let mut l = [0u8; QK_K];
    let (s, d, dmin) = fit_k4_w(x, qw, &mut l, 31, true);
    requant_k4(x, &mut l, &s, d, dmin, 31);
    pack_q5_k(&l, &s, d, dmin, y);
}

/// Weighted Q6_K (`quantize_row_q6_K_impl`): the matrix's weights are used as they are.
pub(crate) fn q6_k_block_w(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut [u8; 210]) {
    let mut xt = [[0f32; 16]; 16];
    let mut wt = [[0f32; 16]; 16];
    for j in 0..16 {
        for i in 0..16 {
            xt[i][j] = x[16 * j + i];
            wt[i][j] = qw[16 * j + i];
        }
    }
    let mut lt = [[0u8; 16]; 16];
    let scales = make_qx_lanes_w(32, &xt, &wt, &mut lt);
    let mut l = [0u8; QK_K];
    for i in 0..16 {
        for j in 0..16 {
            l[16 * j + i] = lt[i][j];
        }
    }
    finish_q6_k(x, &mut l, &scales, y);
}

/// The row's σ² of the weighted legacy encoders: mean square over the whole row.
pub(crate) fn row_sigma2(x: &[f32]) -> f32 {
    sum_sq(x) / x.len() as f32
}

/// Fit `L` 32-blocks of a row at once (lane k = block k): the symmetric weighted fit
/// (`make_qx_quants(32, nmax, …, 1, weight)`) or the asymmetric one (`make_qkx3_quants`), with
/// weights `qw·sqrt(σ² + x²)`. Returns per block (d, -min) and the levels.
#[inline]
fn fit_legacy<const L: usize>(
    xs: &[[f32; 32]],
    ws: &[[f32; 32]],
    sigma2: f32,
    nmax: i32,
    sym: bool,
) -> ([f32; L], [f32; L], [[u8; 32]; L]) {
    let mut xt = [[0f32; L]; 32];
    let mut wt = [[0f32; L]; 32];
    for k in 0..L {
        for j in 0..32 {
            let v = xs[k][j];
            xt[j][k] = v;
            wt[j][k] = ws[k][j] * (sigma2 + v * v).sqrt();
        }
    }
    let mut lt = [[0u8; L]; 32];
    let (d, m) = if sym {
        (make_qx_lanes_w(nmax, &xt, &wt, &mut lt), [0f32; L])
    } else {
        make_qkx2_lanes(nmax, &xt, &wt, &mut lt, -0.9, 0.05, 36, false)
    };
    let mut l = [[0u8; 32]; L];
    for j in 0..32 {
        for k in 0..L {
            l[k][j] = lt[j][k];
        }
    }
    (d, m, l)
}

/// Weighted Q4_0/Q4_1/Q5_0/Q5_1 of one whole row (`quantize_row_q{4,5}_{0,1}_impl`): σ² is the
/// row's mean square; blocks are fitted 16 or 8 at a time as lanes (independent, so the bytes
/// are those of one at a time). Appends the row's blocks to `out`.
pub(crate) fn legacy_row_w(ty: super::GgmlType, x: &[f32], qw: &[f32], out: &mut Vec<u8>) {
    use super::GgmlType as T;
    let sigma2 = row_sigma2(x);
    let (nmax, sym, bsize) = match ty {
        T::Q4_0 => (8, true, 18),
        T::Q4_1 => (15, false, 20),
        T::Q5_0 => (16, true, 22),
        _ => (31, false, 24), // Q5_1
    };
    let (xs, _) = x.as_chunks::<32>();
    let (ws, _) = qw.as_chunks::<32>();
    let start = out.len();
    out.resize(start + xs.len() * bsize, 0);
    let mut at = start;
    let mut put = |d: f32, m: f32, l: &[u8; 32], out: &mut Vec<u8>| {
        let y = &mut out[at..at + bsize];
        y[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        match ty {
            T::Q4_0 => pack_4bit(l, &mut y[2..]),
            T::Q5_0 => {
                let (h, q) = y[2..].split_at_mut(4);
                pack_5bit(l, h, q);
            }
            T::Q4_1 => {
                y[2..4].copy_from_slice(&f32_to_f16_bits(-m).to_le_bytes());
                pack_4bit(l, &mut y[4..]);
            }
            _ => {
                y[2..4].copy_from_slice(&f32_to_f16_bits(-m).to_le_bytes());
                let (h, q) = y[4..].split_at_mut(4);
                pack_5bit(l, h, q);
            }
        }
        at += bsize;
    };
    // Lane counts measured fastest on x86-64 baseline: 16 for the symmetric fit, 8 for the
    // asymmetric one (more state per lane).
    let mut i = 0;
    if sym {
        while i + 16 <= xs.len() {
            let (d, m, l) = fit_legacy::<16>(&xs[i..i + 16], &ws[i..i + 16], sigma2, nmax, sym);
            for k in 0..16 {
                put(d[k], m[k], &l[k], out);
            }
            i += 16;
        }
    }
    while i + 8 <= xs.len() {
        let (d, m, l) = fit_legacy::<8>(&xs[i..i + 8], &ws[i..i + 8], sigma2, nmax, sym);
        for k in 0..8 {
            put(d[k], m[k], &l[k], out);
        }
        i += 8;
    }
    while i < xs.len() {
        let (d, m, l) = fit_legacy::<1>(&xs[i..i + 1], &ws[i..i + 1], sigma2, nmax, sym);
        put(d[0], m[0], &l[0], out);
        i += 1;
    }
}

#[inline]
fn pack_4bit(l: &[u8; 32], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = l[j] | (l[j + 16] << 4);
    }
}

#[inline]
fn pack_5bit(l: &[u8; 32], qh_at: &mut [u8], qs: &mut [u8]) {
    let mut qh: u32 = 0;
    for j in 0..16 {
        let (a, b) = (l[j], l[j + 16]);
        qs[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= u32::from((a & 0x10) >> 4) << j;
        qh |= u32::from((b & 0x10) >> 4) << (j + 16);
    }
    qh_at.copy_from_slice(&qh.to_le_bytes());
}
