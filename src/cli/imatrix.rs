//! Importance-matrix files on the command line: `grokit inspect FILE.imatrix.gguf` (or `.dat`)
//! lists the entries, and `grokit imatrix-convert` rewrites a matrix in either format. The
//! library side is `crate::imatrix`; computing a matrix (`grokit imatrix`) is issue #15 part 2.

use super::Outcome;
use crate::imatrix::{Format, Imatrix};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// True for a file `grokit inspect` should show as an importance matrix: a `.dat` file, or a
/// GGUF whose `general.type` is `imatrix`.
pub fn is_imatrix_file(p: &Path) -> bool {
    if !p.is_file() {
        return false;
    }
    if Format::from_path(p) == Format::Dat {
        return true;
    }
    crate::gguf::GgufFile::open(p)
        .ok()
        .and_then(|g| {
            g.get("general.type")
                .and_then(|v| v.as_str())
                .map(|s| s == "imatrix")
        })
        .unwrap_or(false)
}

/// Print an importance matrix's metadata and entries (table or JSON).
pub fn inspect(path: &Path, as_json: bool) -> anyhow::Result<Outcome> {
    let m = Imatrix::open(path)
        .with_context(|| format!("reading importance matrix {}", path.display()))?;
    let infos = m.infos();
    let mut out = std::io::stdout().lock();
    if as_json {
        let v = json!({
            "format": "imatrix",
            "file_format": m.format(),
            "path": path,
            "datasets": m.datasets(),
            "chunk_count": m.chunk_count(),
            "chunk_size": m.chunk_size(),
            "entries": infos,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Outcome::Ok);
    }
    writeln!(
        out,
        "importance matrix ({}): {} entries, {} chunks of {} tokens, datasets {:?}",
        match m.format() {
            Format::Gguf => "GGUF",
            Format::Dat => "legacy .dat",
        },
        m.len(),
        m.chunk_count(),
        m.chunk_size(),
        m.datasets()
    )?;
    writeln!(out, "{:<40} {:>8} {:>6}  counts", "entry", "ne0", "n_mat")?;
    for i in &infos {
        let counts = if i.counts.len() <= 8 {
            format!("{:?}", i.counts)
        } else {
            format!("{:?}… ({} values)", &i.counts[..8], i.counts.len())
        };
        writeln!(out, "{:<40} {:>8} {:>6}  {counts}", i.name, i.ne0, i.n_mat)?;
    }
    Ok(Outcome::Ok)
}

/// Output formats of `imatrix-convert`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// GGUF (`general.type = imatrix`), what current llama.cpp writes.
    Gguf,
    /// The legacy `.dat` format.
    Dat,
}

/// Rewrite an importance matrix (llama-imatrix's GGUF or legacy .dat) in either format.
///
/// GGUF → GGUF and .dat → .dat keep every value. .dat → GGUF turns each entry into raw sums
/// and counts (values and ncall times --chunk-size), as `llama-imatrix --in-file` does;
/// GGUF → .dat stores `(sum / count) · ncall`, as llama-imatrix's legacy writer does (entries
/// without any data are dropped). Both formats are accepted by `llama-quantize --imatrix` and
/// by `grokit quantize/convert --imatrix`. The output is written to a temporary name and
/// renamed when complete.
///
/// Examples:
///   grokit imatrix-convert grok-1.imatrix.dat -o grok-1.imatrix.gguf
///   grokit imatrix-convert grok-1.imatrix.gguf -o grok-1.imatrix.dat
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ImatrixConvertArgs {
    /// Input importance matrix (.gguf or .dat).
    pub input: PathBuf,
    /// Output file.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Output format (default: from the output's extension; `.dat` is legacy).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Tokens per chunk, for a legacy input (which does not record it); llama-imatrix's
    /// default context is 512.
    #[arg(long, default_value_t = 512)]
    pub chunk_size: u32,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// No summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run `imatrix-convert`.
pub fn run_convert(a: ImatrixConvertArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(a.chunk_size > 0, "--chunk-size must be positive");
    let m = Imatrix::open(&a.input)
        .with_context(|| format!("reading importance matrix {}", a.input.display()))?;
    let format = match a.format {
        Some(FormatArg::Gguf) => Format::Gguf,
        Some(FormatArg::Dat) => Format::Dat,
        None => Format::from_path(&a.out),
    };
    let n = crate::imatrix::convert(&m, &a.out, format, a.chunk_size, a.force)?;
    if !a.quiet {
        eprintln!("wrote {} ({} entries, {:?})", a.out.display(), n, format);
    }
    Ok(Outcome::Ok)
}
