//! Where outputs may go: the one check `convert` and `quantize` both run before writing, so an
//! output never replaces an input or anything the user had, and `--resume`'s test for a file
//! already written as planned.

use super::ConvertError;
use crate::io::output::{resolve_output, OutputError, OutputRules};
use std::path::{Path, PathBuf};

/// What an output must not touch.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// A checkpoint directory (`ckpt-0/`): outputs may not land inside it, nor replace the
    /// `config.json`/`tokenizer.model` its reader takes from beside it.
    pub checkpoint: Option<&'a Path>,
    /// Input files an output may not replace (the shards of an input GGUF).
    pub files: &'a [PathBuf],
}

impl<'a> Inputs<'a> {
    /// A release checkpoint directory.
    pub fn checkpoint(dir: &'a Path) -> Inputs<'a> {
        Inputs {
            checkpoint: Some(dir),
            files: &[],
        }
    }
}

/// Whether outputs that already exist may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace (or keep) them: `--force`, `--resume`, or files rewritten on every run.
    Allow,
    /// Refuse them, naming the options that would allow it.
    Refuse(&'static str),
}

/// The absolute, symlink-resolved form of `p`, which need not exist yet: its deepest existing
/// ancestor is canonicalized and the rest appended.
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

/// Refuse outputs that would land inside (or on) an input checkpoint or replace a file it is
/// read with, outputs that are input files, and existing outputs unless `existing` allows
/// them. Nothing the user had is overwritten silently. Works before the output directory
/// exists.
pub fn check_outputs(
    inputs: Inputs<'_>,
    outputs: &[&Path],
    existing: Existing,
) -> Result<(), ConvertError> {
    let checkpoint = match inputs.checkpoint {
        Some(d) => Some(
            d.canonicalize()
                .map_err(|e| crate::io::IoError::new("resolve", d, e))?,
        ),
        None => None,
    };
    let root = checkpoint.as_deref().and_then(Path::parent);
    let files: Vec<PathBuf> = inputs
        .files
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let rules = OutputRules {
        inputs: inputs.files.to_vec(),
        input_dirs: checkpoint.iter().cloned().collect(),
        force: existing == Existing::Allow,
        ..Default::default()
    };
    for o in outputs {
        let c = canonical_or_parent(o).ok_or_else(|| ConvertError::Unresolvable {
            path: o.to_path_buf(),
        })?;
        if let Some(input) = &checkpoint {
            if c.starts_with(input) {
                return Err(ConvertError::InsideInput {
                    output: o.to_path_buf(),
                    input: input.clone(),
                });
            }
        }
        // Files beside ckpt-0 (config.json, tokenizer.model) belong to the input too.
        if let (Some(r), Some(input)) = (root, &checkpoint) {
            let beside = c.parent() == Some(r) && c.exists();
            let named_side = c
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| INPUT_SIDE_FILES.contains(&n));
            if beside && (named_side || r.join("ckpt-0") == *input || r.join("ckpt") == *input) {
                return Err(ConvertError::OverwritesInput {
                    output: o.to_path_buf(),
                });
            }
        }
        if files.contains(&c) {
            return Err(ConvertError::ReplacesInput {
                output: o.to_path_buf(),
            });
        }
        // An existing directory here is where a safetensors conversion writes (its files are
        // checked one by one); only whether it may be written into is decided above.
        if std::fs::metadata(o).is_ok_and(|m| m.is_dir()) {
            if let Existing::Refuse(hint) = existing {
                return Err(ConvertError::Exists {
                    path: o.to_path_buf(),
                    hint,
                });
            }
            continue;
        }
        // The one output policy (`io::output`): inputs by device and inode (hard links too),
        // never anything but a regular file (a device node, FIFO or dangling symlink is
        // refused, also with --force), existing files only when allowed.
        match resolve_output(o, &rules) {
            Ok(_) => {}
            Err(OutputError::Exists { .. }) => {
                let Existing::Refuse(hint) = existing else {
                    unreachable!("force is set when existing outputs are allowed")
                };
                return Err(ConvertError::Exists {
                    path: o.to_path_buf(),
                    hint,
                });
            }
            Err(OutputError::IsInput { .. }) => {
                return Err(ConvertError::ReplacesInput {
                    output: o.to_path_buf(),
                })
            }
            Err(e) => return Err(ConvertError::Output(e)),
        }
    }
    Ok(())
}

/// The hint of a conversion's existing-output refusal.
pub const FORCE_OR_RESUME: &str = "--force to replace it, or --resume to keep finished files";

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
    let Ok(mut f) = crate::io::input::open_regular(path) else {
        return false;
    };
    let mut buf = vec![0u8; header.len()];
    f.read_exact(&mut buf).is_ok() && buf == header
}
