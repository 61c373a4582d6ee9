//! Golden vectors of output-formats.md §5.6 and the test-quantize-fns metric of §6.2.
//! The hashes come from ggml's own `quantize_row_*_ref` (x86-64, no FMA contraction).

use super::{dequantize_row, quantize_row, GgmlType};
use crate::base::hex;
use sha2::{Digest, Sha256};

/// The §5.6 generator: 4096 values, exact in f32.
pub(crate) fn golden_input() -> Vec<f32> {
    let mut s: u32 = 0x1234_5678;
    let mut x = Vec::with_capacity(4096);
    for i in 0..4096usize {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let f = (s >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0;
        let k = (i / 256) % 8;
        x.push(f * (1.0 / (1u32 << k) as f32));
    }
    for v in &mut x[..32] {
        *v = 0.0;
    }
    for (i, v) in x.iter_mut().enumerate().take(64).skip(32) {
        *v = (i as f32 - 48.0) * 0.25;
    }
    x
}

fn sha(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b))
}

fn rms(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

const GOLDEN: &[(GgmlType, usize, &str, f64)] = &[
    (
        GgmlType::Q4_0,
        2304,
        "2b413429ceddc51ffa501604993bb6a69c6052508d464b9b03596b4b09d72632",
        0.0213808929,
    ),
    (
        GgmlType::Q4_1,
        2560,
        "8045a4675bc5f189d7df91fbc744e36489a318b06f108164a499532d6991dbd0",
        0.0189721405,
    ),
    (
        GgmlType::Q5_0,
        2816,
        "0bc2573bc7b2aac265c4db196ac570c9e0a5ad5328a615345b0cbfa40020cdb7",
        0.00692254042,
    ),
    (
        GgmlType::Q5_1,
        3072,
        "50d70d61d7dc8814bee074678cc98777cb2a18fc49c505e96e007a80b25be3df",
        0.00665442744,
    ),
    (
        GgmlType::Q8_0,
        4352,
        "1710abf52b2ccd1d702b6f8ed20e382e5f6936635bdd13815143fa779cd8bd55",
        0.00116635851,
    ),
    (
        GgmlType::Q2_K,
        1344,
        "9fff912ed3d6664fe3abe90f766ac3d0ce5df7f6a416b9e98c410e3569daa408",
        0.0619399645,
    ),
    (
        GgmlType::Q3_K,
        1760,
        "fec28863b488fe55aabec70338c0442321c4e3d8d71be7e74b74cb51a14a29cb",
        0.0369301318,
    ),
    (
        GgmlType::Q4_K,
        2304,
        "0b7e06d4faf82a1ec5ad50a75ee8cca33f720af75ab25cb6cde9011a3af12320",
        0.0168726577,
    ),
    (
        GgmlType::Q5_K,
        2816,
        "b8e489476643cb0cf650dd3c7abc5e8764290d76afef86ab95bb26ecf47cc046",
        0.00657624317,
    ),
    (
        GgmlType::Q6_K,
        3360,
        "eec593816a655cc2c5032c0c4deab5abf87e47455ad68103128d9f08ead337a2",
        0.00363097547,
    ),
    (
        GgmlType::Q8_K,
        4672,
        "7efe2bfb61aed38526a7224eab0a510869bf3129aa7705269f4c1d746345ce02",
        0.00227275124,
    ),
];

#[test]
fn golden_input_hash() {
    let x = golden_input();
    let mut b = Vec::new();
    crate::base::float::extend_f32_le(&mut b, &x);
    assert_eq!(
        sha(&b),
        "f814c768cf4f1bd73ee6b0f6bef4db7ccae378d8a65970dfa5e87114ff051987"
    );
}

#[test]
fn golden_hashes_and_rms() {
    let x = golden_input();
    let mut failures = Vec::new();
    for &(ty, len, want, want_rms) in GOLDEN {
        let mut out = Vec::new();
        quantize_row(ty, &x, &mut out).unwrap();
        assert_eq!(out.len(), len, "{ty} length");
        let got = sha(&out);
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &out, &mut y).unwrap();
        let r = rms(&x, &y);
        if got != want {
            failures.push(format!("{ty}: sha {got}"));
        }
        if (r - want_rms).abs() > 1e-9 * want_rms.max(1.0) + 1e-10 {
            failures.push(format!("{ty}: rms {r:.11} want {want_rms}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn golden_spot_checks() {
    let x = golden_input();
    let mut q8 = Vec::new();
    quantize_row(GgmlType::Q8_0, &x, &mut q8).unwrap();
    assert_eq!(
        hex::encode(&q8[68..102]),
        "0620668b980749c223bf2f3b21a9177330 0bae cf9aa0f253e5cd709605027ff6fb5b".replace(' ', "")
    );
    let mut q4 = Vec::new();
    quantize_row(GgmlType::Q4_0, &x, &mut q4).unwrap();
    assert_eq!(
        hex::encode(&q4[18..36]),
        "003880919 1a2a2b3b3c4c4d5d5e6e6f7f7f8".replace(' ', "")
    );
    // Block 0 (all zeros) traps.
    assert_eq!(hex::encode(&q4[..18]), format!("0080{}", "88".repeat(16)));
    let mut q5 = Vec::new();
    quantize_row(GgmlType::Q5_0, &x, &mut q5).unwrap();
    assert_eq!(
        hex::encode(&q5[..22]),
        format!("0080ffffffff{}", "00".repeat(16))
    );
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_1] {
        let mut o = Vec::new();
        quantize_row(ty, &x[..32], &mut o).unwrap();
        assert!(o.iter().all(|&b| b == 0), "{ty}");
    }
}

/// test-quantize-fns: x_i = 0.1 + 2cos(i + offset), metric sqrt(Σ err²)/n, per-type thresholds.
#[test]
fn quantize_fns_metric() {
    let expect: &[(GgmlType, f64, f64)] = &[
        (GgmlType::Q4_0, 0.002, 0.001121),
        (GgmlType::Q4_1, 0.002, 0.001144),
        (GgmlType::Q5_0, 0.002, 0.000591),
        (GgmlType::Q5_1, 0.002, 0.000556),
        (GgmlType::Q8_0, 0.002, 0.000074),
        (GgmlType::Q2_K, 0.0075, 0.004672),
        (GgmlType::Q3_K, 0.0040, 0.002510),
        (GgmlType::Q4_K, 0.002, 0.000982),
        (GgmlType::Q5_K, 0.002, 0.000531),
        (GgmlType::Q6_K, 0.002, 0.000261),
        (GgmlType::Q8_K, 0.002, 0.000075),
    ];
    for offset in [0.0f32, 1.0] {
        let x: Vec<f32> = (0..4096)
            .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
            .collect();
        for &(ty, thr, measured) in expect {
            let mut q = Vec::new();
            quantize_row(ty, &x, &mut q).unwrap();
            let mut y = vec![0f32; x.len()];
            dequantize_row(ty, &q, &mut y).unwrap();
            let s: f64 = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| ((a - b) as f64).powi(2))
                .sum();
            let err = s.sqrt() / x.len() as f64;
            assert!(err < thr, "{ty}: error {err} >= {thr}");
            if offset == 0.0 {
                // Same encoder as the measured reference: within rounding of the printed value.
                assert!(
                    (err - measured).abs() < 2e-6,
                    "{ty}: error {err:.6} vs ggml {measured}"
                );
            }
        }
    }
}

#[test]
fn plain_types_roundtrip() {
    let x = golden_input();
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let mut b = Vec::new();
        quantize_row(ty, &x, &mut b).unwrap();
        assert_eq!(b.len() as u64, ty.row_bytes(4096).unwrap());
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &b, &mut y).unwrap();
        let r = rms(&x, &y);
        assert!(r < 2e-3, "{ty} {r}");
        if ty == GgmlType::F32 {
            assert_eq!(x, y);
        }
    }
}

#[test]
fn length_checks() {
    use super::QuantError;
    let mut v = Vec::new();
    assert!(matches!(
        quantize_row(GgmlType::Q4_K, &[0.0; 32], &mut v),
        Err(QuantError::NotBlockAligned { .. })
    ));
    assert!(v.is_empty());
    let mut y = [0f32; 32];
    assert!(matches!(
        dequantize_row(GgmlType::Q8_0, &[0; 33], &mut y),
        Err(QuantError::LengthMismatch { .. })
    ));
    assert!(matches!(
        dequantize_row(GgmlType::I8, &[0; 32], &mut y),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        quantize_row(GgmlType::I32, &[0.0; 32], &mut v),
        Err(QuantError::Unsupported { .. })
    ));
}

#[test]
fn plain_conversions_match_half() {
    use crate::base::float::{f32_to_bf16_bits, f32_to_f16_bits};
    let mut s: u32 = 99;
    let mut xs: Vec<f32> = (0..200_000)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(s)
        })
        .filter(|v| !v.is_nan())
        .collect();
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        65504.0,
        65520.0,
        1e-8,
        -6.0e-8,
        1.0 + 1.0 / 256.0,
    ]);
    for (ty, f) in [
        (GgmlType::BF16, f32_to_bf16_bits as fn(f32) -> u16),
        (GgmlType::F16, f32_to_f16_bits),
    ] {
        let mut b = Vec::new();
        quantize_row(ty, &xs, &mut b).unwrap();
        for (i, &v) in xs.iter().enumerate() {
            assert_eq!(
                u16::from_le_bytes([b[2 * i], b[2 * i + 1]]),
                f(v),
                "{ty} {v:e}"
            );
        }
    }
    let mut b = Vec::new();
    quantize_row(GgmlType::BF16, &[f32::NAN, -f32::NAN], &mut b).unwrap();
    assert_eq!(b, [0xc0, 0x7f, 0xc0, 0xff]);
}
