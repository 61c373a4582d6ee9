//! K-quants with 256-element super-blocks: Q4_K, Q5_K, Q6_K (model weights) and Q8_K (the
//! activation format, kept for tests and golden vectors). Ports of ggml's
//! `quantize_row_q{4,5,6,8}_K_ref`, i.e. what llama-quantize writes without an importance
//! matrix (output-formats.md §5.4).
//!
//! A detail that matters for byte equality: when a sub-block's stored scale rounds to 0 the
//! reference skips re-quantization and keeps the levels from the fitting routine, so the
//! fitted levels are carried in the same buffer here too.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::k_lanes::{make_qkx2_lanes, make_qx_lanes};
use super::kutil::{get_scale_min_k4, nearest_int, pack_scale_min_k4, GROUP_MAX_EPS};
use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

/// Elements per K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// Sub-block `j` of `N` elements (`j < QK_K / N` at every call site).
#[inline(always)]
fn sub<const N: usize>(x: &[f32; QK_K], j: usize) -> &[f32; N] {
    &x.as_chunks::<N>().0[j]
}

/// Mutable sub-block `j` of `N` levels.
#[inline(always)]
fn sub_mut<const N: usize>(l: &mut [u8; QK_K], j: usize) -> &mut [u8; N] {
    &mut l.as_chunks_mut::<N>().0[j]
}

/// Fit the eight 32-element sub-blocks of Q4_K/Q5_K: returns the packed 6-bit scales, d, dmin
/// (as stored f16 bits) and leaves the fitted levels in `l`.
#[inline]
fn fit_k4(
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([u8; 12], u16, u16) {
    // Sub-block j is lane j (see `k_lanes`): transpose to [element][sub-block].
    let mut xt = [[0f32; 8]; 32];
    for j in 0..8 {
        let xs: &[f32; 32] = sub(x, j);
        for i in 0..32 {
            xt[i][j] = xs[i];
        }
    }
    let mut sum_x2 = [0f32; 8];
    for row in &xt {
        for j in 0..8 {
            sum_x2[j] += row[j] * row[j];
        }
    }
    let mut av_x = [0f32; 8];
    for j in 0..8 {
        av_x[j] = (sum_x2[j] / 32.0).sqrt();
    }
    let mut wt = [[0f32; 8]; 32];
    for i in 0..32 {
        for j in 0..8 {
            wt[i][j] = av_x[j] + xt[i][j].abs();
        }
    }
    let mut lt = [[0u8; 8]; 32];
    let (scales, mins) = make_qkx2_lanes(nmax, &xt, &wt, &mut lt, rmin, 0.1, nstep, false);
    for i in 0..32 {
        for j in 0..8 {
            l[32 * j + i] = lt[i][j];
        }
    }
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // C stores nearest_int's int into a uint8_t (wrapping) before MIN(63, ·).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    (
        packed,
        f32_to_f16_bits(max_scale / 63.0),
        f32_to_f16_bits(max_min / 63.0),
    )
}

/// Re-quantize every sub-block against the stored (d·sc, dmin·m), as the reference does.
#[inline]
pub(crate) fn requant_k4(
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    scales: &[u8; 12],
    d: u16,
    dmin: u16,
    nmax: i32,
) {
    let df = f16_bits_to_f32(d);
    let mf = f16_bits_to_f32(dmin);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let dd = df * f32::from(sc);
        if dd == 0.0 {
            continue;
        }
        let dm = mf * f32::from(m);
        let xs: &[f32; 32] = sub(x, j);
        let ls: &mut [u8; 32] = sub_mut(l, j);
        for (q, &v) in ls.iter_mut().zip(xs) {
            *q = nearest_int((v + dm) / dd).clamp(0, nmax) as u8;
        }
    }
}

/// Q4_K: `d f16; dmin f16; scales[12]; qs[128]` (144 bytes).
pub(crate) fn q4_k_block(x: &[f32; QK_K], y: &mut [u8; 144]) {
    let mut l = [0u8; QK_K];
    let (scales, d, dmin) = fit_k4(x, &mut l, 15, -1.0, 20);
    requant_k4(x, &mut l, &scales, d, dmin, 15);
    pack_q4_k(&l, &scales, d, dmin, y);
}

/// Write Q4_K's bytes from final levels, packed scales and the f16 d/dmin bits.
pub(crate) fn pack_q4_k(l: &[u8; QK_K], scales: &[u8; 12], d: u16, dmin: u16, y: &mut [u8; 144]) {
    y[0..2].copy_from_slice(&d.to_le_bytes());
    y[2..4].copy_from_slice(&dmin.to_le_bytes());
    y[4..16].copy_from_slice(scales);
    for c in 0..4 {
        for i in 0..32 {
            y[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// Q5_K: `d; dmin; scales[12]; qh[32]; qs[128]` (176 bytes).
pub(crate) fn q5_k_block(x: &[f32; QK_K], y: &mut [u8; 176]) {
    let mut l = [0u8; QK_K];
    let (scales, d, dmin) = fit_k4(x, &mut l, 31, -0.5, 15);
    requant_k4(x, &mut l, &scales, d, dmin, 31);
    pack_q5_k(&l, &scales, d, dmin, y);
}

/// Write Q5_K's bytes from final levels, packed scales and the f16 d/dmin bits.
pub(crate) fn pack_q5_k(l: &[u8; QK_K], scales: &[u8; 12], d: u16, dmin: u16, y: &mut [u8; 176]) {
    y[0..2].copy_from_slice(&d.to_le_bytes());
    y[2..4].copy_from_slice(&dmin.to_le_bytes());
    y[4..16].copy_from_slice(scales);
    let mut qh = [0u8; 32];
    let (mut m1, mut m2) = (1u8, 2u8);
    for c in 0..4 {
        for j in 0..32 {
            let mut l1 = l[64 * c + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = l[64 * c + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            y[48 + 32 * c + j] = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
    y[16..48].copy_from_slice(&qh);
}

/// Q6_K: `ql[128]; qh[64]; scales[16] i8; d f16` (210 bytes).
pub(crate) fn q6_k_block(x: &[f32; QK_K], y: &mut [u8; 210]) {
    let mut l = [0u8; QK_K];
    let mut xq = [[0f32; 16]; 16];
    for j in 0..16 {
        let xs: &[f32; 16] = sub(x, j);
        for i in 0..16 {
            xq[i][j] = xs[i];
        }
    }
    let mut lq = [[0u8; 16]; 16];
    let scales = make_qx_lanes(32, &xq, &mut lq);
    for i in 0..16 {
        for j in 0..16 {
            l[16 * j + i] = lq[i][j];
        }
    }
    finish_q6_k(x, &mut l, &scales, y);
}

/// Q6_K from the sixteen fitted sub-block scales and levels: the super-block scale, the 8-bit
/// sub-scales, re-quantization against them and the packing (shared by the weighted encoder).
pub(crate) fn finish_q6_k(
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    scales: &[f32; 16],
    y: &mut [u8; 210],
) {
    let mut max_scale = 0f32;
    let mut max_abs_scale = 0f32;
    for &s in scales {
        let a = s.abs();
        if a > max_abs_scale {
            max_abs_scale = a;
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        return;
    }
    let iscale = -128.0f32 / max_scale;
    let d = f32_to_f16_bits(1.0 / iscale);
    let mut sc = [0i8; 16];
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }
    let df = f16_bits_to_f32(d);
    for j in 0..16 {
        let dd = df * f32::from(sc[j]);
        if dd == 0.0 {
            continue;
        }
        let xs: &[f32; 16] = sub(x, j);
        let ls: &mut [u8; 16] = sub_mut(l, j);
        for (q, &v) in ls.iter_mut().zip(xs) {
            *q = (nearest_int(v / dd).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..2 {
        let lb = 128 * h;
        let ql = 64 * h;
        let qh = 128 + 32 * h;
        for i in 0..32 {
            let q1 = l[lb + i] & 0xF;
            let q2 = l[lb + i + 32] & 0xF;
            let q3 = l[lb + i + 64] & 0xF;
            let q4 = l[lb + i + 96] & 0xF;
            y[ql + i] = q1 | (q3 << 4);
            y[ql + i + 32] = q2 | (q4 << 4);
            y[qh + i] = (l[lb + i] >> 4)
                | ((l[lb + i + 32] >> 4) << 2)
                | ((l[lb + i + 64] >> 4) << 4)
                | ((l[lb + i + 96] >> 4) << 6);
        }
    }
    for (o, s) in y[192..208].iter_mut().zip(sc) {
        *o = s as u8;
    }
    y[208..210].copy_from_slice(&d.to_le_bytes());
}

/// Q8_K: `d f32; qs[256] i8; bsums[16] i16` (292 bytes). For an all-zero super-block ggml
/// leaves `bsums` unwritten (garbage); grokit writes zeros there.
pub(crate) fn q8_k_block(x: &[f32; QK_K], y: &mut [u8; 292]) {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        y.fill(0);
        return;
    }
    let iscale = -127.0f32 / max;
    for j in 0..QK_K {
        y[4 + j] = (nearest_int(iscale * x[j]).min(127) as i8) as u8;
    }
    for j in 0..16 {
        let mut sum: i32 = 0;
        for i in 0..16 {
            sum += i32::from(y[4 + 16 * j + i] as i8);
        }
        let at = 4 + QK_K + 2 * j;
        y[at..at + 2].copy_from_slice(&(sum as i16).to_le_bytes());
    }
    y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

/// Decode Q4_K.
pub(crate) fn q4_k_dequant(y: &[u8; 144], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    let min = f16_bits_to_f32(u16::from_le_bytes([y[2], y[3]]));
    let mut sc12 = [0u8; 12];
    sc12.copy_from_slice(&y[4..16]);
    for c in 0..4 {
        let (s1, m1) = get_scale_min_k4(2 * c, &sc12);
        let (s2, m2) = get_scale_min_k4(2 * c + 1, &sc12);
        let (d1, m1) = (d * f32::from(s1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), min * f32::from(m2));
        for i in 0..32 {
            let q = y[16 + 32 * c + i];
            out[64 * c + i] = d1 * f32::from(q & 0xF) - m1;
            out[64 * c + 32 + i] = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Decode Q5_K.
pub(crate) fn q5_k_dequant(y: &[u8; 176], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[0], y[1]]));
    let min = f16_bits_to_f32(u16::from_le_bytes([y[2], y[3]]));
    let mut sc12 = [0u8; 12];
    sc12.copy_from_slice(&y[4..16]);
    let (mut u1, mut u2) = (1u8, 2u8);
    for c in 0..4 {
        let (s1, m1) = get_scale_min_k4(2 * c, &sc12);
        let (s2, m2) = get_scale_min_k4(2 * c + 1, &sc12);
        let (d1, m1) = (d * f32::from(s1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), min * f32::from(m2));
        for i in 0..32 {
            let q = y[48 + 32 * c + i];
            let h = y[16 + i];
            let h1 = if h & u1 != 0 { 16 } else { 0 };
            let h2 = if h & u2 != 0 { 16 } else { 0 };
            out[64 * c + i] = d1 * f32::from((q & 0xF) + h1) - m1;
            out[64 * c + 32 + i] = d2 * f32::from((q >> 4) + h2) - m2;
        }
        u1 = u1.wrapping_shl(2);
        u2 = u2.wrapping_shl(2);
    }
}

/// Decode Q6_K.
pub(crate) fn q6_k_dequant(y: &[u8; 210], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[208], y[209]]));
    for h in 0..2 {
        let ql = 64 * h;
        let qh = 128 + 32 * h;
        let sc = 192 + 8 * h;
        let o = 128 * h;
        for i in 0..32 {
            let is = i / 16;
            let hb = y[qh + i];
            let q1 = i32::from((y[ql + i] & 0xF) | ((hb & 3) << 4)) - 32;
            let q2 = i32::from((y[ql + i + 32] & 0xF) | (((hb >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((y[ql + i] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((y[ql + i + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
            let s = |k: usize| f32::from(y[sc + is + k] as i8);
            out[o + i] = d * s(0) * q1 as f32;
            out[o + i + 32] = d * s(2) * q2 as f32;
            out[o + i + 64] = d * s(4) * q3 as f32;
            out[o + i + 96] = d * s(6) * q4 as f32;
        }
    }
}

/// Decode Q8_K.
pub(crate) fn q8_k_dequant(y: &[u8; 292], out: &mut [f32; QK_K]) {
    let d = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
    for j in 0..QK_K {
        out[j] = d * f32::from(y[4 + j] as i8);
    }
}
