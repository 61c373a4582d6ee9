//! The blocked product of one column tile and the instruction-set dispatch (portable,
//! AVX2+FMA; a NEON arm slots in beside them). `[n, k]` storages go to `super::rows` (the
//! dot-product order); `[k, n]` storages are computed here.
//!
//! Over `[k, n]` storages every output element is one FMA chain: `acc = +0; for k in 0..K {
//! acc = fma(x[i,k], w[k,j], acc) }`, stored to the output at the end of each k-block and loaded
//! back at the start of the next (an exact round trip). Blocking, tiling, the row count and the
//! instruction set change only which chains run side by side, never the operations of one
//! chain: that is the module's row/column-independence contract, and it makes the portable and
//! SIMD paths bit-identical (`f32::mul_add` is the same fused operation as `vfmadd`).

use super::pack::{self, stride, Region, Src, Strip, NP, NR, NS};

use super::KernelError;
use std::sync::OnceLock;

/// k rows per panel of a `[k, n]` storage's product of several rows (at most: wide panels use
/// fewer, see [`WIDE_PANEL`]).
pub(crate) const KC_GEMM: usize = 256;
/// Most rows one microkernel call covers (`MR × 16` accumulators: 12 of AVX2's 16 registers).
pub(crate) const MR_MAX: usize = 6;

/// The instruction set a process computes with (chosen once; see [`isa`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (`f32::mul_add`): any target.
    Portable,
    /// x86-64 AVX2 + FMA + F16C, detected at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2(super::x86::Avx2),
}

impl Isa {
    /// Name for reports (`portable`, `avx2+fma`).
    pub fn name(&self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => "avx2+fma",
        }
    }

    /// The best instruction set this CPU supports.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = super::x86::Avx2::detect() {
            return Isa::Avx2(t);
        }
        Isa::Portable
    }
}

/// The instruction set of this process: the best the CPU has, or the portable path when
/// `GROKIT_KERNEL=portable` (for comparisons). Chosen once, so a process never mixes paths
/// (they give the same bits anyway: see the module docs).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| match std::env::var("GROKIT_KERNEL").as_deref() {
        Ok("portable") => Isa::Portable,
        _ => Isa::best(),
    })
}

/// Scratch of one tile computation.
pub(crate) struct Scratch {
    panel: Vec<Strip>,
    rows: Vec<f32>,
    /// `[n, k]` products: the decoded stored rows of a panel.
    pub(crate) wrows: Vec<f32>,
    /// `[n, k]` products: the lanes of every output of a panel.
    pub(crate) state: Vec<super::rows::Lanes>,
    /// `[n, k]` products: `x` with rows padded to whole lane vectors (when `k % 8 ≠ 0`).
    pub(crate) xpad: Vec<f32>,
}

impl Scratch {
    pub(crate) const fn new() -> Scratch {
        Scratch {
            panel: Vec::new(),
            rows: Vec::new(),
            wrows: Vec::new(),
            state: Vec::new(),
            xpad: Vec::new(),
        }
    }

    /// Run `f` with this thread's scratch (kept between calls: a fresh 256 KiB panel per task
    /// would cost page faults, 18 % of a one-row product's time when measured).
    pub(crate) fn with<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = const {
                std::cell::RefCell::new(Scratch::new())
            };
        }
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => f(&mut s),
            // re-entered on this thread (a product inside a product): use a fresh one
            Err(_) => f(&mut Scratch::new()),
        })
    }
}

/// Floats of a `[k, n]` storage's panel (512 KiB: half of L2; see [`tile`]).
pub(crate) const WIDE_PANEL: usize = 128 * 1024;
/// Widest `[k, n]` panel (columns).
pub(crate) const WIDE_NP: usize = 1024;

/// Most rows a product over a `[k, n]` storage decodes straight into registers (one decode of
/// each weight, FMA'd into every row's accumulators); more rows go through the panel.
pub(crate) const SMALL_M: usize = 6;

/// `out[i][..] = x[i, :] · W[:, cols]` for `i < m`; `out[i]` holds `cols.len()` values.
///
/// `[n, k]` storages (GGUF, safetensors) go to `super::rows`. `[k, n]` storages (the release)
/// with at most [`SMALL_M`] rows are decoded straight into registers (AVX2); otherwise they are
/// packed across the whole tile at once (`kc · width` ≤ [`WIDE_PANEL`] floats), so every row
/// of `W` is read as one contiguous run of the tile's width: at 64 columns per row the reads of
/// consecutive rows land on different pages (32 KiB apart for an expert matrix) and the
/// hardware prefetcher cannot follow.
pub(crate) fn tile(
    isa: Isa,
    src: &Src<'_>,
    x: &[f32],
    m: usize,
    cols: std::ops::Range<usize>,
    out: &mut [&mut [f32]],
    sc: &mut Scratch,
) -> Result<(), KernelError> {
    let k = src.k();
    let nc = cols.len();
    debug_assert!(x.len() == m * k && out.len() == m);
    if m == 0 || nc == 0 {
        return Ok(());
    }
    if k == 0 {
        out.iter_mut().for_each(|o| o.fill(0.0));
        return Ok(());
    }
    if src.is_rows() {
        return super::rows::tile(isa, src, x, m, cols, out, sc);
    }
    let np = nc.next_multiple_of(NP).min(WIDE_NP);
    let kc_max = (WIDE_PANEL / np).clamp(16, KC_GEMM);
    let ns = np / NR;
    sc.panel.resize(ns * stride(kc_max), [0.0; NR]);
    sc.rows.resize(nc.next_multiple_of(NP), 0.0);
    #[cfg(target_arch = "x86_64")]
    if let Isa::Avx2(t) = isa {
        // A few rows over [k, n]: straight into registers, whole 64-column groups; the rest
        // (if any) through the panel below.
        let whole = nc - nc % NP;
        if m <= SMALL_M && whole > 0 && t.gemv_kn(src, x, m, cols.start, whole, out, &mut sc.rows) {
            if whole == nc {
                return Ok(());
            }
            let mut rest: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[whole..]).collect();
            return tile(isa, src, x, m, cols.start + whole..cols.end, &mut rest, sc);
        }
    }
    let blocks = row_blocks(m, MR_MAX);
    for k0 in (0..k).step_by(kc_max) {
        let k1 = (k0 + kc_max).min(k);
        let kc = k1 - k0;
        let first = k0 == 0;
        for s0 in (0..nc).step_by(np) {
            let nw = np.min(nc - s0);
            let ps = stride(kc);
            let panel = &mut sc.panel[..ns * ps];
            let region = Region {
                k0,
                k1,
                j0: cols.start + s0,
                nw,
            };
            pack_panel(isa, src, region, panel, &mut sc.rows);
            if m == 1 {
                for g in 0..nw.div_ceil(NP) {
                    let (c0, w) = (s0 + g * NP, NP.min(nw - g * NP));
                    let o = &mut out[0][c0..c0 + w];
                    let mut acc = [0f32; NP];
                    if !first {
                        acc[..w].copy_from_slice(o);
                    }
                    let p = &panel[g * NS * ps..(g + 1) * NS * ps];
                    gemv(isa, p, &x[k0..k1], &mut acc);
                    o.copy_from_slice(&acc[..w]);
                }
                continue;
            }
            // While this panel is multiplied, prefetch the next k-block's bytes of the same
            // columns, spread evenly over the microkernel calls.
            let mut ahead = pack::Ahead::new(src, k1, (k1 + kc_max).min(k), cols.start + s0, nw);
            let calls = nw.div_ceil(NR) * blocks.len();
            let per_call = ahead.remaining().div_ceil(calls.max(1));
            for s in 0..nw.div_ceil(NR) {
                let strip = &panel[s * ps..s * ps + kc];
                let (c0, w) = (s0 + s * NR, NR.min(nw - s * NR));
                for &(i0, mr) in &blocks {
                    let mut xs: [&[f32]; MR_MAX] = [&[]; MR_MAX];
                    for (r, xr) in xs.iter_mut().enumerate().take(mr) {
                        let i = i0 + r;
                        *xr = &x[i * k + k0..i * k + k1];
                    }
                    ahead.take(per_call, |line| prefetch(isa, line));
                    let rows = &mut out[i0..i0 + mr];
                    if w == NR {
                        // whole strips: the microkernel reads and writes the output in place
                        let mut cs: [&mut [f32]; MR_MAX] = Default::default();
                        for (c, row) in cs.iter_mut().zip(rows.iter_mut()) {
                            *c = &mut row[c0..c0 + NR];
                        }
                        ukernel(isa, mr, strip, &xs, &mut cs, first);
                    } else {
                        let mut acc = [[0f32; NR]; MR_MAX];
                        for (a, row) in acc.iter_mut().zip(rows.iter()) {
                            a[..w].copy_from_slice(&row[c0..c0 + w]);
                        }
                        let mut cs: [&mut [f32]; MR_MAX] = Default::default();
                        for (c, a) in cs.iter_mut().zip(acc.iter_mut()) {
                            *c = a;
                        }
                        ukernel(isa, mr, strip, &xs, &mut cs, first);
                        for (a, row) in acc.iter().zip(rows.iter_mut()) {
                            row[c0..c0 + w].copy_from_slice(&a[..w]);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Prefetch `line` into L2 (nothing on the portable path).
#[inline]
pub(crate) fn prefetch(isa: Isa, line: &[u8]) {
    match isa {
        Isa::Portable => {}
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.prefetch_l2(line),
    }
}

/// Split `m` rows into blocks of at most `most`, as even as possible (8 → 4 + 4, not 6 + 2: a
/// block of `r` rows keeps `2 r` FMA chains in flight, and 4 hide the FMA latency poorly).
pub(crate) fn row_blocks(m: usize, most: usize) -> Vec<(usize, usize)> {
    let nb = m.div_ceil(most);
    let (base, extra) = (m / nb.max(1), m % nb.max(1));
    let mut i0 = 0;
    (0..nb)
        .map(|b| {
            let r = base + usize::from(b < extra);
            let blk = (i0, r);
            i0 += r;
            blk
        })
        .collect()
}

/// Fill `panel` with `W[k0..k1, j0..j0 + nw]` of a `[k, n]` source (`rows`: a scratch of at
/// least `nw` rounded up to 64 floats).
pub(crate) fn pack_panel(
    isa: Isa,
    src: &Src<'_>,
    r: Region,
    panel: &mut [Strip],
    rows: &mut [f32],
) {
    match isa {
        Isa::Portable => pack::pack(src, r, panel),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.pack(src, r, panel, rows),
    }
}

/// `cs[r][..16] = (first ? 0 : cs[r][..16]) + xs[r] · strip` for `r < mr` (the FMA chains).
fn ukernel(
    isa: Isa,
    mr: usize,
    strip: &[Strip],
    xs: &[&[f32]; MR_MAX],
    cs: &mut [&mut [f32]; MR_MAX],
    first: bool,
) {
    match isa {
        Isa::Portable => {
            let mut acc = [[0f32; NR]; MR_MAX];
            for (a, c) in acc.iter_mut().zip(cs.iter()).take(mr) {
                if !first {
                    a.copy_from_slice(&c[..NR]);
                }
            }
            portable_ukernel(mr, strip, xs, &mut acc);
            for (a, c) in acc.iter().zip(cs.iter_mut()).take(mr) {
                c[..NR].copy_from_slice(a);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.ukernel(mr, strip, xs, cs, first),
    }
}

fn gemv(isa: Isa, panel: &[Strip], x: &[f32], acc: &mut [f32; NP]) {
    match isa {
        Isa::Portable => {
            let kc = x.len();
            for (s, a) in acc.chunks_exact_mut(NR).enumerate() {
                let mut one = [[0f32; NR]; MR_MAX];
                one[0].copy_from_slice(a);
                let xs: [&[f32]; MR_MAX] = [x, &[], &[], &[], &[], &[]];
                let ps = stride(kc);
                portable_ukernel(1, &panel[s * ps..s * ps + kc], &xs, &mut one);
                a.copy_from_slice(&one[0]);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.gemv(panel, x, acc),
    }
}

/// The portable microkernel: `acc[r][c] = fma(xs[r][kk], strip[kk][c], acc[r][c])`, kk in order.
fn portable_ukernel(mr: usize, strip: &[Strip], xs: &[&[f32]; MR_MAX], acc: &mut [Strip; MR_MAX]) {
    for (a, x) in acc.iter_mut().zip(xs).take(mr) {
        let x = &x[..strip.len()];
        for (&xv, b) in x.iter().zip(strip) {
            for (ac, &bv) in a.iter_mut().zip(b) {
                *ac = xv.mul_add(bv, *ac);
            }
        }
    }
}

/// The f32 FMA ceiling of this machine in GFLOP/s (wall clock): every thread of the current
/// rayon pool runs register-resident FMA chains (no memory traffic, [`fma_ceiling_run`]) for
/// about `seconds`. Benchmarks divide their products' rates by this.
pub fn fma_ceiling_gflops(seconds: f64) -> f64 {
    let timed = |iters: u64| {
        let t = std::time::Instant::now();
        let flops = fma_ceiling_run(iters);
        (flops, t.elapsed().as_secs_f64())
    };
    let mut iters = 1u64 << 16;
    while timed(iters).1 < seconds / 8.0 && iters < 1 << 40 {
        iters *= 2;
    }
    let (flops, secs) = timed(iters * 8);
    flops / secs / 1e9
}

/// Run `iters` rounds of 12 independent 8-lane FMA chains on every thread of the current rayon
/// pool, in registers, with the process's instruction set; returns the flops executed
/// (`iters · 12 · 8 · 2` per thread). Time it to get the machine's FMA ceiling.
pub fn fma_ceiling_run(iters: u64) -> f64 {
    let isa = isa();
    let per: Vec<f32> = rayon::broadcast(|_| match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.fma_loop(iters),
        Isa::Portable => portable_fma_loop(iters),
    });
    std::hint::black_box(per);
    iters as f64 * 12.0 * 8.0 * 2.0 * rayon::current_num_threads() as f64
}

fn portable_fma_loop(iters: u64) -> f32 {
    let mut a = [[1f32; 8]; 12];
    for (i, v) in a.iter_mut().enumerate() {
        *v = [std::hint::black_box(1.0 + i as f32); 8];
    }
    for _ in 0..std::hint::black_box(iters) {
        for v in a.iter_mut() {
            for l in v.iter_mut() {
                *l = l.mul_add(std::hint::black_box(0.999_9), 1e-4);
            }
        }
    }
    a.iter().flatten().sum()
}
