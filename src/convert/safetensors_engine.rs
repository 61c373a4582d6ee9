//! What a safetensors output needs beyond its tensors for the engines to load it *as Grok-1*
//! (docs/decisions/0004-engine-layouts.md, docs/formats/engines.md): the Python modeling code
//! grokit ships for transformers, the config fields each layout adds (written once, here, as
//! data), and the Marlin group-size report for compressed-tensors outputs.
//!
//! The Python files are source files of this repository (`src/convert/hf_code/`), tested in CI
//! under transformers 4.57 and 5.x by `tests/interop/hf/hf_transformers.py`, and embedded in the
//! binary byte for byte.

use super::plan::{ct_group, Layout, StDtype};
use crate::model::roles::fill;
use crate::model::{Config, ROLES};
use serde_json::{json, Value as Json};

/// A Python file written beside the shards.
#[derive(Clone, Copy, Debug)]
pub struct CodeFile {
    /// File name (also the module `auto_map` names).
    pub name: &'static str,
    /// The file's bytes.
    pub text: &'static str,
    /// The layouts that write it.
    pub layouts: &'static [Layout],
}

/// grokit's Grok-1 for transformers. SGLang builds its config with `AutoConfig` (so it needs
/// the configuration class) but not its model (its names are not SGLang's).
pub const CODE_FILES: &[CodeFile] = &[
    CodeFile {
        name: "configuration_grok1.py",
        text: include_str!("hf_code/configuration_grok1.py"),
        layouts: &[Layout::Hf, Layout::Sglang],
    },
    CodeFile {
        name: "modeling_grok1.py",
        text: include_str!("hf_code/modeling_grok1.py"),
        layouts: &[Layout::Hf],
    },
];

/// The code files `layout` writes.
pub fn code_files(layout: Layout) -> impl Iterator<Item = &'static CodeFile> {
    CODE_FILES
        .iter()
        .filter(move |f| f.layouts.contains(&layout))
}

/// `architectures[0]` of each layout's `config.json`.
pub fn architecture(layout: Layout) -> &'static str {
    match layout {
        Layout::Hf => "Grok1ModelForCausalLM",
        Layout::Jax => "GrokForCausalLM",
        Layout::Sglang => "Grok1ForCausalLM",
    }
}

/// `auto_map` of each layout (what `trust_remote_code=True` loads).
pub fn auto_map(layout: Layout) -> Option<Json> {
    match layout {
        Layout::Hf => Some(json!({
            "AutoConfig": "configuration_grok1.Grok1Config",
            "AutoModel": "modeling_grok1.Grok1Model",
            "AutoModelForCausalLM": "modeling_grok1.Grok1ModelForCausalLM",
        })),
        Layout::Sglang => Some(json!({"AutoConfig": "configuration_grok1.Grok1Config"})),
        Layout::Jax => None,
    }
}

/// The switches that keep an engine on the release's numerics (docs/formats/engines.md):
/// vLLM 0.24.0 caps router logits at 30 unless `router_logit_softcapping` ≤ 0 and renormalises
/// the top-2 gates unless `moe_renormalize` is false. `inspect` checks these values.
pub fn numerics_switches() -> [(&'static str, Json); 2] {
    [
        ("router_logit_softcapping", json!(0.0)),
        ("moe_renormalize", json!(false)),
    ]
}

/// Keys that make vLLM 0.24.0 load Grok-2's model instead of Grok-1's: never written.
pub const GROK2_KEYS: &[&str] = &["moe_intermediate_size", "residual_moe"];

/// The fields SGLang 0.5.23's `grok.py` reads beyond the shared ones, with the release's values
/// (docs/decisions/0004-engine-layouts.md, section "`config.json`, `--layout sglang`").
fn sglang_fields() -> Vec<(&'static str, Json)> {
    vec![
        ("rope_rotate_half_dims", json!(false)),
        ("attn_logit_softcapping_method", json!("tanh")),
        // SGLang defaults this to true when TP > 1 and then looks for *-TP-NNN files.
        ("load_presharded_moe", json!(false)),
        ("load_presharded_attn", json!(false)),
        ("load_presharded_mlp", json!(false)),
        ("load_presharded_embedding", json!(false)),
        ("replicate_lm_head", json!(false)),
        ("replicate_embedding", json!(false)),
        // The layout writes its own lm_head.weight (SGLang's head is untied).
        ("tie_word_embeddings", json!(false)),
    ]
}

/// Add the layout's engine fields to a `config.json` that already holds the configuration's
/// keys and `torch_dtype`: `architectures`, `auto_map`, `dtype` (transformers ≥ 4.56's name
/// for `torch_dtype`; both written, equal) and the numerics switches; the jax layout gets
/// only `architectures` (no engine loads it as Grok-1 by itself).
pub fn add_engine_fields(v: &mut Json, layout: Layout) {
    v["architectures"] = json!([architecture(layout)]);
    if layout == Layout::Jax {
        return;
    }
    if let Some(m) = auto_map(layout) {
        v["auto_map"] = m;
    }
    v["dtype"] = v["torch_dtype"].clone();
    for (k, x) in numerics_switches() {
        v[k] = x;
    }
    if layout == Layout::Sglang {
        for (k, x) in sglang_fields() {
            v[k] = x;
        }
    }
}

/// Group sizes Marlin kernels run (−1 = channel) and the width rules every quantized matrix
/// must meet: SGLang 0.5.23 / vLLM 0.24.0 `marlin_utils.py` (`GPTQ_MARLIN_MIN_THREAD_K/N`).
pub const MARLIN_GROUPS: &[usize] = &[32, 64, 128];
/// Input widths must be multiples of this.
pub const MARLIN_IN: u64 = 128;
/// Output widths must be multiples of this.
pub const MARLIN_OUT: u64 = 64;

/// The Marlin verdict for compressed-tensors matrices with group `group` (`None` = channel).
/// `matrices` yields (name, out, in).
pub fn marlin_line<'a>(
    group: Option<usize>,
    mut matrices: impl Iterator<Item = (&'a str, u64, u64)>,
) -> (bool, String) {
    let group_ok = group.is_none_or(|g| MARLIN_GROUPS.contains(&g));
    let bad = matrices.find(|&(_, o, i)| i % MARLIN_IN != 0 || o % MARLIN_OUT != 0);
    if group_ok && bad.is_none() {
        return (
            true,
            "Marlin-compatible (SGLang/vLLM GPU kernels)".to_string(),
        );
    }
    let g = group.map_or("channel".to_string(), |g| g.to_string());
    let first = match bad {
        Some((n, o, i)) => format!("; first failing matrix: {n} [{o}, {i}]"),
        None => String::new(),
    };
    (
        false,
        format!(
            "group size {g} (largest lossless for this geometry): not supported by Marlin kernels \
             (group sizes -1/32/64/128, in % {MARLIN_IN}, out % {MARLIN_OUT} — SGLang 0.5.23 / \
             vLLM 0.24.0 `marlin_utils.py`){first}; loads in transformers and vLLM's Triton path"
        ),
    )
}

/// The Marlin line for a conversion of `c` to `dtype` in `layout` (None for float outputs).
/// Matrices are named as layer 0 (expert 0) names them: every layer has the same widths.
pub fn marlin_report(c: &Config, layout: Layout, dtype: StDtype) -> Option<String> {
    let StDtype::Ct(_) = dtype else {
        return None;
    };
    let shapes: Vec<(String, u64, u64)> = ROLES
        .iter()
        .filter(|r| r.quantized)
        .map(|r| {
            let s = r.piece_shape(c);
            let name = fill(r.st_name(layout), Some(0), Some(0));
            (name, s[0], s.get(1).copied().unwrap_or(0))
        })
        .collect();
    let it = shapes.iter().map(|(n, o, i)| (n.as_str(), *o, *i));
    Some(marlin_line(ct_group(c), it).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marlin_grok1_yes_tiny_no() {
        let g = marlin_report(&Config::grok1(), Layout::Hf, StDtype::Ct(4)).unwrap();
        assert!(g.starts_with("Marlin-compatible"), "{g}");
        let t = marlin_report(&Config::tiny(), Layout::Hf, StDtype::Ct(8)).unwrap();
        let first =
            "first failing matrix: model.layers.0.moe_block.experts.0.linear.weight [344, 64]";
        assert!(t.contains("group size channel") && t.contains(first), "{t}");
        let bf16 = StDtype::Float(crate::base::DType::BF16);
        assert!(marlin_report(&Config::grok1(), Layout::Hf, bf16).is_none());
    }

    #[test]
    fn code_files_per_layout() {
        let names = |l| code_files(l).map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(
            names(Layout::Hf),
            ["configuration_grok1.py", "modeling_grok1.py"]
        );
        assert_eq!(names(Layout::Sglang), ["configuration_grok1.py"]);
        assert!(names(Layout::Jax).is_empty());
        assert!(CODE_FILES.iter().all(|f| f.text.contains("Apache")));
    }
}
