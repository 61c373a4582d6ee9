//! Issue #18 (part 1), through the real binary: special files as inputs, outputs over inputs
//! and devices, checks that check nothing, side files read without a bound, and file-derived
//! text on the terminal. Every hostile input is built here byte by byte; every case asserts the
//! exit code, the message (naming the file and what is wrong), that it finished within seconds
//! (a hang is killed and fails the test) and that every input is unchanged.
//! Cases that need root (device nodes) print SKIP with the reason otherwise.

use crate::util::{copy_fixture, fixture, grokit, skip, skip_part};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any hostile case may run: a hang is the defect, so it fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

/// `grokit ARGS` with a deadline: (exit code, stdout, stderr, seconds).
fn run_timed(args: &[&str]) -> (i32, String, String, f64) {
    run_cmd(grokit().args(args))
}

fn run_cmd(cmd: &mut Command) -> (i32, String, String, f64) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {DEADLINE:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = String::from_utf8_lossy(&to.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&te.join().unwrap()).into_owned();
    (
        status.code().unwrap_or(-1),
        out,
        err,
        t0.elapsed().as_secs_f64(),
    )
}

/// Every entry under `dir`: its kind and, for regular files, a hash of its bytes (special
/// files are never opened: reading a FIFO would block).
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_file() {
                grokit::base::hex::encode(&Sha256::digest(std::fs::read(&p).unwrap()))
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else {
                format!("special {:?} rdev {}", ft, m.rdev())
            };
            out.push((p, what));
        }
    }
    out.sort();
    out
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A character device node `major:minor` at `p` (root only).
fn mknod(p: &Path, major: u32, minor: u32) -> bool {
    let _ = std::fs::remove_file(p);
    Command::new("mknod")
        .arg(p)
        .args(["c", &major.to_string(), &minor.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_char_device(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

fn is_fifo(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A command's arguments, and whether its message must name the special file yet.
type CaseRun<'a> = (Vec<&'a str>, bool);

// ---- class 1: special files as inputs --------------------------------------------------------

/// A FIFO (and a symlink to a character device) in place of each kind of input: every command
/// that reads it exits 2 at once, naming the file and what it is; nothing changes.
#[test]
fn special_files_as_inputs_are_refused_without_hanging() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    copy_fixture(&ck);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // A GGUF, a split GGUF set and a safetensors directory of the fixture, to spoil in turn.
    let gguf = out.join("m.gguf");
    let (code, _, err, _) = run_timed(&["convert", s(&ck), "--to", "gguf", "-o", s(&gguf), "-q"]);
    assert_eq!(code, 0, "{err}");
    let split = out.join("split.gguf");
    let (code, _, err, _) = run_timed(&[
        "convert",
        s(&ck),
        "--to",
        "gguf",
        "-o",
        s(&split),
        "--split-max-size",
        "100K",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let parts: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("split-0"))
            .collect();
        v.sort();
        v
    };
    assert!(parts.len() >= 2, "{parts:?}");
    let st = out.join("st");
    let (code, _, err, _) = run_timed(&[
        "convert",
        s(&ck),
        "--to",
        "safetensors",
        "-o",
        s(&st),
        "--shard-size",
        "100K",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let st_shard = std::fs::read_dir(&st)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();

    let shard = ck.join("ckpt-0/tensor00003_000");
    let config = ck.join("config.json");
    let tok = ck.join("tokenizer.model");
    let manifest = d.path().join("m.sha256");
    let torrent = d.path().join("t.torrent");
    let o = d.path().join("o.gguf");
    // (the file replaced by a FIFO, the commands that read it, whether the message names the
    // FIFO). Every reader looks for optional inputs with `io::input::present` (not
    // `is_file()`, which took a FIFO for an absent file) and opens them with `open_regular`.
    let cases: Vec<(&Path, Vec<CaseRun>)> = vec![
        (
            &shard,
            vec![
                (vec!["inspect", s(&ck)], true),
                (vec!["verify", s(&ck)], true),
                (
                    vec!["convert", s(&ck), "--to", "gguf", "-o", s(&o), "-q"],
                    true,
                ),
                (vec!["forward", s(&ck), "--tokens", "1,2"], true),
            ],
        ),
        (
            &config,
            vec![
                (vec!["inspect", s(&ck)], true),
                (
                    vec!["convert", s(&ck), "--to", "gguf", "-o", s(&o), "-q"],
                    true,
                ),
                (vec!["forward", s(&ck), "--tokens", "1,2"], true),
            ],
        ),
        (
            &tok,
            vec![
                (
                    vec!["convert", s(&ck), "--to", "gguf", "-o", s(&o), "-q"],
                    true,
                ),
                (vec!["forward", s(&ck), "--prompt", "hello"], true),
            ],
        ),
        (
            &gguf,
            vec![
                (vec!["inspect", s(&gguf)], true),
                (vec!["forward", s(&gguf), "--tokens", "1,2"], true),
                (
                    vec!["quantize", s(&gguf), "-o", s(&o), "--quant", "q8_0", "-q"],
                    true,
                ),
            ],
        ),
        (
            &parts[1],
            vec![
                (vec!["inspect", s(&parts[0])], true),
                (
                    vec![
                        "quantize",
                        s(&parts[0]),
                        "-o",
                        s(&o),
                        "--quant",
                        "q8_0",
                        "-q",
                    ],
                    true,
                ),
            ],
        ),
        (
            &st_shard,
            vec![
                (vec!["inspect", s(&st)], true),
                (vec!["forward", s(&st), "--tokens", "1,2"], true),
            ],
        ),
        (
            &manifest,
            vec![(vec!["verify", s(&ck), "--manifest", s(&manifest)], true)],
        ),
        (
            &torrent,
            vec![(vec!["verify", s(&ck), "--torrent", s(&torrent)], true)],
        ),
    ];
    for (victim, commands) in cases {
        let saved = d.path().join("saved");
        if victim.exists() {
            std::fs::rename(victim, &saved).unwrap();
        }
        mkfifo(victim);
        let before = snapshot(d.path());
        for (args, names_it) in commands {
            let (code, sout, err, secs) = run_timed(&args);
            let name = victim.file_name().unwrap().to_string_lossy();
            assert_eq!(code, 2, "{args:?} with a FIFO at {name}: {sout}{err}");
            assert!(
                !names_it || err.contains(&*name) && err.contains("FIFO"),
                "{args:?}: the message must name {name} and say what it is: {err}"
            );
            assert!(secs < 20.0, "{args:?} took {secs:.1} s");
            assert!(snapshot(d.path()) == before, "{args:?} changed an input");
            assert!(!o.exists());
        }
        assert!(is_fifo(victim));
        std::fs::remove_file(victim).unwrap();
        if saved.exists() {
            std::fs::rename(&saved, victim).unwrap();
        }
    }
    // A symlink to a character device (which reads without end) in place of a shard and of
    // a manifest.
    std::fs::write(&manifest, b"").unwrap();
    for (victim, args) in [
        (&shard, vec!["inspect", s(&ck)]),
        (
            &manifest,
            vec!["verify", s(&ck), "--manifest", s(&manifest)],
        ),
    ] {
        let saved = d.path().join("saved");
        std::fs::rename(victim, &saved).unwrap();
        std::os::unix::fs::symlink("/dev/zero", victim).unwrap();
        let (code, _, err, secs) = run_timed(&args);
        let name = victim.file_name().unwrap().to_string_lossy();
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&*name) && err.contains("character device"),
            "{err}"
        );
        assert!(secs < 20.0);
        std::fs::remove_file(victim).unwrap();
        std::fs::rename(&saved, victim).unwrap();
    }
}

// ---- classes 5 and 6: outputs --------------------------------------------------------------

/// `verify --write-manifest` and `forward --logits-out` never replace an input (also through a
/// symlink or a hard link), never replace a file of another kind, and stream into a FIFO or a
/// character device instead of renaming over it.
#[test]
fn outputs_never_replace_inputs_or_special_files() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    copy_fixture(&ck);
    let shard = ck.join("ckpt-0/tensor00001_000");
    let soft = d.path().join("soft");
    std::os::unix::fs::symlink(&shard, &soft).unwrap();
    let hard = d.path().join("hard");
    std::fs::hard_link(&shard, &hard).unwrap();
    let before = snapshot(&ck);
    for (out, want) in [
        (shard.clone(), "is the input"),
        (soft.clone(), "is the input"),
        (hard.clone(), "is the input"),
        (ck.join("config.json"), "is the input"),
        (ck.join("tokenizer.model"), "is the input"),
    ] {
        // inputs are refused with --force too
        for force in [false, true] {
            let mut args = vec!["verify", s(&ck), "--write-manifest", s(&out), "-q"];
            if force {
                args.push("--force");
            }
            let (code, _, err, _) = run_timed(&args);
            assert_eq!(code, 2, "--write-manifest {}: {err}", out.display());
            assert!(err.contains(want), "{err}");
            assert!(snapshot(&ck) == before, "{} replaced", out.display());
        }
    }
    // A file that is not a manifest (and not an input) needs --force.
    let notes = d.path().join("notes.txt");
    std::fs::write(&notes, b"my notes\n").unwrap();
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&notes), "-q"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a sha256sum manifest"), "{err}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes\n");
    let (code, _, err, _) = run_timed(&[
        "verify",
        s(&ck),
        "--write-manifest",
        s(&notes),
        "--force",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&notes)
        .unwrap()
        .contains("tensor00000_000"));
    for (out, want) in [
        (shard.clone(), "inside the input directory"),
        (ck.join("config.json"), "is the input"),
        (ck.join("tokenizer.model"), "is the input"),
    ] {
        let (code, _, err, _) = run_timed(&[
            "forward",
            s(&ck),
            "--tokens",
            "1,2",
            "--logits-out",
            s(&out),
        ]);
        assert_eq!(code, 2, "--logits-out {}: {err}", out.display());
        assert!(err.contains(want), "{err}");
        assert!(snapshot(&ck) == before, "{} replaced", out.display());
    }
    // An existing manifest is replaced (a manifest is derived data); a directory never.
    let m = d.path().join("m.sha256");
    for _ in 0..2 {
        let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&m), "-q"]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(d.path()), "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("directory"), "{err}");
    // A FIFO is streamed into (read by a thread here) and stays a FIFO.
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&fifo), "-q"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(reader.join().unwrap(), std::fs::read(&m).unwrap());
    assert!(is_fifo(&fifo));
    assert!(snapshot(&ck) == before);
}

/// A copy of the fixture in `dir/ck` and its GGUF `dir/m.gguf`.
fn checkpoint_and_gguf(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = dir.join("ck");
    copy_fixture(&ck);
    let gguf = dir.join("m.gguf");
    let (code, _, err, _) = run_timed(&["convert", s(&ck), "--to", "gguf", "-o", s(&gguf), "-q"]);
    assert_eq!(code, 0, "{err}");
    (ck, gguf)
}

/// `convert` and `quantize` follow the same policy (`io::output::resolve_output`): a FIFO, a
/// directory or an input is refused before anything is written, `--force` or not; `forward
/// --logits-out` refuses every file of a GGUF or safetensors model, before the forward pass.
#[test]
fn convert_quantize_and_forward_outputs_follow_the_one_policy() {
    let d = tempfile::tempdir().unwrap();
    let (ck, gguf) = checkpoint_and_gguf(d.path());
    let fifo = d.path().join("fifo.gguf");
    mkfifo(&fifo);
    let hard = d.path().join("hard.gguf");
    std::fs::hard_link(&gguf, &hard).unwrap();
    let before = snapshot(d.path());
    let quantize_to = |o| {
        let q = [
            "quantize",
            s(&gguf),
            "-o",
            s(o),
            "--quant",
            "q8_0",
            "--force",
            "-q",
        ];
        q.to_vec()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "convert",
                s(&ck),
                "--to",
                "gguf",
                "-o",
                s(&fifo),
                "--force",
                "-q",
            ],
            "FIFO",
        ),
        (quantize_to(&fifo), "FIFO"),
        (quantize_to(&hard), "input"),
        (
            vec![
                "forward",
                s(&gguf),
                "--tokens",
                "1,2",
                "--logits-out",
                s(&hard),
            ],
            "is the input",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err, secs) = run_timed(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(secs < 20.0, "{args:?} took {secs:.1} s");
        assert!(is_fifo(&fifo));
        assert!(snapshot(d.path()) == before, "{args:?} changed a file");
    }
}

/// As root, a rename over a device node would replace it with a regular file (for the real
/// `/dev/null`, breaking it for the whole machine). Device nodes made here, never the real ones.
#[test]
fn outputs_never_rename_over_a_device_node() {
    if !is_root() {
        skip("needs root to create device nodes");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    copy_fixture(&ck);
    let null = d.path().join("null");
    let full = d.path().join("full");
    if !mknod(&null, 1, 3) || !mknod(&full, 1, 7) {
        skip("mknod failed");
        return;
    }
    // Usable nodes? (a nodev mount refuses to open them)
    if std::fs::OpenOptions::new().write(true).open(&null).is_err() {
        skip("device nodes cannot be opened here (nodev mount)");
        return;
    }
    let gguf = d.path().join("m.gguf");
    let (code, _, err, _) = run_timed(&["convert", s(&ck), "--to", "gguf", "-o", s(&gguf), "-q"]);
    assert_eq!(code, 0, "{err}");
    let before = snapshot(&ck);
    // Streamed into: the logits go into the device; it stays a device.
    let (code, _, err, _) = run_timed(&[
        "forward",
        s(&ck),
        "--tokens",
        "1,2",
        "--logits-out",
        s(&null),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&null), "-q"]);
    assert_eq!(code, 0, "{err}");
    // Writers that rename: refused at commit, the device left as it was, no temporary left.
    for args in [
        vec![
            "quantize",
            s(&gguf),
            "-o",
            s(&full),
            "--quant",
            "q8_0",
            "--force",
            "-q",
        ],
        vec![
            "convert",
            s(&ck),
            "--to",
            "gguf",
            "-o",
            s(&full),
            "--force",
            "-q",
        ],
    ] {
        let (code, _, err, _) = run_timed(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("character device"), "{args:?}: {err}");
    }
    // /dev/full as a stream: the write fails (ENOSPC) with exit 2, nothing replaced.
    let (code, _, err, _) = run_timed(&[
        "forward",
        s(&ck),
        "--tokens",
        "1,2",
        "--logits-out",
        s(&full),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("full"), "{err}");
    for p in [&null, &full] {
        assert!(is_char_device(p), "{} is no longer a device", p.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".grokit-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(snapshot(&ck) == before);
}

// ---- class 9: checks that check nothing ----------------------------------------------------

#[test]
fn manifests_that_check_nothing_fail() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    copy_fixture(&ck);
    let before = snapshot(&ck);
    let sha256sum = Command::new("sha256sum").arg("--version").output().is_ok();
    if !sha256sum {
        skip_part(
            "the same manifests through sha256sum -c",
            "sha256sum not installed",
        );
    }
    for (name, text) in [
        ("empty", &b""[..]),
        ("blank", b"\n\n  \n"),
        ("comments", b"# SHA-256 of the release\n# (none)\n"),
        ("crlf-comment", b"# x\r\n\r\n"),
    ] {
        let m = d.path().join(format!("{name}.sha256"));
        std::fs::write(&m, text).unwrap();
        let (code, out, err, _) = run_timed(&["verify", s(&ck), "--manifest", s(&m), "-q"]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.contains("FAILED"), "{out}");
        let (code, out, _, _) = run_timed(&["verify", s(&ck), "--manifest", s(&m), "--json"]);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["manifest"]["ok"], false, "{out}");
        if sha256sum {
            let st = Command::new("sha256sum")
                .arg("-c")
                .arg(&m)
                .current_dir(&ck)
                .output()
                .unwrap();
            assert_eq!(st.status.code(), Some(1), "sha256sum -c {name}");
        }
    }
    // A --root that every shard path lies outside: nothing to list is an error, no file.
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let m = d.path().join("zero.sha256");
    let (code, _, err, _) = run_timed(&[
        "verify",
        s(&ck),
        "--root",
        s(&other),
        "--write-manifest",
        s(&m),
        "-q",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty manifest"), "{err}");
    assert!(!m.exists());
    assert!(snapshot(&ck) == before);
}

/// A manifest entry that resolves through a symlink to a file outside the root is refused
/// (reported, exit 1), not followed and hashed; writing a manifest of it is an error.
#[test]
fn manifest_entries_through_symlinks_out_of_the_root_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    copy_fixture(&ck);
    let m = d.path().join("m.sha256");
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&m), "-q"]);
    assert_eq!(code, 0, "{err}");
    // The shard moves out of the root; a symlink to it takes its place (same bytes, same hash).
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let shard = ck.join("ckpt-0/tensor00002_000");
    std::fs::rename(&shard, outside.join("x")).unwrap();
    std::os::unix::fs::symlink(outside.join("x"), &shard).unwrap();
    let (code, out, err, _) = run_timed(&["verify", s(&ck), "--manifest", s(&m), "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unreadable = v["manifest"]["unreadable"].to_string();
    assert!(
        unreadable.contains("tensor00002_000") && unreadable.contains("outside the root"),
        "{unreadable}"
    );
    assert_eq!(v["manifest"]["matched"], 25);
    let m2 = d.path().join("m2.sha256");
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--write-manifest", s(&m2), "-q"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("outside the root"), "{err}");
    assert!(!m2.exists());
    // A symlink that stays inside the root is fine.
    std::fs::remove_file(&shard).unwrap();
    std::fs::rename(outside.join("x"), ck.join("x")).unwrap();
    std::os::unix::fs::symlink("../x", &shard).unwrap();
    let (code, out, err, _) = run_timed(&["verify", s(&ck), "--manifest", s(&m), "-q"]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---- class 10: side files read without a bound ---------------------------------------------

/// zstd's frame format, written by hand (RFC 8878): a frame header without a content size (or
/// with `content_size`), one raw block holding `head`, then `rle_blocks` RLE blocks of 128 KiB
/// of zeros each. Every RLE block is 4 bytes: 4 GiB of zeros in 128 KiB.
fn zst_bomb(head: &[u8], rle_blocks: usize, content_size: Option<u64>) -> Vec<u8> {
    let mut z = vec![0x28, 0xb5, 0x2f, 0xfd];
    match content_size {
        None => {
            z.push(0x00); // descriptor: no content size, no checksum, a window descriptor
            z.push((17 - 10) << 3); // window 128 KiB
        }
        Some(n) => {
            z.push(0xc0); // content size in 8 bytes, window descriptor present
            z.push((17 - 10) << 3);
            z.extend_from_slice(&n.to_le_bytes());
        }
    }
    let block = |z: &mut Vec<u8>, last: bool, kind: u32, size: u32| {
        let h = u32::from(last) | (kind << 1) | (size << 3);
        z.extend_from_slice(&h.to_le_bytes()[..3]);
    };
    block(&mut z, rle_blocks == 0, 0, head.len() as u32);
    z.extend_from_slice(head);
    for i in 0..rle_blocks {
        block(&mut z, i + 1 == rle_blocks, 1, 128 << 10);
        z.push(0);
    }
    z
}

fn npy_head(shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let body = format!("{dict}{}\n", " ".repeat(pad));
    h.extend_from_slice(&(body.len() as u16).to_le_bytes());
    h.extend_from_slice(body.as_bytes());
    h
}

#[test]
fn npy_zst_bombs_are_refused_before_inflating() {
    let d = tempfile::tempdir().unwrap();
    // The real zstd decoder agrees with the hand-made frames: a small one inflates exactly.
    let small = zst_bomb(b"abc", 2, None);
    let plain = zstd::stream::decode_all(small.as_slice()).unwrap();
    assert_eq!(plain.len(), 3 + 2 * (128 << 10));
    // (1) a header declaring 4 floats, then 4 GiB of zeros: 128 KiB on disk.
    let mut head = npy_head("(4,)");
    head.extend_from_slice(&[0; 16]);
    let b1 = d.path().join("tail.npy.zst");
    std::fs::write(&b1, zst_bomb(&head, 32 * 1024, None)).unwrap();
    // (2) a header honestly declaring 1 Gi floats (4 GiB) of RLE zeros: over the ratio cap.
    let b2 = d.path().join("ratio.npy.zst");
    std::fs::write(&b2, zst_bomb(&npy_head("(1073741824,)"), 32 * 1024, None)).unwrap();
    // (3) a frame header that declares far more content than the npy header needs.
    let b3 = d.path().join("frame.npy.zst");
    std::fs::write(&b3, zst_bomb(&head, 8, Some(1 << 40))).unwrap();
    // (4) a plain .npy declaring 16 GiB with 16 bytes present.
    let b4 = d.path().join("short.npy");
    let mut h4 = npy_head("(4294967296,)");
    h4.extend_from_slice(&[0; 16]);
    std::fs::write(&b4, &h4).unwrap();
    let before = snapshot(d.path());
    for (p, want) in [
        (&b1, "data continues past the 16 bytes"),
        (&b2, "decompression bomb"),
        (&b3, "the zstd frame declares 1099511627776 bytes"),
        (&b4, "needs 17179869184 data bytes, file has 16"),
    ] {
        let t0 = Instant::now();
        let e = grokit::npy::read(p).unwrap_err().to_string();
        assert!(e.contains(want), "{}: {e}", p.display());
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", p.display());
        // Through the binary, under a 1 GiB address-space cap: exit 2 quickly, never an abort.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -v 1048576; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_grokit"))
            // (a budget large enough that npy's own caps, not compare's share of the budget,
            // are what refuses; the default budget refuses (2) even earlier)
            .args([
                "compare",
                s(p),
                s(&fixture()),
                "--tokens",
                "1,2",
                "--mem-budget",
                "64G",
            ]);
        let (code, _, err, secs) = run_cmd(&mut cmd);
        assert_eq!(code, 2, "{}: {err}", p.display());
        assert!(err.contains(want), "{err}");
        assert!(secs < 20.0);
    }
    // With the default 8 GB budget, compare reads each side within half of it: a header
    // declaring 4 GiB is refused before any data is read.
    let (code, _, err) = crate::util::run(&["compare", s(&b2), s(&fixture()), "--tokens", "1,2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("over the cap of 4000000000"), "{err}");
    assert!(snapshot(d.path()) == before);
    // An honest file of the same shape still reads.
    let ok = d.path().join("ok.npy.zst");
    let a = grokit::npy::NpyF32 {
        shape: vec![4],
        data: vec![1.0, 2.0, 3.0, 4.0],
    };
    grokit::npy::write(&ok, &a).unwrap();
    assert_eq!(grokit::npy::read(&ok).unwrap(), a);
    // And the same logits streamed raw by hand (one raw block) read too.
    let raw = d.path().join("raw.npy.zst");
    std::fs::write(&raw, zst_bomb(&grokit::npy::to_bytes(&a), 0, None)).unwrap();
    assert_eq!(grokit::npy::read(&raw).unwrap(), a);
}

// ---- class 11: file-derived text on the terminal -------------------------------------------

#[test]
fn escape_sequences_from_files_never_reach_the_terminal_raw() {
    let d = tempfile::tempdir().unwrap();
    let (ck, gguf) = checkpoint_and_gguf(d.path());
    // A manifest naming the same path twice, the path holding OSC and CSI sequences.
    let evil = "ckpt-0/\x1b]0;pwned\x07\x1b[2J";
    let h = "0".repeat(64);
    let m = d.path().join("m.sha256");
    std::fs::write(&m, format!("{h}  {evil}\n{h}  {evil}\n")).unwrap();
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--manifest", s(&m)]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("\\x1b]0;pwned\\x07"), "{err}");
    // A torrent whose file name holds an escape sequence is refused, the name escaped.
    let t = d.path().join("t.torrent");
    let name = "a\x1b[31mb";
    let info = format!(
        "d5:filesld6:lengthi1e4:pathl{}:{name}eee4:name1:x12:piece lengthi16384e6:pieces20:{}e",
        name.len(),
        "\0".repeat(20)
    );
    std::fs::write(&t, format!("d4:info{info}e")).unwrap();
    let (code, _, err, _) = run_timed(&["verify", s(&ck), "--torrent", s(&t)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("control character"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    // A GGUF tensor name holding CSI (same length as the name it replaces): inspect lists it
    // escaped.
    let mut g = std::fs::read(&gguf).unwrap();
    let at = g
        .windows(11)
        .position(|w| w == b"output_norm")
        .expect("output_norm in the header");
    g[at..at + 11].copy_from_slice(b"\x1b[31mt_norm");
    std::fs::write(&gguf, &g).unwrap();
    // Neither stream holds a raw control; one of them holds `want`.
    let clean_with = |args: &[&str], want: &str| {
        let (code, out, err, _) = run_timed(args);
        for c in ['\x1b', '\x07'] {
            assert!(
                !out.contains(c) && !err.contains(c),
                "{args:?}: {out:?}{err:?}"
            );
        }
        assert!(
            out.contains(want) || err.contains(want),
            "{args:?}: {out}{err}"
        );
        code
    };
    clean_with(&["inspect", s(&gguf)], "\\x1b[31mt_norm");
    // A release shard whose pickle names a forbidden global with escapes in it.
    let shard = ck.join("ckpt-0/tensor00000_000");
    std::fs::write(&shard, b"\x80\x02c\x1b]0;pwned\x07os\nsystem\n.").unwrap();
    for cmd in ["inspect", "verify"] {
        let code = clean_with(&[cmd, s(&ck)], "forbidden global");
        assert!(code == 1 || code == 2, "{cmd}: exit {code}");
    }
}

// ---- usability: the encoder of a GGUF's own tokenizer metadata --------------------------------

/// `forward --prompt` on a GGUF with no `tokenizer.model` anywhere near it encodes with the
/// GGUF's `tokenizer.ggml.*` metadata, to the same ids as `tokenizer.model`; so does `compare`.
#[test]
fn prompt_on_a_gguf_uses_its_own_vocabulary() {
    let d = tempfile::tempdir().unwrap();
    let gguf = d.path().join("m.gguf");
    let (code, _, err, _) = run_timed(&[
        "convert",
        s(&fixture()),
        "--to",
        "gguf",
        "-o",
        s(&gguf),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!d.path().join("tokenizer.model").exists());
    let prompt = "The quick brown fox jumps over 13 lazy dogs.";
    let ids = |extra: &[&str]| {
        let mut a = vec![
            "forward",
            s(&gguf),
            "--prompt",
            prompt,
            "--generate",
            "1",
            "--json",
        ];
        a.extend_from_slice(extra);
        let (code, out, err, _) = run_timed(&a);
        assert_eq!(code, 0, "{a:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["prompt"].clone(), v["generated"].clone())
    };
    let from_gguf = ids(&[]);
    let tm = fixture().join("tokenizer.model");
    let from_model = ids(&["--tokenizer", s(&tm)]);
    assert_eq!(from_gguf, from_model);
    assert!(
        from_gguf.0.as_array().is_some_and(|a| a.len() > 3),
        "{from_gguf:?}"
    );
    // compare --prompt between the GGUF and the release it came from
    let (code, _, err, _) = run_timed(&["compare", s(&gguf), s(&fixture()), "--prompt", prompt]);
    assert!(code == 0 || code == 1, "{err}");
}

/// `inspect --json` and `verify --json` of a checkpoint under a non-UTF-8 name report the name
/// (escaped) instead of panicking.
#[test]
fn json_reports_survive_non_utf8_paths() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let ck = d
        .path()
        .join(std::ffi::OsStr::from_bytes(b"ck-\xff\x1b[2J"));
    copy_fixture(&ck);
    for cmd in ["inspect", "verify"] {
        let out = Command::new(env!("CARGO_BIN_EXE_grokit"))
            .arg(cmd)
            .arg(&ck)
            .arg("--json")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{cmd}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let text = v.to_string();
        assert!(text.contains("ck-\\\\xff\\\\x1b[2J"), "{cmd}: {text}");
        assert!(!stdout.contains('\x1b'), "{cmd}: raw escape on stdout");
    }
    // convert and quantize --json name their non-UTF-8 outputs the same way.
    let g = d.path().join(std::ffi::OsStr::from_bytes(b"g\xff.gguf"));
    let q = d.path().join(std::ffi::OsStr::from_bytes(b"q\xff.gguf"));
    let mut convert = Command::new(env!("CARGO_BIN_EXE_grokit"));
    convert.args([
        "convert",
        s(&fixture()),
        "--to",
        "gguf",
        "-q",
        "--json",
        "-o",
    ]);
    let mut quantize = Command::new(env!("CARGO_BIN_EXE_grokit"));
    quantize.arg("quantize").arg(&g);
    quantize.args(["--quant", "q8_0", "-q", "--json", "-o"]);
    for (mut cmd, out, want) in [
        (convert, &g, "g\\\\xff.gguf"),
        (quantize, &q, "q\\\\xff.gguf"),
    ] {
        let o = cmd.arg(out).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v.to_string().contains(want), "{v}");
    }
}
