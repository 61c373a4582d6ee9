//! How `grokit convert` runs, whatever it writes: reruns are byte-identical, a split set holds
//! the same tensors as one file, workers (`--shard K/N`) write the same set, `--resume` rewrites
//! only what is missing or planned differently, a killed run leaves only complete files, and
//! bad requests are refused with exit 2 before anything is written.

use crate::convert::convert;
use crate::util::{assert_dirs_identical, copy_fixture, dir_bytes, fixture, grokit, run};
use grokit::gguf::{GgufFile, GgufSet, Value};
use std::path::Path;

/// `--to gguf --type TY [--split-max-size 300K] -o DIR/m.gguf EXTRA...`: the GGUF conversions
/// the determinism, split and resume tests repeat.
fn to_gguf(ty: &str, split: bool, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--to", "gguf", "--type", ty];
    if split {
        a.extend(["--split-max-size", "300K"]);
    }
    let out = dir.join("m.gguf");
    a.extend(["-o", out.to_str().unwrap()]);
    a.extend_from_slice(extra);
    a.into_iter().map(String::from).collect()
}

#[test]
fn gguf_deterministic_and_split_equals_single() {
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for dir in [&a, &b] {
        convert(&fx, &to_gguf("q8_0", false, dir, &["-q"]));
    }
    assert_dirs_identical(&a, &b);
    let s = d.path().join("split");
    std::fs::create_dir_all(&s).unwrap();
    convert(&fx, &to_gguf("q8_0", true, &s, &["-q"]));
    let files: Vec<String> = dir_bytes(&s).into_iter().map(|x| x.0).collect();
    let n = files.len();
    assert!(n >= 3, "{files:?}");
    for (i, name) in files.iter().enumerate() {
        assert_eq!(name, &format!("m-{:05}-of-{n:05}.gguf", i + 1));
        let f = GgufFile::open(&s.join(name)).unwrap();
        assert_eq!(f.get("split.no"), Some(&Value::U16(i as u16)));
        assert_eq!(f.get("split.count"), Some(&Value::U16(n as u16)));
        assert_eq!(f.get("split.tensors.count"), Some(&Value::I32(26)));
        assert!(
            f.data_start() + f.tensors().iter().map(|t| t.nbytes).sum::<u64>() <= 300_000
                || f.tensors().len() == 1,
            "{name} too big"
        );
        if i > 0 {
            assert!(
                f.get("general.architecture").is_none(),
                "metadata only in shard 1"
            );
        }
    }
    let set = GgufSet::open(&s.join(&files[0])).unwrap();
    let single = GgufFile::open(&a.join("m.gguf")).unwrap();
    assert_eq!(set.tensor_count(), 26);
    let names: Vec<&str> = set.tensors().map(|(_, t)| t.name.as_str()).collect();
    let want: Vec<&str> = single.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, want);
    for t in single.tensors() {
        let (_, st) = set.tensor(&t.name).unwrap();
        assert_eq!((&st.ne, st.ty), (&t.ne, t.ty));
        assert!(
            set.tensor_data(&t.name).unwrap() == single.tensor_data(t),
            "{}",
            t.name
        );
    }
    let kv_of = |kvs: &[(String, Value)]| {
        kvs.iter()
            .filter(|(k, _)| !k.starts_with("split."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(kv_of(set.kvs()), kv_of(single.kvs()));
    // Work split: three workers write the same set.
    let w = d.path().join("workers");
    std::fs::create_dir_all(&w).unwrap();
    for k in 0..3 {
        let sh = format!("{k}/3");
        convert(&fx, &to_gguf("q8_0", true, &w, &["--shard", &sh, "-q"]));
    }
    assert_dirs_identical(&s, &w);
}

/// A GGUF split set, one file deleted and a stale temp present: `--resume` rewrites only it.
#[test]
fn gguf_resume_rewrites_only_missing_files() {
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let (r, s) = (d.path().join("ref"), d.path().join("run"));
    for dir in [&r, &s] {
        std::fs::create_dir_all(dir).unwrap();
        convert(&fx, &to_gguf("bf16", true, dir, &["-q"]));
    }
    let files: Vec<String> = dir_bytes(&s).into_iter().map(|x| x.0).collect();
    let victim = files[1].clone();
    std::fs::remove_file(s.join(&victim)).unwrap();
    std::fs::write(
        s.join(format!(".{victim}.grokit-tmp")),
        b"half-written garbage",
    )
    .unwrap();
    let mtimes: Vec<_> = files
        .iter()
        .filter(|f| **f != victim)
        .map(|f| {
            (
                f.clone(),
                std::fs::metadata(s.join(f)).unwrap().modified().unwrap(),
            )
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Without --resume or --force the existing files are refused.
    let refused = [
        vec!["convert".into(), fx.to_str().unwrap().into()],
        to_gguf("bf16", true, &s, &[]),
    ];
    let (code, _, err) = run(&refused.concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let err = convert(&fx, &to_gguf("bf16", true, &s, &["--resume"]));
    assert_eq!(err.matches("kept ").count(), files.len() - 1, "{err}");
    assert_eq!(err.matches("wrote ").count(), 1, "{err}");
    assert!(err.contains(&victim), "{err}");
    for (f, m) in mtimes {
        assert_eq!(
            std::fs::metadata(s.join(&f)).unwrap().modified().unwrap(),
            m,
            "{f} was rewritten"
        );
    }
    assert_dirs_identical(&r, &s);
    // Same sizes, another plan (f16 instead of bf16): --resume must rewrite every file.
    let f16 = d.path().join("f16");
    std::fs::create_dir_all(&f16).unwrap();
    convert(&fx, &to_gguf("f16", true, &f16, &["-q"]));
    let err = convert(&fx, &to_gguf("f16", true, &s, &["--resume"]));
    // Only a split holding nothing but F32 tensors (norms) is the same under both plans.
    assert!(err.matches("wrote ").count() >= files.len() - 1, "{err}");
    assert_dirs_identical(&f16, &s);
}

/// SIGKILL the binary at increasing delays: a final-named file is always complete, and
/// `--resume` then finishes a set identical to an uninterrupted run.
#[cfg(unix)]
#[test]
fn gguf_killed_runs_leave_only_complete_files() {
    let src = fixture();
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("ref");
    std::fs::create_dir_all(&r).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "convert",
            src.to_str().unwrap(),
            "--to",
            "gguf",
            "--type",
            "f32",
            "--split-max-size",
            "150K",
            "--jobs",
            "1",
            "-q",
            "--no-error-stats",
            "-o",
            out.join("m.gguf").to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let st = grokit().args(args(&r)).status().unwrap();
    assert!(st.success());
    let n_ref = dir_bytes(&r).len();
    let mut partial_runs = 0;
    let mut finals_seen = Vec::new();
    for (i, delay_ms) in [1u64, 10, 25, 40, 60, 80, 110, 160].into_iter().enumerate() {
        let s = d.path().join(format!("k{i}"));
        std::fs::create_dir_all(&s).unwrap();
        let mut child = grokit().args(args(&s)).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL on unix
        let _ = child.wait();
        let present = dir_bytes(&s);
        let finals: Vec<_> = present
            .iter()
            .filter(|(n, _)| !n.ends_with(".grokit-tmp"))
            .collect();
        finals_seen.push(finals.len());
        if finals.len() < n_ref {
            partial_runs += 1;
        }
        for (n, bytes) in &finals {
            GgufFile::open(&s.join(n))
                .unwrap_or_else(|e| panic!("{n} after kill at {delay_ms} ms: {e}"));
            assert!(
                *bytes == std::fs::read(r.join(n)).unwrap(),
                "{n} differs after kill"
            );
        }
        let mut a = args(&s);
        a.push("--resume".into());
        assert!(grokit().args(&a).status().unwrap().success());
        assert_dirs_identical(&r, &s);
    }
    eprintln!("kill test: {partial_runs} of 8 runs interrupted; final files present after each kill: {finals_seen:?} of {n_ref}");
    assert!(
        partial_runs > 0,
        "no kill landed before the end: the test did not exercise an interruption"
    );
}

/// Drop the last `pieces` record (field 1) of a SentencePiece ModelProto.
fn drop_last_piece(model: &[u8]) -> Vec<u8> {
    let varint = |b: &[u8], mut i: usize| -> (u64, usize) {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let x = b[i];
            i += 1;
            v |= u64::from(x & 0x7f) << s;
            s += 7;
            if x < 0x80 {
                return (v, i);
            }
        }
    };
    let mut recs = Vec::new();
    let mut i = 0;
    while i < model.len() {
        let start = i;
        let (key, j) = varint(model, i);
        let end = match key & 7 {
            0 => varint(model, j).1,
            1 => j + 8,
            2 => {
                let (len, k) = varint(model, j);
                k + len as usize
            }
            5 => j + 4,
            w => panic!("wire type {w}"),
        };
        recs.push((key >> 3, start, end));
        i = end;
    }
    let last = recs.iter().rposition(|r| r.0 == 1).unwrap();
    let (_, s, e) = recs[last];
    [&model[..s], &model[e..]].concat()
}

#[test]
fn refusals_exit_2_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let cp = d.path().join("fixture_copy");
    copy_fixture(&cp);
    let c = cp.to_str().unwrap();
    let inside = cp.join("ckpt-0/x.gguf");
    let (code, _, err) = run(&["convert", c, "--to", "gguf", "-o", inside.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the input"), "{err}");
    assert!(!inside.exists());
    let (code, _, err) = run(&[
        "convert",
        c,
        "--to",
        "safetensors",
        "-o",
        cp.join("ckpt-0/st/deeper").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the input"), "{err}");
    assert!(
        !cp.join("ckpt-0/st").exists(),
        "a refused run created a directory inside the input"
    );
    // safetensors into the checkpoint's own directory would replace its config.json.
    let cfg_before = std::fs::read(cp.join("config.json")).unwrap();
    let (code, _, err) = run(&["convert", c, "--to", "safetensors", "-o", c, "-q"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("input checkpoint"), "{err}");
    assert_eq!(std::fs::read(cp.join("config.json")).unwrap(), cfg_before);
    assert!(!cp.join("model.safetensors").exists());
    // Existing output without --force.
    let out = d.path().join("exists.gguf");
    std::fs::write(&out, b"mine").unwrap();
    let (code, _, err) = run(&["convert", c, "--to", "gguf", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    let (code, _, err) = run(&[
        "convert",
        c,
        "--to",
        "gguf",
        "-o",
        out.to_str().unwrap(),
        "--force",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(GgufFile::open(&out).is_ok());
    // Tokenizer with the wrong vocabulary size.
    let bad = d.path().join("bad.model");
    std::fs::write(
        &bad,
        drop_last_piece(&std::fs::read(fixture().join("tokenizer.model")).unwrap()),
    )
    .unwrap();
    assert_eq!(
        grokit::tokenizer::Tokenizer::from_file(&bad)
            .unwrap()
            .pieces()
            .len(),
        511
    );
    // Nothing is written under its final name: the GGUF file, the safetensors shard.
    for (to, out, file) in [
        ("gguf", "v.gguf", None),
        ("safetensors", "v_st", Some("model.safetensors")),
    ] {
        let o = d.path().join(out);
        let (code, _, err) = run(&[
            "convert",
            c,
            "--to",
            to,
            "-o",
            o.to_str().unwrap(),
            "--tokenizer",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains("511") && err.contains("512"), "{to}: {err}");
        assert!(!file.map_or(o.clone(), |f| o.join(f)).exists(), "{to}");
    }
    // --dry-run writes nothing and prints the plan.
    for (to, o) in [
        ("gguf", d.path().join("dry.gguf")),
        ("safetensors", d.path().join("dry_st")),
    ] {
        let (code, stdout, err) = run(&[
            "convert",
            c,
            "--to",
            to,
            "-o",
            o.to_str().unwrap(),
            "--dry-run",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(!o.exists(), "dry run wrote {}", o.display());
        assert!(stdout.contains("total tensor bytes"), "{stdout}");
        let needle = if to == "gguf" {
            "blk.1.ffn_down_exps.weight"
        } else {
            "model.layers.1.moe_block.experts.7.linear_1.weight"
        };
        assert!(stdout.contains(needle), "{stdout}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("grokit-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
