//! `grokit inspect`: what is inside a checkpoint, in a table or as JSON.

use super::progress::human;
use super::Outcome;
use crate::numpy::Stored;
use crate::source::grok::{Checkpoint, OpenOptions};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Show the tensors, configuration and any structural problems of a checkpoint.
///
/// PATH is a release directory (ckpt-0/, ckpt/, or a directory containing one), a GGUF file
/// (the first file of a split set), a safetensors file/directory, or an importance matrix
/// (llama-imatrix's .gguf or legacy .dat: its entries, widths, expert counts and counts).
/// Nothing is executed: pickles are read by an allow-list parser, payloads are not read.
/// Exit status: 0 when the checkpoint is well-formed, 1 when problems were found, 2 on errors.
///
/// Examples:
///   grokit inspect fixtures/tiny
///   grokit inspect /data/grok-1 --json | jq '.tensors[0]'
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// Checkpoint directory.
    pub path: PathBuf,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Head dimension when there is no config.json (default 128 when it divides the widths).
    #[arg(long)]
    pub key_size: Option<u64>,
}

fn value_json(v: &crate::gguf::Value) -> serde_json::Value {
    use crate::gguf::Value;
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => {
            let n = a.len();
            json!({"type": v.type_name(), "len": n})
        }
    }
}

fn inspect_gguf(a: &InspectArgs) -> anyhow::Result<Outcome> {
    let set = crate::gguf::GgufSet::open(&a.path)
        .with_context(|| format!("reading GGUF {}", a.path.display()))?;
    let mut out = std::io::stdout().lock();
    let tensors: Vec<_> = set.tensors().map(|(f, t)| json!({"name": t.name, "type": t.ty.name(), "shape": t.shape, "ne": t.ne, "bytes": t.nbytes, "offset": t.offset, "file": f.path()})).collect();
    let total: u64 = set.tensors().map(|(_, t)| t.nbytes).sum();
    if a.json {
        let kvs: serde_json::Map<String, serde_json::Value> = set
            .kvs()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"type": v.type_name(), "value": value_json(v)}),
                )
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &json!({"format": "gguf", "files": set.paths(), "kvs": kvs, "tensors": tensors, "total_bytes": total, "problems": []})
            )?
        )?;
        return Ok(Outcome::Ok);
    }
    writeln!(
        out,
        "GGUF: {} file(s), {} tensors, {} of tensor data",
        set.files().len(),
        set.tensor_count(),
        human(total)
    )?;
    for (k, v) in set.kvs() {
        writeln!(out, "  {k:<45} {:<12} {}", v.type_name(), value_json(v))?;
    }
    writeln!(out)?;
    for (_, t) in set.tensors() {
        writeln!(
            out,
            "{:<40} {:<6} {:<24} {:>14} @{}",
            t.name,
            t.ty.name(),
            format!("{:?}", t.shape),
            t.nbytes,
            t.offset
        )?;
    }
    writeln!(out, "\nno problems found")?;
    Ok(Outcome::Ok)
}

fn inspect_safetensors(a: &InspectArgs) -> anyhow::Result<Outcome> {
    let r = crate::safetensors_io::StReader::open(&a.path)
        .with_context(|| format!("reading safetensors {}", a.path.display()))?;
    let mut out = std::io::stdout().lock();
    let total = r.total_size();
    if a.json {
        let tensors: Vec<_> = r.tensors().map(|t| json!({"name": t.name, "dtype": t.dtype.safetensors(), "shape": t.shape, "file": t.file, "offset": t.file_offset, "bytes": t.data_offsets.1 - t.data_offsets.0})).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &json!({"format": "safetensors", "files": r.files().collect::<Vec<_>>(), "metadata": r.metadata(), "tensors": tensors, "total_bytes": total, "problems": []})
            )?
        )?;
        return Ok(Outcome::Ok);
    }
    writeln!(
        out,
        "safetensors: {} file(s), {} tensors, {} of tensor data",
        r.files().count(),
        r.len(),
        human(total)
    )?;
    for t in r.tensors() {
        writeln!(
            out,
            "{:<64} {:<5} {:<22} {:>14}",
            t.name,
            t.dtype.safetensors(),
            format!("{:?}", t.shape),
            t.data_offsets.1 - t.data_offsets.0
        )?;
    }
    writeln!(out, "\nno problems found")?;
    Ok(Outcome::Ok)
}

/// Run `inspect`.
pub fn run(a: InspectArgs) -> anyhow::Result<Outcome> {
    if super::imatrix::is_imatrix_file(&a.path) {
        return super::imatrix::inspect(&a.path, a.json);
    }
    let ext = a.path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if a.path.is_file() && ext == "gguf" {
        return inspect_gguf(&a);
    }
    if (a.path.is_file() && ext == "safetensors")
        || (a.path.is_dir()
            && (a.path.join("model.safetensors").exists()
                || a.path.join("model.safetensors.index.json").exists()))
        || (a.path.is_file()
            && a.path
                .to_string_lossy()
                .ends_with(".safetensors.index.json"))
    {
        return inspect_safetensors(&a);
    }
    let opts = OpenOptions {
        key_size: a.key_size,
        ..Default::default()
    };
    let ck = Checkpoint::open(&a.path, &opts)
        .with_context(|| format!("reading checkpoint {}", a.path.display()))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let tensors: Vec<_> = ck
            .tensors
            .iter()
            .map(|t| {
                let w = t.weight();
                let scales = t.scales().map(|s| json!({"dtype": s.dtype.name(), "shape": s.shape.dims(), "offset": s.data.start, "bytes": s.data.end - s.data.start}));
                let o = json!({
                    "index": t.spec.index, "file": t.spec.file_name(), "name": t.spec.path,
                    "layer": t.spec.layer, "gguf_name": t.spec.gguf_name(),
                    "kind": match t.stored { Stored::Array(_) => "ndarray", Stored::Quantized{..} => "QuantizedWeight8bit" },
                    "dtype": w.dtype.name(), "shape": w.shape.dims(), "offset": w.data.start,
                    "bytes": t.payload_bytes(), "file_size": t.file_len, "scales": scales,
                });
                o
            })
            .collect();
        let v = json!({
            "format": "grok-ckpt", "dir": ck.dir, "files": ck.tensors.len(),
            "total_bytes": ck.total_bytes(), "config": ck.config, "config_notes": ck.config_notes,
            "param_count": ck.config.param_count(), "is_grok1": ck.config.is_grok1(),
            "tensors": tensors, "problems": ck.problems, "warnings": ck.warnings,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        let c = &ck.config;
        writeln!(out, "Grok-1 release checkpoint: {}", ck.dir.display())?;
        writeln!(
            out,
            "  files: {}   total: {} ({} bytes)   parameters: {}",
            ck.tensors.len(),
            human(ck.total_bytes()),
            ck.total_bytes(),
            c.param_count()
        )?;
        writeln!(
            out,
            "  config: vocab {} d_model {} layers {} heads {}q/{}kv x {} experts {} (top {}) ffn {}{}",
            c.vocab_size, c.emb_size, c.num_layers, c.num_q_heads, c.num_kv_heads, c.key_size, c.num_experts, c.num_selected_experts, c.ffn_size,
            if c.is_grok1() { "  = Grok-1" } else { "" }
        )?;
        for n in &ck.config_notes {
            writeln!(out, "  ({n})")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<16} {:<58} {:<22} {:<20} {:>14}",
            "file", "parameter", "weight", "scales", "payload@"
        )?;
        for t in &ck.tensors {
            let w = t.weight();
            let scales = t
                .scales()
                .map(|s| format!("{}{}", s.dtype, s.shape))
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:<16} {:<58} {:<22} {:<20} {:>14}",
                t.spec.file_name(),
                t.spec.path,
                format!("{}{}", w.dtype, w.shape),
                scales,
                w.data.start
            )?;
        }
        writeln!(out)?;
        for w in &ck.warnings {
            writeln!(out, "warning: {}", w.msg)?;
        }
        if ck.problems.is_empty() {
            writeln!(out, "no problems found")?;
        } else {
            writeln!(out, "{} problem(s):", ck.problems.len())?;
            for p in &ck.problems {
                let at = p
                    .offset
                    .map(|o| format!(" at byte offset {o}"))
                    .unwrap_or_default();
                writeln!(out, "  {} ({}){at}: {}", p.file.display(), p.tensor, p.msg)?;
            }
        }
    }
    Ok(if ck.problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Mismatch
    })
}
