//! [`Weights`] for safetensors written by `grokit convert --to safetensors`, both layouts (`hf`,
//! `jax`; docs/formats/safetensors-output.md): float tensors (bf16/f16/f32) and
//! compressed-tensors `pack-quantized` int8/int4.
//!
//! Safetensors stores every matrix `[out, in]` (one tensor per expert), so a matrix or a band of
//! its output rows is a slice of the map: [`Layout::Rows`] for floats, [`Layout::Ct`] for packed
//! words with their group scales. Dropping a piece drops its pages from the resident set, unless
//! the caller lets the files stay resident ([`StWeights::set_keep_resident`]).
//!
//! `config.json` is read with a size cap; every key the forward pass uses must hold the JSON
//! type it needs (a `head_dim` of 16.9 or a multiplier written as the string `"NaN"` is an error
//! naming the key, not a silent default).

use super::super::store::{
    check_cols, page_release, weight_err, Bytes, Layout, Loaded, MatrixInfo, WeightId, Weights,
};
use super::super::{ModelDims, ReferenceError};
use crate::base::limits::CKPT_MAX_CONFIG_BYTES;
use crate::base::DType;
use crate::model::keys::{read_config, KeyFormat, KeyValue};
use crate::model::roles::fill;
use crate::model::Config;
use crate::quant::{ct, GgmlType};
use crate::safetensors_io::StReader;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Pages around a dropped piece that are dropped too: above Linux's fault-around window.
const RELEASE_MARGIN: u64 = 1 << 20;

/// A safetensors directory or file, with the configuration and checked dims of its
/// `config.json`.
pub struct StWeights {
    reader: StReader,
    hf: bool,
    /// Configuration from `config.json`.
    pub config: Config,
    /// The dims, checked against the tensors.
    pub dims: ModelDims,
    keep_resident: AtomicBool,
}

fn meta(file: &Path, key: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Metadata {
        file: file.display().to_string(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The element type of float or scale dtype `d` in ggml's terms.
fn ggml_of(d: DType) -> Option<GgmlType> {
    match d {
        DType::F32 => Some(GgmlType::F32),
        DType::F16 => Some(GgmlType::F16),
        DType::BF16 => Some(GgmlType::BF16),
        _ => None,
    }
}

/// The configuration a grokit `config.json` describes.
fn read_config_json(cj: &Path) -> Result<Config, ReferenceError> {
    let text = crate::io::read_capped(cj, CKPT_MAX_CONFIG_BYTES)
        .map_err(|e| meta(cj, "(file)", e.to_string()))?
        .ok_or_else(|| {
            meta(
                cj,
                "(file)",
                format!("larger than {CKPT_MAX_CONFIG_BYTES} bytes"),
            )
        })?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| meta(cj, "(file)", e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| meta(cj, "(file)", "not a JSON object"))?;
    // Every key through the one key table (model::keys), as convert writes them; a present
    // key that is not a number of the right kind (16.9 layers, "NaN") is an error naming it.
    read_config(KeyFormat::Hf, &|k| {
        obj.get(k).filter(|v| !v.is_null()).map(KeyValue::from_json)
    })
    .map_err(|e| {
        super::key_error(&cj.display().to_string(), e, &|k| {
            obj.get(k).map(|v| v.to_string())
        })
    })
}

impl StWeights {
    /// Open a directory (with `config.json`) or a `.safetensors` file inside one, and check its
    /// dims against its tensors.
    pub fn open(path: &Path) -> Result<StWeights, ReferenceError> {
        let p = path.display().to_string();
        let reader = StReader::open(path).map_err(|e| ReferenceError::Open {
            file: p.clone(),
            source: Box::new(e),
        })?;
        let dir: PathBuf = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let cj = dir.join("config.json");
        let config = read_config_json(&cj)?;
        let hf = reader.tensor("model.embed_tokens.weight").is_some();
        if !hf && reader.tensor("transformer.in_out_embed.weight").is_none() {
            return Err(ReferenceError::Open {
                file: p,
                source: "neither the hf (model.embed_tokens.weight) nor the jax (transformer.in_out_embed.weight) layout".into(),
            });
        }
        let w = StWeights {
            reader,
            hf,
            dims: ModelDims::from_config_unchecked(&config),
            config,
            keep_resident: AtomicBool::new(false),
        };
        super::verify_shapes(&w, &w.dims, &cj.display().to_string(), KeyFormat::Hf)?;
        Ok(w)
    }

    /// The files read (shards; the index and `config.json` are beside them).
    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        self.reader.files().map(Path::to_path_buf).collect()
    }

    /// Bytes of tensor data in the mapped files.
    pub fn mapped_bytes(&self) -> u64 {
        self.reader.total_size()
    }

    /// Keep the pages of used weights resident (see [`super::GgufWeights::set_keep_resident`]).
    pub fn set_keep_resident(&self, keep: bool) {
        self.keep_resident.store(keep, Ordering::Relaxed);
    }

    /// The stored rows of `id`'s tensor.
    fn locate(&self, id: WeightId) -> Result<StRows, ReferenceError> {
        let info = id.role.info();
        if info.experts != id.expert.is_some() {
            return Err(weight_err(id, "expert index mismatch"));
        }
        let name = fill(
            if self.hf { info.hf } else { info.jax },
            id.layer.map(|l| l as u64),
            id.expert.map(|e| e as u64),
        );
        match self.reader.tensor(&name) {
            Some(_) => self.float(id, name),
            None => {
                let base = name.strip_suffix(".weight").unwrap_or(&name).to_string();
                self.packed(id, &base)
            }
        }
    }

    fn float(&self, id: WeightId, name: String) -> Result<StRows, ReferenceError> {
        let t = self
            .reader
            .tensor(&name)
            .ok_or_else(|| weight_err(id, format!("no tensor {name}")))?;
        let u = |x: u64| usize::try_from(x).map_err(|_| weight_err(id, "dimension too large"));
        let (n, k) = match t.shape.as_slice() {
            [len] => (1, u(*len)?),
            [o, i] => (u(*o)?, u(*i)?),
            s => return Err(weight_err(id, format!("{name} has shape {s:?}"))),
        };
        let ty =
            ggml_of(t.dtype).ok_or_else(|| weight_err(id, format!("{name}: dtype {}", t.dtype)))?;
        let rb = k
            .checked_mul(if ty == GgmlType::F32 { 4 } else { 2 })
            .ok_or_else(|| weight_err(id, "row too large"))?;
        Ok(StRows {
            name,
            scales: None,
            n,
            k,
            rb,
            layout: Layout::Rows(ty),
        })
    }

    fn packed(&self, id: WeightId, base: &str) -> Result<StRows, ReferenceError> {
        let (pn, sn, shn) = (
            format!("{base}.weight_packed"),
            format!("{base}.weight_scale"),
            format!("{base}.weight_shape"),
        );
        let shape_b = self
            .reader
            .tensor_bytes(&shn)
            .map_err(|e| weight_err(id, format!("{base}: no float or packed tensor ({e})")))?;
        let [a0, a1, a2, a3, b0, b1, b2, b3] = shape_b[..] else {
            return Err(weight_err(id, format!("{shn} is not 2 × I32")));
        };
        let dim = |x: i32| usize::try_from(x).map_err(|_| weight_err(id, format!("{shn}: {x}")));
        let n = dim(i32::from_le_bytes([a0, a1, a2, a3]))?;
        let k = dim(i32::from_le_bytes([b0, b1, b2, b3]))?;
        let (pt, st) = match (self.reader.tensor(&pn), self.reader.tensor(&sn)) {
            (Some(p), Some(s)) => (p, s),
            _ => return Err(weight_err(id, format!("{pn} or {sn} is missing"))),
        };
        let words = match pt.shape.as_slice() {
            [r, w] if *r == n as u64 => usize::try_from(*w).unwrap_or(0),
            s => return Err(weight_err(id, format!("{pn} has shape {s:?} for {n} rows"))),
        };
        let groups = match st.shape.as_slice() {
            [r, g] if *r == n as u64 => usize::try_from(*g).unwrap_or(0),
            s => return Err(weight_err(id, format!("{sn} has shape {s:?} for {n} rows"))),
        };
        let bits = [4u32, 8]
            .into_iter()
            .find(|&b| k > 0 && ct::packed_words(b, k).ok() == Some(words))
            .ok_or_else(|| {
                weight_err(
                    id,
                    format!("{words} words do not pack {k} values at 4 or 8 bits"),
                )
            })?;
        if groups == 0 || !k.is_multiple_of(groups) {
            return Err(weight_err(
                id,
                format!("{groups} scale groups do not divide {k}"),
            ));
        }
        let scale_ty =
            ggml_of(st.dtype).ok_or_else(|| weight_err(id, format!("{sn}: dtype {}", st.dtype)))?;
        let ss = if scale_ty == GgmlType::F32 { 4 } else { 2 };
        Ok(StRows {
            name: pn,
            scales: Some((sn, groups * ss)),
            n,
            k,
            rb: words * 4,
            layout: Layout::Ct {
                bits,
                group: k / groups,
                scale_ty,
            },
        })
    }

    fn bytes(
        &self,
        id: WeightId,
        name: &str,
        rb: usize,
        r: &Range<usize>,
    ) -> Result<&[u8], ReferenceError> {
        let b = self
            .reader
            .tensor_bytes(name)
            .map_err(|e| weight_err(id, e))?;
        let (s, e) = (r.start.checked_mul(rb), r.end.checked_mul(rb));
        match (s, e) {
            (Some(s), Some(e)) if e <= b.len() => Ok(&b[s..e]),
            _ => Err(weight_err(id, format!("rows {r:?} outside {name}"))),
        }
    }
}

/// Where one matrix's rows are: the values tensor, the scales tensor of a packed matrix (and its
/// bytes per row), the stored `[n, k]`, bytes per row of values, and the layout.
struct StRows {
    name: String,
    scales: Option<(String, usize)>,
    n: usize,
    k: usize,
    rb: usize,
    layout: Layout,
}

impl Weights for StWeights {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        if id.role.is_norm() {
            return Err(weight_err(id, "a vector, not a matrix"));
        }
        let r = self.locate(id)?;
        let per_row = r.rb + r.scales.as_ref().map_or(0, |s| s.1);
        Ok(MatrixInfo {
            k: r.k,
            n: r.n,
            bytes: r.n as u64 * per_row as u64,
            bandable: true,
        })
    }

    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        let r = self.locate(id)?;
        check_cols(id, &cols, r.n)?;
        let data = self.bytes(id, &r.name, r.rb, &cols)?;
        let scales = match &r.scales {
            Some((sn, sb)) => self.bytes(id, sn, *sb, &cols)?,
            None => &[][..],
        };
        let (a, b) = (cols.start as u64, cols.end as u64);
        let reader = &self.reader;
        let (name, rb, sc) = (r.name.clone(), r.rb as u64, r.scales.clone());
        let release = move || {
            reader.release(&name, a * rb..b * rb, RELEASE_MARGIN);
            if let Some((sn, sb)) = sc {
                let sb = sb as u64;
                reader.release(&sn, a * sb..b * sb, RELEASE_MARGIN);
            }
        };
        Ok(Loaded {
            k: r.k,
            cols,
            layout: r.layout,
            data: Bytes::Borrowed(data),
            scales: Bytes::Borrowed(scales),
            on_drop: page_release(self.keep_resident.load(Ordering::Relaxed), release),
        })
    }

    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        let r = self.locate(id)?;
        let Layout::Rows(ty) = r.layout else {
            return Err(weight_err(id, "a packed matrix, not a vector"));
        };
        if r.n != 1 {
            return Err(weight_err(
                id,
                format!("shape [{}, {}] is not a vector", r.n, r.k),
            ));
        }
        let b = self.bytes(id, &r.name, r.rb, &(0..1))?;
        let mut v = vec![0f32; r.k];
        crate::quant::dequantize_row(ty, b, &mut v).map_err(|e| weight_err(id, e))?;
        Ok(v)
    }
}
