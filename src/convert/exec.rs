//! The streaming executor: for one output tensor, read its source (one expert matrix, or a group
//! of embedding rows) with `pread`, cut the output rows into bands, compute up to `jobs` bands in
//! parallel (rayon), and hand the encoded bytes to a writer thread strictly in order, so computing
//! the next bands overlaps writing the last ones.
//!
//! Memory bound (independent of the checkpoint's size): one source matrix (at most 201 MB of
//! int8 for Grok-1's expert matrices, or `jobs` bands' worth of embedding rows), `jobs` reusable
//! bands (about `BAND_BYTES` of f32 each, plus int8 and scales when a lossless encoder needs
//! them), and at most three groups of encoded bytes in flight (two queued, one being written):
//! about 400 MB for Grok-1 with 2 jobs. Reading with `pread` instead of a map also means a
//! source file truncated by another process is an error, never a SIGBUS.

use super::band::{band_rows, fill_band_with, Band, Src};
use super::encode::{encode_band, Measure, Stats};
use super::plan::{Encode, OutTensor, Piece};
use super::sink::Chunks;
use super::ConvertError;
use crate::source::grok::{Matrix, OwnedMatrix};
use crate::source::Checkpoint;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;

/// Stream the encoded bytes of `t` into `sink`, returning error statistics. `scratch` is the
/// caller's, kept from one tensor to the next.
pub fn stream_tensor(
    ck: &Checkpoint,
    t: &OutTensor,
    measure: Measure,
    jobs: usize,
    scratch: &mut Scratch,
    sink: &mut Chunks<'_>,
) -> Result<Stats, ConvertError> {
    stream_tensor_with(ck, t, measure, jobs, None, scratch, sink)
}

/// [`stream_tensor`] with importance weights for the whole tensor (`n_experts · row` values,
/// expert-major; `row` for a 2-D tensor): each expert's rows are encoded with its slice.
pub fn stream_tensor_with(
    ck: &Checkpoint,
    t: &OutTensor,
    measure: Measure,
    jobs: usize,
    weights: Option<&[f32]>,
    scratch: &mut Scratch,
    sink: &mut Chunks<'_>,
) -> Result<Stats, ConvertError> {
    let mut stats = Stats::default();
    if let Encode::Bytes(b) = &t.encode {
        sink(b)?;
        return Ok(stats);
    }
    let jobs = jobs.max(1);
    scratch.bands.resize_with(jobs, Band::default);
    let Scratch { bands, om, pool } = scratch;
    pipeline(&t.name, t.nbytes, jobs, pool, sink, |pipe| {
        let mut job = Job {
            t,
            measure,
            weights,
            expert: None,
            bands,
            stats: &mut stats,
            pipe,
        };
        for piece in &t.pieces {
            job.expert = piece.expert;
            if !produce_piece(ck, piece, &mut job, om)? {
                break; // the writer stopped; its error is reported by the pipeline
            }
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Run `produce`, which queues a tensor's encoded bytes in order through the [`Pipe`], while a
/// writer thread hands them to `sink`: computing the next bytes overlaps writing the last
/// ones. Checks that exactly `planned` bytes were written. `pool` keeps the buffers for the
/// next tensor. (`convert` and `quantize` both stream through here.)
pub(crate) fn pipeline(
    tensor: &str,
    planned: u64,
    jobs: usize,
    pool: &mut Vec<Vec<u8>>,
    sink: &mut Chunks<'_>,
    produce: impl FnOnce(&Pipe<'_>) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    let jobs = jobs.max(1);
    let (tx, rx) = sync_channel::<Vec<u8>>(2 * jobs);
    let shared = Mutex::new(std::mem::take(pool));
    let result = std::thread::scope(|scope| {
        let shared = &shared;
        let writer = scope.spawn(move || -> Result<u64, ConvertError> {
            let mut n = 0u64;
            for buf in rx {
                sink(&buf)?;
                n += buf.len() as u64;
                recycle(shared, buf, 3 * jobs);
            }
            Ok(n)
        });
        let pipe = Pipe { tx, pool: shared };
        let produced = produce(&pipe);
        drop(pipe);
        let written = writer.join().map_err(|_| ConvertError::WriterPanicked {
            tensor: tensor.to_string(),
        })?;
        // A writer error explains a producer stop; report it first.
        let written = written?;
        produced?;
        Ok::<u64, ConvertError>(written)
    });
    *pool = shared.into_inner().unwrap_or_default();
    let encoded = result?;
    if encoded != planned {
        return Err(ConvertError::EncodedLength {
            tensor: tensor.to_string(),
            encoded,
            planned,
        });
    }
    Ok(())
}

/// Buffers a conversion reuses from one tensor to the next (create one per output file loop
/// with `Scratch::default()`): the bands, the source matrix (201 MB for a Grok-1 expert) and
/// the encoded-bytes pool. Safetensors writes every expert as its own tensor, so without this
/// each of them would fault in (and the kernel zero) fresh pages. Dropped with the conversion.
#[derive(Default)]
pub struct Scratch {
    bands: Vec<Band>,
    om: OwnedMatrix,
    pool: Vec<Vec<u8>>,
}

/// The producers' end of the writer thread: encoded bytes are queued strictly in order, and
/// the buffers the writer is done with come back through `pool`, so the steady state allocates
/// nothing (a fresh multi-megabyte allocation costs page faults and zeroing in the kernel,
/// which measured about a tenth of a conversion's CPU time before buffers were reused).
pub(crate) struct Pipe<'p> {
    tx: SyncSender<Vec<u8>>,
    pool: &'p Mutex<Vec<Vec<u8>>>,
}

impl Pipe<'_> {
    /// Queue bytes for the writer; false when the writer has stopped.
    pub(crate) fn send(&self, buf: Vec<u8>) -> bool {
        self.tx.send(buf).is_ok()
    }
    /// An empty buffer with room for `cap` bytes, recycled when one is available.
    pub(crate) fn buffer(&self, cap: usize) -> Vec<u8> {
        let mut b = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        b.clear();
        b.reserve(cap);
        b
    }
}

/// Keep a written buffer for reuse (at most `keep` of them).
fn recycle(pool: &Mutex<Vec<Vec<u8>>>, buf: Vec<u8>, keep: usize) {
    if let Ok(mut p) = pool.lock() {
        if p.len() < keep {
            p.push(buf);
        }
    }
}

/// One tensor being encoded: what to produce, the workers' bands, and where bytes and
/// statistics go.
struct Job<'j, 'p> {
    t: &'j OutTensor,
    measure: Measure,
    /// Importance weights of the whole tensor (expert-major), if it is encoded with them.
    weights: Option<&'j [f32]>,
    /// The expert of the piece being produced (selects its slice of `weights`).
    expert: Option<usize>,
    bands: &'j mut [Band],
    stats: &'j mut Stats,
    pipe: &'j Pipe<'p>,
}

impl Job<'_, '_> {
    /// [`for_each_band`] over this job's bands, stats and pipe.
    fn each_band<F>(
        &mut self,
        n_rows: usize,
        per_band: usize,
        encode: F,
    ) -> Result<bool, ConvertError>
    where
        F: Fn(usize, usize, &mut Band) -> Result<(Vec<u8>, Stats), ConvertError> + Sync,
    {
        for_each_band(n_rows, per_band, self.bands, self.stats, self.pipe, encode)
    }
}

/// f32 sources larger than this are read a group of bands at a time (the 3.2 GB embedding);
/// smaller ones (norms, routers) at once.
const WHOLE_F32_BYTES: u64 = 64 << 20;

/// One piece: source data is read with `pread` (never through a map), so a file truncated by
/// another process mid-read is an error, not a SIGBUS; memory holds at most one int8 expert
/// matrix (201 MB for Grok-1) or one group of embedding rows.
fn produce_piece(
    ck: &Checkpoint,
    piece: &Piece,
    job: &mut Job<'_, '_>,
    om: &mut OwnedMatrix,
) -> Result<bool, ConvertError> {
    let t = job.t;
    let src_t = ck
        .tensors
        .get(piece.tensor)
        .ok_or_else(|| ConvertError::NoSource {
            tensor: t.name.clone(),
            index: piece.tensor,
        })?;
    // Only the lossless encoders need the original int8 values and scales.
    let keep_int8 = matches!(
        t.encode,
        Encode::Ggml(crate::quant::GgmlType::Q8_0)
            | Encode::CtPacked { bits: 8, .. }
            | Encode::CtScale { bits: 8, .. }
    );
    if src_t.spec.role.is_matrix() {
        ck.matrix_owned_into(src_t, piece.expert, om)?;
        let m = om.view();
        // Grok-1's scale blocks are multiples of 32 rows: Q8_0 blocks copy the int8 directly.
        if piece.transpose
            && t.encode == Encode::Ggml(crate::quant::GgmlType::Q8_0)
            && m.rows.is_multiple_of(32)
            && m.block_height().is_multiple_of(32)
        {
            return run_q8_direct(job, &m);
        }
        // bf16 (safetensors, GGUF): each element is RNE(q · s) — exact in f32, so this equals
        // the generic path's value — computed straight from the transposed int8, without the
        // f32 band.
        if piece.transpose && t.encode == Encode::Float(crate::base::DType::BF16) {
            return run_bf16_direct(job, &m);
        }
        // compressed-tensors int8 whose groups lie inside one release scale block: copy too.
        if let Encode::CtPacked { bits: 8, group } | Encode::CtScale { bits: 8, group } = t.encode {
            if piece.transpose
                && group > 0
                && m.rows.is_multiple_of(group)
                && m.block_height().is_multiple_of(group)
            {
                return run_ct8_direct(job, &m, group);
            }
        }
        let src = Src::Int8(m);
        return run_bands(job, &src, piece.transpose, keep_int8);
    }
    let a = src_t.weight();
    let dims = a.shape.dims();
    let (rows, cols) = match dims {
        [n] => (1usize, *n as usize),
        [r, c] => (*r as usize, *c as usize),
        _ => {
            return Err(ConvertError::SourceShape {
                tensor: t.name.clone(),
                shape: dims.to_vec(),
            })
        }
    };
    let total = (a.data.end - a.data.start) as usize;
    if piece.transpose || (total as u64) <= WHOLE_F32_BYTES {
        let bytes = ck.read_at(src_t, a.data.start, total)?;
        let src = Src::F32 {
            bytes: &bytes,
            rows,
            cols,
        };
        return run_bands(job, &src, piece.transpose, keep_int8);
    }
    // Large and not transposed (the embedding): read one group of bands' rows at a time.
    let probe = Src::F32 {
        bytes: &[],
        rows,
        cols,
    };
    let per_group = band_rows(&probe, false).max(1) * job.bands.len();
    let mut first = 0;
    let mut bytes = Vec::new();
    while first < rows {
        let n = per_group.min(rows - first);
        ck.read_at_into(
            src_t,
            a.data.start + (first * cols * 4) as u64,
            n * cols * 4,
            &mut bytes,
        )?;
        let src = Src::F32 {
            bytes: &bytes,
            rows: n,
            cols,
        };
        if !run_bands(job, &src, false, keep_int8)? {
            return Ok(false);
        }
        first += n;
    }
    Ok(true)
}

/// Q8_0 straight from the release's int8 for a transposed matrix whose scale blocks are
/// multiples of 32 rows: each 32-block shares one scale, so it is copied (`d = f16(scale)`,
/// `qs = q`) unless the scale is not an exact f16 or a value is -128, in which case that block
/// alone is quantized from its exact values. No f32 band is built.
fn run_q8_direct(job: &mut Job<'_, '_>, m: &Matrix<'_>) -> Result<bool, ConvertError> {
    use crate::quant::{self, GgmlType};
    let (t, measure, pipe) = (job.t, job.measure, job.pipe);
    let (n_rows, len) = (m.cols, m.rows);
    let per_band = (super::band::BAND_BYTES / len.max(1)).clamp(1, n_rows.max(1));
    job.each_band(n_rows, per_band, |first, n, band| {
        super::band::gather_int8_transposed(m, first, n, &mut band.q);
        let mut out = pipe.buffer(n * len / 32 * 34);
        let mut st = Stats::default();
        let mut xb = [0f32; 32];
        for r in 0..n {
            let j = first + r;
            for (k, qb) in band.q[r * len..(r + 1) * len].chunks_exact(32).enumerate() {
                let sbits = m.scale_bits(32 * k, j);
                if quant::grok::q8_0_block_from_int8(qb, sbits, &mut out) {
                    st.lossless += 1;
                    if measure == Measure::Errors {
                        st.n += 32; // exact: zero error
                    }
                    continue;
                }
                let s = crate::base::float::bf16_bits_to_f32(sbits);
                for (x, &q) in xb.iter_mut().zip(qb) {
                    *x = f32::from(q) * s;
                }
                let at = out.len();
                quant::quantize_row(GgmlType::Q8_0, &xb, &mut out)
                    .map_err(|e| encode_error(t, e))?;
                st.requantized += 1;
                if measure == Measure::Errors {
                    let mut y = [0f32; 32];
                    quant::dequantize_row(GgmlType::Q8_0, &out[at..], &mut y)
                        .map_err(|e| encode_error(t, e))?;
                    st.add_errors(&xb, &y);
                }
            }
        }
        Ok((out, st))
    })
}

/// bf16 straight from the release's int8 for a transposed matrix: per output row (a release
/// column) and scale block, `bf16(q · s)` with round-to-nearest-even. No f32 band is built.
fn run_bf16_direct(job: &mut Job<'_, '_>, m: &Matrix<'_>) -> Result<bool, ConvertError> {
    use crate::base::float::bf16_bits_to_f32;
    let (measure, pipe) = (job.measure, job.pipe);
    let (n_rows, len) = (m.cols, m.rows);
    let bh = m.block_height().max(1);
    let per_band = (super::band::BAND_BYTES / 2 / len.max(1)).clamp(1, n_rows.max(1));
    job.each_band(n_rows, per_band, |first, n, band| {
        super::band::gather_int8_transposed(m, first, n, &mut band.q);
        let mut out = pipe.buffer(n * len * 2);
        let mut st = Stats::default();
        for (r, qrow) in band.q.chunks_exact(len).enumerate() {
            for (b, qb) in qrow.chunks(bh).enumerate() {
                let s = bf16_bits_to_f32(m.scale_bits(b * bh, first + r));
                crate::quant::grok::int8_scaled_to_bf16_le(qb, s, &mut out);
                if measure == Measure::Errors {
                    for &q in qb {
                        let x = f32::from(q) * s;
                        let y = crate::base::float::round_bf16(x);
                        if x.to_bits() != y.to_bits() {
                            st.add_diff((x - y).abs());
                        }
                    }
                    st.n += qb.len() as u64;
                }
            }
        }
        Ok((out, st))
    })
}

/// compressed-tensors int8 straight from the release: `weight_packed` holds `q + 128` four to a
/// word (first element in the lowest bits), `weight_scale` the release's bf16 scale of each
/// group. Lossless by construction; no f32 band is built.
fn run_ct8_direct(
    job: &mut Job<'_, '_>,
    m: &Matrix<'_>,
    group: usize,
) -> Result<bool, ConvertError> {
    let (measure, pipe) = (job.measure, job.pipe);
    let (n_rows, len) = (m.cols, m.rows);
    let packed = matches!(job.t.encode, Encode::CtPacked { .. });
    let per_band = (super::band::BAND_BYTES / len.max(1)).clamp(1, n_rows.max(1));
    job.each_band(n_rows, per_band, |first, n, band| {
        let mut st = Stats::default();
        let groups = (len / group) as u64;
        let mut out = pipe.buffer(if packed {
            n * len
        } else {
            n * (len / group) * 2
        });
        if packed {
            // Four `q + 128` to a little-endian word, first element lowest: as bytes,
            // just each int8 with its top bit flipped, in order (when rows fill whole
            // words; otherwise each row's last word is zero-padded).
            super::band::gather_int8_transposed(m, first, n, &mut band.q);
            if len % 4 == 0 {
                out.extend(band.q.iter().map(|&q| (q as u8) ^ 0x80));
            } else {
                for r in 0..n {
                    for w in band.q[r * len..(r + 1) * len].chunks(4) {
                        let mut word = 0u32;
                        for (k, &q) in w.iter().enumerate() {
                            word |= u32::from((q as u8) ^ 0x80) << (8 * k);
                        }
                        out.extend_from_slice(&word.to_le_bytes());
                    }
                }
            }
        } else {
            for r in 0..n {
                for g in 0..len / group {
                    out.extend_from_slice(&m.scale_bits(g * group, first + r).to_le_bytes());
                }
            }
        }
        st.lossless += groups * n as u64;
        if measure == Measure::Errors && packed {
            st.n += (n * len) as u64; // exact: zero error
        }
        Ok((out, st))
    })
}

/// The band loop every encoder shares: output rows `0..n_rows` in bands of `per_band`,
/// up to `bands.len()` of them encoded in parallel by `encode(first, n, band)`, each band's
/// bytes queued for the writer in order (no concatenation copy) and its stats added. False
/// when the writer has stopped.
pub(crate) fn for_each_band<F>(
    n_rows: usize,
    per_band: usize,
    bands: &mut [Band],
    stats: &mut Stats,
    pipe: &Pipe<'_>,
    encode: F,
) -> Result<bool, ConvertError>
where
    F: Fn(usize, usize, &mut Band) -> Result<(Vec<u8>, Stats), ConvertError> + Sync,
{
    let per_band = per_band.max(1);
    let starts: Vec<usize> = (0..n_rows).step_by(per_band).collect();
    for group in starts.chunks(bands.len().max(1)) {
        let encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>> = group
            .par_iter()
            .zip(bands.par_iter_mut())
            .map(|(&first, band)| encode(first, per_band.min(n_rows - first), band))
            .collect();
        for r in encoded {
            let (b, st) = r?;
            stats.add(&st);
            if !b.is_empty() && !pipe.send(b) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The generic encoder: bands of exact f32 output rows ([`fill_band_with`]), encoded by
/// [`encode_band`].
fn run_bands(
    job: &mut Job<'_, '_>,
    src: &Src<'_>,
    transpose: bool,
    keep_int8: bool,
) -> Result<bool, ConvertError> {
    let (t, measure, pipe) = (job.t, job.measure, job.pipe);
    let per_band = band_rows(src, transpose).max(1);
    // The expert's slice of the tensor's importance weights, one per output column.
    let row = src.out_cols(transpose);
    let qw = match job.weights {
        None => None,
        Some(w) => Some(
            super::weights::expert_slice(w, row, job.expert).ok_or_else(|| {
                ConvertError::ImatrixCoverage {
                    tensor: t.name.clone(),
                    values: w.len(),
                    expert: job.expert,
                    row,
                }
            })?,
        ),
    };
    job.each_band(src.out_rows(transpose), per_band, |first, n, band| {
        fill_band_with(src, transpose, first, n, band, keep_int8);
        let mut out = pipe.buffer(0);
        let mut st = Stats::default();
        encode_band(band, &t.encode, measure, qw, &mut out, &mut st)
            .map_err(|e| encode_error(t, e))?;
        Ok((out, st))
    })
}

fn encode_error(t: &OutTensor, source: crate::quant::QuantError) -> ConvertError {
    ConvertError::Encode {
        tensor: t.name.clone(),
        source,
    }
}
