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

    pub(crate) fn pack(
        self,
        src: &Src<'_>,
        r: Region,
        panel: &mut [Strip],
        rows: &mut [f32],
    ) -> Result<(), KernelError> {
        // SAFETY: an `Avx2` exists only after `detect` saw AVX2, FMA and F16C on this CPU.
        unsafe { pack_avx2(src, r, panel, rows) }
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
fn pack_avx2(
    src: &Src<'_>,
    r: Region,
    panel: &mut [Strip],
    rows: &mut [f32],
) -> Result<(), KernelError> {
    if src.is_rows() {
        return pack_rows(src, r, panel, rows);
    }
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
            _ => unreachable!("[n, k] storage handled by pack_rows"),
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
        Src::Nk { .. } => unreachable!("[n, k] storage handled by pack_rows"),
    }
    if full < ns {
        panel[full * ps..].iter_mut().for_each(|s| *s = [0.0; NR]);
        for kk in 0..kc {
            pack::pack_kn_row(src, k0 + kk, j0, full * NR, nw, |jj, v| {
                panel[(jj / NR) * ps + kk][jj % NR] = v
            });
        }
    }
    Ok(())
}

/// `[n, k]` storages: decode 8 stored rows into `rows` (`[8][kc]`), transpose 8 × 8 blocks
/// into the panel.
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_rows(
    src: &Src<'_>,
    r: Region,
    panel: &mut [Strip],
    rows: &mut [f32],
) -> Result<(), KernelError> {
    let Region { k0, k1, j0, nw } = r;
    let kc = k1 - k0;
    let rows = &mut rows[..8 * kc];
    let ps = stride(kc);
    let ns = panel.len() / ps;
    for g in 0..2 * ns {
        let (s, h) = (g / 2, 8 * (g % 2));
        if 8 * g >= nw {
            for p in &mut panel[s * ps..s * ps + kc] {
                p[h..h + 8].fill(0.0);
            }
            continue;
        }
        let (k, next) = (src.k(), (k1 + kc).min(src.k()));
        for (r, buf) in rows.chunks_exact_mut(kc).enumerate() {
            let jj = 8 * g + r;
            if jj < nw {
                // the same row's next k-block: read after this whole panel
                if k1 < k {
                    for line in pack::row_bytes(src, j0 + jj, k1, next).chunks(64) {
                        prefetch(line);
                    }
                }
                decode_row(src, j0 + jj, k0, k1, buf)?;
            } else {
                buf.fill(0.0);
            }
        }
        let dst = &mut panel[s * ps..s * ps + kc];
        let k8 = kc - kc % 8;
        for kb in (0..k8).step_by(8) {
            let mut v = [_mm256_setzero_ps(); 8];
            for (r, x) in v.iter_mut().enumerate() {
                *x = ld(arr(rows, r * kc + kb));
            }
            let t = transpose8(v);
            for (i, x) in t.into_iter().enumerate() {
                st(arr_mut(&mut dst[kb + i], h), x);
            }
        }
        for kk in k8..kc {
            for r in 0..8 {
                dst[kk][h + r] = rows[r * kc + kk];
            }
        }
    }
    Ok(())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
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
            match ty {
                GgmlType::F32 => row_f32(row, out),
                GgmlType::F16 => row_f16(row, out),
                GgmlType::BF16 => row_bf16(row, out),
                GgmlType::Q8_0 => blocks::<34, 32>(row, out, |b, o| q8_0(b, o)),
                GgmlType::Q4_0 => blocks::<18, 32>(row, out, |b, o| q4_0(b, o)),
                GgmlType::Q4_K => blocks::<144, 256>(row, out, |b, o| q4_k(b, o)),
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
            // k0 is a multiple of the granule (8 int4 / 4 int8 per word) and of 8 (KC).
            let (b0, per8) = if bits == 4 { (k0 / 2, 4) } else { (k0, 8) };
            let k8 = (k1 - k0) - (k1 - k0) % 8;
            let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
            let (nib, off4, off8) = (
                _mm256_set1_epi32(0xF),
                _mm256_set1_epi32(8),
                _mm256_set1_epi32(128),
            );
            for t in (0..k8).step_by(8) {
                let kk = k0 + t;
                let g = kk / group;
                let s = _mm256_set1_ps(decode_scale(scale_ty, &srow[g * sz..(g + 1) * sz]));
                let at = b0 + t / 8 * per8;
                let q = if bits == 4 {
                    let w = u32::from_le_bytes(*arr::<4, u8>(words, at));
                    let v = _mm256_srlv_epi32(_mm256_set1_epi32(w as i32), shifts);
                    _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, nib), off4))
                } else {
                    u8x8_off_f32(ld_b8(arr(words, at)), off8)
                };
                st(arr_mut(out, t), _mm256_mul_ps(q, s));
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
    row: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; E]),
) {
    let (bs, _) = row.as_chunks::<B>();
    let (os, _) = out.as_chunks_mut::<E>();
    for (b, o) in bs.iter().zip(os) {
        f(b, o);
    }
}

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

// ---- one-row products over [k, n] storages, straight into registers ----

/// Rows of `W` per k-block of [`gemv_kn`] (one 64-column group's accumulators stay in
/// registers across them; the next block's rows are prefetched meanwhile).
const GEMV_ROWS: usize = 16;

impl Avx2 {
    /// `out = x · W[:, j0 .. j0 + out.len()]` for `[k, n]` storages (`out.len()` a multiple of
    /// 64); `sbuf` holds `out.len()` floats. Returns false for storages it does not cover.
    pub(crate) fn gemv_kn(
        self,
        src: &Src<'_>,
        x: &[f32],
        j0: usize,
        out: &mut [f32],
        sbuf: &mut [f32],
    ) -> bool {
        // SAFETY: as in `pack`: the token proves the target features.
        unsafe { gemv_kn(src, x, j0, out, sbuf) }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn gemv_kn(src: &Src<'_>, x: &[f32], j0: usize, out: &mut [f32], sbuf: &mut [f32]) -> bool {
    let nc = out.len();
    debug_assert!(nc.is_multiple_of(NP));
    out.fill(0.0);
    let (k, n) = (src.k(), src.n());
    let x = &x[..k];
    match *src {
        Src::W(m) => match m.storage {
            Storage::ReleaseInt8 { q, scales, blocks } => {
                let bh = k / blocks;
                let sbuf = &mut sbuf[..nc];
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
                    for (g, (o, sv)) in out
                        .chunks_exact_mut(NP)
                        .zip(sbuf.chunks_exact(NP))
                        .enumerate()
                    {
                        let c0 = j0 + g * NP;
                        let mut a = [_mm256_setzero_ps(); 8];
                        for (i, v) in a.iter_mut().enumerate() {
                            *v = ld(arr(o, 8 * i));
                        }
                        for r in kb0..kb1 {
                            if r + GEMV_ROWS < k {
                                prefetch(&q[(r + GEMV_ROWS) * n + c0..]);
                            }
                            let xv = _mm256_set1_ps(x[r]);
                            let qr = &q[r * n + c0..r * n + c0 + NP];
                            for t in 0..4 {
                                let v = ld_b16(arr(qr, 16 * t));
                                let lo = _mm256_mul_ps(i8x8_f32(v), ld(arr(sv, 16 * t)));
                                let hi = _mm256_mul_ps(i8x8_f32(hi64(v)), ld(arr(sv, 16 * t + 8)));
                                a[2 * t] = _mm256_fmadd_ps(xv, lo, a[2 * t]);
                                a[2 * t + 1] = _mm256_fmadd_ps(xv, hi, a[2 * t + 1]);
                            }
                        }
                        for (i, v) in a.iter().enumerate() {
                            st(arr_mut(o, 8 * i), *v);
                        }
                    }
                    kb0 = kb1;
                }
                true
            }
            Storage::F32Kn(b) => {
                for kb0 in (0..k).step_by(GEMV_ROWS) {
                    let kb1 = (kb0 + GEMV_ROWS).min(k);
                    for (g, o) in out.chunks_exact_mut(NP).enumerate() {
                        let c0 = j0 + g * NP;
                        let mut a = [_mm256_setzero_ps(); 8];
                        for (i, v) in a.iter_mut().enumerate() {
                            *v = ld(arr(o, 8 * i));
                        }
                        for (r, &xr) in x.iter().enumerate().take(kb1).skip(kb0) {
                            let at = 4 * (r * n + c0);
                            if r + GEMV_ROWS < k {
                                let ahead = at + 4 * GEMV_ROWS * n;
                                for l in 0..4 {
                                    prefetch(&b[ahead + 64 * l..]);
                                }
                            }
                            let xv = _mm256_set1_ps(xr);
                            for (i, v) in a.iter_mut().enumerate() {
                                *v = _mm256_fmadd_ps(xv, f32x8(arr(b, at + 32 * i)), *v);
                            }
                        }
                        for (i, v) in a.iter().enumerate() {
                            st(arr_mut(o, 8 * i), *v);
                        }
                    }
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}
