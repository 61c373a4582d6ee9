//! Drive grokit's ggml codecs from the command line (used by tests/interop/quant_gguf_py.py).
//!
//! ```text
//! quant_dump TYPE IN.f32 OUT.bin            quantize little-endian f32 to TYPE (one row)
//! quant_dump --dequant TYPE IN.bin OUT.f32  decode TYPE bytes to little-endian f32
//! quant_dump --bench [MELEMS]               single-thread encode speed per type
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
    ];
    println!("{:<6} {:>12} {:>12}", "type", "enc Melem/s", "dec Melem/s");
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
            "{:<6} {:>12.1} {:>12.1}",
            t.to_string(),
            n as f64 / enc / 1e6,
            n as f64 / dec / 1e6
        );
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

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--bench"] => bench(4.0),
        ["--bench", m] => bench(m.parse()?),
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
        _ => Err("usage: quant_dump TYPE IN.f32 OUT.bin | --dequant TYPE IN.bin OUT.f32 | --bench [MELEMS]".into()),
    }
}
