//! Q2_K and Q3_K, the low-bit K-quants (ports of ggml's `quantize_row_q{2,3}_K_ref`). grokit's
//! presets do not use them; they exist so that `--quant experts=q3_k` style experiments and the
//! §5.6 golden vectors are covered.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use super::k_lanes::make_qkx2_lanes;
use super::kutil::{nearest_int, GROUP_MAX_EPS};
use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

const QK_K: usize = 256;

/// Pack 2-bit levels: byte `32c + l` of a 128-element half holds elements l, l+32, l+64, l+96.
#[inline]
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for h in 0..2 {
        let j = 128 * h;
        for i in 0..32 {
            qs[32 * h + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// Q2_K: `scales[16]; qs[64]; d f16; dmin f16` (84 bytes).
pub(crate) fn q2_k_block(x: &[f32; QK_K], y: &mut [u8; 84]) {
    let (xs, _) = x.as_chunks::<16>();
    let mut l = [0u8; QK_K];
    // Sub-block j is lane j (see `k_lanes`).
    let mut xt = [[0f32; 16]; 16];
    let mut wt = [[0f32; 16]; 16];
    for j in 0..16 {
        for i in 0..16 {
            xt[i][j] = xs[j][i];
            wt[i][j] = xs[j][i].abs();
        }
    }
    let mut lt = [[0u8; 16]; 16];
    let (scales, mins) = make_qkx2_lanes(3, &xt, &wt, &mut lt, -0.5, 0.1, 15, true);
    for i in 0..16 {
        for j in 0..16 {
            l[16 * j + i] = lt[i][j];
        }
    }
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let mut sc = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = 15.0f32 / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        f32_to_f16_bits(max_scale / 15.0)
    } else {
        f32_to_f16_bits(0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = 15.0f32 / max_min;
        for j in 0..16 {
            sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        f32_to_f16_bits(max_min / 15.0)
    } else {
        f32_to_f16_bits(0.0)
    };
    finish_q2_k(x, &mut l, &sc, d, dmin, y);
}

/// Q2_K from fitted levels, the packed 4-bit scales/mins and the f16 d/dmin bits: re-quantize
/// each sub-block against the stored values, then pack (shared by the weighted encoder).
pub(crate) fn finish_q2_k(
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    sc: &[u8; 16],
    d: u16,
    dmin: u16,
    y: &mut [u8; 84],
) {
    let (xs, _) = x.as_chunks::<16>();
    let (df, mf) = (f16_bits_to_f32(d), f16_bits_to_f32(dmin));
    {
        let (ls, _) = l.as_chunks_mut::<16>();
        for j in 0..16 {
            let dd = df * f32::from(sc[j] & 0xF);
            if dd == 0.0 {
                continue;
            }
            let dm = mf * f32::from(sc[j] >> 4);
            for (q, &v) in ls[j].iter_mut().zip(&xs[j]) {
                *q = nearest_int((v + dm) / dd).clamp(0, 3) as u8;
            }
        }
    }
    y[..16].copy_from_slice(sc);
    pack_2bit(l, &mut y[16..80]);
    y[80..82].copy_from_slice(&d.to_le_bytes());
    y[82..84].copy_from_slice(&dmin.to_le_bytes());
}

/// ggml `make_q3_quants(n = 16, nmax, x, L, do_rmse = true)`: signed levels in `-nmax..nmax-1`
/// refined by coordinate descent; `l` receives them offset by `nmax`.
fn make_q3_quants(nmax: i32, x: &[f32; 16], l: &mut [u8; 16]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut li = [0i32; 16];
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..16 {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        li[i] = q;
        let w = x[i] * x[i];
        sumlx += w * x[i] * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..16 {
            let w = x[i] * x[i];
            let cur = li[i] as f32;
            let mut slx = sumlx - w * x[i] * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != li[i] {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        li[i] = new_l;
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
    for (o, &q) in l.iter_mut().zip(&li) {
        *o = (q + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Q3_K 6-bit scale `j` (already minus 32) from the 12 packed bytes.
#[inline]
fn q3_scale(s: &[u8], j: usize) -> i32 {
    let lo = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
    i32::from(lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32
}

/// Q3_K: `hmask[32]; qs[64]; scales[12]; d f16` (110 bytes).
pub(crate) fn q3_k_block(x: &[f32; QK_K], y: &mut [u8; 110]) {
    let (xs, _) = x.as_chunks::<16>();
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut amax = 0f32;
    {
        let (ls, _) = l.as_chunks_mut::<16>();
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &xs[j], &mut ls[j]);
            let a = scales[j].abs();
            if a > amax {
                amax = a;
                max_scale = scales[j];
            }
        }
    }
    let mut s = [0u8; 12];
    let d = if max_scale != 0.0 {
        let iscale = -32.0f32 / max_scale;
        for j in 0..16 {
            // C: int8_t l = nearest_int(...); l = MAX(-32, MIN(31, l)) + 32;
            let q = i32::from(nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
            let q = q as u8;
            if j < 8 {
                s[j] = q & 0xF;
            } else {
                s[j - 8] |= (q & 0xF) << 4;
            }
            s[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
        }
        f32_to_f16_bits(1.0 / iscale)
    } else {
        f32_to_f16_bits(0.0)
    };
    finish_q3_k(x, &mut l, &s, d, y);
}

/// Q3_K from fitted levels (offset by 4), the 12 packed scale bytes and the f16 d bits:
/// re-quantize each sub-block against its stored scale, split off the high bits, pack (shared
/// by the weighted encoder).
pub(crate) fn finish_q3_k(
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    s: &[u8; 12],
    d: u16,
    y: &mut [u8; 110],
) {
    let (xs, _) = x.as_chunks::<16>();
    let df = f16_bits_to_f32(d);
    {
        let (ls, _) = l.as_chunks_mut::<16>();
        for j in 0..16 {
            let dd = df * q3_scale(s, j) as f32;
            if dd == 0.0 {
                continue;
            }
            for (q, &v) in ls[j].iter_mut().zip(&xs[j]) {
                *q = (nearest_int(v / dd).clamp(-4, 3) + 4) as u8;
            }
        }
    }
    let mut hmask = [0u8; 32];
    let mut m = 0usize;
    let mut hm = 1u8;
    for q in l.iter_mut() {
        if *q > 3 {
            hmask[m] |= hm;
            *q -= 4;
        }
        m += 1;
        if m == 32 {
            m = 0;
            hm = hm.wrapping_shl(1);
        }
    }
    y[..32].copy_from_slice(&hmask);
    pack_2bit(l, &mut y[32..96]);
    y[96..108].copy_from_slice(s);
    y[108..110].copy_from_slice(&d.to_le_bytes());
}

/// Decode Q2_K.
pub(crate) fn q2_k_dequant(y: &[u8; 84], out: &mut [f32; QK_K]) {
    let d = f16_bits_to_f32(u16::from_le_bytes([y[80], y[81]]));
    let min = f16_bits_to_f32(u16::from_le_bytes([y[82], y[83]]));
    let mut is = 0;
    let mut o = 0;
    for h in 0..2 {
        let q = &y[16 + 32 * h..16 + 32 * h + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = y[is];
                is += 1;
                let dl = d * f32::from(sc & 0xF);
                let ml = min * f32::from(sc >> 4);
                for i in 0..16 {
                    out[o] = dl * f32::from((q[16 * half + i] >> shift) & 3) - ml;
                    o += 1;
                }
            }
        }
    }
}

/// Decode Q3_K.
pub(crate) fn q3_k_dequant(y: &[u8; 110], out: &mut [f32; QK_K]) {
    let d_all = f16_bits_to_f32(u16::from_le_bytes([y[108], y[109]]));
    let s = &y[96..108];
    let hm = &y[..32];
    let mut m = 1u8;
    let mut is = 0;
    let mut o = 0;
    for h in 0..2 {
        let q = &y[32 + 32 * h..32 + 32 * h + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * q3_scale(s, is) as f32;
                is += 1;
                for i in 0..16 {
                    let k = 16 * half + i;
                    let v = i32::from((q[k] >> shift) & 3) - if hm[k] & m != 0 { 0 } else { 4 };
                    out[o] = dl * v as f32;
                    o += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}
