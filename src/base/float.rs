//! f32 <-> bf16/f16 helpers over little-endian byte slices.
//!
//! The release's payloads sit at odd file offsets (the embedding at 151, int8 weights at 201),
//! so nothing here casts `&[u8]` to `&[f32]`; values are decoded with `from_le_bytes`.
//! Rounding is the `half` crate's round-to-nearest-even, the same rule as ml_dtypes/numpy and
//! ggml's `GGML_FP32_TO_BF16` / `GGML_FP32_TO_FP16`.

use half::f16;

/// f32 -> bf16 bits, round to nearest even, NaN kept quiet (bit 6 set): the same rule as
/// ml_dtypes, the `half` crate and ggml's `GGML_FP32_TO_BF16`, written branch-light so
/// conversion loops vectorize (the one implementation: the bf16 encoders use it too).
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[inline]
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// f32 -> f16 bits, round to nearest even.
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// f16 bits -> f32 (exact).
#[inline]
pub fn f16_bits_to_f32(b: u16) -> f32 {
    f16::from_bits(b).to_f32()
}

/// Round an f32 to the nearest bf16 value, returned as f32.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Decode little-endian f32 bytes into `out` (lengths must match: `bytes.len() == 4 * out.len()`).
pub fn decode_f32_le(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Decode little-endian bf16 bytes into f32s.
pub fn decode_bf16_le(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// Decode little-endian f16 bytes into f32s.
pub fn decode_f16_le(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// Append f32s as little-endian f32 bytes.
pub fn extend_f32_le(out: &mut Vec<u8>, xs: &[f32]) {
    out.reserve(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Append f32s as little-endian bf16 bytes (RNE).
pub fn extend_bf16_le(out: &mut Vec<u8>, xs: &[f32]) {
    out.reserve(xs.len() * 2);
    for &x in xs {
        out.extend_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
    }
}

/// Append f32s as little-endian f16 bytes (RNE).
pub fn extend_f16_le(out: &mut Vec<u8>, xs: &[f32]) {
    out.reserve(xs.len() * 2);
    for &x in xs {
        out.extend_from_slice(&f32_to_f16_bits(x).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    #[test]
    fn rounding() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits_to_f32(0x3f80), 1.0);
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::NAN)).is_nan());
        // The fast path agrees with the `half` crate on a sweep of bit patterns.
        let mut x = 0x0001_2345u32;
        for _ in 0..200_000 {
            x = x.wrapping_mul(2654435761).wrapping_add(12345);
            let f = f32::from_bits(x);
            let want = bf16::from_f32(f).to_bits();
            let got = f32_to_bf16_bits(f);
            if f.is_nan() {
                assert!(bf16_bits_to_f32(got).is_nan());
            } else {
                assert_eq!(got, want, "{f:e} ({x:#x})");
            }
        }
        for f in [
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-45,
        ] {
            assert_eq!(f32_to_bf16_bits(f), bf16::from_f32(f).to_bits(), "{f:e}");
        }
        let mut v = Vec::new();
        extend_bf16_le(&mut v, &[1.0, -2.0]);
        let mut o = [0f32; 2];
        decode_bf16_le(&v, &mut o);
        assert_eq!(o, [1.0, -2.0]);
    }
}
