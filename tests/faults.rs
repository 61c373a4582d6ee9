//! Faults around the real binary: kills, full disks, file-size limits, hostile paths, symlink
//! loops, non-UTF-8 names, files changing under grokit, read-only filesystems, exit codes.
//! Tests that need root (mounts) are reported as skipped, with the reason, when they cannot run
//! (see `tests/util.rs`).

use crate::util::{copy_fixture, grokit, repo, run, skip};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Every file under `dir` with its bytes, to prove inputs were left untouched.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".grokit-tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// A synthetic checkpoint big enough (about 20 MB, 40 layers) that converting it with one job
/// takes long enough to interrupt.
fn big_checkpoint(dir: &Path) -> PathBuf {
    let p = dir.join("big");
    let (code, _, err) = run(&[
        os("synth"),
        p.as_os_str(),
        os("--preset"),
        os("tiny"),
        os("--layers"),
        os("40"),
        os("-q"),
    ]);
    assert_eq!(code, 0, "{err}");
    p
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// A mount that is undone on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], at: &Path, why: &str) -> Option<Mount> {
        if !is_root() {
            skip(format!("{why}: not root, cannot mount"));
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount").args(args).arg(at).output();
        match o {
            Ok(o) if o.status.success() => Some(Mount(at.to_path_buf())),
            Ok(o) => {
                skip(format!(
                    "{why}: mount not permitted: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(format!("{why}: no mount command: {e}"));
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn killed_conversion_leaves_nothing_and_resume_completes_identically() {
    let d = tempfile::tempdir().unwrap();
    let ck = big_checkpoint(d.path());
    let reference = d.path().join("ref");
    let (code, _, err) = run(&[
        os("convert"),
        ck.as_os_str(),
        os("--to"),
        os("safetensors"),
        os("-o"),
        reference.as_os_str(),
        os("-q"),
    ]);
    assert_eq!(code, 0, "{err}");
    let out = d.path().join("out");
    let fin = out.join("model.safetensors");
    let tmp = out.join(".model.safetensors.grokit-tmp");
    let mut child = grokit()
        .args([
            os("convert"),
            ck.as_os_str(),
            os("--to"),
            os("safetensors"),
            os("-o"),
            out.as_os_str(),
            os("--jobs"),
            os("1"),
            os("-q"),
        ])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(60) {
        if std::fs::metadata(&tmp)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
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
        skip("the conversion finished before its temporary was seen");
        return;
    }
    assert!(
        !fin.exists(),
        "a killed run left a file under its final name"
    );
    assert!(!out.join("SHA256SUMS").exists());
    // --resume (a plain rerun works too: nothing finished exists) completes it byte for byte.
    let (code, _, err) = run(&[
        os("convert"),
        ck.as_os_str(),
        os("--to"),
        os("safetensors"),
        os("-o"),
        out.as_os_str(),
        os("--resume"),
        os("-q"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(temporaries(&out).is_empty());
    for f in ["model.safetensors", "config.json", "SHA256SUMS"] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(reference.join(f)).unwrap(),
            "{f} differs after resume"
        );
    }
}

#[test]
fn file_size_limit_is_an_error_not_a_signal() {
    // RLIMIT_FSIZE: the kernel would kill with SIGXFSZ; grokit ignores it and gets EFBIG.
    let d = tempfile::tempdir().unwrap();
    let ck = repo().join("fixtures/tiny");
    let out = d.path().join("o.gguf");
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_grokit"))
        .args([
            os("convert"),
            ck.as_os_str(),
            os("--to"),
            os("gguf"),
            os("--type"),
            os("f32"),
            os("-o"),
            out.as_os_str(),
            os("-q"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "killed by a signal? {:?} {err}",
        o.status
    );
    assert!(
        err.contains("o.gguf") && err.contains("File too large"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(temporaries(d.path()).is_empty(), "temporary left behind");
}

#[test]
fn full_disk_is_a_clean_error() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(&d.path().join("in"));
    let input = d.path().join("in");
    let before = snapshot(&input);
    let mnt = d.path().join("small");
    let Some(_m) = Mount::new(
        &["-t", "tmpfs", "-o", "size=200k", "tmpfs"],
        &mnt,
        "full disk",
    ) else {
        return;
    };
    for (to, out) in [
        ("gguf", mnt.join("o.gguf")),
        ("safetensors", mnt.join("st")),
    ] {
        let (code, _, err) = run(&[
            os("convert"),
            input.as_os_str(),
            os("--to"),
            os(to),
            os("--type"),
            os("f32"),
            os("--dtype"),
            os("f32"),
            os("-o"),
            out.as_os_str(),
            os("-q"),
        ]);
        assert_eq!(code, 2, "{to}: {err}");
        assert!(
            err.contains("No space left on device") && err.contains(&mnt.display().to_string()),
            "{to}: {err}"
        );
        assert!(
            temporaries(&mnt).is_empty() && temporaries(&mnt.join("st")).is_empty(),
            "{to}: temporaries left"
        );
        assert!(!mnt.join("o.gguf").exists() && !mnt.join("st/model.safetensors").exists());
    }
    assert!(snapshot(&input) == before, "input changed");
}

#[test]
fn outputs_inside_or_over_the_input_are_refused() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(d.path());
    let before = snapshot(d.path());
    let c = d.path().join("ckpt-0");
    let cases: Vec<(&str, PathBuf, bool)> = vec![
        ("gguf", c.join("x.gguf"), false),
        ("gguf", c.join("tensor00000_000"), true),
        ("gguf", c.join("new/dir/x.gguf"), false),
        ("gguf", d.path().join("config.json"), true),
        ("gguf", d.path().join("tokenizer.model"), true),
        ("safetensors", c.clone(), true),
        ("safetensors", c.join("sub"), false),
        ("safetensors", d.path().to_path_buf(), true), // would replace config.json beside ckpt-0
    ];
    for (to, out, force) in cases {
        let mut args = vec![
            os("convert"),
            d.path().as_os_str(),
            os("--to"),
            os(to),
            os("-o"),
            out.as_os_str(),
            os("-q"),
        ];
        if force {
            args.push(os("--force"));
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{} accepted: {err}", out.display());
        assert!(
            err.contains("refused") || err.contains("would overwrite"),
            "{err}"
        );
    }
    // Nothing created or changed (no stray directories from a refused run either).
    assert!(snapshot(d.path()) == before, "input changed");
    assert!(!c.join("new").exists() && !c.join("sub").exists());
    // A symlink pointing into the input is seen through.
    let link = d.path().join("..").join(format!(
        "{}-link.gguf",
        d.path().file_name().unwrap().to_string_lossy()
    ));
    std::os::unix::fs::symlink(c.join("tensor00001_000"), &link).unwrap();
    let (code, _, err) = run(&[
        os("convert"),
        d.path().as_os_str(),
        os("--to"),
        os("gguf"),
        os("-o"),
        link.as_os_str(),
        os("--force"),
        os("-q"),
    ]);
    let _ = std::fs::remove_file(&link);
    assert_eq!(code, 2, "{err}");
    assert!(
        snapshot(d.path()) == before,
        "input changed through a symlink"
    );
}

#[test]
fn unwritable_output_directory() {
    let d = tempfile::tempdir().unwrap();
    let ro = d.path().join("ro");
    let _m;
    if is_root() {
        // Root ignores mode bits: use a read-only tmpfs instead of chmod 555.
        match Mount::new(
            &["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"],
            &ro,
            "unwritable output dir",
        ) {
            Some(m) => _m = m,
            None => return,
        }
    } else {
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    }
    let ck = repo().join("fixtures/tiny");
    for (to, out) in [("gguf", ro.join("o.gguf")), ("safetensors", ro.join("st"))] {
        let (code, _, err) = run(&[
            os("convert"),
            ck.as_os_str(),
            os("--to"),
            os(to),
            os("-o"),
            out.as_os_str(),
            os("-q"),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&ro.display().to_string())
                && (err.contains("Read-only") || err.contains("Permission denied")),
            "{err}"
        );
    }
}

#[test]
fn symlink_loops() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(&d.path().join("a"));
    let c = d.path().join("a/ckpt-0");
    std::os::unix::fs::symlink("self", c.join("self")).unwrap();
    std::os::unix::fs::symlink("ping", c.join("pong")).unwrap();
    std::os::unix::fs::symlink("pong", c.join("ping")).unwrap();
    let (code, _, err) = run(&[os("inspect"), d.path().join("a").as_os_str()]);
    assert_eq!(code, 0, "loop entries beside the shards are ignored: {err}");
    let out = d.path().join("a.gguf");
    let (code, _, err) = run(&[
        os("convert"),
        d.path().join("a").as_os_str(),
        os("--to"),
        os("gguf"),
        os("-o"),
        out.as_os_str(),
        os("-q"),
    ]);
    assert_eq!(code, 0, "{err}");
    // A loop named like a shard is an error naming it.
    std::os::unix::fs::symlink("tensor00026_000", c.join("tensor00026_000")).unwrap();
    let (code, _, err) = run(&[os("inspect"), d.path().join("a").as_os_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tensor00026_000") || err.contains("tensor00027_000"),
        "{err}"
    );
    // ckpt-0 itself a loop.
    let b = d.path().join("b");
    std::fs::create_dir(&b).unwrap();
    std::os::unix::fs::symlink("ckpt-0", b.join("ckpt-0")).unwrap();
    for p in [b.clone(), b.join("ckpt-0")] {
        let (code, _, err) = run(&[os("inspect"), p.as_os_str()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&b.display().to_string()), "{err}");
    }
}

#[test]
fn non_utf8_names() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join(OsStr::from_bytes(b"ck\xff\xfe-dir"));
    copy_fixture(&root);
    std::fs::write(
        root.join("ckpt-0")
            .join(OsStr::from_bytes(b"notes-\xff.txt")),
        b"x",
    )
    .unwrap();
    let (code, _, err) = run(&[os("inspect"), root.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    // Outputs under non-UTF-8 names: a GGUF file, a safetensors directory.
    let gguf = d.path().join(OsStr::from_bytes(b"out-\xe9.gguf"));
    let st = d.path().join(OsStr::from_bytes(b"st-\xff"));
    for (to, out, written) in [
        ("gguf", &gguf, gguf.clone()),
        ("safetensors", &st, st.join("model.safetensors")),
    ] {
        let (code, _, err) = run(&[
            os("convert"),
            root.as_os_str(),
            os("--to"),
            os(to),
            os("-o"),
            out.as_os_str(),
            os("-q"),
        ]);
        assert_eq!(code, 0, "{to}: {err}");
        assert!(written.exists(), "{to}");
    }
    assert!(temporaries(d.path()).is_empty());
    // A non-UTF-8 name that looks like a shard is reported, not a panic.
    std::fs::write(
        root.join("ckpt-0")
            .join(OsStr::from_bytes(b"tensor\xff_000")),
        b"x",
    )
    .unwrap();
    let (code, _, err) = run(&[os("inspect"), root.as_os_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tensor"), "{err}");
}

#[test]
fn shard_changing_size_after_open_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(d.path());
    let ck = grokit::source::Checkpoint::open(d.path(), &Default::default()).unwrap();
    let t = &ck.tensors[3];
    // Grows, then shrinks: both are caught when the file is mapped again (no SIGBUS).
    let mut bytes = std::fs::read(&t.file).unwrap();
    bytes.extend_from_slice(b"more");
    std::fs::write(&t.file, &bytes).unwrap();
    let e = ck.map(t).unwrap_err().to_string();
    assert!(
        e.contains("changed size") && e.contains("tensor00003_000"),
        "{e}"
    );
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&t.file, &bytes).unwrap();
    assert!(ck.read_f32(t, Some(0)).is_err());
    let e = ck.map(t).unwrap_err().to_string();
    assert!(e.contains("changed size"), "{e}");
}

#[test]
fn checkpoint_on_a_read_only_filesystem_converts() {
    let d = tempfile::tempdir().unwrap();
    copy_fixture(&d.path().join("src"));
    let ro = d.path().join("ro");
    let Some(_bind) = Mount::new(
        &["--bind", d.path().join("src").to_str().unwrap()],
        &ro,
        "read-only input",
    ) else {
        return;
    };
    let st = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        skip("read-only input: remount ro not permitted");
        return;
    }
    assert!(
        std::fs::write(ro.join("probe"), b"x").is_err(),
        "bind mount is not read-only"
    );
    let out = d.path().join("o.gguf");
    let (code, _, err) = run(&[
        os("convert"),
        ro.as_os_str(),
        os("--to"),
        os("gguf"),
        os("-o"),
        out.as_os_str(),
        os("-q"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[os("inspect"), ro.as_os_str()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn exit_codes_of_every_subcommand() {
    let d = tempfile::tempdir().unwrap();
    let path = |p: PathBuf| p.to_str().unwrap().to_string();
    let (fx, s) = (path(repo().join("fixtures/tiny")), path(d.path().join("s")));
    let (o, p, none) = (
        path(d.path().join("o.gguf")),
        path(d.path().join("p.gguf")),
        path(d.path().join("none")),
    );
    // synth: 0 success, 2 error (existing output).
    expect(0, &["synth", &s, "--preset", "tiny", "-q"], "synth");
    expect(
        2,
        &["synth", &s, "--preset", "tiny", "-q"],
        "synth over a checkpoint",
    );
    // inspect: 0, 1 (a structural mismatch: trailing bytes), 2 (unreadable).
    expect(0, &["inspect", &fx], "inspect");
    let f = d.path().join("s/ckpt-0/tensor00002_000");
    let mut b = std::fs::read(&f).unwrap();
    b.extend_from_slice(b"junk");
    std::fs::write(&f, &b).unwrap();
    expect(1, &["inspect", &s], "inspect with trailing bytes");
    expect(2, &["inspect", &none], "inspect of nothing");
    // convert: 0, 2 (a checkpoint with problems is refused; a bad option; a bad path).
    let gguf = |ck: &str, out: &str, last: &str| {
        ["convert", ck, "--to", "gguf", "-o", out, last].map(String::from)
    };
    expect(0, &gguf(&fx, &o, "-q"), "convert");
    expect(0, &gguf(&fx, &o, "--dry-run"), "dry run");
    expect(2, &gguf(&s, &p, "-q"), "a checkpoint with problems");
    expect(2, &gguf(&fx, &o, "-q"), "existing output without --force");
    expect(
        2,
        &["convert", &fx, "--to", "nope", "-o", &o],
        "a bad option",
    );
    expect(2, &["frobnicate"], "an unknown subcommand");
    expect(0, &["--version"], "--version");
}

/// Run grokit with `args` and check its exit code.
fn expect<S: AsRef<OsStr> + std::fmt::Debug>(want: i32, args: &[S], why: &str) {
    let (code, _, err) = run(args);
    assert_eq!(code, want, "{why}: grokit {args:?}: {err}");
}
