//! What a run reads: the model's stored bytes per layer (so bytes read per run can be reported
//! next to the model's size), a cheap fingerprint that tells one model from another, and the
//! bytes the process actually fetched from storage (`/proc/self/io`).
//!
//! "Bytes read per run" is COMPUTED from the tensors the run touched, not counted at the weight
//! source: every call of a layer applies all of that layer's tensors (at full-batch sizes every
//! expert receives tokens), every output-head call streams the whole embedding, and the input
//! gather reads one embedding row per token. So a run whose chunks fit in one group reads each
//! layer once: bytes per run ≈ the model's size, whatever the number of chunks. The measured
//! storage reads (`read_bytes` of `/proc/self/io`) are reported beside it: they exclude what
//! the page cache served and include the scratch files.

use super::EvalError;
use crate::gguf::GgufSet;
use crate::io::IoError;
use crate::model::roles::ROLES;
use crate::model::Role;
use crate::reference::sources::Source;
use crate::safetensors_io::StReader;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Stored bytes of a model, by what uses them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Footprint {
    /// The model's files and their sizes.
    pub files: Vec<(PathBuf, u64)>,
    /// Stored bytes of each decoder layer's tensors.
    pub per_layer: Vec<u64>,
    /// Stored bytes of the embedding (also the output head).
    pub embed: u64,
    /// Every other tensor (the final norm).
    pub other: u64,
}

/// The layer index in a tensor name of any format grokit reads (`blk.3.…`,
/// `transformer/decoder_layer_3/…`, `model.layers.3.…`, `transformer.decoder_layer.3.…`).
pub fn layer_of(name: &str) -> Option<usize> {
    for r in ROLES {
        for t in [r.path, r.gguf, r.hf, r.jax] {
            let Some((pre, _)) = t.split_once("{L}") else {
                continue;
            };
            let Some(rest) = name.strip_prefix(pre) else {
                continue;
            };
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 && matches!(rest.as_bytes().get(n), Some(b'.' | b'/')) {
                return rest[..n].parse().ok();
            }
        }
    }
    None
}

fn is_embed(name: &str) -> bool {
    let i = Role::Embed.info();
    [i.path, i.gguf, i.hf, i.jax].contains(&name)
}

fn gguf_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::file(path, None, e.to_string())
}

impl Footprint {
    /// The footprint of the model at `path`, opened as `src`.
    pub fn of(path: &Path, src: &Source, n_layers: usize) -> Result<Footprint, EvalError> {
        let mut f = Footprint {
            per_layer: vec![0; n_layers],
            ..Footprint::default()
        };
        let mut add = |name: &str, bytes: u64| match layer_of(name) {
            Some(l) if l < n_layers => f.per_layer[l] += bytes,
            _ if is_embed(name) => f.embed += bytes,
            _ => f.other += bytes,
        };
        let mut files: BTreeMap<PathBuf, u64> = BTreeMap::new();
        match src {
            Source::Release(ck) => {
                for t in &ck.ck.tensors {
                    add(&t.spec.path, t.payload_bytes());
                    files.insert(t.file.clone(), t.file_len);
                }
            }
            Source::Gguf(_) => {
                let set = GgufSet::open(path).map_err(|e| gguf_err(path, e))?;
                for (_, t) in set.tensors() {
                    add(&t.name, t.nbytes);
                }
                for p in set.paths() {
                    let len = std::fs::metadata(&p)
                        .map_err(|e| IoError::new("stat", &p, e))?
                        .len();
                    files.insert(p, len);
                }
            }
            Source::Safetensors(_) => {
                let r = StReader::open(path).map_err(|e| gguf_err(path, e))?;
                for t in r.tensors() {
                    add(&t.name, t.data_offsets.1.saturating_sub(t.data_offsets.0));
                }
                for p in r.files() {
                    let len = std::fs::metadata(p)
                        .map_err(|e| IoError::new("stat", p, e))?
                        .len();
                    files.insert(p.to_path_buf(), len);
                }
            }
        }
        f.files = files.into_iter().collect();
        Ok(f)
    }

    /// Total bytes of the model's files.
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }

    /// Stored bytes of all tensors.
    pub fn tensor_bytes(&self) -> u64 {
        self.per_layer.iter().sum::<u64>() + self.embed + self.other
    }

    /// A fingerprint of the model: SHA-256 over each file's name (not its directory, so copies on
    /// other machines agree), size, and the SHA-256 of its first and last 64 KiB. It tells
    /// models, quantizations and layer counts apart without reading hundreds of GB; it is not a
    /// content hash (`grokit verify` is).
    pub fn fingerprint(&self) -> Result<String, EvalError> {
        const EDGE: u64 = 64 << 10;
        let mut h = Sha256::new();
        let mut names: Vec<(String, &PathBuf, u64)> = self
            .files
            .iter()
            .map(|(p, n)| {
                let name = p
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, p, *n)
            })
            .collect();
        names.sort();
        for (name, p, len) in names {
            let f = std::fs::File::open(p).map_err(|e| IoError::new("open", p, e))?;
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(len.to_le_bytes());
            for start in [0, len.saturating_sub(EDGE)] {
                let mut buf = vec![0u8; EDGE.min(len) as usize];
                f.read_exact_at(&mut buf, start)
                    .map_err(|e| IoError::new("read", p, e))?;
                h.update(Sha256::digest(&buf));
            }
        }
        Ok(crate::base::hex::encode(&h.finalize()))
    }
}

/// Bytes this process has fetched from storage so far (`read_bytes` of `/proc/self/io`:
/// page-cache hits excluded), when the kernel reports it.
pub fn storage_read_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/io").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn layer_names_of_every_format() {
        assert_eq!(layer_of("blk.12.ffn_up_exps.weight"), Some(12));
        assert_eq!(layer_of("transformer/decoder_layer_3/router/w"), Some(3));
        assert_eq!(
            layer_of("model.layers.7.moe_block.experts.1.linear.weight_packed"),
            Some(7)
        );
        assert_eq!(
            layer_of("transformer.decoder_layer.0.multi_head_attention.query.weight"),
            Some(0)
        );
        assert_eq!(layer_of("token_embd.weight"), None);
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert!(is_embed("token_embd.weight"));
        assert!(is_embed("language_model/in_out_embed/embeddings"));
    }
}
