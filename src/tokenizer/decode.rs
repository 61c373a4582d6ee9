//! Ids -> text, following the library's `SentencePieceProcessor::Decode`.
//!
//! Why not just concatenate pieces: control pieces print nothing, the unk piece prints the
//! trainer's `unk_surface` (" ⁇ "), runs of `<0xNN>` byte pieces are reassembled into UTF-8
//! with each structurally invalid byte becoming U+FFFD (one per byte, unlike Rust's
//! `from_utf8_lossy`), and only the first `▁` of the text (the dummy prefix) is dropped.

use super::{PieceKind, Tokenizer};

const SPACE_SYMBOL: &str = "\u{2581}";

/// Decode one UTF-8 character at the start of `b` with the library's rules (no overlongs, no
/// surrogates, at most U+10FFFF); returns its length, or `None` when invalid.
fn valid_char_len(b: &[u8]) -> Option<usize> {
    let first = *b.first()?;
    let n = match first {
        0x00..=0x7f => return Some(1),
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return None,
    };
    let s = b.get(..n)?;
    std::str::from_utf8(s).ok().map(|_| n)
}

impl Tokenizer {
    /// Decode ids to text like the library's `decode`. Ids outside the vocabulary (which the
    /// library rejects with an error) decode as the unk surface; see [`Tokenizer::try_decode`].
    pub fn decode(&self, ids: &[u32]) -> String {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&id| {
                if (id as usize) < self.len() {
                    id
                } else {
                    self.unk
                }
            })
            .collect();
        self.decode_in_range(&ids)
    }

    /// Decode ids, or return the first id outside the vocabulary.
    pub fn try_decode(&self, ids: &[u32]) -> Result<String, u32> {
        match ids.iter().find(|&&id| id as usize >= self.len()) {
            Some(&bad) => Err(bad),
            None => Ok(self.decode_in_range(ids)),
        }
    }

    fn decode_in_range(&self, ids: &[u32]) -> String {
        let spec = &self.model.normalizer;
        let strip_first = spec.add_dummy_prefix || spec.remove_extra_whitespaces;
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for &id in ids {
            let Some(p) = self.model.pieces.get(id as usize) else {
                continue;
            };
            if p.kind == PieceKind::Byte {
                bytes.push(byte_of(&p.piece).unwrap_or(0));
                continue;
            }
            flush_bytes(&mut bytes, &mut text);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            bos_ws_seen = false;
            match p.kind {
                PieceKind::Control => {}
                PieceKind::Unknown => text.push_str(&self.model.trainer.unk_surface),
                _ => {
                    let mut piece = p.piece.as_str();
                    if is_bos_ws && strip_first {
                        if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                            piece = rest;
                            bos_ws_seen = !spec.remove_extra_whitespaces;
                        }
                    }
                    text.push_str(&piece.replace(SPACE_SYMBOL, " "));
                }
            }
        }
        flush_bytes(&mut bytes, &mut text);
        text
    }
}

/// The byte of a `<0xNN>` piece.
fn byte_of(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Append a run of byte-piece bytes as UTF-8, one U+FFFD per invalid byte.
fn flush_bytes(bytes: &mut Vec<u8>, text: &mut String) {
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        match valid_char_len(rest) {
            Some(n) => {
                let (ch, tail) = rest.split_at(n);
                text.push_str(std::str::from_utf8(ch).unwrap_or("\u{FFFD}"));
                rest = tail;
            }
            None => {
                text.push('\u{FFFD}');
                rest = rest.get(1..).unwrap_or(&[]);
            }
        }
    }
    bytes.clear();
}
