//! Bounded memory for big matrices: matmuls computed in bands of output columns, the tied
//! output head in bands of vocabulary rows, and the row-wise decoders the file-backed sources
//! build their [`WeightMatrix`] on.
//!
//! Why bands: at Grok-1's widths one expert matrix is 6144 × 32768 values (805 MB as f32) and
//! the embedding 131072 × 6144 (3.2 GB). Holding either whole made a forward pass peak at
//! 6.2 GB. A band holds at most [`DEFAULT_BAND_BYTES`] of f32 weights, so the weights live at
//! any moment are one band (plus, for the release's int8 and for sources that store `[out, in]`,
//! the raw bytes of one matrix or a band's worth of transposed values), whatever the layer count.
//!
//! Why the logits do not change: bands split N (output columns, or vocabulary rows of the
//! head), never K. Each output element is still one dot product over the full K, computed by
//! the same sgemm kernel with the same K-blocking ([`super::gemm`]), so every value is
//! bit-identical to the whole-matrix product. Tests check this on every source with tiny bands.

use super::gemm::{matmul, BLayout};
use super::ops::round_if;
use super::{fetch, Band, ReferenceError, WeightMatrix, WeightTensor, Weights};
use rayon::prelude::*;
use std::ops::Range;

/// Default cap on the f32 weight bytes of one band: 128 MiB.
pub const DEFAULT_BAND_BYTES: usize = 128 << 20;

/// Decoded bytes a row-decoding task aims for (bounds per-thread scratch).
const TASK_BYTES: usize = 4 << 20;

/// Bytes dropped around a settled range of a mapped file ([`RowDecoder::done`]): well above
/// Linux's default fault-around window (64 KiB).
pub const RELEASE_MARGIN: u64 = 1 << 20;

/// The band budget sessions start with: [`DEFAULT_BAND_BYTES`], unless the internal testing knob
/// `GROKIT_BAND_BYTES` holds a positive byte count (used to force tiny bands in tests; values
/// that do not parse are ignored).
pub fn default_band_bytes() -> usize {
    std::env::var("GROKIT_BAND_BYTES")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&b| b > 0)
        .unwrap_or(DEFAULT_BAND_BYTES)
}

/// Split `0..n` into as few near-equal bands as keep each band's `k × width` f32 values within
/// `budget` bytes (at least one item per band). Empty for `n == 0`.
pub fn bands(n: usize, k: usize, budget: usize) -> Vec<Range<usize>> {
    let per = (budget / k.max(1).saturating_mul(4)).max(1);
    let count = n.div_ceil(per).max(1);
    let width = n.div_ceil(count).max(1);
    (0..n)
        .step_by(width)
        .map(|s| s..(s + width).min(n))
        .collect()
}

fn bad_range(what: &str, r: &Range<usize>, len: usize) -> ReferenceError {
    ReferenceError::Input(format!("{what} {r:?} outside 0..{len}"))
}

fn check_range(what: &str, r: &Range<usize>, len: usize) -> Result<(), ReferenceError> {
    if r.start > r.end || r.end > len {
        return Err(bad_range(what, r, len));
    }
    Ok(())
}

/// `[rows, cols]` -> `[cols, rows]`.
pub(crate) fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    const T: usize = 32;
    for i0 in (0..rows).step_by(T) {
        for j0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                for j in j0..(j0 + T).min(cols) {
                    out[j * rows + i] = x[i * cols + j];
                }
            }
        }
    }
    out
}

/// Open `path` (or one expert of it) as a matrix and check its dims are `shape`.
pub(crate) fn open_matrix<'a>(
    w: &'a dyn Weights,
    path: &str,
    expert: Option<usize>,
    shape: [usize; 2],
) -> Result<Box<dyn WeightMatrix + 'a>, ReferenceError> {
    let m = w.matrix(path, expert)?;
    if m.dims() != shape {
        return Err(ReferenceError::Shape {
            path: path.to_string(),
            got: m.dims().to_vec(),
            expected: shape.to_vec(),
        });
    }
    Ok(m)
}

/// `x[m, k] · W[k, n]` for the parameter `path` (one expert of it when `expert` is set), in
/// bands of output columns holding at most `budget` bytes of f32 weights each. Weights are
/// rounded to bf16 first when `round_weights`. A matrix that fits one band is fetched whole with
/// [`Weights::get`], exactly as before banding existed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_cols(
    w: &dyn Weights,
    path: &str,
    expert: Option<usize>,
    x: &[f32],
    m: usize,
    (k, n): (usize, usize),
    round_weights: bool,
    budget: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let dims_err = || ReferenceError::Input(format!("{path}: matmul dims"));
    let parts = bands(n, k, budget);
    if parts.len() <= 1 {
        let mut wt = fetch(w, path, expert, &[k, n])?;
        round_if(round_weights, &mut wt);
        return matmul(x, m, k, &wt, BLayout::KN, n).ok_or_else(dims_err);
    }
    let mat = open_matrix(w, path, expert, [k, n])?;
    let mut out = vec![0f32; m.checked_mul(n).ok_or_else(dims_err)?];
    for c in parts {
        let width = c.len();
        let mut band = mat.cols(c.clone())?;
        if band.data.len() != k * width {
            return Err(ReferenceError::Weight {
                path: path.to_string(),
                reason: format!("{} values for a band of {k} x {width}", band.data.len()),
            });
        }
        round_if(round_weights, &mut band.data);
        let y = matmul(x, m, k, &band.data, band.layout, width).ok_or_else(dims_err)?;
        drop(band);
        for (orow, yrow) in out.chunks_exact_mut(n).zip(y.chunks_exact(width)) {
            orow[c.clone()].copy_from_slice(yrow);
        }
    }
    Ok(out)
}

/// `x[m, k] · Eᵀ` for the `[n, k]` parameter `path` (the tied embedding as output head), in
/// bands of E's rows holding at most `budget` bytes of f32 each; weights rounded to bf16 first
/// when `round_weights`. A matrix that fits one band is fetched whole with [`Weights::get`].
pub(crate) fn matmul_rows_t(
    w: &dyn Weights,
    path: &str,
    x: &[f32],
    m: usize,
    (k, n): (usize, usize),
    round_weights: bool,
    budget: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let dims_err = || ReferenceError::Input(format!("{path}: output head dims"));
    let parts = bands(n, k, budget);
    if parts.len() <= 1 {
        let mut e = fetch(w, path, None, &[n, k])?;
        round_if(round_weights, &mut e);
        return matmul(x, m, k, &e, BLayout::NK, n).ok_or_else(dims_err);
    }
    let mat = open_matrix(w, path, None, [n, k])?;
    let mut out = vec![0f32; m.checked_mul(n).ok_or_else(dims_err)?];
    for r in parts {
        let width = r.len();
        let mut e = mat.rows(r.clone())?;
        if e.len() != k * width {
            return Err(ReferenceError::Weight {
                path: path.to_string(),
                reason: format!("{} values for {width} rows of {k}", e.len()),
            });
        }
        round_if(round_weights, &mut e);
        let y = matmul(x, m, k, &e, BLayout::NK, width).ok_or_else(dims_err)?;
        drop(e);
        for (orow, yrow) in out.chunks_exact_mut(n).zip(y.chunks_exact(width)) {
            orow[r.clone()].copy_from_slice(yrow);
        }
    }
    Ok(out)
}

/// The default [`WeightMatrix`]: a whole tensor from [`Weights::get`], sliced on demand.
#[derive(Clone, Debug)]
pub struct WholeMatrix {
    path: String,
    t: WeightTensor,
}

impl WholeMatrix {
    /// Wrap a fetched tensor (its element count must match its shape).
    pub fn new(path: &str, t: WeightTensor) -> Result<WholeMatrix, ReferenceError> {
        let want = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(t.data.len()) {
            return Err(ReferenceError::Weight {
                path: path.to_string(),
                reason: format!("{} elements for shape {:?}", t.data.len(), t.shape),
            });
        }
        Ok(WholeMatrix {
            path: path.to_string(),
            t,
        })
    }

    fn rc(&self) -> Result<(usize, usize), ReferenceError> {
        match self.t.shape.as_slice() {
            [r, c] => Ok((*r, *c)),
            s => Err(ReferenceError::Weight {
                path: self.path.clone(),
                reason: format!("shape {s:?} is not a matrix"),
            }),
        }
    }
}

impl WeightMatrix for WholeMatrix {
    fn dims(&self) -> &[usize] {
        &self.t.shape
    }
    fn rows(&self, r: Range<usize>) -> Result<Vec<f32>, ReferenceError> {
        let (rows, cols) = self.rc()?;
        check_range("rows", &r, rows)?;
        Ok(self.t.data[r.start * cols..r.end * cols].to_vec())
    }
    fn cols(&self, c: Range<usize>) -> Result<Band, ReferenceError> {
        let (_, cols) = self.rc()?;
        check_range("columns", &c, cols)?;
        let data = if c.is_empty() {
            Vec::new()
        } else {
            self.t
                .data
                .chunks_exact(cols)
                .flat_map(|row| row[c.clone()].iter().copied())
                .collect()
        };
        Ok(Band {
            data,
            layout: BLayout::KN,
        })
    }
}

/// A matrix stored row-major whose rows decode independently of each other: a GGUF tensor
/// (whatever its block type), a safetensors tensor (float or compressed-tensors packed), the
/// release's int8 or f32 arrays. Implementations decode from a map or from bytes they hold.
pub trait RowDecoder: Sync {
    /// Stored dims `[rows, cols]`.
    fn stored(&self) -> [usize; 2];
    /// Decode stored rows `r` (in range) into `out` (`r.len() * cols` values).
    fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError>;
    /// Decode columns `c` of stored rows `r` (both in range) into `out` (`r.len() * c.len()`,
    /// row-major). The default decodes the whole rows and copies the columns out.
    fn decode_cols(
        &self,
        r: Range<usize>,
        c: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), ReferenceError> {
        let cols = self.stored()[1];
        let (w, n) = (c.len(), r.len());
        if w == 0 || n == 0 {
            return Ok(());
        }
        let mut tmp = vec![0f32; n * cols];
        self.decode_rows(r, &mut tmp)?;
        for (o, t) in out.chunks_exact_mut(w).zip(tmp.chunks_exact(cols)) {
            o.copy_from_slice(&t[c.clone()]);
        }
        Ok(())
    }
    /// Stored rows `r` have been decoded: a mapped source may drop their resident pages.
    /// `settled` is true once no decoding is in flight any more (after a whole band): the
    /// source may then also drop a margin around the range, where the kernel's fault-around
    /// maps neighbouring pages that a per-block release, racing other threads, can miss.
    fn done(&self, _r: Range<usize>, _settled: bool) {}
}

/// A [`WeightMatrix`] over a [`RowDecoder`], stored either in the release orientation or
/// transposed (`[out, in]`, as GGUF and safetensors store matrices). Decoding runs in parallel
/// over blocks of stored rows.
pub struct Rowwise<D> {
    dec: D,
    transposed: bool,
    dims: [usize; 2],
}

impl<D: RowDecoder> Rowwise<D> {
    /// Wrap `dec`; `transposed` when it stores the release orientation's transpose.
    pub fn new(dec: D, transposed: bool) -> Rowwise<D> {
        let [r, c] = dec.stored();
        let dims = if transposed { [c, r] } else { [r, c] };
        Rowwise {
            dec,
            transposed,
            dims,
        }
    }

    /// Stored rows per parallel task when each decoded row is `cols` values.
    fn per_task(cols: usize) -> usize {
        (TASK_BYTES / cols.max(1).saturating_mul(4)).max(1)
    }

    /// Stored rows `r`, decoded: `[r.len(), cols]`.
    fn stored_rows(&self, r: Range<usize>) -> Result<Vec<f32>, ReferenceError> {
        let [_, cols] = self.dec.stored();
        let mut out = vec![0f32; r.len() * cols];
        if cols == 0 || r.is_empty() {
            return Ok(out);
        }
        let per = Self::per_task(cols);
        out.par_chunks_mut(per * cols)
            .enumerate()
            .try_for_each(|(i, o)| {
                let r0 = r.start + i * per;
                let rr = r0..r0 + o.len() / cols;
                self.dec.decode_rows(rr.clone(), o)?;
                self.dec.done(rr, false);
                Ok(())
            })?;
        self.dec.done(r, true);
        Ok(out)
    }

    /// Columns `c` of every stored row: `[rows, c.len()]`.
    fn stored_cols(&self, c: Range<usize>) -> Result<Vec<f32>, ReferenceError> {
        let [rows, cols] = self.dec.stored();
        let w = c.len();
        let mut out = vec![0f32; rows * w];
        if w == 0 || rows == 0 {
            return Ok(out);
        }
        let per = Self::per_task(cols);
        out.par_chunks_mut(per * w)
            .enumerate()
            .try_for_each(|(i, o)| {
                let r0 = i * per;
                let rr = r0..r0 + o.len() / w;
                self.dec.decode_cols(rr.clone(), c.clone(), o)?;
                self.dec.done(rr, false);
                Ok(())
            })?;
        self.dec.done(0..rows, true);
        Ok(out)
    }
}

impl<D: RowDecoder> WeightMatrix for Rowwise<D> {
    fn dims(&self) -> &[usize] {
        &self.dims
    }
    fn rows(&self, r: Range<usize>) -> Result<Vec<f32>, ReferenceError> {
        check_range("rows", &r, self.dims[0])?;
        if self.transposed {
            let t = self.stored_cols(r.clone())?;
            Ok(transpose(&t, self.dims[1], r.len()))
        } else {
            self.stored_rows(r)
        }
    }
    fn cols(&self, c: Range<usize>) -> Result<Band, ReferenceError> {
        check_range("columns", &c, self.dims[1])?;
        Ok(if self.transposed {
            Band {
                data: self.stored_rows(c)?,
                layout: BLayout::NK,
            }
        } else {
            Band {
                data: self.stored_cols(c)?,
                layout: BLayout::KN,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_and_respect_the_budget() {
        assert_eq!(bands(10, 1, 4 * 3), vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(bands(10, 1, 1 << 20), vec![0..10]);
        assert_eq!(bands(5, 100, 1), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(bands(0, 4, 16).is_empty());
        // Grok-1 expert up-projection at the default budget: 7 bands of <= 128 MiB.
        let b = bands(32768, 6144, DEFAULT_BAND_BYTES);
        assert_eq!(b.len(), 7);
        assert!(b.iter().all(|r| r.len() * 6144 * 4 <= DEFAULT_BAND_BYTES));
        assert_eq!(b.last().map(|r| r.end), Some(32768));
    }

    struct Plain(Vec<f32>, [usize; 2]);
    impl RowDecoder for Plain {
        fn stored(&self) -> [usize; 2] {
            self.1
        }
        fn decode_rows(&self, r: Range<usize>, out: &mut [f32]) -> Result<(), ReferenceError> {
            let c = self.1[1];
            out.copy_from_slice(&self.0[r.start * c..r.end * c]);
            Ok(())
        }
    }

    #[test]
    fn rowwise_matches_whole_in_both_orientations() {
        let (r, c) = (7, 5);
        let v: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
        let whole = WholeMatrix::new(
            "w",
            WeightTensor {
                shape: vec![r, c],
                data: v.clone(),
            },
        )
        .unwrap();
        let plain = Rowwise::new(Plain(v.clone(), [r, c]), false);
        let tr = Rowwise::new(Plain(transpose(&v, r, c), [c, r]), true);
        for m in [&plain as &dyn WeightMatrix, &tr] {
            assert_eq!(m.dims(), &[r, c]);
            assert_eq!(m.rows(2..5).unwrap(), whole.rows(2..5).unwrap());
            let b = m.cols(1..4).unwrap();
            let want = whole.cols(1..4).unwrap().data;
            match b.layout {
                BLayout::KN => assert_eq!(b.data, want),
                BLayout::NK => assert_eq!(transpose(&b.data, 3, r), want),
            }
            assert!(m.rows(3..9).is_err());
            assert!(m.cols(4..6).is_err());
            #[allow(clippy::reversed_empty_ranges)]
            let backwards = 3..2;
            assert!(m.cols(backwards).is_err());
        }
    }
}
