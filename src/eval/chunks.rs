//! How `llama-perplexity` cuts a text into chunks and which positions it scores, and the
//! shards of `--shard K/N`.
//!
//! llama-perplexity (tools/perplexity, `perplexity()`; docs/perplexity.md has the details):
//! - the text is read whole, one trailing `\n` dropped, and tokenized with special tokens
//!   allowed: a BOS first when the model says `add_bos` (`tokenizer.ggml.add_bos_token`, or the
//!   vocabulary type's default: true for SentencePiece `llama` vocabularies);
//! - it needs at least `2·ctx` tokens; chunk `i` is tokens `[i·ctx, (i+1)·ctx)`, there are
//!   `⌊tokens / ctx⌋` of them (or `--chunks N`, whichever is fewer);
//! - each chunk is its own sequence from position 0; with `add_bos` its first token is replaced
//!   by BOS for the evaluation only (the tokens a KL base file stores are the unreplaced ones);
//! - positions `first = ⌊ctx/2⌋ … ctx−2` are scored: the logits at position `j` against the
//!   token at `j + 1`, so `ctx − 1 − first` tokens per chunk.

use super::EvalError;
use crate::gguf::{GgufSet, Value};
use crate::io::IoError;
use crate::reference::sources::Source;
use crate::tokenizer::Tokenizer;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// Largest text file read (wikitext-103's training split is 540 MB).
pub const TEXT_MAX_BYTES: u64 = 1 << 30;
/// Largest `tokenizer_config.json` read (a few kB in practice).
pub const TOKENIZER_CONFIG_MAX_BYTES: u64 = 16 << 20;

/// Read a text file for evaluation: a regular file only (a FIFO or device is refused before it
/// can block or stream forever), at most [`TEXT_MAX_BYTES`], UTF-8 (the error names the offset
/// of the first invalid byte).
pub fn read_text(path: &Path) -> Result<String, EvalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || {
        EvalError::file(
            path,
            None,
            "not a regular file (FIFOs, devices and directories are refused)",
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| IoError::new("open", path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    // O_NONBLOCK: if the path was swapped for a FIFO since the check, open must not hang.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| IoError::new("open", path, e))?;
    if !f
        .metadata()
        .map_err(|e| IoError::new("stat", path, e))?
        .is_file()
    {
        return Err(not_regular());
    }
    let mut b = Vec::new();
    f.take(TEXT_MAX_BYTES + 1)
        .read_to_end(&mut b)
        .map_err(|e| IoError::new("read", path, e))?;
    if b.len() as u64 > TEXT_MAX_BYTES {
        return Err(EvalError::file(
            path,
            None,
            format!("larger than the {TEXT_MAX_BYTES}-byte cap for a text file"),
        ));
    }
    String::from_utf8(b).map_err(|e| {
        let off = e.utf8_error().valid_up_to() as u64;
        EvalError::file(path, Some(off), "not UTF-8 text")
    })
}

/// Whether (and which) BOS the model puts first, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BosRule {
    /// The BOS id when the model adds one.
    pub bos: Option<u32>,
    /// Where the decision came from (for the report).
    pub reason: String,
}

/// llama.cpp's rule for a GGUF (`tokenizer.ggml.add_bos_token`, else true for a `llama`
/// (SentencePiece) vocabulary and false otherwise; the id from `tokenizer.ggml.bos_token_id`);
/// the release's own runner for the release (no BOS); `tokenizer_config.json`'s
/// `add_bos_token` for safetensors (absent: no BOS, like the release).
pub fn bos_rule(path: &Path, src: &Source) -> Result<BosRule, EvalError> {
    let cfg_bos = src.config().bos_token;
    let rule = |add: bool, id: u32, why: &str| BosRule {
        bos: add.then_some(id),
        reason: why.to_string(),
    };
    Ok(match src {
        Source::Release(_) => rule(false, cfg_bos, "the release's runner adds none"),
        Source::Gguf(_) => {
            let set =
                GgufSet::open(path).map_err(|e| EvalError::file(path, None, e.to_string()))?;
            let id = match set.get("tokenizer.ggml.bos_token_id") {
                Some(Value::U32(x)) => *x,
                Some(Value::I32(x)) if *x >= 0 => *x as u32,
                _ => cfg_bos,
            };
            match set.get("tokenizer.ggml.add_bos_token") {
                Some(Value::Bool(b)) => rule(*b, id, "tokenizer.ggml.add_bos_token"),
                _ => match set.get("tokenizer.ggml.model") {
                    Some(Value::String(m)) if m == "llama" => rule(
                        true,
                        id,
                        "no tokenizer.ggml.add_bos_token; llama.cpp's default for a llama vocabulary",
                    ),
                    _ => rule(false, id, "no tokenizer.ggml.add_bos_token"),
                },
            }
        }
        Source::Safetensors(_) => {
            let dir = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let tc = dir.join("tokenizer_config.json");
            let add = crate::io::read_capped(&tc, TOKENIZER_CONFIG_MAX_BYTES)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("add_bos_token").and_then(serde_json::Value::as_bool));
            match add {
                Some(b) => rule(b, cfg_bos, "tokenizer_config.json add_bos_token"),
                None => rule(false, cfg_bos, "no tokenizer_config.json add_bos_token"),
            }
        }
    })
}

/// The smallest `--ctx` that scores at least one token per chunk (`ctx − 1 − ⌊ctx/2⌋ ≥ 1`).
/// llama-perplexity itself accepts 1 and 2 and then divides by a count of zero.
pub const MIN_CTX: usize = 3;

/// Tokenize `text` as llama-perplexity does with `-f`: one trailing `\n` dropped, then BOS (when
/// `add_bos`) and the SentencePiece encoding.
pub fn tokenize(tok: &Tokenizer, text: &str, bos: Option<u32>) -> Vec<u32> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() / 3 + 1);
    out.extend(bos);
    out.extend(tok.encode(text));
    out
}

/// Chunks of a token stream, as llama-perplexity evaluates them.
#[derive(Clone, Debug)]
pub struct ChunkPlan {
    /// Tokens per chunk (`--ctx`).
    pub ctx: usize,
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// BOS replacing each chunk's first token during evaluation (`None`: no BOS).
    pub bos: Option<u32>,
    /// The chunks' tokens, `n_chunks · ctx` of them, unreplaced (what a KL base file stores).
    tokens: Vec<u32>,
}

impl ChunkPlan {
    /// Cut `tokens` into chunks of `ctx`, at most `max_chunks` of them (llama-perplexity's
    /// `--chunks`; `None` = all). Errors when fewer than `2·ctx` tokens are given (as
    /// llama-perplexity) or `ctx` is below [`MIN_CTX`].
    pub fn new(
        mut tokens: Vec<u32>,
        ctx: usize,
        max_chunks: Option<usize>,
        bos: Option<u32>,
    ) -> Result<ChunkPlan, EvalError> {
        if ctx < MIN_CTX {
            return Err(EvalError::Input(format!(
                "--ctx {ctx}: llama-perplexity scores tokens ctx/2+1 .. ctx-1 of each chunk, so a \
                 context below {MIN_CTX} scores none"
            )));
        }
        if max_chunks == Some(0) {
            return Err(EvalError::Input("--chunks 0: nothing to evaluate".into()));
        }
        let need = ctx.saturating_mul(2);
        if tokens.len() < need {
            return Err(EvalError::Input(format!(
                "the text tokenizes to {} tokens; a context of {ctx} needs at least {need} \
                 (llama-perplexity's rule: two chunks)",
                tokens.len()
            )));
        }
        let max = tokens.len() / ctx;
        let n_chunks = max_chunks.map_or(max, |c| c.min(max));
        tokens.truncate(n_chunks * ctx);
        Ok(ChunkPlan {
            ctx,
            n_chunks,
            bos,
            tokens,
        })
    }

    /// A plan over tokens that are already exactly `n_chunks · ctx` long (a KL base file's).
    pub fn exact(tokens: Vec<u32>, ctx: usize, bos: Option<u32>) -> Result<ChunkPlan, EvalError> {
        if ctx < MIN_CTX || tokens.is_empty() || !tokens.len().is_multiple_of(ctx) {
            return Err(EvalError::Input(format!(
                "{} tokens are not whole chunks of {ctx} (at least {MIN_CTX})",
                tokens.len()
            )));
        }
        Ok(ChunkPlan {
            ctx,
            n_chunks: tokens.len() / ctx,
            bos,
            tokens,
        })
    }

    /// First scored position of a chunk.
    pub fn first(&self) -> usize {
        self.ctx / 2
    }

    /// Tokens scored per chunk.
    pub fn scored(&self) -> usize {
        self.ctx - 1 - self.first()
    }

    /// All chunks' tokens, unreplaced.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Chunk `c`'s tokens, unreplaced.
    pub fn chunk(&self, c: usize) -> &[u32] {
        &self.tokens[c * self.ctx..(c + 1) * self.ctx]
    }

    /// Chunk `c`'s tokens as evaluated (first token replaced by BOS when the model adds one).
    pub fn eval_tokens(&self, c: usize) -> Vec<u32> {
        let mut t = self.chunk(c).to_vec();
        if let (Some(b), Some(f)) = (self.bos, t.first_mut()) {
            *f = b;
        }
        t
    }

    /// The token scored at chunk `c`'s `j`-th scored position (`0 ≤ j < scored()`).
    pub fn target(&self, c: usize, j: usize) -> u32 {
        self.tokens[c * self.ctx + self.first() + j + 1]
    }
}

/// The chunks shard `k` of `n` evaluates: contiguous blocks, so shard results concatenate in
/// chunk order (and a KL base file's rows for a shard are one contiguous range).
pub fn shard_range(n_chunks: usize, k: usize, n: usize) -> Range<usize> {
    let n = n.max(1);
    (k * n_chunks / n)..((k + 1) * n_chunks / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_follows_llama_perplexity() {
        let toks: Vec<u32> = (0..1000).collect();
        let p = ChunkPlan::new(toks.clone(), 128, None, None).unwrap();
        assert_eq!(p.n_chunks, 7);
        assert_eq!((p.first(), p.scored()), (64, 63));
        assert_eq!(p.chunk(1)[0], 128);
        assert_eq!(p.target(1, 0), 128 + 65);
        assert_eq!(p.target(1, 62), 255);
        let p = ChunkPlan::new(toks.clone(), 128, Some(3), Some(1)).unwrap();
        assert_eq!(p.n_chunks, 3);
        assert_eq!(p.eval_tokens(2)[..2], [1, 257]);
        assert_eq!(p.chunk(2)[0], 256);
        // odd contexts: first = ctx/2
        let p = ChunkPlan::new(toks.clone(), 5, None, None).unwrap();
        assert_eq!((p.first(), p.scored()), (2, 2));
        assert!(ChunkPlan::new(toks.clone(), 501, None, None).is_err());
        assert!(ChunkPlan::new(toks.clone(), 500, None, None).is_ok());
        assert!(ChunkPlan::new(toks.clone(), 2, None, None).is_err());
        assert!(ChunkPlan::new(toks, 8, Some(0), None).is_err());
    }

    #[test]
    fn shards_tile_the_chunks() {
        for n_chunks in [1, 2, 7, 16, 100] {
            for n in 1..=9 {
                let mut next = 0;
                for k in 0..n {
                    let r = shard_range(n_chunks, k, n);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, n_chunks);
            }
        }
    }
}
