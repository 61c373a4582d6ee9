//! Matrix products that read weights as they are stored (issue #13).
//!
//! Why this module exists: the reference forward pass used to dequantize every weight matrix
//! into f32 bands before an sgemm, so a handful of tokens paid for converting whole expert
//! matrices (805 MB of f32 for each 201 MB int8 matrix), and a decode step paid for every byte
//! of every band. Here a weight matrix is described as it lies in the file ([`Storage`]: the
//! release's int8 with bf16 row-block scales, GGUF rows of plain or block-quantized values,
//! safetensors dense rows, compressed-tensors packed int8/int4) and the product `x · W` decodes
//! the weights only into the small working set the product needs.
//!
//! The contract every implementation in this module keeps (the reference model relies on it):
//! - **Exact weights.** Every weight enters the product with exactly the f32 value that
//!   [`Matrix::decode`] gives, which is the value grokit's dequantization has always given
//!   (`q · s` for the release's int8, [`crate::quant::dequantize_row`] for GGUF types,
//!   `q · scale` for compressed-tensors). Products and sums are f32.
//! - **Row and column independence.** Output element `(i, j)` depends only on row `i` of `x`
//!   and column `j` of `W`: not on how many rows are in the batch, which column range or tile is
//!   being computed, or how the work is split over threads. The summation order over `k` is a
//!   fixed function of `k` alone. That is what makes a KV-cached decode step (one row) equal a
//!   full recompute (many rows) bit for bit, and banded products equal whole ones.
//! - **No panics on bad geometry.** A [`Matrix`] checks its byte lengths with checked
//!   arithmetic when it is built; products check their slices and return [`KernelError`].
//!
//! Orientation: logically every matrix is `W[k, n]` (k = input width, n = output width), so
//! `y[m, n] = x[m, k] · W`. The release stores `[k, n]` ([`Storage::ReleaseInt8`],
//! [`Storage::F32Kn`]); GGUF and safetensors store `[n, k]`, one row of `k` values per output
//! ([`Storage::Rows`], [`Storage::Ct`]).

use crate::base::float::{bf16_bits_to_f32, decode_f32_le};
use crate::quant::{ct, dequantize_row, GgmlType, QuantError};
use rayon::prelude::*;
use std::ops::Range;

/// Errors of the matrix kernels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// The stored bytes do not match the declared geometry.
    #[error("{what}: {got} bytes, expected {expected}")]
    Bytes {
        /// Which buffer.
        what: &'static str,
        /// Bytes required by the geometry.
        expected: u64,
        /// Bytes supplied.
        got: u64,
    },
    /// The geometry itself is invalid (overflow, zero block count, unaligned group, ...).
    #[error("bad matrix geometry: {0}")]
    Geometry(String),
    /// A slice passed to a product has the wrong length, or a range lies outside the matrix.
    #[error("bad product arguments: {0}")]
    Args(String),
    /// A block codec refused the bytes.
    #[error(transparent)]
    Quant(#[from] QuantError),
}

/// How a matrix's weights are stored (all multi-byte values little-endian; slices may be
/// unaligned, e.g. straight from a memory map).
#[derive(Clone, Copy, Debug)]
pub enum Storage<'a> {
    /// `[k, n]` row-major f32 (the release's routers).
    F32Kn(&'a [u8]),
    /// The release's `QuantizedWeight8bit`: int8 `q[k, n]` row-major and bf16 `scales[blocks,
    /// n]`; row `r` uses scale row `r / (k / blocks)`. Value: `q · s`, exact in f32.
    ReleaseInt8 {
        /// `k · n` int8 values.
        q: &'a [u8],
        /// `blocks · n` bf16 values.
        scales: &'a [u8],
        /// Row blocks (divides `k`).
        blocks: usize,
    },
    /// `[n, k]`: `n` rows of `k` elements of ggml type `ty` (F32, F16, BF16 or any block type
    /// [`crate::quant::dequantize_row`] decodes), each row `ty.row_bytes(k)` bytes.
    Rows {
        /// Element or block type.
        ty: GgmlType,
        /// `n · row_bytes` bytes.
        bytes: &'a [u8],
    },
    /// compressed-tensors `pack-quantized` `[n, k]`: each row `ceil(k / (32 / bits))` i32
    /// words, and per-row group scales `[n, k / group]` of type `scale_ty` (F32, F16 or BF16).
    Ct {
        /// 4 or 8.
        bits: u32,
        /// Input elements per scale.
        group: usize,
        /// The packed words.
        packed: &'a [u8],
        /// The scales.
        scales: &'a [u8],
        /// Type of the scales.
        scale_ty: GgmlType,
    },
}

/// A weight matrix `W[k, n]` over its stored bytes, geometry checked.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    k: usize,
    n: usize,
    storage: Storage<'a>,
}

fn mul(a: usize, b: usize, what: &str) -> Result<usize, KernelError> {
    a.checked_mul(b)
        .ok_or_else(|| KernelError::Geometry(format!("{what}: {a} × {b} overflows")))
}

fn expect_len(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), KernelError> {
    if bytes.len() != expected {
        return Err(KernelError::Bytes {
            what,
            expected: expected as u64,
            got: bytes.len() as u64,
        });
    }
    Ok(())
}

fn scale_bytes(ty: GgmlType) -> Result<usize, KernelError> {
    match ty {
        GgmlType::F32 => Ok(4),
        GgmlType::F16 | GgmlType::BF16 => Ok(2),
        t => Err(KernelError::Geometry(format!(
            "scale type {t} is not f32/f16/bf16"
        ))),
    }
}

fn decode_scale(ty: GgmlType, b: &[u8]) -> f32 {
    match ty {
        GgmlType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        _ => bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])),
    }
}

impl<'a> Matrix<'a> {
    /// Describe `W[k, n]` stored as `storage`; checks every byte length.
    pub fn new(k: usize, n: usize, storage: Storage<'a>) -> Result<Matrix<'a>, KernelError> {
        let kn = mul(k, n, "k·n")?;
        match storage {
            Storage::F32Kn(b) => expect_len("f32 [k, n]", b, mul(kn, 4, "bytes")?)?,
            Storage::ReleaseInt8 { q, scales, blocks } => {
                if blocks == 0 || !k.is_multiple_of(blocks) {
                    return Err(KernelError::Geometry(format!(
                        "{blocks} row blocks do not divide k = {k}"
                    )));
                }
                expect_len("int8 weight", q, kn)?;
                expect_len(
                    "bf16 scales",
                    scales,
                    mul(mul(blocks, n, "scales")?, 2, "bytes")?,
                )?;
            }
            Storage::Rows { ty, bytes } => {
                let rb = ty
                    .row_bytes(k as u64)
                    .and_then(|b| usize::try_from(b).ok())
                    .ok_or_else(|| {
                        KernelError::Geometry(format!(
                            "k = {k} is not a whole number of {ty} blocks"
                        ))
                    })?;
                expect_len("rows", bytes, mul(rb, n, "bytes")?)?;
            }
            Storage::Ct {
                bits,
                group,
                packed,
                scales,
                scale_ty,
            } => {
                if group == 0 || !k.is_multiple_of(group) {
                    return Err(KernelError::Geometry(format!(
                        "group {group} does not divide k = {k}"
                    )));
                }
                let words = ct::packed_words(bits, k)?;
                expect_len(
                    "packed words",
                    packed,
                    mul(mul(words, 4, "bytes")?, n, "bytes")?,
                )?;
                let sb = scale_bytes(scale_ty)?;
                expect_len(
                    "group scales",
                    scales,
                    mul(mul(k / group, sb, "bytes")?, n, "bytes")?,
                )?;
            }
        }
        Ok(Matrix { k, n, storage })
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// How the weights are stored.
    pub fn storage(&self) -> &Storage<'a> {
        &self.storage
    }

    /// The exact f32 weights `W[kr, nr]`, row-major `[kr.len(), nr.len()]` into `out`: the
    /// semantic definition every product in this module follows (and the slow path).
    pub fn decode(
        &self,
        kr: Range<usize>,
        nr: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        check_range("k", &kr, self.k)?;
        check_range("n", &nr, self.n)?;
        let (kl, nl) = (kr.len(), nr.len());
        if out.len() != kl * nl {
            return Err(KernelError::Args(format!(
                "decode output holds {} values, expected {kl} × {nl}",
                out.len()
            )));
        }
        if kl == 0 || nl == 0 {
            return Ok(());
        }
        match self.storage {
            Storage::F32Kn(b) => {
                for (r, o) in kr.zip(out.chunks_exact_mut(nl)) {
                    let s = (r * self.n + nr.start) * 4;
                    decode_f32_le(&b[s..s + nl * 4], o);
                }
            }
            Storage::ReleaseInt8 { q, scales, blocks } => {
                let bh = self.k / blocks;
                for (r, o) in kr.zip(out.chunks_exact_mut(nl)) {
                    let qs = &q[r * self.n + nr.start..r * self.n + nr.end];
                    let srow = (r / bh) * self.n;
                    let ss = &scales[2 * (srow + nr.start)..2 * (srow + nr.end)];
                    for ((o, &q), s) in o.iter_mut().zip(qs).zip(ss.chunks_exact(2)) {
                        *o =
                            f32::from(q as i8) * bf16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
                    }
                }
            }
            Storage::Rows { .. } | Storage::Ct { .. } => {
                // Stored [n, k]: decode whole rows (blocks span k), then transpose the slice.
                let mut row = vec![0f32; self.k];
                for (jj, j) in nr.enumerate() {
                    self.decode_stored_row(j, &mut row)?;
                    for (ii, &v) in row[kr.clone()].iter().enumerate() {
                        out[ii * nl + jj] = v;
                    }
                }
            }
        }
        Ok(())
    }

    /// Column `j` of `W` (all `k` values) into `out`: for `[n, k]` storage this is stored row
    /// `j` (the embedding lookup of a tied `[V, D]` matrix is `column(token)`).
    pub fn column(&self, j: usize, out: &mut [f32]) -> Result<(), KernelError> {
        check_range("n", &(j..j + 1), self.n)?;
        if out.len() != self.k {
            return Err(KernelError::Args(format!(
                "column output holds {} values, expected {}",
                out.len(),
                self.k
            )));
        }
        match self.storage {
            Storage::Rows { .. } | Storage::Ct { .. } => self.decode_stored_row(j, out),
            _ => {
                let mut tmp = vec![0f32; self.k];
                self.decode(0..self.k, j..j + 1, &mut tmp)?;
                out.copy_from_slice(&tmp);
                Ok(())
            }
        }
    }

    fn decode_stored_row(&self, j: usize, out: &mut [f32]) -> Result<(), KernelError> {
        match self.storage {
            Storage::Rows { ty, bytes } => {
                let rb = bytes.len() / self.n;
                dequantize_row(ty, &bytes[j * rb..(j + 1) * rb], out)?;
            }
            Storage::Ct {
                bits,
                group,
                packed,
                scales,
                scale_ty,
            } => {
                let words = packed.len() / 4 / self.n;
                let w: Vec<i32> = packed[j * words * 4..(j + 1) * words * 4]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let sb = scales.len() / self.n;
                let sz = sb / (self.k / group);
                let s: Vec<f32> = scales[j * sb..(j + 1) * sb]
                    .chunks_exact(sz)
                    .map(|c| decode_scale(scale_ty, c))
                    .collect();
                ct::ct_dequantize_row(bits, group, &w, &s, out)?;
            }
            _ => unreachable!("only [n, k] storage has stored rows"),
        }
        Ok(())
    }
}

fn check_range(what: &str, r: &Range<usize>, len: usize) -> Result<(), KernelError> {
    if r.start > r.end || r.end > len {
        return Err(KernelError::Args(format!(
            "{what} range {r:?} outside 0..{len}"
        )));
    }
    Ok(())
}

/// `out[m, cols.len()] = x[m, k] · W[:, cols]`, on the calling thread. `out` is overwritten.
///
/// This first implementation decodes the needed weights with [`Matrix::decode`] in blocks of
/// [`KB`] rows of `k` and accumulates each block's partial sums into `out` in order (so the
/// summation order over `k` depends on `k` alone, as the module contract requires).
pub fn matmul(
    x: &[f32],
    m: usize,
    w: &Matrix<'_>,
    cols: Range<usize>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_range("columns", &cols, w.n)?;
    let (k, nc) = (w.k, cols.len());
    if x.len() != mul(m, k, "x")? || out.len() != mul(m, nc, "out")? {
        return Err(KernelError::Args(format!(
            "x holds {} values and out {}, expected {m} × {k} and {m} × {nc}",
            x.len(),
            out.len()
        )));
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    if m == 0 || nc == 0 {
        return Ok(());
    }
    let mut panel = vec![0f32; KB.min(k.max(1)) * nc];
    let mut part = vec![0f32; nc];
    for k0 in (0..k).step_by(KB) {
        let k1 = (k0 + KB).min(k);
        let p = &mut panel[..(k1 - k0) * nc];
        w.decode(k0..k1, cols.clone(), p)?;
        for i in 0..m {
            let xr = &x[i * k + k0..i * k + k1];
            part.iter_mut().for_each(|v| *v = 0.0);
            for (&a, prow) in xr.iter().zip(p.chunks_exact(nc)) {
                for (acc, &b) in part.iter_mut().zip(prow) {
                    *acc = a.mul_add(b, *acc);
                }
            }
            for (o, v) in out[i * nc..(i + 1) * nc].iter_mut().zip(&part) {
                *o += v;
            }
        }
    }
    Ok(())
}

/// Rows of `k` decoded per block by the portable [`matmul`].
pub const KB: usize = 256;

/// One product of a batch run by [`run`]: `out[m, n] = x[m, k] · W`.
pub struct Job<'a, 'o> {
    /// Activations, `m · k` values.
    pub x: &'a [f32],
    /// Rows of `x`.
    pub m: usize,
    /// The weights.
    pub w: Matrix<'a>,
    /// Result, `m · n` values, overwritten.
    pub out: &'o mut [f32],
}

/// Run several independent products at once, split over (job, column tile) across the rayon
/// pool, so that even one-row products of a few matrices keep every core busy. Results are
/// bit-identical to running each job alone (module contract).
pub fn run(jobs: &mut [Job<'_, '_>]) -> Result<(), KernelError> {
    const TILE: usize = 64;
    let tasks: Vec<(usize, Range<usize>)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            let n = job.w.n;
            (0..n.div_ceil(TILE)).map(move |t| (j, t * TILE..((t + 1) * TILE).min(n)))
        })
        .collect();
    let views: Vec<(&[f32], usize, Matrix<'_>)> = jobs.iter().map(|j| (j.x, j.m, j.w)).collect();
    let parts: Vec<Result<Vec<f32>, KernelError>> = tasks
        .par_iter()
        .map(|(j, cols)| {
            let (x, m, w) = &views[*j];
            let mut o = vec![0f32; m * cols.len()];
            matmul(x, *m, w, cols.clone(), &mut o)?;
            Ok(o)
        })
        .collect();
    for ((j, cols), part) in tasks.iter().zip(parts) {
        let part = part?;
        let job = &mut jobs[*j];
        let n = job.w.n;
        if job.out.len() != job.m * n {
            return Err(KernelError::Args(format!(
                "job {j}: out holds {} values, expected {} × {n}",
                job.out.len(),
                job.m
            )));
        }
        for i in 0..job.m {
            job.out[i * n + cols.start..i * n + cols.end]
                .copy_from_slice(&part[i * cols.len()..(i + 1) * cols.len()]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8_matrix() -> (Vec<u8>, Vec<u8>) {
        let (k, n, blocks) = (8, 5, 2);
        let q: Vec<u8> = (0..k * n).map(|i| (i as i8 - 20) as u8).collect();
        let s: Vec<u8> = (0..blocks * n)
            .flat_map(|i| (0x3f80u16 + i as u16 * 0x10).to_le_bytes())
            .collect();
        (q, s)
    }

    #[test]
    fn geometry_is_checked() {
        let (q, s) = int8_matrix();
        let st = |blocks| Storage::ReleaseInt8 {
            q: &q,
            scales: &s,
            blocks,
        };
        assert!(Matrix::new(8, 5, st(2)).is_ok());
        assert!(Matrix::new(8, 5, st(3)).is_err());
        assert!(Matrix::new(8, 5, st(0)).is_err());
        assert!(Matrix::new(9, 5, st(1)).is_err());
        assert!(Matrix::new(usize::MAX, 2, Storage::F32Kn(&[])).is_err());
    }

    #[test]
    fn product_matches_decoded_weights_and_is_row_and_tile_independent() {
        let (q, s) = int8_matrix();
        let w = Matrix::new(
            8,
            5,
            Storage::ReleaseInt8 {
                q: &q,
                scales: &s,
                blocks: 2,
            },
        )
        .unwrap();
        let mut full = vec![0f32; 40];
        w.decode(0..8, 0..5, &mut full).unwrap();
        let x: Vec<f32> = (0..3 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0f32; 15];
        matmul(&x, 3, &w, 0..5, &mut y).unwrap();
        for i in 0..3 {
            for j in 0..5 {
                let want: f32 = (0..8).map(|kk| x[i * 8 + kk] * full[kk * 5 + j]).sum();
                assert!((y[i * 5 + j] - want).abs() < 1e-4);
            }
            // one row alone, one column at a time: bit-identical
            for j in 0..5 {
                let mut o = [0f32];
                matmul(&x[i * 8..(i + 1) * 8], 1, &w, j..j + 1, &mut o).unwrap();
                assert_eq!(o[0].to_bits(), y[i * 5 + j].to_bits());
            }
        }
        let mut y2 = vec![0f32; 15];
        run(&mut [Job {
            x: &x,
            m: 3,
            w,
            out: &mut y2,
        }])
        .unwrap();
        assert_eq!(y, y2);
    }
}
