//! [`Weights`] for GGUF files and split sets written by `grokit convert`/`quantize` (llama.cpp's
//! `grok` architecture, docs/formats/gguf-output.md).
//!
//! GGUF stores every matrix `[out, in]`, one row of `in` values (of any ggml type) per output:
//! exactly the kernel's [`Layout::Rows`], so a matrix, one expert's slice of a stacked
//! `[E, out, in]` tensor, or a band of vocabulary rows of `token_embd` is handed to the kernel as
//! a slice of the map. Unless the caller lets the file stay resident
//! ([`GgufWeights::set_keep_resident`], for a file that fits the memory budget), dropping a piece
//! drops its pages from the resident set (the page cache keeps them), so a multi-GB file never
//! accumulates in RSS.

use super::super::store::{
    check_cols, page_release, weight_err, Bytes, Layout, Loaded, MatrixInfo, WeightId, Weights,
};
use super::super::{ModelDims, ReferenceError};
use crate::gguf::{GgufSet, TensorInfo, Value};
use crate::model::keys::{read_config, KeyFormat, KeyValue};
use crate::model::roles::fill;
use crate::model::Config;
use crate::quant::dequantize_row;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pages around a dropped piece that are dropped too: above Linux's fault-around window (64 KiB).
const RELEASE_MARGIN: u64 = 1 << 20;

/// A GGUF file or split set, with the configuration and checked dims from its metadata.
pub struct GgufWeights {
    set: GgufSet,
    /// Configuration from the `grok.*` metadata.
    pub config: Config,
    /// The dims, checked against the tensors.
    pub dims: ModelDims,
    keep_resident: AtomicBool,
}

fn meta(file: &str, key: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Metadata {
        file: file.to_string(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// An integer key outside the key table (a token id): `None` when absent; an error when
/// present with another type or negative.
fn int_key(set: &GgufSet, file: &str, key: &str) -> Result<Option<u64>, ReferenceError> {
    match set.get(key) {
        None => Ok(None),
        Some(v) => match v.key_value() {
            Some(KeyValue::Int(x)) => Ok(Some(x)),
            _ => Err(meta(
                file,
                key,
                format!("{v:?} is not a non-negative integer"),
            )),
        },
    }
}

impl GgufWeights {
    /// Open a GGUF (the first file of a split set) and check its dims against its tensors.
    pub fn open(path: &Path) -> Result<GgufWeights, ReferenceError> {
        let file = path.display().to_string();
        let set = GgufSet::open(path).map_err(|e| ReferenceError::Open {
            file: file.clone(),
            source: Box::new(e),
        })?;
        match set.get("general.architecture") {
            Some(Value::String(a)) if a == "grok" => {}
            other => {
                return Err(meta(
                    &file,
                    "general.architecture",
                    format!("{other:?}, expected \"grok\""),
                ))
            }
        }
        // Every `grok.*` key through the one key table (model::keys), as convert writes them.
        let mut c = read_config(KeyFormat::Gguf, &|k| set.get(k).map(Value::key_value))
            .map_err(|e| super::key_error(&file, e, &|k| set.get(k).map(|v| format!("{v:?}"))))?;
        c.vocab_size = match set.tensor("token_embd.weight") {
            Some((_, t)) => match t.shape.first() {
                Some(&0) | None => {
                    return Err(meta(
                        &file,
                        "token_embd.weight",
                        format!("shape {:?}: an empty vocabulary", t.shape),
                    ))
                }
                Some(&v) => v,
            },
            None => return Err(meta(&file, "token_embd.weight", "no such tensor")),
        };
        if let Some(x) = int_key(&set, &file, "tokenizer.ggml.eos_token_id")? {
            c.eos_token = u32::try_from(x).unwrap_or(u32::MAX);
        }
        let dims = ModelDims::from_config_unchecked(&c);
        let w = GgufWeights {
            set,
            config: c,
            dims,
            keep_resident: AtomicBool::new(false),
        };
        super::verify_shapes(&w, &w.dims, &file, KeyFormat::Gguf)?;
        Ok(w)
    }

    /// The files read (every part of a split set).
    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        self.set.paths()
    }

    /// Bytes of the mapped files.
    pub fn mapped_bytes(&self) -> u64 {
        self.set
            .files()
            .iter()
            .map(|f| f.bytes().len() as u64)
            .sum()
    }

    /// Keep the pages of used weights resident (no release after each piece): faster when the
    /// file fits in memory, since pages are not faulted in again on the next use.
    pub fn set_keep_resident(&self, keep: bool) {
        self.keep_resident.store(keep, Ordering::Relaxed);
    }

    /// The tensor of `id`, with the rows of its matrix (one expert's, when asked): the file,
    /// the tensor, the stored rows `n`, the row width `k`, the first row and bytes per row.
    fn locate(&self, id: WeightId) -> Result<Located<'_>, ReferenceError> {
        let name = fill(id.role.info().gguf, id.layer.map(|l| l as u64), None);
        let (file, t) = self
            .set
            .tensor(&name)
            .ok_or_else(|| weight_err(id, format!("GGUF has no tensor {name}")))?;
        let u = |x: u64| usize::try_from(x).map_err(|_| weight_err(id, "dimension too large"));
        let (n, k, first) = match (t.shape.as_slice(), id.expert) {
            ([e, o, i], Some(x)) if (x as u64) < *e => (u(*o)?, u(*i)?, x * u(*o)?),
            ([_, _, _], _) => {
                return Err(weight_err(
                    id,
                    format!("{name} is an expert tensor of shape {:?}", t.shape),
                ))
            }
            ([o, i], None) => (u(*o)?, u(*i)?, 0),
            ([i], None) => (1, u(*i)?, 0),
            _ => return Err(weight_err(id, format!("{name} has shape {:?}", t.shape))),
        };
        let rb = t
            .ty
            .row_bytes(k as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| weight_err(id, format!("a row of {k} is not whole {} blocks", t.ty)))?;
        Ok(Located {
            file,
            t,
            n,
            k,
            first,
            rb,
        })
    }
}

struct Located<'a> {
    file: &'a crate::gguf::GgufFile,
    t: &'a TensorInfo,
    n: usize,
    k: usize,
    first: usize,
    rb: usize,
}

impl<'a> Located<'a> {
    /// Bytes of stored rows `r` (relative to the matrix), checked against the tensor's data.
    fn rows(&self, id: WeightId, r: Range<usize>) -> Result<(&'a [u8], u64), ReferenceError> {
        let data = self.file.tensor_data(self.t);
        let s = (self.first + r.start).checked_mul(self.rb);
        let e = (self.first + r.end).checked_mul(self.rb);
        match (s, e) {
            (Some(s), Some(e)) if e <= data.len() => Ok((&data[s..e], self.t.offset + s as u64)),
            _ => Err(weight_err(
                id,
                format!("rows {r:?} lie outside the tensor data"),
            )),
        }
    }
}

impl Weights for GgufWeights {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        if id.role.is_norm() {
            return Err(weight_err(id, "a vector, not a matrix"));
        }
        let l = self.locate(id)?;
        Ok(MatrixInfo {
            k: l.k,
            n: l.n,
            bytes: (l.n as u64) * (l.rb as u64),
            bandable: true,
        })
    }

    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        let l = self.locate(id)?;
        check_cols(id, &cols, l.n)?;
        let (bytes, offset) = l.rows(id, cols.clone())?;
        let (file, len) = (l.file, bytes.len() as u64);
        let release = move || {
            let start = offset.saturating_sub(RELEASE_MARGIN);
            let end = offset
                .saturating_add(len)
                .saturating_add(RELEASE_MARGIN)
                .min(file.bytes().len() as u64);
            if end > start {
                file.release(start, end - start);
            }
        };
        Ok(Loaded {
            k: l.k,
            cols,
            layout: Layout::Rows(l.t.ty),
            data: Bytes::Borrowed(bytes),
            scales: Bytes::Owned(Vec::new()),
            on_drop: page_release(self.keep_resident.load(Ordering::Relaxed), release),
        })
    }

    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        let l = self.locate(id)?;
        if l.n != 1 || !id.role.is_norm() {
            return Err(weight_err(id, "not a vector"));
        }
        let (bytes, _) = l.rows(id, 0..1)?;
        let mut v = vec![0f32; l.k];
        dequantize_row(l.t.ty, bytes, &mut v).map_err(|e| weight_err(id, e))?;
        Ok(v)
    }
}
