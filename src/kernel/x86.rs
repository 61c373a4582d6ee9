//! The x86-64 path: AVX2 + FMA microkernels and decode-in-pack (F16C for f16 values).
//!
//! Everything here computes exactly what the portable path computes (`super::pack`,
//! `super::driver`): the decoders evaluate the same f32 expressions (a multiply stays a
//! multiply, nothing is fused that the scalar code does not fuse), the microkernels run the
//! same FMA chains. Tests compare the two bit for bit.
//!
//! `unsafe` here is only what `std::arch` requires: the entry points into
//! `#[target_feature]` functions (guarded by the [`Avx2`] token, which exists only after run-time
//! detection), and the unaligned vector loads/stores, each through a small function taking a
//! reference to a fixed-size array (so the memory it touches is in bounds by type).

use super::driver::MR_MAX;
use super::pack::{self, stride, Region, Src, Strip, NP, NR};
use super::rows::{Call, Lanes, LANES};
use super::{decode_scale, KernelError, Storage};
use crate::base::float::f16_bits_to_f32;
use crate::quant::GgmlType;
use std::arch::x86_64::*;

/// Proof that this CPU has AVX2, FMA and F16C (built only by [`Avx2::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2(());

impl Avx2 {
    /// `Some` if the CPU has AVX2, FMA and F16C.
    pub(crate) fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some(Avx2(()))
    }

    /// Fill a `[k, n]` source's panel (see `pack::pack`).
    pub(crate) fn pack(self, src: &Src<'_>, r: Region, panel: &mut [Strip], rows: &mut [f32]) {
        // SAFETY: an `Avx2` exists only after `detect` saw AVX2, FMA and F16C on this CPU.
        unsafe { pack_avx2(src, r, panel, rows) }
    }

    /// Stored row `j` of an `[n, k]` source, elements `k0..k1`, into `out` (see
    /// `rows::decode_row`).
    pub(crate) fn decode_row(
        self,
        src: &Src<'_>,
        j: usize,
        k0: usize,
        k1: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe { decode_row(src, j, k0, k1, out) }
    }

    /// One `[n, k]` microkernel call (see `rows::Call`).
    pub(crate) fn dot(self, call: &Call<'_>, state: &mut [Lanes]) {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe {
            match (call.mr, call.nr) {
                (1, 8) => dot::<1, 8>(call, state),
                (1, 4) => dot::<1, 4>(call, state),
                (2, 4) => dot::<2, 4>(call, state),
                (3, 4) => dot::<3, 4>(call, state),
                (1, 3) => dot::<1, 3>(call, state),
                (2, 3) => dot::<2, 3>(call, state),
                (3, 3) => dot::<3, 3>(call, state),
                (4, 3) => dot::<4, 3>(call, state),
                _ => super::rows::portable_dot(call, state),
            }
        }
    }

    pub(crate) fn ukernel(
        self,
        mr: usize,
        strip: &[Strip],
        xs: &[&[f32]; MR_MAX],
        cs: &mut [&mut [f32]; MR_MAX],
        first: bool,
    ) {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe {
            match mr {
                1 => ukr::<1>(strip, xs, cs, first),
                2 => ukr::<2>(strip, xs, cs, first),
                3 => ukr::<3>(strip, xs, cs, first),
                4 => ukr::<4>(strip, xs, cs, first),
                5 => ukr::<5>(strip, xs, cs, first),
                _ => ukr::<6>(strip, xs, cs, first),
            }
        }
    }

    /// Prefetch into L2 (far ahead: the next panel's bytes, which must not evict the L1
    /// working set of the current one).
    #[inline(always)]
    pub(crate) fn prefetch_l2(self, line: &[u8]) {
        // SAFETY: as in `prefetch`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) }
    }

    pub(crate) fn gemv(self, panel: &[Strip], x: &[f32], acc: &mut [f32; NP]) {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe { gemv_avx2(panel, x, acc) }
    }
}

// ---- memory access: the only pointer operations, each bounded by its argument's type ----

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld(s: &[f32; 8]) -> __m256 {
    // SAFETY: `s` is 8 readable f32; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn st(d: &mut [f32; 8], v: __m256) {
    // SAFETY: `d` is 8 writable f32; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_b8(s: &[u8; 8]) -> __m128i {
    // SAFETY: `s` is 8 readable bytes, exactly what `loadl_epi64` reads.
    unsafe { _mm_loadl_epi64(s.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_b16(s: &[u8; 16]) -> __m128i {
    // SAFETY: `s` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_b32(s: &[u8; 32]) -> __m256i {
    // SAFETY: `s` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Hint that `line` (a cache line of a live slice) will be read soon.
/// (SSE, part of every x86-64: inlined into any caller.)
#[inline(always)]
fn prefetch(line: &[u8]) {
    // SAFETY: SSE is part of the x86-64 baseline; a prefetch never faults and reads nothing
    // architecturally, and the address is the start of a live slice.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) }
}

/// `N` elements of `s` from `at`, as an array reference (panics only on a caller's bug).
#[inline(always)]
fn arr<const N: usize, T>(s: &[T], at: usize) -> &[T; N] {
    s[at..at + N].first_chunk::<N>().expect("in bounds")
}

#[inline(always)]
fn arr_mut<const N: usize, T>(s: &mut [T], at: usize) -> &mut [T; N] {
    s[at..at + N].first_chunk_mut::<N>().expect("in bounds")
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld16(s: &Strip) -> (__m256, __m256) {
    (ld(arr(s, 0)), ld(arr(s, 8)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn st16(d: &mut Strip, lo: __m256, hi: __m256) {
    st(arr_mut(d, 0), lo);
    st(arr_mut(d, 8), hi);
}

/// 8 little-endian f32 from bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f32x8(b: &[u8; 32]) -> __m256 {
    _mm256_castsi256_ps(ld_b32(b))
}

/// 16 bf16 (32 bytes) → two f32x8 (exact: the bits shifted up).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bf16x16(b: &[u8; 32]) -> (__m256, __m256) {
    let v = ld_b32(b);
    let lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(v));
    let hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(v));
    (
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(lo)),
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(hi)),
    )
}

/// 8 bytes of `v` starting at byte `8·h` (h = 0, 1) as i32 (signed) then f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn i8x8_f32(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// Low 8 bytes as unsigned → i32 → minus `off` → f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn u8x8_off_f32(v: __m128i, off: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(v), off))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hi64(v: __m128i) -> __m128i {
    _mm_unpackhi_epi64(v, v)
}

// ---- microkernels ----

/// `c[r] = fma(xs[r][kk], strip[kk], c[r])` for kk in order, r < MR, starting from zero
/// (`first`) or from `c[r]` (see `driver`).
#[target_feature(enable = "avx2,fma,f16c")]
fn ukr<const MR: usize>(
    strip: &[Strip],
    xs: &[&[f32]; MR_MAX],
    cs: &mut [&mut [f32]; MR_MAX],
    first: bool,
) {
    let kc = strip.len();
    let mut a = [[_mm256_setzero_ps(); 2]; MR];
    let mut x: [&[f32]; MR] = [&[]; MR];
    for r in 0..MR {
        if !first {
            let (lo, hi) = ld16(arr(cs[r], 0));
            a[r] = [lo, hi];
        }
        x[r] = &xs[r][..kc];
    }
    for (kk, b) in strip.iter().enumerate() {
        let (b0, b1) = ld16(b);
        for r in 0..MR {
            let xv = _mm256_set1_ps(x[r][kk]);
            a[r][0] = _mm256_fmadd_ps(xv, b0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(xv, b1, a[r][1]);
        }
    }
    for r in 0..MR {
        st16(arr_mut(cs[r], 0), a[r][0], a[r][1]);
    }
}

/// One row against a whole 64-column panel: 8 independent chains hide the FMA latency.
#[target_feature(enable = "avx2,fma,f16c")]
fn gemv_avx2(panel: &[Strip], x: &[f32], acc: &mut [f32; NP]) {
    let kc = x.len();
    let ps = stride(kc);
    let (p0, rest) = panel.split_at(ps);
    let (p1, rest) = rest.split_at(ps);
    let (p2, p3) = rest.split_at(ps);
    let (p0, p1, p2, p3) = (&p0[..kc], &p1[..kc], &p2[..kc], &p3[..kc]);
    let mut a = [_mm256_setzero_ps(); 8];
    for (i, v) in a.iter_mut().enumerate() {
        *v = ld(arr(acc, 8 * i));
    }
    for kk in 0..kc {
        let xv = _mm256_set1_ps(x[kk]);
        for (s, p) in [p0, p1, p2, p3].into_iter().enumerate() {
            let (b0, b1) = ld16(&p[kk]);
            a[2 * s] = _mm256_fmadd_ps(xv, b0, a[2 * s]);
            a[2 * s + 1] = _mm256_fmadd_ps(xv, b1, a[2 * s + 1]);
        }
    }
    for (i, v) in a.iter().enumerate() {
        st(arr_mut(acc, 8 * i), *v);
    }
}

// ---- decode-in-pack ----

/// Rows of `W` ahead of the one being packed that a `[k, n]` panel prefetches.
const PREFETCH_ROWS: usize = 8;

#[target_feature(enable = "avx2,fma,f16c")]
fn pack_avx2(src: &Src<'_>, r: Region, panel: &mut [Strip], rows: &mut [f32]) {
    let Region { k0, k1, j0, nw } = r;
    let kc = k1 - k0;
    let ps = stride(kc);
    let ns = panel.len() / ps;
    let full = nw / NR;
    // Row `r` of `[k, n]` bytes (`es` bytes per value, row length `n`): prefetch the tile's
    // columns of row `r + PREFETCH_ROWS`, one touch per cache line.
    let prefetch_ahead = |b: &[u8], n: usize, es: usize, r: usize| {
        let ahead = r + PREFETCH_ROWS;
        if ahead < k1 {
            let start = es * (ahead * n + j0);
            let row = &b[start..start + es * nw];
            for line in row.chunks(64) {
                prefetch(line);
            }
        }
    };
    match *src {
        Src::W(m) => match m.storage {
            Storage::ReleaseInt8 { q, scales, blocks } => {
                let (n, bh) = (m.n, m.k / blocks);
                let sbuf = &mut rows[..full * NR];
                let mut r = k0;
                while r < k1 {
                    let b = r / bh;
                    let rend = ((b + 1) * bh).min(k1);
                    for (s, d) in sbuf.chunks_exact_mut(NR).enumerate() {
                        let (lo, hi) = bf16x16(arr(scales, 2 * (b * n + j0 + s * NR)));
                        st(arr_mut(d, 0), lo);
                        st(arr_mut(d, 8), hi);
                    }
                    for rr in r..rend {
                        prefetch_ahead(q, n, 1, rr);
                        let kk = rr - k0;
                        let qrow = &q[rr * n + j0..rr * n + j0 + full * NR];
                        for (s, (qv, sv)) in
                            qrow.chunks_exact(NR).zip(sbuf.chunks_exact(NR)).enumerate()
                        {
                            let v = ld_b16(arr(qv, 0));
                            let lo = _mm256_mul_ps(i8x8_f32(v), ld(arr(sv, 0)));
                            let hi = _mm256_mul_ps(i8x8_f32(hi64(v)), ld(arr(sv, 8)));
                            st16(&mut panel[s * ps + kk], lo, hi);
                        }
                    }
                    r = rend;
                }
            }
            Storage::F32Kn(b) => {
                for kk in 0..kc {
                    prefetch_ahead(b, m.n, 4, k0 + kk);
                    let row = (k0 + kk) * m.n + j0;
                    for s in 0..full {
                        let at = 4 * (row + s * NR);
                        st16(
                            &mut panel[s * ps + kk],
                            f32x8(arr(b, at)),
                            f32x8(arr(b, at + 32)),
                        );
                    }
                }
            }
            _ => unreachable!("[n, k] storage handled by rows::tile"),
        },
        Src::Kn { b, n, .. } => {
            for kk in 0..kc {
                let row = (k0 + kk) * n + j0;
                for s in 0..full {
                    let at = row + s * NR;
                    st16(&mut panel[s * ps + kk], ld(arr(b, at)), ld(arr(b, at + 8)));
                }
            }
        }
        Src::Nk { .. } => unreachable!("[n, k] storage handled by rows::tile"),
    }
    if full < ns {
        panel[full * ps..].iter_mut().for_each(|s| *s = [0.0; NR]);
        for kk in 0..kc {
            pack::pack_kn_row(src, k0 + kk, j0, full * NR, nw, |jj, v| {
                panel[(jj / NR) * ps + kk][jj % NR] = v
            });
        }
    }
}

/// Stored row `j`, elements `k0..k1`, into `out`: SIMD decoders for the common types, the
/// portable decoder (`quant::dequantize_row`) for the rest.
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_row(
    src: &Src<'_>,
    j: usize,
    k0: usize,
    k1: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let out = &mut out[..k1 - k0];
    let m = match *src {
        Src::W(m) => m,
        Src::Nk { b, k, .. } => {
            out.copy_from_slice(&b[j * k + k0..j * k + k1]);
            return Ok(());
        }
        Src::Kn { .. } => unreachable!("[k, n] storage has no stored rows"),
    };
    match m.storage {
        Storage::Rows { ty, .. } => {
            let row = pack::row_bytes(src, j, k0, k1);
            let ahead = pack::bytes_after(src, j, k0, DECODE_AHEAD, row.len());
            let row = (row, ahead);
            match ty {
                GgmlType::F32 => row_f32(row.0, out),
                GgmlType::F16 => row_f16(row.0, out),
                GgmlType::BF16 => row_bf16(row.0, out),
                GgmlType::Q8_0 => blocks::<34, 32>(row, out, |b, o| q8_0(b, o)),
                GgmlType::Q4_0 => blocks::<18, 32>(row, out, |b, o| q4_0(b, o)),
                GgmlType::Q4_1 => blocks::<20, 32>(row, out, |b, o| q4_1(b, o)),
                GgmlType::Q5_0 => blocks::<22, 32>(row, out, |b, o| q5_0(b, o)),
                GgmlType::Q5_1 => blocks::<24, 32>(row, out, |b, o| q5_1(b, o)),
                GgmlType::Q2_K => blocks::<84, 256>(row, out, |b, o| q2_k(b, o)),
                GgmlType::Q3_K => blocks::<110, 256>(row, out, |b, o| q3_k(b, o)),
                GgmlType::Q4_K => blocks::<144, 256>(row, out, |b, o| q4_k(b, o)),
                GgmlType::Q5_K => blocks::<176, 256>(row, out, |b, o| q5_k(b, o)),
                GgmlType::Q6_K => blocks::<210, 256>(row, out, |b, o| q6_k(b, o)),
                _ => return pack::row_range(src, j, k0, k1, out),
            }
        }
        Storage::Ct {
            bits,
            group,
            scale_ty,
            ..
        } if group.is_multiple_of(8) => {
            let (words, srow, sz) = pack::ct_row(&m, j);
            // k0 is a multiple of the granule (8 int4 / 4 int8 per word) and of 8 (lanes).
            let k8 = (k1 - k0) - (k1 - k0) % 8;
            let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
            let (nib, off4, off8) = (
                _mm256_set1_epi32(0xF),
                _mm256_set1_epi32(8),
                _mm256_set1_epi32(128),
            );
            let mut t = 0;
            while t < k8 {
                // one group (or the part of it inside k0..k0 + k8): its scale decoded once
                let g = (k0 + t) / group;
                let end = ((g + 1) * group - k0).min(k8);
                let s = _mm256_set1_ps(decode_scale(scale_ty, &srow[g * sz..(g + 1) * sz]));
                if bits == 4 {
                    for tt in (t..end).step_by(8) {
                        let w = u32::from_le_bytes(*arr::<4, u8>(words, (k0 + tt) / 2));
                        let v = _mm256_srlv_epi32(_mm256_set1_epi32(w as i32), shifts);
                        let q =
                            _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, nib), off4));
                        st(arr_mut(out, tt), _mm256_mul_ps(q, s));
                    }
                } else {
                    for tt in (t..end).step_by(8) {
                        let q = u8x8_off_f32(ld_b8(arr(words, k0 + tt)), off8);
                        st(arr_mut(out, tt), _mm256_mul_ps(q, s));
                    }
                }
                t = end;
            }
            if k8 < k1 - k0 {
                pack::row_range(src, j, k0 + k8, k1, &mut out[k8..])?;
            }
        }
        _ => return pack::row_range(src, j, k0, k1, out),
    }
    Ok(())
}

/// Decode whole blocks of `B` bytes into `E` values each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn blocks<const B: usize, const E: usize>(
    (row, ahead): (&[u8], &[u8]),
    out: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; E]),
) {
    let (bs, _) = row.as_chunks::<B>();
    let (os, _) = out.as_chunks_mut::<E>();
    for (i, (b, o)) in bs.iter().zip(os).enumerate() {
        if let Some(p) = ahead.get(i * B..) {
            prefetch(p);
        }
        f(b, o);
    }
}

/// Bytes read this far ahead of the decode are prefetched (about a memory latency's worth of
/// decoding: the hardware prefetcher alone left one-row products waiting on memory).
const DECODE_AHEAD: usize = 2048;

#[target_feature(enable = "avx2,fma,f16c")]
fn row_f32(row: &[u8], out: &mut [f32]) {
    let k8 = out.len() - out.len() % 8;
    for t in (0..k8).step_by(8) {
        st(arr_mut(out, t), f32x8(arr(row, 4 * t)));
    }
    crate::base::float::decode_f32_le(&row[4 * k8..], &mut out[k8..]);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn row_f16(row: &[u8], out: &mut [f32]) {
    let k8 = out.len() - out.len() % 8;
    for t in (0..k8).step_by(8) {
        st(arr_mut(out, t), _mm256_cvtph_ps(ld_b16(arr(row, 2 * t))));
    }
    for (o, c) in out[k8..].iter_mut().zip(row[2 * k8..].chunks_exact(2)) {
        *o = f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn row_bf16(row: &[u8], out: &mut [f32]) {
    let k16 = out.len() - out.len() % 16;
    for t in (0..k16).step_by(16) {
        let (lo, hi) = bf16x16(arr(row, 2 * t));
        st(arr_mut(out, t), lo);
        st(arr_mut(out, t + 8), hi);
    }
    crate::base::float::decode_bf16_le(&row[2 * k16..], &mut out[k16..]);
}

/// The f16 at byte `at` as f32 (F16C: exact, the same value as `half`'s conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = i32::from(u16::from_le_bytes([b[at], b[at + 1]]));
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// Q8_0: `q · d`.
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0(b: &[u8; 34], out: &mut [f32; 32]) {
    let d = _mm256_set1_ps(f16_at(b, 0));
    for t in 0..4 {
        let q = i8x8_f32(ld_b8(arr(b, 2 + 8 * t)));
        st(arr_mut(out, 8 * t), _mm256_mul_ps(q, d));
    }
}

/// Q4_0: `(nibble − 8) · d`, low nibbles first.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0(b: &[u8; 18], out: &mut [f32; 32]) {
    let d = _mm256_set1_ps(f16_at(b, 0));
    let v = ld_b16(arr(b, 2));
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(v, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    let off = _mm256_set1_epi32(8);
    for (h, x) in [lo, hi].into_iter().enumerate() {
        st(arr_mut(out, 16 * h), _mm256_mul_ps(u8x8_off_f32(x, off), d));
        st(
            arr_mut(out, 16 * h + 8),
            _mm256_mul_ps(u8x8_off_f32(hi64(x), off), d),
        );
    }
}

/// Q4_1: `nibble · d + m` (a multiply, then an add: not fused), low nibbles first.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1(b: &[u8; 20], out: &mut [f32; 32]) {
    let (d, mn) = (_mm256_set1_ps(f16_at(b, 0)), _mm256_set1_ps(f16_at(b, 2)));
    let v = ld_b16(arr(b, 4));
    let m = _mm_set1_epi8(0x0F);
    let zero = _mm256_setzero_si256();
    let halves = [
        _mm_and_si128(v, m),
        _mm_and_si128(_mm_srli_epi16::<4>(v), m),
    ];
    for (h, x) in halves.into_iter().enumerate() {
        for (e, w) in [x, hi64(x)].into_iter().enumerate() {
            let f = _mm256_mul_ps(u8x8_off_f32(w, zero), d);
            st(arr_mut(out, 16 * h + 8 * e), _mm256_add_ps(f, mn));
        }
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block (`qs` at byte `at`, high bits `qh`), eight at a time
/// as i32, minus `off`, to `put(first element, values)`: element `e`'s high bit is bit `e` of
/// `qh`, its low four bits the low (`e < 16`) or high nibble of byte `e mod 16`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_values(b: &[u8], at: usize, qh: u32, off: i32, mut put: impl FnMut(usize, __m256i)) {
    let v = ld_b16(arr(b, at));
    let m = _mm_set1_epi8(0x0F);
    let halves = [
        _mm_and_si128(v, m),
        _mm_and_si128(_mm_srli_epi16::<4>(v), m),
    ];
    let qhv = _mm256_set1_epi32(qh as i32);
    let (one, offv) = (_mm256_set1_epi32(1), _mm256_set1_epi32(off));
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (h, x) in halves.into_iter().enumerate() {
        for (e, w) in [x, hi64(x)].into_iter().enumerate() {
            let e0 = 16 * h + 8 * e;
            let sh = _mm256_add_epi32(lanes, _mm256_set1_epi32(e0 as i32));
            let hb = _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srlv_epi32(qhv, sh), one));
            let q = _mm256_or_si256(_mm256_cvtepu8_epi32(w), hb);
            put(e0, _mm256_sub_epi32(q, offv));
        }
    }
}

/// Q5_0: `(5-bit value − 16) · d`.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0(b: &[u8; 22], out: &mut [f32; 32]) {
    let d = _mm256_set1_ps(f16_at(b, 0));
    let qh = u32::from_le_bytes(*arr::<4, u8>(b, 2));
    q5_values(b, 6, qh, 16, |e0, q| {
        st(arr_mut(out, e0), _mm256_mul_ps(_mm256_cvtepi32_ps(q), d))
    });
}

/// Q5_1: `5-bit value · d + m` (not fused).
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1(b: &[u8; 24], out: &mut [f32; 32]) {
    let (d, mn) = (_mm256_set1_ps(f16_at(b, 0)), _mm256_set1_ps(f16_at(b, 2)));
    let qh = u32::from_le_bytes(*arr::<4, u8>(b, 4));
    q5_values(b, 8, qh, 0, |e0, q| {
        let f = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
        st(arr_mut(out, e0), _mm256_add_ps(f, mn))
    });
}

/// Bytes of `q` shifted right by `2 j` bits and masked to 2 bits (`j` < 4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn crumbs(q: __m256i, j: usize) -> __m256i {
    let v = _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32));
    _mm256_and_si256(v, _mm256_set1_epi8(3))
}

/// The four 8-value pieces of 16 bytes of `x` (a 128-bit half), each as f32 via `f`, to
/// `out[at..at + 16]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn put16(out: &mut [f32; 256], at: usize, x: __m128i, f: impl Fn(__m128i) -> __m256) {
    st(arr_mut(out, at), f(x));
    st(arr_mut(out, at + 8), f(hi64(x)));
}

/// Q2_K: `(d · (sc & 15)) · crumb − dmin · (sc >> 4)` per 16 values.
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k(b: &[u8; 84], out: &mut [f32; 256]) {
    let (d, mn) = (f16_at(b, 80), f16_at(b, 82));
    let zero = _mm256_setzero_si256();
    for h in 0..2 {
        let q = ld_b32(arr(b, 16 + 32 * h));
        for j in 0..4 {
            let v = crumbs(q, j);
            let halves = [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)];
            for (half, x) in halves.into_iter().enumerate() {
                let sc = b[8 * h + 2 * j + half];
                let dl = _mm256_set1_ps(d * f32::from(sc & 0xF));
                let ml = _mm256_set1_ps(mn * f32::from(sc >> 4));
                put16(out, 128 * h + 32 * j + 16 * half, x, |w| {
                    _mm256_sub_ps(_mm256_mul_ps(dl, u8x8_off_f32(w, zero)), ml)
                });
            }
        }
    }
}

/// Q3_K's 16 signed 6-bit scales from their 12 packed bytes: scale `i` has its low four bits in
/// byte `i mod 8` (low nibble for `i < 8`, high nibble after), its high two bits in byte
/// `8 + i mod 4` at bit `2 (i / 4)`; minus 32.
fn q3_scales(s: &[u8; 12]) -> [i32; 16] {
    std::array::from_fn(|i| {
        let low = (s[i % 8] >> (4 * (i / 8))) & 0xF;
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        i32::from(low | (high << 4)) - 32
    })
}

/// Q3_K: `(d · scale) · (crumb − (high bit clear ? 4 : 0))` per 16 values.
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k(b: &[u8; 110], out: &mut [f32; 256]) {
    let d = f16_at(b, 108);
    let scales = q3_scales(arr(b, 96));
    let hm = ld_b32(arr(b, 0));
    let (zero, four) = (_mm256_setzero_si256(), _mm256_set1_epi8(4));
    for h in 0..2 {
        let q = ld_b32(arr(b, 32 + 32 * h));
        for j in 0..4 {
            let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
            let clear = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), zero);
            let v = _mm256_sub_epi8(crumbs(q, j), _mm256_and_si256(clear, four));
            let halves = [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)];
            for (half, x) in halves.into_iter().enumerate() {
                let dl = _mm256_set1_ps(d * scales[8 * h + 2 * j + half] as f32);
                put16(out, 128 * h + 32 * j + 16 * half, x, |w| {
                    _mm256_mul_ps(dl, i8x8_f32(w))
                });
            }
        }
    }
}

/// Q5_K: `(d · sc) · (nibble + 16 · high bit) − dmin · m` per 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k(b: &[u8; 176], out: &mut [f32; 256]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let sc = &b[4..16];
    let qh = ld_b32(arr(b, 16));
    let (mask, sixteen) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(16));
    let zero = _mm256_setzero_si256();
    for c in 0..4 {
        let q = ld_b32(arr(b, 48 + 32 * c));
        let nibbles = [
            _mm256_and_si256(q, mask),
            _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask),
        ];
        for (h, x) in nibbles.into_iter().enumerate() {
            let bit = _mm256_set1_epi8((1u8 << (2 * c + h)) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
            let x = _mm256_add_epi8(x, _mm256_and_si256(set, sixteen));
            let (s, mn) = k4_scale_min(sc, 2 * c + h);
            let dl = _mm256_set1_ps(d * f32::from(s));
            let ml = _mm256_set1_ps(dmin * f32::from(mn));
            let halves = [_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x)];
            for (p, v) in halves.into_iter().enumerate() {
                put16(out, 64 * c + 32 * h + 16 * p, v, |w| {
                    _mm256_sub_ps(_mm256_mul_ps(dl, u8x8_off_f32(w, zero)), ml)
                });
            }
        }
    }
}

/// The 6-bit scale and min `j` of a K-quant super-block's 12 packed bytes (ggml-common.h
/// layout: 8 scales and 8 mins, the low 6 bits of the first four in bytes 0–7, the rest split
/// between bytes 8–11 and the top bits of bytes 0–7).
#[inline]
fn k4_scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 63, sc[j + 4] & 63)
    } else {
        let lo = sc[j + 4];
        (
            (lo & 0xF) | ((sc[j - 4] >> 6) << 4),
            (lo >> 4) | ((sc[j] >> 6) << 4),
        )
    }
}

/// Q4_K: `d·sc · nibble − dmin·m` per 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k(b: &[u8; 144], out: &mut [f32; 256]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let sc = &b[4..16];
    let mask = _mm256_set1_epi8(0x0F);
    let zero = _mm256_setzero_si256();
    for c in 0..4 {
        let q = ld_b32(arr(b, 16 + 32 * c));
        let lo = _mm256_and_si256(q, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
        for (h, x) in [lo, hi].into_iter().enumerate() {
            let (s, mn) = k4_scale_min(sc, 2 * c + h);
            let dl = _mm256_set1_ps(d * f32::from(s));
            let ml = _mm256_set1_ps(dmin * f32::from(mn));
            let halves = [_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x)];
            for (p, v) in halves.into_iter().enumerate() {
                for (e, w) in [v, hi64(v)].into_iter().enumerate() {
                    let f = u8x8_off_f32(w, zero);
                    let at = 64 * c + 32 * h + 16 * p + 8 * e;
                    st(arr_mut(out, at), _mm256_sub_ps(_mm256_mul_ps(dl, f), ml));
                }
            }
        }
    }
}

/// Q6_K: `(d · scale) · (6-bit value − 32)` per 16 values.
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k(b: &[u8; 210], out: &mut [f32; 256]) {
    let d = f16_at(b, 208);
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let off = _mm256_set1_epi8(32);
    for h in 0..2 {
        let a = ld_b32(arr(b, 64 * h));
        let c = ld_b32(arr(b, 64 * h + 32));
        let hb = ld_b32(arr(b, 128 + 32 * h));
        let hbits = |sh: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(sh, m2));
        let qs = [
            _mm256_or_si256(_mm256_and_si256(a, m4), hbits(hb)),
            _mm256_or_si256(_mm256_and_si256(c, m4), hbits(_mm256_srli_epi16::<2>(hb))),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(a), m4),
                hbits(_mm256_srli_epi16::<4>(hb)),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(c), m4),
                hbits(_mm256_srli_epi16::<6>(hb)),
            ),
        ];
        for (t, q) in qs.into_iter().enumerate() {
            let q = _mm256_sub_epi8(q, off);
            let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
            for (is, v) in halves.into_iter().enumerate() {
                let ds = _mm256_set1_ps(d * f32::from(b[192 + 8 * h + is + 2 * t] as i8));
                for (e, w) in [v, hi64(v)].into_iter().enumerate() {
                    let at = 128 * h + 32 * t + 16 * is + 8 * e;
                    st(arr_mut(out, at), _mm256_mul_ps(ds, i8x8_f32(w)));
                }
            }
        }
    }
}

// ---- the machine's ceiling (benchmarks) ----

impl Avx2 {
    /// `iters` rounds of 12 independent 8-lane FMA chains in registers (no memory traffic):
    /// `iters · 12 · 8 · 2` flops.
    pub(crate) fn fma_loop(self, iters: u64) -> f32 {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe { fma_loop(iters) }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn fma_loop(iters: u64) -> f32 {
    let (x, y) = std::hint::black_box((_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-4)));
    let mut a = [_mm256_setzero_ps(); 12];
    for (i, v) in a.iter_mut().enumerate() {
        *v = _mm256_set1_ps(std::hint::black_box(1.0 + i as f32));
    }
    for _ in 0..std::hint::black_box(iters) {
        for v in a.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut out = [0f32; 8];
    let s = a
        .iter()
        .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
    st(&mut out, s);
    out.iter().sum()
}

// ---- products of a few rows over [k, n] storages, straight into registers ----

/// Rows of `W` per k-block of [`gemv_kn`] (one column group's accumulators stay in registers
/// across them; the next block's rows are prefetched meanwhile).
const GEMV_ROWS: usize = 16;

impl Avx2 {
    /// `out[i][..whole] = x[i] · W[:, j0 .. j0 + whole]` for `i < m ≤ 6` over `[k, n]` storages
    /// (`whole` a multiple of 64); `sbuf` holds `whole` floats. Returns false for storages it
    /// does not cover.
    #[allow(clippy::too_many_arguments)] // one call site (driver::tile)
    pub(crate) fn gemv_kn(
        self,
        src: &Src<'_>,
        x: &[f32],
        m: usize,
        j0: usize,
        whole: usize,
        out: &mut [&mut [f32]],
        sbuf: &mut [f32],
    ) -> bool {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe {
            match m {
                1 => gemv_kn::<1, 8>(src, x, j0, whole, out, sbuf),
                2 => gemv_kn::<2, 4>(src, x, j0, whole, out, sbuf),
                3 => gemv_kn::<3, 4>(src, x, j0, whole, out, sbuf),
                4 => gemv_kn::<4, 2>(src, x, j0, whole, out, sbuf),
                5 => gemv_kn::<5, 2>(src, x, j0, whole, out, sbuf),
                6 => gemv_kn::<6, 2>(src, x, j0, whole, out, sbuf),
                _ => false,
            }
        }
    }
}

/// `M` rows, column groups of `8 V` (`V` even): `M · V` accumulators. Each weight is decoded
/// once (int8: sign-extend, convert, times its scale) and FMA'd into the `M` rows' chains.
#[target_feature(enable = "avx2,fma,f16c")]
fn gemv_kn<const M: usize, const V: usize>(
    src: &Src<'_>,
    x: &[f32],
    j0: usize,
    whole: usize,
    out: &mut [&mut [f32]],
    sbuf: &mut [f32],
) -> bool {
    let g_cols = 8 * V;
    debug_assert!(whole.is_multiple_of(NP) && out.len() == M);
    let (k, n) = (src.k(), src.n());
    let x = &x[..M * k];
    for o in out.iter_mut() {
        o[..whole].fill(0.0);
    }
    let Src::W(mat) = *src else { return false };
    match mat.storage {
        Storage::ReleaseInt8 { q, scales, blocks } => {
            let bh = k / blocks;
            let sbuf = &mut sbuf[..whole];
            let mut kb0 = 0;
            while kb0 < k {
                let b = kb0 / bh;
                let kb1 = (kb0 + GEMV_ROWS).min((b + 1) * bh).min(k);
                if kb0 == b * bh {
                    for (s, d) in sbuf.chunks_exact_mut(NR).enumerate() {
                        let (lo, hi) = bf16x16(arr(scales, 2 * (b * n + j0 + s * NR)));
                        st(arr_mut(d, 0), lo);
                        st(arr_mut(d, 8), hi);
                    }
                }
                for c in (0..whole).step_by(g_cols) {
                    let c0 = j0 + c;
                    let sv = &sbuf[c..c + g_cols];
                    let mut a = [[_mm256_setzero_ps(); V]; M];
                    for (ai, o) in a.iter_mut().zip(out.iter()) {
                        for (v, av) in ai.iter_mut().enumerate() {
                            *av = ld(arr(o, c + 8 * v));
                        }
                    }
                    for r in kb0..kb1 {
                        if r + GEMV_ROWS < k && c0.is_multiple_of(64) {
                            prefetch(&q[(r + GEMV_ROWS) * n + c0..]);
                        }
                        let mut xv = [_mm256_setzero_ps(); M];
                        for (i, v) in xv.iter_mut().enumerate() {
                            *v = _mm256_set1_ps(x[i * k + r]);
                        }
                        let qr = &q[r * n + c0..r * n + c0 + g_cols];
                        for t in 0..V / 2 {
                            let v = ld_b16(arr(qr, 16 * t));
                            let lo = _mm256_mul_ps(i8x8_f32(v), ld(arr(sv, 16 * t)));
                            let hi = _mm256_mul_ps(i8x8_f32(hi64(v)), ld(arr(sv, 16 * t + 8)));
                            for i in 0..M {
                                a[i][2 * t] = _mm256_fmadd_ps(xv[i], lo, a[i][2 * t]);
                                a[i][2 * t + 1] = _mm256_fmadd_ps(xv[i], hi, a[i][2 * t + 1]);
                            }
                        }
                    }
                    for (ai, o) in a.iter().zip(out.iter_mut()) {
                        for (v, av) in ai.iter().enumerate() {
                            st(arr_mut(o, c + 8 * v), *av);
                        }
                    }
                }
                kb0 = kb1;
            }
            true
        }
        Storage::F32Kn(b) => {
            for kb0 in (0..k).step_by(GEMV_ROWS) {
                let kb1 = (kb0 + GEMV_ROWS).min(k);
                for c in (0..whole).step_by(g_cols) {
                    let c0 = j0 + c;
                    let mut a = [[_mm256_setzero_ps(); V]; M];
                    for (ai, o) in a.iter_mut().zip(out.iter()) {
                        for (v, av) in ai.iter_mut().enumerate() {
                            *av = ld(arr(o, c + 8 * v));
                        }
                    }
                    for r in kb0..kb1 {
                        let at = 4 * (r * n + c0);
                        if r + GEMV_ROWS < k {
                            let ahead = at + 4 * GEMV_ROWS * n;
                            for l in 0..(4 * g_cols).div_ceil(64) {
                                prefetch(&b[ahead + 64 * l..]);
                            }
                        }
                        let mut xv = [_mm256_setzero_ps(); M];
                        for (i, v) in xv.iter_mut().enumerate() {
                            *v = _mm256_set1_ps(x[i * k + r]);
                        }
                        for v in 0..V {
                            let w = f32x8(arr(b, at + 32 * v));
                            for (ai, xi) in a.iter_mut().zip(&xv) {
                                ai[v] = _mm256_fmadd_ps(*xi, w, ai[v]);
                            }
                        }
                    }
                    for (ai, o) in a.iter().zip(out.iter_mut()) {
                        for (v, av) in ai.iter().enumerate() {
                            st(arr_mut(o, c + 8 * v), *av);
                        }
                    }
                }
            }
            true
        }
        _ => false,
    }
}

// ---- [n, k] storages: the dot-product microkernel (see `rows`) ----

/// `MR` rows of `x` × `NR` decoded stored rows, 8 lanes each: per 8 elements of `k`, `MR`
/// loads of `x`, `NR` of the panel and `MR · NR` FMAs (lane `l` of every output is its chain
/// over `k ≡ l mod 8`).
#[target_feature(enable = "avx2,fma,f16c")]
fn dot<const MR: usize, const NR: usize>(call: &Call<'_>, state: &mut [Lanes]) {
    let n = call.kcp / LANES;
    // (plain loops, not `array::from_fn`: its closure would be an out-of-line call per call)
    let mut xs: [&[[f32; 8]]; MR] = [&[]; MR];
    for (r, s) in xs.iter_mut().enumerate() {
        *s = &call.xrow(r).as_chunks::<8>().0[..n];
    }
    let mut ws: [&[[f32; 8]]; NR] = [&[]; NR];
    for (c, s) in ws.iter_mut().enumerate() {
        *s = &call.wrow(c).as_chunks::<8>().0[..n];
    }
    let mut a = [[_mm256_setzero_ps(); NR]; MR];
    for (r, ar) in a.iter_mut().enumerate() {
        for (c, v) in ar.iter_mut().enumerate() {
            *v = ld(&state[call.at(r, c)]);
        }
    }
    for t in 0..n {
        let mut wv = [_mm256_setzero_ps(); NR];
        for (v, w) in wv.iter_mut().zip(&ws) {
            *v = ld(&w[t]);
        }
        for r in 0..MR {
            let xv = ld(&xs[r][t]);
            for c in 0..NR {
                a[r][c] = _mm256_fmadd_ps(xv, wv[c], a[r][c]);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        for (c, v) in ar.iter().enumerate() {
            st(&mut state[call.at(r, c)], *v);
        }
    }
}

// ---- [n, k] storages, a few rows: stored rows in lockstep, one block at a time ----

impl Avx2 {
    /// `out[i][..] = x[i] · W[:, cols]` for `m ≤ 6` rows over a GGUF-rows storage whose type
    /// has a SIMD block decoder: `R` stored rows advance together one quant block at a time (a
    /// block of each decoded into an L1 buffer, then FMA'd into `m · R` lane accumulators kept
    /// in registers over all of `k`), so the rows are read as `R` sequential streams and nothing
    /// is written to a panel. Same order as `rows::tile` (lanes over `k mod 8`, the tree).
    /// Returns false for the storages it does not cover.
    pub(crate) fn small_rows(
        self,
        src: &Src<'_>,
        x: &[f32],
        m: usize,
        cols: std::ops::Range<usize>,
        out: &mut [&mut [f32]],
    ) -> bool {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe { small_rows(src, x, m, cols, out) }
    }
}

/// See [`Avx2::small_rows`]. A `#[target_feature]` function, so that the decoder closures
/// below inherit its features and inline into [`lockstep`] (a closure defined outside one is
/// compiled without AVX2: every block would be a call).
#[target_feature(enable = "avx2,fma,f16c")]
fn small_rows(
    src: &Src<'_>,
    x: &[f32],
    m: usize,
    cols: std::ops::Range<usize>,
    out: &mut [&mut [f32]],
) -> bool {
    let Src::W(mat) = *src else { return false };
    let Storage::Rows { ty, bytes } = mat.storage else {
        return false;
    };
    let k = mat.k;
    {
        macro_rules! go {
            ($b:literal, $e:literal, $f:expr) => {{
                if !k.is_multiple_of($e) {
                    return false;
                }
                let rb = bytes.len() / mat.n;
                let s = Lock {
                    bytes,
                    rb,
                    k,
                    x,
                    cols,
                    dec: $f,
                };
                match m {
                    1 => lockstep::<$b, $e, 1, 8, _>(&s, out),
                    2 => lockstep::<$b, $e, 2, 4, _>(&s, out),
                    3 => lockstep::<$b, $e, 3, 4, _>(&s, out),
                    4 => lockstep::<$b, $e, 4, 3, _>(&s, out),
                    5 => lockstep::<$b, $e, 5, 2, _>(&s, out),
                    6 => lockstep::<$b, $e, 6, 2, _>(&s, out),
                    _ => return false,
                }
                true
            }};
        }
        match ty {
            GgmlType::Q8_0 => go!(34, 32, |b: &[u8; 34], o: &mut [f32; 32]| q8_0(b, o)),
            GgmlType::Q4_0 => go!(18, 32, |b: &[u8; 18], o: &mut [f32; 32]| q4_0(b, o)),
            GgmlType::Q4_1 => go!(20, 32, |b: &[u8; 20], o: &mut [f32; 32]| q4_1(b, o)),
            GgmlType::Q5_0 => go!(22, 32, |b: &[u8; 22], o: &mut [f32; 32]| q5_0(b, o)),
            GgmlType::Q5_1 => go!(24, 32, |b: &[u8; 24], o: &mut [f32; 32]| q5_1(b, o)),
            GgmlType::Q2_K => go!(84, 256, |b: &[u8; 84], o: &mut [f32; 256]| q2_k(b, o)),
            GgmlType::Q3_K => go!(110, 256, |b: &[u8; 110], o: &mut [f32; 256]| q3_k(b, o)),
            GgmlType::Q4_K => go!(144, 256, |b: &[u8; 144], o: &mut [f32; 256]| q4_k(b, o)),
            GgmlType::Q5_K => go!(176, 256, |b: &[u8; 176], o: &mut [f32; 256]| q5_k(b, o)),
            GgmlType::Q6_K => go!(210, 256, |b: &[u8; 210], o: &mut [f32; 256]| q6_k(b, o)),
            GgmlType::F16 => go!(64, 32, |b: &[u8; 64], o: &mut [f32; 32]| row_f16(b, o)),
            GgmlType::BF16 => go!(64, 32, |b: &[u8; 64], o: &mut [f32; 32]| row_bf16(b, o)),
            GgmlType::F32 => go!(128, 32, |b: &[u8; 128], o: &mut [f32; 32]| row_f32(b, o)),
            _ => false,
        }
    }
}

/// How far ahead of its decode each stored row's stream is prefetched in [`lockstep`] (bytes:
/// about a memory latency of decoding; the hardware prefetcher alone left the block decodes
/// waiting on memory at each new row).
const LOCK_AHEAD: usize = 1024;

/// The arguments of [`lockstep`].
struct Lock<'a, F> {
    bytes: &'a [u8],
    rb: usize,
    k: usize,
    x: &'a [f32],
    cols: std::ops::Range<usize>,
    dec: F,
}

/// `M` rows of `x` against stored rows `R` at a time (see [`Avx2::small_rows`]); the last
/// group of fewer than `R` rows runs with its missing rows' outputs discarded.
#[target_feature(enable = "avx2,fma,f16c")]
fn lockstep<const B: usize, const E: usize, const M: usize, const R: usize, F>(
    s: &Lock<'_, F>,
    out: &mut [&mut [f32]],
) where
    F: Fn(&[u8; B], &mut [f32; E]),
{
    let (k, rb) = (s.k, s.rb);
    let nb = k / E;
    let x = &s.x[..M * k];
    let mut buf = [[0f32; E]; R];
    let nc = s.cols.len();
    for g in (0..nc).step_by(R) {
        let rows = R.min(nc - g);
        let mut a = [[_mm256_setzero_ps(); R]; M];
        for blk in 0..nb {
            // Each stream's bytes `LOCK_AHEAD` ahead, continuing into the next group's rows
            // near the end of these (so a new group does not start on a cold stream).
            let ahead = blk * B + LOCK_AHEAD;
            let (row0, off) = if ahead < rb {
                (s.cols.start + g, ahead)
            } else {
                (s.cols.start + g + R, ahead - rb)
            };
            for r in 0..rows {
                for l in (0..B).step_by(64) {
                    if let Some(p) = s.bytes.get((row0 + r) * rb + off + l..) {
                        prefetch(p);
                    }
                }
            }
            for (r, bf) in buf.iter_mut().enumerate().take(rows) {
                let at = (s.cols.start + g + r) * rb + blk * B;
                (s.dec)(arr(s.bytes, at), bf);
            }
            for t in 0..E / 8 {
                let mut xv = [_mm256_setzero_ps(); M];
                for (i, v) in xv.iter_mut().enumerate() {
                    *v = ld(arr(x, i * k + blk * E + 8 * t));
                }
                for (r, bf) in buf.iter().enumerate() {
                    let w = ld(arr(bf, 8 * t));
                    for i in 0..M {
                        a[i][r] = _mm256_fmadd_ps(xv[i], w, a[i][r]);
                    }
                }
            }
        }
        for (ai, o) in a.iter().zip(out.iter_mut()) {
            for (r, v) in ai.iter().enumerate().take(rows) {
                let mut l = [0f32; 8];
                st(&mut l, *v);
                o[g + r] = super::rows::tree(&l);
            }
        }
    }
}
