//! Benchmark of the matrix kernels (`src/kernel`) at Grok-1's shapes, against this machine's
//! own limits measured in the same run:
//!
//! - the f32 FMA ceiling (register-resident FMA chains on every thread),
//! - the memory read bandwidth (summing the same weight bytes the GEMV reads),
//! - the previous path (decode to f32, then `matrixmultiply::sgemm`).
//!
//! Run: `cargo bench --bench kernel` (about 8 minutes on 2 cores, 2 GB of memory at most;
//! `-- --quick` for a smaller subset, `-- --reps N` for more repeats, `-- --ceiling` for the
//! ceiling alone, `-- --layer` for the end-to-end layer model alone, `-- --profile KIND M` to
//! loop one expert-shaped product for `perf record`). Every figure is the median of the repeats, with
//! the spread (max/min − 1) beside it; ratios are against the ceiling or bandwidth measured in
//! the same run. Times are the process's CPU time divided by the thread count (read from
//! `/proc/self/task/*/schedstat`), so that other processes on a shared machine do not count;
//! `-- --wall` uses wall-clock time instead (the same on an idle machine). `GROKIT_KERNEL=portable` benchmarks the portable path.
//!
//! The weights are synthetic (random bytes with sane scales: speed does not depend on values),
//! except the tied head as f32, which is mapped from `/work/bench/grok1-1l` when present.

use grokit::kernel::{fma_ceiling_run, isa, matmul, run, Job, Matrix, Storage};
use grokit::quant::GgmlType;
use rayon::prelude::*;
use std::time::Instant;

struct Opts {
    profile: Option<(String, usize)>,
    ceiling_only: bool,
    layer_only: bool,
    quick: bool,
    reps: usize,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let mut o = Opts {
        profile: None,
        ceiling_only: false,
        layer_only: false,
        quick: false,
        reps: 3,
    };
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => o.quick = true,
            "--wall" => CPU_TIME.store(false, std::sync::atomic::Ordering::Relaxed),
            "--ceiling" => o.ceiling_only = true,
            "--layer" => o.layer_only = true,
            "--profile" => {
                let kind = args.get(i + 1).cloned().unwrap_or_default();
                let m = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(16);
                o.profile = Some((kind, m));
                i += 2;
            }
            "--reps" => {
                i += 1;
                o.reps = args.get(i).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
            }
            _ => {} // cargo passes --bench
        }
        i += 1;
    }
    o
}

/// Deterministic bytes, generated in parallel.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v.par_chunks_mut(1 << 20).enumerate().for_each(|(c, ch)| {
        let mut s = seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let (words, tail) = ch.as_chunks_mut::<8>();
        for b in words.iter_mut().chain(std::iter::once(&mut [0u8; 8])) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            *b = s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        }
        tail.fill(0x5a);
    });
    v
}

/// Random small f32 / bf16 values as bytes.
fn small_values(len: usize, bytes_per: usize, seed: u64) -> Vec<u8> {
    let mut v = random_bytes(len * bytes_per, seed);
    v.par_chunks_mut(bytes_per * 4096).for_each(|ch| {
        for e in ch.chunks_exact_mut(bytes_per) {
            // keep sign and mantissa, force the exponent near 2^-7 (values in ±[0.0078, 0.0156))
            let hi = e[bytes_per - 1];
            e[bytes_per - 1] = (hi & 0x80) | 0x3c;
            e[bytes_per - 2] &= 0x7f;
        }
    });
    v
}

/// Owned weights of one storage kind.
struct Weights {
    name: &'static str,
    k: usize,
    n: usize,
    a: Vec<u8>,
    b: Vec<u8>,
    ty: Option<GgmlType>,
    blocks: usize,
}

impl Weights {
    fn make(name: &'static str, k: usize, n: usize, blocks: usize) -> Weights {
        let f16_01 = half::f16::from_f32(0.01).to_bits().to_le_bytes();
        let block_type = |ty: GgmlType, d_at: &[usize]| {
            let bb = ty.block_bytes() as usize;
            let mut b = random_bytes(ty.row_bytes(k as u64).unwrap() as usize * n, 7);
            b.par_chunks_mut(bb * 1024).for_each(|ch| {
                for blk in ch.chunks_exact_mut(bb) {
                    for &at in d_at {
                        blk[at..at + 2].copy_from_slice(&f16_01);
                    }
                }
            });
            b
        };
        let (a, b, ty) = match name {
            "int8" => (random_bytes(k * n, 1), small_values(blocks * n, 2, 2), None),
            "f32" => (small_values(k * n, 4, 3), Vec::new(), None),
            "bf16" => (small_values(k * n, 2, 4), Vec::new(), Some(GgmlType::BF16)),
            "f32 rows" => (small_values(k * n, 4, 5), Vec::new(), Some(GgmlType::F32)),
            "Q8_0" => (
                block_type(GgmlType::Q8_0, &[0]),
                Vec::new(),
                Some(GgmlType::Q8_0),
            ),
            "Q4_0" => (
                block_type(GgmlType::Q4_0, &[0]),
                Vec::new(),
                Some(GgmlType::Q4_0),
            ),
            "Q4_K" => (
                block_type(GgmlType::Q4_K, &[0, 2]),
                Vec::new(),
                Some(GgmlType::Q4_K),
            ),
            "Q6_K" => (
                block_type(GgmlType::Q6_K, &[208]),
                Vec::new(),
                Some(GgmlType::Q6_K),
            ),
            "Q5_K" => (
                block_type(GgmlType::Q5_K, &[0, 2]),
                Vec::new(),
                Some(GgmlType::Q5_K),
            ),
            "Q4_1" => (
                block_type(GgmlType::Q4_1, &[0, 2]),
                Vec::new(),
                Some(GgmlType::Q4_1),
            ),
            "ct int4" => (
                random_bytes(k / 2 * n, 6),
                small_values(k / 128 * n, 2, 8),
                None,
            ),
            _ => unreachable!("unknown weight kind {name}"),
        };
        Weights {
            name,
            k,
            n,
            a,
            b,
            ty,
            blocks,
        }
    }

    fn matrix(&self) -> Matrix<'_> {
        let st = match self.name {
            "int8" => Storage::ReleaseInt8 {
                q: &self.a,
                scales: &self.b,
                blocks: self.blocks,
            },
            "f32" => Storage::F32Kn(&self.a),
            "ct int4" => Storage::Ct {
                bits: 4,
                group: 128,
                packed: &self.a,
                scales: &self.b,
                scale_ty: GgmlType::BF16,
            },
            _ => Storage::Rows {
                ty: self.ty.expect("row type"),
                bytes: &self.a,
            },
        };
        Matrix::new(self.k, self.n, st).expect("geometry")
    }
}

/// CPU time of this process's threads so far (ns), from `/proc/self/task/*/schedstat`.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Whether timings are CPU time per thread (`--cpu-time`, the default when the machine is
/// shared) or wall-clock time.
static CPU_TIME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Median and spread (max/min − 1) of `reps` timings of `f`, after one warm-up. A timing is
/// the process's CPU time divided by the pool's thread count (so other processes' load on a
/// shared machine does not count), or wall-clock time with `--wall`.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let threads = rayon::current_num_threads() as f64;
    let cpu = CPU_TIME.load(std::sync::atomic::Ordering::Relaxed);
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let (s, c) = (Instant::now(), cpu_ns());
            f();
            if cpu {
                (cpu_ns() - c) as f64 / 1e9 / threads
            } else {
                s.elapsed().as_secs_f64()
            }
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[t.len() - 1] / t[0] - 1.0)
}

/// Read bandwidth: sum the bytes as u64 lanes on every thread.
fn read_bandwidth(bytes: &[u8], reps: usize) -> (f64, f64) {
    let (t, spread) = time(reps, || {
        let s: u64 = bytes
            .par_chunks(1 << 20)
            .map(|c| {
                let (w, _) = c.as_chunks::<32>();
                let mut acc = [0u64; 4];
                for b in w {
                    for (a, q) in acc.iter_mut().zip(b.as_chunks::<8>().0) {
                        *a = a.wrapping_add(u64::from_le_bytes(*q));
                    }
                }
                acc.iter().fold(0u64, |x, &y| x.wrapping_add(y))
            })
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
    });
    (bytes.len() as f64 / t / 1e9, spread)
}

/// The FMA ceiling, timed like everything else (CPU time per thread unless `--wall`): about
/// 0.4 s of register-resident FMA chains on every thread.
fn ceiling(samples: &mut Vec<f64>) -> f64 {
    let iters = 1u64 << 24; // 0.4 GFLOP per thread
    let (t, _) = time(3, || {
        fma_ceiling_run(iters);
    });
    let c = fma_ceiling_run(0) + iters as f64 * 192.0 * rayon::current_num_threads() as f64;
    let g = c / t / 1e9;
    samples.push(g);
    g
}

fn x_rows(m: usize, k: usize) -> Vec<f32> {
    (0..m * k).map(|i| ((i as f32) * 0.618).sin()).collect()
}

/// The previous path: decode a band of columns to f32, then `matrixmultiply::sgemm`, bands in
/// parallel.
fn old_path(w: &Matrix<'_>, x: &[f32], m: usize, out: &mut [f32]) {
    let (k, n) = (w.k(), w.n());
    const BAND: usize = 256;
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(BAND))
        .into_par_iter()
        .map(|b| {
            let c0 = b * BAND;
            let c1 = (c0 + BAND).min(n);
            let nb = c1 - c0;
            let mut band = vec![0f32; k * nb];
            w.decode(0..k, c0..c1, &mut band).expect("decode");
            let mut c = vec![0f32; m * nb];
            // SAFETY: a is m×k (row stride k), b is k×nb (row stride nb), c is m×nb (row stride
            // nb): every index sgemm forms lies inside the three vectors.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    nb,
                    1.0,
                    x.as_ptr(),
                    k as isize,
                    1,
                    band.as_ptr(),
                    nb as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    nb as isize,
                    1,
                );
            }
            c
        })
        .collect();
    for (b, c) in parts.iter().enumerate() {
        let c0 = b * BAND;
        let nb = c.len() / m;
        for i in 0..m {
            out[i * n + c0..i * n + c0 + nb].copy_from_slice(&c[i * nb..(i + 1) * nb]);
        }
    }
}

fn pct(s: f64) -> String {
    format!("±{:.0}%", s * 100.0)
}

fn main() {
    let o = opts();
    let threads = rayon::current_num_threads();
    let mut ceil = Vec::new();
    println!(
        "# grokit kernel benchmark: isa {}, {threads} threads, {} repeats each{}\n",
        isa().name(),
        o.reps,
        if o.quick { " (--quick)" } else { "" }
    );
    if let Some((kind, m)) = &o.profile {
        // One configuration in a loop, for `perf record`.
        let (k, n) = (6144, 32768);
        let kind: &'static str = Box::leak(kind.clone().into_boxed_str());
        let wts = Weights::make(kind, k, n, 1);
        let w = wts.matrix();
        let x = x_rows(*m, k);
        let mut out = vec![0f32; m * n];
        let (t, sp) = time(o.reps, || {
            run(&mut [Job {
                x: &x,
                m: *m,
                w,
                out: &mut out,
            }])
            .expect("run")
        });
        println!("{kind} m={m}: {:.1} ms ({})", t * 1e3, pct(sp));
        return;
    }
    let c0 = ceiling(&mut ceil);
    println!("f32 FMA ceiling: {c0:.1} GFLOP/s\n");
    if o.ceiling_only {
        for _ in 0..o.reps {
            println!("f32 FMA ceiling: {:.1} GFLOP/s", ceiling(&mut ceil));
        }
        return;
    }
    if o.layer_only {
        layer_model(&o, c0);
        return;
    }

    // ---- small m and GEMM at the expert shape ----
    let (k, n) = (6144, if o.quick { 8192 } else { 32768 });
    let kinds: &[&str] = if o.quick {
        &["int8", "Q8_0", "Q4_K"]
    } else {
        &[
            "int8", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "bf16", "f32", "ct int4",
        ]
    };
    let small: &[usize] = &[1, 2, 4];
    let ms: &[usize] = &[8, 16, 32, 64];
    let mut small_rows = Vec::new();
    let mut gemm_rows = Vec::new();
    for &kind in kinds {
        let wts = Weights::make(kind, k, n, 1);
        let w = wts.matrix();
        let (bw, bsp) = read_bandwidth(stored_bytes(&w), o.reps.max(3));
        let mut row = format!(
            "| {kind} | {:.0} | {bw:.1} ({}) |",
            w.stored_bytes() as f64 / 1e6,
            pct(bsp)
        );
        for &m in small {
            let t = product_time(&o, &w, m);
            let gbs = w.stored_bytes() as f64 / t.0 / 1e9;
            row += &format!(" {:.2} ({}) **{:.2}** |", t.0 * 1e3, pct(t.1), gbs / bw);
        }
        small_rows.push(row);
        let mut row = format!("| {kind} |");
        for &m in ms {
            let (t, sp) = product_time(&o, &w, m);
            let g = 2.0 * (m * k * n) as f64 / t / 1e9;
            row += &format!(" {g:.1} (**{:.2}**, {}) |", g / c0, pct(sp));
        }
        gemm_rows.push(row);
    }
    println!(
        "## Small m, k = {k}, n = {n} (expert w1/v shape): ms per matrix (spread) and **× read bandwidth** of the same bytes\n"
    );
    print!("| weights | MB | read GB/s |");
    for m in small {
        print!(" m = {m} |");
    }
    println!("\n|---|---|---|{}", "---|".repeat(small.len()));
    for r in &small_rows {
        println!("{r}");
    }
    println!("\n## GEMM, k = {k}, n = {n}: GFLOP/s (**× ceiling**, spread)\n");
    print!("| weights |");
    for m in ms {
        print!(" m = {m} |");
    }
    println!("\n|---|{}", "---|".repeat(ms.len()));
    for r in &gemm_rows {
        println!("{r}");
    }
    let c1 = ceiling(&mut ceil);

    // ---- GEMV at every shape ----
    println!("\n## GEMV (m = 1): time per matrix, weight bytes / time, × read bandwidth of the same bytes\n");
    println!("| matrix | weights | MB | ms (spread) | GB/s | read GB/s (spread) | × bandwidth |");
    println!("|---|---|---|---|---|---|---|");
    let shapes: Vec<(&str, usize, usize, usize, Vec<&str>)> = if o.quick {
        vec![("attn 6144×6144", 6144, 6144, 1, vec!["int8", "Q8_0"])]
    } else {
        vec![
            (
                "down 32768×6144",
                32768,
                6144,
                8,
                vec!["int8", "Q8_0", "Q4_K"],
            ),
            ("attn 6144×6144", 6144, 6144, 1, vec!["int8", "Q8_0"]),
            ("head 131072×6144 [n,k]", 6144, 131072, 1, vec!["Q8_0"]),
        ]
    };
    for (label, k, n, blocks, kinds) in shapes {
        for kind in kinds {
            let wts = Weights::make(kind, k, n, blocks);
            println!("{}", gemv(&o, label, &wts.matrix()));
        }
    }
    if !o.quick {
        head_f32(&o);
    }
    let c2 = ceiling(&mut ceil);
    if !o.quick {
        layer_model(&o, c0);
    }

    // ---- the previous path ----
    println!(
        "\n## Previous path (decode to f32 + matrixmultiply sgemm) vs kernel, k = {k}, n = {n}\n"
    );
    println!("| weights | m | old ms | kernel ms | speed-up |");
    println!("|---|---|---|---|---|");
    for kind in ["int8", "Q8_0"] {
        let wts = Weights::make(kind, k, n, 1);
        let w = wts.matrix();
        for m in [1usize, 16, 64] {
            let x = x_rows(m, k);
            let mut out = vec![0f32; m * n];
            let (t_old, _) = time(o.reps.min(2), || old_path(&w, &x, m, &mut out));
            let mut out2 = vec![0f32; m * n];
            let (t_new, _) = time(o.reps, || {
                run(&mut [Job {
                    x: &x,
                    m,
                    w,
                    out: &mut out2,
                }])
                .expect("run")
            });
            let diff = out
                .iter()
                .zip(&out2)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            println!(
                "| {kind} | {m} | {:.1} | {:.1} | {:.1}× (max |Δ| {diff:.1e}) |",
                t_old * 1e3,
                t_new * 1e3,
                t_old / t_new
            );
        }
    }
    let c3 = ceiling(&mut ceil);
    println!(
        "\nFMA ceiling over the run: {:.1} / {c1:.1} / {c2:.1} / {c3:.1} GFLOP/s (ratios above use {c0:.1}; spread {})",
        c0,
        pct(ceil.iter().cloned().fold(f64::MIN, f64::max) / ceil.iter().cloned().fold(f64::MAX, f64::min) - 1.0)
    );
}

/// One GEMV table row: the kernel's time on `w` and the read bandwidth of the same bytes.
fn gemv(o: &Opts, label: &str, w: &Matrix<'_>) -> String {
    let x = x_rows(1, w.k());
    let mut out = vec![0f32; w.n()];
    let bytes = w.stored_bytes();
    let (t, sp) = time(o.reps.max(3), || {
        run(&mut [Job {
            x: &x,
            m: 1,
            w: *w,
            out: &mut out,
        }])
        .expect("run")
    });
    let (bw, bsp) = read_bandwidth(stored_bytes(w), o.reps.max(3));
    let gbs = bytes as f64 / t / 1e9;
    let kind = match w.storage() {
        Storage::F32Kn(_) => "f32 [k,n]".to_string(),
        Storage::ReleaseInt8 { .. } => "release int8".to_string(),
        Storage::Rows { ty, .. } => format!("{ty}"),
        Storage::Ct { bits, .. } => format!("ct int{bits}"),
    };
    format!(
        "| {label} | {kind} | {:.0} | {:.2} ({}) | {gbs:.1} | {bw:.1} ({}) | {:.2} |",
        bytes as f64 / 1e6,
        t * 1e3,
        pct(sp),
        pct(bsp),
        gbs / bw
    )
}

/// The tied head as f32 `[n, k]` rows: the real embedding of the 1-layer benchmark checkpoint
/// (mapped, 3.2 GB) when present, else skipped.
fn head_f32(o: &Opts) {
    let Some((map, at)) = real_embedding() else {
        println!("| head 131072×6144 [n,k] | F32 | (skipped: the benchmark checkpoint's embedding was not found) |");
        return;
    };
    let b = map.bytes();
    let (k, n) = (6144usize, 131072usize);
    let len = 4 * k * n;
    let w = Matrix::new(
        k,
        n,
        Storage::Rows {
            ty: GgmlType::F32,
            bytes: &b[at..at + len],
        },
    )
    .expect("geometry");
    println!("{}", gemv(o, "head 131072×6144 [n,k] (real)", &w));
    let x = x_rows(8, k);
    let mut out = vec![0f32; 8 * n];
    let (t, sp) = time(o.reps, || matmul_par(&w, &x, 8, &mut out));
    println!(
        "\nhead f32 [n,k], m = 8: {:.0} ms ({}), {:.1} GFLOP/s\n",
        t * 1e3,
        pct(sp),
        2.0 * (8 * k * n) as f64 / t / 1e9
    );
}

fn matmul_par(w: &Matrix<'_>, x: &[f32], m: usize, out: &mut [f32]) {
    run(&mut [Job { x, m, w: *w, out }]).expect("run");
    let _ = matmul;
}

/// The weight bytes of `w` (the scales left out: they are a small fraction).
fn stored_bytes<'a>(w: &Matrix<'a>) -> &'a [u8] {
    match *w.storage() {
        Storage::F32Kn(b) => b,
        Storage::ReleaseInt8 { q, .. } => q,
        Storage::Rows { bytes, .. } => bytes,
        Storage::Ct { packed, .. } => packed,
    }
}

/// Median time (and spread) of `x[m, k] · w` through `run`.
fn product_time(o: &Opts, w: &Matrix<'_>, m: usize) -> (f64, f64) {
    let x = x_rows(m, w.k());
    let mut out = vec![0f32; m * w.n()];
    time(o.reps, || {
        run(&mut [Job {
            x: &x,
            m,
            w: *w,
            out: &mut out,
        }])
        .expect("run")
    })
}

/// The products of one Grok-1 layer (attention projections, the routed experts' w1/v then w2,
/// the output head for the last position), run as the forward pass runs them (one `run` per
/// dependent step, the experts of a step together), summed: a decode step (2 experts, one token),
/// an 8-token prefill (16 token-expert pairs: each of the 8 experts gets 2 rows) and a 64-token
/// prefill (16 rows per expert). Every expert has its own weights (no cache sharing between
/// them). Left out: the router (8 outputs), norms, attention scores (≤ 1 % of the flops here).
fn layer_model(o: &Opts, ceiling: f64) {
    println!("\n## End-to-end layer model: the products of one Grok-1 layer, summed\n");
    println!(
        "| weights | work | ms (spread) | GFLOP | GFLOP/s | × ceiling | llama.cpp s (issue #13) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (d, ff, kv, vocab) = (6144usize, 32768usize, 1024usize, 131072usize);
    for kind in ["Q8_0", "int8"] {
        let attn: Vec<Weights> = [(d, d), (d, kv), (d, kv), (d, d)]
            .into_iter()
            .map(|(k, n)| Weights::make(kind, k, n, 1))
            .collect();
        // Two sets of expert weights, used alternately by the 8 experts: each matrix is
        // 100–200 MB, far larger than the caches, so a set is re-read from memory as a
        // distinct expert's would be (and the benchmark needs 1.3 GB, not 5 GB).
        let sets: Vec<[Weights; 3]> = (0..2)
            .map(|_| {
                [
                    Weights::make(kind, d, ff, 1),
                    Weights::make(kind, d, ff, 1),
                    Weights::make(kind, ff, d, 8),
                ]
            })
            .collect();
        let experts: Vec<&[Weights; 3]> = (0..8).map(|e| &sets[e % 2]).collect();
        let head_map;
        let head_owned;
        let head: Option<Matrix<'_>> = if kind == "Q8_0" {
            head_owned = Weights::make("Q8_0", d, vocab, 1);
            Some(head_owned.matrix())
        } else {
            head_map = real_embedding();
            head_map.as_ref().map(|(map, at)| {
                let len = 4 * d * vocab;
                Matrix::new(
                    d,
                    vocab,
                    Storage::Rows {
                        ty: GgmlType::F32,
                        bytes: &map.bytes()[*at..*at + len],
                    },
                )
                .expect("geometry")
            })
        };
        let head_name = match (kind, head.is_some()) {
            ("Q8_0", _) => "Q8_0 head",
            (_, true) => "f32 head (real embedding)",
            _ => "no head (embedding not found)",
        };
        for (label, tokens, used, per_expert, peer) in [
            ("decode step", 1usize, 2usize, 1usize, 0.14),
            ("prefill 8", 8, 8, 2, 0.22),
            ("prefill 64", 64, 8, 16, 0.31),
        ] {
            let xa = x_rows(tokens, d);
            let xe = x_rows(per_expert, d);
            let xf = x_rows(per_expert, ff);
            let mut outs: Vec<Vec<f32>> = Vec::new();
            let mut flops = 0f64;
            let (t, sp) = time(o.reps, || {
                outs.clear();
                flops = 0.0;
                let mut step = |jobs: Vec<(&[f32], usize, Matrix<'_>)>| {
                    let mut bufs: Vec<Vec<f32>> =
                        jobs.iter().map(|(_, m, w)| vec![0f32; m * w.n()]).collect();
                    let mut js: Vec<Job<'_, '_>> = jobs
                        .iter()
                        .zip(bufs.iter_mut())
                        .map(|(&(x, m, w), out)| Job { x, m, w, out })
                        .collect();
                    flops += js
                        .iter()
                        .map(|j| 2.0 * (j.m * j.w.k() * j.w.n()) as f64)
                        .sum::<f64>();
                    run(&mut js).expect("run");
                    drop(js);
                    outs.append(&mut bufs);
                };
                step(
                    attn[..3]
                        .iter()
                        .map(|w| (&xa[..], tokens, w.matrix()))
                        .collect(),
                );
                step(vec![(&xa[..], tokens, attn[3].matrix())]);
                step(
                    experts[..used]
                        .iter()
                        .flat_map(|e| {
                            [
                                (&xe[..], per_expert, e[0].matrix()),
                                (&xe[..], per_expert, e[1].matrix()),
                            ]
                        })
                        .collect(),
                );
                step(
                    experts[..used]
                        .iter()
                        .map(|e| (&xf[..], per_expert, e[2].matrix()))
                        .collect(),
                );
                if let Some(h) = head {
                    step(vec![(&xa[(tokens - 1) * d..], 1, h)]);
                }
            });
            let g = flops / t / 1e9;
            println!(
                "| {kind} + {head_name} | {label} | {:.1} ({}) | {:.1} | {g:.1} | {:.2} | {peer} ({:.2}×) |",
                t * 1e3,
                pct(sp),
                flops / 1e9,
                g / ceiling,
                t / peer
            );
        }
    }
}

/// The real f32 embedding of the 1-layer benchmark checkpoint (mapped) and the byte offset of
/// its payload, when present.
fn real_embedding() -> Option<(grokit::io::mmap::MappedFile, usize)> {
    let path = std::path::Path::new("/work/bench/grok1-1l/ckpt-0/tensor00000_000");
    let map = grokit::io::mmap::MappedFile::open(path).ok()?;
    let b = map.bytes();
    let at = b[..256.min(b.len())]
        .windows(5)
        .position(|w| w == [b'B', 0, 0, 0, 0xc0])?
        + 5;
    (b.len() >= at + 4 * 6144 * 131072).then_some((map, at))
}
