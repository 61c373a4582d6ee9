//! `grokit perplexity` end to end on the fixture: results independent of grouping, spilling and
//! sharding (`--finish` gives the single-machine bytes), a killed run resumed byte for byte, a
//! tampered or mismatched state refused, and bad input refused with exit 2 and nothing left.
//! (Agreement with llama-perplexity itself is `tests/interop/llama_perplexity.py`.)

use crate::util::{grokit, repo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (i32, String, String) {
    let o = grokit().args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A text of about `n` bytes from the repository's own documentation (deterministic).
fn text(dir: &Path, n: usize) -> PathBuf {
    let mut t = String::new();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, repo().join("README.md"));
    'outer: loop {
        for d in &docs {
            t.push_str(&std::fs::read_to_string(d).unwrap());
            if t.len() >= n {
                break 'outer;
            }
        }
    }
    let p = dir.join("text.txt");
    std::fs::write(&p, t).unwrap();
    p
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `grokit perplexity MODEL -f TEXT --ctx 64 EXTRA...`.
fn ppl64(model: &str, text: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut a = vec!["perplexity", model, "-f", s(text), "--ctx", "64"];
    a.extend_from_slice(extra);
    run(&a)
}

fn fixture() -> String {
    repo().join("fixtures/tiny").to_str().unwrap().to_string()
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("grokit-tmp"))
        .collect()
}

#[test]
fn same_result_whatever_the_grouping_spilling_or_sharding() {
    let d = tempfile::tempdir().unwrap();
    let t = text(d.path(), 12_000);
    let fx = fixture();
    let scratch = d.path().join("scratch");
    let base = |extra: &[&str]| {
        let mut a = vec!["--json", "-q", "--scratch", s(&scratch)];
        a.extend_from_slice(extra);
        let (code, out, err) = ppl64(&fx, &t, &a);
        assert_eq!(code, 0, "{err}");
        assert!(!scratch.exists(), "the state is removed after a run");
        json(&out)
    };
    let one = base(&["--save-logits", s(&d.path().join("one.kld"))]);
    assert_eq!(one["run"]["groups"], 1);
    assert_eq!(one["run"]["hidden_in_ram"], true);
    let n_chunks = one["chunks"].as_u64().unwrap();
    assert!(n_chunks >= 6, "{one}");
    // A budget below one chunk: spilled, one chunk per group: the same result, bit for bit.
    let spilled = base(&[
        "--mem-budget",
        "1",
        "--save-logits",
        s(&d.path().join("spill.kld")),
    ]);
    assert_eq!(spilled["run"]["hidden_in_ram"], false);
    assert_eq!(spilled["run"]["groups"].as_u64(), Some(n_chunks));
    assert_eq!(spilled["result"], one["result"]);
    let kld = std::fs::read(d.path().join("one.kld")).unwrap();
    assert_eq!(kld, std::fs::read(d.path().join("spill.kld")).unwrap());
    // Bytes read per run: one group applies each layer once (so about the model's size is
    // read, whatever the number of chunks); one chunk per group applies each layer per chunk.
    let calls = |j: &serde_json::Value| -> Vec<u64> {
        j["run"]["layer_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    assert!(calls(&one).iter().all(|&c| c == 1), "{}", one["run"]);
    assert!(
        calls(&spilled).iter().all(|&c| c == n_chunks),
        "{}",
        spilled["run"]
    );
    let read = |j: &serde_json::Value| j["run"]["bytes_read_computed"].as_u64().unwrap();
    let model = one["run"]["model_bytes"].as_u64().unwrap();
    assert!(
        read(&one) <= 2 * model && read(&one) * 2 >= model,
        "one group reads about the model once: {} of {model}",
        read(&one)
    );
    assert!(
        read(&spilled) > 2 * read(&one),
        "{} vs {}",
        read(&spilled),
        read(&one)
    );
    // Three shards, then --finish: the single-machine result and base file, byte for byte.
    let parts = d.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    for k in 0..3 {
        let sh = format!("{k}/3");
        let (code, out, err) = ppl64(
            &fx,
            &t,
            &[
                "-q",
                "--shard",
                &sh,
                "--parts",
                s(&parts),
                "--save-logits",
                "ignored.kld",
                "--scratch",
                s(&scratch),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("shard {k}/3")), "{out}");
    }
    let merged = d.path().join("merged.kld");
    let (code, out, err) = ppl64(
        &fx,
        &t,
        &[
            "--json",
            "--finish",
            "--parts",
            s(&parts),
            "--save-logits",
            s(&merged),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let fin = json(&out);
    assert_eq!(
        serde_json::to_string(&fin["result"]).unwrap(),
        serde_json::to_string(&one["result"]).unwrap()
    );
    assert_eq!(std::fs::read(&merged).unwrap(), kld);
    // The text rendering of --finish is the single run's.
    let (_, single_txt, _) = ppl64(
        &fx,
        &t,
        &[
            "-q",
            "--scratch",
            s(&scratch),
            "--save-logits",
            s(&d.path().join("two.kld")),
        ],
    );
    let (_, fin_txt, _) = ppl64(
        &fx,
        &t,
        &[
            "--finish",
            "--parts",
            s(&parts),
            "--save-logits",
            s(&d.path().join("merged2.kld")),
        ],
    );
    let pick = |x: &str| -> String {
        x.lines()
            .filter(|l| l.starts_with('[') || l.starts_with("Final"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        pick(&single_txt).contains("Final estimate: PPL = "),
        "{single_txt}"
    );
    assert_eq!(pick(&single_txt), pick(&fin_txt), "{single_txt}\n{fin_txt}");
    // Parts of another mode, a missing shard, parts of another run: refused.
    let finish = |ctx: &str, extra: &[&str]| {
        let mut a = vec![
            "perplexity",
            &fx,
            "-f",
            s(&t),
            "--ctx",
            ctx,
            "--finish",
            "--parts",
            s(&parts),
        ];
        a.extend_from_slice(extra);
        let (code, _, err) = run(&a);
        assert_eq!(code, 2, "{err}");
        err
    };
    let err = finish("64", &[]);
    assert!(err.contains("computed \"save\", this run \"ppl\""), "{err}");
    std::fs::remove_file(parts.join("part-0001-of-0003.json")).unwrap();
    let x = d.path().join("x.kld");
    let err = finish("64", &["--save-logits", s(&x)]);
    assert!(err.contains("shard 1 of 3 is missing"), "{err}");
    let err = finish("32", &["--save-logits", s(&x)]);
    assert!(err.contains("another run"), "{err}");
    assert!(!x.exists());
    // KL of the model against its own base file: zero divergence, same top everywhere.
    let (code, out, err) = run(&[
        "perplexity",
        &fx,
        "--kl-base",
        s(&d.path().join("one.kld")),
        "--json",
        "-q",
        "--scratch",
        s(&scratch),
    ]);
    assert_eq!(code, 0, "{err}");
    let kl = json(&out);
    let rep = &kl["result"]["kl"]["report"];
    assert!(rep["kld"][0].as_f64().unwrap().abs() < 1e-4, "{rep}");
    assert_eq!(rep["same_top"][0].as_f64(), Some(1.0), "{rep}");
}

/// A 20-layer synthetic model at the fixture's widths (slow enough to interrupt).
fn deep_model(dir: &Path) -> PathBuf {
    let p = dir.join("deep");
    let (code, _, err) = run(&["synth", s(&p), "--preset", "tiny", "--layers", "20", "-q"]);
    assert_eq!(code, 0, "{err}");
    std::fs::copy(
        repo().join("fixtures/tiny/tokenizer.model"),
        p.join("tokenizer.model"),
    )
    .unwrap();
    p
}

/// Layers completed by the most advanced group file in `dir`.
fn max_layer(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("hidden-"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter(|b| b.len() >= 20)
                .map(|b| u32::from_le_bytes([b[16], b[17], b[18], b[19]]))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn killed_run_resumes_byte_identically_and_foreign_state_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let m = deep_model(d.path());
    let t = text(d.path(), 6_000);
    let scratch = d.path().join("scratch");
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "perplexity",
            s(&m),
            "-f",
            s(&t),
            "--ctx",
            "128",
            "--json",
            "-q",
            "--mem-budget",
            "20M",
            "--scratch",
            s(&scratch),
            "--save-logits",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let reference = d.path().join("ref.kld");
    let o = grokit().args(args(&reference, &[])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = json(&String::from_utf8_lossy(&o.stdout));
    assert!(
        want["run"]["groups"].as_u64().unwrap() > 1,
        "the budget makes groups"
    );
    // Kill a run once some group has completed a few layers.
    let out = d.path().join("out.kld");
    let mut child = grokit().args(args(&out, &[])).spawn().unwrap();
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(120) {
        if max_layer(&scratch) >= 3 {
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
        eprintln!("SKIP kill test: the run finished before a layer was seen");
        return;
    }
    assert!(
        !out.exists(),
        "a killed run left its output under its final name"
    );
    // Without --resume the saved state is protected.
    let (code, _, err) = run(&args(&out, &[])
        .iter()
        .map(|x| x.as_str())
        .collect::<Vec<_>>());
    assert_eq!(code, 2);
    assert!(err.contains("--resume"), "{err}");
    // Another run's options against this state: refused, naming what differs.
    let mut other = args(&out, &["--resume"]);
    let i = other.iter().position(|a| a == "128").unwrap();
    other[i] = "64".into();
    let (code, _, err) = run(&other.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    assert_eq!(code, 2);
    assert!(err.contains("ctx: saved 128, now 64"), "{err}");
    let (code, _, err) = run(&args(&out, &["--resume", "--precision", "bf16"])
        .iter()
        .map(|x| x.as_str())
        .collect::<Vec<_>>());
    assert_eq!(code, 2);
    assert!(err.contains("precision: saved f32, now bf16"), "{err}");
    // A tampered copy of the state: refused.
    let copy = d.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&scratch).unwrap().flatten() {
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let victim = std::fs::read_dir(&copy)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("hidden-00000.bin"))
        .expect("group 0 saved");
    let mut b = std::fs::read(&victim).unwrap();
    b[200] ^= 0x40;
    std::fs::write(&victim, &b).unwrap();
    let mut tampered = args(&out, &["--resume"]);
    let i = tampered.iter().position(|a| a == s(&scratch)).unwrap();
    tampered[i] = s(&copy).to_string();
    let (code, _, err) = run(&tampered.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    assert_eq!(code, 2);
    assert!(
        err.contains("checksum") && err.contains("hidden-00000.bin"),
        "{err}"
    );
    // --resume continues and gives the uninterrupted run's bytes.
    let o = grokit().args(args(&out, &["--resume"])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = json(&String::from_utf8_lossy(&o.stdout));
    assert!(
        got["run"]["resumed_from_layer"].as_u64().is_some(),
        "{}",
        got["run"]
    );
    assert_eq!(got["result"], want["result"]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    assert!(!scratch.exists());
    assert!(temporaries(d.path()).is_empty());
}

#[test]
fn bad_input_is_exit_2_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let fx = fixture();
    let t = text(dir, 12_000);
    let scratch = dir.join("scratch");
    // `grokit perplexity FIXTURE ARGS... --scratch DIR` must fail with exit 2 saying `needle`.
    let expect = |args: &[&str], needle: &str| {
        let mut a = vec!["perplexity", fx.as_str()];
        a.extend_from_slice(args);
        a.extend(["--scratch", s(&scratch)]);
        let (code, _, err) = run(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    // The same with the test text and --ctx 64 first.
    let expect_t = |args: &[&str], needle: &str| {
        let mut a = vec!["-f", s(&t), "--ctx", "64"];
        a.extend_from_slice(args);
        expect(&a, needle);
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    expect(&["-f", s(&write("empty.txt", b""))], "no text");
    let short = write(
        "short.txt",
        b"The answer to life the universe and everything.",
    );
    expect(&["-f", s(&short), "--ctx", "64"], "needs at least 128");
    expect(
        &["-f", s(&t), "--ctx", "100000"],
        "beyond the model's context",
    );
    expect(&["-f", s(&t), "--ctx", "2"], "--ctx 2");
    expect_t(&["--chunks", "0"], "--chunks 0");
    expect(&["-f", s(dir)], "not a regular file");
    expect(&["-f", s(&write("bin.txt", b"abc\xff\xfedef"))], "offset 3");
    expect(&[], "-f FILE");
    expect_t(&["--mem-budget", "lots"], "--mem-budget");
    expect_t(&["--shard", "3/3", "--parts", s(dir)], "K must be in");
    let fifo = dir.join("fifo");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        expect(&["-f", s(&fifo)], "not a regular file");
    }
    // Outputs: never an input, never a non-regular file, never an existing file without --force.
    expect_t(&["--save-logits", s(&t), "--force"], "input");
    expect_t(
        &["--save-logits", s(dir)],
        "refused as an output: it is a directory",
    );
    // io::output's policy: nothing inside the model's directory (a release directory here).
    let inside = Path::new(&fx).join("x.kld");
    expect_t(&["--save-logits", s(&inside)], "inside the input directory");
    assert!(!inside.exists());
    let mut a = vec![
        "perplexity",
        fx.as_str(),
        "-f",
        s(&t),
        "--ctx",
        "64",
        "--scratch",
    ];
    let in_model = Path::new(&fx).join("scratch");
    a.push(s(&in_model));
    let (code, _, err) = run(&a);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the input directory"), "{err}");
    assert!(!in_model.exists());
    let existing = write("existing.kld", b"mine");
    expect_t(&["--save-logits", s(&existing)], "--force");
    assert_eq!(std::fs::read(&existing).unwrap(), b"mine");
    // KL base files: another vocabulary, other tokens, truncation, garbage, a damaged row.
    let good = dir.join("good.kld");
    let (code, _, err) = ppl64(
        &fx,
        &t,
        &["-q", "--save-logits", s(&good), "--scratch", s(&scratch)],
    );
    assert_eq!(code, 0, "{err}");
    let g = std::fs::read(&good).unwrap();
    // A well-formed file for a vocabulary of 1000: this model's tokens, all-zero rows.
    let n_chunk = u32::from_le_bytes([g[16], g[17], g[18], g[19]]) as usize;
    let rows_start = 20 + 4 * n_chunk * 64;
    let mut b = g[..rows_start].to_vec();
    b[12..16].copy_from_slice(&1000i32.to_le_bytes());
    b.resize(rows_start + n_chunk * (64 - 1 - 32) * (1000 + 4) * 2, 0);
    expect(
        &["--kl-base", s(&write("vocab.kld", &b))],
        "vocab.kld: computed for a vocabulary of 1000 tokens, but the model's is 512",
    );
    let other = std::fs::read_to_string(&t)
        .unwrap()
        .replace("grokit", "kitgro");
    let other = write("other.txt", other.as_bytes());
    expect(&["-f", s(&other), "--kl-base", s(&good)], "other tokens");
    expect(&["--kl-base", s(&good), "--ctx", "32"], "context of 64");
    let cut = g.len() - 5;
    expect(
        &["--kl-base", s(&write("trunc.kld", &g[..cut]))],
        &format!("trunc.kld at byte offset {cut}"),
    );
    expect(
        &[
            "--kl-base",
            s(&write("junk.kld", b"this is not a logits file at all")),
        ],
        "_logits_",
    );
    let mut b = g.clone();
    b[rows_start..rows_start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    expect(
        &["--kl-base", s(&write("badrow.kld", &b))],
        &format!("offset {rows_start}"),
    );
    assert!(temporaries(dir).is_empty(), "{:?}", temporaries(dir));
    assert!(!scratch.exists(), "no state is left by a refused run");
}

#[test]
fn every_source_gives_the_release_numbers() {
    // The fixture as the release, a GGUF split set and safetensors in both layouts, all F32
    // (exact): the same weights, so the same perplexity.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let t = text(dir, 8_000);
    let fx = fixture();
    let tok = repo().join("fixtures/tiny/tokenizer.model");
    let conv = |extra: &[&str]| {
        let mut a = vec!["convert", fx.as_str(), "-q"];
        a.extend_from_slice(extra);
        let (code, _, err) = run(&a);
        assert_eq!(code, 0, "{err}");
    };
    let gguf = dir.join("fx.gguf");
    conv(&[
        "--to",
        "gguf",
        "--type",
        "f32",
        "--split-max-size",
        "400K",
        "-o",
        s(&gguf),
    ]);
    let first = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-00001-of-"))
        .expect("a split set");
    let st = |layout: &str| {
        let out = dir.join(layout);
        conv(&[
            "--to",
            "safetensors",
            "--dtype",
            "f32",
            "--layout",
            layout,
            "-o",
            s(&out),
        ]);
        out
    };
    let (hf, jax) = (st("hf"), st("jax"));
    let ppl = |model: &str| {
        let (code, out, err) = run(&[
            "perplexity",
            model,
            "-f",
            s(&t),
            "--ctx",
            "64",
            "--tokenizer",
            s(&tok),
            "--json",
            "-q",
            "--scratch",
            s(&dir.join("scratch")),
        ]);
        assert_eq!(code, 0, "{model}: {err}");
        let j = json(&out);
        (
            j["format"].as_str().unwrap().to_string(),
            j["result"]["perplexity"]["ppl"].as_f64().unwrap(),
        )
    };
    let (_, want) = ppl(&fx);
    // Same weights, but each format's products run its own kernel path (int8 `[k, n]`, f32
    // `[n, k]`, ...), whose summation orders differ: equal to f32 rounding, not bit for bit (the
    // fixture's near one-hot distributions amplify that into ~1e-8 of PPL).
    const REL: f64 = 1e-6;
    for m in [s(&first), s(&hf), s(&jax)] {
        let (format, got) = ppl(m);
        assert!(
            (got - want).abs() <= REL * want,
            "{format} {m}: {got} vs the release's {want}"
        );
    }
    // A GGUF with no tokenizer.model beside it: its own vocabulary, the same tokens.
    assert!(!dir.join("tokenizer.model").exists());
    let (code, out, err) = ppl64(
        s(&first),
        &t,
        &["--json", "-q", "--scratch", s(&dir.join("scratch"))],
    );
    assert_eq!(code, 0, "{err}");
    let got = json(&out)["result"]["perplexity"]["ppl"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= REL * want,
        "GGUF vocabulary: {got} vs {want}"
    );
}
