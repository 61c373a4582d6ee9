//! [`Weights`] for grokit's own outputs, so the reference model can run a converted or quantized
//! checkpoint and `grokit compare` can measure it against the release: GGUF files (every type
//! grokit writes, split sets included) and safetensors (both layouts; bf16/f16/f32 and
//! compressed-tensors int8/int4). Each `get` decodes one tensor (or one expert) to f32 and
//! transposes it back to the release's `[in, out]` orientation; [`Weights::matrix`] decodes
//! bands of rows straight from the map instead (a band of release columns is a band of the
//! stored `[out, in]` rows, handed to the matmul untransposed) and drops the decoded pages from
//! the resident set, so RSS stays bounded by a band whatever the file size.

use super::band::{transpose, RowDecoder, Rowwise, WholeMatrix, RELEASE_MARGIN};
use super::{ReferenceError, WeightMatrix, WeightTensor, Weights};
use crate::base::float::{bf16_bits_to_f32, decode_bf16_le, decode_f16_le, decode_f32_le};
use crate::base::DType;
use crate::gguf::{GgufFile, GgufSet, Value};
use crate::model::roles::{fill, parse_path};
use crate::model::{Config, Role};
use crate::quant::{ct, dequantize_row, GgmlType};
use crate::safetensors_io::StReader;
use crate::source::grok::{Checkpoint, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};

fn werr(path: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Weight {
        path: path.to_string(),
        reason: reason.into(),
    }
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

/// One GGUF matrix (one expert of a stacked tensor): rows decoded from the map on demand,
/// their pages dropped from the resident set once decoded.
struct GgufRows<'a> {
    file: &'a GgufFile,
    ty: GgmlType,
    /// The matrix's bytes (`rows * rb`).
    bytes: &'a [u8],
    /// Absolute file offset of `bytes`.
    offset: u64,
    /// Bytes per stored row.
    rb: usize,
    rows: usize,
    cols: usize,
    path: String,
}

impl RowDecoder for GgufRows<'_> {
    fn stored(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError> {
        let (rb, cols) = (self.rb, self.cols);
        let bytes = self
            .bytes
            .get(r.start * rb..r.end * rb)
            .ok_or_else(|| werr(&self.path, format!("rows {r:?} outside the tensor data")))?;
        for (src, o) in bytes
            .chunks_exact(rb.max(1))
            .zip(out.chunks_exact_mut(cols))
        {
            dequantize_row(self.ty, src, o).map_err(|e| werr(&self.path, e.to_string()))?;
        }
        Ok(())
    }
    fn done(&self, r: Range<usize>, settled: bool) {
        let margin = if settled { RELEASE_MARGIN } else { 0 };
        let start = (self.offset + (r.start * self.rb) as u64).saturating_sub(margin);
        let end = (self.offset + (r.end * self.rb) as u64)
            .saturating_add(margin)
            .min(self.file.bytes().len() as u64);
        if end > start {
            self.file.release(start, end - start);
        }
    }
}

impl GgufWeights {
    /// The role of `path` and the rows of its GGUF tensor (one expert's, when asked).
    fn locate<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<(Role, GgufRows<'a>), ReferenceError> {
        let (role, layer) =
            parse_path(path).ok_or_else(|| werr(path, "not a Grok-1 parameter path"))?;
        let name = fill(role.info().gguf, layer, None);
        let (file, t) = self
            .set
            .tensor(&name)
            .ok_or_else(|| werr(path, format!("GGUF has no tensor {name}")))?;
        let data = file.tensor_data(t);
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
                .ok_or_else(|| werr(path, format!("row of {cols} does not fit {}", t.ty)))?
                as usize;
        let start = skip * rb;
        let bytes = data
            .get(start..start + rows * rb)
            .ok_or_else(|| werr(path, "tensor data out of range"))?;
        Ok((
            role,
            GgufRows {
                file,
                ty: t.ty,
                bytes,
                offset: t.offset + start as u64,
                rb,
                rows,
                cols,
                path: path.to_string(),
            },
        ))
    }
}

impl Weights for GgufWeights {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let (role, dec) = self.locate(path, expert)?;
        let [rows, cols] = dec.stored();
        let f = Rowwise::new(dec, false).rows(0..rows)?;
        Ok(orient(role, f, [rows, cols]))
    }

    fn matrix<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<Box<dyn WeightMatrix + 'a>, ReferenceError> {
        let (role, dec) = self.locate(path, expert)?;
        if role.is_norm() {
            return Ok(Box::new(WholeMatrix::new(path, self.get(path, expert)?)?));
        }
        Ok(Box::new(Rowwise::new(dec, role != Role::Embed)))
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

    /// The rows of float tensor `name`: `[rows, cols]` as stored (a 1-D tensor is one row).
    fn float<'a>(&'a self, name: &str, path: &str) -> Result<StRows<'a>, ReferenceError> {
        let t = self
            .reader
            .tensor(name)
            .ok_or_else(|| werr(path, format!("no tensor {name}")))?;
        let b = self
            .reader
            .tensor_bytes(name)
            .map_err(|e| werr(path, e.to_string()))?;
        let dims: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let (rows, cols) = match dims.as_slice() {
            [n] => (1, *n),
            [o, i] => (*o, *i),
            _ => return Err(werr(path, format!("{name} has shape {dims:?}"))),
        };
        let size = match t.dtype {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            d => return Err(werr(path, format!("{name}: dtype {d}"))),
        };
        if Some(b.len()) != rows.checked_mul(cols).and_then(|n| n.checked_mul(size)) {
            return Err(werr(
                path,
                format!("{name}: dtype {} with {} bytes", t.dtype, b.len()),
            ));
        }
        Ok(StRows {
            reader: &self.reader,
            name: name.to_string(),
            path: path.to_string(),
            rows,
            cols,
            kind: StKind::Float {
                dtype: t.dtype,
                bytes: b,
            },
        })
    }

    /// The rows of a compressed-tensors packed matrix `{base}.weight_packed` (`[rows, cols]`
    /// after unpacking).
    fn packed<'a>(&'a self, base: &str, path: &str) -> Result<StRows<'a>, ReferenceError> {
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
        Ok(StRows {
            reader: &self.reader,
            name: pn,
            path: path.to_string(),
            rows,
            cols,
            kind: StKind::Packed {
                scales_name: sn,
                bits,
                group,
                words,
                groups,
                packed: pb,
                scales: sb,
            },
        })
    }

    /// The role of `path` and the stored rows of its tensor (one expert's, when asked).
    fn locate<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<(Role, StRows<'a>), ReferenceError> {
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
            return Ok((role, self.float(&name, path)?));
        }
        let base = name.strip_suffix(".weight").unwrap_or(&name).to_string();
        Ok((role, self.packed(&base, path)?))
    }
}

/// How a safetensors matrix stores its rows.
enum StKind<'a> {
    /// F32, BF16 or F16 values.
    Float { dtype: DType, bytes: &'a [u8] },
    /// compressed-tensors int8/int4: `words` i32 per row, `groups` bf16 scales per row.
    Packed {
        scales_name: String,
        bits: u32,
        group: usize,
        words: usize,
        groups: usize,
        packed: &'a [u8],
        scales: &'a [u8],
    },
}

/// One safetensors matrix: rows decoded from the map on demand, their pages dropped from the
/// resident set once decoded. Sizes were checked against the shape when it was located.
struct StRows<'a> {
    reader: &'a StReader,
    /// The tensor holding the values (`.weight_packed` for packed matrices).
    name: String,
    path: String,
    rows: usize,
    cols: usize,
    kind: StKind<'a>,
}

impl RowDecoder for StRows<'_> {
    fn stored(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError> {
        let cols = self.cols;
        let oob = || werr(&self.path, format!("rows {r:?} outside {}", self.name));
        match &self.kind {
            StKind::Float { dtype, bytes } => {
                let size = if *dtype == DType::F32 { 4 } else { 2 };
                let b = bytes
                    .get(r.start * cols * size..r.end * cols * size)
                    .ok_or_else(oob)?;
                match dtype {
                    DType::F32 => decode_f32_le(b, out),
                    DType::BF16 => decode_bf16_le(b, out),
                    _ => decode_f16_le(b, out),
                }
            }
            StKind::Packed {
                bits,
                group,
                words,
                groups,
                packed,
                scales,
                ..
            } => {
                let (wb, sb) = (words * 4, groups * 2);
                let pb = packed.get(r.start * wb..r.end * wb).ok_or_else(oob)?;
                let sc = scales.get(r.start * sb..r.end * sb).ok_or_else(oob)?;
                for ((p, s), o) in pb
                    .chunks_exact(wb)
                    .zip(sc.chunks_exact(sb))
                    .zip(out.chunks_exact_mut(cols))
                {
                    let w: Vec<i32> = p
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let s: Vec<f32> = s
                        .chunks_exact(2)
                        .map(|c| bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
                        .collect();
                    ct::ct_dequantize_row(*bits, *group, &w, &s, o)
                        .map_err(|e| werr(&self.path, e.to_string()))?;
                }
            }
        }
        Ok(())
    }
    fn done(&self, r: Range<usize>, settled: bool) {
        let margin = if settled { RELEASE_MARGIN } else { 0 };
        let (a, b) = (r.start as u64, r.end as u64);
        match &self.kind {
            StKind::Float { dtype, .. } => {
                let rb = (self.cols * if *dtype == DType::F32 { 4 } else { 2 }) as u64;
                self.reader.release(&self.name, a * rb..b * rb, margin);
            }
            StKind::Packed {
                scales_name,
                words,
                groups,
                ..
            } => {
                let (wb, sb) = ((words * 4) as u64, (groups * 2) as u64);
                self.reader.release(&self.name, a * wb..b * wb, margin);
                self.reader.release(scales_name, a * sb..b * sb, margin);
            }
        }
    }
}

impl Weights for StWeights {
    fn get(&self, path: &str, expert: Option<usize>) -> Result<WeightTensor, ReferenceError> {
        let (role, dec) = self.locate(path, expert)?;
        let stored = dec.stored();
        let v = Rowwise::new(dec, false).rows(0..stored[0])?;
        Ok(orient(role, v, stored))
    }

    fn matrix<'a>(
        &'a self,
        path: &str,
        expert: Option<usize>,
    ) -> Result<Box<dyn WeightMatrix + 'a>, ReferenceError> {
        let (role, dec) = self.locate(path, expert)?;
        if role.is_norm() {
            return Ok(Box::new(WholeMatrix::new(path, self.get(path, expert)?)?));
        }
        Ok(Box::new(Rowwise::new(dec, role != Role::Embed)))
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
