//! Matrix products that read weights as they are stored (issue #13).
//!
//! Why this module exists: the reference forward pass used to dequantize every weight matrix
//! into f32 bands before an sgemm, so a handful of tokens paid for converting whole expert
//! matrices (805 MB of f32 for each 201 MB int8 matrix), and a decode step paid for every byte
//! of every band. Here a weight matrix is described as it lies in the file ([`Storage`]: the
//! release's int8 with bf16 row-block scales, GGUF rows of plain or block-quantized values,
//! safetensors dense rows, compressed-tensors packed int8/int4) and the product `x · W` decodes
//! the weights only into a cache-sized panel (or, for one row over the release's `[k, n]`
//! layout, straight into registers).
//!
//! # The contract
//!
//! Every implementation in this module keeps it (the reference model relies on it):
//! - **Exact weights.** Every weight enters the product with exactly the f32 value that
//!   [`Matrix::decode`] gives, which is the value grokit's dequantization has always given
//!   (`q · s` for the release's int8, [`crate::quant::dequantize_row`] for GGUF types,
//!   `q · scale` for compressed-tensors). The panel decoders evaluate the same f32 expressions
//!   (nothing fused that the scalar code does not fuse) and are tested bit for bit against
//!   [`Matrix::decode`] on random bytes, NaN/inf/subnormal scales included.
//! - **One fixed summation order per storage orientation.** Over `[k, n]` storages (the
//!   release) `y[i, j] = fma(x[i, k−1], w[k−1, j], … fma(x[i, 0], w[0, j], +0) …)`: a single
//!   sequential FMA chain over `k`, in order, from `+0`. Over `[n, k]` storages (GGUF,
//!   safetensors, compressed-tensors, f32 `[n, k]` activations) the dot-product order: eight
//!   lanes, lane `l` the FMA chain over the `k ≡ l (mod 8)` in order from `+0`, then the fixed
//!   tree `((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))` (`rows`: it reads a stored row as
//!   it lies, with no transpose). Either way output element `(i, j)` depends only on row `i` of
//!   `x`, column `j` of `W` and the storage's orientation: not on how many rows are in the
//!   batch, which column range or tile is being computed, the k-blocking (partial chains and
//!   lanes are stored and reloaded exactly), the thread count, which of the one-row, few-row or
//!   many-row paths ran, or the instruction set (`f32::mul_add` and `vfmadd` are the same
//!   correctly rounded operation). That is what makes a KV-cached decode step (one row) equal a
//!   full recompute (many rows) bit for bit, banded products equal whole ones, and the portable
//!   path equal the AVX2 path (tested; NaN *payloads* may differ between them, never a number).
//!   The process picks one instruction set ([`isa`]) anyway.
//! - **No panics on bad geometry.** A [`Matrix`] checks its byte lengths with checked
//!   arithmetic when it is built; products check their slices and return [`KernelError`].
//!
//! Orientation: logically every matrix is `W[k, n]` (k = input width, n = output width), so
//! `y[m, n] = x[m, k] · W`. The release stores `[k, n]` ([`Storage::ReleaseInt8`],
//! [`Storage::F32Kn`]); GGUF and safetensors store `[n, k]`, one row of `k` values per output
//! ([`Storage::Rows`], [`Storage::Ct`]).
//!
//! # How (blocking, instruction sets)
//!
//! The work of a product is split into column tiles ([`run`]: tasks over (job, tile) on the
//! rayon pool). One tile is computed by `driver::tile` (`[k, n]`) or `rows::tile` (`[n, k]`):
//! - `[k, n]`, several rows: for each k-block of `kc` rows, for each panel of columns, decode
//!   `W[k-block, columns]` into the panel (f32, sub-strips of 16 columns × `kc` rows), then for
//!   each sub-strip and each block of at most 6 rows of `x` run the 6 × 16 outer-product
//!   microkernel (12 AVX2 accumulators; per `k` two panel loads, six broadcasts, twelve FMAs).
//!   Panels span up to 1024 columns with `kc · width` ≤ 128 Ki floats, so each row of `W` is
//!   read as one contiguous run; the next k-block is prefetched during the microkernel calls.
//! - `[k, n]`, at most 6 rows: no panel; 64 columns × 16 rows at a time decoded and FMA'd in
//!   registers.
//! - `[n, k]`, at most 6 rows (AVX2, GGUF row types): no panel; 2–12 stored rows advance in
//!   lockstep one quant block at a time (each block decoded into an L1 buffer, FMA'd into
//!   the lanes of every output, kept in registers over all of `k`), each row's stream
//!   prefetched 1 KiB ahead.
//! - `[n, k]`, more rows (and the storages without a lockstep decoder): panels of 24 stored
//!   rows × k-blocks of 512 decoded row-major into the scratch, and a 4 × 3 dot microkernel
//!   (12 accumulators of 8 lanes; per 8 elements of `k` four loads of `x`, three of the panel,
//!   twelve FMAs) whose lanes are loaded from and stored to a per-panel state.
//!
//! Instruction sets: AVX2 + FMA + F16C, detected at run time (`x86`), and a portable path
//! (plain Rust, `f32::mul_add`) that every other target runs; a NEON microkernel and decoders
//! slot in as a third [`Isa`] arm beside them. AVX-512 adds nothing to the f32 FMA ceiling of
//! the Zen 4 cores we run on (512-bit FMAs are double-pumped), so there is no AVX-512 path.
//!
//! Every GGUF type grokit writes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K…Q6_K), the
//! release's int8 and compressed-tensors int4/int8 (groups a multiple of 8) have SIMD decoders;
//! types without one (Q8_1/Q8_K and whatever `quant` adds later) are decoded block by block
//! with [`crate::quant::dequantize_row`]: new types work without touching this module.
//!
//! # Where the time goes
//!
//! Measured by `cargo bench --bench kernel` (docs/PERFORMANCE.md, "Kernels"): the microkernels
//! alone run near the FMA ceiling; what separates a product from it is the decode of each
//! weight (paid once per weight whatever `m` is, so it weighs in inversely to `m`), the
//! per-call load and store of the accumulators, and waiting on memory. A product of a few rows
//! is bound by decode throughput (cycles per weight) rather than by the FMAs or the bytes:
//! the f32 value of every weight must be formed exactly, so a 4-bit type costs about as many
//! cycles per weight as an 8-bit one and reaches a smaller fraction of the memory bandwidth.
//!
//! # Using it from the model
//!
//! - Experts: group tokens by expert, then one [`run`] with one [`Job`] per (expert, matrix)
//!   that has tokens (`x` = that expert's rows). The pool splits every job into column tiles,
//!   so one token's two experts keep both cores busy.
//! - Decode: one row per job; each weight is read exactly once per product.
//! - Attention: [`matmul_f32`] (`q · kᵀ` with [`Layout::Nk`], `p · v` with [`Layout::Kn`]).
//! - Threads: [`run`] and [`matmul_f32`] use the current rayon pool (`install` a local pool to
//!   bound them); results do not depend on its size.

mod driver;
mod pack;
mod rows;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // std::arch only: see x86.rs
mod x86;

pub use driver::{fma_ceiling_gflops, fma_ceiling_run, isa, Isa};

use crate::base::float::{bf16_bits_to_f32, decode_f32_le};
use crate::quant::{ct, dequantize_row, GgmlType, QuantError};
use pack::Src;
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

    /// Bytes of the stored matrix (weights and scales): what one pass over it reads.
    pub fn stored_bytes(&self) -> usize {
        match self.storage {
            Storage::F32Kn(b) => b.len(),
            Storage::ReleaseInt8 { q, scales, .. } => q.len() + scales.len(),
            Storage::Rows { bytes, .. } => bytes.len(),
            Storage::Ct { packed, scales, .. } => packed.len() + scales.len(),
        }
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
/// Output element `(i, j)` is the FMA chain over `k` described in the module docs, whatever
/// `m` and `cols` are.
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
    if m == 0 || nc == 0 {
        return Ok(());
    }
    let mut rows: Vec<&mut [f32]> = out.chunks_exact_mut(nc).collect();
    driver::Scratch::with(|sc| driver::tile(isa(), &Src::W(*w), x, m, cols, &mut rows, sc))
}

/// Rows of `k` per panel of the multi-row product (the k-block; results do not depend on it).
pub const KB: usize = driver::KC_GEMM;

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
///
/// Tiles are multiples of 64 columns, at most [`TILE_MAX`], and small enough that every job
/// has at least 8 tiles per pool thread; each task writes its own rows' slices of the job's
/// `out` directly (no copies).
pub fn run(jobs: &mut [Job<'_, '_>]) -> Result<(), KernelError> {
    for (j, job) in jobs.iter().enumerate() {
        let (k, n) = (job.w.k, job.w.n);
        if job.x.len() != mul(job.m, k, "x")? || job.out.len() != mul(job.m, n, "out")? {
            return Err(KernelError::Args(format!(
                "job {j}: x holds {} values and out {}, expected {} × {k} and {} × {n}",
                job.x.len(),
                job.out.len(),
                job.m,
                job.m
            )));
        }
    }
    let threads = rayon::current_num_threads().max(1);
    let mut tasks: Vec<Task<'_, '_>> = Vec::new();
    for job in jobs.iter_mut() {
        if job.m == 0 || job.w.n == 0 {
            continue;
        }
        let src = Src::W(job.w);
        let tile = tile_width(&src, threads);
        split_tiles(src, job.x, job.m, job.out, tile, &mut tasks);
    }
    run_tasks(tasks)
}

/// Widest column tile [`run`] hands one task: 4096 columns of a `[k, n]` storage (a whole
/// 4 KiB page of each int8 row, read once per k-block instead of by four tasks at different
/// times), 1024 of an `[n, k]` one.
pub const TILE_MAX: usize = 4096;

/// Column tile for a product of width `n`: a multiple of the panel width, at most
/// [`TILE_MAX`] (1024 for `[n, k]` storages), at least 3 (`[k, n]`) or 8 (`[n, k]`) tiles per
/// thread when `n` allows.
fn tile_width(src: &Src<'_>, threads: usize) -> usize {
    // [k, n]: few wide tiles (3 per thread), each row's run of bytes as long as possible.
    let (max, per_thread) = if src.is_rows() {
        (1024, 8)
    } else {
        (TILE_MAX, 3)
    };
    (src.n() / (per_thread * threads))
        .next_multiple_of(pack::NP)
        .clamp(pack::NP, max)
}

/// One task: the columns `cols` of one product, its rows' slices of the output.
struct Task<'a, 'o> {
    src: Src<'a>,
    x: &'a [f32],
    m: usize,
    cols: Range<usize>,
    out: Vec<&'o mut [f32]>,
}

fn split_tiles<'a, 'o>(
    src: Src<'a>,
    x: &'a [f32],
    m: usize,
    out: &'o mut [f32],
    tile: usize,
    tasks: &mut Vec<Task<'a, 'o>>,
) {
    let n = src.n();
    let first = tasks.len();
    for t in 0..n.div_ceil(tile) {
        tasks.push(Task {
            src,
            x,
            m,
            cols: t * tile..((t + 1) * tile).min(n),
            out: Vec::with_capacity(m),
        });
    }
    for row in out.chunks_exact_mut(n) {
        for (t, part) in row.chunks_mut(tile).enumerate() {
            tasks[first + t].out.push(part);
        }
    }
}

fn run_tasks(tasks: Vec<Task<'_, '_>>) -> Result<(), KernelError> {
    let isa = isa();
    tasks.into_par_iter().try_for_each(|mut t| {
        driver::Scratch::with(|sc| driver::tile(isa, &t.src, t.x, t.m, t.cols, &mut t.out, sc))
    })
}

/// Layout of the right-hand f32 matrix of [`matmul_f32`] (`k × n` logically).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major `[k, n]` (e.g. attention's `p · v`, `v` as `[positions, head_dim]`).
    Kn,
    /// Row-major `[n, k]`, the transpose (e.g. `q · kᵀ` with the keys as `[positions,
    /// head_dim]`).
    Nk,
}

/// `c[m, n] = a[m, k] · b` for f32 activations (attention's `q · kᵀ` and `p · v`), with the
/// module's guarantee: element `(i, j)` is the same FMA chain over `k` whatever `m`, `n` and
/// the split are, so a one-row (KV-cached) product equals the same row of a full one. Work is
/// split over column tiles on the rayon pool when it is large enough to pay for it.
pub fn matmul_f32(
    a: &[f32],
    m: usize,
    k: usize,
    b: &[f32],
    layout: Layout,
    n: usize,
) -> Result<Vec<f32>, KernelError> {
    let mn = mul(m, n, "m·n")?;
    if a.len() != mul(m, k, "a")? || b.len() != mul(k, n, "b")? {
        return Err(KernelError::Args(format!(
            "a holds {} values and b {}, expected {m} × {k} and {k} × {n}",
            a.len(),
            b.len()
        )));
    }
    let mut c = vec![0f32; mn];
    if mn == 0 {
        return Ok(c);
    }
    let src = match layout {
        Layout::Kn => Src::Kn { b, k, n },
        Layout::Nk => Src::Nk { b, k, n },
    };
    // Below ~4 MFLOP a split costs more than it saves.
    let threads = rayon::current_num_threads().max(1);
    let tile = if threads > 1 && m.saturating_mul(n).saturating_mul(k) >= 1 << 21 {
        tile_width(&src, threads)
    } else {
        n
    };
    let mut tasks = Vec::new();
    split_tiles(src, a, m, &mut c, tile, &mut tasks);
    if tasks.len() == 1 {
        let mut t = tasks.pop().expect("one task");
        driver::Scratch::with(|sc| driver::tile(isa(), &t.src, t.x, t.m, t.cols, &mut t.out, sc))?;
    } else {
        run_tasks(tasks)?;
    }
    Ok(c)
}
