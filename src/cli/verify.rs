//! `grokit verify`: is a downloaded release complete and intact?
//!
//! [`VerifyArgs`] → [`Verify`] → [`Verify::execute`] (structure, then each requested check,
//! collected into a [`Report`]; an unreadable manifest or torrent is an error, a failed check is
//! not) → [`Report::render_text`] or [`Report::to_json`] → exit 0 when everything verified,
//! 1 otherwise.

use super::progress::{human, Progress};
use super::render::write_json;
use super::Outcome;
use crate::base::hex;
use crate::io::output::{resolve_output, OutputRules};
use crate::io::term::{escape, escape_path, path_string as ps, sanitize};
use crate::source::grok::{discover, layout::find_dir, Checkpoint, OpenOptions};
use crate::source::SourceError;
use crate::verify::{
    self, CheckOptions, HashOptions, Manifest, ManifestReport, Torrent, TorrentReport,
};
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
///   grokit verify /data/grok-1 --manifest grok-1.sha256 -j 1    # one file at a time (spinning disk)
///   grokit verify /data/grok-1 --torrent grok-1.torrent --torrent-root /data/grok-1
///   grokit verify /data/grok-1 --manifest grok-1.sha256 --json | jq .ok
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
    /// Let --write-manifest replace an existing file that is not a manifest (never one of the
    /// checkpoint's files, config.json, tokenizer.model, or a file given with --manifest or
    /// --torrent; never a device).
    #[arg(long)]
    pub force: bool,
}

/// `verify`'s options.
#[derive(Debug)]
pub struct Verify {
    ckpt: PathBuf,
    write_manifest: Option<PathBuf>,
    manifest: Option<PathBuf>,
    torrent: Option<PathBuf>,
    torrent_root: Option<PathBuf>,
    root: Option<PathBuf>,
    hash: HashOptions,
    json: bool,
    /// No progress bars (`--quiet`, or `--json`).
    quiet: bool,
    /// `--force`: --write-manifest may replace an existing non-manifest file.
    force: bool,
}

/// What the structure check found.
#[derive(Debug)]
enum Structure {
    /// The checkpoint opened; its problems (if any) are listed in it.
    Opened(Checkpoint),
    /// Shard files are missing or unexpected.
    Files {
        dir: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    /// Any other defect (a shard that does not parse, ...).
    Failed(String),
}

impl Structure {
    fn ok(&self) -> bool {
        matches!(self, Structure::Opened(ck) if ck.problems.is_empty())
    }
}

/// A manifest written with `--write-manifest`.
#[derive(Debug)]
struct Wrote {
    path: PathBuf,
    entries: usize,
    bytes: u64,
    seconds: f64,
}

/// Everything `verify` found.
#[derive(Debug)]
pub struct Report {
    structure: Structure,
    wrote: Option<Wrote>,
    manifest: Option<(ManifestReport, f64)>,
    torrent: Option<(TorrentReport, f64)>,
}

impl Report {
    /// True when every check passed.
    fn ok(&self) -> bool {
        self.structure.ok()
            && self.manifest.as_ref().is_none_or(|(r, _)| r.is_clean())
            && self.torrent.as_ref().is_none_or(|(r, _)| r.is_complete())
    }
}

impl Verify {
    /// Options from the arguments (all of them are paths or flags: nothing to reject).
    pub fn resolve(a: VerifyArgs) -> Verify {
        Verify {
            hash: HashOptions {
                threads: a.jobs.unwrap_or(0),
                ..HashOptions::default()
            },
            quiet: a.quiet || a.json,
            json: a.json,
            ckpt: a.ckpt,
            write_manifest: a.write_manifest,
            manifest: a.manifest,
            torrent: a.torrent,
            torrent_root: a.torrent_root,
            root: a.root,
            force: a.force,
        }
    }

    /// Run the structure check and each requested one, in order.
    fn execute(&self) -> anyhow::Result<Report> {
        let structure = self.structure()?;
        let dir = match &structure {
            Structure::Opened(ck) => ck.dir.clone(),
            _ => find_dir(&self.ckpt).map_err(anyhow::Error::from)?,
        };
        let root = self.root.clone().unwrap_or_else(|| {
            dir.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        });
        let wrote = match &self.write_manifest {
            Some(out) => Some(self.write_manifest(&root, &dir, out)?),
            None => None,
        };
        let manifest = match &self.manifest {
            Some(m) => Some(self.check_manifest(&root, m)?),
            None => None,
        };
        let torrent = match &self.torrent {
            Some(t) => Some(self.check_torrent(self.torrent_root.as_ref().unwrap_or(&root), t)?),
            None => None,
        };
        Ok(Report {
            structure,
            wrote,
            manifest,
            torrent,
        })
    }

    fn structure(&self) -> anyhow::Result<Structure> {
        match Checkpoint::open(&self.ckpt, &OpenOptions::default()) {
            Ok(ck) => Ok(Structure::Opened(ck)),
            Err(e @ (SourceError::NotACheckpoint { .. } | SourceError::Io(_))) => {
                Err(e).with_context(|| format!("reading {}", self.ckpt.display()))
            }
            Err(SourceError::Files {
                dir,
                missing,
                unexpected,
            }) => Ok(Structure::Files {
                dir,
                missing,
                unexpected,
            }),
            Err(e) => Ok(Structure::Failed(e.to_string())),
        }
    }

    /// The output rules of `--write-manifest`: never a file this command reads (the
    /// checkpoint directory `dir` and everything in it, the `config.json` and
    /// `tokenizer.model` beside it, `--manifest`, `--torrent`), `--force` for an existing
    /// file that is not a manifest.
    fn manifest_rules(&self, dir: &Path) -> OutputRules {
        let mut inputs: Vec<PathBuf> = self.manifest.iter().chain(&self.torrent).cloned().collect();
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            inputs.extend(["config.json", "tokenizer.model"].map(|n| d.join(n)));
        }
        OutputRules {
            inputs,
            input_dirs: vec![dir.to_path_buf()],
            force: self.force,
            ..Default::default()
        }
    }

    fn write_manifest(&self, root: &Path, dir: &Path, out: &Path) -> anyhow::Result<Wrote> {
        let files = discover(&self.ckpt)
            .map(|f| f.files.into_iter().map(|(_, p)| p).collect::<Vec<_>>())
            .unwrap_or_default();
        let rules = self.manifest_rules(dir);
        // Refuse an input, a directory or a block device before hashing (which takes long);
        // whether an existing file may be replaced is decided when writing.
        let early = OutputRules {
            inputs: rules.inputs.iter().chain(&files).cloned().collect(),
            streams: true,
            replace_without_force: true,
            ..rules.clone()
        };
        resolve_output(out, &early).with_context(|| format!("writing {}", out.display()))?;
        let rel: Vec<PathBuf> = files
            .iter()
            .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect();
        let bytes: u64 = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let p = Progress::new("hashing", bytes, self.quiet);
        let m = verify::write_manifest(root, &rel, &self.hash, &|n| p.inc(n))
            .with_context(|| "hashing the shards")?;
        p.finish();
        m.write_with(out, &rules)
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(Wrote {
            path: out.to_path_buf(),
            entries: m.entries.len(),
            bytes,
            seconds: p.elapsed(),
        })
    }

    fn check_manifest(&self, root: &Path, path: &Path) -> anyhow::Result<(ManifestReport, f64)> {
        let m =
            Manifest::read(path).with_context(|| format!("reading manifest {}", path.display()))?;
        let total: u64 = m
            .entries
            .iter()
            .filter_map(|e| std::fs::metadata(root.join(&e.path)).ok())
            .map(|x| x.len())
            .sum();
        let p = Progress::new("checking", total, self.quiet);
        let opts = CheckOptions {
            hash: self.hash,
            find_extra: false,
            ignore: vec![],
        };
        let r = verify::check_manifest(root, &m, &opts, &|n| p.inc(n));
        p.finish();
        Ok((r, p.elapsed()))
    }

    fn check_torrent(&self, root: &Path, path: &Path) -> anyhow::Result<(TorrentReport, f64)> {
        let t =
            Torrent::read(path).with_context(|| format!("reading torrent {}", path.display()))?;
        let p = Progress::new("pieces", t.total_length, self.quiet);
        let r = verify::check_torrent(root, &t, &self.hash, &|n| p.inc(n));
        p.finish();
        Ok((r, p.elapsed()))
    }
}

impl Report {
    /// The human-readable report, one line per finding, ending with OK or FAILED.
    fn render_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut lines = Vec::new();
        self.structure.render(&mut lines);
        if let Some(w) = &self.wrote {
            lines.push(format!(
                "manifest: wrote {} entries to {} ({:.1} s, {:.0} MB/s)",
                w.entries,
                escape_path(&w.path),
                w.seconds,
                w.bytes as f64 / 1e6 / w.seconds.max(1e-9)
            ));
        }
        if let Some((r, secs)) = &self.manifest {
            render_manifest(r, *secs, &mut lines);
        }
        if let Some((r, _)) = &self.torrent {
            render_torrent(r, &mut lines);
        }
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        let verdict = if self.ok() {
            "OK: everything verified"
        } else {
            "FAILED: see above"
        };
        writeln!(out, "{verdict}")
    }

    /// The `--json` report.
    fn to_json(&self) -> Json {
        let mut report = json!({"structure": self.structure.to_json(), "ok": self.ok()});
        if let Some(w) = &self.wrote {
            report["write_manifest"] =
                json!({"path": ps(&w.path), "entries": w.entries, "seconds": w.seconds});
        }
        if let Some((r, secs)) = &self.manifest {
            report["manifest"] = json!({
                "ok": r.is_clean(), "matched": r.ok.len(),
                "mismatched": r.mismatched.iter().map(|m| json!({"path": ps(&m.path), "expected": hex::encode(&m.expected), "actual": hex::encode(&m.actual)})).collect::<Vec<_>>(),
                "missing": pv(&r.missing), "unreadable": r.unreadable.iter().map(|(p, w)| json!({"path": ps(p), "error": w})).collect::<Vec<_>>(),
                "bytes_hashed": r.bytes_hashed, "seconds": secs,
            });
        }
        if let Some((r, _)) = &self.torrent {
            report["torrent"] = json!({
                "ok": r.is_complete(), "infohash": r.infohash, "official_grok1": r.infohash == verify::GROK1_INFOHASH, "name": r.name,
                "pieces": r.pieces, "good_pieces": r.good_pieces,
                "bad_pieces": r.bad_pieces.iter().map(|b| json!({"index": b.index, "files": pv(&b.files)})).collect::<Vec<_>>(),
                "missing_pieces": r.missing_pieces.iter().map(|x| [x.start, x.end]).collect::<Vec<_>>(),
                "files": r.files.iter().map(|f| json!({"path": ps(&f.path), "length": f.length, "state": format!("{:?}", f.state), "verified_fraction": f.verified_fraction})).collect::<Vec<_>>(),
                "warnings": r.warnings,
            });
        }
        report
    }
}

impl Structure {
    fn to_json(&self) -> Json {
        match self {
            Structure::Opened(ck) => json!({
                "ok": self.ok(), "dir": ps(&ck.dir), "files": ck.tensors.len(), "bytes": ck.total_bytes(),
                "is_grok1": ck.config.is_grok1(), "problems": ck.problems, "warnings": ck.warnings,
            }),
            Structure::Files {
                dir,
                missing,
                unexpected,
            } => json!({"ok": false, "dir": ps(dir), "missing": missing, "unexpected": unexpected}),
            Structure::Failed(e) => json!({"ok": false, "error": e}),
        }
    }

    fn render(&self, lines: &mut Vec<String>) {
        if let Structure::Opened(ck) = self {
            if ck.problems.is_empty() {
                lines.push(format!(
                    "structure: {} files, {} bytes, no problems{}",
                    ck.tensors.len(),
                    ck.total_bytes(),
                    if ck.config.is_grok1() {
                        " (Grok-1 geometry, exact release sizes)"
                    } else {
                        ""
                    }
                ));
                return;
            }
        }
        lines.push("structure: FAILED".into());
        match self {
            Structure::Files {
                missing,
                unexpected,
                ..
            } => {
                for (k, v) in [("missing", missing), ("unexpected", unexpected)] {
                    if !v.is_empty() {
                        let v: Vec<_> = v.iter().map(|x| escape(x)).collect();
                        lines.push(format!("  {k}: {}", v.join(", ")));
                    }
                }
            }
            Structure::Failed(e) => lines.push(format!("  {}", sanitize(e))),
            Structure::Opened(ck) => {
                for p in &ck.problems {
                    let at = p
                        .offset
                        .map(|o| format!(" at byte offset {o}"))
                        .unwrap_or_default();
                    lines.push(format!(
                        "  {} ({}){at}: {}",
                        escape_path(&p.file),
                        escape(&p.tensor),
                        sanitize(&p.msg)
                    ));
                }
            }
        }
    }
}

fn render_manifest(r: &ManifestReport, secs: f64, lines: &mut Vec<String>) {
    lines.push(format!(
        "manifest: {} ok, {} mismatched, {} missing, {} unreadable ({} hashed in {:.1} s)",
        r.ok.len(),
        r.mismatched.len(),
        r.missing.len(),
        r.unreadable.len(),
        human(r.bytes_hashed),
        secs
    ));
    for x in &r.mismatched {
        lines.push(format!(
            "  MISMATCH {}: expected {} got {}",
            escape_path(&x.path),
            hex::encode(&x.expected),
            hex::encode(&x.actual)
        ));
    }
    for x in &r.missing {
        lines.push(format!("  MISSING  {}", escape_path(x)));
    }
    for (x, why) in &r.unreadable {
        lines.push(format!(
            "  UNREADABLE {}: {}",
            escape_path(x),
            sanitize(why)
        ));
    }
}

fn render_torrent(r: &TorrentReport, lines: &mut Vec<String>) {
    lines.push(format!(
        "torrent: infohash {}{}",
        r.infohash,
        if r.infohash == verify::GROK1_INFOHASH {
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
                .map(|f| escape_path(f))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for f in r.files.iter().filter(|f| f.verified_fraction < 1.0) {
        lines.push(format!(
            "  {}: {:?}, {:.1}% verified",
            escape_path(&f.path),
            f.state,
            100.0 * f.verified_fraction
        ));
    }
}

/// Run `verify`: resolve, execute, render.
pub fn run(a: VerifyArgs) -> anyhow::Result<Outcome> {
    let v = Verify::resolve(a);
    let report = v.execute()?;
    let mut out = std::io::stdout().lock();
    if v.json {
        write_json(&mut out, &report.to_json())?;
    } else {
        report.render_text(&mut out)?;
    }
    Ok(if report.ok() {
        Outcome::Ok
    } else {
        Outcome::Mismatch
    })
}

/// Paths as report strings (`io::term::path_string`: a non-UTF-8 name must not panic `--json`).
fn pv(v: &[PathBuf]) -> Vec<String> {
    v.iter().map(|p| ps(p)).collect()
}
