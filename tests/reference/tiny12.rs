//! An independent TEST-ONLY loader for tiny12: finds each pickle's payload by its
//! BINBYTES/SHORT_BINBYTES opcode and the byte length that `params.tsv` predicts, then
//! dequantizes int8 × bf16 with the release's row-block scales (docs/formats/grok-checkpoint.md),
//! without grokit's release reader, to cross-check it.
#![allow(dead_code)]
use grokit::reference::{MemoryWeights, ModelDims};
use std::collections::HashMap;
use std::path::Path;

/// Every tensor of the checkpoint, dequantized: `(shape, values)` by path without `params/`.
pub struct Tiny12 {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn dims(s: &str) -> (String, Vec<usize>) {
    let (dt, rest) = s.split_once('[').expect("dtype[dims]");
    let d = rest
        .trim_end_matches(']')
        .split(',')
        .map(|x| x.trim().parse().expect("dim"))
        .collect();
    (dt.to_string(), d)
}

/// Offset of the payload of `len` bytes, searching from `from`.
fn payload(buf: &[u8], len: usize, from: usize) -> usize {
    let pat: Vec<u8> = if len < 256 {
        vec![0x43, len as u8]
    } else {
        let mut p = vec![0x42];
        p.extend_from_slice(&(len as u32).to_le_bytes());
        p
    };
    let i = buf[from..]
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .expect("payload opcode")
        + from;
    i + pat.len()
}

impl Tiny12 {
    pub fn load(dir: &Path) -> Tiny12 {
        let tsv = std::fs::read_to_string(dir.join("params.tsv")).expect("params.tsv");
        let mut tensors = HashMap::new();
        for line in tsv.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let buf = std::fs::read(dir.join("ckpt-0").join(f[0])).expect("shard");
            let path = f[1].trim_start_matches("params/").to_string();
            let (wdt, wshape) = dims(f[3]);
            let n: usize = wshape.iter().product();
            let data = if f[2] == "QW8" {
                assert_eq!(wdt, "int8");
                let (_, sshape) = dims(f[4]);
                let wo = payload(&buf, n, 0);
                let q = &buf[wo..wo + n];
                let sn: usize = sshape.iter().product();
                let so = payload(&buf, 2 * sn, wo + n);
                let s: Vec<f32> = buf[so..so + 2 * sn]
                    .chunks_exact(2)
                    .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                    .collect();
                let r = wshape.len();
                let (k, ncol) = (wshape[r - 2], wshape[r - 1]);
                let blocks = sshape[sshape.len() - 2];
                let bh = k / blocks;
                let mut out = vec![0f32; n];
                for (i, o) in out.iter_mut().enumerate() {
                    let lead = i / (k * ncol);
                    let row = (i / ncol) % k;
                    let col = i % ncol;
                    *o = f32::from(q[i] as i8) * s[(lead * blocks + row / bh) * ncol + col];
                }
                out
            } else {
                assert_eq!(wdt, "float32");
                let o = payload(&buf, 4 * n, 0);
                buf[o..o + 4 * n]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            tensors.insert(path, (wshape, data));
        }
        Tiny12 { tensors }
    }

    /// The same values as an in-memory weight source.
    pub fn weights(&self) -> MemoryWeights {
        let mut w = MemoryWeights::new();
        for (p, (s, d)) in &self.tensors {
            w.insert_path(p, s.clone(), d).expect(p);
        }
        w
    }
}

/// tiny12's config.json as ModelDims.
pub fn tiny12_dims(dir: &Path) -> ModelDims {
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("json");
    let u = |k: &str| c[k].as_u64().expect(k) as usize;
    let f = |k: &str| c[k].as_f64().expect(k) as f32;
    ModelDims {
        vocab: u("vocab_size"),
        d_model: u("emb_size"),
        n_layers: u("num_layers"),
        n_q_heads: u("num_q_heads"),
        n_kv_heads: u("num_kv_heads"),
        head_dim: u("key_size"),
        n_experts: u("num_experts"),
        top_k: u("num_selected_experts"),
        ffn: u("ffn_size"),
        rms_eps: f("rms_norm_eps"),
        rope_base: f("rope_base"),
        attn_cap: f("attn_logit_cap"),
        emb_mult: f("embedding_multiplier_scale"),
        out_mult: f("output_multiplier_scale"),
        attn_mult: f("attn_output_multiplier"),
        pad_id: u("pad_token") as u32,
        ..ModelDims::grok1()
    }
}

/// tokens.json rows.
pub fn tiny12_tokens(dir: &Path) -> Vec<Vec<u32>> {
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).expect("tokens"))
            .expect("json");
    c["tokens"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|t| t.as_u64().expect("tok") as u32)
                .collect()
        })
        .collect()
}
