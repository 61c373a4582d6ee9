//! L1 quantization codecs: ggml block types and compressed-tensors packing.
//!
//! Why this module exists: a GGUF file is only as good as its bytes. The encoders here are
//! ports of what ggml's `ggml_quantize_chunk` runs, bit for bit, so grokit's Q8_0, Q4_K_M or
//! IQ4_XS file equals what `llama-quantize` (x86-64, no FMA contraction) writes from the same
//! f32 rows, with or without an importance matrix: the reference encoders
//! (`quantize_row_*_ref`) without one, the weighted `quantize_row_*_impl` paths and the
//! i-quants with one. Golden SHA-256 vectors made with ggml itself (`golden_tests`) pin that.
//!
//! Layout:
//! - `types`: the ONE ggml type table (id, name, block geometry) shared with the GGUF code;
//!   `ftype`: the ONE llama file-type table (presets, `general.file_type`).
//! - `legacy`: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (Q8_1); `k_quants`: Q4_K Q5_K Q6_K Q8_K; `k_low`:
//!   Q2_K Q3_K; `kutil`/`k_lanes`: the shared K-quant fitting helpers; `weighted`: the
//!   importance-weighted forms of all of them.
//! - `iq4`: IQ4_NL IQ4_XS; `iq3`: IQ3_XXS IQ3_S; `iq2`: IQ2_XXS IQ2_XS IQ2_S; `iq_tables`:
//!   their codebooks (data); `iq_grid`: the lattice maps and neighbour lists derived from them.
//! - `grok`: the lossless int8 → Q8_0 transcode of the release's own int8 weights.
//! - `ct`: compressed-tensors `pack-quantized` int4/int8.
//! - `policy`: which type each tensor gets (`--quant` strings, llama-quantize's presets).
//!
//! Block layouts and the rounding rules that byte equality depends on: docs/formats/gguf-output.md
//! and docs/formats/iquants.md.
//!
//! The row API is allocation-free per block and single-threaded: callers parallelize over rows
//! (rayon), each with its own output buffer.

pub mod ct;
pub mod ftype;
pub mod grok;
mod iq2;
mod iq3;
mod iq4;
pub mod iq_grid;
pub mod iq_tables;
mod k_lanes;
mod k_low;
mod k_quants;
mod kutil;
mod legacy;
pub mod policy;
pub mod types;
mod weighted;

#[cfg(test)]
mod golden_tests;

pub use types::GgmlType;

use crate::base::float::{decode_f32_le, extend_f32_le};

/// Errors of the quantization codecs. `what` names the operation and type (e.g.
/// `"quantize Q4_K"`) so a caller can add the tensor name around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// A byte or element count does not match what the type's geometry requires.
    #[error("{what}: length mismatch: expected {expected}, got {got}")]
    LengthMismatch {
        /// Operation and type.
        what: String,
        /// Required length.
        expected: u64,
        /// Length supplied.
        got: u64,
    },
    /// A row length is not a multiple of the block (or group) size.
    #[error("{what}: {len} elements is not a multiple of the {block}-element block")]
    NotBlockAligned {
        /// Operation and type.
        what: String,
        /// Row length supplied.
        len: u64,
        /// Block size required.
        block: u64,
    },
    /// The type or parameter is not implemented by grokit.
    #[error("{what}: unsupported")]
    Unsupported {
        /// Operation and type (or parameter).
        what: String,
    },
    /// The type cannot be encoded without importance weights (IQ2_XXS, IQ2_XS).
    #[error("{what}: needs an importance matrix (pass --imatrix FILE)")]
    NeedsWeights {
        /// Operation and type.
        what: String,
    },
}

/// Run `f` over every `N`-element block of `x`, each writing `B` bytes appended to `out`.
#[inline]
fn enc<const N: usize, const B: usize>(
    x: &[f32],
    out: &mut Vec<u8>,
    f: impl Fn(&[f32; N], &mut [u8; B]),
) {
    let (xs, _) = x.as_chunks::<N>();
    let start = out.len();
    out.resize(start + xs.len() * B, 0);
    let (ys, _) = out[start..].as_chunks_mut::<B>();
    for (xb, yb) in xs.iter().zip(ys) {
        f(xb, yb);
    }
}

fn enc_bf16(x: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * x.len(), 0);
    let (ys, _) = out[start..].as_chunks_mut::<2>();
    for (y, &v) in ys.iter_mut().zip(x) {
        *y = crate::base::float::f32_to_bf16_bits(v).to_le_bytes();
    }
}

/// f32 → f16 (RNE) through `half`'s slice conversion (F16C when the CPU has it), 256 at a time.
fn enc_f16(x: &[f32], out: &mut Vec<u8>) {
    use half::slice::HalfFloatSliceExt;
    let start = out.len();
    out.resize(start + 2 * x.len(), 0);
    let mut tmp = [half::f16::ZERO; 256];
    for (xc, yc) in x.chunks(256).zip(out[start..].chunks_mut(512)) {
        let t = &mut tmp[..xc.len()];
        t.convert_from_f32_slice(xc);
        let (ys, _) = yc.as_chunks_mut::<2>();
        for (y, h) in ys.iter_mut().zip(t.iter()) {
            *y = h.to_bits().to_le_bytes();
        }
    }
}

/// Run `f` over every `B`-byte block of `bytes`, each decoding `N` values into `out`.
#[inline]
fn dec<const N: usize, const B: usize>(
    bytes: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; N]),
) {
    let (ys, _) = bytes.as_chunks::<B>();
    let (xs, _) = out.as_chunks_mut::<N>();
    for (yb, xb) in ys.iter().zip(xs) {
        f(yb, xb);
    }
}

/// Run `f` over every `N`-element block of `x` and its `N` weights, each writing `B` bytes.
#[inline]
fn enc_w<const N: usize, const B: usize>(
    x: &[f32],
    qw: &[f32],
    out: &mut Vec<u8>,
    f: impl Fn(&[f32; N], &[f32; N], &mut [u8; B]),
) {
    let (xs, _) = x.as_chunks::<N>();
    let (ws, _) = qw.as_chunks::<N>();
    let start = out.len();
    out.resize(start + xs.len() * B, 0);
    let (ys, _) = out[start..].as_chunks_mut::<B>();
    for ((xb, wb), yb) in xs.iter().zip(ws).zip(ys) {
        f(xb, wb, yb);
    }
}

/// Quantize one row (or any run of whole blocks) `x` to ggml type `ty`, appending the encoded
/// bytes to `out`: the bytes `ggml_quantize_chunk` writes without an importance matrix.
/// `x.len()` must be a multiple of the type's block. F32/F16/BF16 are accepted too
/// (little-endian; F16/BF16 round to nearest even).
///
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K,
/// Q6_K, Q8_K, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_S; IQ2_XXS and IQ2_XS need weights
/// ([`quantize_row_weighted`]).
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Result<(), QuantError> {
    quantize_row_weighted(ty, x, None, out)
}

/// Quantize with importance weights `qw` (one per element of `x`: the importance matrix's
/// entry for the tensor's input columns, or the slice of one expert), as llama-quantize does
/// with `--imatrix`; `None` is [`quantize_row`]. The bytes equal `ggml_quantize_chunk`'s with the
/// same weights. For Q4_0, Q4_1, Q5_0 and Q5_1 with weights, `x` must be exactly one row: their
/// weighting uses the row's mean square. Types without a weighted form (Q8_0, F16, …) ignore
/// the weights, as ggml does.
pub fn quantize_row_weighted(
    ty: GgmlType,
    x: &[f32],
    qw: Option<&[f32]>,
    out: &mut Vec<u8>,
) -> Result<(), QuantError> {
    let block = ty.block_elems();
    if !(x.len() as u64).is_multiple_of(block) {
        return Err(QuantError::NotBlockAligned {
            what: format!("quantize {ty}"),
            len: x.len() as u64,
            block,
        });
    }
    if let Some(w) = qw {
        if w.len() != x.len() {
            return Err(QuantError::LengthMismatch {
                what: format!("quantize {ty}: importance weights"),
                expected: x.len() as u64,
                got: w.len() as u64,
            });
        }
    }
    use GgmlType as T;
    match (ty, qw) {
        (T::F32, _) => extend_f32_le(out, x),
        (T::F16, _) => enc_f16(x, out),
        (T::BF16, _) => enc_bf16(x, out),
        (T::Q4_0, None) => enc(x, out, legacy::q4_0_block),
        (T::Q4_1, None) => enc(x, out, legacy::q4_1_block),
        (T::Q5_0, None) => enc(x, out, legacy::q5_0_block),
        (T::Q5_1, None) => enc(x, out, legacy::q5_1_block),
        (T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1, Some(w)) => weighted::legacy_row_w(ty, x, w, out),
        (T::Q8_0, _) => enc(x, out, legacy::q8_0_block),
        (T::Q8_1, _) => enc(x, out, legacy::q8_1_block),
        (T::Q2_K, None) => enc(x, out, k_low::q2_k_block),
        (T::Q3_K, None) => enc(x, out, k_low::q3_k_block),
        (T::Q4_K, None) => enc(x, out, k_quants::q4_k_block),
        (T::Q5_K, None) => enc(x, out, k_quants::q5_k_block),
        (T::Q6_K, None) => enc(x, out, k_quants::q6_k_block),
        (T::Q2_K, Some(w)) => enc_w(x, w, out, weighted::q2_k_block_w),
        (T::Q3_K, Some(w)) => enc_w(x, w, out, weighted::q3_k_block_w),
        (T::Q4_K, Some(w)) => enc_w(x, w, out, weighted::q4_k_block_w),
        (T::Q5_K, Some(w)) => enc_w(x, w, out, weighted::q5_k_block_w),
        (T::Q6_K, Some(w)) => enc_w(x, w, out, weighted::q6_k_block_w),
        (T::Q8_K, _) => enc(x, out, k_quants::q8_k_block),
        (T::IQ4_NL, w) => iq4::iq4_nl_run(x, w, out),
        (T::IQ4_XS, None) => enc(x, out, |a, y| iq4::iq4_xs_block(a, None, y)),
        (T::IQ4_XS, Some(w)) => enc_w(x, w, out, |a, b, y| iq4::iq4_xs_block(a, Some(b), y)),
        (T::IQ3_XXS, None) => enc(x, out, |a, y| iq3::iq3_xxs_block(a, None, y)),
        (T::IQ3_XXS, Some(w)) => enc_w(x, w, out, |a, b, y| iq3::iq3_xxs_block(a, Some(b), y)),
        (T::IQ3_S, None) => enc(x, out, |a, y| iq3::iq3_s_block(a, None, y)),
        (T::IQ3_S, Some(w)) => enc_w(x, w, out, |a, b, y| iq3::iq3_s_block(a, Some(b), y)),
        (T::IQ2_S, None) => enc(x, out, |a, y| iq2::iq2_s_block(a, None, y)),
        (T::IQ2_S, Some(w)) => enc_w(x, w, out, |a, b, y| iq2::iq2_s_block(a, Some(b), y)),
        (T::IQ2_XS, Some(w)) => enc_w(x, w, out, iq2::iq2_xs_block),
        (T::IQ2_XXS, Some(w)) => enc_w(x, w, out, iq2::iq2_xxs_block),
        (T::IQ2_XS | T::IQ2_XXS, None) => {
            return Err(QuantError::NeedsWeights {
                what: format!("quantize {ty}"),
            })
        }
        (T::IQ1_S | T::IQ1_M | T::I8 | T::I16 | T::I32 | T::I64 | T::F64, _) => {
            return Err(QuantError::Unsupported {
                what: format!("quantize {ty}"),
            })
        }
    }
    Ok(())
}

/// Decode `bytes` of ggml type `ty` into `out` (one value per element). `out.len()` must be a
/// multiple of the block and `bytes.len()` exactly the encoded size of `out.len()` elements.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let block = ty.block_elems();
    let n = out.len() as u64;
    let what = || format!("dequantize {ty}");
    if !n.is_multiple_of(block) {
        return Err(QuantError::NotBlockAligned {
            what: what(),
            len: n,
            block,
        });
    }
    let expected = ty.row_bytes(n).ok_or_else(|| QuantError::NotBlockAligned {
        what: what(),
        len: n,
        block,
    })?;
    if bytes.len() as u64 != expected {
        return Err(QuantError::LengthMismatch {
            what: what(),
            expected,
            got: bytes.len() as u64,
        });
    }
    use GgmlType as T;
    match ty {
        T::F32 => decode_f32_le(bytes, out),
        T::F16 => {
            use half::slice::HalfFloatSliceExt;
            let mut tmp = [half::f16::ZERO; 256];
            for (yc, oc) in bytes.chunks(512).zip(out.chunks_mut(256)) {
                let t = &mut tmp[..oc.len()];
                for (h, c) in t.iter_mut().zip(yc.as_chunks::<2>().0) {
                    *h = half::f16::from_bits(u16::from_le_bytes(*c));
                }
                t.convert_to_f32_slice(oc);
            }
        }
        T::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes(*c)) << 16);
            }
        }
        T::Q4_0 => dec(bytes, out, legacy::q4_0_dequant),
        T::Q4_1 => dec(bytes, out, legacy::q4_1_dequant),
        T::Q5_0 => dec(bytes, out, legacy::q5_0_dequant),
        T::Q5_1 => dec(bytes, out, legacy::q5_1_dequant),
        T::Q8_0 => dec(bytes, out, legacy::q8_0_dequant),
        T::Q8_1 => dec(bytes, out, legacy::q8_1_dequant),
        T::Q2_K => dec(bytes, out, k_low::q2_k_dequant),
        T::Q3_K => dec(bytes, out, k_low::q3_k_dequant),
        T::Q4_K => dec(bytes, out, k_quants::q4_k_dequant),
        T::Q5_K => dec(bytes, out, k_quants::q5_k_dequant),
        T::Q6_K => dec(bytes, out, k_quants::q6_k_dequant),
        T::Q8_K => dec(bytes, out, k_quants::q8_k_dequant),
        T::IQ4_NL => dec(bytes, out, iq4::iq4_nl_dequant),
        T::IQ4_XS => dec(bytes, out, iq4::iq4_xs_dequant),
        T::IQ3_XXS => dec(bytes, out, iq3::iq3_xxs_dequant),
        T::IQ3_S => dec(bytes, out, iq3::iq3_s_dequant),
        T::IQ2_XXS => dec(bytes, out, iq2::iq2_xxs_dequant),
        T::IQ2_XS => dec(bytes, out, iq2::iq2_xs_dequant),
        T::IQ2_S => dec(bytes, out, iq2::iq2_s_dequant),
        T::IQ1_S | T::IQ1_M | T::I8 | T::I16 | T::I32 | T::I64 | T::F64 => {
            return Err(QuantError::Unsupported { what: what() })
        }
    }
    Ok(())
}

/// True if [`quantize_row_weighted`] and [`dequantize_row`] implement `ty` (IQ2_XXS and IQ2_XS
/// only with weights).
pub fn is_supported(ty: GgmlType) -> bool {
    !matches!(
        ty,
        GgmlType::I8
            | GgmlType::I16
            | GgmlType::I32
            | GgmlType::I64
            | GgmlType::F64
            | GgmlType::IQ1_S
            | GgmlType::IQ1_M
    )
}

/// True if `ty` cannot be encoded without importance weights (IQ2_XXS, IQ2_XS: ggml's encoders
/// require them; [`quantize_row`] refuses).
pub fn needs_weights(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::IQ2_XXS | GgmlType::IQ2_XS)
}

/// True if the weighted encoder of `ty` reads the whole row (Q4_0, Q4_1, Q5_0, Q5_1: their
/// weighting uses the row's mean square), so weighted input must be cut at row boundaries.
pub fn weighted_needs_whole_rows(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1
    )
}

/// True if `ty`'s encoder uses importance weights when given them (every type with a
/// `quantize_*_impl` path in ggml; Q8_0, Q8_K and the float types ignore them).
pub fn uses_weights(ty: GgmlType) -> bool {
    ty.is_quantized() && !matches!(ty, GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8_K)
}

/// True if `ty` can be asked for as the stored type of a weight (`--type`, `--quant`): the
/// codecs implement it and it is not one of ggml's activation-only formats (Q8_1, Q8_K). The
/// CLI lists `--type`'s values from [`types::GGML_TYPES`] through this, so a type added to the
/// table and the codecs appears there without touching the CLI.
pub fn is_weight_type(ty: GgmlType) -> bool {
    is_supported(ty) && !matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K)
}
