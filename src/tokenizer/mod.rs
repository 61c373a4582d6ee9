//! SentencePiece `tokenizer.model`: the vocabulary for export and an exact BPE encoder/decoder.
//!
//! Why: the GGUF writer needs the pieces, scores (f32 bit patterns) and types verbatim, and the
//! reference forward pass needs the same token ids the release's runner gets from the Python
//! `sentencepiece` library, without Python or a C++ build. The encoder reproduces the library's
//! BPE path step for step (identity normalizer, user-defined symbols matched longest-first and
//! kept atomic, merges by highest score with ties to the left, byte fallback), and is checked
//! against the library on hundreds of committed cases and thousands of fuzzed strings
//! (`tests/tokenizer.rs`, `tests/interop/tokenizer_spm.py`).
//!
//! Scope: BPE models whose normalizer is the identity (`precompiled_charsmap` empty), which
//! covers Grok-1. Other models are refused at load rather than encoded subtly wrong; their
//! vocabulary can still be read with [`proto::ModelProto::parse`].

mod decode;
mod encode;
pub mod gguf_vocab;
pub mod proto;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use crate::base::limits::TOKENIZER_MAX_FILE_BYTES;
use crate::io::term::escape;
use crate::io::IoError;

pub use gguf_vocab::GgufVocab;
pub use proto::{ModelProto, NormalizerSpec, Piece, PieceKind, ProtoError, TrainerSpec};

/// Everything that can go wrong loading a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Opening or mapping the file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is larger than [`TOKENIZER_MAX_FILE_BYTES`].
    #[error("{}: {size} bytes exceeds the tokenizer cap of {cap} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The protobuf is malformed (truncated, bad wire type, over a cap, bad UTF-8...).
    #[error("{}: malformed tokenizer.model at byte offset {offset}: {reason}", path.display())]
    Proto {
        /// The file.
        path: PathBuf,
        /// Absolute byte offset.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// Well-formed, but the model is inconsistent the way the library would refuse it.
    #[error("{}: invalid tokenizer model: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A model this encoder does not reproduce exactly (not BPE, or a non-identity normalizer).
    #[error("{}: unsupported tokenizer model: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
}

/// A small multiplicative hasher for the piece tables: keys are short, trusted-size byte
/// strings looked up once per symbol pair, where SipHash dominated encode time. Hash flooding
/// is not a concern (the keys come from the model, lookups from text the caller encodes).
#[derive(Default, Clone, Copy)]
pub(crate) struct PieceHasher(u64);

impl Hasher for PieceHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type PieceMap = HashMap<Box<[u8]>, u32, BuildHasherDefault<PieceHasher>>;

/// A loaded SentencePiece BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    model: ModelProto,
    /// NORMAL, USER_DEFINED and UNUSED pieces: the ones BPE merges may produce.
    normal: PieceMap,
    /// CONTROL, UNKNOWN and BYTE pieces (looked up first, as the library does).
    reserved: PieceMap,
    /// User-defined pieces for longest-prefix matching, and their distinct lengths, longest first.
    user: PieceMap,
    user_lens: Vec<usize>,
    /// First bytes of user-defined pieces (a quick reject before any lookup).
    user_first: [bool; 256],
    unk: u32,
    /// `<0xNN>` piece id per byte (the unk id where the piece is missing).
    byte_ids: [u32; 256],
    has_unused: bool,
}

fn invalid(path: &Path, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Tokenizer {
    /// Load `tokenizer.model` from disk: a regular file only (a FIFO or device is an error,
    /// never a hang), read with a bound of [`TOKENIZER_MAX_FILE_BYTES`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = Self::read_file(path)?;
        Self::from_bytes(&bytes, path)
    }

    /// The bytes of a `tokenizer.model` file, read as [`Tokenizer::from_file`] reads them
    /// (a regular file only, at most [`TOKENIZER_MAX_FILE_BYTES`]), for callers that copy the
    /// file (conversion writes it beside its output).
    pub fn read_file(path: &Path) -> Result<Vec<u8>, TokenizerError> {
        let Some(bytes) = crate::io::input::read_regular_capped(path, TOKENIZER_MAX_FILE_BYTES)?
        else {
            let size = std::fs::metadata(path).map_or(TOKENIZER_MAX_FILE_BYTES + 1, |m| m.len());
            return Err(TokenizerError::TooLarge {
                path: path.into(),
                size,
                cap: TOKENIZER_MAX_FILE_BYTES,
            });
        };
        Ok(bytes)
    }

    /// Parse a model held in memory; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        if bytes.len() as u64 > TOKENIZER_MAX_FILE_BYTES {
            let size = bytes.len() as u64;
            return Err(TokenizerError::TooLarge {
                path: path.into(),
                size,
                cap: TOKENIZER_MAX_FILE_BYTES,
            });
        }
        let model = ModelProto::parse(bytes).map_err(|e| TokenizerError::Proto {
            path: path.into(),
            offset: e.offset,
            reason: e.reason,
        })?;
        Self::from_model(model, path)
    }

    /// Build from a parsed model, applying the checks the library applies at load.
    pub fn from_model(model: ModelProto, path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let unsupported = |reason: String| TokenizerError::Unsupported {
            path: path.into(),
            reason,
        };
        if !model.has_trainer_spec || !model.has_normalizer_spec {
            let which = if model.has_trainer_spec {
                "normalizer_spec"
            } else {
                "trainer_spec"
            };
            return Err(invalid(path, format!("no {which} (a truncated file?)")));
        }
        if model.trainer.model_type != proto::MODEL_TYPE_BPE {
            return Err(unsupported(format!(
                "model_type {} (only BPE = 2 is implemented)",
                model.trainer.model_type
            )));
        }
        if !model.normalizer.precompiled_charsmap.is_empty() {
            return Err(unsupported(format!(
                "normalizer {:?} has precompiled rules (only the identity normalizer is implemented)",
                model.normalizer.name
            )));
        }
        if model
            .denormalizer
            .as_ref()
            .is_some_and(|d| !d.precompiled_charsmap.is_empty())
        {
            return Err(unsupported("a denormalizer with precompiled rules".into()));
        }
        if model.pieces.len() > u32::MAX as usize {
            return Err(invalid(path, "too many pieces"));
        }
        let mut normal = PieceMap::default();
        let mut reserved = PieceMap::default();
        let mut user = PieceMap::default();
        let mut user_first = [false; 256];
        let mut unk = None;
        let mut has_unused = false;
        for (i, p) in model.pieces.iter().enumerate() {
            let id = i as u32;
            if p.piece.is_empty() {
                return Err(invalid(path, format!("piece {id} is empty")));
            }
            let key: Box<[u8]> = p.piece.as_bytes().into();
            let map = match p.kind {
                PieceKind::Normal | PieceKind::UserDefined | PieceKind::Unused => &mut normal,
                PieceKind::Control | PieceKind::Unknown | PieceKind::Byte => &mut reserved,
            };
            if map.insert(key.clone(), id).is_some() {
                return Err(invalid(
                    path,
                    format!(
                        "piece \"{}\" (id {id}) is already defined",
                        escape(&p.piece)
                    ),
                ));
            }
            match p.kind {
                PieceKind::UserDefined => {
                    if let Some(&b) = key.first() {
                        user_first[usize::from(b)] = true;
                    }
                    user.insert(key, id);
                }
                PieceKind::Unknown if unk.is_some() => {
                    return Err(invalid(path, format!("second unknown piece at id {id}")))
                }
                PieceKind::Unknown => unk = Some(id),
                PieceKind::Byte if !model.trainer.byte_fallback => {
                    return Err(invalid(
                        path,
                        format!(
                            "byte piece \"{}\" (id {id}) but byte_fallback is off",
                            escape(&p.piece)
                        ),
                    ))
                }
                PieceKind::Unused => has_unused = true,
                _ => {}
            }
        }
        let unk = unk.ok_or_else(|| invalid(path, "no unknown piece"))?;
        check_declared_ids(&model).map_err(|r| invalid(path, r))?;
        let mut user_lens: Vec<usize> = user.keys().map(|k| k.len()).collect();
        user_lens.sort_unstable_by(|a, b| b.cmp(a));
        user_lens.dedup();
        let mut t = Tokenizer {
            model,
            normal,
            reserved,
            user,
            user_lens,
            user_first,
            unk,
            byte_ids: [unk; 256],
            has_unused,
        };
        for b in 0..=255u8 {
            t.byte_ids[usize::from(b)] = t.piece_to_id(&format!("<0x{b:02X}>"));
        }
        Ok(t)
    }

    /// The parsed model (trainer and normalizer options included).
    pub fn model(&self) -> &ModelProto {
        &self.model
    }
    /// The vocabulary in id order.
    pub fn pieces(&self) -> &[Piece] {
        &self.model.pieces
    }
    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.model.pieces.len()
    }
    /// True for an empty vocabulary (never, for a loaded model: it has an unk piece).
    pub fn is_empty(&self) -> bool {
        self.model.pieces.is_empty()
    }
    /// The piece text of `id`, if in range.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.model.pieces.get(id as usize).map(|p| p.piece.as_str())
    }
    /// The id of `piece`, or the unk id when the vocabulary lacks it (as the library does).
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.lookup(piece.as_bytes())
    }
    pub(crate) fn lookup(&self, piece: &[u8]) -> u32 {
        self.reserved
            .get(piece)
            .or_else(|| self.normal.get(piece))
            .copied()
            .unwrap_or(self.unk)
    }
    pub(crate) fn kind(&self, id: u32) -> Option<PieceKind> {
        self.model.pieces.get(id as usize).map(|p| p.kind)
    }
    /// The unknown piece's id (Grok-1: 3).
    pub fn unk_id(&self) -> u32 {
        self.unk
    }
    /// The BOS id: the trainer's `bos_piece` when it is a control piece (Grok-1: 1).
    pub fn bos_id(&self) -> Option<u32> {
        self.special(&self.model.trainer.bos_piece, PieceKind::Control)
    }
    /// The EOS id: the trainer's `eos_piece` when it is a control piece (Grok-1: 2).
    pub fn eos_id(&self) -> Option<u32> {
        self.special(&self.model.trainer.eos_piece, PieceKind::Control)
    }
    /// The padding id: the trainer's `pad_piece` when it is a control piece (Grok-1: 0).
    pub fn pad_id(&self) -> Option<u32> {
        self.special(&self.model.trainer.pad_piece, PieceKind::Control)
    }
    fn special(&self, piece: &str, kind: PieceKind) -> Option<u32> {
        let id = self.piece_to_id(piece);
        (self.kind(id) == Some(kind)).then_some(id)
    }
}

/// The trainer spec's declared special ids must name pieces of the vocabulary (issue #18: an
/// `unk_id` beyond it was accepted). `-1` means "none" for bos/eos/pad, as in
/// `sentencepiece_model.proto`. Like the library, encoding uses the piece *types* (the unknown
/// piece is the one of type UNKNOWN), so an in-range id that names another piece is tolerated.
fn check_declared_ids(model: &ModelProto) -> Result<(), String> {
    let n = model.pieces.len();
    let t = &model.trainer;
    let in_vocab = |id: i32| usize::try_from(id).is_ok_and(|i| i < n);
    if !in_vocab(t.unk_id) {
        return Err(format!(
            "trainer_spec.unk_id {} is outside the vocabulary (0..{n})",
            t.unk_id
        ));
    }
    for (name, id) in [
        ("bos_id", t.bos_id),
        ("eos_id", t.eos_id),
        ("pad_id", t.pad_id),
    ] {
        if id != -1 && !in_vocab(id) {
            return Err(format!(
                "trainer_spec.{name} {id} is outside the vocabulary (0..{n}; -1 means none)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
