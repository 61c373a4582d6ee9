//! Weights as they are stored: the [`Weights`] trait every source implements, the
//! (role, layer, expert) key [`WeightId`], and [`Loaded`], one piece of a matrix's stored bytes
//! (borrowed from a map or read into memory) that becomes a [`kernel::Matrix`].
//!
//! Why this shape: the products of [`crate::kernel`] decode weights only into the small working
//! set they need, so a source should hand over the bytes as they lie in the file (the release's
//! int8 with bf16 row-block scales, GGUF rows of any ggml type, safetensors rows,
//! compressed-tensors packed words), never f32 copies. A source describes a matrix first
//! ([`Weights::info`]: its logical `[k, n]`, stored size, and whether a band of its columns can
//! be loaded on its own) and loads it, or a band of its columns, on demand ([`Weights::load`]).
//! Dropping a [`Loaded`] piece releases what it held: its buffer, or, for a mapped source, the
//! resident pages of its range (the page cache keeps them), so the memory held at any moment is
//! what the model is using, whatever the file size.

use super::ReferenceError;
use crate::base::float::{decode_f32_le, extend_f32_le, round_bf16};
use crate::kernel::{KernelError, Matrix, Storage};
use crate::model::roles::{fill, parse_path};
use crate::model::Role;
use crate::quant::GgmlType;
use std::collections::HashMap;
use std::ops::Range;

/// One parameter: a role of `model::roles`, its layer (None for the embedding and the final
/// norm) and, for the expert tensors, the expert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId {
    /// What the parameter does.
    pub role: Role,
    /// Decoder layer.
    pub layer: Option<usize>,
    /// Expert (expert tensors only).
    pub expert: Option<usize>,
}

impl WeightId {
    /// A parameter outside the layers (the embedding, the final norm).
    pub fn global(role: Role) -> WeightId {
        WeightId {
            role,
            layer: None,
            expert: None,
        }
    }
    /// A per-layer parameter.
    pub fn layer(role: Role, layer: usize) -> WeightId {
        WeightId {
            role,
            layer: Some(layer),
            expert: None,
        }
    }
    /// One expert's matrix of an expert tensor.
    pub fn expert(role: Role, layer: usize, expert: usize) -> WeightId {
        WeightId {
            role,
            layer: Some(layer),
            expert: Some(expert),
        }
    }
    /// The release path of the parameter (`transformer/decoder_layer_3/moe/linear/w`).
    pub fn path(&self) -> String {
        fill(self.role.info().path, self.layer.map(|l| l as u64), None)
    }
    /// The id of a release path, for expert `expert` when given.
    pub fn from_path(path: &str, expert: Option<usize>) -> Option<WeightId> {
        let (role, layer) = parse_path(path)?;
        Some(WeightId {
            role,
            layer: layer.and_then(|l| usize::try_from(l).ok()),
            expert,
        })
    }
}

impl std::fmt::Display for WeightId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path())?;
        if let Some(e) = self.expert {
            write!(f, " (expert {e})")?;
        }
        Ok(())
    }
}

/// A matrix as a source describes it before reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixInfo {
    /// Input width (rows of the logical `W[k, n]`).
    pub k: usize,
    /// Output width.
    pub n: usize,
    /// Stored bytes of the whole matrix (weights and scales).
    pub bytes: u64,
    /// True when any band of columns can be loaded on its own at its own cost (the matrix is
    /// stored `[n, k]`, one row per output, or held in memory). The release's int8 `[k, n]`
    /// matrices are loaded whole.
    pub bandable: bool,
}

/// How a piece's bytes are laid out: [`Storage`] without the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[k, n]` row-major f32.
    F32Kn,
    /// The release's int8 `[k, n]` with bf16 scales `[blocks, n]`.
    ReleaseInt8 {
        /// Row blocks.
        blocks: usize,
    },
    /// `[n, k]` rows of a ggml type.
    Rows(GgmlType),
    /// compressed-tensors packed `[n, k]` with group scales.
    Ct {
        /// 4 or 8.
        bits: u32,
        /// Input elements per scale.
        group: usize,
        /// Scale type (F32, F16 or BF16).
        scale_ty: GgmlType,
    },
}

/// Bytes of a piece: borrowed from a map (or from memory), or read into a buffer.
pub enum Bytes<'w> {
    /// Borrowed.
    Borrowed(&'w [u8]),
    /// Read with `pread` (the release) or built (a rounded copy).
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(v) => v,
        }
    }
}

/// What dropping a piece does: it receives the piece's data and scales (a source that reads
/// into buffers may keep them for its next read; a mapped source drops the resident pages of the
/// range it handed out).
pub type OnDrop<'w> = Box<dyn FnOnce(Bytes<'w>, Bytes<'w>) + Send + 'w>;

/// Columns `cols` of a matrix, as stored, ready to become a [`kernel::Matrix`].
pub struct Loaded<'w> {
    /// Input width.
    pub k: usize,
    /// Which columns of the whole matrix this piece holds.
    pub cols: Range<usize>,
    /// Layout of `data` and `scales`.
    pub layout: Layout,
    /// Weights (or packed words).
    pub data: Bytes<'w>,
    /// Scales (empty for layouts without them).
    pub scales: Bytes<'w>,
    /// Run when the piece is dropped.
    pub on_drop: Option<OnDrop<'w>>,
}

/// The drop action of a mapped piece: `release` (dropping its pages from the resident set),
/// unless the source keeps its pages resident.
pub(crate) fn page_release<'w>(
    keep_resident: bool,
    release: impl FnOnce() + Send + 'w,
) -> Option<OnDrop<'w>> {
    (!keep_resident).then(|| Box::new(move |_: Bytes<'w>, _: Bytes<'w>| release()) as OnDrop<'w>)
}

impl Drop for Loaded<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            let d = std::mem::replace(&mut self.data, Bytes::Borrowed(&[]));
            let s = std::mem::replace(&mut self.scales, Bytes::Borrowed(&[]));
            f(d, s);
        }
    }
}

impl<'w> Loaded<'w> {
    /// A piece without scales or a drop action.
    pub fn plain(k: usize, cols: Range<usize>, layout: Layout, data: Bytes<'w>) -> Loaded<'w> {
        Loaded {
            k,
            cols,
            layout,
            data,
            scales: Bytes::Owned(Vec::new()),
            on_drop: None,
        }
    }

    /// The piece as a kernel matrix `[k, cols.len()]` (geometry checked by the kernel).
    pub fn matrix(&self) -> Result<Matrix<'_>, KernelError> {
        let storage = match self.layout {
            Layout::F32Kn => Storage::F32Kn(&self.data),
            Layout::ReleaseInt8 { blocks } => Storage::ReleaseInt8 {
                q: &self.data,
                scales: &self.scales,
                blocks,
            },
            Layout::Rows(ty) => Storage::Rows {
                ty,
                bytes: &self.data,
            },
            Layout::Ct {
                bits,
                group,
                scale_ty,
            } => Storage::Ct {
                bits,
                group,
                packed: &self.data,
                scales: &self.scales,
                scale_ty,
            },
        };
        Matrix::new(self.k, self.cols.len(), storage)
    }

    /// The piece's exact values rounded to bf16, as an f32 `[k, n]` copy: the optional
    /// "round dequantized weights" point of the bf16 plan ([`super::ops::Rounding::weights`]),
    /// a precision experiment that gives up decoding in place.
    pub fn rounded_bf16<'x>(&self) -> Result<Loaded<'x>, KernelError> {
        let m = self.matrix()?;
        let mut v = vec![0f32; m.k() * m.n()];
        m.decode(0..m.k(), 0..m.n(), &mut v)?;
        v.iter_mut().for_each(|x| *x = round_bf16(*x));
        let mut b = Vec::with_capacity(v.len() * 4);
        extend_f32_le(&mut b, &v);
        Ok(Loaded::plain(
            self.k,
            self.cols.clone(),
            Layout::F32Kn,
            Bytes::Owned(b),
        ))
    }
}

/// Where the reference model gets its weights.
///
/// Matrices are logical `W[k, n]` (`y = x · W`): the projections and experts in the release's
/// `[in, out]` orientation, the router `[D, E]`, and the tied embedding as the output head
/// `[D, V]` (so the embedding row of token `t` is column `t`). Norm scales are vectors.
pub trait Weights: Sync {
    /// Describe matrix `id` without reading it.
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError>;
    /// Columns `cols` of matrix `id` as stored (`cols` must lie in `0..n`; a source that is not
    /// [`MatrixInfo::bandable`] may be asked only for `0..n` and for single columns of the
    /// embedding).
    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError>;
    /// The exact f32 values of vector `id` (a norm scale).
    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError>;
}

/// The error for a parameter a source cannot produce.
pub(crate) fn weight_err(id: WeightId, reason: impl std::fmt::Display) -> ReferenceError {
    ReferenceError::Weight {
        path: id.to_string(),
        reason: reason.to_string(),
    }
}

/// Check that `cols` lies inside `0..n`.
pub(crate) fn check_cols(
    id: WeightId,
    cols: &Range<usize>,
    n: usize,
) -> Result<(), ReferenceError> {
    if cols.start > cols.end || cols.end > n {
        return Err(weight_err(id, format!("columns {cols:?} outside 0..{n}")));
    }
    Ok(())
}

/// An in-memory source of f32 tensors in the release orientation (matrices `[in, out]`, the
/// embedding `[V, D]`, norms `[D]`, one `[in, out]` matrix per expert): for tests, experiments
/// and small models built in code.
#[derive(Default, Debug, Clone)]
pub struct MemoryWeights {
    tensors: HashMap<WeightId, (Vec<usize>, Vec<u8>)>,
}

impl MemoryWeights {
    /// An empty source.
    pub fn new() -> MemoryWeights {
        MemoryWeights::default()
    }

    /// Add (or replace) tensor `id` with `shape` (its element count must match `data`).
    pub fn insert(
        &mut self,
        id: WeightId,
        shape: Vec<usize>,
        data: &[f32],
    ) -> Result<(), ReferenceError> {
        let want = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(data.len()) {
            return Err(weight_err(
                id,
                format!("{} values for shape {shape:?}", data.len()),
            ));
        }
        let mut b = Vec::with_capacity(data.len() * 4);
        extend_f32_le(&mut b, data);
        self.tensors.insert(id, (shape, b));
        Ok(())
    }

    /// Add a parameter by release path; a 3-D expert tensor `[E, in, out]` is split into its
    /// experts.
    pub fn insert_path(
        &mut self,
        path: &str,
        shape: Vec<usize>,
        data: &[f32],
    ) -> Result<(), ReferenceError> {
        let id = WeightId::from_path(path, None).ok_or_else(|| ReferenceError::Weight {
            path: path.to_string(),
            reason: "not a Grok-1 parameter path".into(),
        })?;
        if !id.role.info().experts {
            return self.insert(id, shape, data);
        }
        let [e, k, n] = shape[..] else {
            return Err(weight_err(id, format!("expert tensor of shape {shape:?}")));
        };
        let per = k * n;
        if data.len() != e * per {
            return Err(weight_err(
                id,
                format!("{} values for {shape:?}", data.len()),
            ));
        }
        for x in 0..e {
            let eid = WeightId {
                expert: Some(x),
                ..id
            };
            self.insert(eid, vec![k, n], &data[x * per..(x + 1) * per])?;
        }
        Ok(())
    }

    /// The f32 values and shape of `id`, as inserted.
    pub fn get(&self, id: WeightId) -> Option<(Vec<usize>, Vec<f32>)> {
        let (s, b) = self.tensors.get(&id)?;
        let mut v = vec![0f32; b.len() / 4];
        decode_f32_le(b, &mut v);
        Some((s.clone(), v))
    }

    fn entry(&self, id: WeightId) -> Result<(&[usize], &[u8]), ReferenceError> {
        self.tensors
            .get(&id)
            .map(|(s, b)| (s.as_slice(), b.as_slice()))
            .ok_or_else(|| weight_err(id, "not in this source"))
    }
}

impl Weights for MemoryWeights {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        let (shape, b) = self.entry(id)?;
        let [r, c] = shape[..] else {
            return Err(weight_err(id, format!("shape {shape:?} is not a matrix")));
        };
        // The embedding is stored [V, D]: as the head it is [D, V] in rows.
        let (k, n) = if id.role == Role::Embed {
            (c, r)
        } else {
            (r, c)
        };
        Ok(MatrixInfo {
            k,
            n,
            bytes: b.len() as u64,
            bandable: true,
        })
    }

    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        let info = self.info(id)?;
        check_cols(id, &cols, info.n)?;
        let (_, b) = self.entry(id)?;
        let (k, n) = (info.k, info.n);
        if id.role == Role::Embed {
            let rb = k * 4;
            let bytes = Bytes::Borrowed(&b[cols.start * rb..cols.end * rb]);
            return Ok(Loaded::plain(k, cols, Layout::Rows(GgmlType::F32), bytes));
        }
        if cols == (0..n) {
            return Ok(Loaded::plain(k, cols, Layout::F32Kn, Bytes::Borrowed(b)));
        }
        let mut out = Vec::with_capacity(k * cols.len() * 4);
        for r in 0..k {
            out.extend_from_slice(&b[(r * n + cols.start) * 4..(r * n + cols.end) * 4]);
        }
        Ok(Loaded::plain(k, cols, Layout::F32Kn, Bytes::Owned(out)))
    }

    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        let (shape, b) = self.entry(id)?;
        if shape.len() != 1 {
            return Err(weight_err(id, format!("shape {shape:?} is not a vector")));
        }
        let mut v = vec![0f32; b.len() / 4];
        decode_f32_le(b, &mut v);
        Ok(v)
    }
}

/// The exact f32 values of parameter `id` in the release orientation (matrices `[in, out]`,
/// the embedding `[V, D]`, norms `[D]`), decoded whole: for tests and inspection, not for the
/// forward pass (a Grok-1 expert matrix is 805 MB as f32).
pub fn dense(w: &dyn Weights, id: WeightId) -> Result<(Vec<usize>, Vec<f32>), ReferenceError> {
    if id.role.is_norm() {
        let v = w.vector(id)?;
        return Ok((vec![v.len()], v));
    }
    let info = w.info(id)?;
    let piece = w.load(id, 0..info.n)?;
    let m = piece.matrix().map_err(|e| weight_err(id, e))?;
    let (k, n) = (m.k(), m.n());
    let mut v = vec![0f32; k * n];
    m.decode(0..k, 0..n, &mut v)
        .map_err(|e| weight_err(id, e))?;
    if id.role != Role::Embed {
        return Ok((vec![k, n], v));
    }
    let mut t = vec![0f32; k * n];
    for (i, row) in v.chunks_exact(n).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            t[j * k + i] = x;
        }
    }
    Ok((vec![n, k], t))
}
