//! End-to-end: the binary's subcommands, exit codes and error messages.

use crate::util::{assert_dirs_identical, copy_fixture, repo, run, shared, skip};
use std::path::Path;

#[test]
fn synth_reproduces_the_committed_fixture() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("tiny");
    let (code, _, err) = run(&[
        "synth",
        out.to_str().unwrap(),
        "--preset",
        "tiny",
        "--seed",
        "0",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_dirs_identical(&out.join("ckpt-0"), &repo().join("fixtures/tiny/ckpt-0"));
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        std::fs::read(repo().join("fixtures/tiny/config.json")).unwrap()
    );
    // A second run into the same place is refused rather than mixing files.
    let (code, _, err) = run(&["synth", out.to_str().unwrap(), "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn inspect_fixture_and_json() {
    let fx = repo().join("fixtures/tiny");
    let (code, out, err) = run(&["inspect", fx.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("files: 26"), "{out}");
    assert!(out.contains("no problems found"));
    let (code, out, _) = run(&["inspect", fx.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"], 26);
    assert_eq!(v["config"]["emb_size"], 64);
    assert_eq!(
        v["tensors"][2]["name"],
        "transformer/decoder_layer_0/moe/linear/w"
    );
    assert_eq!(
        v["tensors"][2]["scales"]["shape"],
        serde_json::json!([8, 1, 344])
    );
}

#[test]
fn inspect_tiny12() {
    let Some(s) = shared("inspect tiny12") else {
        return;
    };
    let (code, out, err) = run(&["inspect", s.join("reference/tiny12").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("files: 146"));
}

#[test]
fn missing_and_unexpected_files_are_all_reported() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(d.path());
    let c = d.path().join("ckpt-0");
    std::fs::remove_file(c.join("tensor00003_000")).unwrap();
    std::fs::remove_file(c.join("tensor00020_000")).unwrap();
    std::fs::write(c.join("tensor00004_001"), b"x").unwrap();
    let (code, _, err) = run(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tensor00003_000")
            && err.contains("tensor00020_000")
            && err.contains("tensor00004_001"),
        "{err}"
    );
}

#[test]
fn corrupt_pickle_names_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(d.path());
    let f = d.path().join("ckpt-0/tensor00005_000");
    let mut b = std::fs::read(&f).unwrap();
    b[50] = 0x69; // INST: not in the allow-list
    std::fs::write(&f, &b).unwrap();
    let (code, _, err) = run(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tensor00005_000") && err.contains("byte offset 50") && err.contains("0x69"),
        "{err}"
    );
    // A forbidden global: rename numpy's module string to `os` + `system` lengths kept.
    let f = d.path().join("ckpt-0/tensor00001_000");
    let b = std::fs::read(&f).unwrap();
    let pos = b.windows(12).position(|w| w == b"_reconstruct").unwrap();
    let mut b2 = b.clone();
    b2[pos..pos + 12].copy_from_slice(b"system______");
    std::fs::write(&f, &b2).unwrap();
    std::fs::write(
        d.path().join("ckpt-0/tensor00005_000"),
        std::fs::read(repo().join("fixtures/tiny/ckpt-0/tensor00005_000")).unwrap(),
    )
    .unwrap();
    let (code, _, err) = run(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("forbidden global numpy.core.multiarray.system______"),
        "{err}"
    );
}

#[test]
fn trailing_bytes_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(d.path());
    let f = d.path().join("ckpt-0/tensor00007_000");
    let mut b = std::fs::read(&f).unwrap();
    b.extend_from_slice(b"junk");
    std::fs::write(&f, &b).unwrap();
    let (code, out, _) = run(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("4 trailing bytes"), "{out}");
    b.truncate(b.len() - 200);
    std::fs::write(&f, &b).unwrap();
    let (code, _, err) = run(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tensor00007_000")
            && (err.contains("truncated") || err.contains("past the end")),
        "{err}"
    );
}

#[test]
fn sparse_full_release_inspects_as_grok1() {
    let d = tempfile::tempdir().unwrap();
    // Make sure this filesystem keeps holes before writing 318 GB of apparent size.
    let probe = d.path().join("probe");
    let f = std::fs::File::create(&probe).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&probe).unwrap());
    if blocks > 1024 {
        skip("this filesystem does not keep holes (a sparse 318 GB release needs them)");
        return;
    }
    let out = d.path().join("rel");
    let (code, _, err) = run(&[
        "synth",
        out.to_str().unwrap(),
        "--preset",
        "grok-1",
        "--sparse",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out_s, err) = run(&["inspect", out.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out_s).unwrap();
    assert_eq!(v["files"], 770);
    assert_eq!(v["total_bytes"], 318_239_886_140u64);
    assert_eq!(v["is_grok1"], true);
    assert_eq!(v["tensors"][0]["offset"], 151);
    let (code, out_s, err) = run(&["verify", out.to_str().unwrap(), "-q"]);
    assert_eq!(code, 0, "{out_s}{err}");
    assert!(out_s.contains("exact release sizes"), "{out_s}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, _) = run(&["inspect"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(&["inspect", "/nonexistent/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/dir"), "{err}");
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("inspect"));
}

#[test]
fn forward_and_compare() {
    let fx = repo().join("fixtures/tiny");
    let f = fx.to_str().unwrap();
    let (code, out, err) = run(&[
        "forward",
        f,
        "--prompt",
        "The answer to life",
        "--top-k",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("next-token candidates"), "{out}");
    let d = tempfile::tempdir().unwrap();
    let npy = d.path().join("l.npy");
    let (code, out, err) = run(&[
        "forward",
        f,
        "--tokens",
        "5,6,7,300",
        "--json",
        "--logits-out",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"][0]["position"], 3);
    let arr = grokit::npy::read(&npy).unwrap();
    assert_eq!(arr.shape, vec![1, 4, 512]);
    let convert = |out: &Path, args: &[&str]| {
        let mut a = vec!["convert", f, "-o", out.to_str().unwrap(), "-q"];
        a.extend_from_slice(args);
        let (code, _, err) = run(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
    };
    let compare = |model: &Path, thresholds: &str, json: bool| {
        let mut a = vec!["compare", f, model.to_str().unwrap(), "--tokens"];
        a.extend(["5,6,7,300,12,99", "--thresholds", thresholds]);
        a.extend(json.then_some("--json"));
        let (code, out, _) = run(&a);
        (code, out)
    };
    // An f32 GGUF holds exactly the release's values; its `[n, k]` rows are summed in the
    // kernel's dot-product order (the release's `[k, n]` in one FMA chain: src/kernel/mod.rs),
    // so the logits agree to rounding, not bit for bit.
    let g = d.path().join("f.gguf");
    convert(&g, &["--to", "gguf", "--type", "f32"]);
    let (code, out) = compare(&g, "f32", true);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let max_abs = v["max_abs"].as_f64().unwrap();
    assert!(max_abs < 2e-5, "{out}");
    // int4 safetensors: passes the 4-bit thresholds, fails the f32 ones (exit 1).
    let s = d.path().join("st4");
    convert(&s, &["--to", "safetensors", "--dtype", "int4"]);
    let (code, out) = compare(&s, "q4", false);
    assert_eq!(code, 0, "{out}");
    let (code, out) = compare(&s, "f32", false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"));
    // Bad input: a token outside the vocabulary.
    let (code, _, err) = run(&["forward", f, "--tokens", "999999"]);
    assert_eq!(code, 2);
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn forward_tiny12_matches_golden_logits() {
    let Some(s) = shared("forward tiny12") else {
        return;
    };
    let t = s.join("reference/tiny12");
    let d = tempfile::tempdir().unwrap();
    let npy = d.path().join("l.npy.zst");
    let tokens = t.join("tokens.json");
    let (code, _, err) = run(&[
        "forward",
        t.to_str().unwrap(),
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--logits-out",
        npy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&[
        "compare",
        npy.to_str().unwrap(),
        t.join("logits_f32.npy").to_str().unwrap(),
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--thresholds",
        "f32",
        "--max-abs",
        "1e-4",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
}

/// The release's golden logits reached through grokit's own conversions of tiny12: the f32 GGUF
/// reproduces the f32 goldens to float noise; bf16/q8_0/int8 conversions (their embedding is
/// rounded to bf16 or Q8_0) keep every top-1 and stay within 0.35 of both goldens.
#[test]
fn forward_goldens_through_conversions() {
    let Some(s) = shared("goldens through conversions") else {
        return;
    };
    let t = s.join("reference/tiny12");
    let tokens = t.join("tokens.json");
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 5] = [
        ("f32.gguf", &["--to", "gguf", "--type", "f32"], "exact"),
        ("bf16.gguf", &["--to", "gguf", "--type", "bf16"], "close"),
        ("q8_0.gguf", &["--to", "gguf", "--type", "q8_0"], "close"),
        (
            "st-bf16",
            &["--to", "safetensors", "--dtype", "bf16"],
            "close",
        ),
        (
            "st-int8",
            &["--to", "safetensors", "--dtype", "int8"],
            "close",
        ),
    ];
    for (name, args, kind) in cases {
        let out = d.path().join(name);
        let mut a = vec![
            "convert",
            t.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ];
        a.extend_from_slice(args);
        let (code, _, err) = run(&a);
        assert_eq!(code, 0, "{name}: {err}");
        for (prec, golden) in [("f32", "logits_f32.npy"), ("bf16", "logits_bf16.npy")] {
            let (code, o, err) = run(&[
                "compare",
                out.to_str().unwrap(),
                t.join(golden).to_str().unwrap(),
                "--tokens-file",
                tokens.to_str().unwrap(),
                "--precision",
                prec,
                "--thresholds",
                "bf16",
                "--json",
            ]);
            assert!(code == 0 || code == 1, "{name} {prec}: {err}");
            let v: serde_json::Value = serde_json::from_str(&o).unwrap();
            let (max_abs, top1) = (
                v["max_abs"].as_f64().unwrap(),
                v["top1_agreement"].as_f64().unwrap(),
            );
            eprintln!("{name} --precision {prec} vs {golden}: max |d| {max_abs:.3e}, top-1 {top1}, mean KL {}", v["mean_kl"]);
            assert_eq!(top1, 1.0, "{name} {prec}");
            let limit = match (kind, prec) {
                ("exact", "f32") => 1e-3,
                ("exact", _) => 0.15,
                _ => 0.35,
            };
            assert!(max_abs <= limit, "{name} {prec}: {max_abs} > {limit}");
        }
    }
}

/// `--resume` keeps a safetensors shard only when its size, header AND recorded SHA-256 match:
/// a shard corrupted in place (same size) is rewritten.
#[test]
fn safetensors_resume_checks_the_recorded_hash() {
    let fx = repo().join("fixtures/tiny");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("st");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "convert",
            fx.to_str().unwrap(),
            "--to",
            "safetensors",
            "-o",
            out.to_str().unwrap(),
            "--shard-size",
            "300K",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let go = |extra: &[&str]| {
        let a = args(extra);
        let r: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&r)
    };
    let (code, _, err) = go(&["-q"]);
    assert_eq!(code, 0, "{err}");
    let shard = out.join("model-00002-of-00009.safetensors");
    let good = std::fs::read(&shard).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    std::fs::write(&shard, &bad).unwrap();
    let (code, _, err) = go(&["--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("wrote") && err.contains("model-00002-of-00009.safetensors"),
        "{err}"
    );
    assert_eq!(err.matches("kept ").count(), 8, "{err}");
    assert!(std::fs::read(&shard).unwrap() == good);
}
