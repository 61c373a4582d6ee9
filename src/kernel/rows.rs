//! Products over `[n, k]` storages (GGUF and safetensors rows, compressed-tensors, f32 `[n, k]`
//! activations): the dot-product order, no transpose anywhere.
//!
//! Why a second order: a column of `W` is a contiguous stored row here, so summing along `k`
//! with vectors over `k` reads it as it lies. The first round summed with vectors over `n` (one
//! chain per output), which needed `W` by columns: every stored row was decoded, then
//! transposed 8 × 8 into the panel, and that was 68 % of a one-row product's time.
//!
//! The order (the module contract for `[n, k]` storages): `y[i, j] = tree(s_0, …, s_7)` where
//! lane `s_l` is the FMA chain `fma(x[i, k], w[k, j], ·)` over the `k ≡ l (mod 8)` in
//! ascending order from `+0`, and `tree(s) = ((s_0 + s_1) + (s_2 + s_3)) + ((s_4 + s_5) +
//! (s_6 + s_7))`. It depends only on `k` (lanes past the end are `+0` and a chain is never
//! `−0`, so padding with zero products changes nothing), not on `m`, the tile, the k-block or
//! the instruction set.
//!
//! Blocking: the tile's columns in panels of `np` stored rows; for each k-block, the panel's
//! rows are decoded (row-major, as stored: a plain row decode) into the scratch, then a
//! microkernel of `MR` rows of `x` × `NR` stored rows runs the lanes of its `MR · NR` outputs
//! over the k-block, loading and storing them from a state of `m · np` lane vectors. At the end
//! of `k` each output is the tree of its lanes. One row (`m = 1`) uses 8 stored rows at once
//! (8 independent chains hide the FMA latency); a few rows use 4; more rows use 3 per
//! microkernel call with up to 4 rows of `x`.

use super::driver::{Isa, Scratch};
use super::pack::{self, Src};
use super::KernelError;
use std::ops::Range;

/// Lanes of the dot-product order.
pub(crate) const LANES: usize = 8;
/// One output's lanes.
pub(crate) type Lanes = [f32; LANES];

/// The fixed reduction of an output's lanes.
#[inline]
pub(crate) fn tree(s: &Lanes) -> f32 {
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// How a product of `m` rows is blocked (results do not depend on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Stored rows per panel.
    pub(crate) np: usize,
    /// Stored rows per microkernel call.
    pub(crate) nr: usize,
    /// Most rows of `x` per microkernel call.
    pub(crate) mr: usize,
    /// Elements of `k` per k-block (rounded up to the storage's granule).
    pub(crate) kc: usize,
}

/// k-block of products of 1–3 rows: whole rows up to 8192 elements (a panel of 8 rows is then
/// at most 256 KiB, in L2), so the stored rows are read as one sequential stream that the
/// hardware prefetcher follows; the weights are used once, so L1 residency buys nothing.
const KC_SMALL: usize = 8192;

/// Fewest rows for which the next k-block is software-prefetched during the microkernel calls
/// (fewer rows: the decode streams sequentially and the hardware prefetcher keeps up).
const PREFETCH_FROM_M: usize = 4;

/// Most rows a product decodes one quant block of several stored rows at a time and keeps
/// every output's lanes in registers over all of `k` (AVX2, GGUF row types with a SIMD
/// decoder); more rows, and the other storages, go through the panel.
pub(crate) const SMALL_M: usize = 6;

/// The blocking for `m` rows.
pub(crate) fn shape(m: usize) -> Shape {
    match m {
        1 => Shape {
            np: 8,
            nr: 8,
            mr: 1,
            kc: KC_SMALL,
        },
        2 | 3 => Shape {
            np: 8,
            nr: 4,
            mr: 3,
            kc: KC_SMALL,
        },
        _ => Shape {
            np: 24,
            nr: 3,
            mr: 4,
            kc: 512,
        },
    }
}

/// `out[i][..] = x[i, :] · W[:, cols]` for an `[n, k]` source (see the module docs).
pub(crate) fn tile(
    isa: Isa,
    src: &Src<'_>,
    x: &[f32],
    m: usize,
    cols: Range<usize>,
    out: &mut [&mut [f32]],
    sc: &mut Scratch,
) -> Result<(), KernelError> {
    #[cfg(target_arch = "x86_64")]
    if let Isa::Avx2(t) = isa {
        if m <= SMALL_M && t.small_rows(src, x, m, cols.clone(), out) {
            return Ok(());
        }
    }
    let k = src.k();
    let nc = cols.len();
    let sh = shape(m);
    // k-blocks: multiples of 8 lanes and of the storage's granule (powers of two both).
    let kc_max = sh.kc.next_multiple_of(src.k_granule().max(LANES));
    let kp = k.next_multiple_of(LANES);
    // x with rows padded to whole lane vectors (zeros), when k is not a multiple of 8.
    let xs: &[f32] = if kp == k {
        x
    } else {
        sc.xpad.clear();
        sc.xpad.resize(m * kp, 0.0);
        for (d, s) in sc.xpad.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
            d[..k].copy_from_slice(s);
        }
        &sc.xpad
    };
    let ps = kc_max;
    let panel_rows = sh.np.next_multiple_of(sh.nr);
    sc.wrows.resize(panel_rows * ps, 0.0);
    sc.state.resize(m * sh.np, [0.0; LANES]);
    let blocks = super::driver::row_blocks(m, sh.mr);
    for p0 in (0..nc).step_by(sh.np) {
        let nw = sh.np.min(nc - p0);
        let j0 = cols.start + p0;
        sc.state[..m * sh.np].fill([0.0; LANES]);
        for k0 in (0..k).step_by(kc_max) {
            let k1 = (k0 + kc_max).min(k);
            let kcp = (k1 - k0).next_multiple_of(LANES);
            let used = nw.next_multiple_of(sh.nr);
            decode_panel(isa, src, j0, nw, used, k0, k1, &mut sc.wrows, ps)?;
            // The next k-block of these rows (or the next panel's first), spread over the
            // microkernel calls.
            let mut ahead = if m < PREFETCH_FROM_M {
                pack::Ahead::new(src, 0, 0, j0, 0)
            } else if k1 < k {
                pack::Ahead::new(src, k1, (k1 + kc_max).min(k), j0, nw)
            } else if p0 + sh.np < nc {
                let nw2 = sh.np.min(nc - p0 - sh.np);
                pack::Ahead::new(src, 0, kc_max.min(k), j0 + sh.np, nw2)
            } else {
                pack::Ahead::new(src, 0, 0, j0, 0)
            };
            let calls = used / sh.nr * blocks.len();
            let per_call = ahead.remaining().div_ceil(calls.max(1));
            for c0 in (0..used).step_by(sh.nr) {
                let ws = &sc.wrows[c0 * ps..];
                for &(i0, mr) in &blocks {
                    ahead.take(per_call, |line| super::driver::prefetch(isa, line));
                    let call = Call {
                        x: xs,
                        xstride: kp,
                        i0,
                        mr,
                        k0,
                        kcp,
                        w: ws,
                        ps,
                        nr: sh.nr,
                        c0,
                        np: sh.np,
                    };
                    dot(isa, &call, &mut sc.state);
                }
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            for (jj, y) in o[p0..p0 + nw].iter_mut().enumerate() {
                *y = tree(&sc.state[i * sh.np + jj]);
            }
        }
    }
    Ok(())
}

/// Decode stored rows `j0 .. j0 + nw`, elements `k0..k1`, into rows of `ps` floats of `panel`
/// (zeros past `k1` up to a whole lane vector, and whole zero rows from `nw` to `used`).
#[allow(clippy::too_many_arguments)] // one call site; the arguments are the panel's geometry
fn decode_panel(
    isa: Isa,
    src: &Src<'_>,
    j0: usize,
    nw: usize,
    used: usize,
    k0: usize,
    k1: usize,
    panel: &mut [f32],
    ps: usize,
) -> Result<(), KernelError> {
    let kc = k1 - k0;
    let kcp = kc.next_multiple_of(LANES);
    for (jj, row) in panel.chunks_exact_mut(ps).take(used).enumerate() {
        if jj < nw {
            decode_row(isa, src, j0 + jj, k0, k1, &mut row[..kc])?;
            row[kc..kcp].fill(0.0);
        } else {
            row[..kcp].fill(0.0);
        }
    }
    Ok(())
}

/// Stored row `j`, elements `k0..k1`, into `out` (exactly [`super::Matrix::decode`]'s values).
pub(crate) fn decode_row(
    isa: Isa,
    src: &Src<'_>,
    j: usize,
    k0: usize,
    k1: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    match isa {
        Isa::Portable => pack::row_range(src, j, k0, k1, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.decode_row(src, j, k0, k1, out),
    }
}

/// One microkernel call: rows `i0 .. i0 + mr` of `x` (row stride `xstride`, elements `k0 ..
/// k0 + kcp`) against panel rows `c0 .. c0 + nr` (`w`, row stride `ps`, elements `0..kcp`),
/// lanes loaded from and stored to `state[i · np + c]`.
pub(crate) struct Call<'a> {
    pub(crate) x: &'a [f32],
    pub(crate) xstride: usize,
    pub(crate) i0: usize,
    pub(crate) mr: usize,
    pub(crate) k0: usize,
    pub(crate) kcp: usize,
    pub(crate) w: &'a [f32],
    pub(crate) ps: usize,
    pub(crate) nr: usize,
    pub(crate) c0: usize,
    pub(crate) np: usize,
}

impl<'a> Call<'a> {
    /// Row `r` of the call's `x` block.
    #[inline]
    pub(crate) fn xrow(&self, r: usize) -> &'a [f32] {
        let at = (self.i0 + r) * self.xstride + self.k0;
        &self.x[at..at + self.kcp]
    }

    /// Panel row `c` of the call.
    #[inline]
    pub(crate) fn wrow(&self, c: usize) -> &'a [f32] {
        &self.w[c * self.ps..c * self.ps + self.kcp]
    }

    /// Index in the state of output `(r, c)` of the call.
    #[inline]
    pub(crate) fn at(&self, r: usize, c: usize) -> usize {
        (self.i0 + r) * self.np + self.c0 + c
    }
}

fn dot(isa: Isa, call: &Call<'_>, state: &mut [Lanes]) {
    match isa {
        Isa::Portable => portable_dot(call, state),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.dot(call, state),
    }
}

/// The portable microkernel: lane `l` of output `(r, c)` is `fma(x[r][kk], w[c][kk], ·)` over
/// the `kk ≡ l (mod 8)`, in order.
pub(crate) fn portable_dot(call: &Call<'_>, state: &mut [Lanes]) {
    for r in 0..call.mr {
        let x = call.xrow(r);
        for c in 0..call.nr {
            let w = call.wrow(c);
            let s = &mut state[call.at(r, c)];
            for (xc, wc) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
                for l in 0..LANES {
                    s[l] = xc[l].mul_add(wc[l], s[l]);
                }
            }
        }
    }
}
