//! L3: conversions of the release to GGUF and safetensors. Plan everything first
//! ([`plan`]), then stream one tensor at a time in bounded bands ([`exec`]).

pub mod band;
pub mod encode;
pub mod exec;
pub mod plan;
pub mod requant;
pub mod weights;

use std::path::PathBuf;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// A codec refused the data.
    #[error("tensor {tensor}: {source}")]
    Quant {
        /// output tensor
        tensor: String,
        /// cause
        source: crate::quant::QuantError,
    },
    /// The plan is inconsistent or cannot be made.
    #[error("{0}")]
    Plan(String),
    /// The request is not allowed (output inside the input, existing output, ...).
    #[error("{0}")]
    Refused(String),
    /// The checkpoint has structural problems.
    #[error(
        "{dir}: {count} structural problem(s); run `grokit inspect` to list them (first: {first})"
    )]
    Problems {
        /// checkpoint dir
        dir: PathBuf,
        /// number of problems
        count: usize,
        /// the first one
        first: String,
    },
}

pub mod gguf;
pub mod report;
pub mod safetensors;

use std::path::Path;

/// The absolute, symlink-resolved form of `p`, which need not exist yet: its deepest existing
/// ancestor is canonicalized and the rest appended (`..` in the missing part is refused).
fn canonical_or_parent(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let mut rest = Vec::new();
    let mut cur = p;
    loop {
        let name = cur.file_name()?;
        rest.push(name);
        let parent = cur
            .parent()
            .filter(|x| !x.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(c) = parent.canonicalize() {
            return Some(rest.iter().rev().fold(c, |acc, n| acc.join(n)));
        }
        cur = parent;
    }
}

/// Names a checkpoint reader takes from beside the shard directory (`config.json`,
/// `tokenizer.model`): outputs may not replace them.
const INPUT_SIDE_FILES: [&str; 2] = ["config.json", "tokenizer.model"];

/// Refuse outputs that would land inside (or on) the input checkpoint or replace a file it is
/// read with, and existing outputs unless `allow_existing` (`--force`/`--resume`). Nothing the
/// user had is overwritten silently. Works before the output directory exists.
pub fn check_output_path(
    input_dir: &Path,
    outputs: &[&Path],
    allow_existing: bool,
) -> Result<(), ConvertError> {
    let input = input_dir
        .canonicalize()
        .map_err(|e| crate::io::IoError::new("resolve", input_dir, e))?;
    let root = input.parent().map(Path::to_path_buf);
    for o in outputs {
        let c = canonical_or_parent(o).ok_or_else(|| {
            ConvertError::Refused(format!("{}: cannot resolve the output path", o.display()))
        })?;
        if c.starts_with(&input) {
            return Err(ConvertError::Refused(format!(
                "{}: output inside the input checkpoint {} is refused",
                o.display(),
                input.display()
            )));
        }
        // Files beside ckpt-0 (config.json, tokenizer.model) belong to the input too.
        if let Some(r) = &root {
            let beside = c.parent() == Some(r.as_path()) && c.exists();
            let named_side = c
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| INPUT_SIDE_FILES.contains(&n));
            if beside && (named_side || r.join("ckpt-0") == input || r.join("ckpt") == input) {
                return Err(ConvertError::Refused(format!(
                    "{}: would overwrite a file of the input checkpoint's directory",
                    o.display()
                )));
            }
        }
        if c.exists() && !allow_existing {
            return Err(ConvertError::Refused(format!("{}: already exists (use --force to replace it, or --resume to keep finished files)", o.display())));
        }
    }
    Ok(())
}

/// `--resume`'s test for a finished output: `path` has exactly `len` bytes and starts with the
/// planned `header` (same tensors, types and metadata). Why the header and not only the size:
/// a file of another plan can have the same size (bf16 vs f16, another `general.name` of the
/// same length) and must be rewritten, not kept.
pub fn complete_as_planned(path: &Path, len: u64, header: &[u8]) -> bool {
    use std::io::Read;
    if std::fs::metadata(path)
        .map(|m| m.len() != len)
        .unwrap_or(true)
    {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; header.len()];
    f.read_exact(&mut buf).is_ok() && buf == header
}
