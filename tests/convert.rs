//! `grokit convert` to GGUF end to end: every output read back with grokit's readers and
//! compared with the release's exact dequantization (safetensors: `convert_st`; how runs behave
//! — determinism, splits, workers, resume, kills, refusals: `convert_runs`).
//! Expected names and shapes are written out here by hand (not taken from the role table), so
//! a wrong entry in the table fails these tests.

use crate::util::{fixture, grokit, run, tiny12};
use grokit::gguf::{ArrayValue, GgufFile, Value};
use grokit::model::Role;
use grokit::quant::{dequantize_row, GgmlType};
use grokit::source::grok::{Checkpoint, OpenOptions};
use std::path::{Path, PathBuf};

/// A small checkpoint whose scale blocks are multiples of 32 rows, like Grok-1's (O: 256/8,
/// down: 512/8), so every int8 block maps losslessly into Q8_0 and compressed-tensors groups of
/// 128. Synthesized once per test run (it departs from the FFN width rule, which is a warning).
pub fn lossless_geometry() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let d = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("ck");
        let o = grokit()
            .args([
                "synth",
                "-o",
                out.to_str().unwrap(),
                "--d-model",
                "256",
                "--q-heads",
                "4",
                "--kv-heads",
                "2",
                "--head-dim",
                "64",
                "--ffn",
                "512",
                "--vocab",
                "512",
                "-q",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::copy(
            fixture().join("tokenizer.model"),
            out.join("tokenizer.model"),
        )
        .unwrap();
        d
    });
    d.path().join("ck")
}

/// `grokit convert CKPT ARGS... -q` that must succeed; returns stderr.
pub fn convert<S: AsRef<str> + std::fmt::Debug>(ck: &Path, args: &[S]) -> String {
    let mut a = vec!["convert", ck.to_str().unwrap()];
    a.extend(args.iter().map(AsRef::as_ref));
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "convert {args:?} failed:\n{out}\n{err}");
    err
}

pub fn open(ck: &Path) -> Checkpoint {
    Checkpoint::open(ck, &OpenOptions::default()).unwrap()
}

/// Exact values of a release parameter (one expert of stacked ones) in OUTPUT orientation:
/// matrices and the router transposed to [out, in]; embedding and norms as stored.
/// Returns (rows, cols, values).
pub fn exact(
    ck: &Checkpoint,
    role: Role,
    layer: Option<u64>,
    expert: Option<usize>,
) -> (usize, usize, Vec<f32>) {
    let t = ck
        .tensor(role, layer)
        .unwrap_or_else(|| panic!("{role:?} {layer:?} missing"));
    let (dims, v) = ck.read_f32(t, expert).unwrap();
    match dims[..] {
        [n] => (1, n, v),
        [r, c] if role == Role::Embed => (r, c, v),
        [r, c] => {
            let mut o = vec![0f32; r * c];
            for i in 0..r {
                for j in 0..c {
                    o[j * r + i] = v[i * c + j];
                }
            }
            (c, r, o)
        }
        _ => panic!("unexpected dims {dims:?}"),
    }
}

struct Geo {
    d: u64,
    f: u64,
    e: u64,
    v: u64,
    q: u64,
    kv: u64,
    layers: u64,
}

fn geo(ck: &Checkpoint) -> Geo {
    let c = &ck.config;
    Geo {
        d: c.emb_size,
        f: c.ffn_size,
        e: c.num_experts,
        v: c.vocab_size,
        q: c.num_q_heads * c.key_size,
        kv: c.num_kv_heads * c.key_size,
        layers: c.num_layers,
    }
}

/// llama.cpp's `grok` tensors in file order: (name, ne, role, layer), written by hand.
fn gguf_expected(g: &Geo) -> Vec<(String, Vec<u64>, Role, Option<u64>)> {
    let mut v = vec![(
        "token_embd.weight".to_string(),
        vec![g.d, g.v],
        Role::Embed,
        None,
    )];
    for l in 0..g.layers {
        let per: [(&str, Vec<u64>, Role); 12] = [
            ("attn_norm", vec![g.d], Role::PreAttnNorm),
            ("attn_q", vec![g.d, g.q], Role::AttnQ),
            ("attn_k", vec![g.d, g.kv], Role::AttnK),
            ("attn_v", vec![g.d, g.kv], Role::AttnV),
            ("attn_output", vec![g.q, g.d], Role::AttnO),
            ("attn_output_norm", vec![g.d], Role::PostAttnNorm),
            ("ffn_norm", vec![g.d], Role::PreMoeNorm),
            ("ffn_gate_inp", vec![g.d, g.e], Role::Router),
            ("ffn_gate_exps", vec![g.d, g.f, g.e], Role::MoeGate),
            ("ffn_up_exps", vec![g.d, g.f, g.e], Role::MoeUp),
            ("ffn_down_exps", vec![g.f, g.d, g.e], Role::MoeDown),
            ("layer_output_norm", vec![g.d], Role::PostMoeNorm),
        ];
        for (n, ne, r) in per {
            v.push((format!("blk.{l}.{n}.weight"), ne, r, Some(l)));
        }
    }
    v.push((
        "output_norm.weight".into(),
        vec![g.d],
        Role::FinalNorm,
        None,
    ));
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Bit-exact (f32, lossless q8_0).
    Exact,
    Bf16,
    F16,
    /// Quantized from exact values: Q8_0 error bound for q8_0, RMS bound otherwise.
    Lossy,
}

/// Decode every tensor of `set` and compare with the release. Returns the number of values
/// compared.
fn check_gguf_values(
    ck: &Checkpoint,
    get: &dyn Fn(&str) -> (GgmlType, Vec<u8>),
    uniform: Option<GgmlType>,
) -> usize {
    let g = geo(ck);
    let mut n = 0;
    for (name, _, role, layer) in gguf_expected(&g) {
        let (ty, data) = get(&name);
        let experts: Vec<Option<usize>> =
            if matches!(role, Role::MoeGate | Role::MoeUp | Role::MoeDown) {
                (0..g.e as usize).map(Some).collect()
            } else {
                vec![None]
            };
        let mut off = 0usize;
        let (mut sse, mut ssx) = (0f64, 0f64);
        for e in experts {
            let (rows, cols, want) = exact(ck, role, layer, e);
            let rb = ty.row_bytes(cols as u64).unwrap() as usize;
            let mut got = vec![0f32; cols];
            for r in 0..rows {
                dequantize_row(ty, &data[off..off + rb], &mut got).unwrap();
                off += rb;
                let w = &want[r * cols..(r + 1) * cols];
                let int8_src = !matches!(role, Role::Embed | Role::Router) && !role.is_norm();
                // Rows of one release scale block along the input (the row of a Q8_0 block).
                let bh = if matches!(role, Role::AttnO | Role::MoeDown) {
                    cols / 8
                } else {
                    cols
                };
                for (k, (&a, &b)) in w.iter().zip(&got).enumerate() {
                    let one_scale = (k / 32 * 32) / bh == (k / 32 * 32 + 31).min(cols - 1) / bh;
                    let mode = match ty {
                        GgmlType::F32 => Expect::Exact,
                        GgmlType::BF16 => Expect::Bf16,
                        GgmlType::F16 => Expect::F16,
                        GgmlType::Q8_0 if int8_src && one_scale => Expect::Exact,
                        _ => Expect::Lossy,
                    };
                    let ok = match mode {
                        Expect::Exact => a.to_bits() == b.to_bits(),
                        Expect::Bf16 => half::bf16::from_f32(a).to_f32().to_bits() == b.to_bits(),
                        Expect::F16 => half::f16::from_f32(a).to_f32().to_bits() == b.to_bits(),
                        Expect::Lossy if ty == GgmlType::Q8_0 => {
                            let blk = &w[k / 32 * 32..(k / 32 * 32 + 32).min(cols)];
                            let amax = blk.iter().fold(0f32, |m, x| m.max(x.abs()));
                            (a - b).abs() <= 0.6 * amax / 127.0 + 1e-30
                        }
                        Expect::Lossy => true,
                    };
                    assert!(ok, "{name} ({ty}) row {r} col {k}: got {b}, release {a}");
                    sse += f64::from(a - b).powi(2);
                    ssx += f64::from(a).powi(2);
                }
                n += cols;
            }
        }
        assert_eq!(off, data.len(), "{name}: trailing bytes");
        if let Some(u) = uniform {
            if role.is_norm() || role == Role::Router {
                assert_eq!(ty, GgmlType::F32, "{name}");
            } else {
                assert!(ty == u || u.is_quantized(), "{name}: {ty} instead of {u}");
            }
        }
        if ty.is_quantized() && ty != GgmlType::Q8_0 {
            let rel = (sse / ssx.max(1e-30)).sqrt();
            assert!(rel < 0.15, "{name} ({ty}): relative RMS error {rel}");
        }
    }
    n
}

fn expect_u32(f: &GgufFile, k: &str) -> u32 {
    match f.get(k) {
        Some(Value::U32(x)) => *x,
        v => panic!("{k}: expected u32, got {v:?}"),
    }
}

fn expect_f32(f: &GgufFile, k: &str) -> f32 {
    match f.get(k) {
        Some(Value::F32(x)) => *x,
        v => panic!("{k}: expected f32, got {v:?}"),
    }
}

/// Metadata keys, their types and values.
fn check_gguf_metadata(f: &GgufFile, ck: &Checkpoint, tok: &Path, file_type: u32) {
    let c = &ck.config;
    assert_eq!(
        f.get("general.architecture"),
        Some(&Value::String("grok".into()))
    );
    assert_eq!(expect_u32(f, "general.file_type"), file_type);
    expect_u32(f, "general.quantization_version");
    for (k, want) in [
        ("grok.vocab_size", c.vocab_size),
        ("grok.context_length", c.max_seq_len),
        ("grok.embedding_length", c.emb_size),
        ("grok.block_count", c.num_layers),
        ("grok.feed_forward_length", c.ffn_size),
        ("grok.attention.head_count", c.num_q_heads),
        ("grok.attention.head_count_kv", c.num_kv_heads),
        ("grok.rope.dimension_count", c.key_size),
        ("grok.expert_count", c.num_experts),
        ("grok.expert_used_count", c.num_selected_experts),
    ] {
        assert_eq!(u64::from(expect_u32(f, k)), want, "{k}");
    }
    for (k, want) in [
        ("grok.attention.layer_norm_rms_epsilon", 1e-5),
        ("grok.rope.freq_base", 10000.0),
        ("grok.embedding_scale", 78.38367176906169),
        ("grok.attention.output_scale", 0.08838834764831845),
        ("grok.attn_logit_softcapping", 30.0),
        ("grok.logit_scale", 0.5773502691896257),
    ] {
        assert_eq!(expect_f32(f, k), want as f32, "{k}");
    }
    let t = grokit::tokenizer::Tokenizer::from_file(tok).unwrap();
    let v = c.vocab_size as usize;
    match f.get("tokenizer.ggml.tokens") {
        Some(Value::Array(ArrayValue::Str(s))) => {
            assert_eq!(s.len(), v);
            assert!(s.iter().zip(t.pieces()).all(|(a, b)| *a == b.piece));
        }
        x => panic!("tokens: {x:?}"),
    }
    assert!(
        matches!(f.get("tokenizer.ggml.scores"), Some(Value::Array(ArrayValue::F32(s))) if s.len() == v)
    );
    assert!(
        matches!(f.get("tokenizer.ggml.token_type"), Some(Value::Array(ArrayValue::I32(s))) if s.len() == v)
    );
    assert_eq!(
        f.get("tokenizer.ggml.model"),
        Some(&Value::String("llama".into()))
    );
    for (k, want) in [
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
        ("tokenizer.ggml.unknown_token_id", 3),
        ("tokenizer.ggml.padding_token_id", 0),
    ] {
        assert_eq!(expect_u32(f, k), want, "{k}");
    }
    assert_eq!(
        f.get("tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(false))
    );
}

/// Convert `ck` to one GGUF file and check names, shapes, types, metadata and values.
fn gguf_case(ck_dir: &Path, args: &[&str], uniform: Option<GgmlType>, file_type: u32) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.gguf");
    let mut a = vec!["--to", "gguf", "-o", out.to_str().unwrap(), "-q"];
    a.extend_from_slice(args);
    convert(ck_dir, &a);
    let ck = open(ck_dir);
    let f = GgufFile::open(&out).unwrap();
    let want = gguf_expected(&geo(&ck));
    assert_eq!(f.tensors().len(), want.len());
    for (t, (name, ne, role, _)) in f.tensors().iter().zip(&want) {
        assert_eq!(&t.name, name);
        assert_eq!(&t.ne, ne, "{name}");
        if role.is_norm() || *role == Role::Router {
            assert_eq!(t.ty, GgmlType::F32, "{name}");
        }
    }
    let tok = ck_dir.join("tokenizer.model");
    check_gguf_metadata(&f, &ck, &tok, file_type);
    let get = |n: &str| {
        let t = f.tensor(n).unwrap();
        (t.ty, f.tensor_data(t).to_vec())
    };
    let n = check_gguf_values(&ck, &get, uniform);
    eprintln!("{}: {args:?}: {n} values checked", ck_dir.display());
}

#[test]
fn gguf_f32_bf16_f16_q8_0_fixture() {
    let fx = fixture();
    gguf_case(&fx, &["--type", "f32"], Some(GgmlType::F32), 0);
    gguf_case(&fx, &["--type", "bf16"], Some(GgmlType::BF16), 32);
    gguf_case(&fx, &["--type", "f16"], Some(GgmlType::F16), 1);
    gguf_case(&fx, &["--type", "q8_0"], Some(GgmlType::Q8_0), 7);
}

/// Int8 with Grok-1-like scale blocks goes into Q8_0 and compressed-tensors int8 100% losslessly
/// (the report).
#[test]
fn fixture_int8_is_100_percent_lossless() {
    let d = tempfile::tempdir().unwrap();
    for (to, out, extra) in [
        ("gguf", d.path().join("m.gguf"), ["--type", "q8_0"]),
        ("safetensors", d.path().join("st"), ["--dtype", "int8"]),
    ] {
        let (code, stdout, err) = run(&[
            "convert",
            lossless_geometry().to_str().unwrap(),
            "--to",
            to,
            "-o",
            out.to_str().unwrap(),
            extra[0],
            extra[1],
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let ts = v["report"]["tensors"].as_array().unwrap();
        let mut lossless = 0;
        for t in ts {
            let name = t["name"].as_str().unwrap();
            let from_int8 = !(name.contains("embd")
                || name.contains("embed")
                || name.contains("norm")
                || name.contains("gate_inp")
                || name.contains("gate.weight"));
            if from_int8 && !name.ends_with("weight_shape") {
                assert_eq!(t["requantized_blocks"], 0, "{to}: {name}");
                assert!(t["lossless_blocks"].as_u64().unwrap() > 0, "{to}: {name}");
                assert_eq!(t["max_abs"], 0.0, "{to}: {name}");
                lossless += 1;
            }
        }
        assert!(lossless >= 14, "{to}: {lossless}");
    }
}

#[test]
fn gguf_q4_k_m_fixture() {
    gguf_case(&fixture(), &["--quant", "q4_k_m"], None, 15);
}

#[test]
fn gguf_fixture_has_26_tensors_with_770_style_names() {
    let ck = open(&fixture());
    let want = gguf_expected(&geo(&ck));
    assert_eq!(want.len(), 26);
    // The full release: 2 + 64 * 12 = 770.
    assert_eq!(
        gguf_expected(&Geo {
            d: 6144,
            f: 32768,
            e: 8,
            v: 131072,
            q: 6144,
            kv: 1024,
            layers: 64
        })
        .len(),
        770
    );
}

#[test]
fn gguf_tiny12() {
    let Some(t) = tiny12("GGUF conversions of tiny12") else {
        return;
    };
    gguf_case(&t, &["--type", "f32"], Some(GgmlType::F32), 0);
    gguf_case(&t, &["--type", "bf16"], Some(GgmlType::BF16), 32);
    gguf_case(&t, &["--type", "q8_0"], Some(GgmlType::Q8_0), 7);
    gguf_case(&t, &["--quant", "q4_k_m"], None, 15);
}
