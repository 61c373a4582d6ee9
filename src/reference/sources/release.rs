//! [`Weights`] for the release reader.
//!
//! Why `pread` and not the maps: a release shard truncated or replaced while grokit reads it
//! must be an error naming the file and offset, not a SIGBUS. So each int8 matrix (one
//! projection, or one expert's `[in, out]` slice: 201 MB at Grok-1's widths) is read whole into
//! memory with `pread` ([`Checkpoint::matrix_owned`]) and handed to the kernel as stored (int8
//! with bf16 row-block scales); the f32 embedding (3.2 GB) is read one band of vocabulary rows at
//! a time (or one row, for the input lookup); the router (f32 `[D, E]`) and norms are read
//! whole. Reads of the next batch overlap the arithmetic ([`super::super::products`]); at most
//! two batches are held, so memory stays bounded whatever the layer count. The buffers are
//! recycled ([`Pool`]): a fresh 201 MB allocation per matrix would cost page faults and the
//! kernel's zeroing of every page on each read.
//!
//! The release passes the same structural checks here as in `inspect`, `verify` and `convert`
//! ([`Checkpoint::problems`]): a shard with f32 scales where the release has bf16 is refused,
//! never reinterpreted.

use super::super::store::{
    check_cols, weight_err, Bytes, Layout, Loaded, MatrixInfo, OnDrop, WeightId, Weights,
};
use super::super::{ModelDims, ReferenceError};
use crate::base::float::decode_f32_le;
use crate::base::DType;
use crate::model::keys::KeyFormat;
use crate::model::Role;
use crate::numpy::Stored;
use crate::quant::GgmlType;
use crate::source::grok::{Checkpoint, OpenOptions, OwnedMatrix, Tensor};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

/// A release checkpoint with its checked dims, as [`Weights`].
pub struct ReleaseWeights {
    /// The checkpoint.
    pub ck: Checkpoint,
    /// The dims, checked against the tensors.
    pub dims: ModelDims,
    pool: Pool,
}

/// Spare read buffers (weights and scales kept apart), at most [`Pool::KEEP`] of each.
#[derive(Default)]
struct Pool {
    big: Mutex<Vec<Vec<u8>>>,
    small: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    /// Two batches in flight and one being returned.
    const KEEP: usize = 3;

    fn take(list: &Mutex<Vec<Vec<u8>>>) -> Vec<u8> {
        list.lock()
            .map(|mut l| l.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    fn give(list: &Mutex<Vec<Vec<u8>>>, b: Bytes<'_>) {
        if let (Bytes::Owned(v), Ok(mut l)) = (b, list.lock()) {
            if l.len() < Pool::KEEP && v.capacity() > 0 {
                l.push(v);
            }
        }
    }
}

/// The file that names the configuration: the `config.json` that was read, else the directory.
fn config_file(ck: &Checkpoint) -> String {
    ck.config_notes
        .iter()
        .find_map(|n| n.strip_prefix("config.json: ").map(str::to_string))
        .unwrap_or_else(|| ck.dir.display().to_string())
}

/// The checked dims of a release checkpoint.
pub(super) fn dims_of(ck: &Checkpoint) -> Result<ModelDims, ReferenceError> {
    let file = config_file(ck);
    let dims = ModelDims::from_config_unchecked(&ck.config);
    let w = Plain(ck);
    super::verify_shapes(&w, &dims, &file, KeyFormat::Release)?;
    Ok(dims)
}

/// A checkpoint as weights without a buffer pool (for the shape check).
struct Plain<'a>(&'a Checkpoint);

impl Weights for Plain<'_> {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        info(self.0, id)
    }
    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        load(self.0, id, cols, Vec::new(), Vec::new(), None)
    }
    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        vector(self.0, id)
    }
}

impl ReleaseWeights {
    /// Open the release at `path`, refusing it if it has structural problems.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<ReleaseWeights, ReferenceError> {
        let ck = Checkpoint::open(path, opts).map_err(|e| ReferenceError::Open {
            file: path.display().to_string(),
            source: Box::new(e),
        })?;
        if let Some(p) = ck.problems.first() {
            let at = p
                .offset
                .map(|o| format!(" at byte offset {o}"))
                .unwrap_or_default();
            return Err(ReferenceError::Structure {
                file: p.file.display().to_string(),
                tensor: p.tensor.clone(),
                reason: format!("{}{at}", p.msg),
                count: ck.problems.len(),
            });
        }
        let dims = dims_of(&ck)?;
        Ok(ReleaseWeights {
            ck,
            dims,
            pool: Pool::default(),
        })
    }

    /// A checkpoint already open (its structural problems are the caller's concern), with its
    /// checked dims.
    pub fn from_checkpoint(ck: Checkpoint) -> Result<ReleaseWeights, ReferenceError> {
        let dims = dims_of(&ck)?;
        Ok(ReleaseWeights {
            ck,
            dims,
            pool: Pool::default(),
        })
    }

    fn recycle(&self) -> OnDrop<'_> {
        Box::new(move |d: Bytes<'_>, s: Bytes<'_>| {
            Pool::give(&self.pool.big, d);
            Pool::give(&self.pool.small, s);
        })
    }
}

fn tensor(ck: &Checkpoint, id: WeightId) -> Result<&Tensor, ReferenceError> {
    ck.tensor(id.role, id.layer.map(|l| l as u64))
        .ok_or_else(|| weight_err(id, format!("not in checkpoint {}", ck.dir.display())))
}

fn dims2(id: WeightId, d: &[u64]) -> Result<(usize, usize), ReferenceError> {
    let u = |x: u64| usize::try_from(x).map_err(|_| weight_err(id, "dimension too large"));
    match d {
        [r, c] => Ok((u(*r)?, u(*c)?)),
        _ => Err(weight_err(id, format!("shape {d:?} is not a matrix"))),
    }
}

/// The logical `[k, n]` of `id` in the release.
fn info(ck: &Checkpoint, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
    let t = tensor(ck, id)?;
    match &t.stored {
        Stored::Quantized { weight, scales } => {
            let d = weight.shape.dims();
            let (k, n) = match (d, id.expert) {
                ([e, r, c], Some(x)) if (x as u64) < *e => dims2(id, &[*r, *c])?,
                ([_, _, _], _) => {
                    return Err(weight_err(
                        id,
                        format!("expert index out of range for {}", weight.shape),
                    ))
                }
                ([r, c], None) => dims2(id, &[*r, *c])?,
                _ => return Err(weight_err(id, format!("weight shape {}", weight.shape))),
            };
            // Row blocks of the scales (dim -2), validated when the checkpoint was opened.
            let sd = scales.shape.dims();
            let blocks = sd.len().checked_sub(2).map_or(0, |i| sd[i]);
            Ok(MatrixInfo {
                k,
                n,
                bytes: (k as u64) * (n as u64) + 2 * blocks * (n as u64),
                bandable: false,
            })
        }
        Stored::Array(a) => {
            if id.expert.is_some() || a.dtype != DType::F32 {
                return Err(weight_err(
                    id,
                    format!("an f32 array expected, found {} {}", a.dtype, a.shape),
                ));
            }
            let (r, c) = dims2(id, a.shape.dims())?;
            let bytes = 4 * (r as u64) * (c as u64);
            // The embedding [V, D] is the head [D, V] stored in rows; the router is [D, E].
            Ok(if id.role == Role::Embed {
                MatrixInfo {
                    k: c,
                    n: r,
                    bytes,
                    bandable: true,
                }
            } else {
                MatrixInfo {
                    k: r,
                    n: c,
                    bytes,
                    bandable: false,
                }
            })
        }
    }
}

/// Columns `cols` of `id`, read with `pread` into `big` and `small` (reused buffers).
fn load<'w>(
    ck: &'w Checkpoint,
    id: WeightId,
    cols: Range<usize>,
    big: Vec<u8>,
    small: Vec<u8>,
    on_drop: Option<OnDrop<'w>>,
) -> Result<Loaded<'w>, ReferenceError> {
    let info = info(ck, id)?;
    check_cols(id, &cols, info.n)?;
    let t = tensor(ck, id)?;
    let err = |e: crate::source::grok::SourceError| weight_err(id, e);
    let (k, layout, data, scales) = match &t.stored {
        Stored::Quantized { .. } => {
            if cols != (0..info.n) {
                return Err(weight_err(id, "the release's int8 matrices are read whole"));
            }
            let mut m = OwnedMatrix {
                weight: big,
                scales: small,
                ..Default::default()
            };
            ck.matrix_owned_into(t, id.expert, &mut m).map_err(err)?;
            (
                m.rows,
                Layout::ReleaseInt8 { blocks: m.blocks },
                m.weight,
                m.scales,
            )
        }
        Stored::Array(a) => {
            let (offset, len, layout) = if id.role == Role::Embed {
                let rb = info.k as u64 * 4;
                let off = a.data.start + cols.start as u64 * rb;
                (off, cols.len() * info.k * 4, Layout::Rows(GgmlType::F32))
            } else if cols == (0..info.n) {
                (a.data.start, info.k * info.n * 4, Layout::F32Kn)
            } else {
                return Err(weight_err(id, "the release's routers are read whole"));
            };
            let mut b = big;
            ck.read_at_into(t, offset, len, &mut b).map_err(err)?;
            (info.k, layout, b, small)
        }
    };
    Ok(Loaded {
        k,
        cols,
        layout,
        data: Bytes::Owned(data),
        scales: Bytes::Owned(scales),
        on_drop,
    })
}

/// A norm scale.
fn vector(ck: &Checkpoint, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
    let t = tensor(ck, id)?;
    match &t.stored {
        Stored::Array(a) if a.dtype == DType::F32 && a.shape.dims().len() == 1 => {
            let len = a.data.end.saturating_sub(a.data.start);
            let b = ck
                .read_at(t, a.data.start, len as usize)
                .map_err(|e| weight_err(id, e))?;
            let mut v = vec![0f32; b.len() / 4];
            decode_f32_le(&b, &mut v);
            Ok(v)
        }
        _ => Err(weight_err(id, "not an f32 vector")),
    }
}

impl Weights for ReleaseWeights {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        info(&self.ck, id)
    }
    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        let (big, small) = (Pool::take(&self.pool.big), Pool::take(&self.pool.small));
        load(&self.ck, id, cols, big, small, Some(self.recycle()))
    }
    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        vector(&self.ck, id)
    }
}
