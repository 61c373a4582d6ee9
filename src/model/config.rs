//! Grok-1 hyper-parameters with the release's own field names (`run.py`/`model.py`), named
//! constructors for the real model and the test fixtures, and the derived sizes.

use serde::{Deserialize, Serialize};

/// Hyper-parameters of a Grok-1-architecture model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Vocabulary size (131072).
    pub vocab_size: u64,
    /// Model width D (6144).
    pub emb_size: u64,
    /// Head dimension (128).
    pub key_size: u64,
    /// Query heads (48).
    pub num_q_heads: u64,
    /// KV heads (8).
    pub num_kv_heads: u64,
    /// Layers (64).
    pub num_layers: u64,
    /// Experts per layer (8).
    pub num_experts: u64,
    /// Experts used per token (2).
    pub num_selected_experts: u64,
    /// Expert FFN width (32768).
    pub ffn_size: u64,
    /// RMSNorm epsilon (1e-5).
    pub rms_norm_eps: f64,
    /// RoPE base (10000).
    pub rope_base: f64,
    /// Attention logit soft-cap (30).
    pub attn_logit_cap: f64,
    /// Embedding multiplier (sqrt(6144) = 78.38367176906169).
    pub embedding_multiplier_scale: f64,
    /// Output multiplier (1/sqrt(3) = 0.5773502691896257).
    pub output_multiplier_scale: f64,
    /// Attention logit multiplier (1/sqrt(128) = 0.08838834764831845).
    pub attn_output_multiplier: f64,
    /// Context length (8192).
    pub max_seq_len: u64,
    /// Pad id (0).
    pub pad_token: u32,
    /// BOS id (1).
    pub bos_token: u32,
    /// EOS id (2).
    pub eos_token: u32,
    /// UNK id (3).
    pub unk_token: u32,
}

/// A size of the configuration, as the role table writes tensor shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// `vocab_size`.
    Vocab,
    /// `emb_size` (d_model).
    Model,
    /// `ffn_size`.
    Ffn,
    /// `num_experts`.
    Experts,
    /// Query width: `num_q_heads · key_size`.
    QWidth,
    /// Key/value width: `num_kv_heads · key_size`.
    KvWidth,
}

impl Config {
    /// The released Grok-1 (314B): `run.py`'s configuration (docs/formats/grok-checkpoint.md
    /// "Hyper-parameters"). The one place these values are written: every default, fixture
    /// and reader starts from here.
    pub fn grok1() -> Config {
        Config {
            vocab_size: 131072,
            emb_size: 6144,
            key_size: 128,
            num_q_heads: 48,
            num_kv_heads: 8,
            num_layers: 64,
            num_experts: 8,
            num_selected_experts: 2,
            ffn_size: 32768,
            rms_norm_eps: 1e-5,
            rope_base: 10000.0,
            attn_logit_cap: 30.0,
            embedding_multiplier_scale: 78.38367176906169, // √6144
            output_multiplier_scale: 0.5773502691896257,   // 1/√3
            attn_output_multiplier: 0.08838834764831845,   // 1/√128
            max_seq_len: 8192,
            pad_token: 0,
            bos_token: 1,
            eos_token: 2,
            unk_token: 3,
        }
    }

    /// The 2-layer fixture shipped in `fixtures/tiny`: d_model 64, 4 query and 2 KV heads of 16
    /// (a square attention output, like Grok-1), 8 experts of width 344 (Grok-1's widening rule
    /// for d_model 64), vocab 512 to fit tiny12's tokenizer. Multipliers stay Grok-1's.
    pub fn tiny() -> Config {
        Config {
            vocab_size: 512,
            emb_size: 64,
            key_size: 16,
            num_q_heads: 4,
            num_kv_heads: 2,
            num_layers: 2,
            num_experts: 8,
            ffn_size: 344,
            ..Config::grok1()
        }
    }

    /// The size `d` stands for.
    pub fn dim(&self, d: Dim) -> u64 {
        match d {
            Dim::Vocab => self.vocab_size,
            Dim::Model => self.emb_size,
            Dim::Ffn => self.ffn_size,
            Dim::Experts => self.num_experts,
            Dim::QWidth => self.q_width(),
            Dim::KvWidth => self.kv_width(),
        }
    }

    /// Query projection width (H × head dim).
    pub fn q_width(&self) -> u64 {
        self.num_q_heads * self.key_size
    }
    /// KV projection width (K × head dim).
    pub fn kv_width(&self) -> u64 {
        self.num_kv_heads * self.key_size
    }
    /// True when this is the released geometry (all 64 layers).
    pub fn is_grok1(&self) -> bool {
        self.same_geometry(&Config::grok1())
    }
    /// True when every size matches `other` (multipliers and ids ignored).
    pub fn same_geometry(&self, o: &Config) -> bool {
        (
            self.vocab_size,
            self.emb_size,
            self.key_size,
            self.num_q_heads,
            self.num_kv_heads,
            self.num_layers,
            self.num_experts,
            self.ffn_size,
        ) == (
            o.vocab_size,
            o.emb_size,
            o.key_size,
            o.num_q_heads,
            o.num_kv_heads,
            o.num_layers,
            o.num_experts,
            o.ffn_size,
        )
    }
    /// Check internal consistency; returns a list of problems (empty = fine).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("emb_size", self.emb_size),
            ("key_size", self.key_size),
            ("num_q_heads", self.num_q_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("num_experts", self.num_experts),
            ("ffn_size", self.ffn_size),
        ] {
            if v == 0 {
                p.push(format!("{name} is 0"));
            }
        }
        if self.num_kv_heads != 0 && !self.num_q_heads.is_multiple_of(self.num_kv_heads) {
            p.push(format!(
                "num_q_heads {} is not a multiple of num_kv_heads {}",
                self.num_q_heads, self.num_kv_heads
            ));
        }
        if self.num_selected_experts == 0 || self.num_selected_experts > self.num_experts {
            p.push(format!(
                "num_selected_experts {} must be in 1..={}",
                self.num_selected_experts, self.num_experts
            ));
        }
        if !self.key_size.is_multiple_of(2) {
            p.push(format!("key_size {} must be even for RoPE", self.key_size));
        }
        p.extend(self.real_problems());
        p
    }
    /// The real-valued hyper-parameters that no model can use: non-finite or not above 0, an
    /// epsilon of 1 or more, or a multiplier, cap or RoPE base beyond [`Config::MAX_REAL`]
    /// (the release's largest is the embedding multiplier, 78.4). Such values give NaN or
    /// infinite logits with exit 0 and would be copied into converted metadata (issue #18,
    /// class 8), so every reader refuses them with the key named.
    pub fn real_problems(&self) -> Vec<String> {
        use super::keys::{KeyFormat, KeyValue, CONFIG_KEYS};
        let mut p = Vec::new();
        for r in CONFIG_KEYS {
            let KeyValue::Float(v) = r.field.get(self) else {
                continue;
            };
            let name = r.field.key_name(KeyFormat::Release).unwrap_or("?");
            let eps = r.field == super::keys::Field::RmsNormEps;
            if !v.is_finite() || v <= 0.0 {
                p.push(format!("{name} = {v} must be a finite number above 0"));
            } else if v > Self::MAX_REAL {
                p.push(format!("{name} = {v} exceeds {:e}", Self::MAX_REAL));
            } else if eps && v >= 1.0 {
                p.push(format!("{name} = {v} must be below 1"));
            }
        }
        p
    }
    /// The largest multiplier, soft-cap or RoPE base accepted (1e9: RoPE bases in use reach
    /// 1e6-1e7; a multiplier near this already overflows f32 activations).
    pub const MAX_REAL: f64 = 1e9;
    /// The expert FFN width Grok-1's `ffn_size(emb_size, widening_factor=8)` gives
    /// (model.py: `int(8 · D) · 2 // 3`, rounded up to a multiple of 8).
    pub fn ffn_rule(emb_size: u64) -> u64 {
        let f = 8 * emb_size * 2 / 3;
        f + (8 - f % 8) % 8
    }
    /// Where this geometry departs from Grok-1's architecture rules (8 experts, GQA, a square
    /// attention output `H · head_dim = D`, the FFN width rule). Empty for the release and for
    /// xAI's tiny12.
    pub fn rule_violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.num_experts != 8 {
            v.push(format!(
                "{} experts (Grok-1's architecture has 8)",
                self.num_experts
            ));
        }
        if self.q_width() != self.emb_size {
            v.push(format!(
                "attention output is not square: {} query heads x {} = {} but d_model is {}",
                self.num_q_heads,
                self.key_size,
                self.q_width(),
                self.emb_size
            ));
        }
        if self.ffn_size != Config::ffn_rule(self.emb_size) {
            v.push(format!(
                "ffn size {} does not follow the widening rule (d_model {} gives {})",
                self.ffn_size,
                self.emb_size,
                Config::ffn_rule(self.emb_size)
            ));
        }
        v
    }
    /// Total parameter count.
    pub fn param_count(&self) -> u64 {
        let d = self.emb_size;
        let per_layer = 3 * self.num_experts * d * self.ffn_size
            + d * self.q_width() * 2
            + 2 * d * self.kv_width()
            + d * self.num_experts
            + 4 * d;
        self.vocab_size * d + d + self.num_layers * per_layer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grok1_counts() {
        assert_eq!(Config::grok1().param_count(), 315_684_820_992);
        assert!(Config::grok1().problems().is_empty());
        assert!(Config::tiny().problems().is_empty());
        assert!(Config::grok1().rule_violations().is_empty());
        assert_eq!(Config::ffn_rule(96), 512);
        assert_eq!(Config::ffn_rule(6144), 32768);
    }
}
