//! The SentencePiece encoder built from a GGUF's `tokenizer.ggml.*` metadata.
//!
//! Why: a GGUF written by grokit (or by llama.cpp's converter for a SentencePiece model)
//! carries the whole vocabulary, so `forward`/`compare --prompt` on a GGUF need no separate
//! `tokenizer.model` (issue #18). What the GGUF stores is exactly what the BPE encoder uses:
//! the pieces in id order, their scores (f32 bit patterns), their types (the same numbers as
//! SentencePiece's `ModelProto.SentencePiece.Type`), and the special ids. The keys are listed
//! in [`keys`], once, for the writer (`convert::gguf::tokenizer_kvs`) and for readers.
//!
//! What the GGUF does not store, and the values used for it (llama.cpp's semantics for a
//! `tokenizer.ggml.model = "llama"` vocabulary, and Grok-1's own settings):
//! - model type BPE; normalizer identity (`tokenizer.ggml.precompiled_charsmap`, when present
//!   and non-empty, is refused: its rules are not implemented);
//! - `add_dummy_prefix` = `tokenizer.ggml.add_space_prefix`, default true;
//! - `remove_extra_whitespaces` = `tokenizer.ggml.remove_extra_whitespaces`, default false
//!   (llama.cpp never collapses spaces for this model type);
//! - whitespace escaped as `▁`, `▁` as a prefix (not a suffix);
//! - byte fallback on exactly when the vocabulary has byte pieces (`<0xNN>`, type 6): the
//!   library refuses byte pieces without it, and without byte pieces it changes nothing;
//! - the unknown piece's decode surface: the library default ` ⁇ `.
//!
//! For Grok-1's `tokenizer.model` every one of these equals the file's own setting, and
//! `tests/tokenizer.rs` proves the encoder built here encodes every library case identically
//! to the one loaded from `tokenizer.model` (tiny12's 512 pieces and the real 131,072).
//!
//! Layers: this module is L1 and does not import `gguf` (L2); the caller reads the values with
//! its GGUF reader and passes them as plain slices ([`GgufVocab`]).

use super::proto::{self, ModelProto, NormalizerSpec, Piece, PieceKind, TrainerSpec};
use super::{Tokenizer, TokenizerError};
use crate::base::limits::{TOKENIZER_MAX_PIECES, TOKENIZER_MAX_PIECE_BYTES};
use crate::io::term::escape;
use std::path::Path;

/// The GGUF metadata keys of a SentencePiece vocabulary (llama.cpp's names).
pub mod keys {
    /// Tokenizer model name; `"llama"` for SentencePiece BPE.
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// Pre-tokenizer name (`"default"`; unused by SentencePiece models).
    pub const PRE: &str = "tokenizer.ggml.pre";
    /// Piece strings in id order (array of strings).
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    /// Piece scores in id order (array of f32).
    pub const SCORES: &str = "tokenizer.ggml.scores";
    /// Piece types in id order (array of i32, SentencePiece's type numbers).
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    /// Beginning-of-sequence id (u32).
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    /// End-of-sequence id (u32).
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    /// Unknown-piece id (u32).
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// Padding id (u32).
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    /// Whether a runner adds BOS (bool).
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    /// Whether a runner adds EOS (bool).
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    /// SentencePiece's `add_dummy_prefix` (bool; absent = true).
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    /// SentencePiece's `remove_extra_whitespaces` (bool; absent = false).
    pub const REMOVE_EXTRA_WHITESPACES: &str = "tokenizer.ggml.remove_extra_whitespaces";
    /// SentencePiece's normalization rules (array of u8; absent or empty = identity).
    pub const PRECOMPILED_CHARSMAP: &str = "tokenizer.ggml.precompiled_charsmap";
}

/// `tokenizer.ggml.model` of a SentencePiece vocabulary.
pub const SPM_MODEL: &str = "llama";

/// A GGUF's tokenizer metadata as plain values (`None` = the key is absent). Integer ids are
/// taken as u64 so a caller can pass any GGUF integer type without truncating it; they are
/// checked against the vocabulary here.
#[derive(Debug, Clone, Copy, Default)]
pub struct GgufVocab<'a> {
    /// [`keys::MODEL`].
    pub model: &'a str,
    /// [`keys::TOKENS`].
    pub tokens: &'a [String],
    /// [`keys::SCORES`] (required: BPE merges follow them).
    pub scores: Option<&'a [f32]>,
    /// [`keys::TOKEN_TYPE`] (required: user-defined, control, unknown and byte pieces behave
    /// differently).
    pub token_types: Option<&'a [i32]>,
    /// [`keys::UNK_ID`]; absent: the one piece of type UNKNOWN.
    pub unknown_token_id: Option<u64>,
    /// [`keys::BOS_ID`].
    pub bos_token_id: Option<u64>,
    /// [`keys::EOS_ID`].
    pub eos_token_id: Option<u64>,
    /// [`keys::PAD_ID`].
    pub padding_token_id: Option<u64>,
    /// [`keys::ADD_SPACE_PREFIX`].
    pub add_space_prefix: Option<bool>,
    /// [`keys::REMOVE_EXTRA_WHITESPACES`].
    pub remove_extra_whitespaces: Option<bool>,
    /// [`keys::PRECOMPILED_CHARSMAP`].
    pub precompiled_charsmap: Option<&'a [u8]>,
}

impl Tokenizer {
    /// Build the encoder from a GGUF's tokenizer metadata (see the module docs for what is
    /// assumed and [`GgufVocab`] for what is required). `path` names the GGUF in errors, which
    /// also name the key at fault. Then the same load checks as [`Tokenizer::from_model`].
    pub fn from_gguf_metadata(
        v: &GgufVocab<'_>,
        path: impl AsRef<Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        let path = path.as_ref();
        let model = model_from_gguf(v).map_err(|e| match e {
            Refusal::Invalid(reason) => TokenizerError::Invalid {
                path: path.into(),
                reason,
            },
            Refusal::Unsupported(reason) => TokenizerError::Unsupported {
                path: path.into(),
                reason,
            },
        })?;
        Tokenizer::from_model(model, path)
    }
}

enum Refusal {
    Invalid(String),
    Unsupported(String),
}

/// The `ModelProto` equivalent to `v` (checked, before any table is built from it).
fn model_from_gguf(v: &GgufVocab<'_>) -> Result<ModelProto, Refusal> {
    use Refusal::{Invalid, Unsupported};
    if v.model != SPM_MODEL {
        return Err(Unsupported(format!(
            "{} is \"{}\"; only \"{SPM_MODEL}\" (SentencePiece BPE) vocabularies are built from GGUF metadata",
            keys::MODEL,
            escape(v.model)
        )));
    }
    let n = v.tokens.len();
    if n == 0 {
        return Err(Invalid(format!("{} is empty or absent", keys::TOKENS)));
    }
    if n > TOKENIZER_MAX_PIECES {
        return Err(Invalid(format!(
            "{} holds {n} pieces, over the cap of {TOKENIZER_MAX_PIECES}",
            keys::TOKENS
        )));
    }
    let scores = v
        .scores
        .ok_or_else(|| Invalid(format!("{} is absent (BPE needs the scores)", keys::SCORES)))?;
    let types = v.token_types.ok_or_else(|| {
        Invalid(format!(
            "{} is absent (the piece types are needed)",
            keys::TOKEN_TYPE
        ))
    })?;
    for (key, len) in [
        (keys::SCORES, scores.len()),
        (keys::TOKEN_TYPE, types.len()),
    ] {
        if len != n {
            return Err(Invalid(format!(
                "{key} has {len} entries but {} has {n}",
                keys::TOKENS
            )));
        }
    }
    if v.precompiled_charsmap.is_some_and(|m| !m.is_empty()) {
        return Err(Unsupported(format!(
            "{} holds normalization rules (only the identity normalizer is implemented)",
            keys::PRECOMPILED_CHARSMAP
        )));
    }
    let mut pieces = Vec::with_capacity(n);
    for (i, ((t, &score), &ty)) in v.tokens.iter().zip(scores).zip(types).enumerate() {
        if t.len() as u64 > TOKENIZER_MAX_PIECE_BYTES {
            return Err(Invalid(format!(
                "{}[{i}] is {} bytes, over the cap of {TOKENIZER_MAX_PIECE_BYTES}",
                keys::TOKENS,
                t.len()
            )));
        }
        let kind = PieceKind::from_i32(ty).ok_or_else(|| {
            Invalid(format!(
                "{}[{i}] = {ty} is not a SentencePiece piece type (1..=6)",
                keys::TOKEN_TYPE
            ))
        })?;
        pieces.push(Piece {
            piece: t.clone(),
            score,
            kind,
        });
    }
    let id_of = |key: &str, id: Option<u64>| -> Result<Option<usize>, Refusal> {
        match id {
            None => Ok(None),
            Some(id) => match usize::try_from(id) {
                Ok(i) if i < n => Ok(Some(i)),
                _ => Err(Invalid(format!(
                    "{key} {id} is outside the vocabulary (0..{n})"
                ))),
            },
        }
    };
    let unk = match id_of(keys::UNK_ID, v.unknown_token_id)? {
        Some(u) if pieces[u].kind != PieceKind::Unknown => {
            return Err(Invalid(format!(
                "{} {u} names \"{}\", which is not the unknown piece (type 2)",
                keys::UNK_ID,
                escape(&pieces[u].piece)
            )))
        }
        Some(u) => Some(u),
        None => pieces.iter().position(|p| p.kind == PieceKind::Unknown),
    };
    let bos = id_of(keys::BOS_ID, v.bos_token_id)?;
    let eos = id_of(keys::EOS_ID, v.eos_token_id)?;
    let pad = id_of(keys::PAD_ID, v.padding_token_id)?;
    let text = |id: Option<usize>| id.map_or_else(String::new, |i| pieces[i].piece.clone());
    let as_i32 = |id: Option<usize>| id.map_or(-1, |i| i32::try_from(i).unwrap_or(-1));
    let trainer = TrainerSpec {
        model_type: proto::MODEL_TYPE_BPE,
        vocab_size: i32::try_from(n).unwrap_or(i32::MAX),
        byte_fallback: pieces.iter().any(|p| p.kind == PieceKind::Byte),
        treat_whitespace_as_suffix: false,
        unk_id: as_i32(unk).max(0),
        bos_id: as_i32(bos),
        eos_id: as_i32(eos),
        pad_id: as_i32(pad),
        unk_piece: text(unk),
        bos_piece: text(bos),
        eos_piece: text(eos),
        pad_piece: text(pad),
        ..TrainerSpec::default()
    };
    let normalizer = NormalizerSpec {
        name: "identity".into(),
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: v.add_space_prefix.unwrap_or(true),
        remove_extra_whitespaces: v.remove_extra_whitespaces.unwrap_or(false),
        escape_whitespaces: true,
    };
    Ok(ModelProto {
        pieces,
        trainer,
        normalizer,
        denormalizer: None,
        has_trainer_spec: true,
        has_normalizer_spec: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
        let t = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab"];
        let s = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0];
        let k = [2, 3, 3, 1, 1, 1, 1, 1];
        (
            t.iter().map(|x| x.to_string()).collect(),
            s.to_vec(),
            k.to_vec(),
        )
    }

    #[test]
    fn builds_and_encodes() {
        let (t, s, k) = vocab();
        let v = GgufVocab {
            model: "llama",
            tokens: &t,
            scores: Some(&s),
            token_types: Some(&k),
            unknown_token_id: Some(0),
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            ..Default::default()
        };
        let tok = Tokenizer::from_gguf_metadata(&v, "m.gguf").unwrap();
        assert_eq!(
            (tok.unk_id(), tok.bos_id(), tok.eos_id()),
            (0, Some(1), Some(2))
        );
        assert_eq!(tok.pad_id(), None);
        assert_eq!(tok.encode_pieces("ab a"), ["▁a", "b", "▁a"]);
        assert_eq!(tok.decode(&tok.encode("ab a")), "ab a");
    }

    #[test]
    fn refusals_name_the_key() {
        let (t, s, k) = vocab();
        let good = GgufVocab {
            model: "llama",
            tokens: &t,
            scores: Some(&s),
            token_types: Some(&k),
            ..Default::default()
        };
        let short = [0.0f32; 3];
        let bad_type = [2, 3, 3, 1, 1, 1, 1, 9];
        let no_unk = [1, 3, 3, 1, 1, 1, 1, 1];
        let cases: Vec<(GgufVocab<'_>, &str)> = vec![
            (
                GgufVocab {
                    model: "gpt2",
                    ..good
                },
                "tokenizer.ggml.model is \"gpt2\"",
            ),
            (
                GgufVocab {
                    tokens: &[],
                    ..good
                },
                "tokenizer.ggml.tokens is empty",
            ),
            (
                GgufVocab {
                    scores: None,
                    ..good
                },
                "tokenizer.ggml.scores is absent",
            ),
            (
                GgufVocab {
                    scores: Some(&short),
                    ..good
                },
                "tokenizer.ggml.scores has 3 entries",
            ),
            (
                GgufVocab {
                    token_types: Some(&bad_type),
                    ..good
                },
                "token_type[7] = 9",
            ),
            (
                GgufVocab {
                    unknown_token_id: Some(8),
                    ..good
                },
                "unknown_token_id 8 is outside the vocabulary (0..8)",
            ),
            (
                GgufVocab {
                    unknown_token_id: Some(u64::MAX),
                    ..good
                },
                "is outside the vocabulary",
            ),
            (
                GgufVocab {
                    unknown_token_id: Some(4),
                    ..good
                },
                "not the unknown piece",
            ),
            (
                GgufVocab {
                    bos_token_id: Some(1 << 40),
                    ..good
                },
                "bos_token_id 1099511627776 is outside",
            ),
            (
                GgufVocab {
                    padding_token_id: Some(8),
                    ..good
                },
                "padding_token_id 8 is outside",
            ),
            (
                GgufVocab {
                    precompiled_charsmap: Some(&[1]),
                    ..good
                },
                "precompiled_charsmap",
            ),
            (
                GgufVocab {
                    token_types: Some(&no_unk),
                    ..good
                },
                "no unknown piece",
            ),
        ];
        for (v, want) in cases {
            let e = Tokenizer::from_gguf_metadata(&v, "x.gguf")
                .unwrap_err()
                .to_string();
            assert!(e.contains("x.gguf") && e.contains(want), "{want}: {e}");
        }
        assert!(Tokenizer::from_gguf_metadata(&good, "x.gguf").is_ok());
        // an empty charsmap is the identity
        let id = GgufVocab {
            precompiled_charsmap: Some(&[]),
            ..good
        };
        assert!(Tokenizer::from_gguf_metadata(&id, "x.gguf").is_ok());
    }
}
