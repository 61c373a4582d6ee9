//! Drive grokit's ggml codecs from the command line (used by tests/interop/quant_gguf_py.py).
//!
//! ```text
//! quant_dump TYPE IN.f32 OUT.bin            quantize little-endian f32 to TYPE (one row)
//! quant_dump --dequant TYPE IN.bin OUT.f32  decode TYPE bytes to little-endian f32
//! quant_dump --bench [MELEMS]               single-thread encode speed per type
//! quant_dump --rows N TYPE IN.f32 OUT.bin [QW.f32]
//!                                           quantize rows of N with importance weights (N per
//!                                           matrix: IN's rows split evenly among them), as
//!                                           tests/interop/ggml_quant_ref.c `quant` does
//! quant_dump --tables DIR                   write grokit's i-quant codebooks and lattice
//!                                           indices as raw little-endian DIR/NAME.bin
//! ```

use grokit::quant::{dequantize_row, quantize_row, GgmlType};
use std::error::Error;
use std::time::Instant;

fn ty(s: &str) -> Result<GgmlType, Box<dyn Error>> {
    GgmlType::from_name(s).ok_or_else(|| format!("unknown type {s}").into())
}

fn bench(melems: f64) -> Result<(), Box<dyn Error>> {
    let n = ((melems * 1e6) as usize / 256).max(1) * 256;
    let mut s: u32 = 0x1234_5678;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / 8_388_608.0 - 1.0) * 0.02
        })
        .collect();
    let types = [
        GgmlType::BF16,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
    ];
    println!("{:<7} {:>12} {:>12}", "type", "enc Melem/s", "dec Melem/s");
    // Touch the buffers first so page faults are not timed; best of 3 (the machine is shared).
    let mut out = vec![1u8; n * 4];
    let mut y = vec![1f32; n];
    for t in types {
        let (mut enc, mut dec) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            out.clear();
            let t0 = Instant::now();
            quantize_row(t, &x, &mut out)?;
            enc = enc.min(t0.elapsed().as_secs_f64());
            let t1 = Instant::now();
            dequantize_row(t, &out, &mut y)?;
            dec = dec.min(t1.elapsed().as_secs_f64());
        }
        println!(
            "{:<7} {:>12.1} {:>12.1}",
            t.to_string(),
            n as f64 / enc / 1e6,
            n as f64 / dec / 1e6
        );
    }
    // With importance weights (rows of 4096, one weight per column), as with --imatrix.
    let row = 4096.min(n);
    let w: Vec<f32> = (0..row)
        .map(|i| 0.1 + ((i * 7919) % 1000) as f32 * 0.002)
        .collect();
    println!("{:<7} {:>12}", "type", "enc+imatrix Melem/s");
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
    ] {
        let mut enc = f64::MAX;
        for _ in 0..3 {
            out.clear();
            let t0 = Instant::now();
            for r in x.chunks_exact(row) {
                grokit::quant::quantize_row_weighted(t, r, Some(&w), &mut out)?;
            }
            enc = enc.min(t0.elapsed().as_secs_f64());
        }
        println!("{:<7} {:>12.1}", t.to_string(), n as f64 / enc / 1e6);
    }
    // The lossless int8 -> Q8_0 transcode (per-row bf16 scale, 6144-wide rows).
    let q: Vec<i8> = x.iter().map(|&v| (v * 6000.0) as i8).collect();
    let scales = vec![grokit::base::float::f32_to_bf16_bits(0.0123); n.div_ceil(6144)];
    let mut best = f64::MAX;
    for _ in 0..3 {
        out.clear();
        let t0 = Instant::now();
        for (r, row) in q.chunks(6144).enumerate() {
            grokit::quant::grok::q8_0_row_from_int8(row, &scales[r..r + 1], 6144, &mut out)?;
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "{:<6} {:>12.1} {:>12}",
        "i8>Q8_0",
        n as f64 / best / 1e6,
        "-"
    );
    Ok(())
}

fn read_f32(path: &str) -> Result<Vec<f32>, Box<dyn Error>> {
    let b = std::fs::read(path)?;
    if b.len() % 4 != 0 {
        return Err(format!("{path}: not a whole number of f32").into());
    }
    let mut x = vec![0f32; b.len() / 4];
    grokit::base::float::decode_f32_le(&b, &mut x);
    Ok(x)
}

fn rows(n: &str, t: &str, inp: &str, outp: &str, qw: Option<&str>) -> Result<(), Box<dyn Error>> {
    let n: usize = n.parse()?;
    let t = ty(t)?;
    let x = read_f32(inp)?;
    let w = qw.map(read_f32).transpose()?;
    if n == 0 || x.len() % n != 0 {
        return Err("input is not whole rows".into());
    }
    let nrows = x.len() / n;
    let n_mat = w.as_ref().map_or(1, |w| w.len() / n);
    if n_mat == 0 || nrows % n_mat != 0 || w.as_ref().is_some_and(|w| w.len() % n != 0) {
        return Err("weights must be N floats per matrix".into());
    }
    let mut o = Vec::new();
    for (r, row) in x.chunks_exact(n).enumerate() {
        let m = r / (nrows / n_mat);
        let qw = w.as_ref().map(|w| &w[m * n..(m + 1) * n]);
        grokit::quant::quantize_row_weighted(t, row, qw, &mut o)?;
    }
    std::fs::write(outp, o)?;
    Ok(())
}

fn tables(dir: &str) -> Result<(), Box<dyn Error>> {
    use grokit::quant::iq_tables as t;
    let d = std::path::Path::new(dir);
    let bytes64 = |v: &[u64]| v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>();
    let bytes32 = |v: &[u32]| v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(
        d.join("kvalues_iq4nl.bin"),
        t::KVALUES_IQ4NL.map(|v| v as u8),
    )?;
    std::fs::write(d.join("ksigns_iq2xs.bin"), t::KSIGNS_IQ2XS)?;
    std::fs::write(d.join("iq2xxs_grid.bin"), bytes64(&t::IQ2XXS_GRID))?;
    std::fs::write(d.join("iq2xs_grid.bin"), bytes64(&t::IQ2XS_GRID))?;
    std::fs::write(d.join("iq2s_grid.bin"), bytes64(&t::IQ2S_GRID))?;
    std::fs::write(d.join("iq3xxs_grid.bin"), bytes32(&t::IQ3XXS_GRID))?;
    std::fs::write(d.join("iq3s_grid.bin"), bytes32(&t::IQ3S_GRID))?;
    for name in ["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s"] {
        let k = grokit::quant::iq_grid::kgrid_indices(name).ok_or("no lattice")?;
        let b: Vec<u8> = k.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(d.join(format!("kgrid_{name}.bin")), b)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--bench"] => bench(4.0),
        ["--bench", m] => bench(m.parse()?),
        ["--rows", n, t, inp, outp] => rows(n, t, inp, outp, None),
        ["--rows", n, t, inp, outp, qw] => rows(n, t, inp, outp, Some(qw)),
        ["--tables", dir] => tables(dir),
        ["--dequant", t, inp, outp] => {
            let t = ty(t)?;
            let b = std::fs::read(inp)?;
            let blocks = b.len() as u64 / t.block_bytes();
            let mut y = vec![0f32; (blocks * t.block_elems()) as usize];
            dequantize_row(t, &b, &mut y)?;
            let mut o = Vec::with_capacity(y.len() * 4);
            grokit::base::float::extend_f32_le(&mut o, &y);
            std::fs::write(outp, o)?;
            Ok(())
        }
        [t, inp, outp] => {
            let t = ty(t)?;
            let b = std::fs::read(inp)?;
            if b.len() % 4 != 0 {
                return Err("input is not a whole number of f32".into());
            }
            let mut x = vec![0f32; b.len() / 4];
            grokit::base::float::decode_f32_le(&b, &mut x);
            let mut o = Vec::new();
            quantize_row(t, &x, &mut o)?;
            std::fs::write(outp, o)?;
            Ok(())
        }
        _ => Err("usage: quant_dump TYPE IN.f32 OUT.bin | --dequant TYPE IN.bin OUT.f32 | --bench [MELEMS] | --rows N TYPE IN.f32 OUT.bin [QW.f32] | --tables DIR".into()),
    }
}
