//! Encoding bands of exact f32 output rows into the bytes of each output type, with lossless
//! copies of the release's int8 where the target allows it, and error statistics for lossy ones
//! ([`Stats`], which `quantize` uses too).

use super::band::Band;
use super::plan::Encode;
use crate::base::float::{extend_bf16_le, extend_f16_le, extend_f32_le, f32_to_bf16_bits};
use crate::base::DType;
use crate::quant::{self, GgmlType, QuantError};

/// Error statistics of an encoding against the exact values (`convert`: the release's exact
/// dequantized weights; `quantize`: the input file's decoded values), and how many blocks
/// were copied losslessly.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Elements compared.
    pub n: u64,
    /// Sum of squared errors.
    pub sse: f64,
    /// Max absolute error (infinite when a NaN appeared on one side only).
    pub max_abs: f32,
    /// Blocks/groups copied losslessly from the release's int8.
    pub lossless: u64,
    /// Blocks/groups re-quantized from exact values.
    pub requantized: u64,
}

impl Stats {
    /// Merge another band's stats.
    pub fn add(&mut self, o: &Stats) {
        self.n += o.n;
        self.sse += o.sse;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.lossless += o.lossless;
        self.requantized += o.requantized;
    }
    /// Root-mean-square error.
    pub fn rms(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.sse / self.n as f64).sqrt()
        }
    }
    /// Add the errors of `got` against `exact` (and their count). Bit-identical pairs have no
    /// error (so a NaN or infinity kept as is costs nothing).
    pub fn add_errors(&mut self, exact: &[f32], got: &[f32]) {
        for (&a, &b) in exact.iter().zip(got) {
            if a.to_bits() != b.to_bits() {
                self.add_diff((a - b).abs());
            }
        }
        self.n += exact.len() as u64;
    }
    /// Count one absolute error `d` into the sum of squares and the maximum (a NaN makes the
    /// maximum infinite and leaves the sum alone); the caller adds the element count to `n`.
    #[inline]
    pub fn add_diff(&mut self, d: f32) {
        if d.is_nan() {
            self.max_abs = f32::INFINITY;
            return;
        }
        self.sse += f64::from(d) * f64::from(d);
        if d > self.max_abs {
            self.max_abs = d;
        }
    }
}

/// Whether to measure errors (costs a decode per row for quantized types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Compute RMS / max error against the exact values.
    Errors,
    /// Skip (speed).
    No,
}

/// True when every element of `s` equals the first (a block shares one release scale).
fn uniform(s: &[u16]) -> bool {
    s.iter().all(|&x| x == s[0])
}

/// Append the encoding of every row of `band` to `out`. `qw`: importance weights of the
/// band's matrix (one per column), applied to ggml types that have a weighted encoder.
pub fn encode_band(
    band: &Band,
    e: &Encode,
    measure: Measure,
    qw: Option<&[f32]>,
    out: &mut Vec<u8>,
    stats: &mut Stats,
) -> Result<(), QuantError> {
    let len = band.len;
    let has_q = !band.q.is_empty();
    let mut scratch = Vec::new();
    let mut words: Vec<i32> = Vec::new();
    let mut scales: Vec<f32> = Vec::new();
    for r in 0..band.n {
        let x = &band.f32[r * len..(r + 1) * len];
        let (q, s) = if has_q {
            (
                &band.q[r * len..(r + 1) * len],
                &band.scale[r * len..(r + 1) * len],
            )
        } else {
            (&[][..], &[][..])
        };
        match e {
            Encode::Float(DType::F32) => extend_f32_le(out, x),
            Encode::Float(DType::BF16) => {
                extend_bf16_le(out, x);
                if measure == Measure::Errors && !has_q {
                    scratch.clear();
                    scratch.extend(x.iter().map(|&v| crate::base::float::round_bf16(v)));
                    stats.add_errors(x, &scratch);
                }
            }
            Encode::Float(DType::F16) => {
                extend_f16_le(out, x);
                if measure == Measure::Errors {
                    scratch.clear();
                    scratch.extend(x.iter().map(|&v| {
                        crate::base::float::f16_bits_to_f32(crate::base::float::f32_to_f16_bits(v))
                    }));
                    stats.add_errors(x, &scratch);
                }
            }
            Encode::Float(d) => {
                return Err(QuantError::Unsupported {
                    what: format!("{d} output"),
                })
            }
            Encode::Ggml(ty) => {
                let start = out.len();
                if *ty == GgmlType::Q8_0 && has_q {
                    for ((xb, qb), sb) in x.chunks(32).zip(q.chunks(32)).zip(s.chunks(32)) {
                        if uniform(sb) && quant::grok::q8_0_block_from_int8(qb, sb[0], out) {
                            stats.lossless += 1;
                        } else {
                            quant::quantize_row(GgmlType::Q8_0, xb, out)?;
                            stats.requantized += 1;
                        }
                    }
                } else {
                    quant::quantize_row_weighted(*ty, x, qw, out)?;
                    stats.requantized += len as u64 / ty.block_elems().max(1);
                }
                if measure == Measure::Errors {
                    scratch.clear();
                    scratch.resize(len, 0.0);
                    quant::dequantize_row(*ty, &out[start..], &mut scratch)?;
                    stats.add_errors(x, &scratch);
                }
            }
            Encode::CtPacked { bits, group } | Encode::CtScale { bits, group } => {
                words.clear();
                scales.clear();
                let lossless = *bits == 8 && has_q && s.chunks(*group).all(uniform);
                if lossless {
                    let gs: Vec<f32> = s
                        .chunks(*group)
                        .map(|c| crate::base::float::bf16_bits_to_f32(c[0]))
                        .collect();
                    quant::ct::ct_int8_from_grok(q, &gs, *group, &mut words, &mut scales)?;
                    stats.lossless += (len / group) as u64;
                } else {
                    quant::ct::ct_quantize_row_weighted(
                        *bits,
                        *group,
                        x,
                        qw,
                        &mut words,
                        &mut scales,
                    )?;
                    stats.requantized += (len / group) as u64;
                }
                if matches!(e, Encode::CtPacked { .. }) {
                    for w in &words {
                        out.extend_from_slice(&w.to_le_bytes());
                    }
                    if measure == Measure::Errors && !lossless {
                        scratch.clear();
                        scratch.resize(len, 0.0);
                        quant::ct::ct_dequantize_row(*bits, *group, &words, &scales, &mut scratch)?;
                        stats.add_errors(x, &scratch);
                    }
                } else {
                    for &sc in &scales {
                        out.extend_from_slice(&f32_to_bf16_bits(sc).to_le_bytes());
                    }
                }
            }
            Encode::Bytes(_) => {}
        }
    }
    Ok(())
}
