//! The streaming executor: for one output tensor, map its source file(s), cut the output rows
//! into bands, compute up to `jobs` bands in parallel (rayon), and hand the encoded bytes to a
//! writer thread strictly in order, so computing the next bands overlaps writing the last ones.
//! Memory: `jobs` reusable bands (each about `BAND_BYTES` of f32, plus int8 and scales when a
//! lossless encoder needs them) and at most two groups of encoded bytes in flight, plus the
//! mapped pages of the current source file, which are released when the tensor is done — so the
//! peak does not depend on the checkpoint's size.

use super::band::{band_rows, fill_band_with, Band, Src};
use super::encode::{encode_band, Measure, Stats};
use super::plan::{Encode, OutTensor, Piece};
use super::ConvertError;
use crate::io::MappedFile;
use crate::source::Checkpoint;
use rayon::prelude::*;
use std::sync::mpsc::sync_channel;

/// Where encoded bytes go (a GGUF or safetensors writer), called from the writer thread.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), ConvertError> + Send + 'a;

/// Stream the encoded bytes of `t` into `sink`, returning error statistics.
pub fn stream_tensor(ck: &Checkpoint, t: &OutTensor, measure: Measure, jobs: usize, sink: &mut Sink<'_>) -> Result<Stats, ConvertError> {
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
        let produced = produce(ck, t, measure, jobs, &mut stats, &|buf| tx.send(buf).is_ok());
        drop(tx);
        let written = writer.join().map_err(|_| ConvertError::Plan(format!("{}: writer thread panicked", t.name)))?;
        // A writer error explains a producer stop; report it first.
        let written = written?;
        produced?;
        Ok::<u64, ConvertError>(written)
    })?;
    if result != t.nbytes {
        return Err(ConvertError::Plan(format!("{}: encoded {result} bytes but the plan says {}", t.name, t.nbytes)));
    }
    Ok(stats)
}

fn produce(ck: &Checkpoint, t: &OutTensor, measure: Measure, jobs: usize, stats: &mut Stats, send: &dyn Fn(Vec<u8>) -> bool) -> Result<(), ConvertError> {
    let mut current: Option<(usize, MappedFile)> = None;
    let mut bands: Vec<Band> = (0..jobs.max(1)).map(|_| Band::default()).collect();
    for piece in &t.pieces {
        let need_map = current.as_ref().map(|(i, _)| *i != piece.tensor).unwrap_or(true);
        if need_map {
            if let Some((_, m)) = current.take() {
                m.release(0, m.len() as usize);
            }
            let src_t = ck.tensors.get(piece.tensor).ok_or_else(|| ConvertError::Plan(format!("{}: source index {} out of range", t.name, piece.tensor)))?;
            current = Some((piece.tensor, ck.map(src_t)?));
        }
        let Some((_, map)) = current.as_ref() else { continue };
        if !produce_piece(ck, t, piece, map, measure, &mut bands, stats, send)? {
            break; // the writer stopped; its error is reported by the caller
        }
    }
    if let Some((_, m)) = current.take() {
        m.release(0, m.len() as usize);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn produce_piece(ck: &Checkpoint, t: &OutTensor, piece: &Piece, map: &MappedFile, measure: Measure, bands: &mut [Band], stats: &mut Stats, send: &dyn Fn(Vec<u8>) -> bool) -> Result<bool, ConvertError> {
    let src_t = &ck.tensors[piece.tensor];
    let src = if src_t.spec.role.is_matrix() {
        Src::Int8(ck.matrix(src_t, map, piece.expert)?)
    } else {
        let bytes = ck.f32_bytes(src_t, map)?;
        let dims = src_t.weight().shape.dims();
        let (rows, cols) = match dims {
            [n] => (1, *n as usize),
            [r, c] => (*r as usize, *c as usize),
            _ => return Err(ConvertError::Plan(format!("{}: unexpected source shape {dims:?}", t.name))),
        };
        Src::F32 { bytes, rows, cols }
    };
    // Only the lossless encoders need the original int8 values and scales.
    let keep_int8 = matches!(t.encode, Encode::Ggml(crate::quant::GgmlType::Q8_0) | Encode::CtPacked { bits: 8, .. } | Encode::CtScale { bits: 8, .. });
    let n_rows = src.out_rows(piece.transpose);
    let per_band = band_rows(&src, piece.transpose).max(1);
    let starts: Vec<usize> = (0..n_rows).step_by(per_band).collect();
    for group in starts.chunks(bands.len()) {
        let encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>> = group
            .par_iter()
            .zip(bands.par_iter_mut())
            .map(|(&first, band)| {
                let n = per_band.min(n_rows - first);
                fill_band_with(&src, piece.transpose, first, n, band, keep_int8);
                let mut out = Vec::new();
                let mut st = Stats::default();
                encode_band(band, &t.encode, measure, &mut out, &mut st).map_err(|e| ConvertError::Quant { tensor: t.name.clone(), source: e })?;
                Ok((out, st))
            })
            .collect();
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
        if !send(bytes) {
            return Ok(false);
        }
    }
    Ok(true)
}
