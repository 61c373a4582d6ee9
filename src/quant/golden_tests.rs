//! Golden vectors: SHA-256 of the bytes ggml itself writes for a fixed input, and the
//! test-quantize-fns error metric (docs/formats/gguf-output.md, docs/formats/iquants.md).
//!
//! `GOLDEN` (the reference encoders, no importance matrix) came with the original port from
//! ggml's `quantize_row_*_ref`. `GOLDEN_ROWS` covers the i-quants and every type's
//! importance-weighted encoder: made with tests/interop/ggml_quant_ref.c (`quant TYPE 1024
//! x.f32 out.bin [w.f32]`, i.e. `ggml_quantize_chunk` of llama.cpp 0.3.36's libggml-base, x86-64
//! without FMA) on `golden_input()` as four rows of 1024 and `golden_weights()`, and the RMS of
//! ggml's own dequantization of those bytes. tests/interop/iquant_ggml.py re-derives them.

use super::{dequantize_row, quantize_row, quantize_row_weighted, GgmlType};
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

/// Importance weights for the weighted golden vectors: 1024 values `4u²` (u uniform in [0, 1)
/// from an LCG), every 37th (from 5) zero, as a real matrix has columns no token activated.
pub(crate) fn golden_weights() -> Vec<f32> {
    let mut s: u32 = 0x9e37_79b9;
    (0..1024usize)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let f = (s >> 8) as f32 * (1.0 / 16_777_216.0);
            if i % 37 == 5 {
                0.0
            } else {
                4.0 * f * f
            }
        })
        .collect()
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

/// (type, weighted, bytes, SHA-256, RMS of ggml's dequantization) for `golden_input()` as four
/// rows of 1024, with `golden_weights()` when weighted.
const GOLDEN_ROWS: &[(GgmlType, bool, usize, &str, f64)] = &[
    (
        GgmlType::Q4_0,
        true,
        2304,
        "2039d8ebbbaae42a1c67c0e13e8641bc8bd1ec35f5dfe3c81ffe49c4b25f35d6",
        0.019143191386,
    ),
    (
        GgmlType::Q4_1,
        true,
        2560,
        "b2d60701c30db0be7a9ea4de9a29fa991e444f7d76552ade10d2feafe677eff2",
        0.017347553062,
    ),
    (
        GgmlType::Q5_0,
        true,
        2816,
        "f82106cf272d87b0a0c4e908569c0d3d299c3a15dbf545c36a1a395395dc402c",
        0.0063204884825,
    ),
    (
        GgmlType::Q5_1,
        true,
        3072,
        "9b65cbd1afe7076eed98a93e45eab2d8969af6766c059e0b58e741a43d11afcf",
        0.0060234742321,
    ),
    (
        GgmlType::Q2_K,
        true,
        1344,
        "222a44a729d06e4fad017550e6acb719190c4de41b4c3c922be8508ce2d3255c",
        0.062650583373,
    ),
    (
        GgmlType::Q3_K,
        true,
        1760,
        "605d33b50ffe7c9599af5d617f59de8df44e8678061e93e5b6b69a3f7e2fe25c",
        0.036196745565,
    ),
    (
        GgmlType::Q4_K,
        true,
        2304,
        "a49e687f46a9f74c42a2ffb5091032deecea4c25b461818fdf2b52941c288c8c",
        0.017507143701,
    ),
    (
        GgmlType::Q5_K,
        true,
        2816,
        "9aa8edeb919d74c5e964a89c95c45e120f122c44a1e300eb0bf5968011c4803d",
        0.0066080556674,
    ),
    (
        GgmlType::Q6_K,
        true,
        3360,
        "fa79b2d8aeed44a7e5cbf9802e70f03971ada6bace661e73dba03c37eb6e97d4",
        0.0036869437425,
    ),
    (
        GgmlType::IQ4_NL,
        false,
        2304,
        "275f8b7ce85fac8492f00f9782ba092073187485f0ea990c9034e98e9316379d",
        0.019690671396,
    ),
    (
        GgmlType::IQ4_NL,
        true,
        2304,
        "d88de5ed19c304daa7c042da4337d1325b7b10617c03da8427a53dee45d4d6b1",
        0.020227120315,
    ),
    (
        GgmlType::IQ4_XS,
        false,
        2176,
        "8be46ed629aab4ec1dc8b2b1702f420a87f8d1b5c448167b783c9be22a5c6d71",
        0.020134321621,
    ),
    (
        GgmlType::IQ4_XS,
        true,
        2176,
        "212baaf32193dd04993e84081648a56738d7e3fc5fc89179333187fdc4f4d63f",
        0.020867833187,
    ),
    (
        GgmlType::IQ3_XXS,
        false,
        1568,
        "2cf3fbe673a46008fb87487582ce1a518cd328fdcfd089fd177ef6fbabc360be",
        0.054752740417,
    ),
    (
        GgmlType::IQ3_XXS,
        true,
        1568,
        "5389116767fdb0d0b6b036e6394ada93940e0d1e1b984a31f53ca27d97c89272",
        0.074358160591,
    ),
    // 0.36: the all-zero first block shifts ggml's IQ3_S index/sign writes (see iq3.rs).
    (
        GgmlType::IQ3_S,
        false,
        1760,
        "9ba56ea4ed37049367748ceec8ad80541eedd324dd3398cf936345cd4ab5f818",
        0.36181182577,
    ),
    (
        GgmlType::IQ3_S,
        true,
        1760,
        "1bcfb3776ddba61d64a2416e24ed52dc167eacda1f1f401a1f4340371f7f398a",
        0.34250372244,
    ),
    (
        GgmlType::IQ2_XXS,
        true,
        1056,
        "0c1d3e90509e3372eeee5dd6b906baec951aa5cd5d45540cd02cb72d48caf790",
        0.12735756088,
    ),
    (
        GgmlType::IQ2_XS,
        true,
        1184,
        "b18d5c0ae7df8349379a6e6451ab4698c2d70819850ae14c995dbb31ab9cf668",
        0.10592350668,
    ),
    (
        GgmlType::IQ2_S,
        false,
        1312,
        "a4ab18467479f421ed9a7df73f3a32e54199e9eff3318427e9bf838cf582e289",
        0.073049648404,
    ),
    (
        GgmlType::IQ2_S,
        true,
        1312,
        "651debc60c90976bd3566b7b49371248ff187b6f551be301c414458a36cae7dc",
        0.079547033484,
    ),
];

#[test]
fn golden_rows_weighted_and_iquants() {
    let x = golden_input();
    let w = golden_weights();
    let mut b = Vec::new();
    crate::base::float::extend_f32_le(&mut b, &w);
    assert_eq!(
        sha(&b),
        "6ac83be1f8febe7b8aaa2e7ea1844bbd5fc5e87b268243f4eb1615843b798722"
    );
    let mut failures = Vec::new();
    for &(ty, weighted, len, want, want_rms) in GOLDEN_ROWS {
        let mut out = Vec::new();
        for row in x.chunks_exact(1024) {
            quantize_row_weighted(ty, row, weighted.then_some(&w[..]), &mut out).unwrap();
        }
        assert_eq!(out.len(), len, "{ty} length");
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &out, &mut y).unwrap();
        let r = rms(&x, &y);
        if sha(&out) != want {
            failures.push(format!("{ty} weighted={weighted}: sha {}", sha(&out)));
        }
        if (r - want_rms).abs() > 1e-9 * want_rms.max(1.0) + 1e-10 {
            failures.push(format!(
                "{ty} weighted={weighted}: rms {r:.11} want {want_rms}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every codebook entry, through the SHA-256 of its little-endian bytes as ggml's arrays hold
/// them (tests/interop/iquant_ggml.py compares them entry by entry with ggml's library).
#[test]
fn codebooks_match_ggml() {
    use super::iq_tables as t;
    let h64 = |v: &[u64]| sha(&v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>());
    let h32 = |v: &[u32]| sha(&v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>());
    assert_eq!(
        sha(&t::KVALUES_IQ4NL.map(|v| v as u8)),
        "61aa47540aa024b5d6ddaa839b84ffe59f3d5a349af5c6c7ffcb5e0474b46163"
    );
    assert_eq!(
        sha(&t::KSIGNS_IQ2XS),
        "a76742a603f8beca5212ecce0f1f02f11a4887fd2f7c8b15aca0ea3eb3380c31"
    );
    assert_eq!(
        h64(&t::IQ2XXS_GRID),
        "05826b5d3e472a3a78f196be62ac78acf81df0f909626e12ab9fa2a5d490dd54"
    );
    assert_eq!(
        h64(&t::IQ2XS_GRID),
        "06e47aaca60b4dc1d9b5a3f34540437058a6b142b4d7a59d5ded769b4d1bf1de"
    );
    assert_eq!(
        h64(&t::IQ2S_GRID),
        "e1aa1473412b0552c2174c30ef22ab4073f6a181b85a17056e8249bd2932fd88"
    );
    assert_eq!(
        h32(&t::IQ3XXS_GRID),
        "46e35f5a997efdee6c99ce57854c8a0d4f0ff8ca57e5e8a60c0793ea580acf5d"
    );
    assert_eq!(
        h32(&t::IQ3S_GRID),
        "bd1af4945a1717c65610b0284e4628b9a1ba3b306fae3a06f6e5f597356e349f"
    );
    // ksigns: 7 sign bits plus an 8th that makes the count of set bits even
    for (i, &s) in t::KSIGNS_IQ2XS.iter().enumerate() {
        assert_eq!(usize::from(s & 127), i);
        assert_eq!(s.count_ones() % 2, 0);
    }
}

#[test]
fn iq2_xxs_and_xs_need_weights() {
    let x = golden_input();
    for ty in [GgmlType::IQ2_XXS, GgmlType::IQ2_XS] {
        let mut o = Vec::new();
        assert!(matches!(
            quantize_row(ty, &x[..256], &mut o),
            Err(super::QuantError::NeedsWeights { .. })
        ));
    }
    let mut o = Vec::new();
    assert!(matches!(
        quantize_row_weighted(GgmlType::Q4_K, &x[..256], Some(&[1.0; 255]), &mut o),
        Err(super::QuantError::LengthMismatch { .. })
    ));
}

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
