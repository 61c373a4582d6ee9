//! [`Weights`] for grokit's own outputs, so the reference model can run a converted or quantized
//! checkpoint and `grokit compare` can measure it against the release: GGUF files (every type
//! grokit writes, split sets included) and safetensors (both layouts; bf16/f16/f32 and
//! compressed-tensors int8/int4). Each `get` decodes one tensor (or one expert) to f32 and
//! transposes it back to the release's `[in, out]` orientation.

use super::{ReferenceError, WeightTensor, Weights};
use crate::base::float::{bf16_bits_to_f32, decode_bf16_le, decode_f16_le, decode_f32_le};
use crate::base::DType;
use crate::gguf::{GgufSet, Value};
use crate::model::roles::{fill, parse_path};
use crate::model::{Config, Role};
use crate::quant::{ct, dequantize_row, GgmlType};
use crate::safetensors_io::StReader;
use crate::source::grok::{Checkpoint, OpenOptions};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

fn werr(path: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Weight {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    const T: usize = 32;
    for i0 in (0..rows).step_by(T) {
        for j0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                for j in j0..(j0 + T).min(cols) {
                    out[j * rows + i] = x[i * cols + j];
                }
            }
        }
    }
    out
}

/// Release-orientation result from a stored `[out, in]` (or untransposed) f32 matrix.
fn orient(role: Role, data: Vec<f32>, stored: [usize; 2]) -> WeightTensor {
    match role {
        Role::Embed => WeightTensor {
            shape: stored.to_vec(),
            data,
        },
        r if r.is_norm() => WeightTensor {
            shape: vec![stored[0] * stored[1]],
            data,
        },
        _ => WeightTensor {
            shape: vec![stored[1], stored[0]],
            data: transpose(&data, stored[0], stored[1]),
        },
    }
}

/// A GGUF file or split set written by `grokit convert`/`quantize`.
pub struct GgufWeights {
    set: GgufSet,
    /// Configuration from the `grok.*` metadata.
    pub config: Config,
}

fn kv_u64(set: &GgufSet, key: &str) -> Option<u64> {
    match set.get(key)? {
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        Value::I32(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn kv_f64(set: &GgufSet, key: &str) -> Option<f64> {
    match set.get(key)? {
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

impl GgufWeights {
    /// Open a GGUF (the first file of a split set).
    pub fn open(path: &Path) -> Result<GgufWeights, ReferenceError> {
        let p = path.display().to_string();
        let set = GgufSet::open(path).map_err(|e| werr(&p, e.to_string()))?;
        match set.get("general.architecture") {
            Some(Value::String(a)) if a == "grok" => {}
            other => {
                return Err(werr(
                    &p,
                    format!("general.architecture is {other:?}, expected \"grok\""),
                ))
            }
        }
        let mut c = Config::grok1();
        let need = |k: &str| kv_u64(&set, k).ok_or_else(|| werr(&p, format!("missing {k}")));
        c.emb_size = need("grok.embedding_length")?;
        c.num_layers = need("grok.block_count")?;
        c.ffn_size = need("grok.feed_forward_length")?;
        c.num_q_heads = need("grok.attention.head_count")?;
        c.num_kv_heads = kv_u64(&set, "grok.attention.head_count_kv").unwrap_or(c.num_q_heads);
        c.num_experts = need("grok.expert_count")?;
        c.num_selected_experts = need("grok.expert_used_count")?;
        c.key_size =
            kv_u64(&set, "grok.rope.dimension_count").unwrap_or(c.emb_size / c.num_q_heads.max(1));
        c.vocab_size = match set.tensor("token_embd.weight") {
            Some((_, t)) => t.shape.first().copied().unwrap_or(0),
            None => return Err(werr(&p, "no token_embd.weight")),
        };
        if let Some(x) = kv_u64(&set, "grok.context_length") {
            c.max_seq_len = x;
        }
        if let Some(x) = kv_f64(&set, "grok.attention.layer_norm_rms_epsilon") {
            c.rms_norm_eps = x;
        }
        if let Some(x) = kv_f64(&set, "grok.rope.freq_base") {
            c.rope_base = x;
        }
        // Stored as f32: read back the f64 constants when the f32 value matches, so a GGUF
        // runs with exactly the multipliers the release uses.
        let exact = |stored: Option<f64>, full: f64| match stored {
            Some(s) if (s as f32) == (full as f32) => full,
            Some(s) => s,
            None => full,
        };
        c.embedding_multiplier_scale = exact(
            kv_f64(&set, "grok.embedding_scale"),
            c.embedding_multiplier_scale,
        );
        c.attn_output_multiplier = exact(
            kv_f64(&set, "grok.attention.output_scale"),
            c.attn_output_multiplier,
        );
        c.attn_logit_cap = exact(
            kv_f64(&set, "grok.attn_logit_softcapping"),
            c.attn_logit_cap,
        );
        c.output_multiplier_scale =
            exact(kv_f64(&set, "grok.logit_scale"), c.output_multiplier_scale);
        Ok(GgufWeights { set, config: c })
    }
}

fn decode_rows(
    ty: GgmlType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    path: &str,
) -> Result<Vec<f32>, ReferenceError> {
    let rb = ty
        .row_bytes(cols as u64)
        .ok_or_else(|| werr(path, format!("row of {cols} does not fit {ty}")))?
        as usize;
    if bytes.len() < rb * rows {
        return Err(werr(
            path,
            format!("{} bytes for {rows} rows of {rb}", bytes.len()),
        ));
    }
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(cols.max(1))
        .enumerate()
        .try_for_each(|(r, o)| {
            dequantize_row(ty, &bytes[r * rb..(r + 1) * rb], o)
                .map_err(|e| werr(path, e.to_string()))
        })?;
    Ok(out)
}

impl Weights for GgufWeights {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let (role, layer) =
            parse_path(path).ok_or_else(|| werr(path, "not a Grok-1 parameter path"))?;
        let name = fill(role.info().gguf, layer, None);
        let (_, t) = self
            .set
            .tensor(&name)
            .ok_or_else(|| werr(path, format!("GGUF has no tensor {name}")))?;
        let data = self
            .set
            .tensor_data(&name)
            .ok_or_else(|| werr(path, format!("GGUF tensor {name} has no data")))?;
        let dims: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let (rows, cols, skip) = match (dims.as_slice(), expert) {
            ([e, o, i], Some(x)) if x < *e => (*o, *i, x * *o),
            ([_, _, _], _) => {
                return Err(werr(
                    path,
                    format!("{name} is an expert tensor: ask for one expert"),
                ))
            }
            ([o, i], None) => (*o, *i, 0),
            ([n], None) => (1, *n, 0),
            _ => return Err(werr(path, format!("{name} has shape {dims:?}"))),
        };
        let rb =
            t.ty.row_bytes(cols as u64)
                .ok_or_else(|| werr(path, "bad row"))? as usize;
        let start = skip * rb;
        let bytes = data
            .get(start..start + rows * rb)
            .ok_or_else(|| werr(path, "tensor data out of range"))?;
        let f = decode_rows(t.ty, bytes, rows, cols, path)?;
        Ok(orient(role, f, [rows, cols]))
    }
}

/// A safetensors directory or file written by `grokit convert --to safetensors`.
pub struct StWeights {
    reader: StReader,
    hf: bool,
    /// Configuration from `config.json`.
    pub config: Config,
}

impl StWeights {
    /// Open a directory (with `config.json`) or a `.safetensors` file inside one.
    pub fn open(path: &Path) -> Result<StWeights, ReferenceError> {
        let p = path.display().to_string();
        let reader = StReader::open(path).map_err(|e| werr(&p, e.to_string()))?;
        let dir: PathBuf = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let cj = dir.join("config.json");
        let text = std::fs::read(&cj).map_err(|e| werr(&p, format!("{}: {e}", cj.display())))?;
        let j: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| werr(&p, format!("{}: {e}", cj.display())))?;
        let u = |k: &str| j.get(k).and_then(serde_json::Value::as_u64);
        let f = |k: &str| j.get(k).and_then(serde_json::Value::as_f64);
        let mut c = Config::grok1();
        let need = |k: &str| u(k).ok_or_else(|| werr(&p, format!("config.json has no {k}")));
        c.vocab_size = need("vocab_size")?;
        c.emb_size = need("hidden_size")?;
        c.ffn_size = need("intermediate_size")?;
        c.num_layers = need("num_hidden_layers")?;
        c.num_q_heads = need("num_attention_heads")?;
        c.num_kv_heads = u("num_key_value_heads").unwrap_or(c.num_q_heads);
        c.key_size = u("head_dim").unwrap_or(c.emb_size / c.num_q_heads.max(1));
        c.num_experts = u("num_local_experts").or(u("num_experts")).unwrap_or(8);
        c.num_selected_experts = u("num_experts_per_tok").unwrap_or(2);
        for (k, slot) in [
            ("rms_norm_eps", &mut c.rms_norm_eps),
            ("rope_theta", &mut c.rope_base),
            ("attn_output_multiplier", &mut c.attn_output_multiplier),
            (
                "embedding_multiplier_scale",
                &mut c.embedding_multiplier_scale,
            ),
            ("output_multiplier_scale", &mut c.output_multiplier_scale),
            ("max_attn_value", &mut c.attn_logit_cap),
        ] {
            if let Some(v) = f(k) {
                *slot = v;
            }
        }
        let hf = reader.tensor("model.embed_tokens.weight").is_some();
        if !hf && reader.tensor("transformer.in_out_embed.weight").is_none() {
            return Err(werr(&p, "neither the hf (model.embed_tokens.weight) nor the jax (transformer.in_out_embed.weight) layout"));
        }
        Ok(StWeights {
            reader,
            hf,
            config: c,
        })
    }

    fn float(&self, name: &str, path: &str) -> Result<(Vec<f32>, Vec<usize>), ReferenceError> {
        let t = self
            .reader
            .tensor(name)
            .ok_or_else(|| werr(path, format!("no tensor {name}")))?;
        let b = self
            .reader
            .tensor_bytes(name)
            .map_err(|e| werr(path, e.to_string()))?;
        let n: usize = t.shape.iter().product::<u64>() as usize;
        let mut v = vec![0f32; n];
        match t.dtype {
            DType::F32 if b.len() == 4 * n => decode_f32_le(b, &mut v),
            DType::BF16 if b.len() == 2 * n => decode_bf16_le(b, &mut v),
            DType::F16 if b.len() == 2 * n => decode_f16_le(b, &mut v),
            d => {
                return Err(werr(
                    path,
                    format!("{name}: dtype {d} with {} bytes", b.len()),
                ))
            }
        }
        Ok((v, t.shape.iter().map(|&d| d as usize).collect()))
    }

    fn packed(&self, base: &str, path: &str) -> Result<(Vec<f32>, [usize; 2]), ReferenceError> {
        let (pn, sn, shn) = (
            format!("{base}.weight_packed"),
            format!("{base}.weight_scale"),
            format!("{base}.weight_shape"),
        );
        let shape_b = self
            .reader
            .tensor_bytes(&shn)
            .map_err(|e| werr(path, e.to_string()))?;
        if shape_b.len() != 8 {
            return Err(werr(path, format!("{shn} is not 2 x I32")));
        }
        let rows =
            i32::from_le_bytes([shape_b[0], shape_b[1], shape_b[2], shape_b[3]]).max(0) as usize;
        let cols =
            i32::from_le_bytes([shape_b[4], shape_b[5], shape_b[6], shape_b[7]]).max(0) as usize;
        let pt = self
            .reader
            .tensor(&pn)
            .ok_or_else(|| werr(path, format!("no {pn}")))?;
        let st = self
            .reader
            .tensor(&sn)
            .ok_or_else(|| werr(path, format!("no {sn}")))?;
        let words = pt.shape.get(1).copied().unwrap_or(0) as usize;
        let groups = st.shape.get(1).copied().unwrap_or(0) as usize;
        if rows == 0 || cols == 0 || words == 0 || groups == 0 || !cols.is_multiple_of(groups) {
            return Err(werr(
                path,
                format!("inconsistent compressed-tensors shapes for {base}"),
            ));
        }
        let bits = (32 * words / cols) as u32;
        let group = cols / groups;
        let pb = self
            .reader
            .tensor_bytes(&pn)
            .map_err(|e| werr(path, e.to_string()))?;
        let sb = self
            .reader
            .tensor_bytes(&sn)
            .map_err(|e| werr(path, e.to_string()))?;
        if pb.len() != rows * words * 4 || sb.len() != rows * groups * 2 {
            return Err(werr(
                path,
                format!("{base}: payload sizes do not match the shapes"),
            ));
        }
        let mut out = vec![0f32; rows * cols];
        out.par_chunks_mut(cols)
            .enumerate()
            .try_for_each(|(r, o)| {
                let w: Vec<i32> = pb[r * words * 4..(r + 1) * words * 4]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let s: Vec<f32> = sb[r * groups * 2..(r + 1) * groups * 2]
                    .chunks_exact(2)
                    .map(|c| bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                ct::ct_dequantize_row(bits, group, &w, &s, o).map_err(|e| werr(path, e.to_string()))
            })?;
        Ok((out, [rows, cols]))
    }
}

impl Weights for StWeights {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let (role, layer) =
            parse_path(path).ok_or_else(|| werr(path, "not a Grok-1 parameter path"))?;
        let info = role.info();
        if info.experts && expert.is_none() {
            return Err(werr(path, "an expert tensor: ask for one expert"));
        }
        let name = fill(
            if self.hf { info.hf } else { info.jax },
            layer,
            expert.map(|e| e as u64),
        );
        if self.reader.tensor(&name).is_some() {
            let (v, shape) = self.float(&name, path)?;
            let stored = match shape.as_slice() {
                [n] => [1, *n],
                [o, i] => [*o, *i],
                _ => return Err(werr(path, format!("{name} has shape {shape:?}"))),
            };
            return Ok(orient(role, v, stored));
        }
        let base = name.strip_suffix(".weight").unwrap_or(&name).to_string();
        let (v, stored) = self.packed(&base, path)?;
        Ok(orient(role, v, stored))
    }
}

/// Any model grokit can run: the release, a GGUF, or safetensors.
pub enum Model {
    /// The release's pickles.
    Release(Checkpoint),
    /// A GGUF file or split set.
    Gguf(GgufWeights),
    /// A safetensors directory or file.
    Safetensors(StWeights),
}

impl Model {
    /// Open by sniffing the path: a `.gguf` file, a directory/file with `.safetensors`, else the release.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Model, ReferenceError> {
        let p = path.display().to_string();
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            return Ok(Model::Gguf(GgufWeights::open(path)?));
        }
        let is_st = (path.is_file() && path.extension().is_some_and(|e| e == "safetensors"))
            || (path.is_dir()
                && (path.join("model.safetensors").exists()
                    || path.join("model.safetensors.index.json").exists()));
        if is_st {
            return Ok(Model::Safetensors(StWeights::open(path)?));
        }
        Checkpoint::open(path, opts)
            .map(Model::Release)
            .map_err(|e| werr(&p, e.to_string()))
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        match self {
            Model::Release(c) => &c.config,
            Model::Gguf(g) => &g.config,
            Model::Safetensors(s) => &s.config,
        }
    }
    /// The weights.
    pub fn weights(&self) -> &dyn Weights {
        match self {
            Model::Release(c) => c,
            Model::Gguf(g) => g,
            Model::Safetensors(s) => s,
        }
    }
    /// A short description of the format.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Release(_) => "release checkpoint",
            Model::Gguf(_) => "GGUF",
            Model::Safetensors(_) => "safetensors",
        }
    }
}
