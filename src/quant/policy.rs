//! Which ggml type each tensor gets: `--quant` strings and llama-quantize-like presets.
//!
//! Why a policy and not one type: llama-quantize's named ftypes are mixtures. For an
//! 8-expert model (Grok-1) it bumps `attn_k`/`attn_v` to Q8_0, gives `attn_output` Q5_K under
//! Q4_K_M, `ffn_down_exps` Q6_K on the "use_more_bits" layers under Q4_K_M/Q5_K_M, and gives the
//! token embedding the *output* tensor's rule because Grok ties its output to the embedding
//! (output-formats.md §3.8, `llama_tensor_get_type` in `src/llama-quant.cpp`). Norms and the
//! router are never quantized. Reproducing that here lets grokit write a Q4_K_M file directly
//! from the release with the same type per tensor as `llama-quantize … Q4_K_M`.
//!
//! Syntax: comma-separated items; an item is a preset name (`q8_0`, `q4_0`, `q4_k_m`,
//! `q5_k_m`, `q6_k`, `f32`, `f16`, `bf16`) or `key=type` with keys `experts` (gate+up+down),
//! `gate`, `up`, `down`, `attn` (q+k+v+output), `attn_q`, `attn_k`, `attn_v`, `attn_output`,
//! `embed`. Explicit keys override the preset (including its bumps); a specific key beats a
//! general one whatever the order. Without a preset, unlisted tensors stay BF16 (the release's
//! own precision) — e.g. `experts=q4_k` quantizes only the experts.
//!
//! Fallback when a row length is not a multiple of the chosen type's block (llama.cpp's
//! table): Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, Q2_K/Q3_K→Q4_0 (llama.cpp uses IQ4_NL, which
//! grokit does not implement), Q8_K→Q8_0; then F16 if the row is still not a multiple of 32.
//! (Grok-1's rows are 6144, 32768 and 48·128 — all multiples of 256, so no fallback triggers.)

use super::{GgmlType, QuantError};

/// The role of a tensor, as far as type choice is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorClass {
    /// `token_embd.weight` (also the tied output projection).
    TokenEmbd,
    /// `blk.N.attn_q.weight`.
    AttnQ,
    /// `blk.N.attn_k.weight`.
    AttnK,
    /// `blk.N.attn_v.weight`.
    AttnV,
    /// `blk.N.attn_output.weight`.
    AttnOutput,
    /// `blk.N.ffn_gate_exps.weight`.
    FfnGateExps,
    /// `blk.N.ffn_up_exps.weight`.
    FfnUpExps,
    /// `blk.N.ffn_down_exps.weight`.
    FfnDownExps,
    /// Any norm weight (always F32).
    Norm,
    /// `blk.N.ffn_gate_inp.weight`, the MoE router (always F32).
    Router,
}

impl TensorClass {
    /// Classify a GGUF tensor name (`token_embd.weight`, `blk.N.attn_q.weight`, …) and return
    /// its layer index. Any `*norm*` tensor is [`TensorClass::Norm`]; `output.weight` (if a
    /// writer emits one) is treated like the tied embedding. `None` for unknown names.
    pub fn from_gguf_name(name: &str) -> Option<(TensorClass, Option<usize>)> {
        let base = name.strip_suffix(".weight").unwrap_or(name);
        let (layer, rest) = match base.strip_prefix("blk.") {
            Some(r) => {
                let (n, rest) = r.split_once('.')?;
                (Some(n.parse::<usize>().ok()?), rest)
            }
            None => (None, base),
        };
        if rest.contains("norm") {
            return Some((TensorClass::Norm, layer));
        }
        let class = match (layer.is_some(), rest) {
            (false, "token_embd" | "output") => TensorClass::TokenEmbd,
            (true, "attn_q") => TensorClass::AttnQ,
            (true, "attn_k") => TensorClass::AttnK,
            (true, "attn_v") => TensorClass::AttnV,
            (true, "attn_output") => TensorClass::AttnOutput,
            (true, "ffn_gate_exps") => TensorClass::FfnGateExps,
            (true, "ffn_up_exps") => TensorClass::FfnUpExps,
            (true, "ffn_down_exps") => TensorClass::FfnDownExps,
            (true, "ffn_gate_inp") => TensorClass::Router,
            _ => return None,
        };
        Some((class, layer))
    }
}

/// A llama-quantize-like preset.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Everything F32.
    F32,
    /// Everything F16.
    F16,
    /// Everything BF16.
    BF16,
    /// Q8_0 (LLAMA_FTYPE_MOSTLY_Q8_0).
    Q8_0,
    /// Q4_0 (LLAMA_FTYPE_MOSTLY_Q4_0).
    Q4_0,
    /// Q4_K_M (LLAMA_FTYPE_MOSTLY_Q4_K_M).
    Q4_K_M,
    /// Q5_K_M (LLAMA_FTYPE_MOSTLY_Q5_K_M).
    Q5_K_M,
    /// Q6_K (LLAMA_FTYPE_MOSTLY_Q6_K).
    Q6_K,
}

/// Every preset under its `--quant` / `--preset` name, in the order `--help` lists them: the
/// one place a preset is named (parsing and the CLI's value lists read it).
pub const PRESETS: &[(&str, Preset)] = &[
    ("f32", Preset::F32),
    ("f16", Preset::F16),
    ("bf16", Preset::BF16),
    ("q8_0", Preset::Q8_0),
    ("q4_0", Preset::Q4_0),
    ("q4_k_m", Preset::Q4_K_M),
    ("q5_k_m", Preset::Q5_K_M),
    ("q6_k", Preset::Q6_K),
];

impl Preset {
    fn parse(s: &str) -> Option<Preset> {
        PRESETS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, p)| p)
    }
    /// The preset's default tensor type (llama-quantize `default_type`).
    pub fn default_type(self) -> GgmlType {
        match self {
            Preset::F32 => GgmlType::F32,
            Preset::F16 => GgmlType::F16,
            Preset::BF16 => GgmlType::BF16,
            Preset::Q8_0 => GgmlType::Q8_0,
            Preset::Q4_0 => GgmlType::Q4_0,
            Preset::Q4_K_M => GgmlType::Q4_K,
            Preset::Q5_K_M => GgmlType::Q5_K,
            Preset::Q6_K => GgmlType::Q6_K,
        }
    }
    /// llama_ftype number (output-formats.md §2.2).
    pub fn ftype(self) -> u32 {
        match self {
            Preset::F32 => 0,
            Preset::F16 => 1,
            Preset::BF16 => 32,
            Preset::Q8_0 => 7,
            Preset::Q4_0 => 2,
            Preset::Q4_K_M => 15,
            Preset::Q5_K_M => 17,
            Preset::Q6_K => 18,
        }
    }
}

/// The type chosen for one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Type to write.
    pub ty: GgmlType,
    /// Why the requested type was replaced, if it was (row length not a block multiple).
    pub fallback_reason: Option<String>,
}

const N_OVR: usize = 8;
const OVR_EMBED: usize = 0;
const OVR_Q: usize = 1;
const OVR_K: usize = 2;
const OVR_V: usize = 3;
const OVR_O: usize = 4;
const OVR_GATE: usize = 5;
const OVR_UP: usize = 6;
const OVR_DOWN: usize = 7;

/// A parsed `--quant` policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    preset: Option<Preset>,
    /// Per-slot override and its specificity (2 = exact key, 1 = group key).
    overrides: [Option<(GgmlType, u8)>; N_OVR],
}

fn parse_type(v: &str, item: &str) -> Result<GgmlType, QuantError> {
    let ty = GgmlType::from_name(v).ok_or_else(|| QuantError::Unsupported {
        what: format!("--quant {item}: unknown type"),
    })?;
    match ty {
        GgmlType::Q8_1 | GgmlType::Q8_K => Err(QuantError::Unsupported {
            what: format!("--quant {item}: {ty} is an activation format"),
        }),
        t if !super::is_supported(t) => Err(QuantError::Unsupported {
            what: format!("--quant {item}: {ty}"),
        }),
        t => Ok(t),
    }
}

impl Policy {
    /// Parse a `--quant` string (see the module docs).
    pub fn parse(s: &str) -> Result<Policy, QuantError> {
        let mut p = Policy {
            preset: None,
            overrides: [None; N_OVR],
        };
        let mut any = false;
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            any = true;
            let Some((k, v)) = item.split_once('=') else {
                let pr = Preset::parse(item).ok_or_else(|| QuantError::Unsupported {
                    what: format!("--quant {item}: unknown preset"),
                })?;
                if p.preset.is_some_and(|old| old != pr) {
                    return Err(QuantError::Unsupported {
                        what: format!("--quant {s}: two presets"),
                    });
                }
                p.preset = Some(pr);
                continue;
            };
            let ty = parse_type(v.trim(), item)?;
            let (slots, spec): (&[usize], u8) = match k.trim().to_ascii_lowercase().as_str() {
                "experts" => (&[OVR_GATE, OVR_UP, OVR_DOWN], 1),
                "attn" => (&[OVR_Q, OVR_K, OVR_V, OVR_O], 1),
                "gate" => (&[OVR_GATE], 2),
                "up" => (&[OVR_UP], 2),
                "down" => (&[OVR_DOWN], 2),
                "attn_q" => (&[OVR_Q], 2),
                "attn_k" => (&[OVR_K], 2),
                "attn_v" => (&[OVR_V], 2),
                "attn_output" => (&[OVR_O], 2),
                "embed" => (&[OVR_EMBED], 2),
                _ => {
                    return Err(QuantError::Unsupported {
                        what: format!("--quant {item}: unknown key"),
                    })
                }
            };
            for &i in slots {
                if p.overrides[i].is_none_or(|(_, old)| old <= spec) {
                    p.overrides[i] = Some((ty, spec));
                }
            }
        }
        if !any {
            return Err(QuantError::Unsupported {
                what: "--quant: empty".to_string(),
            });
        }
        Ok(p)
    }

    /// A policy that is just a preset.
    pub fn preset(preset: Preset) -> Policy {
        Policy {
            preset: Some(preset),
            overrides: [None; N_OVR],
        }
    }

    /// The preset, if one was given.
    pub fn preset_of(&self) -> Option<Preset> {
        self.preset
    }

    /// The type a `key=type` item names for `class`, if one does (`None` for classes left to
    /// the preset or, without a preset, not listed). `grokit quantize` keeps unlisted tensors
    /// in their input type instead of the BF16 default of [`Policy::choose`].
    pub fn explicit_type(&self, class: TensorClass) -> Option<GgmlType> {
        Self::slot(class)
            .and_then(|s| self.overrides.get(s).copied().flatten())
            .map(|(t, _)| t)
    }

    fn slot(class: TensorClass) -> Option<usize> {
        Some(match class {
            TensorClass::TokenEmbd => OVR_EMBED,
            TensorClass::AttnQ => OVR_Q,
            TensorClass::AttnK => OVR_K,
            TensorClass::AttnV => OVR_V,
            TensorClass::AttnOutput => OVR_O,
            TensorClass::FfnGateExps => OVR_GATE,
            TensorClass::FfnUpExps => OVR_UP,
            TensorClass::FfnDownExps => OVR_DOWN,
            TensorClass::Norm | TensorClass::Router => return None,
        })
    }

    /// The type llama-quantize's rules give `class` under `preset` (8 experts, no output
    /// tensor), before the block-size check.
    fn preset_type(
        preset: Preset,
        class: TensorClass,
        layer: Option<usize>,
        n_layers: usize,
        row_len: u64,
    ) -> GgmlType {
        let def = preset.default_type();
        if !def.is_quantized() {
            return def; // llama-quantize applies no per-tensor rules to F32/F16/BF16
        }
        match class {
            // Tied output: Q8_0 stays Q8_0 (also when the row does not fit the default block),
            // anything else becomes Q6_K.
            TensorClass::TokenEmbd => {
                if def == GgmlType::Q8_0 || !row_len.is_multiple_of(def.block_elems()) {
                    GgmlType::Q8_0
                } else {
                    GgmlType::Q6_K
                }
            }
            TensorClass::AttnK | TensorClass::AttnV => GgmlType::Q8_0,
            TensorClass::AttnOutput if preset == Preset::Q4_K_M => GgmlType::Q5_K,
            TensorClass::FfnDownExps
                if matches!(preset, Preset::Q4_K_M | Preset::Q5_K_M)
                    && layer.is_some_and(|i| use_more_bits(i, n_layers)) =>
            {
                GgmlType::Q6_K
            }
            _ => def,
        }
    }

    /// Choose the type for one tensor. `layer` is the block index (None for token_embd),
    /// `row_len` the GGUF row length (`ne[0]`).
    pub fn choose(
        &self,
        class: TensorClass,
        layer: Option<usize>,
        n_layers: usize,
        row_len: u64,
    ) -> Choice {
        let Some(slot) = Self::slot(class) else {
            return Choice {
                ty: GgmlType::F32,
                fallback_reason: None,
            };
        };
        let want = match (self.overrides[slot], self.preset) {
            (Some((t, _)), _) => t,
            (None, Some(p)) => Self::preset_type(p, class, layer, n_layers, row_len),
            (None, None) => GgmlType::BF16,
        };
        fit_row(want, row_len)
    }

    /// `general.file_type` (llama_ftype): the preset's, or for ad-hoc policies the "mostly"
    /// ftype of the experts' type (they hold ~95% of Grok's weights), as llama.cpp's loader
    /// would guess it.
    pub fn file_type(&self) -> u32 {
        if let Some(p) = self.preset {
            if self.overrides.iter().all(Option::is_none) {
                return p.ftype();
            }
        }
        self.choose(TensorClass::FfnUpExps, Some(0), 1, 32768)
            .ty
            .mostly_ftype()
    }
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`: `i < n/8 || i >= 7n/8 || (i − n/8) % 3 == 2`
/// (integer division; C's `%` on a negative left side cannot occur since the first test
/// catches i < n/8). For n = 64: layers 0–7, 56–63 and 10, 13, …, 55 → 32 of 64.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= n.saturating_mul(7) / 8 || (i - n / 8) % 3 == 2
}

/// Apply the block-size fallback to a wanted type.
pub fn fit_row(want: GgmlType, row_len: u64) -> Choice {
    if row_len.is_multiple_of(want.block_elems()) {
        return Choice {
            ty: want,
            fallback_reason: None,
        };
    }
    let next = match want {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K | GgmlType::Q8_K => GgmlType::Q8_0,
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        _ => GgmlType::F16,
    };
    let ty = if row_len.is_multiple_of(next.block_elems()) {
        next
    } else {
        GgmlType::F16
    };
    Choice {
        ty,
        fallback_reason: Some(format!(
            "row length {row_len} is not a multiple of {want}'s {}-element block; using {ty}",
            want.block_elems()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GgmlType as G;
    use TensorClass as C;

    #[test]
    fn q4_k_m_matches_llama_quantize_for_grok() {
        let p = Policy::parse("q4_k_m").unwrap();
        assert_eq!(p.file_type(), 15);
        let ch = |c, l| p.choose(c, l, 64, 6144).ty;
        assert_eq!(ch(C::TokenEmbd, None), G::Q6_K);
        assert_eq!(ch(C::AttnQ, Some(3)), G::Q4_K);
        assert_eq!(ch(C::AttnK, Some(3)), G::Q8_0);
        assert_eq!(ch(C::AttnV, Some(3)), G::Q8_0);
        assert_eq!(ch(C::AttnOutput, Some(3)), G::Q5_K);
        assert_eq!(ch(C::FfnGateExps, Some(3)), G::Q4_K);
        assert_eq!(ch(C::Norm, Some(3)), G::F32);
        assert_eq!(ch(C::Router, Some(3)), G::F32);
        let more: Vec<usize> = (0..64)
            .filter(|&i| ch(C::FfnDownExps, Some(i)) == G::Q6_K)
            .collect();
        assert_eq!(more.len(), 32);
        assert_eq!(&more[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 10, 13]);
        assert!(more.contains(&56) && more.contains(&63) && !more.contains(&8));
    }

    #[test]
    fn other_presets() {
        let q8 = Policy::parse("q8_0").unwrap();
        assert_eq!(q8.file_type(), 7);
        assert_eq!(q8.choose(C::TokenEmbd, None, 64, 6144).ty, G::Q8_0);
        assert_eq!(q8.choose(C::FfnDownExps, Some(0), 64, 32768).ty, G::Q8_0);
        let q40 = Policy::parse("q4_0").unwrap();
        assert_eq!(q40.choose(C::TokenEmbd, None, 64, 6144).ty, G::Q6_K);
        assert_eq!(q40.choose(C::AttnK, Some(1), 64, 6144).ty, G::Q8_0);
        assert_eq!(q40.choose(C::AttnOutput, Some(1), 64, 6144).ty, G::Q4_0);
        let q6 = Policy::parse("q6_k").unwrap();
        assert_eq!(q6.file_type(), 18);
        assert_eq!(q6.choose(C::AttnOutput, Some(1), 64, 6144).ty, G::Q6_K);
        let bf = Policy::parse("bf16").unwrap();
        assert_eq!(bf.file_type(), 32);
        assert_eq!(bf.choose(C::AttnK, Some(1), 64, 6144).ty, G::BF16);
        assert_eq!(Policy::parse("q5_k_m").unwrap().file_type(), 17);
    }

    #[test]
    fn overrides() {
        let p = Policy::parse("experts=q4_k,attn=q8_0,embed=q6_k").unwrap();
        assert_eq!(p.choose(C::FfnDownExps, Some(0), 64, 32768).ty, G::Q4_K);
        assert_eq!(p.choose(C::AttnOutput, Some(0), 64, 6144).ty, G::Q8_0);
        assert_eq!(p.choose(C::TokenEmbd, None, 64, 6144).ty, G::Q6_K);
        assert_eq!(p.file_type(), 15);
        // Specific beats general regardless of order; unlisted stay BF16 without a preset.
        let p = Policy::parse("down=q6_k,experts=q4_0").unwrap();
        assert_eq!(p.choose(C::FfnDownExps, Some(0), 64, 32768).ty, G::Q6_K);
        assert_eq!(p.choose(C::FfnUpExps, Some(0), 64, 6144).ty, G::Q4_0);
        assert_eq!(p.choose(C::AttnQ, Some(0), 64, 6144).ty, G::BF16);
        let p = Policy::parse("q4_k_m,attn_k=q4_k").unwrap();
        assert_eq!(p.choose(C::AttnK, Some(0), 64, 6144).ty, G::Q4_K);
        assert_eq!(p.choose(C::AttnV, Some(0), 64, 6144).ty, G::Q8_0);
        for bad in [
            "",
            "q3_k_m",
            "experts=q9",
            "foo=q8_0",
            "experts=q8_k",
            "q8_0,q4_0",
            "embed=i8",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn classify_gguf_names() {
        assert_eq!(
            TensorClass::from_gguf_name("token_embd.weight"),
            Some((C::TokenEmbd, None))
        );
        assert_eq!(
            TensorClass::from_gguf_name("output_norm.weight"),
            Some((C::Norm, None))
        );
        assert_eq!(
            TensorClass::from_gguf_name("blk.12.attn_k.weight"),
            Some((C::AttnK, Some(12)))
        );
        assert_eq!(
            TensorClass::from_gguf_name("blk.0.attn_output_norm.weight"),
            Some((C::Norm, Some(0)))
        );
        assert_eq!(
            TensorClass::from_gguf_name("blk.63.ffn_down_exps.weight"),
            Some((C::FfnDownExps, Some(63)))
        );
        assert_eq!(
            TensorClass::from_gguf_name("blk.5.ffn_gate_inp.weight"),
            Some((C::Router, Some(5)))
        );
        assert_eq!(
            TensorClass::from_gguf_name("blk.5.layer_output_norm.weight"),
            Some((C::Norm, Some(5)))
        );
        assert_eq!(TensorClass::from_gguf_name("blk.x.attn_q.weight"), None);
        assert_eq!(TensorClass::from_gguf_name("blk.1.ffn_up.weight"), None);
    }

    #[test]
    fn fallbacks() {
        let c = fit_row(G::Q4_K, 6144 + 32);
        assert_eq!(c.ty, G::Q5_0);
        assert!(c.fallback_reason.is_some());
        assert_eq!(fit_row(G::Q5_K, 96).ty, G::Q5_1);
        assert_eq!(fit_row(G::Q6_K, 96).ty, G::Q8_0);
        assert_eq!(fit_row(G::Q6_K, 100).ty, G::F16);
        assert_eq!(fit_row(G::Q8_0, 100).ty, G::F16);
        assert_eq!(
            fit_row(G::Q8_0, 96),
            Choice {
                ty: G::Q8_0,
                fallback_reason: None
            }
        );
        let p = Policy::parse("q4_k_m").unwrap();
        // token_embd whose row does not fit Q4_K's block gets Q8_0 (llama.cpp's output rule).
        assert_eq!(p.choose(C::TokenEmbd, None, 64, 96).ty, G::Q8_0);
    }
}
