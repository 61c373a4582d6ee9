//! PLACEHOLDER f32 FMA ceiling for `scripts/bench_forward.sh` (until the kernel benchmark
//! that `kernel` is writing provides it; the lead switches the script to that one).
//!
//! ```text
//! fma_peak [THREADS] [SECONDS]    # prints: {"threads": T, "gflops": G}
//! ```
//! Each thread runs ten independent 8-lane fused multiply-add chains (enough to cover the FMA
//! latency on two FMA ports) for the given time; the result is the total f32 FLOP/s (2 per FMA).
//! On x86-64 with AVX2+FMA (detected at run time) the chains compile to `vfmadd` on ymm
//! registers; elsewhere the portable loop runs, and the number it prints is what that build can
//! do, not the hardware's peak.
use std::time::{Duration, Instant};

const CHAINS: usize = 10;
const ITERS: usize = 1 << 16;

#[inline(always)]
fn block(acc: &mut [[f32; 8]; CHAINS], x: f32, y: f32) {
    for _ in 0..ITERS {
        for a in acc.iter_mut() {
            for v in a.iter_mut() {
                *v = v.mul_add(x, y);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_fma(acc: &mut [[f32; 8]; CHAINS], x: f32, y: f32) {
    block(acc, x, y)
}

fn run_block(acc: &mut [[f32; 8]; CHAINS], x: f32, y: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above), the only requirement of
        // calling a function compiled with those target features.
        #[allow(unsafe_code)]
        unsafe {
            block_fma(acc, x, y)
        };
        return;
    }
    block(acc, x, y)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let flops: f64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut acc = [[1.0f32 + t as f32 * 1e-3; 8]; CHAINS];
                    let (x, y) = (
                        std::hint::black_box(0.999_999f32),
                        std::hint::black_box(1e-6f32),
                    );
                    let start = Instant::now();
                    let mut blocks = 0u64;
                    while start.elapsed() < Duration::from_secs_f64(secs) {
                        run_block(&mut acc, x, y);
                        blocks += 1;
                    }
                    std::hint::black_box(&acc);
                    let el = start.elapsed().as_secs_f64();
                    (blocks as f64 * (ITERS * CHAINS * 8 * 2) as f64) / el
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    println!(
        "{{\"threads\": {threads}, \"gflops\": {:.1}, \"source\": \"placeholder tests/tools/fma_peak.rs\"}}",
        flops / 1e9
    );
}
