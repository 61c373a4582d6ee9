//! Which tensors an importance matrix applies to, shared by `grokit quantize` and
//! `grokit convert --to gguf`: llama-quantize's rules (`llama_model_quantize_impl`), per tensor.
//!
//! - A tensor whose output type has a weighted encoder and whose name has an entry gets that
//!   entry's weights (per expert for the stacked `*_exps` tensors: expert `e`'s rows use the
//!   entry's `e`-th slice).
//! - No entry: quantized without weights and reported ("did not find weights"), unless the
//!   type cannot be made without them (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ1_*, Q2_K under
//!   Q2_K_S): then an error naming the tensor and the type.
//! - Entries whose widths or expert counts do not match the model are refused beforehand
//!   ([`crate::imatrix::Imatrix::check_model`]).
//!
//! The output file records the matrix as llama-quantize does: `quantize.imatrix.file`,
//! `quantize.imatrix.dataset`, `quantize.imatrix.entries_count`, `quantize.imatrix.chunks_count`.

use super::ConvertError;
use crate::gguf::Value;
use crate::imatrix::Imatrix;
use crate::quant::policy::{requires_imatrix, Preset, TensorClass};
use crate::quant::{self, GgmlType};

/// What the matrix does for one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightUse {
    /// The tensor is encoded with the entry's weights.
    pub apply: bool,
    /// A note for the report (no entry; experts without data).
    pub note: Option<String>,
}

/// Decide for one tensor that will be encoded to `out_ty`. `Err`: the tensor needs an importance
/// matrix and has none ([`ConvertError::NeedsImatrix`]).
pub fn weight_use(
    imatrix: Option<&Imatrix>,
    name: &str,
    out_ty: GgmlType,
    preset: Option<Preset>,
) -> Result<WeightUse, ConvertError> {
    let class = TensorClass::from_gguf_name(name).map(|(c, _)| c);
    let needed = class.is_some_and(|c| requires_imatrix(out_ty, c, preset));
    let entry = imatrix.and_then(|m| m.info(name));
    if needed && entry.is_none() {
        return Err(ConvertError::NeedsImatrix {
            tensor: name.to_string(),
            ty: out_ty,
            imatrix: imatrix.map(|m| m.path().to_path_buf()),
        });
    }
    if !quant::uses_weights(out_ty) {
        return Ok(WeightUse {
            apply: false,
            note: None,
        });
    }
    let Some(m) = imatrix else {
        return Ok(WeightUse {
            apply: false,
            note: None,
        });
    };
    let Some(e) = entry else {
        return Ok(WeightUse {
            apply: false,
            note: Some(format!(
                "no importance-matrix entry in {}: quantized without weights",
                m.path().display()
            )),
        });
    };
    let empty: Vec<usize> = (0..e.counts.len()).filter(|&j| e.counts[j] == 0).collect();
    let note = (!empty.is_empty() && m.format() == crate::imatrix::Format::Gguf).then(|| {
        format!(
            "importance matrix: {} of {} experts saw no calibration data (weights 1 for them): {:?}",
            empty.len(),
            e.counts.len(),
            empty
        )
    });
    Ok(WeightUse { apply: true, note })
}

/// The `quantize.imatrix.*` keys llama-quantize adds to a file quantized with a matrix.
/// `given` is the path as the user gave it (llama-quantize stores at most 127 bytes of it).
pub fn imatrix_kvs(m: &Imatrix, given: &str) -> Vec<(String, Value)> {
    let clip = |s: &str| {
        let mut end = s.len().min(127);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    };
    let mut kvs = vec![(
        "quantize.imatrix.file".to_string(),
        Value::String(clip(given)),
    )];
    if let Some(d) = m.datasets().first() {
        kvs.push((
            "quantize.imatrix.dataset".to_string(),
            Value::String(clip(d)),
        ));
    }
    kvs.push((
        "quantize.imatrix.entries_count".to_string(),
        Value::U32(u32::try_from(m.len()).unwrap_or(u32::MAX)),
    ));
    if m.chunk_count() > 0 {
        kvs.push((
            "quantize.imatrix.chunks_count".to_string(),
            Value::U32(m.chunk_count()),
        ));
    }
    kvs
}

/// The weights of one tensor's expert `e` (`None`: the whole entry for a 2-D tensor), from the
/// full entry of `n_mat · ne0` values.
pub fn expert_slice(w: &[f32], ne0: usize, e: Option<usize>) -> Option<&[f32]> {
    let e = e.unwrap_or(0);
    w.get(e * ne0..(e + 1) * ne0)
}
