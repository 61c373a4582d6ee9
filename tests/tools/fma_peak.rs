//! The f32 FMA ceiling of this machine, as `scripts/bench_forward.sh` and
//! `scripts/bench_perplexity.sh` report it: `grokit::kernel::fma_ceiling_gflops`, the same
//! register-resident FMA chains (with the instruction set the kernels use) that
//! `cargo bench --bench kernel` measures, on a rayon pool of THREADS threads.
//!
//! ```text
//! fma_peak [THREADS] [SECONDS]    # prints: {"threads": T, "gflops": G, "isa": "..."}
//! ```

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fma_peak: cannot start {threads} threads: {e}");
            std::process::exit(2);
        }
    };
    let gflops = pool.install(|| grokit::kernel::fma_ceiling_gflops(secs));
    println!(
        "{{\"threads\": {threads}, \"gflops\": {gflops:.1}, \"isa\": \"{:?}\"}}",
        grokit::kernel::isa()
    );
}
