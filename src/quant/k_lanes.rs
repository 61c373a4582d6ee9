//! Lane-parallel (structure-of-arrays) versions of the K-quant fitting helpers.
//!
//! Why: the reference fit is a long chain of dependent f32 additions per sub-block (the sums
//! must stay in the C order for byte equality), so a scalar port is latency-bound. The
//! sub-blocks of a super-block are independent, though: running them as lanes — lane j =
//! sub-block j, inner loops over lanes — gives the CPU 8 (or 16) independent chains and lets
//! the compiler use SIMD, while every lane still executes exactly the scalar sequence of IEEE
//! operations. Data-dependent branches become per-lane selects with identical outcomes. The
//! golden-vector tests pin the equivalence; `kutil` keeps the scalar originals (used by Q2_K and
//! the cross-check test below).

use super::kutil::{nearest_int, GROUP_MAX_EPS};

/// `make_qkx2_quants` (n = `N`) for `LANES` sub-blocks at once.
/// `x[i][lane]`, `w[i][lane]` are element i of sub-block `lane`; levels go to `l[i][lane]`.
/// Returns per-lane `(scale, the_min)`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn make_qkx2_lanes<const LANES: usize, const N: usize>(
    nmax: i32,
    x: &[[f32; LANES]; N],
    w: &[[f32; LANES]; N],
    l: &mut [[u8; LANES]; N],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> ([f32; LANES], [f32; LANES]) {
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = [0f32; LANES];
    for k in 0..LANES {
        sum_x[k] = sum_w[k] * x[0][k];
    }
    for i in 1..N {
        for k in 0..LANES {
            let v = x[i][k];
            if v < min[k] {
                min[k] = v;
            }
            if v > max[k] {
                max[k] = v;
            }
            sum_w[k] += w[i][k];
            sum_x[k] += w[i][k] * v;
        }
    }
    let mut done = [false; LANES];
    for k in 0..LANES {
        if min[k] > 0.0 {
            min[k] = 0.0;
        }
        done[k] = max[k] == min[k];
    }
    let nmaxf = nmax as f32;
    let mut iscale = [0f32; LANES];
    let mut scale = [0f32; LANES];
    for k in 0..LANES {
        iscale[k] = nmaxf / (max[k] - min[k]);
        scale[k] = 1.0 / iscale[k];
    }
    let mut best = [0f32; LANES];
    for i in 0..N {
        for k in 0..LANES {
            let q = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
            l[i][k] = q as u8;
            let diff = scale[k] * q as f32 + min[k] - x[i][k];
            best[k] += w[i][k] * err(diff);
        }
    }
    if nstep < 1 {
        for k in 0..LANES {
            if done[k] {
                scale[k] = 0.0;
                for row in l.iter_mut() {
                    row[k] = 0;
                }
            }
        }
        return (scale, min.map(|m| -m));
    }
    let mut laux = [[0u8; LANES]; N];
    for is in 0..=nstep {
        let mut sum_l = [0f32; LANES];
        let mut sum_l2 = [0f32; LANES];
        let mut sum_xl = [0f32; LANES];
        for k in 0..LANES {
            iscale[k] = (rmin + rdelta * is as f32 + nmaxf) / (max[k] - min[k]);
        }
        for i in 0..N {
            for k in 0..LANES {
                let q = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
                laux[i][k] = q as u8;
                let lf = q as f32;
                let wi = w[i][k];
                sum_l[k] += wi * lf;
                sum_l2[k] += wi * lf * lf;
                sum_xl[k] += wi * lf * x[i][k];
            }
        }
        let mut ts = [0f32; LANES];
        let mut tm = [0f32; LANES];
        let mut ok = [false; LANES];
        for k in 0..LANES {
            let d = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
            ok[k] = d > 0.0 && !done[k];
            let mut s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d;
            let mut m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d;
            if m > 0.0 {
                m = 0.0;
                s = sum_xl[k] / sum_l2[k];
            }
            ts[k] = s;
            tm[k] = m;
        }
        let mut cur = [0f32; LANES];
        for i in 0..N {
            for k in 0..LANES {
                let diff = ts[k] * f32::from(laux[i][k]) + tm[k] - x[i][k];
                cur[k] += w[i][k] * err(diff);
            }
        }
        let mut take = [false; LANES];
        let mut any = false;
        for k in 0..LANES {
            take[k] = ok[k] && cur[k] < best[k];
            any |= take[k];
            if take[k] {
                best[k] = cur[k];
                scale[k] = ts[k];
                min[k] = tm[k];
            }
        }
        if any {
            for i in 0..N {
                for k in 0..LANES {
                    if take[k] {
                        l[i][k] = laux[i][k];
                    }
                }
            }
        }
    }
    let mut the_min = [0f32; LANES];
    for k in 0..LANES {
        if done[k] {
            scale[k] = 0.0;
            for row in l.iter_mut() {
                row[k] = 0;
            }
        }
        the_min[k] = -min[k];
    }
    (scale, the_min)
}

/// `make_qx_quants(n = 16, nmax, rmse_type = 1, no weights)` for `LANES` sub-blocks at once;
/// levels (offset by nmax) go to `l[i][lane]`. Returns the per-lane scale.
#[inline]
pub(crate) fn make_qx_lanes<const LANES: usize>(
    nmax: i32,
    x: &[[f32; LANES]; 16],
    l: &mut [[u8; LANES]; 16],
) -> [f32; LANES] {
    let mut w = [[0f32; LANES]; 16];
    for i in 0..16 {
        for k in 0..LANES {
            w[i][k] = x[i][k] * x[i][k];
        }
    }
    make_qx_lanes_w(nmax, x, &w, l)
}

/// `make_qx_quants(n = N, nmax, rmse_type = 1, weights w)` for `LANES` sub-blocks at once
/// (the importance-weighted form: `w` are the caller's weights instead of x²).
#[inline]
pub(crate) fn make_qx_lanes_w<const LANES: usize, const N: usize>(
    nmax: i32,
    x: &[[f32; LANES]; N],
    w: &[[f32; LANES]; N],
    l: &mut [[u8; LANES]; N],
) -> [f32; LANES] {
    let mut max = [0f32; LANES];
    let mut amax = [0f32; LANES];
    for i in 0..N {
        for k in 0..LANES {
            let v = x[i][k];
            let ax = v.abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = v;
            }
        }
    }
    let nmaxf = nmax as f32;
    let mut iscale = [0f32; LANES];
    for k in 0..LANES {
        iscale[k] = -nmaxf / max[k];
    }
    let mut sumlx = [0f32; LANES];
    let mut suml2 = [0f32; LANES];
    for i in 0..N {
        for k in 0..LANES {
            let q = nearest_int(iscale[k] * x[i][k]).clamp(-nmax, nmax - 1);
            l[i][k] = (q + nmax) as u8;
            let lf = q as f32;
            sumlx[k] += w[i][k] * x[i][k] * lf;
            suml2[k] += w[i][k] * lf * lf;
        }
    }
    let mut scale = [0f32; LANES];
    let mut best = [0f32; LANES];
    for k in 0..LANES {
        scale[k] = if suml2[k] != 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        };
        best[k] = scale[k] * sumlx[k];
    }
    let mut laux = [[0u8; LANES]; N];
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        for k in 0..LANES {
            iscale[k] = -(nmaxf + 0.1f32 * is as f32) / max[k];
        }
        let mut slx = [0f32; LANES];
        let mut sl2 = [0f32; LANES];
        for i in 0..N {
            for k in 0..LANES {
                let q = nearest_int(iscale[k] * x[i][k]).clamp(-nmax, nmax - 1);
                laux[i][k] = (q + nmax) as u8;
                let lf = q as f32;
                slx[k] += w[i][k] * x[i][k] * lf;
                sl2[k] += w[i][k] * lf * lf;
            }
        }
        let mut take = [false; LANES];
        let mut any = false;
        for k in 0..LANES {
            take[k] = sl2[k] > 0.0 && slx[k] * slx[k] > best[k] * sl2[k];
            any |= take[k];
            if take[k] {
                scale[k] = slx[k] / sl2[k];
                best[k] = scale[k] * slx[k];
            }
        }
        if any {
            for i in 0..N {
                for k in 0..LANES {
                    if take[k] {
                        l[i][k] = laux[i][k];
                    }
                }
            }
        }
    }
    for k in 0..LANES {
        if amax[k] < GROUP_MAX_EPS {
            scale[k] = 0.0;
            for row in l.iter_mut() {
                row[k] = 0;
            }
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::kutil::{make_qkx2_quants, make_qx_quants_rmse1};

    fn data(seed: u32, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let f = (s >> 8) as f32 / 8_388_608.0 - 1.0;
                match (i / 32) % 5 {
                    0 => 0.0,
                    1 => f.abs() + 0.5, // all positive: min clamps to 0
                    2 => 0.25,          // constant
                    _ => f * 0.01,
                }
            })
            .collect()
    }

    #[test]
    fn lanes_equal_scalar() {
        let xs = data(5, 32 * 8 * 20);
        for chunk in xs.chunks_exact(256) {
            let mut xt = [[0f32; 8]; 32];
            let mut wt = [[0f32; 8]; 32];
            for k in 0..8 {
                for i in 0..32 {
                    xt[i][k] = chunk[32 * k + i];
                    wt[i][k] = 0.1 + chunk[32 * k + i].abs();
                }
            }
            let mut lt = [[0u8; 8]; 32];
            let (sc, mn) = make_qkx2_lanes(15, &xt, &wt, &mut lt, -1.0, 0.1, 20, false);
            for k in 0..8 {
                let x: [f32; 32] = std::array::from_fn(|i| xt[i][k]);
                let w: [f32; 32] = std::array::from_fn(|i| wt[i][k]);
                let mut l = [0u8; 32];
                let mut la = [0u8; 32];
                let (s, m) = make_qkx2_quants(15, &x, &w, &mut l, &mut la, -1.0, 0.1, 20, false);
                assert_eq!(
                    (s.to_bits(), m.to_bits()),
                    (sc[k].to_bits(), mn[k].to_bits())
                );
                assert!((0..32).all(|i| l[i] == lt[i][k]));
            }
            let mut x2 = [[0f32; 16]; 16];
            let mut w2 = [[0f32; 16]; 16];
            for k in 0..16 {
                for i in 0..16 {
                    x2[i][k] = chunk[16 * k + i];
                    w2[i][k] = chunk[16 * k + i].abs();
                }
            }
            let mut l2 = [[0u8; 16]; 16];
            let (sc2, mn2) = make_qkx2_lanes(3, &x2, &w2, &mut l2, -0.5, 0.1, 15, true);
            for k in 0..16 {
                let x: [f32; 16] = std::array::from_fn(|i| x2[i][k]);
                let w: [f32; 16] = std::array::from_fn(|i| w2[i][k]);
                let mut l = [0u8; 16];
                let mut la = [0u8; 16];
                let (s, m) = make_qkx2_quants(3, &x, &w, &mut l, &mut la, -0.5, 0.1, 15, true);
                assert_eq!(
                    (s.to_bits(), m.to_bits()),
                    (sc2[k].to_bits(), mn2[k].to_bits())
                );
                assert!((0..16).all(|i| l[i] == l2[i][k]));
            }
            let mut xq = [[0f32; 16]; 16];
            for k in 0..16 {
                for i in 0..16 {
                    xq[i][k] = chunk[16 * k + i];
                }
            }
            let mut lq = [[0u8; 16]; 16];
            let sq = make_qx_lanes(32, &xq, &mut lq);
            for k in 0..16 {
                let x: [f32; 16] = std::array::from_fn(|i| xq[i][k]);
                let mut l = [0u8; 16];
                let s = make_qx_quants_rmse1(32, &x, &mut l);
                assert_eq!(s.to_bits(), sq[k].to_bits());
                assert!((0..16).all(|i| l[i] == lq[i][k]));
            }
        }
    }
}
