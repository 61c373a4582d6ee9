//! Which ggml type each tensor gets: `--quant` strings and llama-quantize's presets.
//!
//! Why a policy and not one type: llama-quantize's named ftypes are mixtures. For an
//! 8-expert model (Grok-1) it bumps `attn_k`/`attn_v` to Q8_0, gives `attn_output` Q5_K under
//! Q4_K_M, IQ4_XS, IQ3_S and more, `ffn_down_exps` more bits on some layers, and gives the
//! token embedding the *output* tensor's rule because Grok ties its output to the embedding.
//! [`preset_type`] is a port of `llama_tensor_get_type_impl` (llama.cpp `src/llama-quant.cpp`)
//! for the tensors of the `grok` architecture, with the model facts it reads ([`ModelInfo`]:
//! layer count, expert count, GQA ratio, whether the output is tied, whether an importance
//! matrix is given). Reproducing it lets grokit write an IQ4_XS or Q4_K_M file directly from the
//! release with the same type per tensor as `llama-quantize … IQ4_XS`. Norms and the router
//! are never quantized.
//!
//! Syntax: comma-separated items; an item is a preset name (any llama-quantize name grokit
//! implements, see [`super::ftype::LLAMA_FTYPES`]: `q8_0`, `q4_k_m`, `iq4_xs`, `iq2_m`, …, plus
//! `f32`, `f16`, `bf16`) or `key=type` with keys `experts` (gate+up+down), `gate`, `up`, `down`,
//! `attn` (q+k+v+output), `attn_q`, `attn_k`, `attn_v`, `attn_output`, `embed`, `output`.
//! Explicit keys override the preset (including its rules), as llama-quantize's
//! `--tensor-type`; a specific key beats a general one whatever the order. Without a preset,
//! unlisted tensors stay BF16 (the release's own precision) — e.g. `experts=q4_k` quantizes
//! only the experts.
//!
//! Fallback when a row length is not a multiple of the chosen type's block (llama-quantize's
//! `tensor_type_fallback`): the 256-element i-quants → IQ4_NL, Q2_K/Q3_K → Q4_0, Q4_K → Q5_0,
//! Q5_K → Q5_1, Q6_K → Q8_0, Q8_K → Q8_0; then F16 if the row is still not a multiple of 32.
//! (Grok-1's rows are 6144, 32768 and 48·128 — all multiples of 256, so none triggers there.)
//!
//! What needs an importance matrix (llama-quantize's `tensor_requires_imatrix`): IQ2_XXS,
//! IQ2_XS, IQ2_S, IQ3_XXS, IQ1_S, IQ1_M everywhere but the embedding/output, and Q2_K under
//! the Q2_K_S preset ([`Choice::needs_imatrix`]).

pub use super::ftype::Preset;
use super::ftype::LLAMA_FTYPES;
use super::{GgmlType, QuantError};
use std::sync::LazyLock;

/// The role of a tensor, as far as type choice is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorClass {
    /// `token_embd.weight` (also the output projection when the model ties them, as Grok does).
    TokenEmbd,
    /// `output.weight`, when a file has a separate output projection.
    Output,
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
    /// its layer index. Any `*norm*` tensor is [`TensorClass::Norm`]. `None` for unknown names.
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
            (false, "token_embd") => TensorClass::TokenEmbd,
            (false, "output") => TensorClass::Output,
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

/// Every preset grokit implements under its `--quant` / `--preset` name (llama-quantize's name,
/// lower-cased), in [`LLAMA_FTYPES`]'s order: the CLI's value lists read this, and the names
/// themselves are written once, in that table.
pub static PRESETS: LazyLock<Vec<(&'static str, Preset)>> = LazyLock::new(|| {
    LLAMA_FTYPES
        .iter()
        .filter(|r| r.preset.is_supported())
        .map(|r| (r.name, r.preset))
        .collect()
});

/// The model facts llama-quantize's rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Block count (`grok.block_count`).
    pub n_layers: usize,
    /// Experts per MoE layer (`grok.expert_count`).
    pub n_expert: usize,
    /// Query heads per KV head (`head_count / head_count_kv`).
    pub n_gqa: usize,
    /// The token embedding doubles as the output projection (no `output.weight`).
    pub tied_output: bool,
    /// An importance matrix is given (some presets choose differently with one).
    pub has_imatrix: bool,
}

impl ModelInfo {
    /// Grok-1's facts for `n_layers` layers (8 experts, 48 query / 8 KV heads, tied output).
    pub fn grok(n_layers: usize) -> ModelInfo {
        ModelInfo {
            n_layers,
            n_expert: 8,
            n_gqa: 6,
            tied_output: true,
            has_imatrix: false,
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
    /// llama-quantize refuses this tensor's type without an importance matrix.
    pub needs_imatrix: bool,
}

const N_OVR: usize = 9;
const OVR_EMBED: usize = 0;
const OVR_Q: usize = 1;
const OVR_K: usize = 2;
const OVR_V: usize = 3;
const OVR_O: usize = 4;
const OVR_GATE: usize = 5;
const OVR_UP: usize = 6;
const OVR_DOWN: usize = 7;
const OVR_OUTPUT: usize = 8;

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
                let pr = Preset::from_name(item).ok_or_else(|| QuantError::Unsupported {
                    what: format!("--quant {item}: unknown preset"),
                })?;
                if !pr.is_supported() {
                    return Err(QuantError::Unsupported {
                        what: format!(
                            "--quant {item}: preset {} (its {} type)",
                            pr.name(),
                            pr.default_type()
                        ),
                    });
                }
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
                "output" => (&[OVR_OUTPUT], 2),
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
            TensorClass::Output => OVR_OUTPUT,
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

    /// Choose the type for one tensor. `layer` is the block index (None for token_embd and
    /// output), `row_len` the GGUF row length (`ne[0]`).
    pub fn choose(
        &self,
        class: TensorClass,
        layer: Option<usize>,
        info: &ModelInfo,
        row_len: u64,
    ) -> Choice {
        let Some(slot) = Self::slot(class) else {
            return Choice {
                ty: GgmlType::F32,
                fallback_reason: None,
                needs_imatrix: false,
            };
        };
        let want = match (self.overrides[slot], self.preset) {
            (Some((t, _)), _) => t,
            (None, Some(p)) => preset_type(p, class, layer, info, row_len),
            (None, None) => GgmlType::BF16,
        };
        let mut c = fit_row(want, row_len);
        c.needs_imatrix = requires_imatrix(c.ty, class, self.preset);
        c
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
        self.choose(TensorClass::FfnUpExps, Some(0), &ModelInfo::grok(1), 32768)
            .ty
            .mostly_ftype()
    }
}

/// llama-quantize's `tensor_requires_imatrix`: the very-low-bit types need an importance matrix
/// (except on the embedding and output), and Q2_K does under the Q2_K_S preset.
pub fn requires_imatrix(ty: GgmlType, class: TensorClass, preset: Option<Preset>) -> bool {
    if matches!(class, TensorClass::TokenEmbd | TensorClass::Output) {
        return false;
    }
    match ty {
        GgmlType::IQ3_XXS
        | GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ1_M
        | GgmlType::IQ1_S => true,
        GgmlType::Q2_K => preset == Some(Preset::Q2_K_S),
        _ => false,
    }
}

/// The type llama-quantize's rules (`llama_tensor_get_type_impl`, non-Falcon, non-70B, no
/// fused QKV: the `grok` architecture's tensors) give `class` under `preset`, before the
/// block-size fallback. Layer-indexed counters (`i_attention_wv`, `i_ffn_down`) equal the layer
/// index because llama-quantize visits tensors sorted by layer and each layer has one of each.
pub fn preset_type(
    preset: Preset,
    class: TensorClass,
    layer: Option<usize>,
    m: &ModelInfo,
    row_len: u64,
) -> GgmlType {
    use GgmlType as G;
    use Preset as P;
    let def = preset.default_type();
    if !def.is_quantized() {
        return def; // llama-quantize applies no per-tensor rules to F32/F16/BF16
    }
    let (i, n) = (layer.unwrap_or(0), m.n_layers);
    let more = use_more_bits(i, n);
    let ft = preset;
    let is = |ps: &[Preset]| ps.contains(&ft);
    if class == TensorClass::Output || (m.tied_output && class == TensorClass::TokenEmbd) {
        return if !row_len.is_multiple_of(def.block_elems()) {
            G::Q8_0
        } else if is(&[
            P::IQ2_XXS,
            P::IQ2_XS,
            P::IQ3_XXS,
            P::IQ1_S,
            P::IQ2_S,
            P::IQ2_M,
            P::IQ1_M,
        ]) {
            G::Q5_K
        } else if def != G::Q8_0 {
            G::Q6_K
        } else {
            def
        };
    }
    if class == TensorClass::TokenEmbd {
        return if is(&[P::IQ2_XXS, P::IQ2_XS, P::IQ1_S, P::IQ1_M]) {
            G::Q2_K
        } else if is(&[P::IQ2_S, P::IQ2_M, P::IQ3_XXS]) {
            G::IQ3_S
        } else {
            def
        };
    }
    let iq2_s_m = is(&[P::IQ2_S, P::IQ2_M]);
    if is(&[
        P::IQ2_XXS,
        P::IQ2_XS,
        P::IQ1_S,
        P::IQ2_S,
        P::IQ2_M,
        P::IQ1_M,
    ]) {
        return match class {
            TensorClass::AttnV if m.n_gqa >= 4 || m.n_expert >= 4 => G::Q4_K,
            TensorClass::AttnV if iq2_s_m => G::IQ3_S,
            TensorClass::AttnV => G::Q2_K,
            TensorClass::AttnK if m.n_expert == 8 => G::Q4_K,
            TensorClass::FfnDownExps if i < n / 8 && iq2_s_m => G::IQ3_S,
            TensorClass::FfnDownExps if i < n / 8 => G::Q2_K,
            TensorClass::AttnOutput if m.n_expert == 8 => G::Q5_K,
            TensorClass::AttnOutput if is(&[P::IQ1_S, P::IQ1_M]) => G::IQ2_XXS,
            TensorClass::AttnOutput if iq2_s_m => G::IQ3_S,
            _ => def,
        };
    }
    match class {
        TensorClass::AttnV => {
            let t = if ft == P::Q2_K {
                if m.n_gqa >= 4 {
                    G::Q4_K
                } else {
                    G::Q3_K
                }
            } else if ft == P::Q2_K_S && m.n_gqa >= 4 {
                G::Q4_K
            } else if ft == P::IQ3_XXS {
                if m.n_gqa >= 4 {
                    G::Q4_K
                } else if !m.has_imatrix {
                    G::IQ3_S
                } else {
                    G::IQ3_XXS
                }
            } else if is(&[P::IQ3_XS, P::IQ3_S]) && m.n_gqa >= 4 {
                G::Q4_K
            } else if ft == P::IQ3_M {
                G::Q4_K
            } else if ft == P::Q3_K_M {
                if i < 2 {
                    G::Q5_K
                } else {
                    G::Q4_K
                }
            } else if ft == P::Q3_K_L {
                G::Q5_K
            } else if is(&[P::IQ4_NL, P::IQ4_XS]) && m.n_gqa >= 4 {
                G::Q5_K
            } else if is(&[P::Q4_K_M, P::Q5_K_M]) && more {
                G::Q6_K
            } else if ft == P::Q4_K_S && i < 4 {
                G::Q5_K
            } else {
                def
            };
            // "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
            if m.n_expert == 8 {
                G::Q8_0
            } else {
                t
            }
        }
        TensorClass::AttnK => {
            if m.n_expert == 8 {
                G::Q8_0
            } else if ft == P::IQ3_XS {
                G::IQ3_XXS
            } else if ft == P::IQ3_XXS {
                G::IQ2_S
            } else {
                def
            }
        }
        TensorClass::AttnQ => match ft {
            P::IQ3_XS => G::IQ3_XXS,
            P::IQ3_XXS => G::IQ2_S,
            _ => def,
        },
        TensorClass::FfnDownExps => {
            if ft == P::Q2_K {
                G::Q3_K
            } else if ft == P::Q2_K_S {
                if i < n / 8 {
                    G::Q4_K
                } else {
                    def
                }
            } else if ft == P::IQ3_XXS && !m.has_imatrix {
                if i < n / 8 {
                    G::Q4_K
                } else {
                    G::Q3_K
                }
            } else if ft == P::Q3_K_M {
                if i < n / 16 {
                    G::Q5_K
                } else {
                    G::Q4_K
                }
            } else if ft == P::IQ3_M && (i < n / 8 || (m.n_expert == 8 && more)) {
                G::Q4_K
            } else if ft == P::Q3_K_L {
                G::Q5_K
            } else if ft == P::Q4_K_M {
                if more {
                    G::Q6_K
                } else {
                    def
                }
            } else if i < n / 8 && is(&[P::IQ4_NL, P::IQ4_XS]) && !m.has_imatrix {
                G::Q5_K
            } else if ft == P::Q5_K_M && more {
                G::Q6_K
            } else if ft == P::Q4_K_S && i < n / 8 {
                G::Q5_K
            } else if is(&[P::Q4_0, P::Q5_0]) && m.has_imatrix && i < n / 8 {
                if ft == P::Q4_0 {
                    G::Q4_1
                } else {
                    G::Q5_1
                }
            } else {
                def
            }
        }
        TensorClass::AttnOutput => {
            if m.n_expert == 8 {
                if is(&[
                    P::Q2_K,
                    P::IQ3_XS,
                    P::IQ3_XXS,
                    P::Q3_K_S,
                    P::Q3_K_M,
                    P::IQ4_NL,
                    P::Q4_K_S,
                    P::Q4_K_M,
                    P::IQ3_S,
                    P::IQ3_M,
                    P::IQ4_XS,
                ]) {
                    G::Q5_K
                } else {
                    def
                }
            } else {
                match ft {
                    P::Q2_K => G::Q3_K,
                    P::IQ3_XXS => G::IQ3_S,
                    P::Q3_K_M | P::IQ3_M => G::Q4_K,
                    P::Q3_K_L => G::Q5_K,
                    _ => def,
                }
            }
        }
        TensorClass::FfnGateExps | TensorClass::FfnUpExps => {
            if ft == P::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
                G::IQ3_XXS
            } else {
                def
            }
        }
        _ => def,
    }
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`: `i < n/8 || i >= 7n/8 || (i − n/8) % 3 == 2`
/// (integer division; C's `%` on a negative left side cannot occur since the first test
/// catches i < n/8). For n = 64: layers 0–7, 56–63 and 10, 13, …, 55 → 32 of 64.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= n.saturating_mul(7) / 8 || (i - n / 8) % 3 == 2
}

/// Apply the block-size fallback to a wanted type (llama-quantize's `tensor_type_fallback`).
pub fn fit_row(want: GgmlType, row_len: u64) -> Choice {
    use GgmlType as G;
    if row_len.is_multiple_of(want.block_elems()) {
        return Choice {
            ty: want,
            fallback_reason: None,
            needs_imatrix: false,
        };
    }
    let next = match want {
        G::IQ1_S
        | G::IQ1_M
        | G::IQ2_XXS
        | G::IQ2_XS
        | G::IQ2_S
        | G::IQ3_XXS
        | G::IQ3_S
        | G::IQ4_XS => G::IQ4_NL,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K | G::Q8_K => G::Q8_0,
        G::Q2_K | G::Q3_K => G::Q4_0,
        _ => G::F16,
    };
    let ty = if row_len.is_multiple_of(next.block_elems()) {
        next
    } else {
        G::F16
    };
    Choice {
        ty,
        fallback_reason: Some(format!(
            "row length {row_len} is not a multiple of {want}'s {}-element block; using {ty}",
            want.block_elems()
        )),
        needs_imatrix: false,
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
        let ch = |c, l| p.choose(c, l, &ModelInfo::grok(64), 6144).ty;
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
        assert_eq!(
            q8.choose(C::TokenEmbd, None, &ModelInfo::grok(64), 6144).ty,
            G::Q8_0
        );
        assert_eq!(
            q8.choose(C::FfnDownExps, Some(0), &ModelInfo::grok(64), 32768)
                .ty,
            G::Q8_0
        );
        let q40 = Policy::parse("q4_0").unwrap();
        assert_eq!(
            q40.choose(C::TokenEmbd, None, &ModelInfo::grok(64), 6144)
                .ty,
            G::Q6_K
        );
        assert_eq!(
            q40.choose(C::AttnK, Some(1), &ModelInfo::grok(64), 6144).ty,
            G::Q8_0
        );
        assert_eq!(
            q40.choose(C::AttnOutput, Some(1), &ModelInfo::grok(64), 6144)
                .ty,
            G::Q4_0
        );
        let q6 = Policy::parse("q6_k").unwrap();
        assert_eq!(q6.file_type(), 18);
        assert_eq!(
            q6.choose(C::AttnOutput, Some(1), &ModelInfo::grok(64), 6144)
                .ty,
            G::Q6_K
        );
        let bf = Policy::parse("bf16").unwrap();
        assert_eq!(bf.file_type(), 32);
        assert_eq!(
            bf.choose(C::AttnK, Some(1), &ModelInfo::grok(64), 6144).ty,
            G::BF16
        );
        assert_eq!(Policy::parse("q5_k_m").unwrap().file_type(), 17);
    }

    #[test]
    fn overrides() {
        let p = Policy::parse("experts=q4_k,attn=q8_0,embed=q6_k").unwrap();
        assert_eq!(
            p.choose(C::FfnDownExps, Some(0), &ModelInfo::grok(64), 32768)
                .ty,
            G::Q4_K
        );
        assert_eq!(
            p.choose(C::AttnOutput, Some(0), &ModelInfo::grok(64), 6144)
                .ty,
            G::Q8_0
        );
        assert_eq!(
            p.choose(C::TokenEmbd, None, &ModelInfo::grok(64), 6144).ty,
            G::Q6_K
        );
        assert_eq!(p.file_type(), 15);
        // Specific beats general regardless of order; unlisted stay BF16 without a preset.
        let p = Policy::parse("down=q6_k,experts=q4_0").unwrap();
        assert_eq!(
            p.choose(C::FfnDownExps, Some(0), &ModelInfo::grok(64), 32768)
                .ty,
            G::Q6_K
        );
        assert_eq!(
            p.choose(C::FfnUpExps, Some(0), &ModelInfo::grok(64), 6144)
                .ty,
            G::Q4_0
        );
        assert_eq!(
            p.choose(C::AttnQ, Some(0), &ModelInfo::grok(64), 6144).ty,
            G::BF16
        );
        let p = Policy::parse("q4_k_m,attn_k=q4_k").unwrap();
        assert_eq!(
            p.choose(C::AttnK, Some(0), &ModelInfo::grok(64), 6144).ty,
            G::Q4_K
        );
        assert_eq!(
            p.choose(C::AttnV, Some(0), &ModelInfo::grok(64), 6144).ty,
            G::Q8_0
        );
        for bad in [
            "",
            "q3_k_x",
            "iq1_s",
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
                fallback_reason: None,
                needs_imatrix: false,
            }
        );
        let p = Policy::parse("q4_k_m").unwrap();
        // token_embd whose row does not fit Q4_K's block gets Q8_0 (llama.cpp's output rule).
        assert_eq!(
            p.choose(C::TokenEmbd, None, &ModelInfo::grok(64), 96).ty,
            G::Q8_0
        );
    }
}
