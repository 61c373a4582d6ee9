//! `convert --to safetensors`: Hugging Face / vLLM layouts
//! (docs/formats/safetensors-output.md). Shards follow huggingface_hub's rules; tensors are
//! streamed into each shard in the writer's layout order; every output gets a SHA-256 in
//! `SHA256SUMS`, computed while writing.

use super::output::{check_outputs, Existing, Inputs};
use super::plan::{ct_group, st_tensors, Layout, OutTensor, StDtype};
use super::report::ConvertReport;
use super::sink::ShardFile;
use super::{convert_files, load_tokenizer, refuse_problems, ConvertError, RunOptions};
use crate::base::DType;
use crate::io::atomic::Sha256Sum;
use crate::model::{roles::fill, Config, KeyFormat, KeyValue, Role};
use crate::safetensors_io::{
    plan_shards, write_sha256sums, write_small_file, ShardPlan, StTensor, Written,
};
use crate::source::Checkpoint;
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
    /// Which shards (with `--shard`, no index/config files), how many workers, resume or
    /// replace.
    pub run: RunOptions,
    /// Importance matrix for a weighted scale search of the int4 groups (`--dtype int4`).
    pub imatrix: Option<std::sync::Arc<crate::imatrix::Imatrix>>,
}

fn plan(ck: &Checkpoint, o: &StOptions) -> Result<(Vec<OutTensor>, ShardPlan), ConvertError> {
    let tensors = st_tensors(ck, o.layout, o.dtype)?;
    let st: Vec<StTensor> = tensors
        .iter()
        .map(|t| StTensor::new(t.name.clone(), t.st_dtype(), t.shape.clone()))
        .collect();
    let sp = plan_shards(&st, o.shard_size)?;
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
    check_outputs(Inputs::checkpoint(&ck.dir), &refs, Existing::Allow)
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
        sha256: Sha256Sum(Some(crate::base::hex::encode(&h.finalize()))),
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
    Ok((w.sha256.hex() == Some(want.as_str())).then_some(w))
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
    Ok(m.weights(&name)?)
}

/// Convert to safetensors. Without `--shard`, also writes the index, configs and SHA256SUMS.
pub fn convert_safetensors(
    ck: &Checkpoint,
    o: &StOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertReport, ConvertError> {
    refuse_problems(ck)?;
    let (tensors, sp) = plan(ck, o)?;
    if let Some(m) = &o.imatrix {
        // The matrix names tensors as GGUF does; check it against the model's GGUF view.
        let g = super::gguf::plan_tensors(
            ck,
            &super::gguf::TypeChoice::Uniform(crate::quant::GgmlType::BF16),
        );
        super::gguf::check_imatrix(m, &g)?;
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
    check_outputs(Inputs::checkpoint(&ck.dir), &[existing], Existing::Allow)?;
    std::fs::create_dir_all(&o.out_dir)
        .map_err(|e| crate::io::IoError::new("create", &o.out_dir, e))?;
    let files: Vec<ShardFile<'_>> = sp
        .shards()
        .iter()
        .map(|shard| ShardFile {
            dir: &o.out_dir,
            shard,
        })
        .collect();
    check_side_files(ck, o)?;
    if let Some(tp) = &o.tokenizer {
        load_tokenizer(ck, tp)?;
    }
    let (report, fresh) = convert_files(
        ck,
        &tensors,
        &files,
        &o.run,
        progress,
        &|t| Ok(t.st_dtype().safetensors()),
        &|t| int4_weights(o, t),
        // Keep a shard only if its content still has the hash recorded when it was written.
        &mut |f| recorded_and_matching(&f.dir.join(f.shard.file_name())),
        &mut |w| record(w),
    )?;
    if o.run.shard.is_none() {
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
            return Err(ConvertError::ShardSize {
                path: p,
                len,
                planned: s.file_size(),
            });
        }
        match known.iter().find(|w| w.path == p && w.bytes == len) {
            Some(w) => all.push(w.clone()),
            None => all.push(hash_file(&p)?),
        }
    }
    let small = |name: &str, text: String| -> Result<Written, ConvertError> {
        Ok(write_small_file(&o.out_dir, name, text.as_bytes())?)
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
        all.push(write_small_file(&o.out_dir, "tokenizer.model", &bytes)?);
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
    let sums = write_sha256sums(&o.out_dir, &all)?;
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

/// `config.json` for the chosen layout: the configuration's keys from the one key table
/// ([`crate::model::CONFIG_KEYS`]), plus the constants transformers and vLLM expect
/// (docs/formats/safetensors-output.md "config.json").
pub fn hf_config(c: &Config, layout: Layout, dtype: StDtype) -> Json {
    let arch = match layout {
        Layout::Hf => "Grok1ModelForCausalLM",
        Layout::Jax => "GrokForCausalLM",
    };
    let torch_dtype = match dtype {
        StDtype::Float(DType::F32) => "float32",
        StDtype::Float(DType::F16) => "float16",
        StDtype::Float(_) | StDtype::Ct(_) => "bfloat16",
    };
    let mut v = json!({
        "architectures": [arch],
        "model_type": "grok-1",
        "hidden_act": "gelu_pytorch_tanh",
        "router_aux_loss_coef": 0.001,
        "output_router_logits": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "torch_dtype": torch_dtype,
    });
    for (k, x) in c.to_keys(KeyFormat::Hf) {
        v[k] = match x {
            KeyValue::Int(n) => json!(n),
            KeyValue::Float(f) => json!(f),
        };
    }
    if let StDtype::Ct(bits) = dtype {
        let embed = Role::Embed.info().st_name(layout);
        let mut ignore = vec![
            Json::from("lm_head"),
            Json::from(embed.strip_suffix(".weight").unwrap_or(embed)),
        ];
        for l in 0..c.num_layers {
            let n = fill(Role::Router.info().st_name(layout), Some(l), None);
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
