//! Decode-in-pack, portable half: what a column strip of a `[k, n]` storage looks like in the
//! GEMM's panel, and the stored rows of `[n, k]` storages (decoded by `super::rows`).
//!
//! A panel holds `kc` consecutive rows of `k` of a multiple of [`NP`] consecutive columns of
//! `W`, laid out as sub-strips of 16 columns, each `kc` rows of `[f32; 16]`: `W[k0 + kk, j0 +
//! 16 s + c]` is `panel[s * (kc + 1) + kk][c]`. The microkernels stream one sub-strip per call;
//! the one-row kernel reads four at once. Columns past the matrix are zero.
//!
//! Every value written here is exactly [`super::Matrix::decode`]'s value: the `[k, n]` storages
//! compute the same expressions element by element; the `[n, k]` storages decode stored rows
//! with [`crate::quant::dequantize_row`] (any ggml type grokit can decode, so types added to
//! `quant` later work here unchanged) or the compressed-tensors rule.

use super::{decode_scale, KernelError, Matrix, Storage};
use crate::base::float::bf16_bits_to_f32;
use crate::quant::{dequantize_row, GgmlType};

/// Columns of `W` in one panel.
pub(crate) const NP: usize = 64;
/// Columns of one sub-strip (the microkernel's width).
pub(crate) const NR: usize = 16;
/// Sub-strips per panel.
pub(crate) const NS: usize = NP / NR;

/// The block of `W` a panel holds: rows `k0..k1`, columns `j0..j0 + nw`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) k0: usize,
    pub(crate) k1: usize,
    pub(crate) j0: usize,
    pub(crate) nw: usize,
}

/// One panel row of one sub-strip.
pub(crate) type Strip = [f32; NR];

/// Strips from one sub-strip to the next in a panel of `kc` rows: one more than `kc`, so that
/// the sub-strips of a wide panel (4 KiB apart at `kc` = 64) do not all fall into the same L1
/// cache sets while a row of `W` is written across them.
#[inline(always)]
pub(crate) fn stride(kc: usize) -> usize {
    kc + 1
}

/// The right-hand side of a product: stored weights, or plain f32 activations (attention).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Src<'a> {
    /// Weights as stored.
    W(Matrix<'a>),
    /// f32 `[k, n]` row-major.
    Kn {
        /// `k · n` values.
        b: &'a [f32],
        /// Input width.
        k: usize,
        /// Output width.
        n: usize,
    },
    /// f32 `[n, k]` row-major (the transpose of `W`).
    Nk {
        /// `n · k` values.
        b: &'a [f32],
        /// Input width.
        k: usize,
        /// Output width.
        n: usize,
    },
}

impl Src<'_> {
    pub(crate) fn k(&self) -> usize {
        match self {
            Src::W(m) => m.k,
            Src::Kn { k, .. } | Src::Nk { k, .. } => *k,
        }
    }

    pub(crate) fn n(&self) -> usize {
        match self {
            Src::W(m) => m.n,
            Src::Kn { n, .. } | Src::Nk { n, .. } => *n,
        }
    }

    /// True when `W`'s columns are stored as contiguous rows (`[n, k]`).
    pub(crate) fn is_rows(&self) -> bool {
        matches!(
            self,
            Src::Nk { .. }
                | Src::W(Matrix {
                    storage: Storage::Rows { .. } | Storage::Ct { .. },
                    ..
                })
        )
    }

    /// Granule of `k` a k-block boundary must respect (a quant block, a packed word).
    pub(crate) fn k_granule(&self) -> usize {
        match self {
            Src::W(Matrix {
                storage: Storage::Rows { ty, .. },
                ..
            }) => usize::try_from(ty.block_elems()).unwrap_or(1).max(1),
            Src::W(Matrix {
                storage: Storage::Ct { bits, .. },
                ..
            }) => (32 / *bits as usize).max(1),
            _ => 1,
        }
    }
}

/// Decode stored row `j` (column `j` of `W`), elements `k0..k1`, into `out` (portable).
/// `k0` and `k1` are multiples of [`Src::k_granule`] (or `k1 == k`).
pub(crate) fn row_range(
    src: &Src<'_>,
    j: usize,
    k0: usize,
    k1: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let out = &mut out[..k1 - k0];
    match *src {
        Src::Nk { b, k, .. } => out.copy_from_slice(&b[j * k + k0..j * k + k1]),
        Src::W(m) => match m.storage {
            Storage::Rows { ty, .. } => dequantize_row(ty, row_bytes(src, j, k0, k1), out)?,
            Storage::Ct {
                bits,
                group,
                scale_ty,
                ..
            } => {
                let per_word = 32 / bits as usize;
                let (words, srow, sz) = ct_row(&m, j);
                let offset = 1i32 << (bits - 1);
                let mask = (1u32 << bits) - 1;
                let mut g_cur = usize::MAX;
                let mut s = 0f32;
                for (kk, o) in (k0..k1).zip(out.iter_mut()) {
                    let g = kk / group;
                    if g != g_cur {
                        s = decode_scale(scale_ty, &srow[g * sz..(g + 1) * sz]);
                        g_cur = g;
                    }
                    let w4 = &words[4 * (kk / per_word)..4 * (kk / per_word) + 4];
                    let w = u32::from_le_bytes([w4[0], w4[1], w4[2], w4[3]]);
                    let u = (w >> (bits as usize * (kk % per_word))) & mask;
                    *o = (u as i32 - offset) as f32 * s;
                }
            }
            _ => unreachable!("only [n, k] storage has stored rows"),
        },
        Src::Kn { .. } => unreachable!("[k, n] storage has no stored rows"),
    }
    Ok(())
}

/// The stored bytes of row `j`, elements `k0..k1` (granule-aligned), of an `[n, k]` storage
/// (for prefetching; the scales of compressed-tensors rows are left out).
#[inline]
pub(crate) fn row_bytes<'a>(src: &Src<'a>, j: usize, k0: usize, k1: usize) -> &'a [u8] {
    match *src {
        Src::W(m) => match m.storage {
            Storage::Rows { ty, bytes } => {
                let rb = bytes.len() / m.n;
                &bytes[j * rb + row_offset(ty, k0)..j * rb + row_offset(ty, k1)]
            }
            Storage::Ct { bits, packed, .. } => {
                let wb = packed.len() / m.n;
                let per_word = 32 / bits as usize;
                &packed[j * wb + 4 * (k0 / per_word)..j * wb + 4 * k1.div_ceil(per_word)]
            }
            _ => &[],
        },
        _ => &[],
    }
}

/// Up to `len` stored bytes starting `dist` bytes after element `k0` of stored row `j` (for
/// prefetching ahead of a decode; empty past the end of the storage).
pub(crate) fn bytes_after<'a>(
    src: &Src<'a>,
    j: usize,
    k0: usize,
    dist: usize,
    len: usize,
) -> &'a [u8] {
    match *src {
        Src::W(Matrix {
            n,
            storage: Storage::Rows { ty, bytes },
            ..
        }) => {
            let at = j * (bytes.len() / n) + row_offset(ty, k0) + dist;
            bytes.get(at..(at + len).min(bytes.len())).unwrap_or(&[])
        }
        _ => &[],
    }
}

/// Stored row `j` of a compressed-tensors matrix: all its packed words, its scales, and the
/// bytes per scale.
pub(crate) fn ct_row<'a>(m: &Matrix<'a>, j: usize) -> (&'a [u8], &'a [u8], usize) {
    match m.storage {
        Storage::Ct {
            group,
            packed,
            scales,
            ..
        } => {
            let wb = packed.len() / m.n;
            let sb = scales.len() / m.n;
            (
                &packed[j * wb..(j + 1) * wb],
                &scales[j * sb..(j + 1) * sb],
                sb / (m.k / group),
            )
        }
        _ => (&[], &[], 0),
    }
}

/// Byte offset of element `k` (a block boundary) inside a stored row of `ty`.
pub(crate) fn row_offset(ty: GgmlType, k: usize) -> usize {
    let be = ty.block_elems() as usize;
    k / be * ty.block_bytes() as usize
}

/// Fill `panel` (`ns · stride(kc)` strips, `16 ns ≥ nw`) with `W[k0..k1, j0..j0 + nw]` of a
/// `[k, n]` storage (portable).
pub(crate) fn pack(src: &Src<'_>, r: Region, panel: &mut [Strip]) {
    let Region { k0, k1, j0, nw } = r;
    let kc = k1 - k0;
    panel.iter_mut().for_each(|s| *s = [0.0; NR]);
    for kk in 0..kc {
        pack_kn_row(src, k0 + kk, j0, 0, nw, |jj, v| {
            panel[(jj / NR) * stride(kc) + kk][jj % NR] = v
        });
    }
}

/// Row `r` of a `[k, n]` storage, columns `j0 + c0 .. j0 + nw`, each value handed to `put(jj, v)`.
#[inline]
pub(crate) fn pack_kn_row(
    src: &Src<'_>,
    r: usize,
    j0: usize,
    c0: usize,
    nw: usize,
    mut put: impl FnMut(usize, f32),
) {
    match *src {
        Src::Kn { b, n, .. } => {
            for jj in c0..nw {
                put(jj, b[r * n + j0 + jj]);
            }
        }
        Src::W(m) => match m.storage {
            Storage::F32Kn(b) => {
                for jj in c0..nw {
                    let s = 4 * (r * m.n + j0 + jj);
                    put(jj, f32::from_le_bytes([b[s], b[s + 1], b[s + 2], b[s + 3]]));
                }
            }
            Storage::ReleaseInt8 { q, scales, blocks } => {
                let srow = (r / (m.k / blocks)) * m.n;
                for jj in c0..nw {
                    let c = j0 + jj;
                    let s = &scales[2 * (srow + c)..2 * (srow + c) + 2];
                    let v = f32::from(q[r * m.n + c] as i8)
                        * bf16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
                    put(jj, v);
                }
            }
            _ => unreachable!("[n, k] storage handled by row_range"),
        },
        Src::Nk { .. } => unreachable!("[n, k] storage handled by row_range"),
    }
}

/// The cache lines of the stored bytes behind a panel, to prefetch while the previous panel is
/// being multiplied (the pack of a panel otherwise waits on memory, and the multiply leaves
/// the memory system idle). The lines form a grid of segments (one per stored row touched) ×
/// lines per segment, handed out a few at a time.
pub(crate) struct Ahead<'a> {
    src: Src<'a>,
    k0: usize,
    k1: usize,
    j0: usize,
    nw: usize,
    lines_per_seg: usize,
    total: usize,
    next: usize,
    /// The segment being handed out (its index and bytes): computing one costs divisions.
    cur: (usize, &'a [u8]),
}

impl<'a> Ahead<'a> {
    /// The lines of `W[k0..k1, j0..j0 + nw]`'s stored bytes (none for f32 activations).
    pub(crate) fn new(src: &Src<'a>, k0: usize, k1: usize, j0: usize, nw: usize) -> Ahead<'a> {
        let mut a = Ahead {
            src: *src,
            k0,
            k1,
            j0,
            nw,
            lines_per_seg: 0,
            total: 0,
            next: 0,
            cur: (usize::MAX, &[]),
        };
        if k1 > k0 && nw > 0 {
            let segs = if src.is_rows() { nw } else { k1 - k0 };
            a.lines_per_seg = a.seg(0).len().div_ceil(64);
            a.total = segs * a.lines_per_seg;
        }
        a
    }

    #[inline]
    fn seg(&self, i: usize) -> &'a [u8] {
        if self.src.is_rows() {
            return row_bytes(&self.src, self.j0 + i, self.k0, self.k1);
        }
        let r = self.k0 + i;
        match self.src {
            Src::W(m) => match m.storage {
                Storage::ReleaseInt8 { q, .. } => {
                    &q[r * m.n + self.j0..r * m.n + self.j0 + self.nw]
                }
                Storage::F32Kn(b) => &b[4 * (r * m.n + self.j0)..4 * (r * m.n + self.j0 + self.nw)],
                _ => &[],
            },
            _ => &[],
        }
    }

    /// Lines not handed out yet.
    pub(crate) fn remaining(&self) -> usize {
        self.total - self.next
    }

    /// Hand the next `count` lines (or fewer) to `f`.
    pub(crate) fn take(&mut self, count: usize, mut f: impl FnMut(&[u8])) {
        let end = (self.next + count).min(self.total);
        while self.next < end {
            // the segment of line `next`, and its first line's number
            let first = self.cur.0.wrapping_mul(self.lines_per_seg);
            if self.cur.0 == usize::MAX || self.next >= first + self.lines_per_seg {
                let s = self.next / self.lines_per_seg;
                self.cur = (s, self.seg(s));
            }
            let (s, seg) = self.cur;
            let stop = end.min((s + 1) * self.lines_per_seg);
            for l in self.next - s * self.lines_per_seg..stop - s * self.lines_per_seg {
                f(&seg[(64 * l).min(seg.len())..]);
            }
            self.next = stop;
        }
    }
}
