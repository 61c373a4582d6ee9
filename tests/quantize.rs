//! `grokit quantize` end to end, on a GGUF made from the committed fixture.
//!
//! Which equalities hold: `convert --type f32` writes the release's exact f32 values, and
//! `convert --quant X` quantizes those same values with the same encoders, so `quantize
//! --preset X` of the f32 file equals `convert --quant X` in every KV and every tensor EXCEPT
//! Q8_0 matrices, which `convert` copies losslessly from the release's int8 (its own scale),
//! while `quantize` only sees f32 and applies ggml's Q8_0 (scale = amax/127). Those tensors
//! must instead equal `quantize_row(Q8_0, f32 values)`, and a policy without Q8_0 tensors gives
//! whole-file equality.

use crate::util::{repo, run};
use grokit::convert::requant::{plan_requant, requantize, RequantOptions};
use grokit::gguf::{GgufFile, GgufSet, Value};
use grokit::quant::policy::Policy;
use grokit::quant::{dequantize_row, quantize_row, GgmlType};
use std::path::{Path, PathBuf};

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "grokit {args:?}: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `convert fixtures/tiny --to gguf --type f32` (plus extra args) into `dir/name`.
fn convert(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let fx = repo().join("fixtures/tiny");
    let mut args = vec!["convert", s(&fx), "--to", "gguf", "-o", s(&out), "-q"];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

fn quantize(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["quantize", s(input), "-o", s(out), "-q"];
    args.extend_from_slice(extra);
    ok(&args)
}

fn f32s(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    let n = t.shape.iter().product::<u64>() as usize;
    let mut x = vec![0f32; n];
    dequantize_row(t.ty, f.tensor_data(t), &mut x).unwrap();
    x
}

fn encode(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    quantize_row(ty, x, &mut out).unwrap();
    out
}

/// Max |error| allowed per block, as a fraction of the block's max |value| (half a step, or a
/// whole one where the encoder clamps the far end; K-quants also round their sub-scales).
fn bound(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::F32 => 0.0,
        // Rows not a multiple of 32 (the fixture's 344-wide down projection) fall back to F16.
        GgmlType::F16 => 1.0 / 2048.0,
        GgmlType::BF16 => 1.0 / 256.0,
        GgmlType::Q8_0 => 1.0 / 254.0,
        GgmlType::Q6_K => 1.0 / 40.0,
        GgmlType::Q5_0 => 1.01 / 16.0,
        GgmlType::Q4_0 => 1.01 / 8.0,
        GgmlType::Q5_1 => 1.01 / 15.0,
        GgmlType::Q4_1 => 1.01 / 7.5,
        GgmlType::Q5_K => 1.0 / 12.0,
        GgmlType::Q4_K => 1.0 / 6.0,
        other => panic!("no bound for {other}"),
    }
}

/// Every tensor of `q` is ggml's encoding of the f32 values in `f` (byte for byte) and decodes
/// within its codec's bound.
fn check_against_f32(f: &GgufFile, q: &GgufFile) -> usize {
    let mut quantized = 0;
    for t in q.tensors() {
        let x = f32s(f, &t.name);
        assert_eq!(
            q.tensor_data(t),
            &encode(t.ty, &x)[..],
            "{} ({}) is not ggml's encoding",
            t.name,
            t.ty
        );
        let y = f32s(q, &t.name);
        let be = t.ty.block_elems().max(32) as usize;
        for (xb, yb) in x.chunks(be).zip(y.chunks(be)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = xb
                .iter()
                .zip(yb)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // + amax/1024: the f16 rounding of the block scale, times up to 127 steps.
            assert!(
                err <= bound(t.ty) * amax + amax / 1024.0 + 1e-7,
                "{} ({}): error {err} for block max {amax}",
                t.name,
                t.ty
            );
        }
        quantized += usize::from(t.ty.is_quantized());
    }
    quantized
}

#[test]
fn quantized_tensors_are_ggml_encodings_within_codec_bounds() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let f = GgufFile::open(&f32_path).unwrap();
    // The fixture's 64-wide rows make K types fall back (Q6_K -> Q8_0, Q4_K -> Q5_0), and its
    // 344-wide down projection (not a multiple of 32) falls back to F16.
    for (preset, ftype, expert_ty) in [
        ("q8_0", 7, GgmlType::Q8_0),
        ("q4_0", 2, GgmlType::Q4_0),
        ("q6_k", 18, GgmlType::Q8_0),
        ("q4_k_m", 15, GgmlType::Q5_0),
    ] {
        let out = d.path().join(format!("{preset}.gguf"));
        quantize(&f32_path, &out, &["--preset", preset]);
        let q = GgufFile::open(&out).unwrap();
        assert!(check_against_f32(&f, &q) >= 13, "{preset}");
        assert_eq!(
            q.get("general.file_type"),
            Some(&Value::U32(ftype)),
            "{preset}"
        );
        assert_eq!(q.get("general.quantization_version"), Some(&Value::U32(2)));
        assert_eq!(q.get("general.name"), f.get("general.name"));
        assert_eq!(
            q.get("tokenizer.ggml.tokens"),
            f.get("tokenizer.ggml.tokens")
        );
        assert_eq!(q.kvs().len(), f.kvs().len());
        assert_eq!(
            q.tensor("blk.0.ffn_gate_exps.weight").unwrap().ty,
            expert_ty,
            "{preset}"
        );
        assert_eq!(
            q.tensor("blk.0.ffn_down_exps.weight").unwrap().ty,
            GgmlType::F16,
            "{preset}"
        );
        assert_eq!(
            q.tensor("blk.0.attn_norm.weight").unwrap().ty,
            GgmlType::F32
        );
        assert_eq!(
            q.tensor("blk.0.ffn_gate_inp.weight").unwrap().ty,
            GgmlType::F32
        );
        let order: Vec<_> = q.tensors().iter().map(|t| &t.name).collect();
        assert_eq!(
            order,
            f.tensors().iter().map(|t| &t.name).collect::<Vec<_>>()
        );
    }
    // q4_k_m's rules on the fixture: attn_k/v Q8_0; attn_output Q5_K, which falls back to Q5_1
    // on 64-element rows; Q4_K falls back to Q5_0.
    let q = GgufFile::open(&d.path().join("q4_k_m.gguf")).unwrap();
    let ty = |n: &str| q.tensor(n).unwrap().ty;
    assert_eq!(ty("blk.0.attn_k.weight"), GgmlType::Q8_0);
    assert_eq!(ty("blk.0.attn_output.weight"), GgmlType::Q5_1);
    assert_eq!(ty("blk.0.ffn_up_exps.weight"), GgmlType::Q5_0);
}

#[test]
fn quantize_of_f32_equals_convert_except_int8_q8_0() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let f = GgufFile::open(&f32_path).unwrap();
    for preset in ["q4_0", "q6_k", "q4_k_m", "q5_k_m", "q8_0"] {
        let a = d.path().join(format!("quantize-{preset}.gguf"));
        quantize(&f32_path, &a, &["--preset", preset]);
        let b = convert(
            d.path(),
            &format!("convert-{preset}.gguf"),
            &["--quant", preset],
        );
        let (qa, qb) = (GgufFile::open(&a).unwrap(), GgufFile::open(&b).unwrap());
        assert_eq!(qa.kvs(), qb.kvs(), "{preset}: metadata");
        let mut differing = 0;
        for (ta, tb) in qa.tensors().iter().zip(qb.tensors()) {
            assert_eq!(
                (&ta.name, ta.ty, &ta.shape),
                (&tb.name, tb.ty, &tb.shape),
                "{preset}"
            );
            if qa.tensor_data(ta) == qb.tensor_data(tb) {
                continue;
            }
            differing += 1;
            // Only Q8_0 matrices convert copied from int8 may differ, and convert's copy is exact.
            assert_eq!(ta.ty, GgmlType::Q8_0, "{preset}: {} differs", ta.name);
            assert_ne!(
                ta.name, "token_embd.weight",
                "{preset}: the embedding is not int8 in the release"
            );
            assert_eq!(
                f32s(&qb, &tb.name),
                f32s(&f, &tb.name),
                "{preset}: convert's Q8_0 of {} is lossless",
                tb.name
            );
        }
        // q6_k and q8_0 also give Q8_0 experts (fallback / preset); the others only attn_k/v.
        if !matches!(preset, "q6_k" | "q8_0") {
            assert!(
                differing <= 4,
                "{preset}: {differing} tensors differ (only attn_k/attn_v may)"
            );
        }
    }
    // A policy without Q8_0 matrices: the whole files are identical.
    let spec = "experts=q4_0,attn=q4_1,embed=q5_0";
    let a = d.path().join("quantize-mixed.gguf");
    quantize(&f32_path, &a, &["--quant", spec]);
    let b = convert(d.path(), "convert-mixed.gguf", &["--quant", spec]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "quantize --quant {spec} != convert --quant {spec}"
    );
}

#[test]
fn chunking_and_jobs_do_not_change_the_bytes() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let cli = d.path().join("cli.gguf");
    quantize(&f32_path, &cli, &["--preset", "q4_k_m", "--jobs", "1"]);
    let set = GgufSet::open(&f32_path).unwrap();
    let plan = plan_requant(&set, &Policy::parse("q4_k_m").unwrap(), false).unwrap();
    for (chunk, jobs) in [(256, 3), (4096, 2), (1000, 1)] {
        let out = d.path().join(format!("lib-{chunk}.gguf"));
        let o = RequantOptions {
            out: out.clone(),
            split_max: None,
            jobs,
            force: false,
            measure: true,
            chunk_elems: chunk,
        };
        let r = requantize(&set, &plan, &o, &|_| {}).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&cli).unwrap(),
            "chunk {chunk}, jobs {jobs}"
        );
        assert_eq!(r.totals.tensors, 26);
        assert!(r.totals.rms > 0.0 && r.totals.max_abs > 0.0);
    }
}

fn first_shard(dir: &Path, prefix: &str) -> PathBuf {
    let want = format!("{prefix}-00001-of-");
    let found = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&want));
    found.unwrap_or_else(|| panic!("no {want}* in {}", dir.display()))
}

#[test]
fn split_outputs_and_split_inputs() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let single = d.path().join("single.gguf");
    quantize(&f32_path, &single, &["--preset", "q4_0"]);
    quantize(
        &f32_path,
        &d.path().join("split.gguf"),
        &["--preset", "q4_0", "--split-max-size", "200K"],
    );
    let first = first_shard(d.path(), "split");
    let set = GgufSet::open(&first).unwrap();
    assert!(set.files().len() >= 3);
    assert_eq!(set.get("general.file_type"), Some(&Value::U32(2)));
    let one = GgufFile::open(&single).unwrap();
    for t in one.tensors() {
        assert_eq!(
            set.tensor_data(&t.name),
            Some(one.tensor_data(t)),
            "{}",
            t.name
        );
    }
    // A split input (shards of the f32 conversion) gives the same single file.
    convert(
        d.path(),
        "f32s.gguf",
        &["--type", "f32", "--split-max-size", "1M"],
    );
    let split_in = first_shard(d.path(), "f32s");
    assert!(GgufSet::open(&split_in).unwrap().files().len() >= 3);
    let again = d.path().join("from-split.gguf");
    quantize(&split_in, &again, &["--preset", "q4_0"]);
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&single).unwrap());
}

#[test]
fn double_quantization_needs_the_flag_and_same_type_is_copied() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let q4 = d.path().join("q4_0.gguf");
    quantize(&f32_path, &q4, &["--preset", "q4_0"]);
    let q6 = d.path().join("q6_k.gguf");
    let (code, _, err) = run(&["quantize", s(&q4), "-o", s(&q6), "--preset", "q6_k"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--allow-requantize")
            && err.contains("already Q4_0")
            && err.contains("q4_0.gguf"),
        "{err}"
    );
    assert!(!q6.exists());
    let (code, _, err) = run(&[
        "quantize",
        s(&q4),
        "-o",
        s(&q6),
        "--preset",
        "q6_k",
        "--allow-requantize",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: blk.0.ffn_gate_exps.weight: row length 64 is not a multiple of Q6_K's 256-element block; using Q8_0; requantizing Q4_0 → Q8_0"), "{err}");
    // Same preset again: every tensor already has its type, so the file is copied unchanged.
    let q4b = d.path().join("q4_0-again.gguf");
    quantize(&q4, &q4b, &["--preset", "q4_0"]);
    assert!(std::fs::read(&q4).unwrap() == std::fs::read(&q4b).unwrap());
    // Dequantizing to floats is not double quantization.
    quantize(&q4, &d.path().join("back.gguf"), &["--preset", "f32"]);
}

#[test]
fn reruns_are_identical_and_outputs_are_protected() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let out = d.path().join("q.gguf");
    quantize(&f32_path, &out, &["--preset", "q6_k"]);
    let first = std::fs::read(&out).unwrap();
    let (code, _, err) = run(&["quantize", s(&f32_path), "-o", s(&out), "--preset", "q6_k"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    quantize(
        &f32_path,
        &out,
        &["--preset", "q6_k", "--force", "--jobs", "1"],
    );
    assert!(std::fs::read(&out).unwrap() == first, "rerun differs");
    let (code, _, err) = run(&[
        "quantize",
        s(&f32_path),
        "-o",
        s(&f32_path),
        "--preset",
        "q6_k",
        "--force",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("replace an input"), "{err}");
    let (code, _, err) = run(&["quantize", s(&f32_path), "-o", s(&out)]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&[
        "quantize",
        s(&f32_path),
        "-o",
        s(&out),
        "--quant",
        "experts=q9",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn hostile_inputs_exit_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let bytes = std::fs::read(&f32_path).unwrap();
    let out = d.path().join("out.gguf");
    for (name, data) in [
        ("truncated.gguf", &bytes[..bytes.len() / 2]),
        ("header-only.gguf", &bytes[..200]),
        ("junk.gguf", &b"GGUF\x03\0\0\0junk"[..]),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, data).unwrap();
        let (code, _, err) = run(&["quantize", s(&p), "-o", s(&out), "--preset", "q8_0"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
        assert!(!out.exists());
    }
    let (code, _, err) = run(&[
        "quantize",
        s(&d.path().join("missing.gguf")),
        "-o",
        s(&out),
        "--preset",
        "q8_0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn json_report() {
    let d = tempfile::tempdir().unwrap();
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let out = d.path().join("q.gguf");
    let text = quantize(&f32_path, &out, &["--preset", "q4_k_m", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &v["report"];
    assert_eq!(r["file_type"], 15);
    assert_eq!(r["totals"]["tensors"], 26);
    assert_eq!(r["totals"]["copied"], 11);
    assert_eq!(r["totals"]["encoded"], 15);
    assert_eq!(r["files"][0][1], std::fs::metadata(&out).unwrap().len());
    let t = r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.0.attn_k.weight")
        .unwrap();
    assert_eq!(
        (
            t["in_type"].as_str(),
            t["ty"].as_str(),
            t["action"].as_str()
        ),
        (Some("f32"), Some("q8_0"), Some("encode"))
    );
    assert!(t["rms"].as_f64().unwrap() > 0.0 && t["bpw"].as_f64().unwrap() == 8.5);
    let text = ok(&[
        "quantize",
        s(&f32_path),
        "-o",
        s(&out),
        "--preset",
        "q8_0",
        "--report",
        "--force",
        "-q",
    ]);
    assert!(text.contains("total: 26 tensors"), "{text}");
}

#[test]
fn bf16_and_f16_inputs_and_partial_policies() {
    let d = tempfile::tempdir().unwrap();
    for ty in ["bf16", "f16"] {
        let input = convert(d.path(), &format!("{ty}.gguf"), &["--type", ty]);
        let out = d.path().join(format!("{ty}-q4_0.gguf"));
        quantize(&input, &out, &["--preset", "q4_0"]);
        let (f, q) = (
            GgufFile::open(&input).unwrap(),
            GgufFile::open(&out).unwrap(),
        );
        assert!(check_against_f32(&f, &q) >= 13, "{ty}");
    }
    // Without a preset, classes the --quant string does not list keep their input type.
    let f32_path = convert(d.path(), "f32.gguf", &["--type", "f32"]);
    let out = d.path().join("experts.gguf");
    quantize(&f32_path, &out, &["--quant", "experts=q4_0"]);
    let q = GgufFile::open(&out).unwrap();
    assert_eq!(
        q.tensor("blk.0.ffn_gate_exps.weight").unwrap().ty,
        GgmlType::Q4_0
    );
    assert_eq!(q.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::F32);
    assert_eq!(q.tensor("token_embd.weight").unwrap().ty, GgmlType::F32);
    assert_eq!(q.get("general.file_type"), Some(&Value::U32(2)));
}
