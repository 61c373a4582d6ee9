//! `grokit imatrix` end to end on the fixture: the written matrix is read back by grokit and
//! accepted by `grokit quantize --imatrix`; shards merged with `--finish` equal a single run; a
//! killed run resumed with `--resume` gives the uninterrupted run's bytes; bad input is exit 2.
//! (Agreement with llama-imatrix itself is `tests/interop/imatrix_llama.py`; the sums against a
//! direct computation are the unit test in `src/eval/imatrix.rs`.)

use crate::util::{grokit, repo, run};
use grokit::imatrix::Imatrix;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// About `n` bytes of the repository's README (deterministic).
fn text(dir: &Path, n: usize) -> PathBuf {
    let r = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut t = String::new();
    while t.len() < n {
        t.push_str(&r);
    }
    let p = dir.join("text.txt");
    std::fs::write(&p, t).unwrap();
    p
}

fn fixture() -> String {
    repo().join("fixtures/tiny").to_str().unwrap().to_string()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// Every entry's (values, counts) of a GGUF matrix.
fn read(p: &Path) -> Vec<(String, Vec<f32>, Vec<i64>)> {
    let m = Imatrix::open(p).unwrap();
    let mut v: Vec<_> = m
        .infos()
        .into_iter()
        .map(|i| {
            let (sums, counts) = m.sums_and_counts(&i.name, m.chunk_size()).unwrap();
            (i.name, sums, counts)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn matrix_reads_back_quantizes_and_shards_merge_to_the_single_run() {
    let d = tempfile::tempdir().unwrap();
    let t = text(d.path(), 12_000);
    let fx = fixture();
    let single = d.path().join("single.imatrix.gguf");
    let base = [
        "imatrix",
        &fx,
        "-f",
        s(&t),
        "--ctx",
        "64",
        "--chunks",
        "6",
        "-q",
    ];
    let mut a = base.to_vec();
    a.extend(["-o", s(&single), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&ok(&a)).unwrap();
    assert_eq!(j["chunks"], 6);
    let m = Imatrix::open(&single).unwrap();
    assert_eq!((m.chunk_count(), m.chunk_size()), (6, 64));
    let names: Vec<String> = m.names().map(str::to_string).collect();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("fixtures/tiny/config.json")).unwrap(),
    )
    .unwrap_or_default();
    let layers = names
        .iter()
        .filter(|n| n.ends_with(".attn_q.weight"))
        .count();
    assert!(layers >= 1, "{names:?} {cfg}");
    assert_eq!(names.len(), 8 * layers, "{names:?}");
    let q = m.info("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.counts, vec![6 * 64]);
    let down = m.info("blk.0.ffn_down_exps.weight").unwrap();
    assert!(down.n_mat > 1, "{down:?}");
    // Existing output without --force: exit 2, untouched.
    let before = std::fs::read(&single).unwrap();
    let (code, _, err) = run(&a);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read(&single).unwrap(), before);
    // Deterministic: a second run gives the same bytes.
    let again = d.path().join("again.imatrix.gguf");
    let mut b = base.to_vec();
    b.extend(["-o", s(&again)]);
    ok(&b);
    assert_eq!(std::fs::read(&again).unwrap(), before);

    // Shards 0/3..2/3, then --finish.
    let parts = d.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    for k in 0..3 {
        let sh = format!("{k}/3");
        let mut a = base.to_vec();
        a.extend(["--shard", &sh, "--parts", s(&parts)]);
        ok(&a);
    }
    let merged = d.path().join("merged.imatrix.gguf");
    let mut f = base.to_vec();
    f.extend(["--finish", "--parts", s(&parts), "-o", s(&merged)]);
    ok(&f);
    let (x, y) = (read(&single), read(&merged));
    assert_eq!(x.len(), y.len());
    for ((n, a, ca), (_, b, cb)) in x.iter().zip(&y) {
        assert_eq!(ca, cb, "{n}");
        for (u, v) in a.iter().zip(b) {
            assert!((u - v).abs() <= 1e-6 * u.abs().max(1e-30), "{n}: {u} {v}");
        }
    }
    // A missing shard: exit 2 naming it.
    std::fs::remove_dir_all(parts.join("imatrix-0001-of-0003")).unwrap();
    std::fs::remove_file(&merged).unwrap();
    let (code, _, err) = run(&f);
    assert_eq!(code, 2);
    assert!(err.contains("1/3"), "{err}");
    assert!(!merged.exists());

    // The legacy format, and grokit quantize --imatrix accepts the matrix.
    let dat = d.path().join("m.imatrix.dat");
    let mut a = base.to_vec();
    a.extend(["-o", s(&dat)]);
    ok(&a);
    assert_eq!(Imatrix::open(&dat).unwrap().len(), names.len());
    let gguf = d.path().join("f32.gguf");
    ok(&[
        "convert",
        &fx,
        "--to",
        "gguf",
        "-o",
        s(&gguf),
        "--type",
        "f32",
        "-q",
    ]);
    for (m, out) in [(&single, "q4km.gguf"), (&dat, "q4km-dat.gguf")] {
        let o = d.path().join(out);
        ok(&[
            "quantize",
            s(&gguf),
            "-o",
            s(&o),
            "--preset",
            "q4_k_m",
            "--imatrix",
            s(m),
        ]);
        assert!(o.is_file());
    }
}

#[test]
fn bad_input_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let fx = fixture();
    let t = text(d.path(), 12_000);
    let o = d.path().join("o.gguf");
    let short = d.path().join("short.txt");
    std::fs::write(&short, "a few words").unwrap();
    for (args, what) in [
        (vec!["imatrix", &fx, "-f", s(&t)], "-o"),
        (vec!["imatrix", &fx, "-f", s(&short), "-o", s(&o)], "tokens"),
        (
            vec![
                "imatrix",
                &fx,
                "-f",
                s(&t),
                "-o",
                s(&o),
                "--shard",
                "0/2",
                "--parts",
                ".",
            ],
            "-o goes",
        ),
        (
            vec!["imatrix", &fx, "-f", s(&t), "-o", s(&o), "--ctx", "0"],
            "--ctx",
        ),
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(!o.exists());
    }
}

/// A 20-layer synthetic model at the fixture's widths (slow enough to interrupt).
fn deep_model(dir: &Path) -> PathBuf {
    let p = dir.join("deep");
    ok(&["synth", s(&p), "--preset", "tiny", "--layers", "20", "-q"]);
    std::fs::copy(
        repo().join("fixtures/tiny/tokenizer.model"),
        p.join("tokenizer.model"),
    )
    .unwrap();
    p
}

#[test]
fn killed_run_resumes_byte_identically() {
    let d = tempfile::tempdir().unwrap();
    let m = deep_model(d.path());
    let t = text(d.path(), 8_000);
    let scratch = d.path().join("scratch");
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "imatrix",
            s(&m),
            "-f",
            s(&t),
            "--ctx",
            "128",
            "-q",
            "--mem-budget",
            "20M",
            "--scratch",
            s(&scratch),
            "-o",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let reference = d.path().join("ref.gguf");
    let o = grokit().args(args(&reference, &[])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = d.path().join("out.gguf");
    let mut child = grokit().args(args(&out, &[])).spawn().unwrap();
    let start = Instant::now();
    let mut killed = false;
    let layer3 = scratch.join("imatrix-00003-00000.bin");
    while start.elapsed() < Duration::from_secs(120) {
        if layer3.exists() {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    if !killed {
        eprintln!("SKIP kill test: the run finished before layer 3 was seen");
        return;
    }
    assert!(!out.exists(), "a killed run left its output");
    // Without --resume the state is protected.
    let (code, _, err) = run(&args(&out, &[]));
    assert_eq!(code, 2);
    assert!(err.contains("--resume"), "{err}");
    // A perplexity state is not an imatrix state... and --resume continues to the same bytes.
    let o = grokit().args(args(&out, &["--resume"])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    assert!(!scratch.exists());
}
