//! llama.cpp's KL-divergence base file (`llama-perplexity --kl-divergence-base FILE`), read and
//! written. Layout (little-endian; docs/perplexity.md "The KL base file"):
//!
//! ```text
//! 0    8   "_logits_"
//! 8    4   n_ctx     (u32)
//! 12   4   n_vocab   (i32)
//! 16   4   n_chunk   (i32)
//! 20   4·n_ctx·n_chunk   the chunks' tokens (i32), unreplaced by BOS
//! then, per chunk, for each scored position (n_ctx − 1 − ⌊n_ctx/2⌋ of them), one row of
//!      nv = 2·⌈n_vocab/2⌉ + 4 u16: f32 scale, f32 min log-prob, n_vocab u16 (+1 zero pad)
//! ```
//!
//! The reader checks every declared size against the file before allocating, refuses trailing
//! bytes, checks every token against the vocabulary and every row's scale when it is read, and
//! names the file and byte offset of whatever is wrong. Rows are read per chunk with `pread`:
//! a Grok-1 base file over wikitext holds tens of GB.

use super::chunks::MIN_CTX;
use super::logprob::{row_header, row_u16s};
use super::EvalError;
use crate::io::IoError;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file's magic.
pub const MAGIC: &[u8; 8] = b"_logits_";
/// Header bytes before the tokens.
pub const HEADER_BYTES: u64 = 20;

/// An opened base file.
#[derive(Debug)]
pub struct KlBase {
    path: PathBuf,
    file: File,
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Vocabulary of the base model.
    pub n_vocab: usize,
    /// Chunks.
    pub n_chunk: usize,
    tokens: Vec<u32>,
    rows_start: u64,
}

fn io(op: &'static str, p: &Path, e: std::io::Error) -> EvalError {
    EvalError::Io(IoError::new(op, p, e))
}

/// Bytes of one chunk's rows.
pub fn chunk_row_bytes(n_ctx: usize, n_vocab: usize) -> Option<u64> {
    let scored = (n_ctx - 1 - n_ctx / 2) as u64;
    scored.checked_mul(row_u16s(n_vocab) as u64)?.checked_mul(2)
}

impl KlBase {
    /// Open and check `path`.
    pub fn open(path: &Path) -> Result<KlBase, EvalError> {
        let bad = |off: u64, r: String| EvalError::file(path, Some(off), r);
        let meta = std::fs::metadata(path).map_err(|e| io("open", path, e))?;
        if !meta.is_file() {
            return Err(EvalError::file(path, None, "not a regular file"));
        }
        let file = File::open(path).map_err(|e| io("open", path, e))?;
        let size = file.metadata().map_err(|e| io("stat", path, e))?.len();
        let mut h = [0u8; HEADER_BYTES as usize];
        if size < HEADER_BYTES {
            return Err(bad(
                size,
                format!("truncated: {size} bytes, a KL base file starts with a {HEADER_BYTES}-byte header"),
            ));
        }
        file.read_exact_at(&mut h, 0)
            .map_err(|e| io("read", path, e))?;
        if &h[..8] != MAGIC {
            return Err(bad(
                0,
                "not a llama.cpp KL-divergence base file (no \"_logits_\" magic)".into(),
            ));
        }
        let u = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let (n_ctx, n_vocab, n_chunk) = (u(8) as usize, u(12) as i32, u(16) as i32);
        if n_ctx < MIN_CTX || n_ctx > i32::MAX as usize {
            return Err(bad(
                8,
                format!("n_ctx {n_ctx} (must be at least {MIN_CTX})"),
            ));
        }
        if n_vocab <= 0 {
            return Err(bad(12, format!("n_vocab {n_vocab}")));
        }
        if n_chunk <= 0 {
            return Err(bad(16, format!("n_chunk {n_chunk}")));
        }
        let (n_vocab, n_chunk) = (n_vocab as usize, n_chunk as usize);
        let tok_bytes = (n_ctx as u64)
            .checked_mul(n_chunk as u64)
            .and_then(|n| n.checked_mul(4));
        let rows = chunk_row_bytes(n_ctx, n_vocab).and_then(|r| r.checked_mul(n_chunk as u64));
        let total = tok_bytes
            .zip(rows)
            .and_then(|(t, r)| HEADER_BYTES.checked_add(t)?.checked_add(r));
        let Some(total) = total else {
            return Err(bad(8, "header sizes overflow".into()));
        };
        let tok_bytes = tok_bytes.unwrap_or(0);
        if size < total {
            let what = if size < HEADER_BYTES + tok_bytes {
                "tokens"
            } else {
                "log-probability rows"
            };
            return Err(bad(
                size,
                format!(
                    "truncated in the {what}: the header (n_ctx {n_ctx}, n_vocab {n_vocab}, \
                     n_chunk {n_chunk}) needs {total} bytes, the file has {size}"
                ),
            ));
        }
        if size > total {
            return Err(bad(
                total,
                format!(
                    "{} trailing bytes after the last chunk's rows",
                    size - total
                ),
            ));
        }
        let mut raw = vec![0u8; tok_bytes as usize];
        file.read_exact_at(&mut raw, HEADER_BYTES)
            .map_err(|e| io("read", path, e))?;
        let mut tokens = Vec::with_capacity(raw.len() / 4);
        for (i, c) in raw.chunks_exact(4).enumerate() {
            let t = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if t < 0 || t as usize >= n_vocab {
                return Err(bad(
                    HEADER_BYTES + 4 * i as u64,
                    format!("token {t} at position {i} is outside the vocabulary of {n_vocab}"),
                ));
            }
            tokens.push(t as u32);
        }
        Ok(KlBase {
            path: path.to_path_buf(),
            file,
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
            rows_start: HEADER_BYTES + tok_bytes,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every chunk's tokens (`n_ctx · n_chunk`).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Read the rows of chunks `chunks` once and check them ([`KlBase::chunk_rows`]): a
    /// damaged row is found before hours of evaluation, not after (a sequential read).
    pub fn check_rows(&self, chunks: std::ops::Range<usize>) -> Result<(), EvalError> {
        for c in chunks {
            self.chunk_rows(c)?;
        }
        Ok(())
    }

    /// Chunk `c`'s rows (`scored · row_u16s(n_vocab)` values), each row's header checked.
    pub fn chunk_rows(&self, c: usize) -> Result<Vec<u16>, EvalError> {
        let nv = row_u16s(self.n_vocab);
        let bytes = chunk_row_bytes(self.n_ctx, self.n_vocab).unwrap_or(0);
        if c >= self.n_chunk {
            return Err(EvalError::Input(format!(
                "{}: chunk {c} of {}",
                self.path.display(),
                self.n_chunk
            )));
        }
        let off = self.rows_start + c as u64 * bytes;
        let mut raw = vec![0u8; bytes as usize];
        self.file
            .read_exact_at(&mut raw, off)
            .map_err(|e| io("read", &self.path, e))?;
        let rows: Vec<u16> = raw
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        for (r, row) in rows.chunks_exact(nv).enumerate() {
            let (scale, min) = row_header(row);
            if !(scale.is_finite() && scale >= 0.0 && min.is_finite()) {
                return Err(EvalError::file(
                    &self.path,
                    Some(off + (r * nv * 2) as u64),
                    format!(
                        "chunk {c}, scored position {r}: scale {scale}, minimum log-probability \
                         {min} (corrupted row)"
                    ),
                ));
            }
        }
        Ok(rows)
    }
}

/// Write the header and tokens of a base file for `tokens` (whole chunks of `n_ctx`).
pub fn write_header(
    w: &mut dyn Write,
    n_ctx: usize,
    n_vocab: usize,
    tokens: &[u32],
) -> std::io::Result<()> {
    let n_chunk = tokens.len() / n_ctx.max(1);
    let mut h = Vec::with_capacity(HEADER_BYTES as usize + tokens.len() * 4);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(n_ctx as u32).to_le_bytes());
    h.extend_from_slice(&(n_vocab as i32).to_le_bytes());
    h.extend_from_slice(&(n_chunk as i32).to_le_bytes());
    for &t in tokens {
        h.extend_from_slice(&(t as i32).to_le_bytes());
    }
    w.write_all(&h)
}

/// Append rows (u16, little-endian).
pub fn write_rows(w: &mut dyn Write, rows: &[u16]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(rows.len() * 2);
    for &x in rows {
        b.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::logprob::quantize_row;

    fn sample(dir: &Path, n_ctx: usize, n_vocab: usize, n_chunk: usize) -> (PathBuf, Vec<u8>) {
        let tokens: Vec<u32> = (0..n_ctx * n_chunk).map(|i| (i % n_vocab) as u32).collect();
        let mut b = Vec::new();
        write_header(&mut b, n_ctx, n_vocab, &tokens).unwrap();
        let nv = row_u16s(n_vocab);
        let scored = n_ctx - 1 - n_ctx / 2;
        for c in 0..n_chunk {
            for j in 0..scored {
                let l: Vec<f32> = (0..n_vocab)
                    .map(|v| ((v * 7 + j + c) % 11) as f32)
                    .collect();
                let mut row = vec![0u16; nv];
                quantize_row(&l, 1, &mut row);
                write_rows(&mut b, &row).unwrap();
            }
        }
        let p = dir.join("base.kld");
        std::fs::write(&p, &b).unwrap();
        (p, b)
    }

    #[test]
    fn round_trip_and_hostile_variants() {
        let d = tempfile::tempdir().unwrap();
        let (p, b) = sample(d.path(), 8, 5, 3);
        let k = KlBase::open(&p).unwrap();
        assert_eq!((k.n_ctx, k.n_vocab, k.n_chunk), (8, 5, 3));
        assert_eq!(k.tokens().len(), 24);
        assert_eq!(k.chunk_rows(2).unwrap().len(), 3 * row_u16s(5));
        assert!(k.chunk_rows(3).is_err());
        let err = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            KlBase::open(&p).unwrap_err().to_string()
        };
        // truncated anywhere: the offset is the file's end
        for cut in [0, 7, 19, 21, 60, b.len() - 1] {
            let e = err(&b[..cut]);
            assert!(e.contains(&format!("offset {cut}")), "{cut}: {e}");
        }
        let mut x = b.clone();
        x.push(0);
        assert!(err(&x).contains("trailing"));
        let mut x = b.clone();
        x[0] = b'X';
        assert!(err(&x).contains("magic"));
        let mut x = b.clone();
        x[16..20].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(err(&x).contains("offset 16"));
        let mut x = b.clone();
        x[12..16].copy_from_slice(&(i32::MAX).to_le_bytes());
        assert!(err(&x).contains("truncated"));
        let mut x = b.clone();
        x[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&x).contains("offset 8"));
        let mut x = b.clone();
        x[24..28].copy_from_slice(&9i32.to_le_bytes());
        assert!(err(&x).contains("offset 24"), "{}", err(&x));
        // a corrupted row is found when its chunk is read
        let mut x = b.clone();
        let row0 = 20 + 24 * 4;
        x[row0..row0 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&p, &x).unwrap();
        let k = KlBase::open(&p).unwrap();
        let e = k.chunk_rows(0).unwrap_err().to_string();
        assert!(e.contains(&format!("offset {row0}")), "{e}");
        // not a regular file
        assert!(KlBase::open(d.path()).is_err());
    }
}
