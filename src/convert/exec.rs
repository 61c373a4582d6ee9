//! The streaming executor: for one output tensor, map its source file(s), cut the output rows
//! into bands, compute up to `jobs` bands in parallel (rayon), and hand the encoded bytes to the
//! sink strictly in order. Memory: at most `jobs` bands in flight (each about `BAND_BYTES` of f32
//! plus int8 and scales) plus the mapped pages of the current source file, which are released
//! when the tensor is done — so the peak does not depend on the checkpoint's size.

use super::band::{band_rows, fill_band, Band, Src};
use super::encode::{encode_band, Measure, Stats};
use super::plan::{Encode, OutTensor, Piece};
use super::ConvertError;
use crate::io::MappedFile;
use crate::source::Checkpoint;
use rayon::prelude::*;

/// Stream the encoded bytes of `t` into `sink`, returning error statistics.
pub fn stream_tensor(ck: &Checkpoint, t: &OutTensor, measure: Measure, jobs: usize, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvertError>) -> Result<Stats, ConvertError> {
    let mut stats = Stats::default();
    if let Encode::Bytes(b) = &t.encode {
        sink(b)?;
        return Ok(stats);
    }
    let mut written = 0u64;
    let mut current: Option<(usize, MappedFile)> = None;
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
        written += stream_piece(ck, t, piece, map, measure, jobs, &mut stats, sink)?;
    }
    if let Some((_, m)) = current.take() {
        m.release(0, m.len() as usize);
    }
    if written != t.nbytes {
        return Err(ConvertError::Plan(format!("{}: encoded {written} bytes but the plan says {}", t.name, t.nbytes)));
    }
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn stream_piece(ck: &Checkpoint, t: &OutTensor, piece: &Piece, map: &MappedFile, measure: Measure, jobs: usize, stats: &mut Stats, sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvertError>) -> Result<u64, ConvertError> {
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
    let n_rows = src.out_rows(piece.transpose);
    let per_band = band_rows(&src, piece.transpose);
    let starts: Vec<usize> = (0..n_rows).step_by(per_band.max(1)).collect();
    let mut written = 0u64;
    for group in starts.chunks(jobs.max(1)) {
        let encoded: Vec<Result<(Vec<u8>, Stats), ConvertError>> = group
            .par_iter()
            .map(|&first| {
                let n = per_band.min(n_rows - first);
                let mut band = Band::default();
                fill_band(&src, piece.transpose, first, n, &mut band);
                let mut out = Vec::new();
                let mut st = Stats::default();
                encode_band(&band, &t.encode, measure, &mut out, &mut st).map_err(|e| ConvertError::Quant { tensor: t.name.clone(), source: e })?;
                Ok((out, st))
            })
            .collect();
        for r in encoded {
            let (bytes, st) = r?;
            stats.add(&st);
            written += bytes.len() as u64;
            sink(&bytes)?;
        }
    }
    Ok(written)
}
