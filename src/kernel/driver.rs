//! The blocked product of one column tile: k-blocks × 64-column panels × row blocks, and the
//! instruction-set dispatch (portable, AVX2+FMA; a NEON arm slots in beside them).
//!
//! Every output element is one FMA chain: `acc = +0; for k in 0..K { acc = fma(x[i,k], w[k,j],
//! acc) }`, stored to the output at the end of each k-block and loaded back at the start of the
//! next (an exact round trip). Blocking, tiling, the row count and the instruction set change
//! only which chains run side by side, never the operations of one chain: that is the module's
//! row/column-independence contract, and it makes the portable and SIMD paths bit-identical
//! (`f32::mul_add` is the same fused operation as `vfmadd`).

use super::pack::{self, Src, Strip, NP, NR, NS};
use super::KernelError;
use std::sync::OnceLock;

/// k rows per panel for products of several rows (panel: `KC_GEMM × NP` f32 = 64 KiB, one
/// 16 KiB sub-strip at a time stays in L1 while every row block streams over it).
pub(crate) const KC_GEMM: usize = 256;
/// k rows per panel for one-row products (16 KiB: decode and FMA stay in L1).
pub(crate) const KC_GEMV: usize = 64;
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
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            panel: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// `out[i][..] = x[i, :] · W[:, cols]` for `i < m`; `out[i]` holds `cols.len()` values.
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
    let g = src.k_granule();
    let kc_max = if m == 1 { KC_GEMV } else { KC_GEMM }.next_multiple_of(g);
    sc.panel.resize(NS * kc_max, [0.0; NR]);
    sc.rows.resize(8 * kc_max, 0.0);
    let blocks = row_blocks(m);
    for k0 in (0..k).step_by(kc_max) {
        let k1 = (k0 + kc_max).min(k);
        let kc = k1 - k0;
        let first = k0 == 0;
        for s0 in (0..nc).step_by(NP) {
            let nw = NP.min(nc - s0);
            let panel = &mut sc.panel[..NS * kc];
            pack_panel(isa, src, k0, k1, cols.start + s0, nw, panel, &mut sc.rows)?;
            if m == 1 {
                let o = &mut out[0][s0..s0 + nw];
                let mut acc = [0f32; NP];
                if !first {
                    acc[..nw].copy_from_slice(o);
                }
                gemv(isa, panel, &x[k0..k1], &mut acc);
                o.copy_from_slice(&acc[..nw]);
                continue;
            }
            for s in 0..nw.div_ceil(NR) {
                let strip = &panel[s * kc..(s + 1) * kc];
                let (c0, w) = (s0 + s * NR, NR.min(nw - s * NR));
                for &(i0, mr) in &blocks {
                    let mut acc = [[0f32; NR]; MR_MAX];
                    let mut xs: [&[f32]; MR_MAX] = [&[]; MR_MAX];
                    for r in 0..mr {
                        let i = i0 + r;
                        xs[r] = &x[i * k + k0..i * k + k1];
                        if !first {
                            acc[r][..w].copy_from_slice(&out[i][c0..c0 + w]);
                        }
                    }
                    ukernel(isa, mr, strip, &xs, &mut acc);
                    for r in 0..mr {
                        out[i0 + r][c0..c0 + w].copy_from_slice(&acc[r][..w]);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Split `m` rows into blocks of at most [`MR_MAX`], as even as possible (8 → 4 + 4, not
/// 6 + 2: a block of `r` rows keeps `2 r` FMA chains in flight, and 4 hide the FMA latency
/// poorly).
pub(crate) fn row_blocks(m: usize) -> Vec<(usize, usize)> {
    let nb = m.div_ceil(MR_MAX);
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

#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_panel(
    isa: Isa,
    src: &Src<'_>,
    k0: usize,
    k1: usize,
    j0: usize,
    nw: usize,
    panel: &mut [Strip],
    rows: &mut [f32],
) -> Result<(), KernelError> {
    match isa {
        Isa::Portable => pack::pack(src, k0, k1, j0, nw, panel, rows),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.pack(src, k0, k1, j0, nw, panel, rows),
    }
}

fn ukernel(isa: Isa, mr: usize, strip: &[Strip], xs: &[&[f32]; MR_MAX], acc: &mut [Strip; MR_MAX]) {
    match isa {
        Isa::Portable => portable_ukernel(mr, strip, xs, acc),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.ukernel(mr, strip, xs, acc),
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
                portable_ukernel(1, &panel[s * kc..(s + 1) * kc], &xs, &mut one);
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
