//! Checking an opened checkpoint against the parameter table: dtype, shape, scale blocks,
//! trailing bytes, and for the real release the exact file sizes
//! (docs/formats/grok-checkpoint.md "Validation" and "File sizes"). Problems are collected,
//! not fail-fast, so `inspect` and `verify` can list them all; `convert` refuses to run on any.

use super::reader::{Checkpoint, Problem};
use crate::base::DType;
use crate::model::{Config, ParamSpec};
use crate::numpy::{ArrayRef, Stored};
use crate::pickle::writer::{write_array, write_quantized, ArraySpec, Payload};

impl Checkpoint {
    /// Every structural problem of the opened files.
    pub(super) fn check(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for t in &self.tensors {
            let mut p = |offset: Option<u64>, msg: String| {
                out.push(Problem {
                    file: t.file.clone(),
                    tensor: t.spec.path.clone(),
                    offset,
                    msg,
                })
            };
            let info = t.spec.role.info();
            match (&t.stored, info.quantized) {
                (Stored::Array(a), false) => {
                    if a.dtype != DType::F32 {
                        p(
                            Some(a.data.start),
                            format!("dtype {} (the release stores this as f32)", a.dtype),
                        );
                    }
                    if a.shape.dims() != t.spec.shape.as_slice() {
                        p(
                            Some(a.data.start),
                            format!("shape {} but the model needs {:?}", a.shape, t.spec.shape),
                        );
                    }
                }
                (Stored::Quantized { weight, scales }, true) => {
                    if weight.dtype != DType::I8 {
                        p(
                            Some(weight.data.start),
                            format!("weight dtype {} (expected i8)", weight.dtype),
                        );
                    }
                    if scales.dtype != DType::BF16 {
                        p(
                            Some(scales.data.start),
                            format!("scales dtype {} (expected bf16)", scales.dtype),
                        );
                    }
                    if weight.shape.dims() != t.spec.shape.as_slice() {
                        p(
                            Some(weight.data.start),
                            format!(
                                "weight shape {} but the model needs {:?}",
                                weight.shape, t.spec.shape
                            ),
                        );
                    } else if let Err(m) = scale_blocks(weight, scales) {
                        p(Some(scales.data.start), m);
                    } else if Some(scales.shape.dims()) != t.spec.scales_shape.as_deref() {
                        p(
                            Some(scales.data.start),
                            format!(
                                "scales shape {} differs from the release's {:?} (still readable)",
                                scales.shape,
                                t.spec.scales_shape.clone().unwrap_or_default()
                            ),
                        );
                    }
                }
                (Stored::Array(_), true) => p(
                    None,
                    "plain array where the release has QuantizedWeight8bit".into(),
                ),
                (Stored::Quantized { .. }, false) => p(
                    None,
                    "QuantizedWeight8bit where the release has a plain f32 array".into(),
                ),
            }
            if t.pickle_end != t.file_len {
                p(
                    Some(t.pickle_end),
                    format!(
                        "{} trailing bytes after the pickle's STOP",
                        t.file_len.saturating_sub(t.pickle_end)
                    ),
                );
            }
            // Only the full release has published sizes to hold the files to.
            let want = if self.config.is_grok1() {
                expected_file_size(&t.spec, &self.config)
            } else {
                t.file_len
            };
            if want != t.file_len {
                p(
                    None,
                    format!("file is {} bytes; the release's is {want}", t.file_len),
                );
            }
        }
        out
    }
}

/// The exact size `pickle.dump` gives a parameter with these shapes (computed by running the
/// CPython-exact writer into a sink), so any geometry's file sizes can be checked exactly.
pub fn expected_file_size(spec: &ParamSpec, config: &Config) -> u64 {
    let _ = config;
    let zeros = |len: u64| {
        move |w: &mut dyn std::io::Write| -> std::io::Result<()> {
            let z = [0u8; 1 << 16];
            let mut left = len;
            while left > 0 {
                let k = left.min(z.len() as u64) as usize;
                w.write_all(&z[..k])?;
                left -= k as u64;
            }
            Ok(())
        }
    };
    let n = |shape: &[u64], size: u64| shape.iter().product::<u64>() * size;
    let r = match &spec.scales_shape {
        None => {
            let len = n(&spec.shape, 4);
            let mut f = zeros(len);
            write_array(
                std::io::sink(),
                ArraySpec {
                    dtype: DType::F32,
                    shape: &spec.shape,
                    payload: Payload { len, write: &mut f },
                },
            )
        }
        Some(ss) => {
            let (wl, sl) = (n(&spec.shape, 1), n(ss, 2));
            let (mut fw, mut fs) = (zeros(wl), zeros(sl));
            write_quantized(
                std::io::sink(),
                ArraySpec {
                    dtype: DType::I8,
                    shape: &spec.shape,
                    payload: Payload {
                        len: wl,
                        write: &mut fw,
                    },
                },
                ArraySpec {
                    dtype: DType::BF16,
                    shape: ss,
                    payload: Payload {
                        len: sl,
                        write: &mut fs,
                    },
                },
            )
        }
    };
    r.unwrap_or(0)
}

/// Row blocks B of the scales: dim -2 of the scales, which must divide the weight's rows
/// (docs/formats/grok-checkpoint.md "Validation").
pub(crate) fn scale_blocks(weight: &ArrayRef, scales: &ArrayRef) -> Result<usize, String> {
    let (w, s) = (weight.shape.dims(), scales.shape.dims());
    if w.len() < 2 || s.len() != w.len() {
        return Err(format!(
            "scales shape {} does not fit weight shape {}",
            scales.shape, weight.shape
        ));
    }
    let n = w.len();
    let b = s[n - 2];
    let lead_ok = w[..n - 2] == s[..n - 2] && w[n - 1] == s[n - 1];
    if !lead_ok || b == 0 || w[n - 2] % b != 0 {
        return Err(format!(
            "scales shape {} does not fit weight shape {} (row blocks must divide the rows)",
            scales.shape, weight.shape
        ));
    }
    Ok(b as usize)
}
