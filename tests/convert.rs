//! `grokit convert` end to end: every output read back with grokit's readers (and the
//! `safetensors` crate) and compared with the release's exact dequantization; determinism,
//! splits, work splitting, resume, interrupted runs and refusals.
//! Expected names and shapes are written out here by hand (not taken from the role table), so
//! a wrong entry in the table fails these tests.

use crate::util::{assert_dirs_identical, copy_fixture, dir_bytes, fixture, grokit, run, tiny12};
use grokit::gguf::{ArrayValue, GgufFile, GgufSet, Value};
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

/// `--to gguf --type TY [--split-max-size 300K] -o DIR/m.gguf EXTRA...`: the GGUF conversions
/// the determinism, split and resume tests repeat.
fn to_gguf(ty: &str, split: bool, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--to", "gguf", "--type", ty];
    if split {
        a.extend(["--split-max-size", "300K"]);
    }
    let out = dir.join("m.gguf");
    a.extend(["-o", out.to_str().unwrap()]);
    a.extend_from_slice(extra);
    a.into_iter().map(String::from).collect()
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

#[test]
fn gguf_deterministic_and_split_equals_single() {
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for dir in [&a, &b] {
        convert(&fx, &to_gguf("q8_0", false, dir, &["-q"]));
    }
    assert_dirs_identical(&a, &b);
    let s = d.path().join("split");
    std::fs::create_dir_all(&s).unwrap();
    convert(&fx, &to_gguf("q8_0", true, &s, &["-q"]));
    let files: Vec<String> = dir_bytes(&s).into_iter().map(|x| x.0).collect();
    let n = files.len();
    assert!(n >= 3, "{files:?}");
    for (i, name) in files.iter().enumerate() {
        assert_eq!(name, &format!("m-{:05}-of-{n:05}.gguf", i + 1));
        let f = GgufFile::open(&s.join(name)).unwrap();
        assert_eq!(f.get("split.no"), Some(&Value::U16(i as u16)));
        assert_eq!(f.get("split.count"), Some(&Value::U16(n as u16)));
        assert_eq!(f.get("split.tensors.count"), Some(&Value::I32(26)));
        assert!(
            f.data_start() + f.tensors().iter().map(|t| t.nbytes).sum::<u64>() <= 300_000
                || f.tensors().len() == 1,
            "{name} too big"
        );
        if i > 0 {
            assert!(
                f.get("general.architecture").is_none(),
                "metadata only in shard 1"
            );
        }
    }
    let set = GgufSet::open(&s.join(&files[0])).unwrap();
    let single = GgufFile::open(&a.join("m.gguf")).unwrap();
    assert_eq!(set.tensor_count(), 26);
    let names: Vec<&str> = set.tensors().map(|(_, t)| t.name.as_str()).collect();
    let want: Vec<&str> = single.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, want);
    for t in single.tensors() {
        let (_, st) = set.tensor(&t.name).unwrap();
        assert_eq!((&st.ne, st.ty), (&t.ne, t.ty));
        assert!(
            set.tensor_data(&t.name).unwrap() == single.tensor_data(t),
            "{}",
            t.name
        );
    }
    let kv_of = |kvs: &[(String, Value)]| {
        kvs.iter()
            .filter(|(k, _)| !k.starts_with("split."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(kv_of(set.kvs()), kv_of(single.kvs()));
    // Work split: three workers write the same set.
    let w = d.path().join("workers");
    std::fs::create_dir_all(&w).unwrap();
    for k in 0..3 {
        let sh = format!("{k}/3");
        convert(&fx, &to_gguf("q8_0", true, &w, &["--shard", &sh, "-q"]));
    }
    assert_dirs_identical(&s, &w);
}

/// A GGUF split set, one file deleted and a stale temp present: `--resume` rewrites only it.
#[test]
fn gguf_resume_rewrites_only_missing_files() {
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let (r, s) = (d.path().join("ref"), d.path().join("run"));
    for dir in [&r, &s] {
        std::fs::create_dir_all(dir).unwrap();
        convert(&fx, &to_gguf("bf16", true, dir, &["-q"]));
    }
    let files: Vec<String> = dir_bytes(&s).into_iter().map(|x| x.0).collect();
    let victim = files[1].clone();
    std::fs::remove_file(s.join(&victim)).unwrap();
    std::fs::write(
        s.join(format!(".{victim}.grokit-tmp")),
        b"half-written garbage",
    )
    .unwrap();
    let mtimes: Vec<_> = files
        .iter()
        .filter(|f| **f != victim)
        .map(|f| {
            (
                f.clone(),
                std::fs::metadata(s.join(f)).unwrap().modified().unwrap(),
            )
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Without --resume or --force the existing files are refused.
    let refused = [
        vec!["convert".into(), fx.to_str().unwrap().into()],
        to_gguf("bf16", true, &s, &[]),
    ];
    let (code, _, err) = run(&refused.concat());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let err = convert(&fx, &to_gguf("bf16", true, &s, &["--resume"]));
    assert_eq!(err.matches("kept ").count(), files.len() - 1, "{err}");
    assert_eq!(err.matches("wrote ").count(), 1, "{err}");
    assert!(err.contains(&victim), "{err}");
    for (f, m) in mtimes {
        assert_eq!(
            std::fs::metadata(s.join(&f)).unwrap().modified().unwrap(),
            m,
            "{f} was rewritten"
        );
    }
    assert_dirs_identical(&r, &s);
    // Same sizes, another plan (f16 instead of bf16): --resume must rewrite every file.
    let f16 = d.path().join("f16");
    std::fs::create_dir_all(&f16).unwrap();
    convert(&fx, &to_gguf("f16", true, &f16, &["-q"]));
    let err = convert(&fx, &to_gguf("f16", true, &s, &["--resume"]));
    // Only a split holding nothing but F32 tensors (norms) is the same under both plans.
    assert!(err.matches("wrote ").count() >= files.len() - 1, "{err}");
    assert_dirs_identical(&f16, &s);
}

/// SIGKILL the binary at increasing delays: a final-named file is always complete, and
/// `--resume` then finishes a set identical to an uninterrupted run.
#[cfg(unix)]
#[test]
fn gguf_killed_runs_leave_only_complete_files() {
    let src = fixture();
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("ref");
    std::fs::create_dir_all(&r).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "convert",
            src.to_str().unwrap(),
            "--to",
            "gguf",
            "--type",
            "f32",
            "--split-max-size",
            "150K",
            "--jobs",
            "1",
            "-q",
            "--no-error-stats",
            "-o",
            out.join("m.gguf").to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let st = grokit().args(args(&r)).status().unwrap();
    assert!(st.success());
    let n_ref = dir_bytes(&r).len();
    let mut partial_runs = 0;
    let mut finals_seen = Vec::new();
    for (i, delay_ms) in [1u64, 10, 25, 40, 60, 80, 110, 160].into_iter().enumerate() {
        let s = d.path().join(format!("k{i}"));
        std::fs::create_dir_all(&s).unwrap();
        let mut child = grokit().args(args(&s)).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL on unix
        let _ = child.wait();
        let present = dir_bytes(&s);
        let finals: Vec<_> = present
            .iter()
            .filter(|(n, _)| !n.ends_with(".grokit-tmp"))
            .collect();
        finals_seen.push(finals.len());
        if finals.len() < n_ref {
            partial_runs += 1;
        }
        for (n, bytes) in &finals {
            GgufFile::open(&s.join(n))
                .unwrap_or_else(|e| panic!("{n} after kill at {delay_ms} ms: {e}"));
            assert!(
                *bytes == std::fs::read(r.join(n)).unwrap(),
                "{n} differs after kill"
            );
        }
        let mut a = args(&s);
        a.push("--resume".into());
        assert!(grokit().args(&a).status().unwrap().success());
        assert_dirs_identical(&r, &s);
    }
    eprintln!("kill test: {partial_runs} of 8 runs interrupted; final files present after each kill: {finals_seen:?} of {n_ref}");
    assert!(
        partial_runs > 0,
        "no kill landed before the end: the test did not exercise an interruption"
    );
}

/// Drop the last `pieces` record (field 1) of a SentencePiece ModelProto.
fn drop_last_piece(model: &[u8]) -> Vec<u8> {
    let varint = |b: &[u8], mut i: usize| -> (u64, usize) {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let x = b[i];
            i += 1;
            v |= u64::from(x & 0x7f) << s;
            s += 7;
            if x < 0x80 {
                return (v, i);
            }
        }
    };
    let mut recs = Vec::new();
    let mut i = 0;
    while i < model.len() {
        let start = i;
        let (key, j) = varint(model, i);
        let end = match key & 7 {
            0 => varint(model, j).1,
            1 => j + 8,
            2 => {
                let (len, k) = varint(model, j);
                k + len as usize
            }
            5 => j + 4,
            w => panic!("wire type {w}"),
        };
        recs.push((key >> 3, start, end));
        i = end;
    }
    let last = recs.iter().rposition(|r| r.0 == 1).unwrap();
    let (_, s, e) = recs[last];
    [&model[..s], &model[e..]].concat()
}

#[test]
fn refusals_exit_2_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let cp = d.path().join("fixture_copy");
    copy_fixture(&cp);
    let c = cp.to_str().unwrap();
    let inside = cp.join("ckpt-0/x.gguf");
    let (code, _, err) = run(&["convert", c, "--to", "gguf", "-o", inside.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the input"), "{err}");
    assert!(!inside.exists());
    let (code, _, err) = run(&[
        "convert",
        c,
        "--to",
        "safetensors",
        "-o",
        cp.join("ckpt-0/st/deeper").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the input"), "{err}");
    assert!(
        !cp.join("ckpt-0/st").exists(),
        "a refused run created a directory inside the input"
    );
    // safetensors into the checkpoint's own directory would replace its config.json.
    let cfg_before = std::fs::read(cp.join("config.json")).unwrap();
    let (code, _, err) = run(&["convert", c, "--to", "safetensors", "-o", c, "-q"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("input checkpoint"), "{err}");
    assert_eq!(std::fs::read(cp.join("config.json")).unwrap(), cfg_before);
    assert!(!cp.join("model.safetensors").exists());
    // Existing output without --force.
    let out = d.path().join("exists.gguf");
    std::fs::write(&out, b"mine").unwrap();
    let (code, _, err) = run(&["convert", c, "--to", "gguf", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    let (code, _, err) = run(&[
        "convert",
        c,
        "--to",
        "gguf",
        "-o",
        out.to_str().unwrap(),
        "--force",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(GgufFile::open(&out).is_ok());
    // Tokenizer with the wrong vocabulary size.
    let bad = d.path().join("bad.model");
    std::fs::write(
        &bad,
        drop_last_piece(&std::fs::read(fixture().join("tokenizer.model")).unwrap()),
    )
    .unwrap();
    assert_eq!(
        grokit::tokenizer::Tokenizer::from_file(&bad)
            .unwrap()
            .pieces()
            .len(),
        511
    );
    // Nothing is written under its final name: the GGUF file, the safetensors shard.
    for (to, out, file) in [
        ("gguf", "v.gguf", None),
        ("safetensors", "v_st", Some("model.safetensors")),
    ] {
        let o = d.path().join(out);
        let (code, _, err) = run(&[
            "convert",
            c,
            "--to",
            to,
            "-o",
            o.to_str().unwrap(),
            "--tokenizer",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains("511") && err.contains("512"), "{to}: {err}");
        assert!(!file.map_or(o.clone(), |f| o.join(f)).exists(), "{to}");
    }
    // --dry-run writes nothing and prints the plan.
    for (to, o) in [
        ("gguf", d.path().join("dry.gguf")),
        ("safetensors", d.path().join("dry_st")),
    ] {
        let (code, stdout, err) = run(&[
            "convert",
            c,
            "--to",
            to,
            "-o",
            o.to_str().unwrap(),
            "--dry-run",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(!o.exists(), "dry run wrote {}", o.display());
        assert!(stdout.contains("total tensor bytes"), "{stdout}");
        let needle = if to == "gguf" {
            "blk.1.ffn_down_exps.weight"
        } else {
            "model.layers.1.moe_block.experts.7.linear_1.weight"
        };
        assert!(stdout.contains(needle), "{stdout}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("grokit-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
