//! f32 × f32 matrix multiply for attention's activation products (`q·kᵀ`, `w·v`):
//! `matrixmultiply::sgemm`, split across rayon. (Weight products go through [`crate::kernel`].)
//!
//! Why sgemm and `unsafe` here: a safe, autovectorised blocked loop reaches a fraction of what
//! matrixmultiply's packed AVX2/FMA kernels reach, and at long contexts attention's products
//! grow with the square of the sequence. `sgemm` is an `unsafe fn` taking raw pointers and
//! strides, so this module is the one place in the reference model that opts out of
//! `deny(unsafe_code)`. Every call goes through [`sgemm_checked`], which verifies, before the
//! call, that the largest index each pointer can reach lies inside its slice. (When the kernel
//! module offers an f32 × f32 product with the same row independence, this module goes.)
//!
//! Work is split over rayon: by row blocks when there are many rows, else by column tiles. Each
//! output element is computed by the same kernel with the same k-blocking whatever the split, so
//! row `i` of the result does not depend on which other rows were in the batch: a KV-cached
//! decode reproduces a full recompute exactly.

use rayon::prelude::*;

/// Layout of the right-hand matrix B of `A·B` (`k × n` logically).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// B stored row-major as `[k, n]` (the release's `[in, out]` weights).
    KN,
    /// B stored as its transpose, row-major `[n, k]` (the tied embedding `[V, D]` used as Eᵀ).
    NK,
}

/// Rows per task when splitting by rows.
const ROW_BLOCK: usize = 32;
/// Smallest column tile when splitting by columns.
const MIN_COL_TILE: usize = 64;

/// `C[m, n] = A[m, k] · B` with `B` in `layout`. Panics never; lengths are checked.
///
/// Returns `None` when a slice is shorter than its dims require (a caller bug).
pub fn matmul(
    a: &[f32],
    m: usize,
    k: usize,
    b: &[f32],
    layout: BLayout,
    n: usize,
) -> Option<Vec<f32>> {
    if a.len() != m.checked_mul(k)? || b.len() != k.checked_mul(n)? {
        return None;
    }
    let mut c = vec![0f32; m.checked_mul(n)?];
    if m == 0 || n == 0 {
        return Some(c);
    }
    let (rsb, csb) = match layout {
        BLayout::KN => (n, 1),
        BLayout::NK => (1, k),
    };
    let threads = rayon::current_num_threads().max(1);
    if m >= ROW_BLOCK * threads || n < MIN_COL_TILE * 2 {
        // Split by rows: each task owns a contiguous block of C's rows.
        let ok = c
            .par_chunks_mut(ROW_BLOCK * n)
            .enumerate()
            .all(|(i, cblk)| {
                let rows = cblk.len() / n;
                let ablk = a.get(i * ROW_BLOCK * k..(i * ROW_BLOCK + rows) * k);
                ablk.is_some_and(|ablk| {
                    sgemm_checked(rows, k, ablk, (k, 1), n, b, (rsb, csb), cblk, n).is_some()
                })
            });
        return ok.then_some(c);
    }
    // Split by column tiles: each task computes its [m, tile] block into its own buffer.
    let tile = n
        .div_ceil(threads * 4)
        .next_multiple_of(16)
        .max(MIN_COL_TILE);
    let tiles: Option<Vec<(usize, Vec<f32>)>> = (0..n.div_ceil(tile))
        .into_par_iter()
        .map(|t| {
            let j0 = t * tile;
            let w = tile.min(n - j0);
            let boff = j0 * csb;
            let mut buf = vec![0f32; m * w];
            sgemm_checked(m, k, a, (k, 1), w, b.get(boff..)?, (rsb, csb), &mut buf, w)?;
            Some((j0, buf))
        })
        .collect();
    for (j0, buf) in tiles? {
        let w = buf.len() / m;
        for (crow, brow) in c.chunks_exact_mut(n).zip(buf.chunks_exact(w)) {
            crow.get_mut(j0..j0 + w)?.copy_from_slice(brow);
        }
    }
    Some(c)
}

/// `c[rows × w]` (row stride `ldc`) = `a[rows × k]` (strides `sa`) · `b[k × w]` (strides `sb`).
/// Returns `None` (without calling sgemm) if any index could leave its slice.
#[allow(clippy::too_many_arguments)]
fn sgemm_checked(
    rows: usize,
    k: usize,
    a: &[f32],
    sa: (usize, usize),
    w: usize,
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    ldc: usize,
) -> Option<()> {
    if rows == 0 || w == 0 {
        return Some(());
    }
    if k == 0 {
        c.iter_mut().for_each(|x| *x = 0.0);
        return Some(());
    }
    // Largest element index reachable through each (row stride, col stride) pair.
    let reach = |r: usize, cols: usize, (rs, cs): (usize, usize)| -> Option<usize> {
        (r - 1)
            .checked_mul(rs)?
            .checked_add((cols - 1).checked_mul(cs)?)
    };
    if reach(rows, k, sa)? >= a.len()
        || reach(k, w, sb)? >= b.len()
        || reach(rows, w, (ldc, 1))? >= c.len()
    {
        return None;
    }
    let s = |x: usize| isize::try_from(x).ok();
    let (rsa, csa, rsb, csb, rsc) = (s(sa.0)?, s(sa.1)?, s(sb.0)?, s(sb.1)?, s(ldc)?);
    // SAFETY: the checks above prove that for every i < rows, p < k, j < w the offsets
    // i*rsa + p*csa, p*rsb + j*csb and i*ldc + j are in bounds of `a`, `b` and `c`
    // respectively (all strides are non-negative and fit in isize), which is exactly the set
    // of elements sgemm reads or writes. `c` is a unique &mut borrow, so nothing aliases the
    // writes, and with beta = 0 sgemm never reads C's (initialised anyway) contents.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            w,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            rsc,
            1,
        );
    }
    Some(())
}

/// Straightforward triple loop (f64 accumulation) used to cross-check [`matmul`] in tests.
pub fn matmul_naive(
    a: &[f32],
    m: usize,
    k: usize,
    b: &[f32],
    layout: BLayout,
    n: usize,
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                let bv = match layout {
                    BLayout::KN => b[p * n + j],
                    BLayout::NK => b[j * k + p],
                };
                s += f64::from(a[i * k + p]) * f64::from(bv);
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn matches_naive_all_shapes_and_splits() {
        let mut s = 7u64;
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 96, 512),
            (3, 17, 200),
            (70, 33, 9),
            (200, 64, 130),
            (5, 300, 1000),
            (0, 3, 4),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut s)).collect();
            for layout in [BLayout::KN, BLayout::NK] {
                let c = matmul(&a, m, k, &b, layout, n).unwrap();
                let r = matmul_naive(&a, m, k, &b, layout, n);
                let err = c
                    .iter()
                    .zip(&r)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-4, "{m}x{k}x{n} {layout:?}: {err}");
            }
        }
        assert!(matmul(&[0.0; 3], 2, 2, &[0.0; 4], BLayout::KN, 2).is_none());
    }

    #[test]
    fn rows_do_not_depend_on_batch() {
        let mut s = 3u64;
        let (m, k, n) = (300, 128, 700);
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut s)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut s)).collect();
        let full = matmul(&a, m, k, &b, BLayout::KN, n).unwrap();
        for i in [0, 37, 299] {
            let one = matmul(&a[i * k..(i + 1) * k], 1, k, &b, BLayout::KN, n).unwrap();
            assert_eq!(one, full[i * n..(i + 1) * n]);
        }
    }

    /// Throughput probe on Grok-1 shapes: `cargo test --release gemm_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn gemm_throughput() {
        let (k, n) = (6144, 6144);
        let b = vec![0.01f32; k * n];
        for m in [1usize, 16, 128] {
            let a = vec![0.5f32; m * k];
            let t = std::time::Instant::now();
            let reps = if m == 1 { 10 } else { 3 };
            for _ in 0..reps {
                std::hint::black_box(matmul(&a, m, k, &b, BLayout::KN, n));
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "m={m} k={k} n={n}: {:.1} ms, {:.1} GFLOP/s, {:.1} GB/s of f32 weights",
                s * 1e3,
                2.0 * (m * k * n) as f64 / s / 1e9,
                (4 * k * n) as f64 / s / 1e9
            );
        }
    }
}
