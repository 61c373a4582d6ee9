//! `grokit inspect`: what is inside a checkpoint, in a table or as JSON.
//!
//! [`InspectArgs`] → [`Inspect`] (which format PATH is) → [`Inspect::execute`] (open it) →
//! [`Inspect::render`] (table or JSON; the exit status says whether problems were found).

use super::progress::human;
use super::render::write_json;
use super::Outcome;
use crate::gguf::GgufSet;
use crate::numpy::Stored;
use crate::safetensors_io::StReader;
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
///   grokit inspect grok-1-q8_0-00001-of-00007.gguf           # metadata and every tensor of the set
///   grokit inspect grok-1-hf --json | jq '.tensors | length'  # a safetensors directory
///   grokit inspect grok-1.imatrix.gguf                         # an importance matrix
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// A release checkpoint directory, a .gguf file (the first of a split set), or a
    /// safetensors file, index or directory.
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

fn render_gguf(out: &mut impl Write, set: &GgufSet, json: bool) -> anyhow::Result<()> {
    let tensors: Vec<_> = set.tensors().map(|(f, t)| json!({"name": t.name, "type": t.ty.name(), "shape": t.shape, "ne": t.ne, "bytes": t.nbytes, "offset": t.offset, "file": f.path()})).collect();
    let total: u64 = set.tensors().map(|(_, t)| t.nbytes).sum();
    if json {
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
        write_json(
            out,
            &json!({"format": "gguf", "files": set.paths(), "kvs": kvs, "tensors": tensors, "total_bytes": total, "problems": []}),
        )?;
        return Ok(());
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
    Ok(())
}

fn render_safetensors(out: &mut impl Write, r: &StReader, json: bool) -> anyhow::Result<()> {
    let total = r.total_size();
    if json {
        let tensors: Vec<_> = r.tensors().map(|t| json!({"name": t.name, "dtype": t.dtype.safetensors(), "shape": t.shape, "file": t.file, "offset": t.file_offset, "bytes": t.data_offsets.1 - t.data_offsets.0})).collect();
        write_json(
            out,
            &json!({"format": "safetensors", "files": r.files().collect::<Vec<_>>(), "metadata": r.metadata(), "tensors": tensors, "total_bytes": total, "problems": []}),
        )?;
        return Ok(());
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
    Ok(())
}

fn render_release(out: &mut impl Write, ck: &Checkpoint, json: bool) -> anyhow::Result<Outcome> {
    if json {
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
        write_json(out, &v)?;
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

/// What PATH is.
#[derive(Debug, Clone, Copy)]
enum Format {
    Gguf,
    Safetensors,
    Release,
}

/// `inspect`'s options, resolved.
#[derive(Debug)]
pub struct Inspect {
    path: PathBuf,
    format: Format,
    json: bool,
    key_size: Option<u64>,
}

/// An opened input.
enum Opened {
    Gguf(GgufSet),
    Safetensors(StReader),
    Release(Checkpoint),
}

impl Inspect {
    /// Tell the format from the path: a `.gguf` file, a safetensors file, index or directory,
    /// otherwise a release checkpoint.
    pub fn resolve(a: InspectArgs) -> Inspect {
        let p = &a.path;
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let format = if p.is_file() && ext == "gguf" {
            Format::Gguf
        } else if (p.is_file() && ext == "safetensors")
            || (p.is_dir()
                && (p.join("model.safetensors").exists()
                    || p.join("model.safetensors.index.json").exists()))
            || (p.is_file() && p.to_string_lossy().ends_with(".safetensors.index.json"))
        {
            Format::Safetensors
        } else {
            Format::Release
        };
        Inspect {
            path: a.path,
            format,
            json: a.json,
            key_size: a.key_size,
        }
    }

    /// Open (and, for the release, check) the input; payloads are not read.
    fn execute(&self) -> anyhow::Result<Opened> {
        let p = &self.path;
        Ok(match self.format {
            Format::Gguf => Opened::Gguf(
                GgufSet::open(p).with_context(|| format!("reading GGUF {}", p.display()))?,
            ),
            Format::Safetensors => Opened::Safetensors(
                StReader::open(p)
                    .with_context(|| format!("reading safetensors {}", p.display()))?,
            ),
            Format::Release => {
                let opts = OpenOptions {
                    key_size: self.key_size,
                    ..Default::default()
                };
                Opened::Release(
                    Checkpoint::open(p, &opts)
                        .with_context(|| format!("reading checkpoint {}", p.display()))?,
                )
            }
        })
    }

    /// Print the table or JSON; a release with problems is a mismatch (exit 1).
    fn render(&self, opened: &Opened) -> anyhow::Result<Outcome> {
        let mut out = std::io::stdout().lock();
        match opened {
            Opened::Gguf(set) => render_gguf(&mut out, set, self.json).map(|()| Outcome::Ok),
            Opened::Safetensors(r) => {
                render_safetensors(&mut out, r, self.json).map(|()| Outcome::Ok)
            }
            Opened::Release(ck) => render_release(&mut out, ck, self.json),
        }
    }
}

/// Run `inspect`: resolve, execute, render.
pub fn run(a: InspectArgs) -> anyhow::Result<Outcome> {
    if super::imatrix::is_imatrix_file(&a.path) {
        return super::imatrix::inspect(&a.path, a.json);
    }
    let i = Inspect::resolve(a);
    let opened = i.execute()?;
    i.render(&opened)
}
