//! Interop driver for `tests/interop/safetensors_py.py` (grokit has no safetensors CLI yet).
//!
//! - `st_sample write DIR [MAX_SHARD_BYTES]`: write a sharded set of F32/BF16/F16/I8/I32
//!   tensors with values given by closed-form formulas (the Python side recomputes them), plus
//!   `model.safetensors.index.json` and `SHA256SUMS`. Prints the written files as JSON.
//! - `st_sample read PATH`: open a file, directory or index with grokit's reader and print JSON:
//!   metadata, and per tensor name, dtype, shape, file name and SHA-256 of its bytes.

use grokit::base::float::{extend_bf16_le, extend_f16_le, extend_f32_le};
use grokit::base::{hex, DType};
use grokit::safetensors_io::plan::INDEX_FILE_NAME;
use grokit::safetensors_io::{
    plan_shards, write_sha256sums, write_small_file, ShardWriter, StReader, StTensor,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A float tensor whose element k is `f(k)` computed in f32, stored as `dt` (RNE rounding).
fn floats(name: &str, dt: DType, shape: Vec<u64>, f: &dyn Fn(usize) -> f32) -> (StTensor, Vec<u8>) {
    let n: u64 = shape.iter().product();
    let xs: Vec<f32> = (0..n as usize).map(f).collect();
    let mut b = Vec::new();
    match dt {
        DType::BF16 => extend_bf16_le(&mut b, &xs),
        DType::F16 => extend_f16_le(&mut b, &xs),
        _ => extend_f32_le(&mut b, &xs),
    }
    (StTensor::new(name, dt, shape), b)
}

/// The sample tensors in state-dict order, with their bytes. The formulas are mirrored in the
/// Python script (`expected_tensors`); k is the flat element index.
fn sample() -> Vec<(StTensor, Vec<u8>)> {
    let i8s: Vec<u8> = (0..48)
        .map(|k: i32| (((k * 37) % 256) - 128) as i8 as u8)
        .collect();
    let i32s: Vec<u8> = (0..8)
        .flat_map(|k: i32| (k * 1_000_003 - 4_000_000).to_le_bytes())
        .collect();
    vec![
        floats("f32.a", DType::F32, vec![3, 5], &|k| k as f32 * 0.25 - 1.5),
        floats("bf16.b", DType::BF16, vec![4, 8], &|k| {
            (k as f32 - 10.0) * 0.3
        }),
        floats("f16.c", DType::F16, vec![2, 3, 4], &|k| {
            k as f32 * 0.1 - 1.0
        }),
        (StTensor::new("i8.d", DType::I8, vec![16, 3]), i8s),
        (StTensor::new("i32.e", DType::I32, vec![2, 2, 2]), i32s),
        floats("f32.scalar", DType::F32, vec![], &|_| 3.25),
        floats("bf16.empty", DType::BF16, vec![0, 4], &|_| 0.0),
        floats("f32.big", DType::F32, vec![64], &|k| 1.0 / (k as f32 + 1.0)),
    ]
}

fn write(dir: &Path, max_shard: u64) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    let tensors = sample();
    let meta: Vec<StTensor> = tensors.iter().map(|(t, _)| t.clone()).collect();
    let data: HashMap<&str, &[u8]> = tensors
        .iter()
        .map(|(t, b)| (t.name.as_str(), b.as_slice()))
        .collect();
    let plan = plan_shards(&meta, max_shard)?;
    let mut written = Vec::new();
    for shard in plan.shards() {
        let mut w = ShardWriter::create(dir, shard)?;
        let order: Vec<String> = w.layout().iter().map(|t| t.name.clone()).collect();
        for name in order {
            let bytes = data.get(name.as_str()).copied().unwrap_or_default();
            w.begin_tensor(&name)?;
            // Stream in small chunks to exercise the chunked path.
            for c in bytes.chunks(7) {
                w.write_tensor_chunk(c)?;
            }
        }
        written.push(w.finish()?);
    }
    if plan.is_sharded() {
        written.push(write_small_file(
            dir,
            INDEX_FILE_NAME,
            plan.index_json().as_bytes(),
        )?);
    }
    write_sha256sums(dir, &written)?;
    let files: Vec<serde_json::Value> = written
        .iter()
        .map(|w| serde_json::json!({"name": w.file_name(), "bytes": w.bytes, "sha256": w.sha256}))
        .collect();
    println!(
        "{}",
        serde_json::json!({"files": files, "total_size": plan.total_size()})
    );
    Ok(())
}

fn read(path: &Path) -> Res<()> {
    let r = StReader::open(path)?;
    let mut tensors = Vec::new();
    for t in r.tensors() {
        let bytes = r.tensor_bytes(&t.name)?;
        tensors.push(serde_json::json!({
            "name": t.name,
            "dtype": t.dtype.safetensors(),
            "shape": t.shape,
            "file": t.file.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": hex::encode(&Sha256::digest(bytes)),
        }));
    }
    println!(
        "{}",
        serde_json::json!({"metadata": r.metadata(), "total_size": r.total_size(), "tensors": tensors})
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.as_slice() {
        [cmd, dir] if cmd == "write" => write(Path::new(dir), 128),
        [cmd, dir, max] if cmd == "write" => match max.parse() {
            Ok(m) => write(Path::new(dir), m),
            Err(e) => Err(format!("bad MAX_SHARD_BYTES {max}: {e}").into()),
        },
        [cmd, path] if cmd == "read" => read(Path::new(path)),
        _ => Err("usage: st_sample write DIR [MAX_SHARD_BYTES] | st_sample read PATH".into()),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
