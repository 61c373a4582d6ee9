//! [`Weights`] for every format grokit reads, so the reference model can run the release, a
//! converted or quantized checkpoint, and `grokit compare` can measure one against another:
//! the release's pickles ([`release`]), GGUF files and split sets ([`gguf`]), and safetensors in
//! both layouts, float or compressed-tensors ([`safetensors`]).
//!
//! Each source hands the model its matrices as stored (see [`super::store`]) and derives the
//! [`ModelDims`] from its own metadata. Before anything is sized by them, the dims pass
//! [`ModelDims::problem`] (caps, consistency, finite positive floats; an error names the key and
//! the file) and [`verify_shapes`]: every tensor the forward pass will read exists with the
//! shape the dims give it. So a `grok.block_count` of 2^40 or a `head_dim` of 10^12 is an error
//! naming the key before any allocation, never an abort.

pub mod gguf;
pub mod release;
pub mod safetensors;

pub use gguf::GgufWeights;
pub use release::ReleaseWeights;
pub use safetensors::StWeights;

use super::store::{WeightId, Weights};
use super::{ModelDims, ReferenceError};
use crate::model::keys::{KeyError, KeyFormat};
use crate::model::{Config, Role};
use crate::source::grok::OpenOptions;
use std::path::Path;

/// The logical `[k, n]` of matrix `role` under `dims` (`None` for the norms, which are
/// vectors of `d_model`).
pub fn logical_shape(role: Role, d: &ModelDims) -> Option<[usize; 2]> {
    let (dm, q, kv, f) = (d.d_model, d.q_width(), d.kv_width(), d.ffn);
    Some(match role {
        Role::Embed => [dm, d.vocab],
        Role::AttnQ => [dm, q],
        Role::AttnK | Role::AttnV => [dm, kv],
        Role::AttnO => [q, dm],
        Role::Router => [dm, d.n_experts],
        Role::MoeGate | Role::MoeUp => [dm, f],
        Role::MoeDown => [f, dm],
        _ => return None,
    })
}

/// The dims fields that set the shape of `role` (for error messages).
fn shape_fields(role: Role) -> &'static [&'static str] {
    match role {
        Role::Embed => &["vocab", "d_model"],
        Role::AttnQ | Role::AttnO => &["d_model", "n_q_heads", "head_dim"],
        Role::AttnK | Role::AttnV => &["d_model", "n_kv_heads", "head_dim"],
        Role::Router => &["d_model", "n_experts"],
        Role::MoeGate | Role::MoeUp | Role::MoeDown => &["d_model", "ffn", "n_experts"],
        _ => &["d_model"],
    }
}

fn keys(fields: &[&'static str], format: KeyFormat) -> String {
    fields
        .iter()
        .map(|f| super::dims::key_name(f, format))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A [`KeyError`] of the key table's reader as an error naming `file`, the key and (through
/// `raw`, the value as the file holds it) what was found.
pub(crate) fn key_error(
    file: &str,
    e: KeyError,
    raw: &dyn Fn(&str) -> Option<String>,
) -> ReferenceError {
    let key = e.key();
    let reason = match &e {
        KeyError::Missing { .. } => "missing".to_string(),
        KeyError::WrongKind { wanted, .. } => {
            let wanted = if *wanted == "count" {
                "non-negative integer"
            } else {
                wanted
            };
            let found = raw(key).unwrap_or_else(|| "the value".to_string());
            format!("{found} is not a {wanted}")
        }
    };
    ReferenceError::Metadata {
        file: file.to_string(),
        key: key.to_string(),
        reason,
    }
}

/// Check `dims` (caps and sanity, naming the key in `format` and `file`), then every tensor the
/// forward pass reads against them: the embedding and final norm, then layer by layer, stopping
/// at the first missing or misshapen tensor. Reads only metadata and the norm vectors.
pub fn verify_shapes(
    w: &dyn Weights,
    dims: &ModelDims,
    file: &str,
    format: KeyFormat,
) -> Result<(), ReferenceError> {
    if let Some(p) = dims.problem() {
        return Err(p.into_error(file, format));
    }
    let meta = |fields: &[&'static str], reason: String| ReferenceError::Metadata {
        file: file.to_string(),
        key: keys(fields, format),
        reason,
    };
    let check = |id: WeightId| -> Result<(), ReferenceError> {
        let missing = |e: ReferenceError| {
            if id.layer.is_some() {
                meta(
                    &["n_layers"],
                    format!(
                        "{} layers, but layer {} cannot be read: {e}",
                        dims.n_layers,
                        id.layer.unwrap_or(0)
                    ),
                )
            } else {
                e
            }
        };
        match logical_shape(id.role, dims) {
            Some(want) => {
                let info = w.info(id).map_err(missing)?;
                if [info.k, info.n] != want {
                    return Err(meta(
                        shape_fields(id.role),
                        format!(
                            "{id} is [{}, {}] (input, output) but these dimensions give {want:?}",
                            info.k, info.n
                        ),
                    ));
                }
            }
            None => {
                let v = w.vector(id).map_err(missing)?;
                if v.len() != dims.d_model {
                    return Err(meta(
                        &["d_model"],
                        format!("{id} has {} values, not {}", v.len(), dims.d_model),
                    ));
                }
            }
        }
        Ok(())
    };
    check(WeightId::global(Role::Embed))?;
    check(WeightId::global(Role::FinalNorm))?;
    for l in 0..dims.n_layers {
        for r in crate::model::roles::ROLES {
            if r.slot.is_none() {
                continue;
            }
            if r.experts {
                for e in 0..dims.n_experts {
                    check(WeightId::expert(r.role, l, e))?;
                }
            } else {
                check(WeightId::layer(r.role, l))?;
            }
        }
    }
    Ok(())
}

/// Any model grokit can run: the release, a GGUF, or safetensors.
pub enum Source {
    /// The release's pickles.
    Release(release::ReleaseWeights),
    /// A GGUF file or split set.
    Gguf(GgufWeights),
    /// A safetensors directory or file.
    Safetensors(StWeights),
}

impl Source {
    /// Open by sniffing the path: a `.gguf` file, a directory/file with `.safetensors`, else the
    /// release. The dims are checked against the tensors present before this returns.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Source, ReferenceError> {
        if path.extension().is_some_and(|e| e == "gguf") {
            return Ok(Source::Gguf(GgufWeights::open(path)?));
        }
        let is_st = (crate::io::input::is_non_dir(path)
            && path.extension().is_some_and(|e| e == "safetensors"))
            || (path.is_dir()
                && (path.join("model.safetensors").exists()
                    || path.join("model.safetensors.index.json").exists()));
        if is_st {
            return Ok(Source::Safetensors(StWeights::open(path)?));
        }
        Ok(Source::Release(release::ReleaseWeights::open(path, opts)?))
    }
    /// The configuration (ids, context and the hyper-parameters as read).
    pub fn config(&self) -> &Config {
        match self {
            Source::Release(c) => &c.ck.config,
            Source::Gguf(g) => &g.config,
            Source::Safetensors(s) => &s.config,
        }
    }
    /// The checked dims.
    pub fn dims(&self) -> &ModelDims {
        match self {
            Source::Release(c) => &c.dims,
            Source::Gguf(g) => &g.dims,
            Source::Safetensors(s) => &s.dims,
        }
    }
    /// The weights.
    pub fn weights(&self) -> &dyn Weights {
        match self {
            Source::Release(c) => c,
            Source::Gguf(g) => g,
            Source::Safetensors(s) => s,
        }
    }
    /// Bytes of memory-mapped weights (0 for the release, which is read with `pread`).
    pub fn mapped_bytes(&self) -> u64 {
        match self {
            Source::Release(_) => 0,
            Source::Gguf(g) => g.mapped_bytes(),
            Source::Safetensors(s) => s.mapped_bytes(),
        }
    }
    /// Keep used pages of mapped weights resident instead of dropping them after each piece
    /// (a no-op for the release).
    pub fn set_keep_resident(&self, keep: bool) {
        match self {
            Source::Release(_) => {}
            Source::Gguf(g) => g.set_keep_resident(keep),
            Source::Safetensors(s) => s.set_keep_resident(keep),
        }
    }
    /// What an output of a command reading this source may not replace (`io::output`): every
    /// file read, and the directory holding the shards with the `config.json` and
    /// `tokenizer.model` beside it.
    pub fn output_rules(&self) -> crate::io::output::OutputRules {
        let (files, dir) = match self {
            Source::Release(c) => (Vec::new(), c.ck.dir.clone()),
            Source::Gguf(g) => {
                let p = g.paths();
                let dir = p.first().and_then(|f| f.parent()).map(Path::to_path_buf);
                (p, dir.unwrap_or_default())
            }
            Source::Safetensors(s) => {
                let p = s.paths();
                let dir = p.first().and_then(|f| f.parent()).map(Path::to_path_buf);
                (p, dir.unwrap_or_default())
            }
        };
        let mut inputs = files;
        for d in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            for n in [
                "config.json",
                "tokenizer.model",
                "model.safetensors.index.json",
            ] {
                inputs.push(d.join(n));
            }
        }
        crate::io::output::OutputRules {
            inputs,
            // Only the release's shard directory: logits are often written beside a GGUF or
            // into a converted model's folder.
            input_dirs: match self {
                Source::Release(_) => vec![dir],
                _ => Vec::new(),
            },
            ..Default::default()
        }
    }
    /// A short description of the format.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Release(_) => "release checkpoint",
            Source::Gguf(_) => "GGUF",
            Source::Safetensors(_) => "safetensors",
        }
    }
}
