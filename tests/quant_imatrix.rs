//! Importance-matrix quantization end to end (issue #15): `grokit quantize --imatrix`,
//! `grokit convert --imatrix`, `grokit inspect` and `imatrix-convert`, on a synthetic `grok`
//! GGUF with 256-multiple widths (so the i-quants are used, not their fallbacks) and on the
//! committed fixture. The byte equality with llama-quantize itself is the interop test
//! (tests/interop/iquant_ggml.py); here every output tensor is re-derived independently:
//! `quantize_row_weighted` per row, with the weights `Imatrix::weights` gives for the tensor
//! and the row's expert.

use crate::util::{grokit, repo};
use grokit::gguf::{GgufFile, GgufFileWriter, GgufPlan, TensorPlan, Value};
use grokit::imatrix::{write_gguf, EntryData, EntryShape, Imatrix, Meta};
use grokit::quant::{dequantize_row, quantize_row_weighted, GgmlType};
use std::path::{Path, PathBuf};

fn run(args: &[&str]) -> (i32, String, String) {
    let o = grokit().args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "grokit {args:?}: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic pseudo-random values in (-scale, scale).
fn noise(seed: u32, n: usize, scale: f32) -> Vec<f32> {
    let mut st = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            st = st.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((st >> 8) as f32 / 8_388_608.0 - 1.0) * scale
        })
        .collect()
}

const D: u64 = 256;
const FF: u64 = 256;
const KV: u64 = 128;
const EXPERTS: u64 = 8;
const LAYERS: u64 = 2;

/// (name, numpy shape) of a small `grok` model whose matrices are i-quant friendly.
fn model_tensors() -> Vec<(String, Vec<u64>)> {
    let mut t = vec![("token_embd.weight".to_string(), vec![512, D])];
    for l in 0..LAYERS {
        let b = |n: &str| format!("blk.{l}.{n}.weight");
        t.push((b("attn_norm"), vec![D]));
        t.push((b("attn_q"), vec![D, D]));
        t.push((b("attn_k"), vec![KV, D]));
        t.push((b("attn_v"), vec![KV, D]));
        t.push((b("attn_output"), vec![D, D]));
        t.push((b("ffn_gate_inp"), vec![EXPERTS, D]));
        t.push((b("ffn_gate_exps"), vec![EXPERTS, FF, D]));
        t.push((b("ffn_up_exps"), vec![EXPERTS, FF, D]));
        t.push((b("ffn_down_exps"), vec![EXPERTS, D, FF]));
        t.push((b("ffn_norm"), vec![D]));
    }
    t.push(("output_norm.weight".to_string(), vec![D]));
    t
}

fn synth_gguf(path: &Path) {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    let kvs = vec![
        kv("general.architecture", Value::String("grok".into())),
        kv("general.file_type", Value::U32(0)),
        kv("grok.block_count", Value::U32(LAYERS as u32)),
        kv("grok.embedding_length", Value::U32(D as u32)),
        kv("grok.feed_forward_length", Value::U32(FF as u32)),
        kv("grok.attention.head_count", Value::U32(2)),
        kv("grok.attention.head_count_kv", Value::U32(1)),
        kv("grok.expert_count", Value::U32(EXPERTS as u32)),
        kv("grok.expert_used_count", Value::U32(2)),
    ];
    let ts = model_tensors();
    let plans = ts
        .iter()
        .map(|(n, sh)| TensorPlan::new(n.clone(), sh.clone(), GgmlType::F32))
        .collect();
    let f = GgufPlan::new(kvs, plans).split(None, path).unwrap();
    let mut w = GgufFileWriter::create(f.into_iter().next().unwrap()).unwrap();
    for (i, (_, sh)) in ts.iter().enumerate() {
        let n: u64 = sh.iter().product();
        let mut x = noise(i as u32, n as usize, 0.05);
        // one all-zero 32-block and a few outliers, the cases encoders special-case
        x[..32].fill(0.0);
        if n > 1000 {
            x[500] = 0.9;
            x[777] = -1.1;
        }
        let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_tensor(&b).unwrap();
    }
    w.finish().unwrap();
}

/// An importance matrix for every matrix but `skip` (per expert for `*_exps`, with expert 3
/// of each left without data), widths scaled by `widen`.
fn synth_imatrix(path: &Path, skip: Option<&str>, widen: usize) {
    let mut shapes = Vec::new();
    let mut data = Vec::new();
    for (i, (name, sh)) in model_tensors().iter().enumerate() {
        if sh.len() < 2 || name == "token_embd.weight" || Some(name.as_str()) == skip {
            continue;
        }
        let ne0 = *sh.last().unwrap() as usize * widen;
        let n_mat = if sh.len() == 3 { sh[0] as usize } else { 1 };
        let mut counts = vec![2048i64; n_mat];
        if n_mat > 3 {
            counts[3] = 0;
        }
        let sums: Vec<f32> = noise(100 + i as u32, ne0 * n_mat, 1.0)
            .iter()
            .enumerate()
            .map(|(k, v)| v * v * 2048.0 * if k % 53 == 7 { 0.0 } else { 1.0 })
            .collect();
        shapes.push(EntryShape {
            name: name.clone(),
            ne0,
            n_mat,
            counts: counts.clone(),
        });
        data.push(EntryData {
            name: name.clone(),
            sums,
            counts,
        });
    }
    let meta = Meta {
        datasets: vec!["synthetic.txt".into()],
        chunk_count: 4,
        chunk_size: 512,
    };
    write_gguf(
        path,
        &meta,
        &shapes,
        |n| Ok(data.iter().find(|d| d.name == n).unwrap().clone()),
        true,
    )
    .unwrap();
}

fn f32_of(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    let n = t.shape.iter().product::<u64>() as usize;
    let mut x = vec![0f32; n];
    dequantize_row(t.ty, f.tensor_data(t), &mut x).unwrap();
    x
}

/// Every quantized tensor of `q` equals the row-by-row weighted encoding of `f`'s values with
/// the matrix's weights for the tensor (expert slice per row), or the unweighted encoding where
/// the matrix has no entry. Returns how many tensors used weights.
fn check_weighted(f: &GgufFile, q: &GgufFile, m: &Imatrix) -> usize {
    let mut weighted = 0;
    for t in q.tensors() {
        if !t.ty.is_quantized() {
            continue;
        }
        let x = f32_of(f, &t.name);
        let ne0 = t.ne[0] as usize;
        let rows_per = t.ne[1] as usize;
        let w = m.weights(&t.name).unwrap();
        let mut out = Vec::new();
        for (r, row) in x.chunks_exact(ne0).enumerate() {
            let e = r / rows_per;
            let qw = w.as_ref().map(|w| &w[e * ne0..(e + 1) * ne0]);
            quantize_row_weighted(t.ty, row, qw, &mut out).unwrap();
        }
        assert!(out == q.tensor_data(t), "{} ({})", t.name, t.ty);
        weighted += usize::from(w.is_some() && t.ty != GgmlType::Q8_0);
    }
    weighted
}

fn setup(d: &Path) -> (PathBuf, PathBuf) {
    let model = d.join("synth-f32.gguf");
    synth_gguf(&model);
    let im = d.join("synth.imatrix.gguf");
    synth_imatrix(&im, None, 1);
    (model, im)
}

#[test]
fn quantize_with_imatrix_equals_weighted_rows_for_every_preset() {
    let d = tempfile::tempdir().unwrap();
    let (model, im) = setup(d.path());
    let f = GgufFile::open(&model).unwrap();
    let m = Imatrix::open(&im).unwrap();
    // (every preset against llama-quantize itself: tests/interop/iquant_ggml.py)
    for preset in ["iq2_xs", "iq3_xxs", "iq4_xs", "q2_k", "q5_1"] {
        let out = d.path().join(format!("{preset}.gguf"));
        let v: serde_json::Value = serde_json::from_str(&ok(&[
            "quantize",
            s(&model),
            "-o",
            s(&out),
            "--preset",
            preset,
            "--imatrix",
            s(&im),
            "--json",
            "-q",
        ]))
        .unwrap();
        let q = GgufFile::open(&out).unwrap();
        let n = check_weighted(&f, &q, &m);
        assert!(n >= 6, "{preset}: only {n} weighted tensors");
        let marked = v["report"]["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["imatrix"] == true)
            .count();
        assert!(marked >= n, "{preset}: {marked} marked, {n} weighted");
        // llama-quantize's record of the matrix
        assert_eq!(
            q.get("quantize.imatrix.file").and_then(|v| v.as_str()),
            Some(s(&im))
        );
        assert_eq!(
            q.get("quantize.imatrix.entries_count"),
            Some(&Value::U32(m.len() as u32))
        );
    }
    // the i-quants really are used at these widths
    let q = GgufFile::open(&d.path().join("iq2_xs.gguf")).unwrap();
    assert_eq!(
        q.tensor("blk.1.ffn_up_exps.weight").unwrap().ty,
        GgmlType::IQ2_XS
    );
    assert_eq!(
        q.tensor("blk.1.ffn_down_exps.weight").unwrap().ty,
        GgmlType::IQ2_XS
    );
    // (2 layers: n/8 = 0, so no layer gets llama-quantize's first-layers bump)
    assert_eq!(
        q.tensor("blk.0.ffn_down_exps.weight").unwrap().ty,
        GgmlType::IQ2_XS
    );
    assert_eq!(q.tensor("blk.0.attn_k.weight").unwrap().ty, GgmlType::Q4_K);
    assert_eq!(q.tensor("token_embd.weight").unwrap().ty, GgmlType::Q5_K);
}

#[test]
fn a_legacy_matrix_gives_llama_quantizes_weights_too() {
    let d = tempfile::tempdir().unwrap();
    let (model, im) = setup(d.path());
    let dat = d.path().join("synth.imatrix.dat");
    ok(&["imatrix-convert", s(&im), "-o", s(&dat), "-q"]);
    let out = d.path().join("iq3_s.gguf");
    ok(&[
        "quantize",
        s(&model),
        "-o",
        s(&out),
        "--preset",
        "iq3_s",
        "--imatrix",
        s(&dat),
        "-q",
    ]);
    let n = check_weighted(
        &GgufFile::open(&model).unwrap(),
        &GgufFile::open(&out).unwrap(),
        &Imatrix::open(&dat).unwrap(),
    );
    assert!(n >= 6);
    // and back to GGUF: raw sums and counts again
    let back = d.path().join("back.imatrix.gguf");
    ok(&["imatrix-convert", s(&dat), "-o", s(&back), "-q"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&back), "--json"])).unwrap();
    assert_eq!(v["format"], "imatrix");
    assert_eq!(v["chunk_size"], 512);
    assert_eq!(
        v["entries"].as_array().unwrap().len(),
        Imatrix::open(&im).unwrap().len()
    );
    let text = ok(&["inspect", s(&im)]);
    assert!(
        text.contains("blk.1.ffn_down_exps.weight") && text.contains("importance matrix (GGUF)"),
        "{text}"
    );
}

#[test]
fn missing_matrix_wrong_model_and_missing_entries() {
    let d = tempfile::tempdir().unwrap();
    let (model, _) = setup(d.path());
    let out = d.path().join("o.gguf");
    // a type that needs a matrix, without one: exit 2 naming the tensor and the type
    let (code, _, err) = run(&["quantize", s(&model), "-o", s(&out), "--preset", "iq2_xxs"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("IQ2_XXS") && err.contains("--imatrix"),
        "{err}"
    );
    assert!(!out.exists());
    // a matrix made for another model (other widths): exit 2 naming the tensor
    let wide = d.path().join("wide.imatrix.gguf");
    synth_imatrix(&wide, None, 2);
    let (code, _, err) = run(&[
        "quantize",
        s(&model),
        "-o",
        s(&out),
        "--preset",
        "iq4_xs",
        "--imatrix",
        s(&wide),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blk.0.") && err.contains("another model"),
        "{err}"
    );
    assert!(!out.exists());
    // an entry missing: that tensor is quantized without weights and reported; a type that
    // needs the matrix for it is an error naming it
    let partial = d.path().join("partial.imatrix.gguf");
    synth_imatrix(&partial, Some("blk.1.ffn_up_exps.weight"), 1);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "quantize",
        s(&model),
        "-o",
        s(&out),
        "--preset",
        "iq4_xs",
        "--imatrix",
        s(&partial),
        "--json",
        "-q",
    ]))
    .unwrap();
    let t = v["report"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.1.ffn_up_exps.weight")
        .unwrap()
        .clone();
    assert_eq!(t["imatrix"], false);
    assert!(
        t["note"]
            .as_str()
            .unwrap()
            .contains("no importance-matrix entry"),
        "{t}"
    );
    check_weighted(
        &GgufFile::open(&model).unwrap(),
        &GgufFile::open(&out).unwrap(),
        &Imatrix::open(&partial).unwrap(),
    );
    let (code, _, err) = run(&[
        "quantize",
        s(&model),
        "-o",
        s(&out),
        "--preset",
        "iq2_xs",
        "--imatrix",
        s(&partial),
        "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blk.1.ffn_up_exps.weight") && err.contains("no entry"),
        "{err}"
    );
    // an unreadable matrix: exit 2 naming the file
    let junk = d.path().join("junk.dat");
    std::fs::write(&junk, [1u8, 0, 0, 0, 255, 255, 255, 127]).unwrap();
    let (code, _, err) = run(&[
        "quantize",
        s(&model),
        "-o",
        s(&out),
        "--preset",
        "iq4_xs",
        "--imatrix",
        s(&junk),
        "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("junk.dat"), "{err}");
}

/// An importance matrix for the fixture's tensors, from its F32 GGUF.
fn fixture_imatrix(f32_gguf: &Path, out: &Path) {
    let g = GgufFile::open(f32_gguf).unwrap();
    let mut shapes = Vec::new();
    let mut data = Vec::new();
    for (i, t) in g.tensors().iter().enumerate() {
        if t.ne.len() < 2 || t.name == "token_embd.weight" {
            continue;
        }
        let ne0 = t.ne[0] as usize;
        let n_mat = t.ne.get(2).copied().unwrap_or(1) as usize;
        let counts = vec![512i64; n_mat];
        let sums = noise(7 + i as u32, ne0 * n_mat, 1.0)
            .iter()
            .map(|v| v * v * 512.0)
            .collect();
        shapes.push(EntryShape {
            name: t.name.clone(),
            ne0,
            n_mat,
            counts: counts.clone(),
        });
        data.push(EntryData {
            name: t.name.clone(),
            sums,
            counts,
        });
    }
    let meta = Meta {
        datasets: vec!["x".into()],
        chunk_count: 1,
        chunk_size: 512,
    };
    write_gguf(
        out,
        &meta,
        &shapes,
        |n| Ok(data.iter().find(|d| d.name == n).unwrap().clone()),
        false,
    )
    .unwrap();
}

#[test]
fn convert_with_imatrix_equals_quantize_with_imatrix_except_int8_q8_0() {
    let d = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/tiny");
    let f32_path = d.path().join("f32.gguf");
    ok(&[
        "convert",
        s(&fx),
        "--to",
        "gguf",
        "-o",
        s(&f32_path),
        "--type",
        "f32",
        "-q",
    ]);
    let im = d.path().join("fx.imatrix.gguf");
    fixture_imatrix(&f32_path, &im);
    for preset in ["iq4_xs", "q4_k_m", "iq3_s"] {
        let c = d.path().join(format!("c-{preset}.gguf"));
        let q = d.path().join(format!("q-{preset}.gguf"));
        ok(&[
            "convert",
            s(&fx),
            "--to",
            "gguf",
            "-o",
            s(&c),
            "--quant",
            preset,
            "--imatrix",
            s(&im),
            "-q",
        ]);
        ok(&[
            "quantize",
            s(&f32_path),
            "-o",
            s(&q),
            "--preset",
            preset,
            "--imatrix",
            s(&im),
            "-q",
        ]);
        let (c, q) = (GgufFile::open(&c).unwrap(), GgufFile::open(&q).unwrap());
        let mut compared = 0;
        for t in q.tensors() {
            let ct = c.tensor(&t.name).unwrap();
            assert_eq!(ct.ty, t.ty, "{preset} {}", t.name);
            if t.ty != GgmlType::Q8_0 {
                assert!(c.tensor_data(ct) == q.tensor_data(t), "{preset} {}", t.name);
                compared += 1;
            }
        }
        assert!(compared > 10);
        assert_eq!(
            c.get("quantize.imatrix.file"),
            q.get("quantize.imatrix.file")
        );
    }
    // int4 safetensors with the matrix: its weighted error is below the plain scales'
    let plain = d.path().join("st4");
    let weighted = d.path().join("st4w");
    let rms = |dir: &Path, extra: &[&str]| -> f64 {
        let mut a = vec![
            "convert",
            s(&fx),
            "--to",
            "safetensors",
            "--dtype",
            "int4",
            "-o",
            s(dir),
            "--json",
            "-q",
        ];
        a.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&ok(&a)).unwrap();
        let ts = v["report"]["tensors"].as_array().unwrap().clone();
        let (mut sse, mut n) = (0f64, 0f64);
        for t in ts
            .iter()
            .filter(|t| t["name"].as_str().unwrap().ends_with("weight_packed"))
        {
            let e = t["bytes"].as_f64().unwrap() * 2.0;
            sse += t["rms"].as_f64().unwrap().powi(2) * e;
            n += e;
        }
        (sse / n).sqrt()
    };
    let (a, b) = (rms(&plain, &[]), rms(&weighted, &["--imatrix", s(&im)]));
    assert!(b < a, "int4 rms with the matrix {b} vs plain {a}");
    let (code, _, err) = run(&[
        "convert",
        s(&fx),
        "--to",
        "safetensors",
        "--dtype",
        "bf16",
        "-o",
        s(&d.path().join("b")),
        "--imatrix",
        s(&im),
    ]);
    assert_eq!(code, 2, "{err}");
}
