//! Sample GGUF files for the gguf-py interop test (`tests/interop/gguf_py_read.py`), driven
//! through the library because the CLI has no GGUF subcommand yet.
//!
//! - `gguf_sample write DIR`: writes `DIR/sample.gguf` (every value type; F32, F16, BF16, Q8_0,
//!   Q4_K, I32 tensors of deterministic bytes) and the same plan as a split set
//!   `DIR/split-0000i-of-0000n.gguf`, plus `DIR/expected.json`: what each file was planned to
//!   hold (taken from the plan, not from grokit's reader).
//! - `gguf_sample read FILE`: opens FILE (a single file or the first shard of a set) with
//!   grokit's reader and prints its KVs and tensors as JSON.

use anyhow::{bail, Context, Result};
use grokit::base::hex;
use grokit::gguf::{ArrayValue, FilePlan, GgufFileWriter, GgufPlan, GgufSet, TensorPlan, Value};
use grokit::quant::GgmlType;
use serde_json::{json, Value as Json};
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("write"), Some(dir)) => write(Path::new(dir)),
        (Some("read"), Some(file)) => read(Path::new(file)),
        _ => bail!("usage: gguf_sample write DIR | gguf_sample read FILE"),
    }
}

fn sample_plan() -> GgufPlan {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    let kvs = vec![
        kv("general.architecture", "grok".into()),
        kv("general.name", "grokit sample".into()),
        kv("general.file_type", Value::U32(7)),
        kv("sample.u8", Value::U8(255)),
        kv("sample.i8", Value::I8(-128)),
        kv("sample.u16", Value::U16(65535)),
        kv("sample.i16", Value::I16(-32768)),
        kv("sample.u32", Value::U32(4_294_967_295)),
        kv("sample.i32", Value::I32(-2_147_483_648)),
        kv("sample.f32", Value::F32(1e-5)),
        kv("sample.bool_true", Value::Bool(true)),
        kv("sample.bool_false", Value::Bool(false)),
        kv("sample.string", "▁Hello, <0x0A> wörld".into()),
        kv("sample.empty_string", "".into()),
        kv("sample.u64", Value::U64(u64::MAX)),
        kv("sample.i64", Value::I64(i64::MIN)),
        kv("sample.f64", Value::F64(78.38367176906169)),
        kv("sample.arr_u8", vec![0u8, 1, 255].into()),
        kv("sample.arr_i8", vec![-128i8, 0, 127].into()),
        kv("sample.arr_u16", vec![0u16, 65535].into()),
        kv("sample.arr_i16", vec![-32768i16, 32767].into()),
        kv("sample.arr_u32", vec![1u32, 4_294_967_295].into()),
        kv("sample.arr_i32", vec![1i32, 2, 3, 4, 6, -1].into()),
        kv(
            "sample.arr_f32",
            vec![0.0f32, -0.0, -1.0, -130746.0, 0.57735026].into(),
        ),
        kv("sample.arr_bool", vec![true, false, true].into()),
        kv(
            "sample.arr_str",
            vec!["[PAD]".to_string(), "<0x0A>".into(), "▁▁".into(), "".into()].into(),
        ),
        kv("sample.arr_u64", vec![0u64, u64::MAX].into()),
        kv("sample.arr_i64", vec![i64::MIN, i64::MAX].into()),
        kv(
            "sample.arr_f64",
            vec![0.08838834764831845f64, -1e300].into(),
        ),
    ];
    let tensors = vec![
        TensorPlan::new("token_embd.weight", vec![4u64, 64], GgmlType::Q8_0),
        TensorPlan::new("output_norm.weight", vec![6u64], GgmlType::F32),
        TensorPlan::new("blk.0.attn_q.weight", vec![3u64, 5], GgmlType::F16),
        TensorPlan::new("blk.0.attn_k.weight", vec![2u64, 7], GgmlType::BF16),
        TensorPlan::new(
            "blk.0.ffn_up_exps.weight",
            vec![2u64, 1, 256],
            GgmlType::Q4_K,
        ),
        TensorPlan::new("blk.0.ffn_gate_inp.weight", vec![2u64, 3, 4], GgmlType::F32),
        TensorPlan::new("blk.0.counts", vec![5u64], GgmlType::I32),
    ];
    GgufPlan::new(kvs, tensors)
}

/// Deterministic bytes per tensor (an LCG seeded from the name).
fn data_for(name: &str, n: u64) -> Vec<u8> {
    let mut s: u32 = name.bytes().fold(2_166_136_261, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}

fn write_plan(files: &[FilePlan]) -> Result<Vec<Json>> {
    let mut out = Vec::new();
    for f in files {
        let mut w = GgufFileWriter::create(f.clone())?;
        let mut tensors = Vec::new();
        for t in f.tensors() {
            let bytes = data_for(&t.name, t.nbytes);
            for chunk in bytes.chunks(100) {
                w.write_tensor_chunk(chunk)?;
            }
            tensors.push(json!({
                "name": t.name, "type": t.ty.to_string(), "shape": t.shape, "ne": t.ne,
                "offset": f.header_len() + t.offset, "nbytes": t.nbytes, "hex": hex::encode(&bytes),
            }));
        }
        let done = w.finish()?;
        out.push(json!({
            "path": done.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "bytes": done.bytes,
            "kvs": f.kvs().iter().map(|(k, v)| kv_json(k, v)).collect::<Vec<_>>(),
            "tensors": tensors,
        }));
    }
    Ok(out)
}

fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let plan = sample_plan();
    let single = write_plan(&plan.split(None, &dir.join("sample.gguf"))?)?;
    let split = write_plan(&plan.split(Some(400), &dir.join("split.gguf"))?)?;
    if split.len() < 2 {
        bail!("the split plan produced {} file(s)", split.len());
    }
    let expected = json!({ "single": single, "split": split });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected)?,
    )?;
    println!("{}", dir.join("expected.json").display());
    Ok(())
}

fn read(path: &Path) -> Result<()> {
    let set = GgufSet::open(path)?;
    let mut files = Vec::new();
    for f in set.files() {
        let tensors: Vec<Json> = f
            .tensors()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name, "type": t.ty.to_string(), "shape": t.shape, "ne": t.ne,
                    "offset": t.offset, "nbytes": t.nbytes, "hex": hex::encode(f.tensor_data(t)),
                })
            })
            .collect();
        files.push(json!({
            "path": f.path().file_name().map(|n| n.to_string_lossy().into_owned()),
            "version": f.version(),
            "alignment": f.alignment(),
            "kvs": f.kvs().iter().map(|(k, v)| kv_json(k, v)).collect::<Vec<_>>(),
            "tensors": tensors,
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({ "files": files, "tensor_count": set.tensor_count() })
        )?
    );
    Ok(())
}

/// Floats as JSON numbers (exact: an f32 widens to f64 losslessly); non-finite as strings.
fn float(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

fn scalar_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => float(f64::from(*x)),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => float(*x),
        Value::Array(a) => array_json(a),
    }
}

fn array_json(a: &ArrayValue) -> Json {
    match a {
        ArrayValue::U8(v) => json!(v),
        ArrayValue::I8(v) => json!(v),
        ArrayValue::U16(v) => json!(v),
        ArrayValue::I16(v) => json!(v),
        ArrayValue::U32(v) => json!(v),
        ArrayValue::I32(v) => json!(v),
        ArrayValue::F32(v) => Json::Array(v.iter().map(|&x| float(f64::from(x))).collect()),
        ArrayValue::Bool(v) => json!(v),
        ArrayValue::Str(v) => json!(v),
        ArrayValue::U64(v) => json!(v),
        ArrayValue::I64(v) => json!(v),
        ArrayValue::F64(v) => Json::Array(v.iter().map(|&x| float(x)).collect()),
    }
}

fn kv_json(key: &str, v: &Value) -> Json {
    let elem = v.as_array().map(|a| a.elem_type().name());
    json!({ "key": key, "type": v.value_type().name(), "elem_type": elem, "value": scalar_json(v) })
}
