//! Integration tests of the public quant API: block independence, row-parallel determinism,
//! policy + codec composition, and error kinds.

use grokit::quant::ct::{ct_dequantize_row, ct_quantize_row};
use grokit::quant::grok::q8_0_row_from_int8;
use grokit::quant::policy::{ModelInfo, Policy, TensorClass};
use grokit::quant::{dequantize_row, quantize_row, GgmlType, QuantError};
use rayon::prelude::*;

fn input(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / 8_388_608.0 - 1.0) * if i % 512 < 256 { 0.03 } else { 1.7 }
        })
        .collect()
}

const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

#[test]
fn rows_are_independent_and_parallel_is_deterministic() {
    let row = 1024;
    let x = input(row * 16, 7);
    for ty in TYPES {
        let mut whole = Vec::new();
        quantize_row(ty, &x, &mut whole).unwrap();
        assert_eq!(
            whole.len() as u64,
            ty.row_bytes(x.len() as u64).unwrap(),
            "{ty}"
        );
        let parts: Vec<Vec<u8>> = x
            .par_chunks(row)
            .map(|r| {
                let mut o = Vec::new();
                quantize_row(ty, r, &mut o).map(|_| o)
            })
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parts.concat(), whole, "{ty}");
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &whole, &mut y).unwrap();
        let rms = (x
            .iter()
            .zip(&y)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / x.len() as f64)
            .sqrt();
        assert!(rms < 0.2, "{ty} rms {rms}");
    }
}

#[test]
fn appends_to_existing_output() {
    let x = input(256, 3);
    let mut out = vec![0xAAu8; 5];
    quantize_row(GgmlType::Q4_K, &x, &mut out).unwrap();
    assert_eq!(out.len(), 5 + 144);
    assert_eq!(&out[..5], &[0xAA; 5]);
}

#[test]
fn policy_drives_codec() {
    let p = Policy::parse("q4_k_m").unwrap();
    let x = input(6144, 11);
    for (class, layer) in [
        (TensorClass::AttnK, Some(0)),
        (TensorClass::FfnDownExps, Some(9)),
        (TensorClass::TokenEmbd, None),
    ] {
        let c = p.choose(class, layer, &ModelInfo::grok(64), x.len() as u64);
        assert!(c.fallback_reason.is_none());
        let mut o = Vec::new();
        quantize_row(c.ty, &x, &mut o).unwrap();
        assert_eq!(o.len() as u64, c.ty.row_bytes(6144).unwrap());
    }
    // A row that does not fit the K-quant block falls back and still encodes.
    let c = p.choose(
        TensorClass::FfnUpExps,
        Some(0),
        &ModelInfo::grok(64),
        6144 + 32,
    );
    assert_eq!(c.ty, GgmlType::Q5_0);
    let mut o = Vec::new();
    quantize_row(c.ty, &input(6144 + 32, 1), &mut o).unwrap();
}

#[test]
fn grok_and_ct_paths() {
    let q: Vec<i8> = (0..6144).map(|i| ((i * 31) % 255 - 127) as i8).collect();
    let scale = grokit::base::float::f32_to_bf16_bits(0.0123);
    let mut out = Vec::new();
    let st = q8_0_row_from_int8(&q, &[scale], 6144, &mut out).unwrap();
    assert_eq!((st.exact_blocks, st.fallback_blocks), (192, 0));
    let mut y = vec![0f32; 6144];
    dequantize_row(GgmlType::Q8_0, &out, &mut y).unwrap();
    let s = grokit::base::float::bf16_bits_to_f32(scale);
    assert!(y.iter().zip(&q).all(|(&a, &b)| a == f32::from(b) * s));

    let x = input(6144, 5);
    let (mut p, mut sc) = (Vec::new(), Vec::new());
    ct_quantize_row(4, 128, &x, &mut p, &mut sc).unwrap();
    assert_eq!((p.len(), sc.len()), (768, 48));
    ct_dequantize_row(4, 128, &p, &sc, &mut y).unwrap();
    for (k, (a, b)) in x.iter().zip(&y).enumerate() {
        assert!(
            (a - b).abs() <= sc[k / 128] * 0.53 + 1e-7,
            "{k}: {a} {b} scale {}",
            sc[k / 128]
        );
    }
}

#[test]
fn error_kinds() {
    let mut o = Vec::new();
    let e = quantize_row(GgmlType::Q6_K, &[0.0; 300], &mut o).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::NotBlockAligned {
                len: 300,
                block: 256,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Q6_K"));
    let mut y = [0f32; 256];
    let e = dequantize_row(GgmlType::Q6_K, &[0; 209], &mut y).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::LengthMismatch {
                expected: 210,
                got: 209,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn hostile_values_do_not_panic() {
    let mut x = input(512, 9);
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    x[301] = 1e38;
    x[302] = -1e-45;
    // A block of tiny subnormals: d = amax/127 underflows and 1/d overflows to inf.
    for v in &mut x[64..96] {
        *v = 1e-40;
    }
    for ty in TYPES {
        let mut o = Vec::new();
        quantize_row(ty, &x, &mut o).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &o, &mut y).unwrap();
    }
}
