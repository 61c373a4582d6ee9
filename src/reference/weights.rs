//! [`Weights`] for the release reader, and [`ModelDims`] from the release's configuration.
//!
//! Why an adapter: the reference model only needs "f32 values of this parameter (or of this
//! expert)", while `source::grok::Checkpoint` knows files, pickles and int8 blocks. Each call
//! maps the shard, dequantizes exactly (int8 × bf16 is exact in f32; row blocks in parallel)
//! and unmaps, so the model
//! never holds more than the tensor it is using.
//!
//! Big matrices go through [`Weights::matrix`] instead: an int8 matrix (one expert) is read
//! once with `pread` (201 MB at Grok-1's widths) and dequantized one band of rows or columns at
//! a time; an f32 array (the 3.2 GB embedding) is read one band of rows at a time, straight
//! from the file, so no more than a band of it is ever in memory.

use super::band::{RowDecoder, Rowwise};
use super::{ModelDims, ReferenceError, WeightMatrix, WeightTensor, Weights};
use crate::base::float::{bf16_bits_to_f32, decode_f32_le};
use crate::base::DType;
use crate::model::Config;
use crate::numpy::Stored;
use crate::source::grok::{dequant_matrix_rows, Checkpoint, OwnedMatrix, SourceError, Tensor};
use rayon::prelude::*;
use std::ops::Range;

/// Rows dequantized per rayon task.
const DEQUANT_ROWS: usize = 64;

/// The release tensor of parameter `path`.
fn find<'c>(ck: &'c Checkpoint, path: &str) -> Result<&'c Tensor, ReferenceError> {
    ck.by_path(path).ok_or_else(|| ReferenceError::Weight {
        path: path.to_string(),
        reason: format!("not in checkpoint {}", ck.dir.display()),
    })
}

/// A reader error while fetching parameter `path`.
fn weight_err(path: &str, e: SourceError) -> ReferenceError {
    ReferenceError::Weight {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

impl Weights for Checkpoint {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let t = find(self, path)?;
        let err = |e: SourceError| weight_err(path, e);
        if t.scales().is_none() {
            let (shape, data) = self.read_f32(t, expert).map_err(err)?;
            return Ok(WeightTensor { shape, data });
        }
        // int8: dequantize row blocks in parallel (a Grok-1 expert matrix is 201M values).
        // pread, not a map: a file truncated while being read is an error, not a SIGBUS.
        let om = self.matrix_owned(t, expert).map_err(err)?;
        let m = om.view();
        let mut data = vec![0f32; m.rows * m.cols];
        if m.cols > 0 {
            data.par_chunks_mut(DEQUANT_ROWS * m.cols)
                .enumerate()
                .for_each(|(i, chunk)| {
                    let r0 = i * DEQUANT_ROWS;
                    dequant_matrix_rows(&m, r0..r0 + chunk.len() / m.cols, chunk);
                });
        }
        Ok(WeightTensor {
            shape: vec![m.rows, m.cols],
            data,
        })
    }

    fn matrix<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<Box<dyn WeightMatrix + 'a>, ReferenceError> {
        let t = find(self, path)?;
        let err = |e: SourceError| weight_err(path, e);
        match &t.stored {
            Stored::Quantized { .. } => {
                let raw = self.matrix_owned(t, expert).map_err(err)?;
                if raw.blocks == 0
                    || !raw.rows.is_multiple_of(raw.blocks)
                    || raw.weight.len() != raw.rows * raw.cols
                    || raw.scales.len() != 2 * raw.blocks * raw.cols
                {
                    return Err(ReferenceError::Weight {
                        path: path.to_string(),
                        reason: "int8 payload does not match its shape".into(),
                    });
                }
                Ok(Box::new(Rowwise::new(Int8Rows(raw), false)))
            }
            Stored::Array(a) if expert.is_none() && a.dtype == DType::F32 => {
                let (rows, cols) = match a.shape.dims() {
                    [r, c] => (*r as usize, *c as usize),
                    // not a matrix: let the caller report the shape
                    _ => {
                        return Ok(Box::new(super::band::WholeMatrix::new(
                            path,
                            self.get(path, expert)?,
                        )?))
                    }
                };
                let len = a.data.end.saturating_sub(a.data.start);
                if Some(len) != (rows as u64).checked_mul(cols as u64 * 4) {
                    return Err(ReferenceError::Weight {
                        path: path.to_string(),
                        reason: format!("{len} payload bytes for f32 [{rows}, {cols}]"),
                    });
                }
                Ok(Box::new(Rowwise::new(
                    F32Rows {
                        ck: self,
                        t,
                        path: path.to_string(),
                        start: a.data.start,
                        dims: [rows, cols],
                    },
                    false,
                )))
            }
            // wrong dtype or an expert of a plain array: `get` says why
            Stored::Array(_) => Ok(Box::new(super::band::WholeMatrix::new(
                path,
                self.get(path, expert)?,
            )?)),
        }
    }
}

/// One int8 matrix (one expert) of the release held raw; rows or column bands dequantized on
/// demand, exactly as [`dequant_matrix_rows`] does (`q · bf16 scale`, exact in f32).
struct Int8Rows(OwnedMatrix);

impl RowDecoder for Int8Rows {
    fn stored(&self) -> [usize; 2] {
        [self.0.rows, self.0.cols]
    }
    fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError> {
        dequant_matrix_rows(&self.0.view(), r, out);
        Ok(())
    }
    fn decode_cols(
        &self,
        r: Range<usize>,
        c: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), ReferenceError> {
        let m = &self.0;
        let (cols, w) = (m.cols, c.len());
        let bh = m.rows / m.blocks.max(1);
        if w == 0 {
            return Ok(());
        }
        for (i, o) in r.zip(out.chunks_exact_mut(w)) {
            let b = i / bh.max(1);
            let q = &m.weight[i * cols + c.start..i * cols + c.end];
            let s = &m.scales[2 * (b * cols + c.start)..2 * (b * cols + c.end)];
            for ((o, &q), s) in o.iter_mut().zip(q).zip(s.chunks_exact(2)) {
                *o = f32::from(q as i8) * bf16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
            }
        }
        Ok(())
    }
}

/// A plain f32 array of the release (the embedding), rows read from the file on demand with
/// `pread`: nothing but the requested rows is ever in memory.
struct F32Rows<'a> {
    ck: &'a Checkpoint,
    t: &'a Tensor,
    path: String,
    start: u64,
    dims: [usize; 2],
}

impl RowDecoder for F32Rows<'_> {
    fn stored(&self) -> [usize; 2] {
        self.dims
    }
    fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError> {
        let row_bytes = self.dims[1] as u64 * 4;
        let b = self
            .ck
            .read_at(
                self.t,
                self.start + r.start as u64 * row_bytes,
                out.len() * 4,
            )
            .map_err(|e| ReferenceError::Weight {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        decode_f32_le(&b, out);
        Ok(())
    }
}

impl ModelDims {
    /// The dims of a release configuration (checked by [`ModelDims::validate`] when used).
    pub fn from_config(c: &Config) -> Result<ModelDims, ReferenceError> {
        let u = |x: u64, what: &str| {
            usize::try_from(x)
                .map_err(|_| ReferenceError::Input(format!("config {what} {x} too large")))
        };
        Ok(ModelDims {
            vocab: u(c.vocab_size, "vocab_size")?,
            d_model: u(c.emb_size, "emb_size")?,
            n_layers: u(c.num_layers, "num_layers")?,
            n_q_heads: u(c.num_q_heads, "num_q_heads")?,
            n_kv_heads: u(c.num_kv_heads, "num_kv_heads")?,
            head_dim: u(c.key_size, "key_size")?,
            n_experts: u(c.num_experts, "num_experts")?,
            top_k: u(c.num_selected_experts, "num_selected_experts")?,
            ffn: u(c.ffn_size, "ffn_size")?,
            rms_eps: c.rms_norm_eps as f32,
            rope_base: c.rope_base as f32,
            attn_cap: c.attn_logit_cap as f32,
            emb_mult: c.embedding_multiplier_scale as f32,
            out_mult: c.output_multiplier_scale as f32,
            attn_mult: c.attn_output_multiplier as f32,
            pad_id: c.pad_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grok1_config_gives_grok1_dims() {
        assert_eq!(
            ModelDims::from_config(&Config::grok1()).unwrap(),
            ModelDims::grok1()
        );
    }
}
