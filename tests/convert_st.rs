//! `grokit convert --to safetensors`: names per layout, values against the release, the
//! compressed-tensors int8 (lossless) and int4 encodings, config/tokenizer files, SHA256SUMS,
//! index.json, determinism, work split with `--finish`, resume.

use crate::convert::{convert, exact, lossless_geometry, open};
use crate::util::{assert_dirs_identical, dir_bytes, fixture, run, tiny12};
use grokit::base::DType;
use grokit::model::Role;
use grokit::safetensors_io::StReader;
use grokit::source::grok::Checkpoint;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Clone, Copy, PartialEq)]
enum Lay {
    Hf,
    Jax,
}

/// Expected name of a tensor, written by hand from docs/formats/safetensors-output.md
/// (tensor names per layout).
fn name(l: Lay, role: Role, layer: Option<u64>, e: Option<usize>) -> String {
    let (n, e) = (layer.unwrap_or(0), e.unwrap_or(0));
    match l {
        Lay::Hf => match role {
            Role::Embed => "model.embed_tokens.weight".into(),
            Role::FinalNorm => "model.norm.scale".into(),
            Role::AttnQ => format!("model.layers.{n}.attn.q_proj.weight"),
            Role::AttnK => format!("model.layers.{n}.attn.k_proj.weight"),
            Role::AttnV => format!("model.layers.{n}.attn.v_proj.weight"),
            Role::AttnO => format!("model.layers.{n}.attn.o_proj.weight"),
            Role::PreAttnNorm => format!("model.layers.{n}.pre_attn_norm.scale"),
            Role::PostAttnNorm => format!("model.layers.{n}.post_attn_norm.scale"),
            Role::PreMoeNorm => format!("model.layers.{n}.pre_moe_norm.scale"),
            Role::PostMoeNorm => format!("model.layers.{n}.post_moe_norm.scale"),
            Role::Router => format!("model.layers.{n}.moe_block.gate.weight"),
            Role::MoeGate => format!("model.layers.{n}.moe_block.experts.{e}.linear.weight"),
            Role::MoeUp => format!("model.layers.{n}.moe_block.experts.{e}.linear_v.weight"),
            Role::MoeDown => format!("model.layers.{n}.moe_block.experts.{e}.linear_1.weight"),
        },
        Lay::Jax => match role {
            Role::Embed => "transformer.in_out_embed.weight".into(),
            Role::FinalNorm => "transformer.rms_norm.weight".into(),
            Role::AttnQ => {
                format!("transformer.decoder_layer.{n}.multi_head_attention.query.weight")
            }
            Role::AttnK => format!("transformer.decoder_layer.{n}.multi_head_attention.key.weight"),
            Role::AttnV => {
                format!("transformer.decoder_layer.{n}.multi_head_attention.value.weight")
            }
            Role::AttnO => {
                format!("transformer.decoder_layer.{n}.multi_head_attention.linear.weight")
            }
            Role::PreAttnNorm => format!("transformer.decoder_layer.{n}.rms_norm.weight"),
            Role::PostAttnNorm => format!("transformer.decoder_layer.{n}.rms_norm_1.weight"),
            Role::PreMoeNorm => format!("transformer.decoder_layer.{n}.rms_norm_2.weight"),
            Role::PostMoeNorm => format!("transformer.decoder_layer.{n}.rms_norm_3.weight"),
            Role::Router => format!("transformer.decoder_layer.{n}.router.weight"),
            Role::MoeGate => format!("transformer.decoder_layer.{n}.moe.{e}.linear.weight"),
            Role::MoeUp => format!("transformer.decoder_layer.{n}.moe.{e}.linear_v.weight"),
            Role::MoeDown => format!("transformer.decoder_layer.{n}.moe.{e}.linear_1.weight"),
        },
    }
}

/// Every (role, layer, expert) of a checkpoint.
fn params(ck: &Checkpoint) -> Vec<(Role, Option<u64>, Option<usize>)> {
    let c = &ck.config;
    let mut v = vec![(Role::Embed, None, None), (Role::FinalNorm, None, None)];
    for l in 0..c.num_layers {
        for r in [
            Role::AttnQ,
            Role::AttnK,
            Role::AttnV,
            Role::AttnO,
            Role::PreAttnNorm,
            Role::PostAttnNorm,
            Role::PreMoeNorm,
            Role::PostMoeNorm,
            Role::Router,
        ] {
            v.push((r, Some(l), None));
        }
        for r in [Role::MoeGate, Role::MoeUp, Role::MoeDown] {
            for e in 0..c.num_experts as usize {
                v.push((r, Some(l), Some(e)));
            }
        }
    }
    v
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}
fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn json(p: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The safetensors crate agrees with StReader on every tensor of every shard.
fn check_with_safetensors_crate(dir: &Path, r: &StReader) -> usize {
    let mut n = 0;
    for (f, _) in dir_bytes(dir)
        .into_iter()
        .filter(|(f, _)| f.ends_with(".safetensors"))
    {
        let bytes = std::fs::read(dir.join(&f)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for nm in st.names() {
            let v = st.tensor(nm).unwrap();
            let e = r
                .tensor(nm)
                .unwrap_or_else(|| panic!("{nm} not in StReader"));
            assert_eq!(
                v.shape().iter().map(|&x| x as u64).collect::<Vec<_>>(),
                e.shape,
                "{nm}"
            );
            assert_eq!(format!("{:?}", v.dtype()), e.dtype.safetensors(), "{nm}");
            assert!(v.data() == r.tensor_bytes(nm).unwrap(), "{nm}");
            n += 1;
        }
    }
    assert_eq!(n, r.len());
    n
}

/// SHA256SUMS lists every other file with its hash.
fn check_sums(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<String> = Vec::new();
    for line in text.lines() {
        let (h, f) = line.split_once("  ").unwrap();
        let got = grokit::base::hex::encode(&Sha256::digest(std::fs::read(dir.join(f)).unwrap()));
        assert_eq!(h, got, "{f}");
        listed.push(f.to_string());
    }
    let mut all: Vec<String> = dir_bytes(dir)
        .into_iter()
        .map(|x| x.0)
        .filter(|f| f != "SHA256SUMS")
        .collect();
    all.sort();
    listed.sort();
    assert_eq!(listed, all);
}

/// Convert, read back, and check names, dtypes, shapes, values and the side files.
fn st_case(ck_dir: &Path, lay: Lay, dtype: &str, shard_size: &str) -> usize {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("st");
    let lay_s = if lay == Lay::Hf { "hf" } else { "jax" };
    convert(
        ck_dir,
        &[
            "--to",
            "safetensors",
            "-o",
            out.to_str().unwrap(),
            "--layout",
            lay_s,
            "--dtype",
            dtype,
            "--shard-size",
            shard_size,
            "-q",
        ],
    );
    let ck = open(ck_dir);
    let r = StReader::open(&out).unwrap();
    let cfg = json(&out.join("config.json"));
    let c = &ck.config;
    let arch = if lay == Lay::Hf {
        "Grok1ModelForCausalLM"
    } else {
        "GrokForCausalLM"
    };
    assert_eq!(cfg["architectures"], serde_json::json!([arch]));
    assert_eq!(cfg["num_experts"], c.num_experts);
    assert_eq!(cfg["num_local_experts"], c.num_experts);
    assert_eq!(cfg["num_experts_per_tok"], c.num_selected_experts);
    assert_eq!(cfg["hidden_size"], c.emb_size);
    assert_eq!(cfg["num_hidden_layers"], c.num_layers);
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["embedding_multiplier_scale"], 78.38367176906169);
    let gen = json(&out.join("generation_config.json"));
    assert_eq!(
        (
            gen["bos_token_id"].as_u64(),
            gen["eos_token_id"].as_u64(),
            gen["pad_token_id"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.model")).unwrap(),
        std::fs::read(ck_dir.join("tokenizer.model")).unwrap()
    );
    assert!(
        out.join("tokenizer_config.json").is_file()
            && out.join("special_tokens_map.json").is_file()
    );
    check_sums(&out);
    let bits = match dtype {
        "int8" => Some(8u32),
        "int4" => Some(4),
        _ => None,
    };
    let group = match bits {
        Some(b) => {
            let q = &cfg["quantization_config"];
            assert_eq!(q["quant_method"], "compressed-tensors");
            assert_eq!(q["format"], "pack-quantized");
            let w = &q["config_groups"]["group_0"]["weights"];
            assert_eq!(
                (
                    w["num_bits"].as_u64(),
                    w["symmetric"].as_bool(),
                    w["strategy"].as_str()
                ),
                (Some(u64::from(b)), Some(true), Some("group"))
            );
            let ignore: Vec<&str> = q["ignore"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert!(ignore.contains(&"lm_head"));
            assert!(
                ignore.contains(&name(lay, Role::Embed, None, None).trim_end_matches(".weight"))
            );
            for l in 0..c.num_layers {
                assert!(
                    ignore.contains(
                        &name(lay, Role::Router, Some(l), None).trim_end_matches(".weight")
                    ),
                    "{ignore:?}"
                );
            }
            let g = w["group_size"].as_u64().unwrap() as usize;
            assert!(g >= 1 && (c.emb_size as usize).is_multiple_of(g));
            g
        }
        None => {
            assert!(cfg.get("quantization_config").is_none());
            0
        }
    };
    let sharded = out.join("model.safetensors.index.json").exists();
    if sharded {
        let idx = json(&out.join("model.safetensors.index.json"));
        let wm = idx["weight_map"].as_object().unwrap();
        assert_eq!(wm.len(), r.len());
        let mut total = 0u64;
        for e in r.tensors() {
            assert_eq!(
                wm[&e.name].as_str().unwrap(),
                e.file.file_name().unwrap().to_str().unwrap(),
                "{}",
                e.name
            );
            total += e.data_offsets.1 - e.data_offsets.0;
        }
        assert_eq!(idx["metadata"]["total_size"].as_u64(), Some(total));
    } else {
        assert!(out.join("model.safetensors").is_file());
    }
    check_with_safetensors_crate(&out, &r);
    let float = match dtype {
        "f32" => DType::F32,
        "f16" => DType::F16,
        _ => DType::BF16,
    };
    let mut n_tensors = 0;
    let mut n_values = 0;
    for (role, layer, e) in params(&ck) {
        let nm = name(lay, role, layer, e);
        let (rows, cols, want) = exact(&ck, role, layer, e);
        let keep_f32 = role.is_norm() || role == Role::Router;
        if keep_f32 || bits.is_none() || role == Role::Embed {
            let t = r.tensor(&nm).unwrap_or_else(|| panic!("{nm} missing"));
            let dt = if keep_f32 {
                DType::F32
            } else if bits.is_some() {
                DType::BF16
            } else {
                float
            };
            assert_eq!(t.dtype, dt, "{nm}");
            let shape: Vec<u64> = if role.is_norm() {
                vec![cols as u64]
            } else {
                vec![rows as u64, cols as u64]
            };
            assert_eq!(t.shape, shape, "{nm}");
            let b = r.tensor_bytes(&nm).unwrap();
            let got_bits: Vec<u32> = match dt {
                DType::F32 => f32s(b).iter().map(|x| x.to_bits()).collect(),
                DType::BF16 => u16s(b).iter().map(|&x| u32::from(x)).collect(),
                _ => u16s(b).iter().map(|&x| u32::from(x)).collect(),
            };
            for (k, (&w, &g)) in want.iter().zip(&got_bits).enumerate() {
                let exp = match dt {
                    DType::F32 => w.to_bits(),
                    DType::BF16 => u32::from(half::bf16::from_f32(w).to_bits()),
                    _ => u32::from(half::f16::from_f32(w).to_bits()),
                };
                assert_eq!(g, exp, "{nm} element {k}");
            }
            assert_eq!(got_bits.len(), want.len(), "{nm}");
            n_tensors += 1;
            n_values += want.len();
            continue;
        }
        // compressed-tensors pack-quantized.
        let bits = bits.unwrap_or(8);
        let base = nm.trim_end_matches(".weight");
        let per = (32 / bits) as usize;
        let p = r
            .tensor(&format!("{base}.weight_packed"))
            .unwrap_or_else(|| panic!("{base}.weight_packed"));
        let s = r.tensor(&format!("{base}.weight_scale")).unwrap();
        let sh = r.tensor(&format!("{base}.weight_shape")).unwrap();
        assert!(r.tensor(&nm).is_none(), "{nm} should only exist packed");
        assert_eq!(
            (p.dtype, s.dtype, sh.dtype),
            (DType::I32, DType::BF16, DType::I32)
        );
        assert_eq!(p.shape, vec![rows as u64, cols.div_ceil(per) as u64]);
        assert_eq!(s.shape, vec![rows as u64, (cols / group) as u64]);
        assert_eq!(sh.shape, vec![2]);
        let shape_v: Vec<i32> = r
            .tensor_bytes(&sh.name)
            .unwrap()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(shape_v, vec![rows as i32, cols as i32]);
        let pw = words(r.tensor_bytes(&p.name).unwrap());
        let sc = u16s(r.tensor_bytes(&s.name).unwrap());
        let wpr = cols.div_ceil(per);
        let t = ck.tensor(role, layer).unwrap();
        let map = ck.map(t).unwrap();
        let m = ck.matrix(t, &map, e).unwrap();
        let offset = 1i32 << (bits - 1);
        for j in 0..rows {
            for i in 0..cols {
                let word = pw[j * wpr + i / per];
                let q = ((word >> (bits as usize * (i % per))) & ((1 << bits) - 1)) as i32 - offset;
                let sbits = sc[j * (cols / group) + i / group];
                if bits == 8 {
                    // Output row j is release column j; input i is release row i.
                    assert_eq!(q, i32::from(m.q(i, j)), "{base} int8 [{j}, {i}]");
                    assert_eq!(sbits, m.scale_bits(i, j), "{base} scale [{j}, {i}]");
                } else {
                    let sf = half::bf16::from_bits(sbits).to_f32();
                    let x = want[j * cols + i];
                    assert!((-8..=7).contains(&q));
                    assert!(
                        (x - q as f32 * sf).abs() <= 0.53 * sf + 1e-30,
                        "{base} int4 [{j}, {i}]: {x} vs {q}*{sf}"
                    );
                }
            }
        }
        n_tensors += 3;
        n_values += rows * cols;
    }
    assert_eq!(n_tensors, r.len(), "unexpected extra tensors");
    eprintln!(
        "{}: safetensors {dtype} {lay_s}: {n_tensors} tensors, {n_values} values checked",
        ck_dir.display()
    );
    n_values
}

#[test]
fn safetensors_bf16_both_layouts_fixture() {
    let fx = fixture();
    st_case(&fx, Lay::Hf, "bf16", "5G");
    st_case(&fx, Lay::Jax, "bf16", "200K");
    st_case(&fx, Lay::Hf, "f32", "200K");
    st_case(&fx, Lay::Jax, "f16", "5G");
}

#[test]
fn safetensors_int8_lossless_and_int4_fixture() {
    // Grok-1-like scale blocks (multiples of 128 rows): groups of 128, int8 lossless.
    let fx = lossless_geometry();
    st_case(&fx, Lay::Hf, "int8", "5G");
    st_case(&fx, Lay::Jax, "int8", "200K");
    st_case(&fx, Lay::Hf, "int4", "200K");
    st_case(&fx, Lay::Jax, "int4", "5G");
}

#[test]
fn safetensors_tiny12() {
    let Some(t) = tiny12("safetensors conversions of tiny12") else {
        return;
    };
    st_case(&t, Lay::Hf, "bf16", "1M");
    st_case(&t, Lay::Jax, "bf16", "5G");
    st_case(&t, Lay::Hf, "int8", "1M");
    st_case(&t, Lay::Hf, "int4", "5G");
}

fn st_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--to",
        "safetensors",
        "-o",
        out,
        "--shard-size",
        "200K",
        "-q",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn safetensors_deterministic_workers_and_resume() {
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let (a, b, w, s) = (
        d.path().join("a"),
        d.path().join("b"),
        d.path().join("w"),
        d.path().join("s"),
    );
    convert(&fx, &st_args(a.to_str().unwrap(), &[]));
    convert(&fx, &st_args(b.to_str().unwrap(), &[]));
    assert!(dir_bytes(&a).len() > 6);
    assert_dirs_identical(&a, &b);
    // Three workers, then --finish.
    for k in 0..3 {
        let sh = format!("{k}/3");
        convert(&fx, &st_args(w.to_str().unwrap(), &["--shard", &sh]));
    }
    assert!(
        !w.join("SHA256SUMS").exists(),
        "workers must not write the index/sums"
    );
    convert(&fx, &st_args(w.to_str().unwrap(), &["--finish"]));
    assert_dirs_identical(&a, &w);
    // Resume: one shard deleted, a stale temp present.
    convert(&fx, &st_args(s.to_str().unwrap(), &[]));
    let shards: Vec<String> = dir_bytes(&s)
        .into_iter()
        .map(|x| x.0)
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    let victim = shards[2].clone();
    std::fs::remove_file(s.join(&victim)).unwrap();
    std::fs::write(s.join(format!(".{victim}.grokit-tmp")), b"stale").unwrap();
    let before: Vec<_> = shards
        .iter()
        .filter(|f| **f != victim)
        .map(|f| std::fs::metadata(s.join(f)).unwrap().modified().unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut a2 = st_args(s.to_str().unwrap(), &["--resume"]);
    a2.retain(|x| *x != "-q");
    let err = convert(&fx, &a2);
    assert_eq!(err.matches("kept ").count(), shards.len() - 1, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("wrote ")).count(),
        1,
        "{err}"
    );
    let after: Vec<_> = shards
        .iter()
        .filter(|f| **f != victim)
        .map(|f| std::fs::metadata(s.join(f)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "kept shards were rewritten");
    assert_dirs_identical(&a, &s);
    // Same sizes, another plan (f16 instead of bf16): --resume rewrites every shard.
    let f16 = d.path().join("f16");
    convert(&fx, &st_args(f16.to_str().unwrap(), &["--dtype", "f16"]));
    let mut a3 = st_args(s.to_str().unwrap(), &["--resume", "--dtype", "f16"]);
    a3.retain(|x| *x != "-q");
    let err = convert(&fx, &a3);
    assert_eq!(err.matches("kept ").count(), 0, "{err}");
    assert_dirs_identical(&f16, &s);
    convert(&fx, &st_args(s.to_str().unwrap(), &["--force"]));
    assert_dirs_identical(&a, &s);
    // --finish with a missing shard is refused.
    std::fs::remove_file(s.join(&victim)).unwrap();
    let (code, _, err) = run(&[
        "convert",
        fx.to_str().unwrap(),
        "--to",
        "safetensors",
        "-o",
        s.to_str().unwrap(),
        "--shard-size",
        "200K",
        "--finish",
    ]);
    assert_eq!(code, 2, "{err}");
}
