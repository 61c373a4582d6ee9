//! Legacy 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (and Q8_1), ported from ggml's
//! `quantize_row_*_ref` encoders so that grokit's GGUF files are byte-identical to what
//! llama-quantize (x86-64, no FMA contraction) writes.
//!
//! Why the odd-looking rounding rules are kept verbatim (docs/formats/ggml-quants.md "Legacy types"):
//! - Q8_0 uses C `roundf` (half away from zero) = Rust `f32::round`.
//! - Q4_0/Q5_0 compute `trunc(x·id + 8.5)` (resp. `+16.5`) in f32 as two separately rounded
//!   operations. Rust never fuses `a*b + c`, so this matches the non-FMA x86 build exactly.
//!   (gguf-py emulates the fused form; the two differ on rare ties, see the interop test.)
//! - The scale's reciprocal `id` is taken from the f32 `d`, not from the stored f16.
//! - An all-zero Q4_0/Q5_0 block yields d = 0/−8 = −0.0 (f16 0x8000): a sign bit kept on
//!   purpose, because ggml does.
//!
//! Every block function takes fixed-size arrays so the compiler drops the bounds checks; no
//! heap allocation happens per block.
// Index loops mirror the C reference one to one (operand order matters for byte equality).
#![allow(clippy::needless_range_loop)]

use crate::base::float::{f16_bits_to_f32, f32_to_f16_bits};

/// Elements per legacy block.
pub(crate) const QK: usize = 32;

#[inline]
fn put_f16(y: &mut [u8], at: usize, v: f32) {
    let b = f32_to_f16_bits(v).to_le_bytes();
    y[at] = b[0];
    y[at + 1] = b[1];
}

#[inline]
fn get_f16(y: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([y[at], y[at + 1]]))
}

/// The signed value of largest magnitude (first on ties, strict `<` as in ggml).
#[inline]
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C `(int8_t)(float)` for the value ranges these encoders produce: truncation toward zero.
#[inline]
fn trunc_i32(v: f32) -> i32 {
    v as i32
}

/// C `roundf` (half away from zero) for |v| < 2^31, without a libm call (baseline x86-64 has
/// no rounding instruction): `v - trunc(v)` is exact, so the tie test is exact.
#[inline(always)]
fn roundf_i32(v: f32) -> i32 {
    let t = v as i32;
    let frac = v - t as f32;
    if frac >= 0.5 {
        t.saturating_add(1)
    } else if frac <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// Q4_0: `d f16; qs[16]` (18 bytes).
pub(crate) fn q4_0_block(x: &[f32; QK], y: &mut [u8; 18]) {
    let max = signed_absmax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..QK / 2 {
        let x0 = x[j] * id;
        let x1 = x[j + QK / 2] * id;
        let q0 = trunc_i32(x0 + 8.5).min(15) as u8;
        let q1 = trunc_i32(x1 + 8.5).min(15) as u8;
        y[2 + j] = (q0 & 0x0F) | (q1 << 4);
    }
}

/// Q4_1: `d f16; m f16; qs[16]` (20 bytes).
pub(crate) fn q4_1_block(x: &[f32; QK], y: &mut [u8; 20]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    for j in 0..QK / 2 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[j + QK / 2] - min) * id;
        let q0 = trunc_i32(x0 + 0.5).min(15) as u8;
        let q1 = trunc_i32(x1 + 0.5).min(15) as u8;
        y[4 + j] = (q0 & 0x0F) | (q1 << 4);
    }
}

/// Q5_0: `d f16; qh[4]; qs[16]` (22 bytes).
pub(crate) fn q5_0_block(x: &[f32; QK], y: &mut [u8; 22]) {
    let max = signed_absmax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut qh: u32 = 0;
    for j in 0..QK / 2 {
        let x0 = x[j] * id;
        let x1 = x[j + QK / 2] * id;
        let q0 = trunc_i32(x0 + 16.5).min(31) as u32;
        let q1 = trunc_i32(x1 + 16.5).min(31) as u32;
        y[6 + j] = ((q0 & 0x0F) | ((q1 & 0x0F) << 4)) as u8;
        qh |= ((q0 & 0x10) >> 4) << j;
        qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    y[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// Q5_1: `d f16; m f16; qh[4]; qs[16]` (24 bytes). (ggml applies no `min(31)` here; the value
/// cannot exceed 31 and the masks below reproduce the C byte stores either way.)
pub(crate) fn q5_1_block(x: &[f32; QK], y: &mut [u8; 24]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let mut qh: u32 = 0;
    for j in 0..QK / 2 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[j + QK / 2] - min) * id;
        let q0 = (trunc_i32(x0 + 0.5) as u8) as u32;
        let q1 = (trunc_i32(x1 + 0.5) as u8) as u32;
        y[8 + j] = ((q0 & 0x0F) | ((q1 & 0x0F) << 4)) as u8;
        qh |= ((q0 & 0x10) >> 4) << j;
        qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    y[4..8].copy_from_slice(&qh.to_le_bytes());
}

/// Q8_0: `d f16; qs[32] i8` (34 bytes).
pub(crate) fn q8_0_block(x: &[f32; QK], y: &mut [u8; 34]) {
    let mut amax = 0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..QK {
        y[2 + j] = (roundf_i32(x[j] * id).clamp(-128, 127) as i8) as u8;
    }
}

/// Q8_1: `d f16; s f16 (= d·Σq); qs[32]` (36 bytes). Activation format; provided for
/// completeness (gguf files do not use it).
pub(crate) fn q8_1_block(x: &[f32; QK], y: &mut [u8; 36]) {
    let mut amax = 0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut sum: i32 = 0;
    for j in 0..QK {
        let q = roundf_i32(x[j] * id).clamp(-128, 127) as i8;
        y[4 + j] = q as u8;
        sum += i32::from(q);
    }
    put_f16(y, 2, sum as f32 * d);
}

/// Decode Q4_0.
pub(crate) fn q4_0_dequant(y: &[u8; 18], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    for j in 0..QK / 2 {
        let b = y[2 + j];
        out[j] = (i32::from(b & 0x0F) - 8) as f32 * d;
        out[j + QK / 2] = (i32::from(b >> 4) - 8) as f32 * d;
    }
}

/// Decode Q4_1.
pub(crate) fn q4_1_dequant(y: &[u8; 20], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    let m = get_f16(y, 2);
    for j in 0..QK / 2 {
        let b = y[4 + j];
        out[j] = f32::from(b & 0x0F) * d + m;
        out[j + QK / 2] = f32::from(b >> 4) * d + m;
    }
}

#[inline]
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    (h0, h1)
}

/// Decode Q5_0.
pub(crate) fn q5_0_dequant(y: &[u8; 22], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    let qh = u32::from_le_bytes([y[2], y[3], y[4], y[5]]);
    for j in 0..QK / 2 {
        let b = y[6 + j];
        let (h0, h1) = q5_high(qh, j);
        out[j] = (i32::from((b & 0x0F) | h0) - 16) as f32 * d;
        out[j + QK / 2] = (i32::from((b >> 4) | h1) - 16) as f32 * d;
    }
}

/// Decode Q5_1.
pub(crate) fn q5_1_dequant(y: &[u8; 24], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    let m = get_f16(y, 2);
    let qh = u32::from_le_bytes([y[4], y[5], y[6], y[7]]);
    for j in 0..QK / 2 {
        let b = y[8 + j];
        let (h0, h1) = q5_high(qh, j);
        out[j] = f32::from((b & 0x0F) | h0) * d + m;
        out[j + QK / 2] = f32::from((b >> 4) | h1) * d + m;
    }
}

/// Decode Q8_0.
pub(crate) fn q8_0_dequant(y: &[u8; 34], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    for j in 0..QK {
        out[j] = f32::from(y[2 + j] as i8) * d;
    }
}

/// Decode Q8_1 (the stored sum is not needed).
pub(crate) fn q8_1_dequant(y: &[u8; 36], out: &mut [f32; QK]) {
    let d = get_f16(y, 0);
    for j in 0..QK {
        out[j] = f32::from(y[4 + j] as i8) * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_ramp_matches_spec_example() {
        // §5.3: inputs -4.0, -3.75, ..., +3.75 -> d = 0.5, q = 0,1,1,2,2,...,15,15,15.
        let mut x = [0f32; QK];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.25;
        }
        let mut y = [0u8; 18];
        q4_0_block(&x, &mut y);
        assert_eq!(&y[..2], &[0x00, 0x38]);
        let mut out = [0f32; QK];
        q4_0_dequant(&y, &mut out);
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 3.5);
    }

    #[test]
    fn zero_blocks_keep_negative_zero() {
        let x = [0f32; QK];
        let mut a = [1u8; 18];
        q4_0_block(&x, &mut a);
        assert_eq!(&a[..2], &[0x00, 0x80]);
        assert!(a[2..].iter().all(|&b| b == 0x88));
        let mut b = [1u8; 22];
        q5_0_block(&x, &mut b);
        assert_eq!(&b[..6], &[0x00, 0x80, 0xff, 0xff, 0xff, 0xff]);
        assert!(b[6..].iter().all(|&v| v == 0));
        let mut c = [1u8; 34];
        q8_0_block(&x, &mut c);
        assert!(c.iter().all(|&v| v == 0));
    }

    #[test]
    fn roundf_matches_std() {
        let mut s: u32 = 1;
        for _ in 0..100_000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = ((s >> 8) as f32 / 65536.0 - 128.0) * 1.0001;
            assert_eq!(roundf_i32(v), v.round() as i32, "{v}");
        }
        for v in [
            0.5f32,
            -0.5,
            1.5,
            -1.5,
            0.49999997,
            -0.49999997,
            126.5,
            -127.5,
            0.0,
            -0.0,
        ] {
            assert_eq!(roundf_i32(v), v.round() as i32, "{v}");
        }
    }

    #[test]
    fn q8_0_rounds_half_away_from_zero() {
        // amax 127 -> d = 1, id = 1; 2.5 -> 3 and -2.5 -> -3 (roundf), not ties-to-even.
        let mut x = [0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        let mut y = [0u8; 34];
        q8_0_block(&x, &mut y);
        assert_eq!(y[3] as i8, 3);
        assert_eq!(y[4] as i8, -3);
    }
}
