//! Output pieces more than one subcommand prints: pretty JSON on stdout, and the status lines
//! on stderr that close a run that wrote model files.

use super::progress::human;
use std::io::Write;
use std::path::PathBuf;

/// `v` as pretty-printed JSON, one document, on `out`.
pub fn write_json(out: &mut impl Write, v: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// The status lines (stderr) after a run that wrote model files: each file written or kept
/// (`--resume`), then the tensor count, bytes, time and throughput.
pub fn print_written(files: &[(PathBuf, u64)], kept: &[PathBuf], tensors: usize, secs: f64) {
    for (p, n) in files {
        eprintln!("wrote {} ({})", p.display(), human(*n));
    }
    for p in kept {
        eprintln!("kept {} (already complete)", p.display());
    }
    let bytes: u64 = files.iter().map(|f| f.1).sum();
    eprintln!(
        "{} tensors, {} in {:.1} s ({:.0} MB/s)",
        tensors,
        human(bytes),
        secs,
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
}
