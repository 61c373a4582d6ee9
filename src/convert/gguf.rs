//! `convert --to gguf`: the release as llama.cpp's `grok` architecture
//! (docs/formats/gguf-output.md). Metadata types are the ones llama.cpp's typed getters insist
//! on (u32 hyper-parameters, f32 eps and scales, u32 token ids, f32 scores, i32 token types).

use super::plan::{gguf_tensors, OutTensor};
use super::report::ConvertReport;
use super::{convert_files, load_tokenizer, refuse_problems, ConvertError, RunOptions};
use crate::gguf::constants::keys;
use crate::gguf::{ArrayValue, GgufPlan, TensorPlan, Value, Written};
use crate::model::{Config, KeyFormat, KeyValue, Role};
use crate::quant::policy::{fit_row, Policy};
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
    use crate::tokenizer::gguf_vocab::{keys, SPM_MODEL};
    let pieces = tok.pieces();
    let tokens = pieces.iter().map(|p| p.piece.clone()).collect();
    let scores = pieces.iter().map(|p| p.score).collect();
    let types = pieces.iter().map(|p| p.kind.as_i32()).collect();
    let special = [
        (keys::BOS_ID, tok.bos_id().unwrap_or(1)),
        (keys::EOS_ID, tok.eos_id().unwrap_or(2)),
        (keys::UNK_ID, tok.unk_id()),
        (keys::PAD_ID, tok.pad_id().unwrap_or(0)),
    ];
    let mut kvs = vec![
        (keys::MODEL, Value::String(SPM_MODEL.into())),
        (keys::PRE, Value::String("default".into())),
        (keys::TOKENS, Value::Array(ArrayValue::Str(tokens))),
        (keys::SCORES, Value::Array(ArrayValue::F32(scores))),
        (keys::TOKEN_TYPE, Value::Array(ArrayValue::I32(types))),
    ];
    kvs.extend(special.map(|(k, id)| (k, Value::U32(id))));
    kvs.push((keys::ADD_BOS, Value::Bool(add_bos)));
    kvs.push((keys::ADD_EOS, Value::Bool(false)));
    kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Plan the tensors of a GGUF conversion.
pub fn plan_tensors(ck: &Checkpoint, types: &TypeChoice) -> Vec<OutTensor> {
    let n_layers = ck.config.num_layers as usize;
    let choose = |role: Role, layer: Option<u64>, row: u64| -> (GgmlType, Option<String>) {
        let c = match types {
            TypeChoice::Uniform(t) => fit_row(*t, row),
            TypeChoice::Policy(p) => {
                p.choose(role.info().class, layer.map(|l| l as usize), n_layers, row)
            }
        };
        (c.ty, c.fallback_reason)
    };
    gguf_tensors(ck, &choose)
}

/// Convert to GGUF. `progress` receives output bytes as they are written.
pub fn convert_gguf(
    ck: &Checkpoint,
    o: &GgufOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertReport, ConvertError> {
    refuse_problems(ck)?;
    let tok = load_tokenizer(ck, &o.tokenizer)?;
    let tensors = plan_tensors(ck, &o.types);
    let file_type = match &o.types {
        TypeChoice::Uniform(t) => ftype_of(*t),
        TypeChoice::Policy(p) => p.file_type(),
    };
    let mut kvs = model_kvs(&ck.config, &o.name, file_type);
    kvs.extend(tokenizer_kvs(&tok, o.add_bos));
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
