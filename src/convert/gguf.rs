//! `convert --to gguf`: the release as llama.cpp's `grok` architecture
//! (docs/formats/gguf-output.md). Metadata types are the ones llama.cpp's typed getters insist
//! on (u32 hyper-parameters, f32 eps and scales, u32 token ids, f32 scores, i32 token types).

use super::plan::{gguf_tensors, OutTensor};
use super::report::ConvertReport;
use super::{convert_files, load_tokenizer, refuse_problems, ConvertError, RunOptions};
use crate::gguf::constants::keys;
use crate::gguf::{ArrayValue, GgufPlan, TensorPlan, Value, Written};
use crate::model::{Config, KeyFormat, KeyValue, Role};
use crate::quant::policy::{fit_row, ModelInfo, Policy};
use crate::quant::GgmlType;
use crate::source::Checkpoint;
use crate::tokenizer::Tokenizer;
use std::path::PathBuf;

/// How tensor types are chosen.
#[derive(Clone, Debug)]
pub enum TypeChoice {
    /// One type for every matrix and the embedding (f32, f16, bf16, q8_0, ...).
    Uniform(GgmlType),
    /// A per-class policy (`--quant`).
    Policy(Policy),
}

/// Options of a GGUF conversion.
#[derive(Clone, Debug)]
pub struct GgufOptions {
    /// Output file (the first split's name is derived from it).
    pub out: PathBuf,
    /// Types.
    pub types: TypeChoice,
    /// `tokenizer.model` to embed.
    pub tokenizer: PathBuf,
    /// Split when a file would exceed this many bytes.
    pub split_max: Option<u64>,
    /// `general.name`.
    pub name: String,
    /// `tokenizer.ggml.add_bos_token` (the release's runner adds no BOS).
    pub add_bos: bool,
    /// Which files, how many workers, resume or replace.
    pub run: RunOptions,
    /// Importance matrix to weight the quantization with, and the path as the user gave it.
    pub imatrix: Option<(std::sync::Arc<crate::imatrix::Imatrix>, String)>,
}

/// llama_ftype of a uniform type (docs/formats/gguf-output.md "General metadata").
pub fn ftype_of(t: GgmlType) -> u32 {
    t.mostly_ftype()
}

/// The `general.*` and `grok.*` metadata for a config: `grok.*` from the one key table
/// ([`crate::model::CONFIG_KEYS`]), counts as u32 and reals as f32, the types llama.cpp's
/// getters insist on.
pub fn model_kvs(c: &Config, name: &str, file_type: u32) -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    let mut out = vec![
        kv(keys::GENERAL_ARCHITECTURE, Value::String("grok".into())),
        kv(keys::GENERAL_TYPE, Value::String("model".into())),
        kv(keys::GENERAL_NAME, Value::String(name.into())),
        kv(keys::GENERAL_FILE_TYPE, Value::U32(file_type)),
        kv(keys::GENERAL_QUANTIZATION_VERSION, Value::U32(2)),
    ];
    out.extend(c.to_keys(KeyFormat::Gguf).into_iter().map(|(k, v)| {
        let v = match v {
            KeyValue::Int(n) => Value::U32(u32::try_from(n).unwrap_or(u32::MAX)),
            KeyValue::Float(x) => Value::F32(x as f32),
        };
        kv(k, v)
    }));
    out
}

/// The `tokenizer.ggml.*` metadata from a SentencePiece model (docs/formats/gguf-output.md
/// "Tokenizer metadata"): llama.cpp's SentencePiece vocabulary, the special ids (the release's
/// when the model lacks one), and no BOS unless asked (the release's runner adds none).
pub fn tokenizer_kvs(tok: &Tokenizer, add_bos: bool) -> Vec<(String, Value)> {
    let pieces = tok.pieces();
    let tokens = pieces.iter().map(|p| p.piece.clone()).collect();
    let scores = pieces.iter().map(|p| p.score).collect();
    let types = pieces.iter().map(|p| p.kind.as_i32()).collect();
    let special = [
        ("bos_token_id", tok.bos_id().unwrap_or(1)),
        ("eos_token_id", tok.eos_id().unwrap_or(2)),
        ("unknown_token_id", tok.unk_id()),
        ("padding_token_id", tok.pad_id().unwrap_or(0)),
    ];
    let mut kvs = vec![
        ("model", Value::String("llama".into())),
        ("pre", Value::String("default".into())),
        ("tokens", Value::Array(ArrayValue::Str(tokens))),
        ("scores", Value::Array(ArrayValue::F32(scores))),
        ("token_type", Value::Array(ArrayValue::I32(types))),
    ];
    kvs.extend(special.map(|(k, id)| (k, Value::U32(id))));
    kvs.push(("add_bos_token", Value::Bool(add_bos)));
    kvs.push(("add_eos_token", Value::Bool(false)));
    kvs.into_iter()
        .map(|(k, v)| (format!("tokenizer.ggml.{k}"), v))
        .collect()
}

/// The model facts llama-quantize's type rules read, from a release config (GGUF files from the
/// release tie the output to the embedding).
pub fn model_info(c: &Config, has_imatrix: bool) -> ModelInfo {
    ModelInfo {
        n_layers: c.num_layers as usize,
        n_expert: c.num_experts as usize,
        n_gqa: (c.num_q_heads / c.num_kv_heads.max(1)) as usize,
        tied_output: true,
        has_imatrix,
    }
}

/// Plan the tensors of a GGUF conversion.
pub fn plan_tensors(ck: &Checkpoint, types: &TypeChoice) -> Vec<OutTensor> {
    plan_with_info(ck, types, &model_info(&ck.config, false))
}

fn plan_with_info(ck: &Checkpoint, types: &TypeChoice, info: &ModelInfo) -> Vec<OutTensor> {
    let choose = |role: Role, layer: Option<u64>, row: u64| -> (GgmlType, Option<String>) {
        let c = match types {
            TypeChoice::Uniform(t) => fit_row(*t, row),
            TypeChoice::Policy(p) => {
                p.choose(role.info().class, layer.map(|l| l as usize), info, row)
            }
        };
        (c.ty, c.fallback_reason)
    };
    gguf_tensors(ck, &choose)
}

/// Check an importance matrix against the model's GGUF tensors (names, widths, expert counts).
pub(crate) fn check_imatrix(
    m: &crate::imatrix::Imatrix,
    tensors: &[OutTensor],
) -> Result<(), ConvertError> {
    let nes: Vec<(String, Vec<u64>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.iter().rev().copied().collect()))
        .collect();
    m.check_model(nes.iter().map(|(n, ne)| (n.as_str(), &ne[..])))?;
    Ok(())
}

/// [`plan_tensors`] with an importance matrix (or explicitly without one): the preset rules that
/// depend on having one apply, the matrix is checked against the model (names, widths, expert
/// counts), each quantized tensor is marked to use its entry or noted as quantized without one,
/// and a tensor whose type needs a matrix it does not have is an error naming it.
pub fn plan_tensors_with(
    ck: &Checkpoint,
    types: &TypeChoice,
    imatrix: Option<&crate::imatrix::Imatrix>,
) -> Result<Vec<OutTensor>, ConvertError> {
    let info = model_info(&ck.config, imatrix.is_some());
    let mut tensors = plan_with_info(ck, types, &info);
    if let Some(m) = imatrix {
        check_imatrix(m, &tensors)?;
    }
    let preset = match types {
        TypeChoice::Policy(p) => p.preset_of(),
        TypeChoice::Uniform(_) => None,
    };
    for t in &mut tensors {
        let ty = ggml_type_of(t);
        if !ty.is_quantized() {
            continue;
        }
        let u = super::weights::weight_use(imatrix, &t.name, ty, preset)?;
        t.imatrix = u.apply;
        if let Some(n) = u.note {
            t.note = Some(t.note.take().map_or(n.clone(), |o| format!("{o}; {n}")));
        }
    }
    Ok(tensors)
}

/// Convert to GGUF. `progress` receives output bytes as they are written.
pub fn convert_gguf(
    ck: &Checkpoint,
    o: &GgufOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertReport, ConvertError> {
    refuse_problems(ck)?;
    let tok = load_tokenizer(ck, &o.tokenizer)?;
    let imatrix = o.imatrix.as_ref().map(|(m, _)| m.as_ref());
    let tensors = plan_tensors_with(ck, &o.types, imatrix)?;
    let file_type = match &o.types {
        TypeChoice::Uniform(t) => ftype_of(*t),
        TypeChoice::Policy(p) => p.file_type(),
    };
    let mut kvs = model_kvs(&ck.config, &o.name, file_type);
    kvs.extend(tokenizer_kvs(&tok, o.add_bos));
    if let Some((m, given)) = &o.imatrix {
        kvs.extend(super::weights::imatrix_kvs(m, given));
    }
    let plans = tensors
        .iter()
        .map(|t| {
            Ok(TensorPlan::new(
                t.name.clone(),
                t.shape.clone(),
                t.ggml_type()?,
            ))
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let files = GgufPlan::new(kvs, plans).split(o.split_max, &o.out)?;
    let (report, _) = convert_files(
        ck,
        &tensors,
        &files,
        &o.run,
        progress,
        &|t| Ok(t.ggml_type()?.name()),
        &|t| match (t.imatrix, imatrix) {
            (true, Some(m)) => Ok(m.weights(&t.name)?),
            _ => Ok(None),
        },
        &mut |f| {
            Ok(Some(Written {
                path: f.path().to_path_buf(),
                bytes: f.file_len(),
                sha256: Default::default(),
            }))
        },
        &mut |_| Ok(()),
    )?;
    Ok(report)
}

/// The ggml type an output tensor is stored as, for listing a GGUF plan (F32 for encodings
/// GGUF does not carry, which a GGUF plan never holds; [`OutTensor::ggml_type`] says so).
pub fn ggml_type_of(t: &OutTensor) -> GgmlType {
    t.encode.ggml_type().unwrap_or(GgmlType::F32)
}
