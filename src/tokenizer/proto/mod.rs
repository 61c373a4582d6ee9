//! A small, bounded reader for SentencePiece's `ModelProto` (the `tokenizer.model` format).
//!
//! Why hand-written: the format needs about a dozen fields of three messages, and a protobuf
//! crate would pull a code generator (or a build-time `protoc`) and a dozen runtime crates for
//! that. The fields, their numbers and defaults are in `docs/formats/sentencepiece-model.md`.
//! The reader ([`wire`]) walks the protobuf wire format on a bounded byte cursor, so every
//! length is checked against the bytes actually present before anything is sliced, every field
//! with a known number must arrive with its declared wire type, unknown fields are skipped by
//! wire type, and every error carries the absolute byte offset where it was found.
//!
//! Protobuf semantics kept: the last occurrence of a scalar field wins, repeated occurrences of
//! an embedded message merge, and absent fields take the defaults from
//! `sentencepiece_model.proto` (notably `remove_extra_whitespaces = true`).

pub mod wire;

use wire::err;
pub use wire::{Field, FieldReader, ProtoError, WireValue};

use crate::base::limits::{
    TOKENIZER_MAX_PIECES, TOKENIZER_MAX_PIECE_BYTES, TOKENIZER_MAX_SPEC_FIELD_BYTES,
};

/// `ModelProto.SentencePiece.Type`. The numbers equal llama.cpp's token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PieceKind {
    /// An ordinary piece, produced by BPE merges.
    Normal = 1,
    /// The unknown piece (`[UNK]`).
    Unknown = 2,
    /// A control symbol (`[BOS]`, `[EOS]`, `[PAD]`): never produced from text.
    Control = 3,
    /// A user-defined symbol: matched in text before BPE and kept atomic.
    UserDefined = 4,
    /// A piece reserved but unused (re-segmented into its parts when BPE produces it).
    Unused = 5,
    /// A byte-fallback piece `<0xNN>`.
    Byte = 6,
}

impl PieceKind {
    /// The enum number from the proto (and GGUF `tokenizer.ggml.token_type`).
    pub fn as_i32(self) -> i32 {
        self as i32
    }
    /// Parse the enum number; `None` for values the schema does not define.
    pub fn from_i32(v: i32) -> Option<PieceKind> {
        Some(match v {
            1 => PieceKind::Normal,
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            5 => PieceKind::Unused,
            6 => PieceKind::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text (SentencePiece's `▁` U+2581 marks a space).
    pub piece: String,
    /// The score exactly as stored (bit pattern preserved, including `-0.0`).
    pub score: f32,
    /// The piece type.
    pub kind: PieceKind,
}

/// `TrainerSpec.ModelType`.
pub const MODEL_TYPE_UNIGRAM: i32 = 1;
/// `TrainerSpec.ModelType` BPE, the only type grokit encodes.
pub const MODEL_TYPE_BPE: i32 = 2;

/// The `TrainerSpec` fields that affect encoding, decoding or export (defaults per the schema).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    /// 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: i32,
    /// Declared vocabulary size.
    pub vocab_size: i32,
    /// Longest trained piece in characters.
    pub max_sentencepiece_length: i32,
    /// Training-time pre-split by Unicode script.
    pub split_by_unicode_script: bool,
    /// Training-time pre-split at whitespace.
    pub split_by_whitespace: bool,
    /// Training-time pre-split between digits and non-digits.
    pub split_by_number: bool,
    /// Training-time split of every digit.
    pub split_digits: bool,
    /// `▁` goes at the end of words instead of the start.
    pub treat_whitespace_as_suffix: bool,
    /// Training allowed pieces made only of whitespace.
    pub allow_whitespace_only_pieces: bool,
    /// Unknown characters become `<0xNN>` byte pieces.
    pub byte_fallback: bool,
    /// Declared unk id.
    pub unk_id: i32,
    /// Declared bos id (-1 = none).
    pub bos_id: i32,
    /// Declared eos id (-1 = none).
    pub eos_id: i32,
    /// Declared pad id (-1 = none).
    pub pad_id: i32,
    /// The unk piece text.
    pub unk_piece: String,
    /// The bos piece text.
    pub bos_piece: String,
    /// The eos piece text.
    pub eos_piece: String,
    /// The pad piece text.
    pub pad_piece: String,
    /// What decoding prints for the unk piece.
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: MODEL_TYPE_UNIGRAM,
            vocab_size: 8000,
            max_sentencepiece_length: 16,
            split_by_unicode_script: true,
            split_by_whitespace: true,
            split_by_number: true,
            split_digits: false,
            treat_whitespace_as_suffix: false,
            allow_whitespace_only_pieces: false,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            pad_piece: "<pad>".into(),
            unk_surface: " \u{2047} ".into(),
        }
    }
}

/// `NormalizerSpec` (defaults per the schema).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    /// Rule name (`identity` for Grok-1).
    pub name: String,
    /// Compiled normalization rules; empty means identity.
    pub precompiled_charsmap: Vec<u8>,
    /// Prepend `▁` to non-empty input.
    pub add_dummy_prefix: bool,
    /// Drop leading/trailing spaces and collapse runs.
    pub remove_extra_whitespaces: bool,
    /// Replace ' ' by `▁`.
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A parsed `ModelProto`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelProto {
    /// The vocabulary, in id order.
    pub pieces: Vec<Piece>,
    /// Trainer options.
    pub trainer: TrainerSpec,
    /// Normalizer options.
    pub normalizer: NormalizerSpec,
    /// The optional decode-side normalizer (field 5).
    pub denormalizer: Option<NormalizerSpec>,
    /// Whether `trainer_spec` was present (SentencePiece always writes it).
    pub has_trainer_spec: bool,
    /// Whether `normalizer_spec` was present (SentencePiece always writes it, after the
    /// pieces and the trainer spec, so its absence usually means a truncated file).
    pub has_normalizer_spec: bool,
}

impl ModelProto {
    /// Parse a whole `tokenizer.model` held in `data` (offsets reported from 0).
    pub fn parse(data: &[u8]) -> Result<ModelProto, ProtoError> {
        let mut m = ModelProto::default();
        let mut r = FieldReader::new(data, 0);
        while let Some(f) = r.next_field()? {
            match f.number {
                1 => {
                    if m.pieces.len() >= TOKENIZER_MAX_PIECES {
                        return Err(err(
                            f.offset,
                            format!("more than {TOKENIZER_MAX_PIECES} pieces"),
                        ));
                    }
                    let b = f.bytes("ModelProto.pieces", u64::MAX)?;
                    m.pieces.push(parse_piece(b, f.value_offset)?);
                }
                2 => {
                    parse_trainer(
                        &mut m.trainer,
                        f.bytes("ModelProto.trainer_spec", u64::MAX)?,
                        f.value_offset,
                    )?;
                    m.has_trainer_spec = true;
                }
                3 => {
                    parse_normalizer(
                        &mut m.normalizer,
                        f.bytes("ModelProto.normalizer_spec", u64::MAX)?,
                        f.value_offset,
                    )?;
                    m.has_normalizer_spec = true;
                }
                5 => {
                    let b = f.bytes("ModelProto.denormalizer_spec", u64::MAX)?;
                    parse_normalizer(
                        m.denormalizer.get_or_insert_with(NormalizerSpec::default),
                        b,
                        f.value_offset,
                    )?;
                }
                _ => {} // self_test_data and anything newer: skipped by wire type
            }
        }
        Ok(m)
    }
}

fn parse_piece(data: &[u8], base: u64) -> Result<Piece, ProtoError> {
    const M: &str = "SentencePiece";
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceKind::Normal,
    };
    let mut r = FieldReader::new(data, base);
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => p.piece = f.string(M, TOKENIZER_MAX_PIECE_BYTES)?,
            2 => p.score = f.float(M)?,
            3 => {
                let v = f.int32(M)?;
                p.kind = PieceKind::from_i32(v)
                    .ok_or_else(|| err(f.offset, format!("invalid piece type {v}")))?;
            }
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer(t: &mut TrainerSpec, data: &[u8], base: u64) -> Result<(), ProtoError> {
    const M: &str = "TrainerSpec";
    const CAP: u64 = TOKENIZER_MAX_SPEC_FIELD_BYTES;
    let mut r = FieldReader::new(data, base);
    while let Some(f) = r.next_field()? {
        match f.number {
            3 => t.model_type = f.int32(M)?,
            4 => t.vocab_size = f.int32(M)?,
            20 => t.max_sentencepiece_length = f.int32(M)?,
            21 => t.split_by_unicode_script = f.boolean(M)?,
            22 => t.split_by_whitespace = f.boolean(M)?,
            23 => t.split_by_number = f.boolean(M)?,
            24 => t.treat_whitespace_as_suffix = f.boolean(M)?,
            25 => t.split_digits = f.boolean(M)?,
            26 => t.allow_whitespace_only_pieces = f.boolean(M)?,
            35 => t.byte_fallback = f.boolean(M)?,
            40 => t.unk_id = f.int32(M)?,
            41 => t.bos_id = f.int32(M)?,
            42 => t.eos_id = f.int32(M)?,
            43 => t.pad_id = f.int32(M)?,
            44 => t.unk_surface = f.string(M, CAP)?,
            45 => t.unk_piece = f.string(M, CAP)?,
            46 => t.bos_piece = f.string(M, CAP)?,
            47 => t.eos_piece = f.string(M, CAP)?,
            48 => t.pad_piece = f.string(M, CAP)?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer(n: &mut NormalizerSpec, data: &[u8], base: u64) -> Result<(), ProtoError> {
    const M: &str = "NormalizerSpec";
    const CAP: u64 = TOKENIZER_MAX_SPEC_FIELD_BYTES;
    let mut r = FieldReader::new(data, base);
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => n.name = f.string(M, CAP)?,
            2 => n.precompiled_charsmap = f.bytes(M, CAP)?.to_vec(),
            3 => n.add_dummy_prefix = f.boolean(M)?,
            4 => n.remove_extra_whitespaces = f.boolean(M)?,
            5 => n.escape_whitespaces = f.boolean(M)?,
            _ => {}
        }
    }
    Ok(())
}

/// Minimal protobuf writer used by the tests to build models (and hostile variants).
#[cfg(test)]
pub(crate) mod write {
    /// Append a varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    /// Append a varint field.
    pub fn field_varint(out: &mut Vec<u8>, n: u32, v: u64) {
        varint(out, u64::from(n) << 3);
        varint(out, v);
    }
    /// Append a length-delimited field.
    pub fn field_bytes(out: &mut Vec<u8>, n: u32, b: &[u8]) {
        varint(out, (u64::from(n) << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    /// Append a fixed32 float field.
    pub fn field_f32(out: &mut Vec<u8>, n: u32, v: f32) {
        varint(out, (u64::from(n) << 3) | 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::write::*;
    use super::*;

    fn piece(s: &str, score: f32, kind: i32) -> Vec<u8> {
        let mut p = Vec::new();
        field_bytes(&mut p, 1, s.as_bytes());
        field_f32(&mut p, 2, score);
        field_varint(&mut p, 3, kind as u64);
        p
    }

    #[test]
    fn parses_fields_and_defaults() {
        let mut m = Vec::new();
        field_bytes(&mut m, 1, &piece("<unk>", 0.0, 2));
        field_bytes(&mut m, 1, &piece("▁a", -0.0, 1));
        let mut t = Vec::new();
        field_varint(&mut t, 3, 2);
        field_varint(&mut t, 35, 1);
        field_varint(&mut t, 43, u64::MAX); // -1 as a 10-byte varint
        field_bytes(&mut t, 999, b"skipped");
        field_varint(&mut m, 77, 5); // unknown top-level varint
        field_bytes(&mut m, 2, &t);
        let m = ModelProto::parse(&m).unwrap();
        assert_eq!(m.pieces.len(), 2);
        assert_eq!(m.pieces[0].kind, PieceKind::Unknown);
        assert_eq!(m.pieces[1].score.to_bits(), (-0.0f32).to_bits());
        assert_eq!(m.trainer.model_type, 2);
        assert!(m.trainer.byte_fallback);
        assert_eq!(m.trainer.pad_id, -1);
        assert!(
            m.normalizer.remove_extra_whitespaces,
            "schema default is true"
        );
    }

    #[test]
    fn wrong_wire_type_and_bad_lengths() {
        let mut m = Vec::new();
        field_varint(&mut m, 2, 7); // trainer_spec as a varint
        let e = ModelProto::parse(&m).unwrap_err();
        assert!(e.reason.contains("expected length-delimited"), "{e}");
        let mut m = Vec::new();
        varint(&mut m, (1 << 3) | 2);
        varint(&mut m, u64::MAX >> 1);
        let e = ModelProto::parse(&m).unwrap_err();
        assert!(e.reason.contains("exceeds"), "{e}");
        assert!(ModelProto::parse(&[0x0b])
            .unwrap_err()
            .reason
            .contains("groups"));
        assert!(ModelProto::parse(&[0x0f])
            .unwrap_err()
            .reason
            .contains("wire type"));
        assert!(ModelProto::parse(&[0x00])
            .unwrap_err()
            .reason
            .contains("field number"));
        let mut p = piece("x", 0.0, 9);
        let mut m = Vec::new();
        field_bytes(&mut m, 1, &p);
        assert!(ModelProto::parse(&m)
            .unwrap_err()
            .reason
            .contains("piece type"));
        p = Vec::new();
        field_bytes(&mut p, 1, &[0xff, 0xfe]);
        m.clear();
        field_bytes(&mut m, 1, &p);
        let e = ModelProto::parse(&m).unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.reason.contains("UTF-8"));
    }
}
