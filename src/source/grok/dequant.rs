//! Exact dequantization of the release's int8 weights (docs/formats/grok-checkpoint.md
//! "Dequantization"):
//! `W[i, j] = q[i, j] · s[i / (R/B), j]` where the scales have B row blocks (1, or 8 for the
//! row-parallel O and down projections, whose scales were sharded with the rows).
//! int8 × bf16 has at most 8 + 8 significant bits, so the f32 product is exact.

use crate::base::float::bf16_bits_to_f32;

/// One int8 matrix [rows, cols] (one expert of a stacked tensor) with its bf16 scales [blocks, cols].
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// int8 payload, `rows * cols` bytes.
    pub weight: &'a [u8],
    /// bf16 payload, `blocks * cols * 2` bytes.
    pub scales: &'a [u8],
    /// Rows (input dim).
    pub rows: usize,
    /// Columns (output dim).
    pub cols: usize,
    /// Scale row blocks (divides rows).
    pub blocks: usize,
}

impl Matrix<'_> {
    /// Rows per scale block.
    pub fn block_height(&self) -> usize {
        self.rows / self.blocks.max(1)
    }
    /// The bf16 scale bits for row `i`, column `j`.
    #[inline]
    pub fn scale_bits(&self, i: usize, j: usize) -> u16 {
        let b = i / self.block_height().max(1);
        let k = 2 * (b * self.cols + j);
        u16::from_le_bytes([self.scales[k], self.scales[k + 1]])
    }
    /// The int8 value at (i, j).
    #[inline]
    pub fn q(&self, i: usize, j: usize) -> i8 {
        self.weight[i * self.cols + j] as i8
    }
    /// Exact f32 values of row `i` into `out` (len `cols`).
    pub fn row(&self, i: usize, out: &mut [f32]) {
        let b = i / self.block_height().max(1);
        let srow = &self.scales[2 * b * self.cols..2 * (b + 1) * self.cols];
        let qrow = &self.weight[i * self.cols..(i + 1) * self.cols];
        for ((o, &q), s) in out.iter_mut().zip(qrow).zip(srow.chunks_exact(2)) {
            *o = f32::from(q as i8) * bf16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
        }
    }
}

/// Dequantize rows `rows` of `m` into `out` (row-major, `rows.len() * cols`).
pub fn dequant_matrix_rows(m: &Matrix<'_>, rows: std::ops::Range<usize>, out: &mut [f32]) {
    for (k, i) in rows.enumerate() {
        m.row(i, &mut out[k * m.cols..(k + 1) * m.cols]);
    }
}

/// Dequantize a whole matrix whose block structure is explicit (for tests and tiny models).
pub fn dequant_block_rows(m: &Matrix<'_>) -> Vec<f32> {
    let mut out = vec![0f32; m.rows * m.cols];
    dequant_matrix_rows(m, 0..m.rows, &mut out);
    out
}
