//! The configuration of an opened checkpoint: sizes from the shards' shapes, the head
//! dimension and constants from a release-style `config.json` when there is one (its keys are
//! the release column of [`crate::model::CONFIG_KEYS`]), else Grok-1's.

use super::reader::{OpenOptions, Parsed};
use super::SourceError;
use crate::model::keys::{Field, KeyFormat, KeyValue};
use crate::model::Config;
use crate::numpy::Stored;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// A `config.json` found beside the checkpoint: its path and top-level object.
type ConfigJson = (PathBuf, serde_json::Map<String, Json>);

fn read_config_json(
    dir: &Path,
    explicit: Option<&Path>,
) -> Result<Option<ConfigJson>, SourceError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => [
            Some(dir.join("config.json")),
            dir.parent().map(|p| p.join("config.json")),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    for c in candidates {
        if !crate::io::input::present(&c) {
            if explicit.is_some() {
                return Err(SourceError::Config {
                    dir: dir.to_path_buf(),
                    msg: format!("{} not found", c.display()),
                });
            }
            continue;
        }
        let Some(text) = crate::io::read_capped(&c, crate::base::limits::CKPT_MAX_CONFIG_BYTES)?
        else {
            return Err(SourceError::Config {
                dir: dir.to_path_buf(),
                msg: format!("{}: larger than 1 MiB", c.display()),
            });
        };
        let v: Json = serde_json::from_slice(&text).map_err(|e| SourceError::Config {
            dir: dir.to_path_buf(),
            msg: format!("{}: {e}", c.display()),
        })?;
        return match v {
            Json::Object(m) => Ok(Some((c, m))),
            _ => Err(SourceError::Config {
                dir: dir.to_path_buf(),
                msg: format!("{}: not a JSON object", c.display()),
            }),
        };
    }
    Ok(None)
}

/// Fields a release `config.json` sets (the shards' shapes cannot tell them). The head
/// dimension is read too, and checked against the projection widths.
const READ_FROM_JSON: [Field; 7] = [
    Field::NumSelectedExperts,
    Field::RmsNormEps,
    Field::RopeBase,
    Field::AttnLogitCap,
    Field::EmbeddingMultiplierScale,
    Field::OutputMultiplierScale,
    Field::AttnOutputMultiplier,
];

/// Fields the shards' shapes fix: a `config.json` that disagrees is an error.
const CHECKED_AGAINST_SHAPES: [Field; 5] = [
    Field::VocabSize,
    Field::EmbSize,
    Field::NumExperts,
    Field::FfnSize,
    Field::NumLayers,
];

/// The configuration from the shapes of the parsed shards, a `config.json` and the options,
/// with a note on where each part came from.
pub(super) fn infer_config(
    dir: &Path,
    parsed: &[Parsed],
    num_layers: u64,
    opts: &OpenOptions,
) -> Result<(Config, Vec<String>), SourceError> {
    let cfg_err = |msg: String| SourceError::Config {
        dir: dir.to_path_buf(),
        msg,
    };
    let shape = |i: usize| -> Result<Vec<u64>, SourceError> {
        let p = parsed
            .get(i)
            .ok_or_else(|| cfg_err(format!("file {i} missing")))?;
        Ok(match &p.3 {
            Stored::Array(a) => a.shape.dims().to_vec(),
            Stored::Quantized { weight, .. } => weight.shape.dims().to_vec(),
        })
    };
    let mut notes = Vec::new();
    let mut json_path: Option<std::path::PathBuf> = None;
    let mut c = Config::grok1();
    c.num_layers = num_layers;
    let emb = shape(0)?;
    if let [v, d] = emb[..] {
        c.vocab_size = v;
        c.emb_size = d;
    } else {
        return Err(cfg_err(format!(
            "file 0 (the embedding) has shape {emb:?}, expected [vocab, d_model]"
        )));
    }
    if num_layers > 0 {
        // Layer 0 is the first layer in file order; its slots start at 2.
        match shape(2)?[..] {
            [e, _, f] => {
                c.num_experts = e;
                c.ffn_size = f;
            }
            ref s => {
                return Err(cfg_err(format!(
                    "file 2 (moe/linear) has shape {s:?}, expected [experts, d_model, ffn]"
                )))
            }
        }
        let qw = shape(2 + 5)?.get(1).copied().unwrap_or(0);
        let kw = shape(2 + 3)?.get(1).copied().unwrap_or(0);
        let json = read_config_json(dir, opts.config_json.as_deref())?;
        json_path = json.as_ref().map(|(p, _)| p.clone());
        let mut key_size = None;
        if let Some((path, m)) = &json {
            notes.push(format!("config.json: {}", path.display()));
            // A present key must hold what its field needs: a non-negative integer for a
            // count (`key_size` 16.9 is not 16), a finite number for a real (the string "NaN"
            // is not absent). The key and the file are named.
            let num = |f: Field| -> Result<Option<(&'static str, KeyValue)>, SourceError> {
                let Some(key) = f
                    .row()
                    .and_then(|r| r.key(KeyFormat::Release).names.first())
                else {
                    return Ok(None);
                };
                let Some(j) = m.get(*key) else {
                    return Ok(None);
                };
                let bad = |wanted: &str| {
                    cfg_err(format!(
                        "{}: {key} = {} is not {wanted}",
                        path.display(),
                        crate::io::term::escape(&j.to_string())
                    ))
                };
                // The field's kind (count or real) from Grok-1's values.
                match (f.get(&Config::grok1()), KeyValue::from_json(j)) {
                    (_, None) => Err(bad("a number")),
                    (KeyValue::Int(_), Some(v @ KeyValue::Int(_))) => Ok(Some((*key, v))),
                    (KeyValue::Int(_), Some(KeyValue::Float(_))) => {
                        Err(bad("a non-negative integer"))
                    }
                    (KeyValue::Float(_), Some(v)) if v.real().is_finite() => {
                        Ok(Some((*key, KeyValue::Float(v.real()))))
                    }
                    (KeyValue::Float(_), Some(_)) => Err(bad("a finite number")),
                }
            };
            let int = |v: KeyValue| match v {
                KeyValue::Int(n) => n,
                KeyValue::Float(x) => x as u64,
            };
            if let Some((_, v)) = num(Field::KeySize)? {
                key_size = Some(int(v));
            }
            for f in READ_FROM_JSON {
                if let Some((_, v)) = num(f)? {
                    f.set(&mut c, v);
                }
            }
            for f in CHECKED_AGAINST_SHAPES {
                if let (Some((k, v)), KeyValue::Int(have)) = (num(f)?, f.get(&c)) {
                    if int(v) != have {
                        return Err(cfg_err(format!(
                            "{}: {k} = {} but the shards say {have}",
                            path.display(),
                            int(v)
                        )));
                    }
                }
            }
        }
        if let Some(k) = opts.key_size {
            key_size = Some(k);
            notes.push(format!("key_size {k} from the command line"));
        }
        if let Some(k) = opts.top_k {
            c.num_selected_experts = k;
        }
        let ks = match key_size {
            Some(k) => k,
            None if qw % 128 == 0 && kw % 128 == 0 => {
                notes.push("key_size 128 (Grok-1's head dimension; no config.json)".into());
                128
            }
            None => return Err(cfg_err(format!("cannot tell the head dimension from widths {qw} (query) and {kw} (key): put a config.json with key_size beside ckpt-0 or pass --key-size"))),
        };
        if ks == 0 || qw % ks != 0 || kw % ks != 0 {
            return Err(cfg_err(format!(
                "key_size {ks} does not divide the query width {qw} and key width {kw}"
            )));
        }
        c.key_size = ks;
        c.num_q_heads = qw / ks;
        c.num_kv_heads = kw / ks;
    }
    notes.push("sizes from the shards' shapes".into());
    let problems = c.problems();
    if !problems.is_empty() {
        let from = match &json_path {
            Some(p) => format!(" (config.json: {})", p.display()),
            None => String::new(),
        };
        return Err(cfg_err(format!("{}{from}", problems.join("; "))));
    }
    Ok((c, notes))
}
