//! `grokit verify`: is a downloaded release complete and intact?

use super::progress::{human, Progress};
use super::Outcome;
use crate::base::hex;
use crate::source::grok::{discover, Checkpoint, OpenOptions};
use crate::source::SourceError;
use crate::verify::{self, CheckOptions, HashOptions, Manifest, Torrent};
use anyhow::Context;
use clap::Args;
use serde_json::{json, Value as Json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Verify a release checkpoint: structure always; content against a SHA-256 manifest or a
/// BitTorrent v1 .torrent when given.
///
/// Structure: every shard parses (allow-list pickle reader), nothing is missing or unexpected,
/// each payload fits its file with no trailing bytes, names/shapes/dtypes fit the architecture,
/// and for the full Grok-1 every file has exactly the release's size.
///
/// Manifests use `sha256sum` format with paths relative to the directory that holds ckpt-0/
/// (`sha256sum -c` accepts what --write-manifest writes, and --manifest reads what sha256sum
/// writes). Torrents: the infohash is printed (compare it with the magnet link; the official one
/// is 5f96d43576e3d386c9ba65b883210a393b68210e), bad and missing pieces are reported with the
/// files they touch, and how much of each file is verified.
///
/// Exit status: 0 everything verified, 1 a mismatch/missing/bad item, 2 an error.
///
/// Examples:
///   grokit verify /data/grok-1
///   grokit verify /data/grok-1 --write-manifest grok-1.sha256
///   grokit verify /data/grok-1 --manifest grok-1.sha256
///   grokit verify /data/grok-1 --torrent grok-1.torrent --torrent-root /data/grok-1
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct VerifyArgs {
    /// Checkpoint directory (ckpt-0/, ckpt/, or a directory containing one).
    pub ckpt: PathBuf,
    /// Write a sha256sum-format manifest of the shard files.
    #[arg(long, value_name = "FILE")]
    pub write_manifest: Option<PathBuf>,
    /// Check the files against a sha256sum-format manifest.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Check the files against a BitTorrent v1 .torrent file.
    #[arg(long, value_name = "FILE")]
    pub torrent: Option<PathBuf>,
    /// The directory on disk that corresponds to the torrent's top folder (default: the
    /// directory that holds ckpt-0/).
    #[arg(long, value_name = "DIR")]
    pub torrent_root: Option<PathBuf>,
    /// Manifest paths are relative to this directory (default: the one that holds ckpt-0/).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Files hashed in parallel (default: all cores; use 1 on a spinning disk).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Machine-readable JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

fn structure(ckpt: &Path) -> anyhow::Result<(Json, bool, Option<Checkpoint>)> {
    match Checkpoint::open(ckpt, &OpenOptions::default()) {
        Ok(ck) => {
            let ok = ck.problems.is_empty();
            let v = json!({
                "ok": ok, "dir": ck.dir, "files": ck.tensors.len(), "bytes": ck.total_bytes(),
                "is_grok1": ck.config.is_grok1(), "problems": ck.problems, "warnings": ck.warnings,
            });
            Ok((v, ok, Some(ck)))
        }
        Err(e @ (SourceError::NotACheckpoint { .. } | SourceError::Io(_))) => {
            Err(e).with_context(|| format!("reading {}", ckpt.display()))
        }
        Err(SourceError::Files {
            dir,
            missing,
            unexpected,
        }) => Ok((
            json!({"ok": false, "dir": dir, "missing": missing, "unexpected": unexpected}),
            false,
            None,
        )),
        Err(e) => Ok((json!({"ok": false, "error": e.to_string()}), false, None)),
    }
}

/// Run `verify`.
pub fn run(a: VerifyArgs) -> anyhow::Result<Outcome> {
    let opts = HashOptions {
        threads: a.jobs.unwrap_or(0),
        ..HashOptions::default()
    };
    let (st, mut ok, ck) = structure(&a.ckpt)?;
    let dir = match &ck {
        Some(c) => c.dir.clone(),
        None => crate::source::grok::layout::find_dir(&a.ckpt).map_err(anyhow::Error::from)?,
    };
    let root = a.root.clone().unwrap_or_else(|| {
        dir.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let mut report = json!({"structure": st});
    let quiet = a.quiet || a.json;
    let mut lines: Vec<String> = Vec::new();
    render_structure(&report["structure"], &mut lines);

    if let Some(out) = &a.write_manifest {
        let files = discover(&a.ckpt)
            .map(|f| f.files.into_iter().map(|(_, p)| p).collect::<Vec<_>>())
            .unwrap_or_default();
        let rel: Vec<PathBuf> = files
            .iter()
            .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
            .collect();
        let total: u64 = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let p = Progress::new("hashing", total, quiet);
        let m = verify::write_manifest(&root, &rel, &opts, &|n| p.inc(n))
            .with_context(|| "hashing the shards")?;
        p.finish();
        m.write(out)
            .with_context(|| format!("writing {}", out.display()))?;
        lines.push(format!(
            "manifest: wrote {} entries to {} ({:.1} s, {:.0} MB/s)",
            m.entries.len(),
            out.display(),
            p.elapsed(),
            total as f64 / 1e6 / p.elapsed().max(1e-9)
        ));
        report["write_manifest"] =
            json!({"path": out, "entries": m.entries.len(), "seconds": p.elapsed()});
    }
    if let Some(mp) = &a.manifest {
        let m = Manifest::read(mp).with_context(|| format!("reading manifest {}", mp.display()))?;
        let total: u64 = m
            .entries
            .iter()
            .filter_map(|e| std::fs::metadata(root.join(&e.path)).ok())
            .map(|x| x.len())
            .sum();
        let p = Progress::new("checking", total, quiet);
        let r = verify::check_manifest(
            &root,
            &m,
            &CheckOptions {
                hash: opts,
                find_extra: false,
                ignore: vec![],
            },
            &|n| p.inc(n),
        );
        p.finish();
        ok &= r.is_clean();
        lines.push(format!(
            "manifest: {} ok, {} mismatched, {} missing, {} unreadable ({} hashed in {:.1} s)",
            r.ok.len(),
            r.mismatched.len(),
            r.missing.len(),
            r.unreadable.len(),
            human(r.bytes_hashed),
            p.elapsed()
        ));
        for x in &r.mismatched {
            lines.push(format!(
                "  MISMATCH {}: expected {} got {}",
                x.path.display(),
                hex::encode(&x.expected),
                hex::encode(&x.actual)
            ));
        }
        for x in &r.missing {
            lines.push(format!("  MISSING  {}", x.display()));
        }
        for (x, why) in &r.unreadable {
            lines.push(format!("  UNREADABLE {}: {why}", x.display()));
        }
        report["manifest"] = json!({
            "ok": r.is_clean(), "matched": r.ok.len(),
            "mismatched": r.mismatched.iter().map(|m| json!({"path": m.path, "expected": hex::encode(&m.expected), "actual": hex::encode(&m.actual)})).collect::<Vec<_>>(),
            "missing": r.missing, "unreadable": r.unreadable.iter().map(|(p, w)| json!({"path": p, "error": w})).collect::<Vec<_>>(),
            "bytes_hashed": r.bytes_hashed, "seconds": p.elapsed(),
        });
    }
    if let Some(tp) = &a.torrent {
        let t = Torrent::read(tp).with_context(|| format!("reading torrent {}", tp.display()))?;
        let troot = a.torrent_root.clone().unwrap_or_else(|| root.clone());
        let p = Progress::new("pieces", t.total_length, quiet);
        let r = verify::check_torrent(&troot, &t, &opts, &|n| p.inc(n));
        p.finish();
        ok &= r.is_complete();
        let official = r.infohash == verify::GROK1_INFOHASH;
        lines.push(format!(
            "torrent: infohash {}{}",
            r.infohash,
            if official {
                " (the official Grok-1 release)"
            } else {
                " (not the official Grok-1 infohash)"
            }
        ));
        lines.push(format!(
            "torrent: {} of {} pieces good, {} bad, {} missing",
            r.good_pieces,
            r.pieces,
            r.bad_pieces.len(),
            r.missing_pieces
                .iter()
                .map(|x| x.end - x.start)
                .sum::<u64>()
        ));
        for b in &r.bad_pieces {
            lines.push(format!(
                "  BAD piece {} in {}",
                b.index,
                b.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for f in r.files.iter().filter(|f| f.verified_fraction < 1.0) {
            lines.push(format!(
                "  {}: {:?}, {:.1}% verified",
                f.path.display(),
                f.state,
                100.0 * f.verified_fraction
            ));
        }
        report["torrent"] = json!({
            "ok": r.is_complete(), "infohash": r.infohash, "official_grok1": official, "name": r.name,
            "pieces": r.pieces, "good_pieces": r.good_pieces,
            "bad_pieces": r.bad_pieces.iter().map(|b| json!({"index": b.index, "files": b.files})).collect::<Vec<_>>(),
            "missing_pieces": r.missing_pieces.iter().map(|x| [x.start, x.end]).collect::<Vec<_>>(),
            "files": r.files.iter().map(|f| json!({"path": f.path, "length": f.length, "state": format!("{:?}", f.state), "verified_fraction": f.verified_fraction})).collect::<Vec<_>>(),
            "warnings": r.warnings,
        });
    }
    report["ok"] = json!(ok);
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        writeln!(
            out,
            "{}",
            if ok {
                "OK: everything verified"
            } else {
                "FAILED: see above"
            }
        )?;
    }
    Ok(if ok { Outcome::Ok } else { Outcome::Mismatch })
}

fn render_structure(s: &Json, lines: &mut Vec<String>) {
    if s["ok"] == json!(true) {
        lines.push(format!(
            "structure: {} files, {} bytes, no problems{}",
            s["files"],
            s["bytes"],
            if s["is_grok1"] == json!(true) {
                " (Grok-1 geometry, exact release sizes)"
            } else {
                ""
            }
        ));
        return;
    }
    lines.push("structure: FAILED".into());
    for k in ["missing", "unexpected"] {
        if let Some(v) = s[k].as_array() {
            if !v.is_empty() {
                lines.push(format!(
                    "  {k}: {}",
                    v.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if let Some(e) = s["error"].as_str() {
        lines.push(format!("  {e}"));
    }
    if let Some(ps) = s["problems"].as_array() {
        for p in ps {
            let at = p["offset"]
                .as_u64()
                .map(|o| format!(" at byte offset {o}"))
                .unwrap_or_default();
            lines.push(format!(
                "  {} ({}){at}: {}",
                p["file"].as_str().unwrap_or(""),
                p["tensor"].as_str().unwrap_or(""),
                p["msg"].as_str().unwrap_or("")
            ));
        }
    }
}
