//! Lossless Q8_0 from Grok-1's own int8 weights (docs/formats/ggml-quants.md "Lossless Q8_0 from the release's int8").
//!
//! Why this is lossless: a Q8_0 block is just `(d: f16, qs: [i8; 32])` decoded as `qs[j]·d`,
//! and nothing in the format requires `max|qs| = 127`. The release stores every weight as
//! `q: int8` times a bf16 scale `s` that is constant over any aligned 32-element run of a GGUF
//! row (scales are per output channel, or per 768-/4096-element input segment, all multiples
//! of 32). So a block can carry `d = s` and `qs = q` verbatim, provided
//!
//! 1. `s` is exactly representable in f16. bf16 has an 8-bit significand and f16 an 11-bit
//!    one, so every bf16 value inside f16's exponent range is exact; grokit accepts **normal
//!    and subnormal** f16 alike (and zero): the test is simply "bf16 → f32 → f16 → f32 gives
//!    the same value", which is exact by construction, and ggml decodes subnormal halves
//!    exactly. Infinite or NaN scales are rejected.
//! 2. no `q` equals −128. The reference encoder never produces −128 (|q| ≤ 127), so such a
//!    block would put llama.cpp's SIMD kernels (which assume the symmetric range, e.g. via
//!    `sign`/`abs` tricks) on untested ground.
//!
//! The decoded value `q·f16(s)` is then exactly `q·s` in f32 (an 8-bit integer times an
//! 8-bit significand needs at most 16 bits) — the release's weight before the bf16 rounding
//! its own JAX forward pass applies. Blocks failing either check fall back to
//! `quantize_row_q8_0_ref` on the exact f32 values `q·s` (lossy only in those blocks).

use super::{quantize_row, GgmlType, QuantError};
use crate::base::float::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_f16_bits};

/// bf16 of the release's weights, `RNE(q · s)` for int8 `q` sharing one f32 scale `s`,
/// appended to `out` as little-endian bytes (`2 · q.len()` of them). `q · s` is exact in f32
/// (an 8-bit integer times bf16's 8-bit significand), so this is the bf16 rounding of the
/// exact weight, bit for bit what [`crate::base::float::f32_to_bf16_bits`] gives; written over
/// fixed 32-element chunks so the compiler vectorizes it (the conversion's hot loop for bf16).
pub fn int8_scaled_to_bf16_le(q: &[i8], s: f32, out: &mut Vec<u8>) {
    use crate::base::float::f32_to_bf16_bits as rne;
    out.reserve(2 * q.len());
    let (qc, qt) = q.as_chunks::<32>();
    for q in qc {
        let mut o = [0u8; 64];
        for (o, &q) in o.chunks_exact_mut(2).zip(q) {
            let v = rne(f32::from(q) * s);
            o[0] = v as u8;
            o[1] = (v >> 8) as u8;
        }
        out.extend_from_slice(&o);
    }
    for &q in qt {
        out.extend_from_slice(&rne(f32::from(q) * s).to_le_bytes());
    }
}

/// If the bf16 scale (bits) is exactly an f16, its f16 bits; `None` otherwise (also for
/// inf/NaN).
pub fn bf16_scale_as_f16(scale_bf16_bits: u16) -> Option<u16> {
    let s = bf16_bits_to_f32(scale_bf16_bits);
    if !s.is_finite() {
        return None;
    }
    let h = f32_to_f16_bits(s);
    // Compare bit patterns through f32 so that -0.0 stays -0.0.
    (f16_bits_to_f32(h).to_bits() == s.to_bits()).then_some(h)
}

/// Append one lossless Q8_0 block (34 bytes: `d = f16(scale)`, `qs = q` verbatim) for 32 int8
/// values sharing the bf16 scale `scale_bf16_bits`, and return true. Returns false (and
/// appends nothing) if `q.len() != 32`, the scale is not exactly an f16, or any `q` is −128;
/// the caller then falls back to [`quantize_row`] on the f32 values (see
/// [`q8_0_row_from_int8`], which does both).
pub fn q8_0_block_from_int8(q: &[i8], scale_bf16_bits: u16, out: &mut Vec<u8>) -> bool {
    if q.len() != 32 || q.contains(&i8::MIN) {
        return false;
    }
    let Some(h) = bf16_scale_as_f16(scale_bf16_bits) else {
        return false;
    };
    out.extend_from_slice(&h.to_le_bytes());
    out.extend(q.iter().map(|&v| v as u8));
    true
}

/// Counts of a lossless transcode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LosslessStats {
    /// Blocks copied verbatim.
    pub exact_blocks: u64,
    /// Blocks re-quantized with the reference Q8_0 encoder (scale not an f16, or a −128).
    pub fallback_blocks: u64,
}

/// Transcode one row of int8 weights to Q8_0, appending to `out`. Element `k` uses scale
/// `scales_bf16[k / scale_group]`; `scale_group` must be a multiple of 32 (a whole row for
/// per-channel scales) and `q.len()` a multiple of 32. Blocks that cannot be copied losslessly
/// are re-quantized from the exact f32 values `q·s`.
pub fn q8_0_row_from_int8(
    q: &[i8],
    scales_bf16: &[u16],
    scale_group: usize,
    out: &mut Vec<u8>,
) -> Result<LosslessStats, QuantError> {
    let what = || "Q8_0 from int8".to_string();
    if !q.len().is_multiple_of(32) {
        return Err(QuantError::NotBlockAligned {
            what: what(),
            len: q.len() as u64,
            block: 32,
        });
    }
    if scale_group == 0 || !scale_group.is_multiple_of(32) {
        return Err(QuantError::NotBlockAligned {
            what: what(),
            len: scale_group as u64,
            block: 32,
        });
    }
    let groups = q.len().div_ceil(scale_group);
    if scales_bf16.len() != groups {
        return Err(QuantError::LengthMismatch {
            what: what(),
            expected: groups as u64,
            got: scales_bf16.len() as u64,
        });
    }
    out.reserve(q.len() / 32 * 34);
    let mut st = LosslessStats::default();
    let mut xf = [0f32; 32];
    for (b, blk) in q.chunks_exact(32).enumerate() {
        let s = scales_bf16[b * 32 / scale_group];
        if q8_0_block_from_int8(blk, s, out) {
            st.exact_blocks += 1;
        } else {
            let sf = bf16_bits_to_f32(s);
            for (o, &v) in xf.iter_mut().zip(blk) {
                *o = f32::from(v) * sf;
            }
            quantize_row(GgmlType::Q8_0, &xf, out)?;
            st.fallback_blocks += 1;
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    #[test]
    fn int8_to_bf16_equals_the_scalar_rounding() {
        use crate::base::float::f32_to_bf16_bits;
        let q: Vec<i8> = (0..300).map(|k| ((k * 53) % 256) as u8 as i8).collect();
        // scales with low mantissa bits set, a subnormal, an infinite and a NaN scale
        for s in [0.0123f32, -3.3e-5, 1.0e-40, 7.7e31, f32::INFINITY, f32::NAN] {
            let s = crate::base::float::round_bf16(s);
            for len in [0usize, 5, 32, 33, 64, 300] {
                let mut out = vec![1u8; 3];
                int8_scaled_to_bf16_le(&q[..len], s, &mut out);
                assert_eq!(out.drain(..3).collect::<Vec<_>>(), [1, 1, 1]);
                assert_eq!(out.len(), 2 * len);
                for (k, &qq) in q[..len].iter().enumerate() {
                    let want = f32_to_bf16_bits(f32::from(qq) * s);
                    assert_eq!(
                        u16::from_le_bytes([out[2 * k], out[2 * k + 1]]),
                        want,
                        "s {s} k {k}"
                    );
                }
            }
        }
    }

    use super::*;
    use crate::base::float::f32_to_bf16_bits;
    use crate::quant::dequantize_row;

    #[test]
    fn exact_scales_copy_verbatim() {
        let q: Vec<i8> = (0..32).map(|i| (i * 7 - 100) as i8).collect();
        for s in [
            0.0123f32,
            1.5,
            1.5 * 2f32.powi(-20), /* f16 subnormal, exact */
            0.0,
            -2.0,
        ] {
            let sb = f32_to_bf16_bits(s);
            let mut out = Vec::new();
            assert!(q8_0_block_from_int8(&q, sb, &mut out), "{s}");
            assert_eq!(out.len(), 34);
            let mut y = [0f32; 32];
            dequantize_row(GgmlType::Q8_0, &out, &mut y).unwrap();
            for (a, &b) in y.iter().zip(&q) {
                assert_eq!(*a, f32::from(b) * bf16_bits_to_f32(sb));
            }
        }
    }

    #[test]
    fn rejects_unrepresentable_and_minus_128() {
        let mut q = [1i8; 32];
        let mut out = Vec::new();
        // 2^-30 is below f16's subnormal range; 1e5 overflows f16.
        assert!(!q8_0_block_from_int8(
            &q,
            f32_to_bf16_bits(2f32.powi(-30)),
            &mut out
        ));
        assert!(!q8_0_block_from_int8(&q, f32_to_bf16_bits(1.0e5), &mut out));
        assert!(!q8_0_block_from_int8(&q, 0x7fc0, &mut out)); // NaN
        q[3] = -128;
        assert!(!q8_0_block_from_int8(&q, f32_to_bf16_bits(1.0), &mut out));
        assert!(!q8_0_block_from_int8(
            &q[..31],
            f32_to_bf16_bits(1.0),
            &mut out
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn row_transcode_with_fallback() {
        let q: Vec<i8> = (0..128).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let mut q2 = q.clone();
        q2[70] = -128;
        let scales = [f32_to_bf16_bits(0.01), f32_to_bf16_bits(0.02)];
        let mut out = Vec::new();
        let st = q8_0_row_from_int8(&q2, &scales, 64, &mut out).unwrap();
        assert_eq!(
            st,
            LosslessStats {
                exact_blocks: 3,
                fallback_blocks: 1
            }
        );
        assert_eq!(out.len(), 4 * 34);
        assert!(q8_0_row_from_int8(&q2, &scales[..1], 64, &mut out).is_err());
        assert!(q8_0_row_from_int8(&q2, &scales, 48, &mut out).is_err());
    }
}
