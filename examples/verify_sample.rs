//! Thin driver for the `grokit::verify` library, used by tests/interop/verify_torrent.py and
//! scripts/bench_verify.sh until `grokit verify` is wired.
//!
//! ```text
//! verify_sample [--threads N] [--block-mib M] TORRENT ROOT      -> JSON torrent report
//! verify_sample [opts] --check MANIFEST ROOT [--extra]          -> JSON manifest report
//! verify_sample [opts] --sha256 ROOT FILE...                    -> sha256sum-format lines
//! ```
//! Exit codes: 0 all good, 1 a mismatch/missing piece or file, 2 error.
use grokit::base::hex;
use grokit::verify::{self, CheckOptions, HashOptions, Manifest, Torrent};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = HashOptions::default();
    let take = |flag: &str, args: &mut Vec<String>| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        let v = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        v
    };
    if let Some(t) = take("--threads", &mut args) {
        opts.threads = t.parse()?;
    }
    if let Some(b) = take("--block-mib", &mut args) {
        opts.block_size = b.parse::<usize>()? << 20;
    }
    let extra = args.iter().any(|a| a == "--extra");
    args.retain(|a| a != "--extra");
    let counter = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    eprintln!("memory bound: {} MiB", opts.memory_bound() >> 20);
    match args.first().map(String::as_str) {
        Some("--sha256") if args.len() >= 2 => {
            let root = PathBuf::from(&args[1]);
            let files: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
            let m = verify::write_manifest(&root, &files, &opts, &progress)?;
            use std::io::Write;
            std::io::stdout().write_all(&m.to_gnu_bytes())?;
            Ok(true)
        }
        Some("--check") if args.len() == 3 => {
            let m = Manifest::read(Path::new(&args[1]))?;
            let copts = CheckOptions { hash: opts, find_extra: extra, ignore: vec![] };
            let r = verify::check_manifest(Path::new(&args[2]), &m, &copts, &progress);
            let out = json!({
                "ok": r.ok.iter().map(|(p, s)| json!({"path": p, "size": s})).collect::<Vec<_>>(),
                "mismatched": r.mismatched.iter().map(|m| json!({"path": m.path, "expected": hex::encode(&m.expected), "actual": hex::encode(&m.actual)})).collect::<Vec<_>>(),
                "missing": r.missing,
                "unreadable": r.unreadable.iter().map(|(p, w)| json!({"path": p, "error": w})).collect::<Vec<_>>(),
                "extra": r.extra,
                "bytes_hashed": r.bytes_hashed,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(r.is_clean())
        }
        Some(_) if args.len() == 2 => {
            let t = Torrent::read(Path::new(&args[0]))?;
            let r = verify::check_torrent(Path::new(&args[1]), &t, &opts, &progress);
            let out = json!({
                "infohash": r.infohash,
                "name": r.name,
                "piece_length": r.piece_length,
                "total_length": r.total_length,
                "pieces": r.pieces,
                "good_pieces": r.good_pieces,
                "bad_pieces": r.bad_pieces.iter().map(|b| json!({"index": b.index, "files": b.files})).collect::<Vec<_>>(),
                "missing_pieces": r.missing_pieces.iter().map(|x| [x.start, x.end]).collect::<Vec<_>>(),
                "files": r.files.iter().map(|f| json!({
                    "path": f.path, "length": f.length, "state": format!("{:?}", f.state),
                    "verified_bytes": f.verified_bytes, "verified_fraction": f.verified_fraction,
                })).collect::<Vec<_>>(),
                "bytes_hashed": r.bytes_hashed,
                "progress_bytes": counter.load(std::sync::atomic::Ordering::Relaxed),
                "warnings": r.warnings,
                "matches_grok1_release": r.infohash == verify::GROK1_INFOHASH,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(r.is_complete())
        }
        _ => Err("usage: verify_sample [--threads N] [--block-mib M] (TORRENT ROOT | --check MANIFEST ROOT [--extra] | --sha256 ROOT FILE...)".into()),
    }
}
