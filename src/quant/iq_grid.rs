//! The search structures the IQ2/IQ3 encoders quantize with, derived from the codebooks the
//! way ggml's `iq2xs_init_impl`/`iq3xs_init_impl` derive theirs, computed lazily, once per
//! process (about 0.1 s for the largest).
//!
//! A lattice point is `D` levels `l ∈ 0..L` (IQ2: 8 × 3 levels; IQ3: 4 × 8 levels), encoded as
//! the index `u = Σ l_k · 2^(bits·k)`, and placed at positions `2l + 1`. The codebook's
//! magnitudes (e.g. IQ2's 8/25/43, IQ3_XXS's 4…62) map to levels in increasing order, so the
//! points here equal ggml's `kgrid_*` tables (tests/interop/iquant_ggml.py checks that against
//! ggml's source). For every index that is not a codebook point, the neighbour list holds the
//! codebook points at the `nwant` smallest squared distances, each distance's points in
//! increasing index order: exactly the prefix of ggml's `(d², j)`-sorted list it keeps.

use super::iq_tables::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use std::sync::OnceLock;

/// A codebook's quantization-time view: points, index map, neighbour lists.
pub(crate) struct Lattice<const D: usize> {
    /// Point positions `2l + 1` per coordinate.
    pub grid: Vec<[i8; D]>,
    /// Index `u` → codebook entry (≥ 0), or `-(offset + 1)` of its neighbour list.
    map: Vec<i32>,
    /// Neighbour lists: a count, then that many codebook entries.
    neighbours: Vec<u16>,
}

/// Where an index lies: on the codebook, or between points.
pub(crate) enum Lookup<'a> {
    /// Codebook entry.
    On(usize),
    /// The candidate entries to choose from.
    Near(&'a [u16]),
}

impl<const D: usize> Lattice<D> {
    /// Build from a codebook whose entries pack `D` magnitudes one per byte (lowest first),
    /// with `bits` per level in the index and `nwant` neighbour distances.
    fn build(codebook: &[u64], bits: u32, map_size: usize, nwant: usize) -> Self {
        let mut mags: Vec<u8> = codebook
            .iter()
            .flat_map(|&e| (0..D).map(move |i| (e >> (8 * i)) as u8))
            .collect();
        mags.sort_unstable();
        mags.dedup();
        let level = |m: u8| mags.iter().position(|&v| v == m).unwrap_or(0) as i32;
        let grid: Vec<[i8; D]> = codebook
            .iter()
            .map(|&e| std::array::from_fn(|i| (2 * level((e >> (8 * i)) as u8) + 1) as i8))
            .collect();
        let mut map = vec![-1i32; map_size];
        for (j, p) in grid.iter().enumerate() {
            let u: usize = p
                .iter()
                .enumerate()
                .map(|(k, &q)| (((q - 1) / 2) as usize) << (bits as usize * k))
                .sum();
            if let Some(m) = map.get_mut(u) {
                *m = j as i32;
            }
        }
        let mask = (1usize << bits) - 1;
        let mut neighbours = Vec::new();
        let mut d2 = vec![0i32; grid.len()];
        for i in 0..map_size {
            if map[i] >= 0 {
                continue;
            }
            let pos: [i32; D] =
                std::array::from_fn(|k| 2 * ((i >> (bits as usize * k)) & mask) as i32 + 1);
            for (d, p) in d2.iter_mut().zip(&grid) {
                *d = p
                    .iter()
                    .zip(&pos)
                    .map(|(&g, &q)| (i32::from(g) - q) * (i32::from(g) - q))
                    .sum();
            }
            // The nwant smallest distinct distances, ascending.
            let mut dists: Vec<i32> = Vec::with_capacity(nwant + 1);
            for &d in &d2 {
                if dists.contains(&d) {
                    continue;
                }
                if dists.len() < nwant {
                    dists.push(d);
                    dists.sort_unstable();
                } else if d < dists[nwant - 1] {
                    dists[nwant - 1] = d;
                    dists.sort_unstable();
                }
            }
            let start = neighbours.len();
            map[i] = -(start as i32 + 1);
            neighbours.push(0u16);
            for &dist in &dists {
                for (j, &d) in d2.iter().enumerate() {
                    if d == dist {
                        neighbours.push(j as u16);
                    }
                }
            }
            neighbours[start] = (neighbours.len() - start - 1) as u16;
        }
        Lattice {
            grid,
            map,
            neighbours,
        }
    }

    /// Look up index `u` (every index the encoders form is inside the map).
    #[inline(always)]
    pub fn lookup(&self, u: usize) -> Lookup<'_> {
        let m = self.map[u];
        if m >= 0 {
            Lookup::On(m as usize)
        } else {
            let at = (-(m + 1)) as usize;
            let n = usize::from(self.neighbours[at]);
            Lookup::Near(&self.neighbours[at + 1..at + 1 + n])
        }
    }

    /// The codebook entry of index `u`, if `u` is a point.
    #[inline(always)]
    pub fn entry(&self, u: usize) -> Option<usize> {
        let m = *self.map.get(u)?;
        (m >= 0).then_some(m as usize)
    }

    /// ggml's `iq{2,3}_find_best_neighbour`: the candidate whose scaled point is nearest to
    /// `xval` in the weighted squared distance (first on ties); its levels go to `l`.
    #[inline]
    pub fn best_neighbour(
        &self,
        cand: &[u16],
        xval: &[f32],
        weight: &[f32],
        scale: f32,
        l: &mut [i8],
    ) -> usize {
        let mut best_d2 = f32::MAX;
        let mut best = usize::from(cand.first().copied().unwrap_or(0));
        let mut found = false;
        for &j in cand {
            let pg = &self.grid[usize::from(j)];
            let mut d2 = 0f32;
            for i in 0..D {
                let diff = scale * f32::from(pg[i]) - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if d2 < best_d2 {
                best_d2 = d2;
                best = usize::from(j);
                found = true;
            }
        }
        // ggml asserts a finite distance was found; for NaN input keep the first candidate.
        let _ = found;
        self.set_levels(best, l);
        best
    }

    /// The levels of codebook entry `j` into `l`.
    #[inline(always)]
    pub fn set_levels(&self, j: usize, l: &mut [i8]) {
        for (o, &p) in l.iter_mut().zip(&self.grid[j]) {
            *o = (p - 1) / 2;
        }
    }

    /// Number of neighbour-list entries (for tests and the docs' size figures).
    #[cfg(test)]
    pub fn neighbour_len(&self) -> usize {
        self.neighbours.len()
    }
}

/// The IQ2 lattices (8 coordinates, 3 levels, index maps of 43 692 entries).
pub(crate) fn iq2(which: Iq2) -> &'static Lattice<8> {
    static XXS: OnceLock<Lattice<8>> = OnceLock::new();
    static XS: OnceLock<Lattice<8>> = OnceLock::new();
    static S: OnceLock<Lattice<8>> = OnceLock::new();
    const MAP: usize = 43692;
    match which {
        Iq2::Xxs => XXS.get_or_init(|| Lattice::build(&IQ2XXS_GRID, 2, MAP, 2)),
        Iq2::Xs => XS.get_or_init(|| Lattice::build(&IQ2XS_GRID, 2, MAP, 2)),
        Iq2::S => S.get_or_init(|| Lattice::build(&IQ2S_GRID, 2, MAP, 1)),
    }
}

/// The IQ3 lattices (4 coordinates, 8 levels, index maps of 4096 entries).
pub(crate) fn iq3(which: Iq3) -> &'static Lattice<4> {
    static XXS: OnceLock<Lattice<4>> = OnceLock::new();
    static S: OnceLock<Lattice<4>> = OnceLock::new();
    let widen = |g: &[u32]| g.iter().map(|&e| u64::from(e)).collect::<Vec<u64>>();
    match which {
        Iq3::Xxs => XXS.get_or_init(|| Lattice::build(&widen(&IQ3XXS_GRID), 3, 4096, 2)),
        Iq3::S => S.get_or_init(|| Lattice::build(&widen(&IQ3S_GRID), 3, 4096, 3)),
    }
}

/// Which IQ2 codebook.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Iq2 {
    /// IQ2_XXS, 256 points.
    Xxs,
    /// IQ2_XS, 512 points.
    Xs,
    /// IQ2_S, 1024 points.
    S,
}

/// Which IQ3 codebook.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Iq3 {
    /// IQ3_XXS, 256 points.
    Xxs,
    /// IQ3_S, 512 points.
    S,
}

/// The quantization-time points of a codebook as ggml's `kgrid_*` index tables (`u` per
/// entry), for the interop check against ggml's source.
pub fn kgrid_indices(type_name: &str) -> Option<Vec<u16>> {
    fn idx<const D: usize>(l: &Lattice<D>, bits: usize) -> Vec<u16> {
        l.grid
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .map(|(k, &q)| (((q - 1) / 2) as u16) << (bits * k))
                    .sum()
            })
            .collect()
    }
    Some(match type_name {
        "iq2_xxs" => idx(iq2(Iq2::Xxs), 2),
        "iq2_xs" => idx(iq2(Iq2::Xs), 2),
        "iq2_s" => idx(iq2(Iq2::S), 2),
        "iq3_xxs" => idx(iq3(Iq3::Xxs), 3),
        "iq3_s" => idx(iq3(Iq3::S), 3),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lattices_are_consistent() {
        for (w, n) in [(Iq2::Xxs, 256), (Iq2::Xs, 512), (Iq2::S, 1024)] {
            let l = iq2(w);
            assert_eq!(l.grid.len(), n);
            // every point maps back to itself; every other index has a non-empty list
            for (j, p) in l.grid.iter().enumerate() {
                let u: usize = p
                    .iter()
                    .enumerate()
                    .map(|(k, &q)| (((q - 1) / 2) as usize) << (2 * k))
                    .sum();
                assert_eq!(l.entry(u), Some(j));
            }
            for u in 0..43692 {
                if let Lookup::Near(c) = l.lookup(u) {
                    assert!(!c.is_empty());
                }
            }
            assert!(l.neighbour_len() > 0);
        }
        for (w, n) in [(Iq3::Xxs, 256), (Iq3::S, 512)] {
            let l = iq3(w);
            assert_eq!(l.grid.len(), n);
            assert!(l
                .grid
                .iter()
                .all(|p| p.iter().all(|&q| (1..=15).contains(&q) && q % 2 == 1)));
        }
        // ggml's kgrid tables start like this (ggml-quants.c, iq2xs_init_impl / iq3xs_init_impl)
        assert_eq!(
            &kgrid_indices("iq2_xxs").unwrap()[..8],
            &[0, 2, 5, 8, 10, 17, 20, 32]
        );
        assert_eq!(
            &kgrid_indices("iq2_xs").unwrap()[..8],
            &[0, 2, 5, 8, 10, 17, 20, 22]
        );
        assert_eq!(
            &kgrid_indices("iq3_xxs").unwrap()[..8],
            &[0, 2, 4, 9, 11, 15, 16, 18]
        );
        assert_eq!(
            &kgrid_indices("iq3_s").unwrap()[..8],
            &[0, 1, 2, 5, 7, 8, 9, 10]
        );
    }
}
