//! The kernel's contract, tested: exact weights (every decoder against [`Matrix::decode`] on
//! random bytes), one FMA chain per output element (products against a scalar chain, bit for
//! bit), independence from rows, columns, tiles, threads and instruction set.

use super::driver::{pack_panel, row_blocks, tile, Isa, Scratch};
use super::pack::{stride, Region, Src, Strip, NP, NR, NS};
use super::*;
use crate::quant::{
    ct as qct, is_supported, needs_weights, quantize_row_weighted, types::GGML_TYPES,
};

fn all_types() -> impl Iterator<Item = GgmlType> {
    GGML_TYPES.iter().map(|r| r.ty)
}

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0)
            .collect()
    }
}

/// An owned matrix of any storage kind.
#[derive(Clone)]
enum Owned {
    F32Kn(Vec<u8>),
    Int8 {
        q: Vec<u8>,
        s: Vec<u8>,
        blocks: usize,
    },
    Rows {
        ty: GgmlType,
        b: Vec<u8>,
    },
    Ct {
        bits: u32,
        group: usize,
        p: Vec<u8>,
        s: Vec<u8>,
        sty: GgmlType,
    },
}

struct Mat {
    k: usize,
    n: usize,
    o: Owned,
    name: String,
}

impl Mat {
    fn w(&self) -> Matrix<'_> {
        let st = match &self.o {
            Owned::F32Kn(b) => Storage::F32Kn(b),
            Owned::Int8 { q, s, blocks } => Storage::ReleaseInt8 {
                q,
                scales: s,
                blocks: *blocks,
            },
            Owned::Rows { ty, b } => Storage::Rows { ty: *ty, bytes: b },
            Owned::Ct {
                bits,
                group,
                p,
                s,
                sty,
            } => Storage::Ct {
                bits: *bits,
                group: *group,
                packed: p,
                scales: s,
                scale_ty: *sty,
            },
        };
        Matrix::new(self.k, self.n, st).unwrap()
    }
    fn full(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.k * self.n];
        self.w().decode(0..self.k, 0..self.n, &mut w).unwrap();
        w
    }
}

fn scale_bytes_of(ty: GgmlType, v: f32) -> Vec<u8> {
    match ty {
        GgmlType::F32 => v.to_le_bytes().to_vec(),
        GgmlType::F16 => half::f16::from_f32(v).to_bits().to_le_bytes().to_vec(),
        _ => crate::base::float::f32_to_bf16_bits(v)
            .to_le_bytes()
            .to_vec(),
    }
}

/// Every storage kind with random *bytes* (NaN, inf, subnormal scales included).
fn random_bytes_mats(rng: &mut Rng) -> Vec<Mat> {
    let mut v = Vec::new();
    let n = 1 + rng.below(150);
    let k = 1 + rng.below(300);
    v.push(Mat {
        k,
        n,
        o: Owned::F32Kn(rng.bytes(4 * k * n)),
        name: "f32 [k,n]".into(),
    });
    let blocks = [1, 2, 3][rng.below(3)];
    let k = blocks * (1 + rng.below(120));
    v.push(Mat {
        k,
        n,
        o: Owned::Int8 {
            q: rng.bytes(k * n),
            s: rng.bytes(2 * blocks * n),
            blocks,
        },
        name: format!("int8 blocks={blocks}"),
    });
    for ty in all_types() {
        if !is_supported(ty) {
            continue;
        }
        let be = ty.block_elems() as usize;
        let k = be * (1 + rng.below(if be > 1 { 3 } else { 300 }));
        let rb = ty.row_bytes(k as u64).unwrap() as usize;
        v.push(Mat {
            k,
            n,
            o: Owned::Rows {
                ty,
                b: rng.bytes(rb * n),
            },
            name: format!("rows {ty}"),
        });
    }
    for (bits, group, sty) in [
        (4, 32, GgmlType::BF16),
        (4, 128, GgmlType::F16),
        (8, 16, GgmlType::F32),
        (4, 12, GgmlType::BF16),
        (8, 6, GgmlType::F16),
    ] {
        let k = group * (1 + rng.below(20));
        let words = k.div_ceil(32 / bits as usize);
        let sb = match sty {
            GgmlType::F32 => 4,
            _ => 2,
        };
        v.push(Mat {
            k,
            n,
            o: Owned::Ct {
                bits,
                group,
                p: rng.bytes(4 * words * n),
                s: rng.bytes(sb * (k / group) * n),
                sty,
            },
            name: format!("ct int{bits} g{group} {sty}"),
        });
    }
    v
}

/// Every storage kind with *valid, finite* weights (quantized from random f32 rows).
fn finite_mats(rng: &mut Rng, k_mult: usize) -> Vec<Mat> {
    let mut v = Vec::new();
    let n = 1 + rng.below(200);
    let k = k_mult * (1 + rng.below(3));
    let f: Vec<f32> = rng.f32s(k * n);
    v.push(Mat {
        k,
        n,
        o: Owned::F32Kn(f.iter().flat_map(|x| x.to_le_bytes()).collect()),
        name: "f32 [k,n]".into(),
    });
    let q = rng.bytes(k * n);
    let blocks = if k.is_multiple_of(2) { 2 } else { 1 };
    let s: Vec<u8> = rng
        .f32s(blocks * n)
        .iter()
        .flat_map(|&x| scale_bytes_of(GgmlType::BF16, x * 0.01))
        .collect();
    v.push(Mat {
        k,
        n,
        o: Owned::Int8 { q, s, blocks },
        name: "int8".into(),
    });
    for ty in all_types() {
        if !is_supported(ty) || !k.is_multiple_of(ty.block_elems() as usize) {
            continue;
        }
        let mut b = Vec::new();
        // IQ2_XXS/IQ2_XS cannot be encoded without importance weights: unit weights.
        let w = needs_weights(ty).then(|| vec![1.0f32; k]);
        for row in f.chunks_exact(k) {
            quantize_row_weighted(ty, row, w.as_deref(), &mut b).unwrap();
        }
        v.push(Mat {
            k,
            n,
            o: Owned::Rows { ty, b },
            name: format!("rows {ty}"),
        });
    }
    for (bits, group) in [(4usize, 32usize), (8, 64)] {
        if !k.is_multiple_of(group) {
            continue;
        }
        let (mut p, mut s) = (Vec::new(), Vec::new());
        for row in f.chunks_exact(k) {
            qct::ct_quantize_row(bits as u32, group, row, &mut p, &mut s).unwrap();
        }
        v.push(Mat {
            k,
            n,
            o: Owned::Ct {
                bits: bits as u32,
                group,
                p: p.iter().flat_map(|w| w.to_le_bytes()).collect(),
                s: s.iter()
                    .flat_map(|&x| scale_bytes_of(GgmlType::BF16, x))
                    .collect(),
                sty: GgmlType::BF16,
            },
            name: format!("ct int{bits}"),
        });
    }
    v
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Portable];
    if Isa::best() != Isa::Portable {
        v.push(Isa::best());
    } else {
        println!("note: no SIMD path on this CPU; testing the portable path only");
    }
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The definition: one FMA chain over k per output element.
fn chain(x: &[f32], m: usize, w: &[f32], k: usize, n: usize, cols: Range<usize>) -> Vec<f32> {
    let mut y = Vec::with_capacity(m * cols.len());
    for i in 0..m {
        for j in cols.clone() {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = x[i * k + kk].mul_add(w[kk * n + j], acc);
            }
            y.push(acc);
        }
    }
    y
}

#[test]
fn geometry_is_checked() {
    let q = vec![0u8; 40];
    let s = vec![0u8; 20];
    let st = |blocks| Storage::ReleaseInt8 {
        q: &q,
        scales: &s,
        blocks,
    };
    assert!(Matrix::new(8, 5, st(2)).is_ok());
    assert!(Matrix::new(8, 5, st(3)).is_err());
    assert!(Matrix::new(8, 5, st(0)).is_err());
    assert!(Matrix::new(9, 5, st(1)).is_err());
    assert!(Matrix::new(usize::MAX, 2, Storage::F32Kn(&[])).is_err());
    let w = Matrix::new(8, 5, st(2)).unwrap();
    let mut o = vec![0f32; 10];
    assert!(matches!(
        matmul(&[0.0; 8], 1, &w, 0..6, &mut o),
        Err(KernelError::Args(_))
    ));
    assert!(matmul(&[0.0; 7], 1, &w, 0..5, &mut o[..5]).is_err());
    assert!(matmul_f32(&[0.0; 6], 2, 3, &[0.0; 5], Layout::Kn, 2).is_err());
    let mut bad = [Job {
        x: &[0.0; 8],
        m: 1,
        w,
        out: &mut o[..4],
    }];
    assert!(run(&mut bad).is_err());
}

/// Every panel decoder, on random bytes, equals `Matrix::decode` bit for bit (NaN payloads
/// included), for every k-block and column window the products use.
#[test]
fn decoders_are_bit_exact_on_random_bytes() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..6 {
        for mat in random_bytes_mats(&mut rng) {
            let w = mat.w();
            let src = Src::W(w);
            let full = mat.full();
            let g = src.k_granule();
            for isa in isas() {
                for kc_max in [64usize, 256] {
                    let kc_max = kc_max.next_multiple_of(g);
                    let mut panel = vec![[f32::NAN; NR]; NS * stride(kc_max)];
                    let mut rows = vec![0f32; 8 * kc_max];
                    for k0 in (0..w.k()).step_by(kc_max) {
                        let k1 = (k0 + kc_max).min(w.k());
                        let kc = k1 - k0;
                        for j0 in (0..w.n()).step_by(NP) {
                            let nw = NP.min(w.n() - j0);
                            pack_panel(
                                isa,
                                &src,
                                Region { k0, k1, j0, nw },
                                &mut panel[..NS * stride(kc)],
                                &mut rows,
                            )
                            .unwrap();
                            for kk in 0..kc {
                                for jj in 0..NP {
                                    let got = panel[(jj / NR) * stride(kc) + kk][jj % NR].to_bits();
                                    let want = if jj < nw {
                                        full[(k0 + kk) * w.n() + j0 + jj].to_bits()
                                    } else {
                                        0
                                    };
                                    assert_eq!(
                                        got,
                                        want,
                                        "{} ({}) round {round} k={} n={} at k {} col {}",
                                        mat.name,
                                        isa.name(),
                                        w.k(),
                                        w.n(),
                                        k0 + kk,
                                        j0 + jj
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Products equal the scalar FMA chain bit for bit, for every storage, instruction set, row
/// count and column window.
#[test]
fn products_are_the_fma_chain() {
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    for (round, k_mult) in [256usize, 512, 32, 96].into_iter().enumerate() {
        for mat in finite_mats(&mut rng, k_mult) {
            let w = mat.w();
            let (k, n) = (w.k(), w.n());
            let full = mat.full();
            let m = [1, 2, 3, 5, 7, 8, 13, 16][rng.below(8)];
            let x = rng.f32s(m * k);
            let a = rng.below(n);
            let cols = a..a + 1 + rng.below(n - a);
            let want = chain(&x, m, &full, k, n, cols.clone());
            for isa in isas() {
                let mut got = vec![0f32; m * cols.len()];
                let mut rows: Vec<&mut [f32]> = got.chunks_exact_mut(cols.len()).collect();
                tile(
                    isa,
                    &Src::W(w),
                    &x,
                    m,
                    cols.clone(),
                    &mut rows,
                    &mut Scratch::new(),
                )
                .unwrap();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{} ({}) round {round} m={m} k={k} n={n} cols={cols:?}",
                    mat.name,
                    isa.name()
                );
            }
            let mut y = vec![0f32; m * cols.len()];
            matmul(&x, m, &w, cols.clone(), &mut y).unwrap();
            assert_eq!(bits(&y), bits(&want), "{} matmul", mat.name);
        }
    }
}

/// Row i of any batch, any column range, any tiling and any thread count gives the same bits
/// as the one-row product (the KV-cache / banding guarantee), through `run` too.
#[test]
fn results_do_not_depend_on_batch_tiles_or_threads() {
    let mut rng = Rng(0x0dd_ba11_5eed);
    let mats = finite_mats(&mut rng, 256);
    for mat in mats.iter().filter(|m| {
        matches!(m.o, Owned::Int8 { .. })
            || m.name.contains("Q8_0")
            || m.name.contains("Q4_K")
            || m.name.contains("ct int4")
    }) {
        let w = mat.w();
        let (k, n) = (w.k(), w.n());
        let m = 1 + rng.below(40);
        let x = rng.f32s(m * k);
        let mut whole = vec![0f32; m * n];
        matmul(&x, m, &w, 0..n, &mut whole).unwrap();
        // one row at a time, random column windows
        for i in 0..m {
            let a = rng.below(n);
            let b = a + 1 + rng.below(n - a);
            let mut o = vec![0f32; b - a];
            matmul(&x[i * k..(i + 1) * k], 1, &w, a..b, &mut o).unwrap();
            assert_eq!(
                bits(&o),
                bits(&whole[i * n + a..i * n + b]),
                "{} row {i}",
                mat.name
            );
        }
        // a random sub-batch
        let i0 = rng.below(m);
        let i1 = i0 + 1 + rng.below(m - i0);
        let mut o = vec![0f32; (i1 - i0) * n];
        matmul(&x[i0 * k..i1 * k], i1 - i0, &w, 0..n, &mut o).unwrap();
        assert_eq!(
            bits(&o),
            bits(&whole[i0 * n..i1 * n]),
            "{} rows {i0}..{i1}",
            mat.name
        );
        // run: several jobs, several pool sizes
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut o1 = vec![0f32; m * n];
            let mut o2 = vec![0f32; n];
            pool.install(|| {
                run(&mut [
                    Job {
                        x: &x,
                        m,
                        w,
                        out: &mut o1,
                    },
                    Job {
                        x: &x[(m - 1) * k..],
                        m: 1,
                        w,
                        out: &mut o2,
                    },
                ])
            })
            .unwrap();
            assert_eq!(
                bits(&o1),
                bits(&whole),
                "{} run threads={threads}",
                mat.name
            );
            assert_eq!(
                bits(&o2),
                bits(&whole[(m - 1) * n..]),
                "{} run last row",
                mat.name
            );
        }
    }
}

/// Wide matrices: several panels per tile, one-row products straight into registers.
#[test]
fn wide_matrices_match_the_chain() {
    let mut rng = Rng(77);
    let (k, n) = (40, 9000);
    let q = rng.bytes(k * n);
    let s: Vec<u8> = rng
        .f32s(2 * n)
        .iter()
        .flat_map(|&x| scale_bytes_of(GgmlType::BF16, x))
        .collect();
    let f: Vec<u8> = rng
        .f32s(k * n)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    for o in [Owned::Int8 { q, s, blocks: 2 }, Owned::F32Kn(f)] {
        let mat = Mat {
            k,
            n,
            o,
            name: "wide".into(),
        };
        let w = mat.w();
        let full = mat.full();
        for m in [1, 3] {
            let x = rng.f32s(m * k);
            let want = chain(&x, m, &full, k, n, 0..n);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![0f32; m * n];
                pool.install(|| {
                    run(&mut [Job {
                        x: &x,
                        m,
                        w,
                        out: &mut y,
                    }])
                })
                .unwrap();
                assert_eq!(bits(&y), bits(&want), "m={m} threads={threads}");
            }
            let mut y = vec![0f32; m * (n - 5)];
            matmul(&x, m, &w, 5..n, &mut y).unwrap();
            let want: Vec<f32> = want.chunks_exact(n).flat_map(|r| r[5..].to_vec()).collect();
            assert_eq!(bits(&y), bits(&want), "m={m} single tile");
        }
    }
}

#[test]
fn f32_products_in_both_layouts() {
    let mut rng = Rng(42);
    for _ in 0..12 {
        let (m, k, n) = (1 + rng.below(20), 1 + rng.below(300), 1 + rng.below(300));
        let a = rng.f32s(m * k);
        let b = rng.f32s(k * n);
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let want = chain(&a, m, &b, k, n, 0..n);
        let c1 = matmul_f32(&a, m, k, &b, Layout::Kn, n).unwrap();
        let c2 = matmul_f32(&a, m, k, &bt, Layout::Nk, n).unwrap();
        assert_eq!(bits(&c1), bits(&want));
        assert_eq!(bits(&c2), bits(&want));
        let last = matmul_f32(&a[(m - 1) * k..], 1, k, &bt, Layout::Nk, n).unwrap();
        assert_eq!(bits(&last), bits(&want[(m - 1) * n..]));
    }
    // large enough to split over the pool
    let (m, k, n) = (9, 200, 2000);
    let a = rng.f32s(m * k);
    let b = rng.f32s(k * n);
    let want = chain(&a, m, &b, k, n, 0..n);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let c = pool
        .install(|| matmul_f32(&a, m, k, &b, Layout::Kn, n))
        .unwrap();
    assert_eq!(bits(&c), bits(&want));
}

#[test]
fn row_blocks_cover_evenly() {
    for m in 1..50 {
        let b = row_blocks(m);
        assert_eq!(b.iter().map(|x| x.1).sum::<usize>(), m);
        assert!(b.iter().all(|x| (1..=6).contains(&x.1)));
        let (lo, hi) = (
            b.iter().map(|x| x.1).min().unwrap(),
            b.iter().map(|x| x.1).max().unwrap(),
        );
        assert!(hi - lo <= 1, "{m}: {b:?}");
        let _: &[Strip] = &[];
    }
}
