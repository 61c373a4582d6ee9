//! `inspect DIR` of a safetensors directory: is it a Grok-1 an engine will load as the release?
//! The seven checks of docs/decisions/0004-engine-layouts.md ("`inspect DIR` of a safetensors
//! directory", listed again in docs/formats/engines.md): config and layout,
//! geometry, names, shapes and dtypes, numerics switches, the remote code (`auto_map` and the
//! Python files), and the Marlin report for compressed-tensors. Every expectation comes from the
//! same tables the writer uses (role table, key table, [`super::safetensors_engine`]), so a
//! directory grokit writes passes and a broken or foreign one is caught before an engine (which
//! may skip unknown names silently) sees it.

use super::plan::{output_order, Layout};
use super::safetensors_engine::{
    architecture, auto_map, code_files, marlin_line, numerics_switches, GROK2_KEYS,
};
use crate::base::limits::CKPT_MAX_CONFIG_BYTES;
use crate::base::DType;
use crate::model::roles::{fill, LAYOUTS};
use crate::model::{read_config, Config, KeyFormat, KeyValue, Role};
use crate::safetensors_io::StReader;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What [`check_dir`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StCheck {
    /// The layout the names identify (`hf`, `sglang`, `jax`), if any.
    pub layout: Option<&'static str>,
    /// Defects: an engine would fail, or not compute the release's model (exit 1).
    pub problems: Vec<String>,
    /// Warnings and facts (I32 `weight_shape`, remote code differing from this grokit's).
    pub notes: Vec<String>,
    /// For compressed-tensors: whether Marlin kernels can run it, and the line saying so.
    pub marlin: Option<String>,
}

/// How many names a list of missing/unexpected names shows.
const SHOW: usize = 3;

/// compressed-tensors settings from `quantization_config`.
#[derive(Clone, Copy, Debug)]
struct Ct {
    bits: u64,
    /// `None`: strategy "channel".
    group: Option<u64>,
}

/// A tensor the layout expects: name, dtype (None = the float type of the checkpoint), shape.
struct Want {
    name: String,
    dtype: Option<DType>,
    shape: Vec<u64>,
    /// compressed-tensors `weight_shape`: its values must be these.
    values: Option<[u64; 2]>,
}

/// Every tensor `layout` holds for `c` (with compressed-tensors `ct`).
fn expected(c: &Config, layout: Layout, ct: Option<Ct>) -> Vec<Want> {
    let mut out = Vec::new();
    for (role, layer) in output_order(c) {
        let info = role.info();
        let shape = info.piece_shape(c);
        let experts: Vec<Option<u64>> = if info.experts {
            (0..c.num_experts).map(Some).collect()
        } else {
            vec![None]
        };
        for e in experts {
            let name = fill(info.st_name(layout), layer, e);
            if role.stays_f32() {
                out.push(want(name, Some(DType::F32), shape.clone()));
                continue;
            }
            match ct {
                Some(_) if role == Role::Embed => {
                    out.push(want(name, Some(DType::BF16), shape.clone()))
                }
                Some(q) => {
                    let base = name.strip_suffix(".weight").unwrap_or(&name).to_string();
                    let (o, i) = (shape[0], shape.get(1).copied().unwrap_or(0));
                    let words = i.div_ceil(32 / q.bits.max(1));
                    let groups = q.group.map_or(1, |g| i / g.max(1));
                    out.push(want(
                        format!("{base}.weight_packed"),
                        Some(DType::I32),
                        vec![o, words],
                    ));
                    out.push(want(format!("{base}.weight_scale"), None, vec![o, groups]));
                    out.push(Want {
                        name: format!("{base}.weight_shape"),
                        dtype: Some(DType::I64),
                        shape: vec![2],
                        values: Some([o, i]),
                    });
                }
                None => out.push(want(name, None, shape.clone())),
            }
        }
    }
    if let Some(head) = layout.head() {
        let embed = Role::Embed.info();
        let dtype = ct.map(|_| DType::BF16);
        out.push(want(head.to_string(), dtype, embed.piece_shape(c)));
    }
    out
}

fn want(name: String, dtype: Option<DType>, shape: Vec<u64>) -> Want {
    Want {
        name,
        dtype,
        shape,
        values: None,
    }
}

fn list(names: &[&str]) -> String {
    let shown: Vec<&str> = names.iter().take(SHOW).copied().collect();
    let more = names.len().saturating_sub(SHOW);
    if more > 0 {
        format!("{} (and {more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Read `config.json` (size-capped) as a JSON object.
fn read_json(path: &Path) -> Result<Map<String, Json>, String> {
    let bytes = crate::io::read_capped(path, CKPT_MAX_CONFIG_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("larger than {CKPT_MAX_CONFIG_BYTES} bytes"))?;
    match serde_json::from_slice::<Json>(&bytes) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// compressed-tensors settings, or a problem.
fn ct_of(cfg: &Map<String, Json>) -> Result<Option<Ct>, String> {
    let Some(q) = cfg.get("quantization_config") else {
        return Ok(None);
    };
    if q["quant_method"] != "compressed-tensors" || q["format"] != "pack-quantized" {
        return Err(format!(
            "quantization_config is {} / {}, not compressed-tensors pack-quantized",
            q["quant_method"], q["format"]
        ));
    }
    let w = &q["config_groups"]["group_0"]["weights"];
    let bits = w["num_bits"].as_u64().filter(|b| *b == 4 || *b == 8);
    let group = match (w["strategy"].as_str(), w["group_size"].as_u64()) {
        (Some("channel"), _) => Some(None),
        (Some("group"), Some(g)) if g > 0 => Some(Some(g)),
        _ => None,
    };
    match (bits, group) {
        (Some(bits), Some(group)) => Ok(Some(Ct { bits, group })),
        _ => Err(format!(
            "quantization_config group_0 weights: num_bits {} strategy {} group_size {} (grokit writes 4/8 bits, group or channel)",
            w["num_bits"], w["strategy"], w["group_size"]
        )),
    }
}

/// Which layout the names are: the one whose embedding / final-norm names are present.
fn identify(r: &StReader) -> Option<Layout> {
    LAYOUTS.iter().copied().find(|&l| {
        r.tensor(Role::Embed.info().st_name(l)).is_some()
            && r.tensor(Role::FinalNorm.info().st_name(l)).is_some()
    })
}

/// Run the checks on the directory `dir` holding the tensors `r` reads.
pub fn check_dir(dir: &Path, r: &StReader) -> StCheck {
    let mut k = StCheck::default();
    // 1. config.json and the layout.
    let cfg_path = dir.join("config.json");
    let cfg = match read_json(&cfg_path) {
        Ok(m) => m,
        Err(e) => {
            k.problems.push(format!("{}: {e}", cfg_path.display()));
            return k;
        }
    };
    let Some(layout) = identify(r) else {
        let first = r.tensors().next().map_or("(none)", |t| t.name.as_str());
        k.problems.push(format!(
            "foreign layout: the names are none of grokit's hf, sglang or jax layouts (first tensor: {first})"
        ));
        return k;
    };
    k.layout = Some(layout.name());
    let arch = cfg
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Json::as_str)
        .unwrap_or("(none)");
    if arch != architecture(layout) {
        k.problems.push(format!(
            "architectures[0] is {arch}; the {} layout's engines load {}",
            layout.name(),
            architecture(layout)
        ));
    }
    if cfg.get("model_type").and_then(Json::as_str) != Some("grok-1") {
        k.problems.push(format!(
            "model_type is {}, not \"grok-1\"",
            cfg.get("model_type").unwrap_or(&Json::Null)
        ));
    }
    // 2. Geometry from the one key table.
    let c = match read_config(KeyFormat::Hf, &|key| {
        cfg.get(key)
            .filter(|v| !v.is_null())
            .map(KeyValue::from_json)
    }) {
        Ok(c) => c,
        Err(e) => {
            k.problems.push(format!("config.json: {e}"));
            return k;
        }
    };
    if c.num_selected_experts == 0 || c.num_selected_experts > c.num_experts {
        k.problems.push(format!(
            "num_experts_per_tok {} with {} experts",
            c.num_selected_experts, c.num_experts
        ));
    }
    if c.q_width() == 0 || c.kv_width() == 0 || c.num_q_heads % c.num_kv_heads.max(1) != 0 {
        k.problems.push(format!(
            "{} query heads, {} KV heads of {}: not a Grok-1 attention",
            c.num_q_heads, c.num_kv_heads, c.key_size
        ));
    }
    let g = Config::grok1();
    if c.num_layers == g.num_layers && c.emb_size == g.emb_size && !c.is_grok1() {
        k.problems.push(format!(
            "claims Grok-1 (64 layers, d_model 6144) but its geometry is not Grok-1's: vocab {} ffn {} heads {}q/{}kv x {} experts {}",
            c.vocab_size, c.ffn_size, c.num_q_heads, c.num_kv_heads, c.key_size, c.num_experts
        ));
    }
    // 3 and 4. Names, shapes, dtypes.
    let ct = match ct_of(&cfg) {
        Ok(ct) => ct,
        Err(e) => {
            k.problems.push(e);
            None
        }
    };
    let wants = expected(&c, layout, ct);
    let float = cfg
        .get("torch_dtype")
        .and_then(Json::as_str)
        .and_then(|d| match d {
            "float32" => Some(DType::F32),
            "float16" => Some(DType::F16),
            "bfloat16" => Some(DType::BF16),
            _ => None,
        });
    let names: BTreeSet<&str> = wants.iter().map(|w| w.name.as_str()).collect();
    let missing: Vec<&str> = wants
        .iter()
        .map(|w| w.name.as_str())
        .filter(|n| r.tensor(n).is_none())
        .collect();
    let unexpected: Vec<&str> = r
        .tensors()
        .map(|t| t.name.as_str())
        .filter(|n| !names.contains(n))
        .collect();
    if !missing.is_empty() {
        k.problems.push(format!(
            "{} tensor(s) of the {} layout for this config missing: {}",
            missing.len(),
            layout.name(),
            list(&missing)
        ));
    }
    if !unexpected.is_empty() {
        k.problems.push(format!(
            "{} unexpected tensor(s) (engines skip them silently): {}",
            unexpected.len(),
            list(&unexpected)
        ));
    }
    let mut shape_bad = Vec::new();
    let mut i32_shapes = 0usize;
    let mut scale_dtypes = BTreeMap::new();
    for w in &wants {
        let Some(t) = r.tensor(&w.name) else {
            continue;
        };
        if t.shape != w.shape {
            shape_bad.push(format!(
                "{} is {:?}, expected {:?}",
                w.name, t.shape, w.shape
            ));
            continue;
        }
        match (w.dtype, w.values) {
            (Some(DType::I64), Some(v)) => {
                if t.dtype == DType::I32 {
                    i32_shapes += 1;
                } else if t.dtype != DType::I64 {
                    shape_bad.push(format!(
                        "{} is {}, expected I64",
                        w.name,
                        t.dtype.safetensors()
                    ));
                    continue;
                }
                let got = weight_shape(r, &w.name, t.dtype);
                if got != Some(v) {
                    shape_bad.push(format!("{} holds {got:?}, expected {v:?}", w.name));
                }
            }
            (Some(d), _) if t.dtype != d => {
                shape_bad.push(format!(
                    "{} is {}, expected {}",
                    w.name,
                    t.dtype.safetensors(),
                    d.safetensors()
                ));
            }
            (Some(_), _) => {}
            (None, _) if w.name.ends_with(".weight_scale") => {
                if !matches!(t.dtype, DType::BF16 | DType::F16 | DType::F32) {
                    shape_bad.push(format!("{} is {}", w.name, t.dtype.safetensors()));
                }
                *scale_dtypes.entry(t.dtype.safetensors()).or_insert(0usize) += 1;
            }
            (None, _) => match float {
                Some(d) if t.dtype != d => shape_bad.push(format!(
                    "{} is {}, but config.json's torch_dtype says {}",
                    w.name,
                    t.dtype.safetensors(),
                    d.safetensors()
                )),
                Some(_) => {}
                None => shape_bad.push(format!(
                    "{} is {}, and config.json has no float32/float16/bfloat16 torch_dtype",
                    w.name,
                    t.dtype.safetensors()
                )),
            },
        }
    }
    if !shape_bad.is_empty() {
        let first: Vec<&str> = shape_bad.iter().map(String::as_str).collect();
        k.problems.push(format!(
            "{} tensor(s) with a wrong shape, dtype or value: {}",
            shape_bad.len(),
            list(&first)
        ));
    }
    if i32_shapes > 0 {
        k.notes.push(format!(
            "{i32_shapes} weight_shape tensor(s) are I32: accepted by transformers and vLLM, but compressed-tensors writes I64"
        ));
    }
    if layout == Layout::Jax {
        return k;
    }
    // 5. Numerics switches.
    let num = |key: &str| cfg.get(key).and_then(Json::as_f64);
    for (key, want) in [
        ("attn_output_multiplier", c.attn_output_multiplier),
        ("embedding_multiplier_scale", c.embedding_multiplier_scale),
        ("output_multiplier_scale", c.output_multiplier_scale),
    ] {
        if num(key).is_none() {
            k.problems.push(format!(
                "{key} absent: engines then use their own default, not the release's {want}"
            ));
        }
    }
    if num("attn_logit_softcapping") != Some(30.0) {
        k.problems.push(format!(
            "attn_logit_softcapping is {}, the release caps attention logits at 30",
            cfg.get("attn_logit_softcapping").unwrap_or(&Json::Null)
        ));
    }
    for (key, want) in numerics_switches() {
        match cfg.get(key) {
            None => k.notes.push(format!(
                "{key} absent: vLLM 0.24.0 then departs from the release (router cap 30 / renormalised gates); write {want}"
            )),
            Some(v) if v.as_f64() == want.as_f64() && v.as_bool() == want.as_bool() => {}
            Some(v) => k.problems.push(format!(
                "{key} is {v}: not the release's numerics ({want}; grokit's modeling code refuses it)"
            )),
        }
    }
    if cfg.get("hidden_act").and_then(Json::as_str) != Some("gelu_pytorch_tanh") {
        k.problems.push(format!(
            "hidden_act is {}, the release's experts use tanh GELU (gelu_pytorch_tanh)",
            cfg.get("hidden_act").unwrap_or(&Json::Null)
        ));
    }
    for key in GROK2_KEYS {
        if cfg.contains_key(*key) {
            k.problems.push(format!(
                "{key} present: vLLM 0.24.0 then loads Grok-2's model"
            ));
        }
    }
    if layout == Layout::Sglang {
        for (key, want) in [
            ("load_presharded_moe", false),
            ("tie_word_embeddings", false),
        ] {
            if cfg.get(key).and_then(Json::as_bool) != Some(want) {
                k.problems.push(format!(
                    "{key} is {}: SGLang needs {want} for this layout",
                    cfg.get(key).unwrap_or(&Json::Null)
                ));
            }
        }
    }
    // 6. Remote code.
    if let Some(m) = auto_map(layout) {
        if cfg.get("auto_map") != Some(&m) {
            k.problems.push(format!(
                "auto_map is {}, expected {m}: AutoConfig cannot load model_type grok-1 without it",
                cfg.get("auto_map").unwrap_or(&Json::Null)
            ));
        }
    }
    for f in code_files(layout) {
        let p = dir.join(f.name);
        match crate::io::read_capped(&p, CKPT_MAX_CONFIG_BYTES) {
            Ok(Some(b)) if b == f.text.as_bytes() => {}
            Ok(Some(_)) => k.notes.push(format!(
                "{} differs from the file this grokit embeds (older grokit, or edited)",
                f.name
            )),
            Ok(None) => k.problems.push(format!("{}: too large", p.display())),
            Err(_) => k.problems.push(format!(
                "{} missing: `auto_map` points at it (trust_remote_code loads it)",
                f.name
            )),
        }
    }
    // 7. Marlin.
    if let Some(q) = ct {
        let mats: Vec<(String, u64, u64)> = wants
            .iter()
            .filter_map(|w| Some((w.name.strip_suffix(".weight_shape")?.to_string(), w.values?)))
            .map(|(n, [o, i])| (n, o, i))
            .collect();
        let (_, line) = marlin_line(
            q.group.map(|g| g as usize),
            mats.iter().map(|(n, o, i)| (n.as_str(), *o, *i)),
        );
        k.marlin = Some(line);
    }
    k
}

/// The two values of a `weight_shape` tensor (I32 or I64).
fn weight_shape(r: &StReader, name: &str, dtype: DType) -> Option<[u64; 2]> {
    let b = r.tensor_bytes(name).ok()?;
    let v: Vec<i64> = match dtype {
        DType::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        DType::I32 => b
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
            .collect(),
        _ => return None,
    };
    match v[..] {
        [a, b] => Some([u64::try_from(a).ok()?, u64::try_from(b).ok()?]),
        _ => None,
    }
}
