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
use super::ConvertError;
use crate::source::Checkpoint;
use rayon::prelude::*;
use std::sync::mpsc::sync_channel;

/// Where encoded bytes go (a GGUF or safetensors writer), called from the writer thread.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), ConvertError> + Send + 'a;

/// Stream the encoded bytes of `t` into `sink`, returning error statistics.
pub fn stream_tensor(
    ck: &Checkpoint,
    t: &OutTensor,
    measure: Measure,
    jobs: usize,
    sink: &mut Sink<'_>,
) -> Result<Stats, ConvertError> {
    let mut stats = Stats::default();
    if let Encode::Bytes(b) = &t.encode {
        sink(b)?;
        return Ok(stats);
    }
    let (tx, rx) = sync_channel::<Vec<u8>>(2);
    let result = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<u64, ConvertError> {
            let mut n = 0u64;
            for buf in rx {
                sink(&buf)?;
                n += buf.len() as u64;
            }
            Ok(n)
        });
        let produced = produce(ck, t, measure, jobs, &mut stats, &|buf| {
            tx.send(buf).is_ok()
        });
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| ConvertError::Plan(format!("{}: writer thread panicked", t.name)))?;
        // A writer error explains a producer stop; report it first.
        let written = written?;
        produced?;
        Ok::<u64, ConvertError>(written)
    })?;
    if result != t.nbytes {
        return Err(ConvertError::Plan(format!(
            "{}: encoded {result} bytes but the plan says {}",
            t.name, t.nbytes
        )));
    }
    Ok(stats)
}

fn produce(
    ck: &Checkpoint,
    t: &OutTensor,
    measure: Measure,
    jobs: usize,
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<(), ConvertError> {
    let mut bands: Vec<Band> = (0..jobs.max(1)).map(|_| Band::default()).collect();
    for piece in &t.pieces {
        if !produce_piece(ck, t, piece, measure, &mut bands, stats, send)? {
            break; // the writer stopped; its error is reported by the caller
        }
    }
    Ok(())
}

/// f32 sources larger than this are read a group of bands at a time (the 3.2 GB embedding);
/// smaller ones (norms, routers) at once.
const WHOLE_F32_BYTES: u64 = 64 << 20;

/// One piece: source data is read with `pread` (never through a map), so a file truncated by
/// another process mid-read is an error, not a SIGBUS; memory holds at most one int8 expert
/// matrix (201 MB for Grok-1) or one group of embedding rows.
fn produce_piece(
    ck: &Checkpoint,
    t: &OutTensor,
    piece: &Piece,
    measure: Measure,
    bands: &mut [Band],
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<bool, ConvertError> {
    let src_t = ck.tensors.get(piece.tensor).ok_or_else(|| {
        ConvertError::Plan(format!(
            "{}: source index {} out of range",
            t.name, piece.tensor
        ))
    })?;
    // Only the lossless encoders need the original int8 values and scales.
    let keep_int8 = matches!(
        t.encode,
        Encode::Ggml(crate::quant::GgmlType::Q8_0)
            | Encode::CtPacked { bits: 8, .. }
            | Encode::CtScale { bits: 8, .. }
    );
    if src_t.spec.role.is_matrix() {
        let om = ck.matrix_owned(src_t, piece.expert)?;
        let m = om.view();
        // Grok-1's scale blocks are multiples of 32 rows: Q8_0 blocks copy the int8 directly.
        if piece.transpose
            && t.encode == Encode::Ggml(crate::quant::GgmlType::Q8_0)
            && m.rows % 32 == 0
            && m.block_height() % 32 == 0
        {
            return run_q8_direct(t, &m, measure, bands, stats, send);
        }
        // compressed-tensors int8 whose groups lie inside one release scale block: copy too.
        if let Encode::CtPacked { bits: 8, group } | Encode::CtScale { bits: 8, group } = t.encode {
            if piece.transpose && group > 0 && m.rows % group == 0 && m.block_height() % group == 0
            {
                return run_ct8_direct(t, &m, group, measure, bands, stats, send);
            }
        }
        let src = Src::Int8(m);
        return run_bands(
            t,
            &src,
            piece.transpose,
            0,
            src.out_rows(piece.transpose),
            keep_int8,
            measure,
            bands,
            stats,
            send,
        );
    }
    let a = src_t.weight();
    let dims = a.shape.dims();
    let (rows, cols) = match dims {
        [n] => (1usize, *n as usize),
        [r, c] => (*r as usize, *c as usize),
        _ => {
            return Err(ConvertError::Plan(format!(
                "{}: unexpected source shape {dims:?}",
                t.name
            )))
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
        return run_bands(
            t,
            &src,
            piece.transpose,
            0,
            src.out_rows(piece.transpose),
            keep_int8,
            measure,
            bands,
            stats,
            send,
        );
    }
    // Large and not transposed (the embedding): read one group of bands' rows at a time.
    let probe = Src::F32 {
        bytes: &[],
        rows,
        cols,
    };
    let per_group = band_rows(&probe, false).max(1) * bands.len();
    let mut first = 0;
    while first < rows {
        let n = per_group.min(rows - first);
        let bytes = ck.read_at(
            src_t,
            a.data.start + (first * cols * 4) as u64,
            n * cols * 4,
        )?;
        let src = Src::F32 {
            bytes: &bytes,
            rows: n,
            cols,
        };
        if !run_bands(t, &src, false, 0, n, keep_int8, measure, bands, stats, send)? {
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
fn run_q8_direct(
    t: &OutTensor,
    m: &crate::source::grok::Matrix<'_>,
    measure: Measure,
    bands: &mut [Band],
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<bool, ConvertError> {
    use crate::quant::{self, GgmlType};
    let (n_rows, len) = (m.cols, m.rows);
    let per_band = (super::band::BAND_BYTES / len.max(1)).clamp(1, n_rows.max(1));
    let starts: Vec<usize> = (0..n_rows).step_by(per_band).collect();
    for group in starts.chunks(bands.len()) {
        let encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>> = group
            .par_iter()
            .zip(bands.par_iter_mut())
            .map(|(&first, band)| {
                let n = per_band.min(n_rows - first);
                super::band::gather_int8_transposed(m, first, n, &mut band.q);
                let mut out = Vec::with_capacity(n * len / 32 * 34);
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
                        quant::quantize_row(GgmlType::Q8_0, &xb, &mut out).map_err(|e| {
                            ConvertError::Quant {
                                tensor: t.name.clone(),
                                source: e,
                            }
                        })?;
                        st.requantized += 1;
                        if measure == Measure::Errors {
                            let mut y = [0f32; 32];
                            quant::dequantize_row(GgmlType::Q8_0, &out[at..], &mut y).map_err(
                                |e| ConvertError::Quant {
                                    tensor: t.name.clone(),
                                    source: e,
                                },
                            )?;
                            st.add_errors(&xb, &y);
                        }
                    }
                }
                Ok((out, st))
            })
            .collect();
        if !send_group(encoded, stats, send)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// compressed-tensors int8 straight from the release: `weight_packed` holds `q + 128` four to a
/// word (first element in the lowest bits), `weight_scale` the release's bf16 scale of each
/// group. Lossless by construction; no f32 band is built.
fn run_ct8_direct(
    t: &OutTensor,
    m: &crate::source::grok::Matrix<'_>,
    group: usize,
    measure: Measure,
    bands: &mut [Band],
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<bool, ConvertError> {
    let (n_rows, len) = (m.cols, m.rows);
    let packed = matches!(t.encode, Encode::CtPacked { .. });
    let per_band = (super::band::BAND_BYTES / len.max(1)).clamp(1, n_rows.max(1));
    let starts: Vec<usize> = (0..n_rows).step_by(per_band).collect();
    for grp in starts.chunks(bands.len()) {
        let encoded: Vec<(Vec<u8>, Stats)> = grp
            .par_iter()
            .zip(bands.par_iter_mut())
            .map(|(&first, band)| {
                let n = per_band.min(n_rows - first);
                let mut st = Stats::default();
                let groups = (len / group) as u64;
                let mut out = Vec::with_capacity(if packed {
                    n * len
                } else {
                    n * (len / group) * 2
                });
                if packed {
                    super::band::gather_int8_transposed(m, first, n, &mut band.q);
                    for r in 0..n {
                        for w in band.q[r * len..(r + 1) * len].chunks(4) {
                            let mut word = 0u32;
                            for (k, &q) in w.iter().enumerate() {
                                word |= u32::from((i32::from(q) + 128) as u8) << (8 * k);
                            }
                            out.extend_from_slice(&word.to_le_bytes());
                        }
                    }
                } else {
                    for r in 0..n {
                        for g in 0..len / group {
                            out.extend_from_slice(
                                &m.scale_bits(g * group, first + r).to_le_bytes(),
                            );
                        }
                    }
                }
                st.lossless += groups * n as u64;
                if measure == Measure::Errors && packed {
                    st.n += (n * len) as u64; // exact: zero error
                }
                (out, st)
            })
            .collect();
        if !send_group(encoded.into_iter().map(Ok).collect(), stats, send)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Concatenate a group's encoded bands (in order), add their stats, and queue the bytes for the
/// writer thread; false when the writer has stopped.
fn send_group(
    encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>>,
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<bool, ConvertError> {
    let mut bytes = Vec::new();
    for r in encoded {
        let (b, st) = r?;
        stats.add(&st);
        if bytes.is_empty() {
            bytes = b;
        } else {
            bytes.extend_from_slice(&b);
        }
    }
    Ok(send(bytes))
}

#[allow(clippy::too_many_arguments)]
fn run_bands(
    t: &OutTensor,
    src: &Src<'_>,
    transpose: bool,
    from: usize,
    n_rows: usize,
    keep_int8: bool,
    measure: Measure,
    bands: &mut [Band],
    stats: &mut Stats,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<bool, ConvertError> {
    let per_band = band_rows(src, transpose).max(1);
    let starts: Vec<usize> = (from..n_rows).step_by(per_band).collect();
    for group in starts.chunks(bands.len()) {
        let encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>> = group
            .par_iter()
            .zip(bands.par_iter_mut())
            .map(|(&first, band)| {
                let n = per_band.min(n_rows - first);
                fill_band_with(src, transpose, first, n, band, keep_int8);
                let mut out = Vec::new();
                let mut st = Stats::default();
                encode_band(band, &t.encode, measure, &mut out, &mut st).map_err(|e| {
                    ConvertError::Quant {
                        tensor: t.name.clone(),
                        source: e,
                    }
                })?;
                Ok((out, st))
            })
            .collect();
        if !send_group(encoded, stats, send)? {
            return Ok(false);
        }
    }
    Ok(true)
}
