//! `convert --to gguf`: the release as llama.cpp's `grok` architecture (output-formats.md §2-4).
//! Metadata types are the ones llama.cpp's typed getters insist on (u32 hyper-parameters, f32
//! eps and scales, u32 token ids, f32 scores, i32 token types).

use super::encode::Measure;
use super::exec::{stream_tensor_with, Scratch};
use super::plan::{class_of, gguf_tensors, OutTensor};
use super::report::{ConvertReport, TensorReport};
use super::{check_output_path, ConvertError};
use crate::gguf::{ArrayValue, GgufFileWriter, GgufPlan, TensorPlan, Value};
use crate::model::{Config, Role};
use crate::quant::policy::{fit_row, ModelInfo, Policy};
use crate::quant::GgmlType;
use crate::source::Checkpoint;
use crate::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

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
    /// Write only files `k` (0-based) of every `n`.
    pub shard: Option<(usize, usize)>,
    /// Keep output files that already exist with their planned size.
    pub resume: bool,
    /// Replace existing outputs.
    pub force: bool,
    /// Parallel bands.
    pub jobs: usize,
    /// Measure quantization errors.
    pub measure: Measure,
    /// Importance matrix to weight the quantization with, and the path as the user gave it.
    pub imatrix: Option<(std::sync::Arc<crate::imatrix::Imatrix>, String)>,
}

fn u32v(x: u64) -> Value {
    Value::U32(u32::try_from(x).unwrap_or(u32::MAX))
}

/// The `general.*` and `grok.*` metadata for a config.
pub fn model_kvs(c: &Config, name: &str, file_type: u32) -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", Value::String("grok".into())),
        kv("general.type", Value::String("model".into())),
        kv("general.name", Value::String(name.into())),
        kv("general.file_type", Value::U32(file_type)),
        kv("general.quantization_version", Value::U32(2)),
        kv("grok.vocab_size", u32v(c.vocab_size)),
        kv("grok.context_length", u32v(c.max_seq_len)),
        kv("grok.embedding_length", u32v(c.emb_size)),
        kv("grok.block_count", u32v(c.num_layers)),
        kv("grok.feed_forward_length", u32v(c.ffn_size)),
        kv("grok.attention.head_count", u32v(c.num_q_heads)),
        kv("grok.attention.head_count_kv", u32v(c.num_kv_heads)),
        kv(
            "grok.attention.layer_norm_rms_epsilon",
            Value::F32(c.rms_norm_eps as f32),
        ),
        kv("grok.rope.freq_base", Value::F32(c.rope_base as f32)),
        kv("grok.rope.dimension_count", u32v(c.key_size)),
        kv("grok.expert_count", u32v(c.num_experts)),
        kv("grok.expert_used_count", u32v(c.num_selected_experts)),
        kv(
            "grok.embedding_scale",
            Value::F32(c.embedding_multiplier_scale as f32),
        ),
        kv(
            "grok.attention.output_scale",
            Value::F32(c.attn_output_multiplier as f32),
        ),
        kv(
            "grok.attn_logit_softcapping",
            Value::F32(c.attn_logit_cap as f32),
        ),
        kv(
            "grok.logit_scale",
            Value::F32(c.output_multiplier_scale as f32),
        ),
    ]
}

/// The `tokenizer.ggml.*` metadata from a SentencePiece model.
pub fn tokenizer_kvs(tok: &Tokenizer, add_bos: bool) -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    let pieces = tok.pieces();
    vec![
        kv("tokenizer.ggml.model", Value::String("llama".into())),
        kv("tokenizer.ggml.pre", Value::String("default".into())),
        kv(
            "tokenizer.ggml.tokens",
            Value::Array(ArrayValue::Str(
                pieces.iter().map(|p| p.piece.clone()).collect(),
            )),
        ),
        kv(
            "tokenizer.ggml.scores",
            Value::Array(ArrayValue::F32(pieces.iter().map(|p| p.score).collect())),
        ),
        kv(
            "tokenizer.ggml.token_type",
            Value::Array(ArrayValue::I32(
                pieces.iter().map(|p| p.kind.as_i32()).collect(),
            )),
        ),
        kv(
            "tokenizer.ggml.bos_token_id",
            Value::U32(tok.bos_id().unwrap_or(1)),
        ),
        kv(
            "tokenizer.ggml.eos_token_id",
            Value::U32(tok.eos_id().unwrap_or(2)),
        ),
        kv("tokenizer.ggml.unknown_token_id", Value::U32(tok.unk_id())),
        kv(
            "tokenizer.ggml.padding_token_id",
            Value::U32(tok.pad_id().unwrap_or(0)),
        ),
        kv("tokenizer.ggml.add_bos_token", Value::Bool(add_bos)),
        kv("tokenizer.ggml.add_eos_token", Value::Bool(false)),
    ]
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
    let info = model_info(&ck.config, false);
    let choose = |role: Role, layer: Option<u64>, row: u64| -> (GgmlType, Option<String>) {
        let c = match types {
            TypeChoice::Uniform(t) => fit_row(*t, row),
            TypeChoice::Policy(p) => {
                p.choose(class_of(role), layer.map(|l| l as usize), &info, row)
            }
        };
        (c.ty, c.fallback_reason)
    };
    gguf_tensors(ck, &choose)
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
    let choose = |role: Role, layer: Option<u64>, row: u64| -> (GgmlType, Option<String>) {
        let c = match types {
            TypeChoice::Uniform(t) => fit_row(*t, row),
            TypeChoice::Policy(p) => {
                p.choose(class_of(role), layer.map(|l| l as usize), &info, row)
            }
        };
        (c.ty, c.fallback_reason)
    };
    let mut tensors = gguf_tensors(ck, &choose);
    if let Some(m) = imatrix {
        let nes: Vec<(String, Vec<u64>)> = tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.iter().rev().copied().collect()))
            .collect();
        m.check_model(nes.iter().map(|(n, ne)| (n.as_str(), &ne[..])))
            .map_err(|e| ConvertError::Refused(e.to_string()))?;
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
        let u = super::weights::weight_use(imatrix, &t.name, ty, preset)
            .map_err(ConvertError::Refused)?;
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
    if let Some(p) = ck.problems.first() {
        return Err(ConvertError::Problems {
            dir: ck.dir.clone(),
            count: ck.problems.len(),
            first: format!("{}: {}", p.tensor, p.msg),
        });
    }
    let tok = Tokenizer::from_file(&o.tokenizer)
        .map_err(|e| ConvertError::Plan(format!("tokenizer {}: {e}", o.tokenizer.display())))?;
    if tok.pieces().len() as u64 != ck.config.vocab_size {
        return Err(ConvertError::Refused(format!(
            "tokenizer {} has {} pieces but the checkpoint's vocabulary is {}; pass the matching --tokenizer",
            o.tokenizer.display(),
            tok.pieces().len(),
            ck.config.vocab_size
        )));
    }
    let imatrix = o.imatrix.as_ref().map(|(m, _)| m.as_ref());
    let tensors = plan_tensors_with(ck, &o.types, imatrix)?;
    let file_type = match &o.types {
        TypeChoice::Uniform(t) => t.mostly_ftype(),
        TypeChoice::Policy(p) => p.file_type(),
    };
    let mut kvs = model_kvs(&ck.config, &o.name, file_type);
    kvs.extend(tokenizer_kvs(&tok, o.add_bos));
    if let Some((m, given)) = &o.imatrix {
        kvs.extend(super::weights::imatrix_kvs(m, given));
    }
    let plan = GgufPlan::new(
        kvs,
        tensors
            .iter()
            .map(|t| TensorPlan::new(t.name.clone(), t.shape.clone(), ggml_type_of(t)))
            .collect(),
    );
    let files = plan
        .split(o.split_max, &o.out)
        .map_err(|e| ConvertError::Plan(e.to_string()))?;
    // With --shard, other workers' files may already exist in the shared output: check only ours.
    let paths: Vec<&Path> = files
        .iter()
        .enumerate()
        .filter(|(fi, _)| o.shard.is_none_or(|(k, n)| fi % n == k))
        .map(|(_, f)| f.path())
        .collect();
    check_output_path(&ck.dir, &paths, o.force || o.resume)?;
    let mut report = ConvertReport::default();
    let mut scratch = Scratch::default();
    for (fi, f) in files.iter().enumerate() {
        if let Some((k, n)) = o.shard {
            if fi % n != k {
                continue;
            }
        }
        if o.resume && super::complete_as_planned(f.path(), f.file_len(), &f.header_bytes()) {
            report.skipped.push(f.path().to_path_buf());
            progress(f.data_len());
            continue;
        }
        let mut w =
            GgufFileWriter::create(f.clone()).map_err(|e| ConvertError::Plan(e.to_string()))?;
        for pt in f.tensors() {
            let t = tensors
                .iter()
                .find(|t| t.name == pt.name)
                .ok_or_else(|| ConvertError::Plan(format!("{} planned but not found", pt.name)))?;
            let mut sink = |b: &[u8]| -> Result<(), ConvertError> {
                w.write_tensor_chunk(b)
                    .map_err(|e| ConvertError::Plan(e.to_string()))?;
                progress(b.len() as u64);
                Ok(())
            };
            let weights = match (t.imatrix, imatrix) {
                (true, Some(m)) => m
                    .weights(&t.name)
                    .map_err(|e| ConvertError::Refused(e.to_string()))?,
                _ => None,
            };
            let stats = stream_tensor_with(
                ck,
                t,
                o.measure,
                o.jobs,
                weights.as_deref(),
                &mut scratch,
                &mut sink,
            )?;
            report
                .tensors
                .push(TensorReport::new(t, ggml_type_of(t).name(), stats));
        }
        let written = w.finish().map_err(|e| ConvertError::Plan(e.to_string()))?;
        report.files.push((written.path, written.bytes));
    }
    Ok(report)
}

/// The ggml type an output tensor is stored as.
pub fn ggml_type_of(t: &OutTensor) -> GgmlType {
    match &t.encode {
        super::plan::Encode::Ggml(q) => *q,
        super::plan::Encode::Float(d) => match d {
            crate::base::DType::F16 => GgmlType::F16,
            crate::base::DType::BF16 => GgmlType::BF16,
            _ => GgmlType::F32,
        },
        _ => GgmlType::F32,
    }
}
