//! Text -> ids, following the library's `Normalizer::Normalize` and `bpe::Model::Encode`.
//!
//! Why this shape: the library does NOT pre-split text at encode time (split_digits and
//! split_by_whitespace are training options); the only segmentation is the user-defined
//! prefix match. BPE then repeatedly merges the adjacent pair whose merged piece has the
//! highest score (ties: leftmost), using a heap of candidate pairs and a linked list of
//! symbols, so an encode costs O(n log n) instead of rescanning all pairs after every merge.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::{PieceKind, Tokenizer};

/// Unused piece -> the (left, right) symbols of the last candidate merge that produced it.
type RevMerge<'t> = HashMap<&'t [u8], (&'t [u8], &'t [u8])>;

const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();
const NONE: usize = usize::MAX;

/// Byte length of the UTF-8 sequence starting with `b` (the library's `OneCharLen`).
fn one_char_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
    freeze: bool,
}

/// A candidate merge of `left` and `right` whose merged piece is `size` bytes.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Pair {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pair {
    /// Higher score first, then smaller `left` (the library's `SymbolPairComparator`). Scores
    /// were normalized so that -0.0 == 0.0 as in C++ float comparison.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl Tokenizer {
    /// Longest user-defined piece at the start of `s` (length in bytes), else one character.
    /// The second value says whether a user-defined piece matched.
    fn prefix_match(&self, s: &[u8]) -> (usize, bool) {
        let first = s.first().copied().unwrap_or(0);
        if !self.user_first[usize::from(first)] {
            return (one_char_len(first).min(s.len()), false);
        }
        for &l in &self.user_lens {
            if let Some(head) = s.get(..l) {
                if self.user.contains_key(head) {
                    return (l, true);
                }
            }
        }
        (one_char_len(first).min(s.len()), false)
    }

    /// The library's identity normalization: user-defined symbols and characters pass through,
    /// spaces become `▁`, a dummy `▁` is added to non-empty input, and extra whitespace is
    /// removed when the model asks for it.
    pub fn normalize(&self, text: &str) -> Vec<u8> {
        let spec = &self.model.normalizer;
        let suffix = self.model.trainer.treat_whitespace_as_suffix;
        let rm = spec.remove_extra_whitespaces;
        let ws: &[u8] = if spec.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            b" "
        };
        let mut input = text.as_bytes();
        let mut out = Vec::with_capacity(input.len() * 3 / 2 + 4);
        if rm {
            while !input.is_empty() {
                let (n, _) = self.prefix_match(input);
                if &input[..n] != b" " {
                    break;
                }
                input = &input[n..];
            }
        }
        if input.is_empty() {
            return out;
        }
        if !suffix && spec.add_dummy_prefix {
            out.extend_from_slice(ws);
        }
        let mut is_prev_space = rm;
        while !input.is_empty() {
            let (n, _) = self.prefix_match(input);
            let mut sp = &input[..n];
            if is_prev_space {
                while let Some((b' ', rest)) = sp.split_first() {
                    sp = rest;
                }
            }
            if let Some(&last) = sp.last() {
                for &b in sp {
                    if spec.escape_whitespaces && b == b' ' {
                        out.extend_from_slice(SPACE_SYMBOL);
                    } else {
                        out.push(b);
                    }
                }
                is_prev_space = last == b' ';
            }
            input = &input[n..];
            if !rm {
                is_prev_space = false;
            }
        }
        if rm {
            while out.ends_with(ws) {
                out.truncate(out.len() - ws.len());
            }
        }
        if suffix && spec.add_dummy_prefix {
            out.extend_from_slice(ws);
        }
        out
    }

    /// Encode `text` to ids exactly as `sentencepiece`'s `encode` (no BOS/EOS added).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let norm = self.normalize(text);
        let mut ids = Vec::with_capacity(norm.len() / 3 + 1);
        let mut rev = RevMerge::new();
        let mut prev_unk = false;
        for (start, len) in self.bpe(&norm, &mut rev) {
            self.resegment_into(&norm[start..start + len], &rev, &mut ids, &mut prev_unk);
        }
        ids
    }

    /// Encode and return the piece strings (for debugging and tests).
    pub fn encode_pieces(&self, text: &str) -> Vec<String> {
        self.encode(text)
            .iter()
            .filter_map(|&id| self.id_to_piece(id).map(str::to_owned))
            .collect()
    }

    fn merge_candidate<'t>(
        &self,
        norm: &'t [u8],
        syms: &[Symbol],
        left: usize,
        right: usize,
        rev: &mut RevMerge<'t>,
    ) -> Option<Pair> {
        if left == NONE || right == NONE {
            return None;
        }
        let (l, r) = (&syms[left], &syms[right]);
        if l.freeze || r.freeze {
            return None;
        }
        let size = l.len + r.len;
        let merged = &norm[l.start..l.start + size];
        let id = *self.normal.get(merged)?;
        if self.has_unused && self.kind(id) == Some(PieceKind::Unused) {
            rev.insert(
                merged,
                (
                    &norm[l.start..l.start + l.len],
                    &norm[r.start..r.start + r.len],
                ),
            );
        }
        let score = self.model.pieces.get(id as usize)?.score + 0.0; // -0.0 -> 0.0
        Some(Pair {
            score,
            left,
            right,
            size,
        })
    }

    /// Run BPE over normalized bytes; returns the final symbols as (start, len).
    fn bpe<'t>(&self, norm: &'t [u8], rev: &mut RevMerge<'t>) -> Vec<(usize, usize)> {
        let mut syms: Vec<Symbol> = Vec::new();
        let mut pos = 0;
        while pos < norm.len() {
            let (n, freeze) = self.prefix_match(&norm[pos..]);
            let i = syms.len();
            syms.push(Symbol {
                start: pos,
                len: n,
                prev: i.wrapping_sub(1),
                next: i + 1,
                freeze,
            });
            pos += n;
        }
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        if let Some(first) = syms.first_mut() {
            first.prev = NONE;
        }
        let mut heap = BinaryHeap::with_capacity(syms.len());
        for i in 1..syms.len() {
            if let Some(p) = self.merge_candidate(norm, &syms, i - 1, i, rev) {
                heap.push(p);
            }
        }
        while let Some(top) = heap.pop() {
            let (l, r) = (&syms[top.left], &syms[top.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != top.size {
                continue; // stale: one side was merged away or grew
            }
            let next = r.next;
            syms[top.left].len = top.size;
            syms[top.left].next = next;
            if next != NONE {
                syms[next].prev = top.left;
            }
            syms[top.right].len = 0;
            let prev = syms[top.left].prev;
            if let Some(p) = self.merge_candidate(norm, &syms, prev, top.left, rev) {
                heap.push(p);
            }
            if let Some(p) = self.merge_candidate(norm, &syms, top.left, next, rev) {
                heap.push(p);
            }
        }
        let mut out = Vec::new();
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            out.push((syms[i].start, syms[i].len));
            i = syms[i].next;
        }
        out
    }

    /// Map one final symbol to ids: unused pieces are split back into the two symbols the
    /// library last recorded for them (recursively), unknown symbols become byte pieces when
    /// byte fallback is on.
    fn resegment_into(
        &self,
        w: &[u8],
        rev: &RevMerge<'_>,
        ids: &mut Vec<u32>,
        prev_unk: &mut bool,
    ) {
        let mut stack = vec![w];
        while let Some(w) = stack.pop() {
            let id = self.lookup(w);
            match rev.get(w) {
                Some(&(a, b)) if self.kind(id) == Some(PieceKind::Unused) => {
                    stack.push(b);
                    stack.push(a);
                }
                _ => self.push_id(id, w, ids, prev_unk),
            }
        }
    }

    /// Emit one piece id the way `SentencePieceProcessor::Encode` does: an unknown piece
    /// becomes its UTF-8 bytes as `<0xNN>` pieces when byte fallback is on; otherwise a run of
    /// consecutive unknown pieces collapses into one unk id. An UNUSED piece that could not be
    /// re-segmented (a single character) counts as unknown: verified against the library.
    fn push_id(&self, id: u32, w: &[u8], ids: &mut Vec<u32>, prev_unk: &mut bool) {
        let (id, is_unk) = match self.kind(id) {
            Some(PieceKind::Unknown) => (id, true),
            Some(PieceKind::Unused) => (self.unk, true),
            _ => (id, false),
        };
        if is_unk && self.model.trainer.byte_fallback {
            ids.extend(w.iter().map(|&b| self.byte_ids[usize::from(b)]));
        } else if !(is_unk && *prev_unk) {
            ids.push(id);
        }
        *prev_unk = is_unk;
    }
}
