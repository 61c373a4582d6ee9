//! `grokit quantize`: requantize an existing GGUF (one file or a split set) into another GGUF,
//! like llama.cpp's `llama-quantize`, with ggml's reference encoders bit for bit.
//!
//! Why a separate path from `convert`: `convert` works from the release's int8 and can copy it
//! losslessly; `quantize` works from whatever a GGUF holds (usually an F32/BF16 conversion), so
//! a user can convert once and derive every preset from that file. For an F32 input the f32
//! values are exactly the ones `convert` computes, so `convert --type f32` then `quantize
//! --preset X` writes the same bytes as `convert --quant X` — except where `convert` takes its
//! lossless int8 → Q8_0 shortcut (Q8_0 tensors), which `quantize` cannot know about.
//!
//! How: metadata is copied (split keys dropped and recomputed, `general.file_type` from the
//! policy, `general.quantization_version` = 2), tensor order is kept, and each tensor is
//! streamed in chunks of whole blocks: decode to f32 (`dequantize_row`), encode
//! (`quantize_row`), up to `jobs` chunks in parallel, written in order through
//! [`GgufFileWriter`]. Every ggml block type encodes each block independently, so cutting a
//! tensor at any common block boundary gives the same bytes as encoding it whole. Memory per
//! worker is about three chunks (`CHUNK_ELEMS` f32 in, f32 decoded back for the error
//! statistics, encoded bytes), and the input's mapped pages are released as they are consumed,
//! so the peak does not depend on tensor or file size.
//!
//! Safety rails, as llama-quantize: a tensor that is already block-quantized is not quantized
//! again to another block type without `allow_requantize` (two rounding errors compound); a
//! tensor whose type does not change is copied verbatim, never decoded.

use super::canonical_or_parent;
use crate::gguf::constants::keys;
use crate::gguf::{
    GgufError, GgufFile, GgufFileWriter, GgufPlan, GgufSet, TensorInfo, TensorPlan, Value,
};
use crate::quant::policy::{ModelInfo, Policy, TensorClass};
use crate::quant::{self, GgmlType, QuantError};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Elements per chunk a worker decodes and encodes at once (4 MiB of f32). A multiple of every
/// block size (32 and 256).
pub const CHUNK_ELEMS: usize = 1 << 20;

/// Bytes per write when a tensor is copied verbatim.
const COPY_CHUNK: usize = 16 << 20;

/// Why a requantization failed.
#[derive(Debug, thiserror::Error)]
pub enum RequantError {
    /// Reading the input or writing the output GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A codec refused the data of a tensor.
    #[error("{}: tensor '{tensor}': {source}", path.display())]
    Quant {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Cause.
        source: QuantError,
    },
    /// A block-quantized tensor would be quantized again without `allow_requantize`.
    #[error("{}: tensor '{tensor}' is already {from}; quantizing it again to {to} compounds two rounding errors (quantize from an F32/F16/BF16 file, or pass --allow-requantize)", path.display())]
    Requantize {
        /// Input file holding the tensor.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Input type.
        from: GgmlType,
        /// Requested type.
        to: GgmlType,
    },
    /// The request is not allowed (output over the input, existing output, undecodable type,
    /// a type that needs an importance matrix without one).
    #[error("{0}")]
    Refused(String),
    /// The importance matrix is unreadable or made for another model.
    #[error(transparent)]
    Imatrix(#[from] crate::imatrix::ImatrixError),
}

/// What happens to one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Same type in and out: bytes copied verbatim.
    Copy,
    /// Decoded to f32 and encoded (float input, or a quantized input turned into floats).
    Encode,
    /// A block-quantized input encoded to another block type (`allow_requantize`).
    Requantize,
}

/// One tensor of a [`RequantPlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequantTensor {
    /// GGUF name.
    pub name: String,
    /// numpy-order shape.
    pub shape: Vec<u64>,
    /// Input type.
    pub in_ty: GgmlType,
    /// Output type.
    pub out_ty: GgmlType,
    /// What is done.
    pub action: Action,
    /// Input data bytes.
    pub in_bytes: u64,
    /// Output data bytes.
    pub out_bytes: u64,
    /// A fallback, a kept type or a requantization warning, for the user.
    pub note: Option<String>,
    /// Encoded with the importance matrix's weights for this tensor.
    pub imatrix: bool,
}

impl RequantTensor {
    /// Element count.
    pub fn elems(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Everything a requantization will write, decided before any byte is.
#[derive(Clone, Debug, PartialEq)]
pub struct RequantPlan {
    /// Output metadata (input order; split keys removed; file type and quantization version set).
    pub kvs: Vec<(String, Value)>,
    /// Data alignment (the input's).
    pub alignment: u32,
    /// `general.file_type` written.
    pub file_type: u32,
    /// Block count used for the layer rules (`<arch>.block_count`, else highest `blk.N` + 1).
    pub n_layers: usize,
    /// Tensors in input order.
    pub tensors: Vec<RequantTensor>,
}

impl RequantPlan {
    /// Total output tensor bytes (progress total).
    pub fn out_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.out_bytes).sum()
    }
    /// The GGUF plan (metadata and tensors) this requantization writes.
    pub fn gguf_plan(&self) -> GgufPlan {
        let tensors = self
            .tensors
            .iter()
            .map(|t| TensorPlan::new(t.name.clone(), t.shape.clone(), t.out_ty))
            .collect();
        GgufPlan {
            kvs: self.kvs.clone(),
            tensors,
            alignment: self.alignment,
        }
    }
}

/// An unsigned metadata value of the file's architecture (`<arch>.<key>`).
fn arch_u(set: &GgufSet, key: &str) -> Option<usize> {
    let arch = set
        .get(keys::GENERAL_ARCHITECTURE)
        .and_then(Value::as_str)
        .unwrap_or("grok");
    set.get(&format!("{arch}.{key}")).and_then(|v| match v {
        Value::U32(x) => usize::try_from(*x).ok(),
        Value::U64(x) => usize::try_from(*x).ok(),
        Value::I32(x) => usize::try_from(*x).ok(),
        _ => None,
    })
}

/// The model facts llama-quantize's type rules read, from a GGUF's metadata and tensor names.
pub fn model_info(set: &GgufSet, has_imatrix: bool) -> ModelInfo {
    let heads = arch_u(set, "attention.head_count").unwrap_or(1);
    let kv = arch_u(set, "attention.head_count_kv")
        .unwrap_or(heads)
        .max(1);
    ModelInfo {
        n_layers: block_count(set),
        n_expert: arch_u(set, "expert_count").unwrap_or(0),
        n_gqa: heads / kv,
        tied_output: set.tensors().all(|(_, t)| t.name != "output.weight"),
        has_imatrix,
    }
}

fn block_count(set: &GgufSet) -> usize {
    let declared = arch_u(set, "block_count");
    declared.unwrap_or_else(|| {
        set.tensors()
            .filter_map(|(_, t)| TensorClass::from_gguf_name(&t.name).and_then(|(_, l)| l))
            .max()
            .map_or(0, |l| l.saturating_add(1))
    })
}

/// The output type of one tensor and why it differs from the policy's plain answer, if it does.
/// 1-D tensors stay F32; names the policy does not know keep their type; without a preset,
/// classes the `--quant` string does not list keep their type too.
pub fn choose_type(
    policy: &Policy,
    name: &str,
    ne: &[u64],
    in_ty: GgmlType,
    info: &ModelInfo,
) -> (GgmlType, Option<String>) {
    if ne.len() <= 1 {
        return (GgmlType::F32, None);
    }
    let Some((class, layer)) = TensorClass::from_gguf_name(name) else {
        return (
            in_ty,
            Some(format!("not a tensor the policy knows; kept as {in_ty}")),
        );
    };
    let listed = policy.preset_of().is_some() || policy.explicit_type(class).is_some();
    if !listed && !matches!(class, TensorClass::Norm | TensorClass::Router) {
        return (in_ty, None);
    }
    let c = policy.choose(class, layer, info, ne.first().copied().unwrap_or(1));
    (c.ty, c.fallback_reason)
}

/// Decide every tensor's type and the output metadata. Fails (naming the file and tensor) on
/// the first block-quantized tensor that would be quantized to another block type when
/// `allow_requantize` is false, and on a type change of a tensor grokit cannot decode.
pub fn plan_requant(
    set: &GgufSet,
    policy: &Policy,
    allow_requantize: bool,
) -> Result<RequantPlan, RequantError> {
    plan_requant_with(set, policy, allow_requantize, None)
}

/// [`plan_requant`] with an importance matrix (`imatrix`: the matrix and the path as the user
/// gave it, recorded in the output's `quantize.imatrix.file`): the preset rules that depend on
/// one apply, the matrix is checked against the model (names, widths, expert counts), each
/// tensor is marked for weighted encoding or noted as quantized without weights
/// ([`super::weights`]), and a tensor whose type needs a matrix it does not have is an error.
pub fn plan_requant_with(
    set: &GgufSet,
    policy: &Policy,
    allow_requantize: bool,
    imatrix: Option<(&crate::imatrix::Imatrix, &str)>,
) -> Result<RequantPlan, RequantError> {
    if let Some((m, _)) = imatrix {
        m.check_model(set.tensors().map(|(_, t)| (t.name.as_str(), &t.ne[..])))?;
    }
    let info = model_info(set, imatrix.is_some());
    let n_layers = info.n_layers;
    let mut tensors = Vec::with_capacity(set.tensor_count());
    for (f, t) in set.tensors() {
        let (out_ty, mut note) = choose_type(policy, &t.name, &t.ne, t.ty, &info);
        let action = if out_ty == t.ty {
            Action::Copy
        } else if !quant::is_supported(t.ty) || !quant::is_supported(out_ty) {
            return Err(RequantError::Refused(format!(
                "{}: tensor '{}': cannot convert {} to {out_ty}",
                f.path().display(),
                t.name,
                t.ty
            )));
        } else if t.ty.is_quantized() && out_ty.is_quantized() {
            if !allow_requantize {
                return Err(RequantError::Requantize {
                    path: f.path().to_path_buf(),
                    tensor: t.name.clone(),
                    from: t.ty,
                    to: out_ty,
                });
            }
            let w = format!(
                "requantizing {} → {out_ty}: quality is worse than quantizing from F32/BF16",
                t.ty
            );
            note = Some(note.map_or(w.clone(), |n| format!("{n}; {w}")));
            Action::Requantize
        } else {
            Action::Encode
        };
        let out_bytes = out_ty.tensor_bytes(&t.ne).ok_or_else(|| {
            RequantError::Refused(format!(
                "{}: tensor '{}': {out_ty} does not fit ne {:?}",
                f.path().display(),
                t.name,
                t.ne
            ))
        })?;
        let mut weighted = false;
        if action != Action::Copy {
            let u = super::weights::weight_use(
                imatrix.map(|(m, _)| m),
                &t.name,
                out_ty,
                policy.preset_of(),
            )
            .map_err(|e| RequantError::Refused(format!("{}: {e}", f.path().display())))?;
            weighted = u.apply;
            if let Some(n) = u.note {
                note = Some(note.map_or(n.clone(), |o| format!("{o}; {n}")));
            }
        }
        tensors.push(RequantTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            in_ty: t.ty,
            out_ty,
            action,
            in_bytes: t.nbytes,
            out_bytes,
            note,
            imatrix: weighted,
        });
    }
    // The file type: the preset's; for an ad-hoc string, the experts' type (most of the weights).
    let file_type = if policy.preset_of().is_some() {
        policy.file_type()
    } else {
        tensors
            .iter()
            .find(|t| {
                matches!(
                    TensorClass::from_gguf_name(&t.name),
                    Some((TensorClass::FfnUpExps, _))
                )
            })
            .map_or_else(|| policy.file_type(), |t| t.out_ty.mostly_ftype())
    };
    let mut kvs = Vec::with_capacity(set.kvs().len() + 2);
    let (mut ft, mut qv) = (false, false);
    for (k, v) in set.kvs() {
        if keys::SPLIT_KEYS.contains(&k.as_str()) {
            continue;
        }
        let v = match k.as_str() {
            keys::GENERAL_FILE_TYPE => {
                ft = true;
                Value::U32(file_type)
            }
            keys::GENERAL_QUANTIZATION_VERSION => {
                qv = true;
                Value::U32(2)
            }
            _ => v.clone(),
        };
        kvs.push((k.clone(), v));
    }
    if !ft {
        kvs.push((keys::GENERAL_FILE_TYPE.into(), Value::U32(file_type)));
    }
    if !qv {
        kvs.push((keys::GENERAL_QUANTIZATION_VERSION.into(), Value::U32(2)));
    }
    if let Some((m, given)) = imatrix {
        for (k, v) in super::weights::imatrix_kvs(m, given) {
            match kvs.iter_mut().find(|(kk, _)| *kk == k) {
                Some(slot) => slot.1 = v,
                None => kvs.push((k, v)),
            }
        }
    }
    let alignment = set
        .files()
        .first()
        .map_or(crate::gguf::GGUF_DEFAULT_ALIGNMENT, GgufFile::alignment);
    Ok(RequantPlan {
        kvs,
        alignment,
        file_type,
        n_layers,
        tensors,
    })
}

/// Options of [`requantize`].
#[derive(Clone, Debug)]
pub struct RequantOptions {
    /// Output file (split shards are named from it).
    pub out: PathBuf,
    /// Split when a file would exceed this many bytes.
    pub split_max: Option<u64>,
    /// Chunks encoded in parallel.
    pub jobs: usize,
    /// Replace existing outputs.
    pub force: bool,
    /// Measure RMS / max error of lossy tensors (one extra decode per chunk).
    pub measure: bool,
    /// Elements per chunk (0 = [`CHUNK_ELEMS`]); rounded to whole blocks. The output does not
    /// depend on it; tests use small values to exercise chunk boundaries.
    pub chunk_elems: usize,
}

/// Error statistics against the decoded input values.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ErrStats {
    /// Elements compared.
    pub n: u64,
    /// Sum of squared errors.
    pub sse: f64,
    /// Max absolute error (infinite if a NaN appeared on one side only).
    pub max_abs: f32,
}

impl ErrStats {
    fn add(&mut self, o: &ErrStats) {
        self.n += o.n;
        self.sse += o.sse;
        self.max_abs = self.max_abs.max(o.max_abs);
    }
    fn compare(&mut self, exact: &[f32], got: &[f32]) {
        for (&a, &b) in exact.iter().zip(got) {
            if a.to_bits() == b.to_bits() {
                continue;
            }
            let d = (a - b).abs();
            if d.is_nan() {
                self.max_abs = f32::INFINITY;
                continue;
            }
            self.sse += f64::from(d) * f64::from(d);
            self.max_abs = self.max_abs.max(d);
        }
        self.n += exact.len() as u64;
    }
    /// Root-mean-square error.
    pub fn rms(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.sse / self.n as f64).sqrt()
        }
    }
}

/// One tensor's line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct RequantTensorReport {
    /// Name.
    pub name: String,
    /// numpy-order shape.
    pub shape: Vec<u64>,
    /// Input type (lower case).
    pub in_type: String,
    /// Output type (lower case).
    pub ty: String,
    /// What was done.
    pub action: Action,
    /// Encoded with importance-matrix weights.
    pub imatrix: bool,
    /// Input bytes.
    pub in_bytes: u64,
    /// Output bytes.
    pub bytes: u64,
    /// Output bits per weight.
    pub bpw: f64,
    /// RMS error against the decoded input (0 for copies and exact encodings).
    pub rms: f64,
    /// Max absolute error against the decoded input.
    pub max_abs: f32,
    /// Fallback / kept type / requantization note.
    pub note: Option<String>,
}

/// Totals over all tensors.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequantTotals {
    /// Tensors written.
    pub tensors: usize,
    /// Elements.
    pub elements: u64,
    /// Input tensor bytes.
    pub in_bytes: u64,
    /// Output tensor bytes.
    pub out_bytes: u64,
    /// Output bits per weight over all tensors.
    pub bpw: f64,
    /// RMS error over all measured elements.
    pub rms: f64,
    /// Largest absolute error of any tensor.
    pub max_abs: f32,
    /// Tensors copied verbatim.
    pub copied: usize,
    /// Tensors decoded and encoded.
    pub encoded: usize,
    /// Block-quantized tensors quantized again.
    pub requantized: usize,
}

/// What a requantization wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequantReport {
    /// Files written, with sizes.
    pub files: Vec<(PathBuf, u64)>,
    /// `general.file_type` written.
    pub file_type: u32,
    /// Per tensor, in order.
    pub tensors: Vec<RequantTensorReport>,
    /// Totals.
    pub totals: RequantTotals,
}

/// Refuse outputs that are an input file, and existing outputs unless `force`.
fn check_outputs(inputs: &[PathBuf], outputs: &[&Path], force: bool) -> Result<(), RequantError> {
    let ins: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    for o in outputs {
        let c = canonical_or_parent(o).ok_or_else(|| {
            RequantError::Refused(format!(
                "{}: the output's directory does not exist",
                o.display()
            ))
        })?;
        if ins.contains(&c) {
            return Err(RequantError::Refused(format!(
                "{}: the output would replace an input file",
                o.display()
            )));
        }
        if c.exists() && !force {
            return Err(RequantError::Refused(format!(
                "{}: already exists (use --force to replace it)",
                o.display()
            )));
        }
    }
    Ok(())
}

/// Write the plan's output. `progress` receives output bytes as they are written.
pub fn requantize(
    set: &GgufSet,
    plan: &RequantPlan,
    o: &RequantOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RequantReport, RequantError> {
    requantize_with(set, plan, o, None, progress)
}

/// [`requantize`] with the importance matrix the plan was made with ([`plan_requant_with`]):
/// tensors marked `imatrix` are encoded row by row with their entry's weights (expert `e`'s
/// rows with the entry's `e`-th slice), as llama-quantize does.
pub fn requantize_with(
    set: &GgufSet,
    plan: &RequantPlan,
    o: &RequantOptions,
    imatrix: Option<&crate::imatrix::Imatrix>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RequantReport, RequantError> {
    let files = plan.gguf_plan().split(o.split_max, &o.out)?;
    let paths: Vec<&Path> = files.iter().map(|f| f.path()).collect();
    check_outputs(&set.paths(), &paths, o.force)?;
    let mut report = RequantReport {
        file_type: plan.file_type,
        ..Default::default()
    };
    let mut next = plan.tensors.iter();
    let mut total = ErrStats::default();
    for f in &files {
        let mut w = GgufFileWriter::create(f.clone())?;
        for pt in f.tensors() {
            let t = next.next().filter(|t| t.name == pt.name).ok_or_else(|| {
                RequantError::Refused(format!("{}: planned out of order", pt.name))
            })?;
            let (file, info) = set
                .tensor(&t.name)
                .ok_or_else(|| RequantError::Refused(format!("{}: not in the input", t.name)))?;
            let mut sink = |b: &[u8]| -> Result<(), RequantError> {
                w.write_tensor_chunk(b)?;
                progress(b.len() as u64);
                Ok(())
            };
            let weights = match (t.imatrix, imatrix) {
                (true, Some(m)) => m.weights(&t.name)?,
                (true, None) => {
                    return Err(RequantError::Refused(format!(
                        "{}: planned with an importance matrix, none given",
                        t.name
                    )))
                }
                _ => None,
            };
            let stats = stream_tensor(file, info, t, o, weights.as_deref(), &mut sink)?;
            file.release_tensor(info);
            total.add(&stats);
            report.tensors.push(RequantTensorReport {
                name: t.name.clone(),
                shape: t.shape.clone(),
                in_type: t.in_ty.name().to_string(),
                ty: t.out_ty.name().to_string(),
                action: t.action,
                imatrix: t.imatrix,
                in_bytes: t.in_bytes,
                bytes: t.out_bytes,
                bpw: t.out_bytes as f64 * 8.0 / t.elems().max(1) as f64,
                rms: stats.rms(),
                max_abs: stats.max_abs,
                note: t.note.clone(),
            });
        }
        let written = w.finish()?;
        report.files.push((written.path, written.bytes));
    }
    let tt = &mut report.totals;
    tt.tensors = plan.tensors.len();
    tt.elements = plan.tensors.iter().map(RequantTensor::elems).sum();
    tt.in_bytes = plan.tensors.iter().map(|t| t.in_bytes).sum();
    tt.out_bytes = plan.out_bytes();
    tt.bpw = tt.out_bytes as f64 * 8.0 / tt.elements.max(1) as f64;
    tt.rms = total.rms();
    tt.max_abs = total.max_abs;
    tt.copied = plan
        .tensors
        .iter()
        .filter(|t| t.action == Action::Copy)
        .count();
    tt.encoded = plan
        .tensors
        .iter()
        .filter(|t| t.action == Action::Encode)
        .count();
    tt.requantized = plan
        .tensors
        .iter()
        .filter(|t| t.action == Action::Requantize)
        .count();
    Ok(report)
}

/// Stream one tensor's output bytes into `sink` in order.
fn stream_tensor(
    file: &GgufFile,
    info: &TensorInfo,
    t: &RequantTensor,
    o: &RequantOptions,
    weights: Option<&[f32]>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), RequantError>,
) -> Result<ErrStats, RequantError> {
    let data = file.tensor_data(info);
    let qerr = |source: QuantError| RequantError::Quant {
        path: file.path().to_path_buf(),
        tensor: t.name.clone(),
        source,
    };
    if data.len() as u64 != info.nbytes {
        let got = data.len() as u64;
        return Err(qerr(QuantError::LengthMismatch {
            what: "tensor data".into(),
            expected: info.nbytes,
            got,
        }));
    }
    if t.action == Action::Copy {
        let mut done = 0u64;
        for c in data.chunks(COPY_CHUNK) {
            sink(c)?;
            file.release(info.offset.saturating_add(done), c.len() as u64);
            done += c.len() as u64;
        }
        return Ok(ErrStats::default());
    }
    let (tin, tout) = (t.in_ty, t.out_ty);
    // Block sizes are 1, 32 or 256: the larger is a multiple of the smaller. With weights,
    // chunks are whole rows (weights are per column, and Q4_0..Q5_1 weigh by the row).
    let ne0 = info.ne.first().copied().unwrap_or(1).max(1);
    let rows_per_mat = info.ne.get(1).copied().unwrap_or(1).max(1);
    let unit = if weights.is_some() {
        ne0
    } else {
        tin.block_elems().max(tout.block_elems()).max(1)
    };
    let elems = t.elems();
    if !elems.is_multiple_of(unit) {
        return Err(qerr(QuantError::NotBlockAligned {
            what: format!("{tin} → {tout}"),
            len: elems,
            block: unit,
        }));
    }
    let chunk = if o.chunk_elems == 0 {
        CHUNK_ELEMS
    } else {
        o.chunk_elems
    };
    let per = (chunk as u64 / unit).max(1) * unit;
    let n_chunks = elems.div_ceil(per);
    let chunk_ids: Vec<u64> = (0..n_chunks).collect();
    let measure = o.measure;
    let mut stats = ErrStats::default();
    for group in chunk_ids.chunks(o.jobs.max(1)) {
        let encoded: Vec<Result<(Vec<u8>, ErrStats), RequantError>> = group
            .par_iter()
            .map(|&ci| {
                let e0 = ci * per;
                let n = per.min(elems - e0);
                let bad = || {
                    qerr(QuantError::LengthMismatch {
                        what: format!("chunk of {tin}"),
                        expected: n,
                        got: 0,
                    })
                };
                let b0 = tin.row_bytes(e0).ok_or_else(bad)?;
                let nb = tin.row_bytes(n).ok_or_else(bad)?;
                let src = usize::try_from(b0)
                    .ok()
                    .zip(usize::try_from(b0.saturating_add(nb)).ok())
                    .and_then(|(a, b)| data.get(a..b))
                    .ok_or_else(bad)?;
                let n = usize::try_from(n).map_err(|_| bad())?;
                let mut x = vec![0f32; n];
                quant::dequantize_row(tin, src, &mut x).map_err(qerr)?;
                let mut out = Vec::with_capacity(
                    usize::try_from(tout.row_bytes(n as u64).unwrap_or(0)).unwrap_or(0),
                );
                match weights {
                    None => quant::quantize_row(tout, &x, &mut out).map_err(qerr)?,
                    Some(w) => {
                        let ne0u = ne0 as usize;
                        for (r, row) in x.chunks_exact(ne0u).enumerate() {
                            let global = e0 / ne0 + r as u64;
                            let mat = (global / rows_per_mat) as usize;
                            let qw =
                                super::weights::expert_slice(w, ne0u, Some(mat)).ok_or_else(bad)?;
                            quant::quantize_row_weighted(tout, row, Some(qw), &mut out)
                                .map_err(qerr)?;
                        }
                    }
                }
                let mut st = ErrStats::default();
                if measure && tout != GgmlType::F32 {
                    let mut y = vec![0f32; n];
                    quant::dequantize_row(tout, &out, &mut y).map_err(qerr)?;
                    st.compare(&x, &y);
                } else {
                    st.n = n as u64;
                }
                Ok((out, st))
            })
            .collect();
        for r in encoded {
            let (bytes, st) = r?;
            stats.add(&st);
            sink(&bytes)?;
        }
        // Release the input consumed by this group.
        if let (Some(&first), Some(&last)) = (group.first(), group.last()) {
            let a = tin.row_bytes(first * per).unwrap_or(0);
            let b = tin.row_bytes(((last + 1) * per).min(elems)).unwrap_or(0);
            file.release(info.offset.saturating_add(a), b.saturating_sub(a));
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use GgmlType as G;

    #[test]
    fn types_follow_the_policy_with_quantize_rules() {
        let p = Policy::parse("q4_0").unwrap();
        assert_eq!(
            choose_type(
                &p,
                "blk.0.attn_k.weight",
                &[64, 128],
                G::F32,
                &ModelInfo::grok(2)
            )
            .0,
            G::Q8_0
        );
        assert_eq!(
            choose_type(
                &p,
                "blk.0.attn_q.weight",
                &[64, 256],
                G::F32,
                &ModelInfo::grok(2)
            )
            .0,
            G::Q4_0
        );
        assert_eq!(
            choose_type(
                &p,
                "blk.0.attn_norm.weight",
                &[64],
                G::F16,
                &ModelInfo::grok(2)
            )
            .0,
            G::F32
        );
        assert_eq!(
            choose_type(
                &p,
                "blk.0.ffn_gate_inp.weight",
                &[64, 8],
                G::F32,
                &ModelInfo::grok(2)
            )
            .0,
            G::F32
        );
        let (ty, note) = choose_type(
            &p,
            "rope_freqs.weight",
            &[64, 2],
            G::F16,
            &ModelInfo::grok(2),
        );
        assert_eq!(ty, G::F16);
        assert!(note.is_some());
        // Without a preset, unlisted classes keep their input type.
        let p = Policy::parse("experts=q4_k").unwrap();
        assert_eq!(
            choose_type(
                &p,
                "blk.0.attn_q.weight",
                &[64, 256],
                G::Q8_0,
                &ModelInfo::grok(2)
            )
            .0,
            G::Q8_0
        );
        assert_eq!(
            choose_type(
                &p,
                "blk.0.ffn_up_exps.weight",
                &[256, 64, 8],
                G::F32,
                &ModelInfo::grok(2)
            )
            .0,
            G::Q4_K
        );
        assert_eq!(
            choose_type(
                &p,
                "blk.0.ffn_norm.weight",
                &[64, 1],
                G::F16,
                &ModelInfo::grok(2)
            )
            .0,
            G::F32
        );
    }

    #[test]
    fn error_stats() {
        let mut s = ErrStats::default();
        s.compare(&[1.0, 2.0, f32::NAN], &[1.5, 2.0, f32::NAN]);
        assert_eq!(s.n, 3);
        assert_eq!(s.max_abs, 0.5);
        assert!((s.rms() - (0.25f64 / 3.0).sqrt()).abs() < 1e-12);
        s.compare(&[0.0], &[f32::NAN]);
        assert_eq!(s.max_abs, f32::INFINITY);
    }
}
