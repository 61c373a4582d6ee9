//! [`Weights`] for the release reader, and [`ModelDims`] from the release's configuration.
//!
//! Why an adapter: the reference model only needs "f32 values of this parameter (or of this
//! expert)", while `source::grok::Checkpoint` knows files, pickles and int8 blocks. Each call
//! maps the shard, dequantizes exactly (int8 × bf16 is exact in f32; row blocks in parallel)
//! and unmaps, so the model
//! never holds more than the tensor it is using.

use super::{ModelDims, ReferenceError, WeightTensor, Weights};
use crate::model::Config;
use crate::source::grok::{dequant_matrix_rows, Checkpoint, SourceError};
use rayon::prelude::*;

/// Rows dequantized per rayon task.
const DEQUANT_ROWS: usize = 64;

impl Weights for Checkpoint {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let t = self.by_path(path).ok_or_else(|| ReferenceError::Weight {
            path: path.to_string(),
            reason: format!("not in checkpoint {}", self.dir.display()),
        })?;
        let err = |e: SourceError| ReferenceError::Weight {
            path: path.to_string(),
            reason: e.to_string(),
        };
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
