//! Drive the reference forward pass and the `.npy` codec from the command line, for
//! `tests/interop/forward_npy.py` (until `grokit run --logits-out` exists).
//!
//! ```text
//! forward_npy forward CKPT_DIR TOKENS_JSON f32|bf16 OUT.npy[.zst]   # logits [B, T, V]
//! forward_npy roundtrip IN.npy OUT.npy[.zst]                        # read, then write again
//! ```
use grokit::npy::{self, NpyF32};
use grokit::reference::sources::ReleaseWeights;
use grokit::reference::{forward, Precision};
use grokit::source::grok::open_options;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["forward", ckpt, tokens, prec, out] => {
            let ck = ReleaseWeights::open(Path::new(ckpt), &open_options())?;
            let dims = ck.dims.clone();
            let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tokens)?)?;
            let rows: Vec<Vec<u32>> = serde_json::from_value(j["tokens"].clone())?;
            let p = match *prec {
                "f32" => Precision::F32,
                "bf16" => Precision::Bf16,
                other => anyhow::bail!("precision {other:?}: f32 or bf16"),
            };
            let lo = forward(&ck, &dims, p, &rows)?;
            npy::write(Path::new(out), &NpyF32::from(lo))?;
        }
        ["roundtrip", input, out] => {
            let a = npy::read(Path::new(input))?;
            npy::write(Path::new(out), &a)?;
        }
        _ => anyhow::bail!(
            "usage: forward_npy forward CKPT TOKENS_JSON f32|bf16 OUT | roundtrip IN OUT"
        ),
    }
    Ok(())
}
