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
//! streamed in chunks of whole blocks (`stream`): decode to f32 (`dequantize_row`), encode
//! (`quantize_row`), up to `jobs` chunks in parallel, written in order by the conversion
//! pipeline's writer thread through the file loop `convert` uses too ([`super::sink`]). Every
//! ggml block type encodes each block independently, so cutting a tensor at any common block
//! boundary gives the same bytes as encoding it whole. Memory per worker is about three chunks
//! (`CHUNK_ELEMS` f32 in, f32 decoded back for the error statistics, encoded bytes), plus the
//! encoded chunks queued for the writer, and the input's mapped pages are released as they are
//! consumed, so the peak does not depend on tensor or file size.
//!
//! Safety rails, as llama-quantize: a tensor that is already block-quantized is not quantized
//! again to another block type without `allow_requantize` (two rounding errors compound); a
//! tensor whose type does not change is copied verbatim, never decoded.

mod stream;

use super::encode::Stats;
use super::output::{check_outputs, Existing, Inputs};
use super::report::bits_per_weight;
use super::sink::{ByName, FileLoop};
use super::ConvertError;
use crate::gguf::constants::keys;
use crate::gguf::{GgufFile, GgufPlan, GgufSet, TensorPlan, Value};
use crate::quant::policy::{ModelInfo, Policy, TensorClass};
use crate::quant::{self, GgmlType};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub use stream::CHUNK_ELEMS;

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
) -> Result<RequantPlan, ConvertError> {
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
) -> Result<RequantPlan, ConvertError> {
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
            return Err(ConvertError::Unconvertible {
                path: f.path().to_path_buf(),
                tensor: t.name.clone(),
                from: t.ty,
                to: out_ty,
            });
        } else if t.ty.is_quantized() && out_ty.is_quantized() {
            if !allow_requantize {
                return Err(ConvertError::Requantize {
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
        let out_bytes = out_ty
            .tensor_bytes(&t.ne)
            .ok_or_else(|| ConvertError::DoesNotFit {
                path: f.path().to_path_buf(),
                tensor: t.name.clone(),
                to: out_ty,
                ne: t.ne.clone(),
            })?;
        let mut weighted = false;
        if action != Action::Copy {
            let u = super::weights::weight_use(
                imatrix.map(|(m, _)| m),
                &t.name,
                out_ty,
                policy.preset_of(),
            )?;
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

/// Write the plan's output. `progress` receives output bytes as they are written.
pub fn requantize(
    set: &GgufSet,
    plan: &RequantPlan,
    o: &RequantOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RequantReport, ConvertError> {
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
) -> Result<RequantReport, ConvertError> {
    let files = plan.gguf_plan().split(o.split_max, &o.out)?;
    let paths: Vec<&Path> = files.iter().map(|f| f.path()).collect();
    let inputs = set.paths();
    let existing = if o.force {
        Existing::Allow
    } else {
        Existing::Refuse("--force to replace it")
    };
    check_outputs(
        Inputs {
            checkpoint: None,
            files: &inputs,
        },
        &paths,
        existing,
    )?;
    let mut report = RequantReport {
        file_type: plan.file_type,
        ..Default::default()
    };
    let by_name = ByName::new(&plan.tensors, |t| t.name.as_str());
    let mut total = Stats::default();
    let mut pool = Vec::new();
    let run = FileLoop {
        shard: None,
        resume: false,
        progress,
    };
    let outcome = run.run(
        &files,
        &mut |_| Ok(None),
        &mut |path, name, chunks| {
            let t = by_name.get(path, name)?;
            let (file, info) = set.tensor(name).ok_or_else(|| ConvertError::NotInInput {
                tensor: name.to_string(),
            })?;
            let weights = match (t.imatrix, imatrix) {
                (true, Some(m)) => m.weights(&t.name)?,
                (true, None) => {
                    return Err(ConvertError::ImatrixNotGiven {
                        tensor: t.name.clone(),
                    })
                }
                _ => None,
            };
            let stats =
                stream::stream_tensor(file, info, t, o, weights.as_deref(), &mut pool, chunks)?;
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
                bpw: bits_per_weight(t.out_bytes, t.elems()),
                rms: stats.rms(),
                max_abs: stats.max_abs,
                note: t.note.clone(),
            });
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    report.files = outcome
        .written
        .into_iter()
        .map(|w| (w.path, w.bytes))
        .collect();
    report.totals = RequantTotals::of(plan, &total);
    Ok(report)
}

impl RequantTotals {
    /// The totals of `plan`, with the error statistics of every tensor written.
    fn of(plan: &RequantPlan, errors: &Stats) -> RequantTotals {
        let count = |a: Action| plan.tensors.iter().filter(|t| t.action == a).count();
        let elements = plan.tensors.iter().map(RequantTensor::elems).sum();
        let out_bytes = plan.out_bytes();
        RequantTotals {
            tensors: plan.tensors.len(),
            elements,
            in_bytes: plan.tensors.iter().map(|t| t.in_bytes).sum(),
            out_bytes,
            bpw: bits_per_weight(out_bytes, elements),
            rms: errors.rms(),
            max_abs: errors.max_abs,
            copied: count(Action::Copy),
            encoded: count(Action::Encode),
            requantized: count(Action::Requantize),
        }
    }
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
        let mut s = Stats::default();
        s.add_errors(&[1.0, 2.0, f32::NAN], &[1.5, 2.0, f32::NAN]);
        assert_eq!(s.n, 3);
        assert_eq!(s.max_abs, 0.5);
        assert!((s.rms() - (0.25f64 / 3.0).sqrt()).abs() < 1e-12);
        s.add_errors(&[0.0], &[f32::NAN]);
        assert_eq!(s.max_abs, f32::INFINITY);
        assert_eq!(G::Q4_K.mostly_ftype(), 15);
        assert_eq!(G::BF16.mostly_ftype(), 32);
    }
}
