//! Source matrices as streams of OUTPUT rows.
//!
//! Every output format stores matrices as [out, in] (PyTorch/ggml orientation) while the release
//! stores [in, out] (haiku's `x @ W`). An output row is therefore a column of the release matrix.
//! [`Band`]s are groups of consecutive output rows, produced by a cache-blocked transpose of the
//! mapped int8 (or f32) payload, with the exact f32 value of every element and, for int8
//! sources, the original int8 and scale so lossless encoders can copy them. A band is bounded
//! (`BAND_BYTES`), so memory does not grow with the tensor.
// The transposes index by row on purpose: the strided source reads are the point of the tiles.
#![allow(clippy::needless_range_loop)]

use crate::base::float::decode_f32_le;
use crate::source::grok::Matrix;

/// Target size of one band's f32 buffer.
pub const BAND_BYTES: usize = 16 << 20;

/// A source matrix in release orientation [rows = in, cols = out].
#[derive(Clone, Copy, Debug)]
pub enum Src<'a> {
    /// int8 weight + bf16 scales (one expert, or a 2-D tensor).
    Int8(Matrix<'a>),
    /// Plain little-endian f32 [rows, cols].
    F32 {
        /// payload
        bytes: &'a [u8],
        /// rows
        rows: usize,
        /// cols
        cols: usize,
    },
}

impl Src<'_> {
    /// Release rows (input dim).
    pub fn rows(&self) -> usize {
        match self {
            Src::Int8(m) => m.rows,
            Src::F32 { rows, .. } => *rows,
        }
    }
    /// Release cols (output dim).
    pub fn cols(&self) -> usize {
        match self {
            Src::Int8(m) => m.cols,
            Src::F32 { cols, .. } => *cols,
        }
    }
    /// Number of output rows when transposed or not.
    pub fn out_rows(&self, transpose: bool) -> usize {
        if transpose {
            self.cols()
        } else {
            self.rows()
        }
    }
    /// Output row length.
    pub fn out_cols(&self, transpose: bool) -> usize {
        if transpose {
            self.rows()
        } else {
            self.cols()
        }
    }
}

/// Consecutive output rows `[first, first + n)`, each `len` elements.
#[derive(Debug, Default)]
pub struct Band {
    /// First output row.
    pub first: usize,
    /// Output rows in the band.
    pub n: usize,
    /// Elements per output row.
    pub len: usize,
    /// Exact values, row-major [n, len].
    pub f32: Vec<f32>,
    /// For int8 sources: the original int8 values, same layout.
    pub q: Vec<i8>,
    /// For int8 sources: the bf16 scale bits of each element, same layout.
    pub scale: Vec<u16>,
}

/// How many output rows fit one band.
pub fn band_rows(src: &Src<'_>, transpose: bool) -> usize {
    let len = src.out_cols(transpose).max(1);
    (BAND_BYTES / 4 / len).clamp(1, src.out_rows(transpose).max(1))
}

/// Fill `band` with output rows `first..first + n` of `src` (transposed or not), keeping the
/// original int8 values and scales too (for lossless encoders).
pub fn fill_band(src: &Src<'_>, transpose: bool, first: usize, n: usize, band: &mut Band) {
    fill_band_with(src, transpose, first, n, band, true)
}

/// Like [`fill_band`]; with `keep_int8` false only the exact f32 values are produced (faster).
/// Buffers are reused across calls, so a worker allocates its band once.
pub fn fill_band_with(
    src: &Src<'_>,
    transpose: bool,
    first: usize,
    n: usize,
    band: &mut Band,
    keep_int8: bool,
) {
    let len = src.out_cols(transpose);
    band.first = first;
    band.n = n;
    band.len = len;
    // Every element below is overwritten: resize without clearing first to avoid re-zeroing.
    band.f32.resize(n * len, 0.0);
    band.f32.truncate(n * len);
    band.q.clear();
    band.scale.clear();
    if let (Src::Int8(m), false) = (src, keep_int8) {
        fill_int8_f32_only(m, transpose, first, n, len, &mut band.f32);
        return;
    }
    match (src, transpose) {
        (Src::F32 { bytes, cols, .. }, false) => {
            decode_f32_le(
                &bytes[first * cols * 4..(first + n) * cols * 4],
                &mut band.f32,
            );
        }
        (Src::F32 { bytes, rows, cols }, true) => {
            // out[r][i] = src[i][first + r]
            for i in 0..*rows {
                let row = &bytes[(i * cols + first) * 4..(i * cols + first + n) * 4];
                for (r, c) in row.chunks_exact(4).enumerate() {
                    band.f32[r * len + i] = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
        (Src::Int8(m), false) => {
            band.q.resize(n * len, 0);
            band.scale.resize(n * len, 0);
            for r in 0..n {
                let i = first + r;
                for j in 0..len {
                    let (q, s) = (m.q(i, j), m.scale_bits(i, j));
                    band.q[r * len + j] = q;
                    band.scale[r * len + j] = s;
                    band.f32[r * len + j] = f32::from(q) * crate::base::float::bf16_bits_to_f32(s);
                }
            }
        }
        (Src::Int8(m), true) => {
            gather_int8_transposed(m, first, n, &mut band.q);
            band.scale.resize(n * len, 0);
            let bh = m.block_height().max(1);
            for r in 0..n {
                let j = first + r;
                for b in 0..m.blocks {
                    let s = m.scale_bits(b * bh, j);
                    let sf = crate::base::float::bf16_bits_to_f32(s);
                    let lo = b * bh;
                    let hi = ((b + 1) * bh).min(m.rows);
                    for i in lo..hi {
                        band.scale[r * len + i] = s;
                        band.f32[r * len + i] = f32::from(band.q[r * len + i]) * sf;
                    }
                }
            }
        }
    }
}

/// Exact f32 values only, from int8 × bf16 scales: one multiply per element, the scale row
/// decoded once per output row and block.
fn fill_int8_f32_only(
    m: &Matrix<'_>,
    transpose: bool,
    first: usize,
    n: usize,
    len: usize,
    out: &mut [f32],
) {
    let bh = m.block_height().max(1);
    if !transpose {
        for r in 0..n {
            m.row(first + r, &mut out[r * len..(r + 1) * len]);
        }
        return;
    }
    // out[r][i] = q[i][first + r] * s[i / bh][first + r]
    let mut sc = vec![0f32; m.blocks.max(1) * n];
    for b in 0..m.blocks {
        for r in 0..n {
            sc[r * m.blocks + b] =
                crate::base::float::bf16_bits_to_f32(m.scale_bits(b * bh, first + r));
        }
    }
    const TILE: usize = 64;
    let mut i0 = 0;
    while i0 < m.rows {
        let i1 = (i0 + TILE).min(m.rows);
        let b = i0 / bh;
        // A tile never straddles a scale block when bh is a multiple of TILE; otherwise per row.
        let same_block = (i1 - 1) / bh == b;
        for r in 0..n {
            let j = first + r;
            let o = &mut out[r * len..(r + 1) * len];
            if same_block {
                let s = sc[r * m.blocks + b];
                for i in i0..i1 {
                    o[i] = f32::from(m.weight[i * m.cols + j] as i8) * s;
                }
            } else {
                for i in i0..i1 {
                    o[i] = f32::from(m.weight[i * m.cols + j] as i8) * sc[r * m.blocks + i / bh];
                }
            }
        }
        i0 = i1;
    }
}

/// The int8 values of output rows `first..first + n` of a transposed int8 matrix (release columns),
/// row-major [n, m.rows], into `out` (reused). Cache-blocked over release rows.
pub fn gather_int8_transposed(m: &Matrix<'_>, first: usize, n: usize, out: &mut Vec<i8>) {
    let len = m.rows;
    out.resize(n * len, 0);
    out.truncate(n * len);
    const TILE: usize = 64;
    let mut i0 = 0;
    while i0 < m.rows {
        let i1 = (i0 + TILE).min(m.rows);
        for r in 0..n {
            let j = first + r;
            let o = &mut out[r * len..(r + 1) * len];
            for i in i0..i1 {
                o[i] = m.weight[i * m.cols + j] as i8;
            }
        }
        i0 = i1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn transpose_matches_definition() {
        let (rows, cols, blocks) = (16usize, 5usize, 4usize);
        let w: Vec<u8> = (0..rows * cols)
            .map(|k| ((k as i32 % 251) - 125) as i8 as u8)
            .collect();
        let s: Vec<u8> = (0..blocks * cols)
            .flat_map(|k| crate::base::float::f32_to_bf16_bits(0.5 + k as f32 / 64.0).to_le_bytes())
            .collect();
        let m = Matrix {
            weight: &w,
            scales: &s,
            rows,
            cols,
            blocks,
        };
        let src = Src::Int8(m);
        let mut b = Band::default();
        fill_band(&src, true, 1, 3, &mut b);
        for r in 0..3 {
            for i in 0..rows {
                let j = 1 + r;
                let want =
                    f32::from(m.q(i, j)) * crate::base::float::bf16_bits_to_f32(m.scale_bits(i, j));
                assert_eq!(b.f32[r * rows + i], want);
                assert_eq!(b.q[r * rows + i], m.q(i, j));
            }
        }
        let want = b.f32.clone();
        let mut c = Band::default();
        fill_band_with(&src, true, 1, 3, &mut c, false);
        assert_eq!(c.f32, want);
        fill_band(&src, false, 2, 2, &mut b);
        let mut row = vec![0f32; cols];
        m.row(3, &mut row);
        assert_eq!(&b.f32[cols..2 * cols], &row[..]);
        fill_band_with(&src, false, 2, 2, &mut c, false);
        assert_eq!(c.f32, b.f32);
    }
}
