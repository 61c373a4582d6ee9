//! #16: the engine layouts (docs/decisions/0004-engine-layouts.md) without Python: `--layout
//! sglang` refuses compressed-tensors, `grokit forward` reads the sglang layout and an I32
//! `weight_shape` (older grokit) to the same logits, and `inspect` catches what an engine would
//! stumble on (foreign names, missing remote code, switches off the release's numerics,
//! a tensor too many) with exit 1. The files, config fields and names written are checked in
//! tests/convert_st.rs.

use crate::util::{fixture, run};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

fn convert(out: &Path, extra: &[&str]) {
    let fx = fixture();
    let mut a = vec![
        "convert",
        fx.to_str().unwrap(),
        "--to",
        "safetensors",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    let (code, o, e) = run(&a);
    assert_eq!(code, 0, "{o}\n{e}");
}

fn inspect(dir: &Path) -> (i32, Json) {
    let (code, o, e) = run(&["inspect", dir.to_str().unwrap(), "--json"]);
    (
        code,
        serde_json::from_str(&o).unwrap_or_else(|_| panic!("{o}\n{e}")),
    )
}

fn problems(v: &Json) -> String {
    v["problems"].to_string()
}

fn logits(dir: &Path, work: &Path, tag: &str) -> Vec<u8> {
    let npy = work.join(format!("{tag}.npy"));
    let (code, o, e) = run(&[
        "forward",
        dir.to_str().unwrap(),
        "--tokens",
        "1,5,9,200,3",
        "--logits-out",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{o}\n{e}");
    std::fs::read(npy).unwrap()
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut Json)) {
    let p = dir.join("config.json");
    let mut v: Json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Rewrite `model.safetensors` with `f` applied to the tensor list (name, dtype, shape, bytes).
#[allow(clippy::type_complexity)]
fn rewrite(dir: &Path, f: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    f(&mut v);
    let views: Vec<(String, TensorView<'_>)> = v
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&p, out).unwrap();
}

#[test]
fn sglang_refuses_compressed_tensors() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sg");
    for dtype in ["int8", "int4"] {
        let fx = fixture();
        let (code, _, err) = run(&[
            "convert",
            fx.to_str().unwrap(),
            "--to",
            "safetensors",
            "--layout",
            "sglang",
            "--dtype",
            dtype,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--layout sglang") && err.contains("SiLU") && err.contains(dtype),
            "{err}"
        );
        assert!(!out.exists(), "a refused run created {}", out.display());
    }
}

#[test]
fn forward_reads_sglang_and_i32_weight_shape() {
    let d = tempfile::tempdir().unwrap();
    let (hf, sg) = (d.path().join("hf"), d.path().join("sg"));
    convert(&hf, &["--dtype", "f32"]);
    convert(&sg, &["--dtype", "f32", "--layout", "sglang"]);
    assert_eq!(
        logits(&hf, d.path(), "hf"),
        logits(&sg, d.path(), "sg"),
        "sglang layout: other logits"
    );
    // int8 with I64 weight_shape (today) and I32 (older grokit): same logits.
    let (i64d, i32d) = (d.path().join("i64"), d.path().join("i32"));
    convert(&i64d, &["--dtype", "int8"]);
    convert(&i32d, &["--dtype", "int8"]);
    rewrite(&i32d, |v| {
        for (n, dt, _, b) in v.iter_mut() {
            if n.ends_with(".weight_shape") {
                assert_eq!(*dt, Dtype::I64);
                let vals: Vec<i64> = b
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                *b = vals
                    .iter()
                    .flat_map(|&x| (x as i32).to_le_bytes())
                    .collect();
                *dt = Dtype::I32;
            }
        }
    });
    assert_eq!(
        logits(&i64d, d.path(), "i64"),
        logits(&i32d, d.path(), "i32")
    );
    let (code, v) = inspect(&i32d);
    assert_eq!(code, 0, "{v}");
    assert!(v["notes"].to_string().contains("I32"), "{v}");
    // The fixture's odd widths (channel groups) are reported as not Marlin-compatible.
    assert!(
        v["marlin"]
            .as_str()
            .unwrap()
            .contains("not supported by Marlin"),
        "{v}"
    );
}

/// Copy an output directory (flat) to a new place.
fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

#[test]
fn inspect_catches_what_engines_stumble_on() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    convert(&good, &[]);
    let (code, v) = inspect(&good);
    assert_eq!((code, v["layout"].as_str()), (0, Some("hf")), "{v}");
    assert!(v["marlin"].is_null());
    let case = |name: &str| copy_dir(&good, &d.path().join(name));

    // 6. The remote code: missing is a problem, edited is a note.
    let c = case("nocode");
    std::fs::remove_file(c.join("modeling_grok1.py")).unwrap();
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    assert!(problems(&v).contains("modeling_grok1.py missing"), "{v}");
    let c = case("edited");
    std::fs::write(c.join("configuration_grok1.py"), "# edited\n").unwrap();
    let (code, v) = inspect(&c);
    assert_eq!(code, 0, "{v}");
    assert!(v["notes"].to_string().contains("differs"), "{v}");
    let c = case("noautomap");
    edit_config(&c, |v| {
        v.as_object_mut().unwrap().remove("auto_map");
    });
    assert!(problems(&inspect(&c).1).contains("auto_map"));

    // 5. The numerics switches.
    let c = case("switches");
    edit_config(&c, |v| {
        v["router_logit_softcapping"] = 30.0.into();
        v["hidden_act"] = "gelu".into();
        v["moe_intermediate_size"] = 32768.into();
    });
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    let p = problems(&v);
    assert!(
        p.contains("router_logit_softcapping") && p.contains("hidden_act") && p.contains("Grok-2"),
        "{p}"
    );
    let c = case("absent");
    edit_config(&c, |v| {
        v.as_object_mut().unwrap().remove("moe_renormalize");
    });
    let (code, v) = inspect(&c);
    assert_eq!(code, 0, "{v}");
    assert!(v["notes"].to_string().contains("moe_renormalize absent"));

    // 1. architectures that do not match the names.
    let c = case("arch");
    edit_config(&c, |v| {
        v["architectures"] = serde_json::json!(["Grok1ForCausalLM"])
    });
    assert!(problems(&inspect(&c).1).contains("architectures"));

    // 2. Geometry: the config's sizes disagree with the tensors.
    let c = case("geometry");
    edit_config(&c, |v| v["intermediate_size"] = 400.into());
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    assert!(problems(&v).contains("wrong shape"), "{v}");

    // 3. Names: one tensor too many (SGLang and transformers would skip it silently), one
    // missing, and a foreign layout.
    let c = case("extra");
    rewrite(&c, |v| {
        let t = v[0].clone();
        v.push(("model.layers.0.mlp.gate_proj.weight".into(), t.1, t.2, t.3));
    });
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    assert!(
        problems(&v).contains("unexpected") && problems(&v).contains("mlp.gate_proj"),
        "{v}"
    );
    let c = case("missing");
    rewrite(&c, |v| {
        v.retain(|t| t.0 != "model.layers.1.attn.v_proj.weight")
    });
    assert!(problems(&inspect(&c).1).contains("model.layers.1.attn.v_proj.weight"));
    let c = case("foreign");
    rewrite(&c, |v| {
        for t in v.iter_mut() {
            t.0 = t.0.replace("model.", "transformer.h.");
        }
    });
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    assert!(problems(&v).contains("foreign layout"), "{v}");

    // 4. dtypes: a norm that is not F32.
    let c = case("dtype");
    rewrite(&c, |v| {
        for t in v.iter_mut() {
            if t.0 == "model.norm.scale" {
                t.1 = Dtype::BF16;
                t.3.truncate(t.3.len() / 2);
            }
        }
    });
    assert!(problems(&inspect(&c).1).contains("model.norm.scale is BF16"));

    // No config.json at all.
    let c = case("noconfig");
    std::fs::remove_file(c.join("config.json")).unwrap();
    let (code, v) = inspect(&c);
    assert_eq!(code, 1);
    assert!(problems(&v).contains("config.json"), "{v}");
}
