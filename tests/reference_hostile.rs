//! Hostile inputs to `forward` and `compare` (issue #18): dimensions from GGUF metadata and
//! safetensors/release `config.json` that are absurd, non-finite or inconsistent with the
//! tensors present; a release shard with the wrong scale dtype; work beyond the model's context
//! or the memory budget; an oversized tokens file. Each input is built byte by byte here, and
//! each must give exit 2 with the file, the key and the limit named, with every input unchanged.

use crate::util::{copy_fixture, fixture, run};
use grokit::gguf::GgufFile;
use std::path::{Path, PathBuf};

fn convert(to: &[&str], out: &Path) {
    let fx = fixture();
    let mut a = vec![
        "convert",
        fx.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ];
    a.extend_from_slice(to);
    let (code, _, err) = run(&a);
    assert_eq!(code, 0, "{err}");
}

/// Expect exit 2 and every fragment in stderr; the inputs keep their bytes.
fn refused(args: &[&str], inputs: &[&Path], fragments: &[&str]) {
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let (code, out, err) = run(args);
    assert_eq!(code, 2, "{args:?}: exit {code}\nstdout {out}\nstderr {err}");
    for f in fragments {
        assert!(err.contains(f), "{args:?}: {f:?} not in: {err}");
    }
    for (p, b) in inputs.iter().zip(before) {
        assert!(std::fs::read(p).unwrap() == b, "{} changed", p.display());
    }
}

// ---- GGUF built byte by byte ---------------------------------------------------------------

/// A metadata value as GGUF stores it: type id, then the little-endian value.
#[derive(Clone)]
enum Kv {
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Str(&'static str),
}

fn gguf_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Kv {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Kv::U32(x) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Kv::F32(x) => {
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Kv::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                gguf_str(out, s);
            }
            Kv::U64(x) => {
                out.extend_from_slice(&10u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Kv::F64(x) => {
                out.extend_from_slice(&12u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// One tensor: name, ggml dims `ne` (fastest first), ggml type id, data.
struct Tensor {
    name: String,
    ne: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

/// GGUF v3: magic, version, counts, key/values, tensor infos, then the data, each tensor aligned
/// to 32 bytes.
fn gguf_bytes(kvs: &[(String, Kv)], tensors: &[Tensor]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        gguf_str(&mut out, k);
        v.encode(&mut out);
    }
    let mut offset = 0u64;
    for t in tensors {
        gguf_str(&mut out, &t.name);
        out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
        for d in &t.ne {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + t.data.len() as u64).next_multiple_of(32);
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    for t in tensors {
        out.extend_from_slice(&t.data);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
    }
    out
}

/// The fixture's f32 GGUF as metadata (the model keys) and tensors, to rebuild with edits.
fn fixture_gguf(dir: &Path) -> (Vec<(String, Kv)>, Vec<Tensor>) {
    let g = dir.join("fixture.gguf");
    convert(&["--to", "gguf", "--type", "f32"], &g);
    let f = GgufFile::open(&g).unwrap();
    let tensors = f
        .tensors()
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty: t.ty.id(),
            data: f.tensor_data(t).to_vec(),
        })
        .collect();
    let u = |k: &str| match f.get(k) {
        Some(grokit::gguf::Value::U32(x)) => *x,
        other => panic!("{k}: {other:?}"),
    };
    let fl = |k: &str| match f.get(k) {
        Some(grokit::gguf::Value::F32(x)) => *x,
        other => panic!("{k}: {other:?}"),
    };
    let mut kvs = vec![("general.architecture".to_string(), Kv::Str("grok"))];
    for k in [
        "grok.context_length",
        "grok.embedding_length",
        "grok.block_count",
        "grok.feed_forward_length",
        "grok.attention.head_count",
        "grok.attention.head_count_kv",
        "grok.rope.dimension_count",
        "grok.expert_count",
        "grok.expert_used_count",
    ] {
        kvs.push((k.to_string(), Kv::U32(u(k))));
    }
    for k in [
        "grok.attention.layer_norm_rms_epsilon",
        "grok.rope.freq_base",
        "grok.embedding_scale",
        "grok.attention.output_scale",
        "grok.attn_logit_softcapping",
        "grok.logit_scale",
    ] {
        kvs.push((k.to_string(), Kv::F32(fl(k))));
    }
    (kvs, tensors)
}

fn with(kvs: &[(String, Kv)], key: &str, v: Kv) -> Vec<(String, Kv)> {
    let mut out: Vec<(String, Kv)> = kvs.iter().filter(|(k, _)| k != key).cloned().collect();
    out.push((key.to_string(), v));
    out
}

#[test]
fn gguf_dims_are_checked_before_anything_is_sized() {
    let d = tempfile::tempdir().unwrap();
    let (kvs, tensors) = fixture_gguf(d.path());
    // The rebuilt file itself runs (the builder is right).
    let good = d.path().join("good.gguf");
    std::fs::write(&good, gguf_bytes(&kvs, &tensors)).unwrap();
    let (code, _, err) = run(&["forward", good.to_str().unwrap(), "--tokens", "5,6,7"]);
    assert_eq!(code, 0, "{err}");
    let cases: Vec<(&str, Kv, Vec<&str>)> = vec![
        (
            "grok.block_count",
            Kv::U32(u32::MAX),
            vec!["4294967295 exceeds the limit 4096"],
        ),
        (
            "grok.block_count",
            Kv::U64(1 << 40),
            vec!["1099511627776 exceeds the limit 4096"],
        ),
        (
            "grok.block_count",
            Kv::U32(3),
            vec!["3 layers, but layer 2 cannot be read", "blk.2"],
        ),
        (
            "grok.block_count",
            Kv::Str("2"),
            vec!["is not a non-negative integer"],
        ),
        (
            "grok.rope.dimension_count",
            Kv::U64(1 << 40),
            vec!["exceeds the limit 4096"],
        ),
        (
            "grok.attention.head_count",
            Kv::U64(1 << 40),
            vec!["exceeds the limit 4096"],
        ),
        (
            "grok.attention.head_count_kv",
            Kv::U32(3),
            vec!["not a multiple of 3 kv heads"],
        ),
        (
            "grok.embedding_length",
            Kv::U32(65),
            vec!["token_embd", "[64, 512]"],
        ),
        (
            "grok.feed_forward_length",
            Kv::U32(0),
            vec!["0 is below the minimum 1"],
        ),
        (
            "grok.context_length",
            Kv::U64(1 << 40),
            vec!["exceeds the limit"],
        ),
        (
            "grok.attention.layer_norm_rms_epsilon",
            Kv::F32(f32::NAN),
            vec!["NaN", "finite"],
        ),
        (
            "grok.attention.layer_norm_rms_epsilon",
            Kv::F32(-1e-5),
            vec!["finite number above 0"],
        ),
        (
            "grok.rope.freq_base",
            Kv::F32(0.0),
            vec!["finite number above 0"],
        ),
        ("grok.embedding_scale", Kv::F32(f32::INFINITY), vec!["inf"]),
        ("grok.logit_scale", Kv::F64(1e300), vec!["inf"]),
        (
            "grok.attn_logit_softcapping",
            Kv::Str("30"),
            vec!["is not a number"],
        ),
    ];
    for (i, (key, v, frags)) in cases.into_iter().enumerate() {
        let p = d.path().join(format!("bad{i}.gguf"));
        std::fs::write(&p, gguf_bytes(&with(&kvs, key, v), &tensors)).unwrap();
        let mut want = vec![p.to_str().unwrap(), key];
        want.extend(frags);
        refused(
            &["forward", p.to_str().unwrap(), "--tokens", "5,6,7"],
            &[&p],
            &want,
        );
    }
    // A token_embd with 0 rows: an empty vocabulary, said so.
    let mut t0: Vec<Tensor> = tensors
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty: t.ty,
            data: t.data.clone(),
        })
        .collect();
    let e = t0
        .iter_mut()
        .find(|t| t.name == "token_embd.weight")
        .unwrap();
    e.ne[1] = 0;
    e.data.clear();
    let p = d.path().join("novocab.gguf");
    std::fs::write(&p, gguf_bytes(&kvs, &t0)).unwrap();
    refused(
        &["forward", p.to_str().unwrap(), "--tokens", "5"],
        &[&p],
        &["token_embd.weight", "empty vocabulary"],
    );
    // compare opens models through the same checks
    let p = d.path().join("bad0.gguf");
    refused(
        &[
            "compare",
            good.to_str().unwrap(),
            p.to_str().unwrap(),
            "--tokens",
            "5,6",
        ],
        &[&p, &good],
        &["grok.block_count"],
    );
}

// ---- safetensors config.json ---------------------------------------------------------------

#[test]
fn safetensors_config_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("st");
    convert(&["--to", "safetensors", "--dtype", "bf16"], &st);
    let cj = st.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cj).unwrap()).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "num_hidden_layers",
            serde_json::json!(1_000_000_000_000u64),
            "exceeds the limit 4096",
        ),
        (
            "head_dim",
            serde_json::json!(1_000_000_000_000u64),
            "exceeds the limit 4096",
        ),
        (
            "head_dim",
            serde_json::json!(16.9),
            "16.9 is not a non-negative integer",
        ),
        (
            "num_attention_heads",
            serde_json::json!(1u64 << 40),
            "exceeds the limit 4096",
        ),
        (
            "rms_norm_eps",
            serde_json::json!(-1.0),
            "finite number above 0",
        ),
        (
            "embedding_multiplier_scale",
            serde_json::json!("NaN"),
            "\"NaN\" is not a number",
        ),
        (
            "rope_theta",
            serde_json::json!(0.0),
            "finite number above 0",
        ),
        ("output_multiplier_scale", serde_json::json!(1e300), "inf"),
        (
            "num_hidden_layers",
            serde_json::json!(3),
            "layer 2 cannot be read",
        ),
        ("vocab_size", serde_json::json!(0), "below the minimum"),
    ];
    for (key, v, frag) in cases {
        let mut j = base.clone();
        j[key] = v;
        std::fs::write(&cj, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
        refused(
            &["forward", st.to_str().unwrap(), "--tokens", "5,6,7"],
            &[&cj],
            &["config.json", key, frag],
        );
    }
    // an oversized config.json is refused without being read whole
    let f = std::fs::File::create(&cj).unwrap();
    f.set_len(2 << 20).unwrap();
    refused(
        &["forward", st.to_str().unwrap(), "--tokens", "5"],
        &[],
        &["config.json", "larger than"],
    );
}

// ---- the release: config.json and structure --------------------------------------------------

#[test]
fn release_config_and_structure_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("tiny");
    copy_fixture(&ck);
    let cj = ck.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cj).unwrap()).unwrap();
    for (key, v, frag) in [
        (
            "rms_norm_eps",
            serde_json::json!(-1e-5),
            "finite number above 0",
        ),
        ("rope_base", serde_json::json!(0.0), "finite number above 0"),
        (
            "embedding_multiplier_scale",
            serde_json::json!(1e300),
            "exceeds 1e9",
        ),
        (
            "attn_output_multiplier",
            serde_json::json!(1e12),
            "exceeds 1e9",
        ),
        (
            "rms_norm_eps",
            serde_json::json!(f64::NAN.to_string()),
            "\"NaN\" is not a number",
        ),
        (
            "output_multiplier_scale",
            serde_json::json!("NaN"),
            "\"NaN\" is not a number",
        ),
        (
            "key_size",
            serde_json::json!(16.9),
            "16.9 is not a non-negative integer",
        ),
        ("rms_norm_eps", serde_json::json!(2.0), "must be below 1"),
    ] {
        let mut j = base.clone();
        j[key] = v;
        std::fs::write(&cj, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
        let o = d.path().join("o.gguf");
        // Every command that reads the release refuses it (convert would copy it into GGUF
        // metadata), naming the key and the file.
        for args in [
            vec!["forward", ck.to_str().unwrap(), "--tokens", "5,6"],
            vec!["inspect", ck.to_str().unwrap()],
            vec![
                "convert",
                ck.to_str().unwrap(),
                "--to",
                "gguf",
                "-o",
                o.to_str().unwrap(),
                "-q",
            ],
        ] {
            refused(&args, &[&cj], &["config.json", key, frag]);
            assert!(!o.exists());
        }
    }
    std::fs::write(&cj, serde_json::to_vec_pretty(&base).unwrap()).unwrap();
    // A shard whose scales are f32 where the release has bf16 (same values, twice the bytes):
    // refused as inspect/verify/convert refuse it, never reinterpreted.
    let src =
        grokit::source::grok::Checkpoint::open(&ck, &grokit::source::grok::open_options()).unwrap();
    let t = src
        .tensor(grokit::model::Role::AttnQ, Some(0))
        .unwrap()
        .clone();
    let (w, s) = match &t.stored {
        grokit::numpy::Stored::Quantized { weight, scales } => (weight.clone(), scales.clone()),
        _ => panic!("attn q is int8"),
    };
    let raw = std::fs::read(&t.file).unwrap();
    let wb = raw[w.data.start as usize..w.data.end as usize].to_vec();
    let sf: Vec<u8> = raw[s.data.start as usize..s.data.end as usize]
        .chunks_exact(2)
        .flat_map(|c| {
            (f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).to_le_bytes()
        })
        .collect();
    let mut out = Vec::new();
    let (wshape, sshape) = (w.shape.dims().to_vec(), s.shape.dims().to_vec());
    let (mut fw, mut fs) = (
        |o: &mut dyn std::io::Write| o.write_all(&wb),
        |o: &mut dyn std::io::Write| o.write_all(&sf),
    );
    grokit::pickle::writer::write_quantized(
        &mut out,
        grokit::pickle::writer::ArraySpec {
            dtype: grokit::base::DType::I8,
            shape: &wshape,
            payload: grokit::pickle::writer::Payload {
                len: wb.len() as u64,
                write: &mut fw,
            },
        },
        grokit::pickle::writer::ArraySpec {
            dtype: grokit::base::DType::F32,
            shape: &sshape,
            payload: grokit::pickle::writer::Payload {
                len: sf.len() as u64,
                write: &mut fs,
            },
        },
    )
    .unwrap();
    drop(src);
    std::fs::write(&t.file, &out).unwrap();
    let file = t.file.file_name().unwrap().to_str().unwrap().to_string();
    refused(
        &["forward", ck.to_str().unwrap(), "--tokens", "5,6"],
        &[&t.file],
        &[
            &file,
            "scales dtype f32 (expected bf16)",
            "structural problem",
        ],
    );
}

// ---- work and memory bounds --------------------------------------------------------------------

fn tokens_file(dir: &Path, name: &str, rows: usize, len: usize) -> PathBuf {
    let p = dir.join(name);
    let row = format!("[{}]", vec!["5"; len].join(","));
    let body = format!("[{}]", vec![row.as_str(); rows].join(","));
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn forward_bounds_work_and_memory() {
    let fx = fixture();
    let f = fx.to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    // generated tokens count against the context (8192 for the fixture)
    refused(
        &["forward", f, "--tokens", "5,6", "--generate", "2000000000"],
        &[],
        &[
            "2 prompt positions + 2000000000 generated",
            "context of 8192 positions",
        ],
    );
    refused(
        &[
            "forward",
            f,
            "--tokens",
            "5,6",
            "--generate",
            &u64::MAX.to_string(),
        ],
        &[],
        &["context of 8192 positions"],
    );
    let (code, _, _) = run(&[
        "forward",
        f,
        "--tokens",
        "5",
        "--generate",
        "18446744073709551616",
    ]);
    assert_eq!(code, 2);
    // prompts longer than the context
    let long = tokens_file(d.path(), "long.json", 1, 9000);
    refused(
        &["forward", f, "--tokens-file", long.to_str().unwrap()],
        &[&long],
        &["9000 prompt positions", "context of 8192 positions"],
    );
    let huge = tokens_file(d.path(), "huge.json", 1, 200_000);
    refused(
        &["forward", f, "--tokens-file", huge.to_str().unwrap()],
        &[&huge],
        &["200000 prompt positions", "context of 8192"],
    );
    // two million one-token rows: over the memory budget, with the budget named
    let many = tokens_file(d.path(), "many.json", 2_000_000, 1);
    refused(
        &["forward", f, "--tokens-file", many.to_str().unwrap()],
        &[&many],
        &["2000000 rows", "memory budget of 8.0 GB (--mem-budget)"],
    );
    // a tokens file over 64 MiB is refused while reading, not after
    let big = d.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(70 << 20)
        .unwrap();
    refused(
        &["forward", f, "--tokens-file", big.to_str().unwrap()],
        &[&big],
        &["big.json", "larger than 67108864 bytes"],
    );
    // compare applies the same bounds
    refused(
        &["compare", f, f, "--tokens-file", long.to_str().unwrap()],
        &[&long],
        &["context of 8192"],
    );
    // a budget too small for even one position
    refused(
        &["forward", f, "--tokens", "5,6", "--mem-budget", "1M"],
        &[],
        &["memory budget of 1.0 MB"],
    );
}
