//! The configuration's keys in every format, written once: which [`Config`] field each
//! release `config.json` key, GGUF metadata key and Hugging Face `config.json` key carries, in
//! which order GGUF writes them, and what a reader does when one is absent. The GGUF and
//! safetensors writers produce their metadata from [`CONFIG_KEYS`] ([`Config::to_keys`]) and
//! readers rebuild a [`Config`] from it ([`read_config`]), so a key cannot be spelt one way on
//! write and another on read. docs/formats/gguf-output.md "Grok metadata" and
//! docs/formats/safetensors-output.md "config.json" list the keys with their evidence.

use super::config::Config;

/// A field of [`Config`] that some format carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the `Config` field of the same name
pub enum Field {
    VocabSize,
    MaxSeqLen,
    EmbSize,
    NumLayers,
    FfnSize,
    NumQHeads,
    NumKvHeads,
    RmsNormEps,
    RopeBase,
    KeySize,
    NumExperts,
    NumSelectedExperts,
    EmbeddingMultiplierScale,
    AttnOutputMultiplier,
    AttnLogitCap,
    OutputMultiplierScale,
    PadToken,
    BosToken,
    EosToken,
}

/// A configuration value as a format carries it: GGUF writes `Int` as u32 and `Float` as f32;
/// JSON writes them as numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyValue {
    /// A count, size or token id.
    Int(u64),
    /// A real-valued constant.
    Float(f64),
}

/// The formats whose keys [`CONFIG_KEYS`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// The release's own `config.json` beside `ckpt-0/` (`run.py`'s field names), as
    /// `grokit synth` writes it.
    Release,
    /// GGUF metadata (llama.cpp's `grok` architecture).
    Gguf,
    /// A Hugging Face `config.json` (both safetensors layouts).
    Hf,
}

/// What a reader does when a format lacks a key.
#[derive(Clone, Copy, Debug)]
pub enum Missing {
    /// The format does not carry the field (nothing written, nothing read).
    Absent,
    /// An error: the field cannot be known otherwise.
    Required,
    /// Keep Grok-1's value ([`Config::grok1`]).
    Grok1,
    /// Compute it from the fields read (after all of them are read).
    Derived(fn(&Config) -> u64),
}

/// One format's spelling of a field.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Names: all are written; a reader takes the first one present.
    pub names: &'static [&'static str],
    /// When none is present.
    pub missing: Missing,
}

/// One row of [`CONFIG_KEYS`].
#[derive(Clone, Copy, Debug)]
pub struct ConfigKey {
    /// The field.
    pub field: Field,
    /// The release's `config.json`.
    pub release: Key,
    /// GGUF (every name starts with the architecture, `grok.`).
    pub gguf: Key,
    /// Hugging Face `config.json`.
    pub hf: Key,
    /// GGUF stores floats as f32: when the stored value equals Grok-1's constant rounded to
    /// f32, a reader takes the f64 constant, so a GGUF runs with exactly the release's
    /// multipliers.
    pub gguf_f32_restores_grok1: bool,
}

impl Field {
    /// The (first) name of this field's key in `f`, if `f` carries it: what an error about
    /// the field should name.
    pub fn key_name(self, f: KeyFormat) -> Option<&'static str> {
        self.row()?.key(f).names.first().copied()
    }
}

impl ConfigKey {
    /// This row's key in `f`.
    pub fn key(&self, f: KeyFormat) -> &Key {
        match f {
            KeyFormat::Release => &self.release,
            KeyFormat::Gguf => &self.gguf,
            KeyFormat::Hf => &self.hf,
        }
    }
}

const fn k(names: &'static [&'static str], missing: Missing) -> Key {
    Key { names, missing }
}
/// Not carried.
const NO: Missing = Missing::Absent;
/// Carried; an error when absent.
const REQ: Missing = Missing::Required;
/// Carried; Grok-1's value when absent (the release reader checks or ignores some of these:
/// see `source::grok`).
const OPT: Missing = Missing::Grok1;
/// Absent KV heads: as many as query heads.
const KVH: Missing = Missing::Derived(|c| c.num_q_heads);
/// Absent head dimension: d_model / query heads.
const HD: Missing = Missing::Derived(|c| c.emb_size / c.num_q_heads.max(1));

macro_rules! row {
    ($field:ident, $release:expr, $gguf:expr, $hf:expr, $restore:literal) => {
        ConfigKey {
            field: Field::$field,
            release: $release,
            gguf: $gguf,
            hf: $hf,
            gguf_f32_restores_grok1: $restore,
        }
    };
}

/// The table, in the order GGUF writes the keys (after `general.*`). GGUF's vocabulary size is
/// optional: readers take it from `token_embd.weight`, which every GGUF has. The last column
/// is [`ConfigKey::gguf_f32_restores_grok1`].
#[rustfmt::skip]
pub const CONFIG_KEYS: &[ConfigKey] = &[
    //   field                     release config.json                     GGUF                                                HF config.json
    row!(VocabSize,                k(&["vocab_size"], OPT),                k(&["grok.vocab_size"], OPT),                       k(&["vocab_size"], REQ), false),
    row!(MaxSeqLen,                k(&[], NO),                             k(&["grok.context_length"], OPT),                   k(&["max_position_embeddings"], OPT), false),
    row!(EmbSize,                  k(&["emb_size"], OPT),                  k(&["grok.embedding_length"], REQ),                 k(&["hidden_size"], REQ), false),
    row!(NumLayers,                k(&["num_layers"], OPT),                k(&["grok.block_count"], REQ),                      k(&["num_hidden_layers"], REQ), false),
    row!(FfnSize,                  k(&["ffn_size"], OPT),                  k(&["grok.feed_forward_length"], REQ),              k(&["intermediate_size"], REQ), false),
    row!(NumQHeads,                k(&["num_q_heads"], OPT),               k(&["grok.attention.head_count"], REQ),             k(&["num_attention_heads"], REQ), false),
    row!(NumKvHeads,               k(&["num_kv_heads"], OPT),              k(&["grok.attention.head_count_kv"], KVH),          k(&["num_key_value_heads"], KVH), false),
    row!(RmsNormEps,               k(&["rms_norm_eps"], OPT),              k(&["grok.attention.layer_norm_rms_epsilon"], OPT), k(&["rms_norm_eps"], OPT), false),
    row!(RopeBase,                 k(&["rope_base"], OPT),                 k(&["grok.rope.freq_base"], OPT),                   k(&["rope_theta"], OPT), false),
    row!(KeySize,                  k(&["key_size"], OPT),                  k(&["grok.rope.dimension_count"], HD),              k(&["head_dim"], HD), false),
    row!(NumExperts,               k(&["num_experts"], OPT),               k(&["grok.expert_count"], REQ),                     k(&["num_local_experts", "num_experts"], OPT), false),
    row!(NumSelectedExperts,       k(&["num_selected_experts"], OPT),      k(&["grok.expert_used_count"], REQ),                k(&["num_experts_per_tok"], OPT), false),
    row!(EmbeddingMultiplierScale, k(&["embedding_multiplier_scale"], OPT), k(&["grok.embedding_scale"], OPT),                 k(&["embedding_multiplier_scale"], OPT), true),
    row!(AttnOutputMultiplier,     k(&["attn_output_multiplier"], OPT),    k(&["grok.attention.output_scale"], OPT),           k(&["attn_output_multiplier"], OPT), true),
    row!(AttnLogitCap,             k(&["attn_logit_cap"], OPT),            k(&["grok.attn_logit_softcapping"], OPT),           k(&["max_attn_value", "attn_logit_softcapping"], OPT), true),
    row!(OutputMultiplierScale,    k(&["output_multiplier_scale"], OPT),   k(&["grok.logit_scale"], OPT),                      k(&["output_multiplier_scale"], OPT), true),
    row!(PadToken,                 k(&["pad_token"], OPT),                 k(&[], NO),                                         k(&["pad_token_id"], OPT), false),
    row!(BosToken,                 k(&[], NO),                             k(&[], NO),                                         k(&["bos_token_id"], OPT), false),
    row!(EosToken,                 k(&["eos_token"], OPT),                 k(&[], NO),                                         k(&["eos_token_id"], OPT), false),
];

impl Field {
    /// This field's row of [`CONFIG_KEYS`].
    pub fn row(self) -> Option<&'static ConfigKey> {
        CONFIG_KEYS.iter().find(|r| r.field == self)
    }
    /// The field's value in `c`.
    pub fn get(self, c: &Config) -> KeyValue {
        match self.slot(&mut c.clone()) {
            Slot::Count(x) => KeyValue::Int(*x),
            Slot::Id(x) => KeyValue::Int(u64::from(*x)),
            Slot::Real(x) => KeyValue::Float(*x),
        }
    }
    /// Set the field in `c`. An integer field takes only [`KeyValue::Int`] (token ids
    /// saturate at `u32::MAX`); a real field takes either; false when the value does not
    /// fit.
    pub fn set(self, c: &mut Config, v: KeyValue) -> bool {
        match (self.slot(c), v) {
            (Slot::Count(s), KeyValue::Int(n)) => *s = n,
            (Slot::Id(s), KeyValue::Int(n)) => *s = u32::try_from(n).unwrap_or(u32::MAX),
            (Slot::Real(s), v) => *s = v.real(),
            (Slot::Count(_) | Slot::Id(_), KeyValue::Float(_)) => return false,
        }
        true
    }
    /// Where the field lives in `c`.
    fn slot(self, c: &mut Config) -> Slot<'_> {
        match self {
            Field::VocabSize => Slot::Count(&mut c.vocab_size),
            Field::MaxSeqLen => Slot::Count(&mut c.max_seq_len),
            Field::EmbSize => Slot::Count(&mut c.emb_size),
            Field::NumLayers => Slot::Count(&mut c.num_layers),
            Field::FfnSize => Slot::Count(&mut c.ffn_size),
            Field::NumQHeads => Slot::Count(&mut c.num_q_heads),
            Field::NumKvHeads => Slot::Count(&mut c.num_kv_heads),
            Field::KeySize => Slot::Count(&mut c.key_size),
            Field::NumExperts => Slot::Count(&mut c.num_experts),
            Field::NumSelectedExperts => Slot::Count(&mut c.num_selected_experts),
            Field::RmsNormEps => Slot::Real(&mut c.rms_norm_eps),
            Field::RopeBase => Slot::Real(&mut c.rope_base),
            Field::EmbeddingMultiplierScale => Slot::Real(&mut c.embedding_multiplier_scale),
            Field::AttnOutputMultiplier => Slot::Real(&mut c.attn_output_multiplier),
            Field::AttnLogitCap => Slot::Real(&mut c.attn_logit_cap),
            Field::OutputMultiplierScale => Slot::Real(&mut c.output_multiplier_scale),
            Field::PadToken => Slot::Id(&mut c.pad_token),
            Field::BosToken => Slot::Id(&mut c.bos_token),
            Field::EosToken => Slot::Id(&mut c.eos_token),
        }
    }
}

/// A [`Config`] field, by its type.
enum Slot<'a> {
    Count(&'a mut u64),
    Id(&'a mut u32),
    Real(&'a mut f64),
}

impl KeyValue {
    /// A JSON value as a configuration value: a non-negative integer as a count, any other
    /// number as a real, `None` for anything else. (What readers of a `config.json` pass to
    /// [`read_config`]: `|k| json.get(k).map(KeyValue::from_json)`.)
    pub fn from_json(v: &serde_json::Value) -> Option<KeyValue> {
        v.as_u64()
            .map(KeyValue::Int)
            .or_else(|| v.as_f64().map(KeyValue::Float))
    }
    /// The value as a real number.
    pub fn real(self) -> f64 {
        match self {
            KeyValue::Float(x) => x,
            KeyValue::Int(n) => n as f64,
        }
    }
}

impl Config {
    /// Every key `f` carries for this configuration, in table order (every name of a field
    /// with several).
    pub fn to_keys(&self, f: KeyFormat) -> Vec<(&'static str, KeyValue)> {
        CONFIG_KEYS
            .iter()
            .flat_map(|r| {
                let v = r.field.get(self);
                r.key(f).names.iter().map(move |&n| (n, v))
            })
            .collect()
    }
}

/// Why [`read_config`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    /// A key the format must carry is absent.
    #[error("missing {key}")]
    Missing {
        /// The (first) name of the key.
        key: &'static str,
    },
    /// A key holds a value of the wrong kind (a real number where a count belongs, or no
    /// number at all).
    #[error("{key} = {} is not a {wanted}", value.map_or("(not a number)".to_string(), |v| format!("{v:?}")))]
    WrongKind {
        /// The key.
        key: &'static str,
        /// What it holds (`None`: not a number at all).
        value: Option<KeyValue>,
        /// What the field needs (`count` or `number`).
        wanted: &'static str,
    },
}

impl KeyError {
    /// The key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            KeyError::Missing { key } | KeyError::WrongKind { key, .. } => key,
        }
    }
}

/// Rebuild a [`Config`] from the keys of format `f`: start from Grok-1's values, take every
/// key `get` finds (the first name present of each row), then apply each absent key's
/// [`Missing`] rule. `get(key)` is `None` when the key is absent and `Some(None)` when it holds
/// something that is not a number (an error). Formats that carry the vocabulary elsewhere
/// (GGUF: `token_embd.weight`'s rows) set it afterwards.
pub fn read_config(
    f: KeyFormat,
    get: &dyn Fn(&str) -> Option<Option<KeyValue>>,
) -> Result<Config, KeyError> {
    let mut c = Config::grok1();
    let grok1 = Config::grok1();
    let mut derived = Vec::new();
    for r in CONFIG_KEYS {
        let k = r.key(f);
        let found = k.names.iter().find_map(|&n| get(n).map(|v| (n, v)));
        match (found, k.missing) {
            (Some((name, v)), _) => {
                let wanted = match r.field.get(&grok1) {
                    KeyValue::Float(_) => "number",
                    KeyValue::Int(_) => "count",
                };
                let Some(v) = v else {
                    return Err(KeyError::WrongKind {
                        key: name,
                        value: None,
                        wanted,
                    });
                };
                let v = match (v, f, r.gguf_f32_restores_grok1) {
                    (KeyValue::Float(x), KeyFormat::Gguf, true) => {
                        let full = r.field.get(&grok1);
                        match full {
                            KeyValue::Float(g) if (x as f32) == (g as f32) => full,
                            _ => v,
                        }
                    }
                    _ => v,
                };
                if !r.field.set(&mut c, v) {
                    return Err(KeyError::WrongKind {
                        key: name,
                        value: Some(v),
                        wanted,
                    });
                }
            }
            (None, Missing::Required) => {
                return Err(KeyError::Missing {
                    key: k.names.first().copied().unwrap_or("?"),
                })
            }
            (None, Missing::Derived(rule)) => derived.push((r.field, rule)),
            (None, Missing::Grok1 | Missing::Absent) => {}
        }
    }
    for (field, rule) in derived {
        let v = rule(&c);
        field.set(&mut c, KeyValue::Int(v));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_row() {
        for r in CONFIG_KEYS {
            assert_eq!(CONFIG_KEYS.iter().filter(|o| o.field == r.field).count(), 1);
            for n in r.gguf.names {
                assert!(n.starts_with("grok."), "{n}");
            }
        }
    }

    #[test]
    fn json_numbers() {
        let j = |v: serde_json::Value| KeyValue::from_json(&v);
        assert_eq!(j(serde_json::json!(8)), Some(KeyValue::Int(8)));
        assert_eq!(j(serde_json::json!(1e-5)), Some(KeyValue::Float(1e-5)));
        assert_eq!(j(serde_json::json!(-1)), Some(KeyValue::Float(-1.0)));
        assert_eq!(j(serde_json::json!("8")), None);
        assert_eq!(
            Field::EmbSize.key_name(KeyFormat::Gguf),
            Some("grok.embedding_length")
        );
        assert_eq!(Field::BosToken.key_name(KeyFormat::Gguf), None);
    }

    #[test]
    fn each_format_reads_back_what_it_writes() {
        let c = Config {
            num_kv_heads: 3,
            max_seq_len: 77,
            pad_token: 9,
            rms_norm_eps: 1e-6,
            ..Config::tiny()
        };
        for f in [KeyFormat::Gguf, KeyFormat::Hf] {
            let kv = c.to_keys(f);
            // GGUF stores f32 and has no token ids.
            let get = |k: &str| {
                kv.iter()
                    .find(|(n, _)| *n == k)
                    .map(|&(_, v)| match (f, v) {
                        (KeyFormat::Gguf, KeyValue::Float(x)) => {
                            Some(KeyValue::Float(f64::from(x as f32)))
                        }
                        _ => Some(v),
                    })
            };
            let back = read_config(f, &get).unwrap();
            assert!(back.same_geometry(&c), "{f:?}");
            assert_eq!(back.max_seq_len, 77);
            assert_eq!(
                back.embedding_multiplier_scale,
                c.embedding_multiplier_scale
            );
            if f == KeyFormat::Hf {
                assert_eq!((back.pad_token, back.rms_norm_eps), (9, 1e-6));
            }
        }
        // Absent optional keys: Grok-1's values and the derived ones.
        let only = |k: &str| match k {
            "hidden_size" => Some(Some(KeyValue::Int(64))),
            "vocab_size" | "intermediate_size" => Some(Some(KeyValue::Int(344))),
            "num_hidden_layers" => Some(Some(KeyValue::Int(2))),
            "num_attention_heads" => Some(Some(KeyValue::Int(4))),
            _ => None,
        };
        let c = read_config(KeyFormat::Hf, &only).unwrap();
        assert_eq!((c.num_kv_heads, c.key_size, c.num_experts), (4, 16, 8));
        let e = read_config(KeyFormat::Gguf, &only).unwrap_err();
        assert_eq!(
            e,
            KeyError::Missing {
                key: "grok.embedding_length"
            }
        );
        let bad = |k: &str| match k {
            "hidden_size" => Some(Some(KeyValue::Float(1.5))),
            _ => only(k),
        };
        let e = read_config(KeyFormat::Hf, &bad).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::WrongKind {
                    wanted: "count",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.key(), "hidden_size");
        let text = |k: &str| match k {
            "rope_theta" => Some(None),
            _ => only(k),
        };
        let e = read_config(KeyFormat::Hf, &text).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::WrongKind {
                    wanted: "number",
                    ..
                }
            ),
            "{e}"
        );
    }
}
