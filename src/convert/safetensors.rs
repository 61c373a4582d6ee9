//! `convert --to safetensors`: Hugging Face / vLLM layouts (output-formats.md §1, §7).
//! Shards follow huggingface_hub's rules; tensors are streamed into each shard in the writer's
//! layout order; every output gets a SHA-256 in `SHA256SUMS`, computed while writing.

use super::encode::Measure;
use super::exec::{stream_tensor_with, Scratch};
use super::plan::{ct_group, st_tensors, Layout, OutTensor, StDtype};
use super::report::{ConvertReport, TensorReport};
use super::{check_output_path, ConvertError};
use crate::base::DType;
use crate::model::{roles::fill, Config, Role};
use crate::safetensors_io::{
    plan_shards, write_sha256sums, write_small_file, ShardPlan, ShardWriter, StTensor, Written,
};
use crate::source::Checkpoint;
use crate::tokenizer::Tokenizer;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Options of a safetensors conversion.
#[derive(Clone, Debug)]
pub struct StOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Naming scheme.
    pub layout: Layout,
    /// Matrix dtype.
    pub dtype: StDtype,
    /// Shard budget in bytes (decimal, like huggingface_hub).
    pub shard_size: u64,
    /// `tokenizer.model` to copy (with its config files).
    pub tokenizer: Option<PathBuf>,
    /// Keep shards that already exist with their planned size.
    pub resume: bool,
    /// Replace existing outputs.
    pub force: bool,
    /// Write only shards `k` (0-based) of every `n`, and no index/config files.
    pub shard: Option<(usize, usize)>,
    /// Parallel bands.
    pub jobs: usize,
    /// Measure quantization errors.
    pub measure: Measure,
    /// Importance matrix for a weighted scale search of the int4 groups (`--dtype int4`).
    pub imatrix: Option<std::sync::Arc<crate::imatrix::Imatrix>>,
}

fn plan(ck: &Checkpoint, o: &StOptions) -> Result<(Vec<OutTensor>, ShardPlan), ConvertError> {
    let tensors = st_tensors(ck, o.layout, o.dtype).map_err(ConvertError::Plan)?;
    let st: Vec<StTensor> = tensors
        .iter()
        .map(|t| StTensor::new(t.name.clone(), t.st_dtype(), t.shape.clone()))
        .collect();
    let sp = plan_shards(&st, o.shard_size).map_err(|e| ConvertError::Plan(e.to_string()))?;
    Ok((tensors, sp))
}

/// The index, config and tokenizer files written beside the shards.
const SIDE_FILES: &[&str] = &[
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "SHA256SUMS",
];

/// Side files are rewritten on every run, but never over the input checkpoint's own
/// `config.json` / `tokenizer.model` (`-o` = the checkpoint's directory).
fn check_side_files(ck: &Checkpoint, o: &StOptions) -> Result<(), ConvertError> {
    let side: Vec<PathBuf> = SIDE_FILES.iter().map(|n| o.out_dir.join(n)).collect();
    let refs: Vec<&Path> = side.iter().map(PathBuf::as_path).collect();
    check_output_path(&ck.dir, &refs, true)
}

/// Load the tokenizer to copy, refusing one whose vocabulary does not match the checkpoint
/// (as the GGUF path does).
fn load_tokenizer(ck: &Checkpoint, tp: &Path) -> Result<Tokenizer, ConvertError> {
    let tok = Tokenizer::from_file(tp)
        .map_err(|e| ConvertError::Plan(format!("tokenizer {}: {e}", tp.display())))?;
    if tok.pieces().len() as u64 != ck.config.vocab_size {
        return Err(ConvertError::Refused(format!("tokenizer {} has {} pieces but the checkpoint's vocabulary is {}; pass the matching --tokenizer", tp.display(), tok.pieces().len(), ck.config.vocab_size)));
    }
    Ok(tok)
}

fn hash_file(path: &Path) -> Result<Written, ConvertError> {
    let mut f = std::fs::File::open(path).map_err(|e| crate::io::IoError::new("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| crate::io::IoError::new("read", path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok(Written {
        path: path.to_path_buf(),
        bytes: n,
        sha256: crate::base::hex::encode(&h.finalize()),
    })
}

/// The hidden record of a shard's SHA-256 (`.NAME.sha256`, sha256sum format), written when the
/// shard is complete so `--resume` can check a kept shard's size AND content.
fn record_path(shard: &Path) -> PathBuf {
    let name = shard
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    shard.with_file_name(format!(".{name}.sha256"))
}

fn record(w: &Written) -> Result<(), ConvertError> {
    let line = format!("{}  {}\n", w.sha256, w.file_name());
    crate::io::atomic::write_file(&record_path(&w.path), line.as_bytes())?;
    Ok(())
}

/// The shard's `Written` if a record exists and the file still hashes to it.
fn recorded_and_matching(path: &Path) -> Result<Option<Written>, ConvertError> {
    // The record of an unfinished run, else the finished run's SHA256SUMS line.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sums = path.with_file_name("SHA256SUMS");
    let line = std::fs::read_to_string(record_path(path)).ok().or_else(|| {
        std::fs::read_to_string(&sums).ok().and_then(|t| {
            t.lines()
                .find(|l| l.ends_with(&format!("  {name}")))
                .map(str::to_string)
        })
    });
    let Some(want) = line
        .as_deref()
        .and_then(|t| t.split_whitespace().next())
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let w = hash_file(path)?;
    Ok((w.sha256 == want).then_some(w))
}

/// The importance-matrix entry of an int4 compressed-tensors tensor (`weight_packed` or
/// `weight_scale`), found by the GGUF name of its role and layer; `None` without a matrix,
/// for other encodings, or when the matrix has no entry (quantized with the plain scale).
fn int4_weights(o: &StOptions, t: &OutTensor) -> Result<Option<Vec<f32>>, ConvertError> {
    use super::plan::Encode;
    let Some(m) = &o.imatrix else {
        return Ok(None);
    };
    if !matches!(
        t.encode,
        Encode::CtPacked { bits: 4, .. } | Encode::CtScale { bits: 4, .. }
    ) {
        return Ok(None);
    }
    let name = fill(t.role.info().gguf, t.layer, None);
    m.weights(&name)
        .map_err(|e| ConvertError::Refused(e.to_string()))
}

/// Convert to safetensors. Without `--shard`, also writes the index, configs and SHA256SUMS.
pub fn convert_safetensors(
    ck: &Checkpoint,
    o: &StOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertReport, ConvertError> {
    if let Some(p) = ck.problems.first() {
        return Err(ConvertError::Problems {
            dir: ck.dir.clone(),
            count: ck.problems.len(),
            first: format!("{}: {}", p.tensor, p.msg),
        });
    }
    let (tensors, sp) = plan(ck, o)?;
    if let Some(m) = &o.imatrix {
        // The matrix names tensors as GGUF does; check it against the model's GGUF view.
        let g = super::gguf::plan_tensors(
            ck,
            &super::gguf::TypeChoice::Uniform(crate::quant::GgmlType::BF16),
        );
        let nes: Vec<(String, Vec<u64>)> = g
            .iter()
            .map(|t| (t.name.clone(), t.shape.iter().rev().copied().collect()))
            .collect();
        m.check_model(nes.iter().map(|(n, ne)| (n.as_str(), &ne[..])))
            .map_err(|e| ConvertError::Refused(e.to_string()))?;
    }
    // Refuse before creating any directory: the nearest existing ancestor of the output
    // directory must not lie inside the input (a refused run leaves the input untouched).
    let mut existing = o.out_dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    check_output_path(&ck.dir, &[existing], true)?;
    std::fs::create_dir_all(&o.out_dir)
        .map_err(|e| crate::io::IoError::new("create", &o.out_dir, e))?;
    // With --shard, other workers' shards may already exist in the shared output: check only ours.
    let paths: Vec<PathBuf> = sp
        .shards()
        .iter()
        .enumerate()
        .filter(|(si, _)| o.shard.is_none_or(|(k, n)| si % n == k))
        .map(|(_, s)| o.out_dir.join(s.file_name()))
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    check_output_path(&ck.dir, &refs, o.force || o.resume)?;
    check_side_files(ck, o)?;
    if let Some(tp) = &o.tokenizer {
        load_tokenizer(ck, tp)?;
    }
    let mut report = ConvertReport::default();
    let mut fresh: Vec<Written> = Vec::new();
    let mut scratch = Scratch::default();
    for (si, shard) in sp.shards().iter().enumerate() {
        if let Some((k, n)) = o.shard {
            if si % n != k {
                continue;
            }
        }
        let path = o.out_dir.join(shard.file_name());
        if o.resume && super::complete_as_planned(&path, shard.file_size(), shard.header()) {
            // Keep it only if its content still has the hash recorded when it was written.
            if let Some(w) = recorded_and_matching(&path)? {
                report.skipped.push(path);
                fresh.push(w);
                progress(shard.data_len());
                continue;
            }
        }
        let mut w = ShardWriter::create(&o.out_dir, shard)
            .map_err(|e| ConvertError::Plan(e.to_string()))?;
        let layout: Vec<String> = w.layout().iter().map(|t| t.name.clone()).collect();
        for name in layout {
            let t = tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| ConvertError::Plan(format!("{name} planned but not found")))?;
            w.begin_tensor(&name)
                .map_err(|e| ConvertError::Plan(e.to_string()))?;
            let mut sink = |b: &[u8]| -> Result<(), ConvertError> {
                w.write_tensor_chunk(b)
                    .map_err(|e| ConvertError::Plan(e.to_string()))?;
                progress(b.len() as u64);
                Ok(())
            };
            let weights = int4_weights(o, t)?;
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
                .push(TensorReport::new(t, t.st_dtype().safetensors(), stats));
        }
        let written = w.finish().map_err(|e| ConvertError::Plan(e.to_string()))?;
        record(&written)?;
        report.files.push((written.path.clone(), written.bytes));
        fresh.push(written);
    }
    if o.shard.is_none() {
        finish_with(ck, o, &fresh)?;
    }
    Ok(report)
}

/// The total planned tensor bytes (for progress bars).
pub fn planned_bytes(ck: &Checkpoint, o: &StOptions) -> Result<u64, ConvertError> {
    Ok(plan(ck, o)?.1.total_size())
}

/// Write the index, config files, tokenizer files and `SHA256SUMS` once every shard exists
/// (`convert --finish` after `--shard K/N` workers). Shards are checked for their planned size
/// and hashed.
pub fn finish_safetensors(ck: &Checkpoint, o: &StOptions) -> Result<Vec<Written>, ConvertError> {
    finish_with(ck, o, &[])
}

/// [`finish_safetensors`], reusing the SHA-256 of shards this process just wrote (hashed while
/// writing) instead of reading them again.
fn finish_with(
    ck: &Checkpoint,
    o: &StOptions,
    known: &[Written],
) -> Result<Vec<Written>, ConvertError> {
    let (_, sp) = plan(ck, o)?;
    check_side_files(ck, o)?;
    let mut all = Vec::new();
    for s in sp.shards() {
        let p = o.out_dir.join(s.file_name());
        let len = std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| crate::io::IoError::new("stat", &p, e))?;
        if len != s.file_size() {
            return Err(ConvertError::Refused(format!(
                "{}: {len} bytes but the plan says {}; rerun the worker that owns it",
                p.display(),
                s.file_size()
            )));
        }
        match known.iter().find(|w| w.path == p && w.bytes == len) {
            Some(w) => all.push(w.clone()),
            None => all.push(hash_file(&p)?),
        }
    }
    let small = |name: &str, text: String| -> Result<Written, ConvertError> {
        write_small_file(&o.out_dir, name, text.as_bytes())
            .map_err(|e| ConvertError::Plan(e.to_string()))
    };
    if sp.is_sharded() {
        all.push(small("model.safetensors.index.json", sp.index_json())?);
    }
    all.push(small(
        "config.json",
        pretty(&hf_config(&ck.config, o.layout, o.dtype)),
    )?);
    all.push(small("generation_config.json", pretty(&json!({"_from_model_config": true, "bos_token_id": ck.config.bos_token, "eos_token_id": ck.config.eos_token, "pad_token_id": ck.config.pad_token})))?);
    if let Some(tp) = &o.tokenizer {
        let tok = load_tokenizer(ck, tp)?;
        let bytes = std::fs::read(tp).map_err(|e| crate::io::IoError::new("read", tp, e))?;
        all.push(
            write_small_file(&o.out_dir, "tokenizer.model", &bytes)
                .map_err(|e| ConvertError::Plan(e.to_string()))?,
        );
        let piece = |id: Option<u32>, dflt: &str| {
            id.and_then(|i| tok.id_to_piece(i))
                .map(str::to_string)
                .unwrap_or_else(|| dflt.to_string())
        };
        let (bos, eos, unk, pad) = (
            piece(tok.bos_id(), "[BOS]"),
            piece(tok.eos_id(), "[EOS]"),
            piece(Some(tok.unk_id()), "[UNK]"),
            piece(tok.pad_id(), "[PAD]"),
        );
        all.push(small(
            "tokenizer_config.json",
            pretty(&json!({"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": false, "bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad, "model_max_length": ck.config.max_seq_len, "clean_up_tokenization_spaces": false, "legacy": true})),
        )?);
        all.push(small(
            "special_tokens_map.json",
            pretty(
                &json!({"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}),
            ),
        )?);
    }
    let sums = write_sha256sums(&o.out_dir, &all).map_err(|e| ConvertError::Plan(e.to_string()))?;
    // SHA256SUMS now holds every shard's hash: the per-shard resume records are redundant.
    for s in sp.shards() {
        let _ = std::fs::remove_file(record_path(&o.out_dir.join(s.file_name())));
    }
    all.push(sums);
    Ok(all)
}

fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `config.json` for the chosen layout (spec §8 keys and §1.5 consumer keys).
pub fn hf_config(c: &Config, layout: Layout, dtype: StDtype) -> Json {
    let arch = match layout {
        Layout::Hf => "Grok1ModelForCausalLM",
        Layout::Jax => "GrokForCausalLM",
    };
    let torch_dtype = match dtype {
        StDtype::Float(DType::F32) => "float32",
        StDtype::Float(DType::F16) => "float16",
        _ => "bfloat16",
    };
    let mut v = json!({
        "architectures": [arch],
        "model_type": "grok-1",
        "vocab_size": c.vocab_size,
        "hidden_size": c.emb_size,
        "intermediate_size": c.ffn_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_q_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.key_size,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_base,
        "hidden_act": "gelu_pytorch_tanh",
        "attn_output_multiplier": c.attn_output_multiplier,
        "embedding_multiplier_scale": c.embedding_multiplier_scale,
        "output_multiplier_scale": c.output_multiplier_scale,
        "max_attn_value": c.attn_logit_cap,
        "attn_logit_softcapping": c.attn_logit_cap,
        "num_experts_per_tok": c.num_selected_experts,
        "num_experts": c.num_experts,
        "num_local_experts": c.num_experts,
        "router_aux_loss_coef": 0.001,
        "output_router_logits": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "pad_token_id": c.pad_token,
        "bos_token_id": c.bos_token,
        "eos_token_id": c.eos_token,
        "torch_dtype": torch_dtype,
    });
    if let StDtype::Ct(bits) = dtype {
        let info_e = Role::Embed.info();
        let embed = match layout {
            Layout::Hf => info_e.hf,
            Layout::Jax => info_e.jax,
        };
        let mut ignore = vec![
            Json::from("lm_head"),
            Json::from(embed.strip_suffix(".weight").unwrap_or(embed)),
        ];
        for l in 0..c.num_layers {
            let info = Role::Router.info();
            let t = match layout {
                Layout::Hf => info.hf,
                Layout::Jax => info.jax,
            };
            let n = fill(t, Some(l), None);
            ignore.push(Json::from(n.strip_suffix(".weight").unwrap_or(&n)));
        }
        v["quantization_config"] = json!({
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "quantization_status": "compressed",
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": match ct_group(c) {
                    Some(g) => json!({"num_bits": bits, "type": "int", "symmetric": true, "strategy": "group", "group_size": g, "dynamic": false, "actorder": null, "observer": "minmax"}),
                    None => json!({"num_bits": bits, "type": "int", "symmetric": true, "strategy": "channel", "group_size": null, "dynamic": false, "actorder": null, "observer": "minmax"}),
                },
                "input_activations": null,
                "output_activations": null
            }},
            "ignore": ignore,
            "kv_cache_scheme": null,
            "global_compression_ratio": null
        });
    }
    v
}
