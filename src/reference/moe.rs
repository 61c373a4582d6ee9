//! The mixture-of-experts block: f32 router, top-k experts, gated-GELU experts.
//!
//! Mirrors `Router` and `MoELayer` in the release's `model.py`: router logits `x @ W_r` in
//! f32 (no soft cap, no padding mask), softmax over ALL experts, `top_k` by probability with
//! ties to the lower index (`jax.lax.top_k`), gates are the un-renormalised probabilities;
//! expert `e` computes `(gelu_tanh(x W_linear[e]) ⊙ x W_linear_v[e]) W_linear_1[e]`.
//!
//! Unlike the release (which runs every expert on every token and selects with a one-hot), only
//! the experts a token was routed to are computed, one matrix at a time, each in bands of output
//! columns ([`super::band`]): peak weight memory is one band (at most 128 MiB of f32 by
//! default; plus the raw bytes of one matrix for the release's int8), not an expert's three
//! 805 MB matrices. Bands split the output dimension only, so the results are bit-identical.

use super::band::matmul_cols;
use super::gemm::{matmul, BLayout};
use super::ops::{gelu_tanh, round1, round_if, softmax, Rounding};
use super::{fetch, ModelDims, ReferenceError, Weights};

/// Routing of one token: `(expert, gate)` pairs, best first.
pub type Route = Vec<(usize, f32)>;

/// Router probabilities → top-k `(expert, prob)`, ties to the lower index.
pub fn top_k(probs: &[f32], k: usize) -> Route {
    let mut taken = vec![false; probs.len()];
    let mut out = Vec::with_capacity(k);
    for _ in 0..k.min(probs.len()) {
        let mut best: Option<usize> = None;
        for (e, &p) in probs.iter().enumerate() {
            // strict '>' keeps the lower index on ties; NaN never wins over a number
            if !taken[e] && best.is_none_or(|b| p > probs[b]) {
                best = Some(e);
            }
        }
        if let Some(b) = best {
            taken[b] = true;
            out.push((b, probs[b]));
        }
    }
    out
}

fn path(layer: usize, what: &str) -> String {
    format!("transformer/decoder_layer_{layer}/{what}/w")
}

/// Route `x` (`[n, D]`, already normalized) through layer `layer`'s router.
pub fn route(
    dims: &ModelDims,
    w: &dyn Weights,
    layer: usize,
    x: &[f32],
) -> Result<Vec<Route>, ReferenceError> {
    let (d, e) = (dims.d_model, dims.n_experts);
    let n = x.len() / d;
    let p = path(layer, "router");
    let wr = fetch(w, &p, None, &[d, e])?;
    let mut logits = matmul(x, n, d, &wr, BLayout::KN, e)
        .ok_or_else(|| ReferenceError::Input(format!("{p}: dims")))?;
    Ok(logits
        .chunks_exact_mut(e)
        .map(|row| {
            softmax(row);
            top_k(row, dims.top_k)
        })
        .collect())
}

/// The MoE block for layer `layer` on `x` (`[n, D]`, normalized). Returns `[n, D]`.
/// Expert matrices are applied in column bands of at most `band_bytes` of f32 weights.
pub fn moe(
    dims: &ModelDims,
    r: &Rounding,
    w: &dyn Weights,
    layer: usize,
    x: &[f32],
    band_bytes: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let (d, f) = (dims.d_model, dims.ffn);
    let n = x.len() / d;
    let routes = route(dims, w, layer, x)?;
    let mut out = vec![0f32; n * d];
    for e in 0..dims.n_experts {
        // tokens routed to e, with their gates
        let sel: Vec<(usize, f32)> = routes
            .iter()
            .enumerate()
            .filter_map(|(t, rt)| rt.iter().find(|(ex, _)| *ex == e).map(|&(_, g)| (t, g)))
            .collect();
        if sel.is_empty() {
            continue;
        }
        let m = sel.len();
        let xe: Vec<f32> = sel
            .iter()
            .flat_map(|&(t, _)| x[t * d..(t + 1) * d].iter().copied())
            .collect();
        let mm = |what: &str,
                  a: &[f32],
                  k: usize,
                  nn: usize,
                  round_out: bool|
         -> Result<Vec<f32>, ReferenceError> {
            let p = path(layer, what);
            let mut y = matmul_cols(w, &p, Some(e), a, m, (k, nn), r.weights, band_bytes)?;
            round_if(round_out, &mut y);
            Ok(y)
        };
        let h1 = mm("moe/linear", &xe, d, f, r.matmul_out)?;
        let h2 = mm("moe/linear_v", &xe, d, f, r.matmul_out)?;
        let act: Vec<f32> = h1.iter().zip(&h2).map(|(a, b)| gelu_tanh(*a) * b).collect();
        let y = mm("moe/linear_1", &act, f, d, false)?;
        for (i, &(t, g)) in sel.iter().enumerate() {
            let g = round1(r.gate, g);
            out[t * d..(t + 1) * d]
                .iter_mut()
                .zip(&y[i * d..(i + 1) * d])
                .for_each(|(o, v)| *o += g * v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn top_k_ties_and_order() {
        assert_eq!(top_k(&[0.1, 0.4, 0.4, 0.1], 2), vec![(1, 0.4), (2, 0.4)]);
        assert_eq!(top_k(&[0.25; 4], 2), vec![(0, 0.25), (1, 0.25)]);
        assert_eq!(top_k(&[0.1, 0.2, 0.7], 2), vec![(2, 0.7), (1, 0.2)]);
        assert_eq!(top_k(&[1.0], 2), vec![(0, 1.0)]);
    }
}
