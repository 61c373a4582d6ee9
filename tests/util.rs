//! Shared helpers for the integration tests: where things are, running the binary, copying the
//! fixture, comparing output directories, and skipping.
//!
//! # Skips
//!
//! A test that cannot run here (no `../shared`, not root, a tool missing) calls [`skip`] (or
//! gets `None` from [`shared`] / [`tiny12`]) and returns; [`skip_part`] marks a part of a test.
//! Each writes `SKIP <test>: <reason>` straight to the process's stderr, past libtest's output
//! capture, and appends it to `$GROKIT_SKIP_LOG` when set, which `.ci/run` summarizes. Why this
//! design: `tests/README.md`.
#![allow(dead_code)]
use std::ffi::OsStr;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed 2-layer fixture (`fixtures/tiny`: ckpt-0/, config.json, tokenizer.model).
pub fn fixture() -> PathBuf {
    repo().join("fixtures/tiny")
}

/// The grokit binary built for this test run.
pub fn grokit() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_grokit"))
}

/// Run grokit with `args`: (exit code, stdout, stderr).
///
/// Every run is audited (issue #18: whatever the input, grokit exits 0, 1 or 2): a death by
/// signal (an abort, an allocation failure) or an exit code outside 0..=2 fails the test here,
/// whatever the test itself checks. With `GROKIT_AUDIT_LOG` set, each run goes through
/// `/usr/bin/time` and appends `exit<TAB>seconds<TAB>peak RSS KiB<TAB>args` to that file;
/// `scripts/audit_runs.sh` runs the suites that way and summarizes the log.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> (i32, String, String) {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let audit = std::env::var_os("GROKIT_AUDIT_LOG").filter(|_| Path::new(TIME).exists());
    let t = std::time::Instant::now();
    let (o, rss) = match &audit {
        None => (grokit().args(args).output().unwrap(), String::new()),
        Some(_) => {
            let rss_file = tempfile::NamedTempFile::new().unwrap();
            let o = std::process::Command::new(TIME)
                .args([
                    OsStr::new("-q"),
                    OsStr::new("-f"),
                    OsStr::new("%M"),
                    OsStr::new("-o"),
                ])
                .arg(rss_file.path())
                .arg(env!("CARGO_BIN_EXE_grokit"))
                .args(args)
                .output()
                .unwrap();
            let rss = std::fs::read_to_string(rss_file.path()).unwrap_or_default();
            (o, rss.lines().last().unwrap_or("").trim().to_string())
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let code = o.status.code();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if let Some(log) = audit {
        let line = format!(
            "{}\t{secs:.3}\t{rss}\t{}\n",
            code.map_or("signal".to_string(), |c| c.to_string()),
            shown.join(" ").replace(['\n', '\t'], " ")
        );
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    match code {
        Some(0..=2) => {}
        other => {
            panic!("grokit {shown:?} ended with {other:?} (not exit 0, 1 or 2)\nstderr: {err}")
        }
    }
    (
        code.unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        err,
    )
}

/// GNU time, for the audit of [`run`].
const TIME: &str = "/usr/bin/time";

/// Copy the fixture (ckpt-0/, config.json, tokenizer.model) into `to`, for tests that damage
/// or extend it.
pub fn copy_fixture(to: &Path) {
    let src = fixture();
    std::fs::create_dir_all(to.join("ckpt-0")).unwrap();
    for e in std::fs::read_dir(src.join("ckpt-0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("ckpt-0").join(e.file_name())).unwrap();
    }
    for f in ["config.json", "tokenizer.model"] {
        std::fs::copy(src.join(f), to.join(f)).unwrap();
    }
}

/// Files in a directory (not recursive), sorted by name, with their bytes.
pub fn dir_bytes(d: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The two directories hold the same file names with the same bytes.
pub fn assert_dirs_identical(a: &Path, b: &Path) {
    let (x, y) = (dir_bytes(a), dir_bytes(b));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&x), names(&y), "{} vs {}", a.display(), b.display());
    for ((n, p), (_, q)) in x.iter().zip(&y) {
        assert!(
            p == q,
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// `../shared` beside the checkout (or `$GROKIT_SHARED`), if present; otherwise the calling
/// test is reported as skipped (see the module docs) and should return.
pub fn shared(what: &str) -> Option<PathBuf> {
    let p = std::env::var_os("GROKIT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    if p.join("README.md").exists() {
        Some(p)
    } else {
        skip(format!(
            "{what}: ../shared not found at {} (set GROKIT_SHARED to its path)",
            p.display()
        ));
        None
    }
}

/// `../shared/reference/tiny12`, the checkpoint xAI's own code wrote and ran, if present;
/// otherwise the calling test is reported as skipped and should return.
pub fn tiny12(what: &str) -> Option<PathBuf> {
    let p = shared(what)?.join("reference/tiny12");
    if p.join("ckpt-0").is_dir() {
        Some(p)
    } else {
        skip(format!("{what}: {} not found", p.display()));
        None
    }
}

/// Report the running test as skipped, with the reason; the caller returns right after.
pub fn skip(reason: impl Display) {
    record(format!("SKIP {}: {reason}", test_name()));
}

/// Report that `what`, a part of the running test, was skipped; the test goes on.
pub fn skip_part(what: &str, reason: impl Display) {
    record(format!("SKIP {} (part): {what}: {reason}", test_name()));
}

/// libtest names each test's thread after the test.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

fn record(line: String) {
    // Straight to fd 2: `eprintln!` output of a passing test is captured and dropped.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    if let Some(log) = std::env::var_os("GROKIT_SKIP_LOG") {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log);
        // One write per line: O_APPEND keeps lines from parallel tests whole.
        if let Ok(mut f) = f {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}
