//! Streaming one tensor of an input GGUF into the output: copied verbatim when its type does
//! not change, else decoded and encoded in chunks of whole blocks, up to `jobs` chunks at a
//! time, through the same pipeline (writer thread, buffers recycled) as `convert`.

use super::{Action, RequantOptions, RequantTensor};
use crate::convert::encode::Stats;
use crate::convert::exec::{for_each_band, pipeline};
use crate::convert::sink::Chunks;
use crate::convert::ConvertError;
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::{self, GgmlType, QuantError};

/// Elements per chunk a worker decodes and encodes at once (4 MiB of f32). A multiple of every
/// block size (32 and 256).
pub const CHUNK_ELEMS: usize = 1 << 20;

/// Bytes per write when a tensor is copied verbatim.
const COPY_CHUNK: usize = 16 << 20;

/// Stream one tensor's output bytes into `sink` in order, returning the error statistics
/// against the decoded input. `pool` keeps the pipeline's buffers from one tensor to the next.
pub(super) fn stream_tensor(
    file: &GgufFile,
    info: &TensorInfo,
    t: &RequantTensor,
    o: &RequantOptions,
    weights: Option<&[f32]>,
    pool: &mut Vec<Vec<u8>>,
    sink: &mut Chunks<'_>,
) -> Result<Stats, ConvertError> {
    let data = file.tensor_data(info);
    let qerr = |source: QuantError| ConvertError::Quant {
        path: file.path().to_path_buf(),
        tensor: t.name.clone(),
        source,
    };
    if data.len() as u64 != info.nbytes {
        let got = data.len() as u64;
        return Err(qerr(QuantError::LengthMismatch {
            what: "tensor data".into(),
            expected: info.nbytes,
            got,
        }));
    }
    if t.action == Action::Copy {
        let mut done = 0u64;
        for c in data.chunks(COPY_CHUNK) {
            sink(c)?;
            file.release(info.offset.saturating_add(done), c.len() as u64);
            done += c.len() as u64;
        }
        return Ok(Stats::default());
    }
    let (tin, tout) = (t.in_ty, t.out_ty);
    // Block sizes are 1, 32 or 256: the larger is a multiple of the smaller. With weights,
    // chunks are whole rows (weights are per column, and Q4_0..Q5_1 weigh by the row).
    let ne0 = info.ne.first().copied().unwrap_or(1).max(1);
    let rows_per_mat = info.ne.get(1).copied().unwrap_or(1).max(1);
    let unit = if weights.is_some() {
        ne0
    } else {
        tin.block_elems().max(tout.block_elems()).max(1)
    };
    let elems = t.elems();
    if !elems.is_multiple_of(unit) {
        return Err(qerr(QuantError::NotBlockAligned {
            what: format!("{tin} → {tout}"),
            len: elems,
            block: unit,
        }));
    }
    let chunk = if o.chunk_elems == 0 {
        CHUNK_ELEMS
    } else {
        o.chunk_elems
    };
    let per = (chunk as u64 / unit).max(1) * unit;
    let bad = |n: u64| {
        qerr(QuantError::LengthMismatch {
            what: format!("chunk of {tin}"),
            expected: n,
            got: 0,
        })
    };
    let (n_elems, per) = (
        usize::try_from(elems).map_err(|_| bad(elems))?,
        usize::try_from(per).map_err(|_| bad(per))?,
    );
    let jobs = o.jobs.max(1);
    let mut workers: Vec<crate::convert::band::Band> = Vec::new();
    workers.resize_with(jobs, Default::default);
    let mut stats = Stats::default();
    pipeline(&t.name, t.out_bytes, jobs, pool, sink, |pipe| {
        for_each_band(
            n_elems,
            per,
            &mut workers,
            &mut stats,
            pipe,
            |e0, n, band| {
                let (e0, n64) = (e0 as u64, n as u64);
                let b0 = tin.row_bytes(e0).ok_or_else(|| bad(n64))?;
                let nb = tin.row_bytes(n64).ok_or_else(|| bad(n64))?;
                let src = usize::try_from(b0)
                    .ok()
                    .zip(usize::try_from(b0.saturating_add(nb)).ok())
                    .and_then(|(a, b)| data.get(a..b))
                    .ok_or_else(|| bad(n64))?;
                let x = &mut band.f32;
                x.clear();
                x.resize(n, 0.0);
                quant::dequantize_row(tin, src, x).map_err(qerr)?;
                // The input this chunk consumed is not needed again.
                file.release(info.offset.saturating_add(b0), nb);
                let cap = tout.row_bytes(n64).unwrap_or(0);
                let mut out = pipe.buffer(usize::try_from(cap).unwrap_or(0));
                match weights {
                    None => quant::quantize_row(tout, x, &mut out).map_err(qerr)?,
                    Some(w) => {
                        // Each row with the weights of its matrix (its expert, for the
                        // stacked `*_exps` tensors).
                        let ne0u = usize::try_from(ne0).map_err(|_| bad(ne0))?;
                        for (r, row) in x.chunks_exact(ne0u).enumerate() {
                            let global = e0 / ne0 + r as u64;
                            let mat =
                                usize::try_from(global / rows_per_mat).map_err(|_| bad(global))?;
                            let qw = crate::convert::weights::expert_slice(w, ne0u, Some(mat))
                                .ok_or_else(|| bad(n64))?;
                            quant::quantize_row_weighted(tout, row, Some(qw), &mut out)
                                .map_err(qerr)?;
                        }
                    }
                }
                let mut st = Stats::default();
                if o.measure && tout != GgmlType::F32 {
                    let mut y = vec![0f32; n];
                    quant::dequantize_row(tout, &out, &mut y).map_err(qerr)?;
                    st.add_errors(x, &y);
                } else {
                    st.n = n64;
                }
                Ok((out, st))
            },
        )?;
        Ok(())
    })?;
    Ok(stats)
}
