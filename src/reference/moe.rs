//! The mixture-of-experts block: f32 router, top-k experts, gated-GELU experts.
//!
//! Mirrors `Router` and `MoELayer` in the release's `model.py`: router logits `x @ W_r` in
//! f32 (no soft cap, no padding mask), softmax over ALL experts, `top_k` by probability with
//! ties to the lower index (`jax.lax.top_k`), gates are the un-renormalised probabilities;
//! expert `e` computes `(gelu_tanh(x W_linear[e]) ⊙ x W_linear_v[e]) W_linear_1[e]`.
//!
//! Unlike the release (which runs every expert on every token and selects with a one-hot), the
//! tokens are grouped per expert and each chosen expert runs once over its tokens: an expert no
//! token chose is never read. All chosen experts' gate and up products are submitted together,
//! then all their down products ([`super::products`]: split over (expert, column tile), so even
//! one token keeps every core busy). The outputs are summed per token in ascending expert order.
//!
//! [`super::ModelDims::router_cap`] optionally soft-caps the router logits (`c·tanh(x/c)`, what
//! SGLang's Grok-1 does); off by default, which is the release.

use super::model::{Model, Obs};
use super::ops::{gelu_tanh, round1, round_if, softmax};
use super::products::Spec;
use super::store::WeightId;
use super::ReferenceError;
use crate::model::Role;

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

/// Route `x` (`[n, D]`, already normalized) through `layer`'s router.
pub(crate) fn route(
    model: &Model<'_>,
    layer: usize,
    x: &[f32],
    obs: &mut Obs<'_>,
) -> Result<Vec<Route>, ReferenceError> {
    let dims = model.dims();
    let (d, e) = (dims.d_model, dims.n_experts);
    let n = x.len() / d;
    obs.see(layer, Role::Router, None, x, d);
    let spec = Spec {
        id: WeightId::layer(Role::Router, layer),
        x,
        m: n,
        k: d,
        n: e,
    };
    let mut logits = model.products(&[spec], false)?.pop().unwrap_or_default();
    if let Some(c) = dims.router_cap {
        logits.iter_mut().for_each(|l| *l = c * (*l / c).tanh());
    }
    Ok(logits
        .chunks_exact_mut(e)
        .map(|row| {
            softmax(row);
            top_k(row, dims.top_k)
        })
        .collect())
}

/// The MoE block for `layer` on `x` (`[n, D]`, normalized). Returns `[n, D]`.
pub(crate) fn moe(
    model: &Model<'_>,
    layer: usize,
    x: &[f32],
    obs: &mut Obs<'_>,
) -> Result<Vec<f32>, ReferenceError> {
    let dims = model.dims();
    let r = *model.rounding();
    let (d, f) = (dims.d_model, dims.ffn);
    let n = x.len() / d;
    let routes = route(model, layer, x, obs)?;
    // Per expert (ascending), the tokens routed to it (in token order) with their gates.
    let mut sel: Vec<(usize, Vec<(usize, f32)>)> = Vec::new();
    for e in 0..dims.n_experts {
        let toks: Vec<(usize, f32)> = routes
            .iter()
            .enumerate()
            .filter_map(|(t, rt)| rt.iter().find(|(ex, _)| *ex == e).map(|&(_, g)| (t, g)))
            .collect();
        if !toks.is_empty() {
            sel.push((e, toks));
        }
    }
    let xs: Vec<Vec<f32>> = sel
        .iter()
        .map(|(_, toks)| {
            toks.iter()
                .flat_map(|&(t, _)| x[t * d..(t + 1) * d].iter().copied())
                .collect()
        })
        .collect();
    for ((e, _), xe) in sel.iter().zip(&xs) {
        obs.see(layer, Role::MoeGate, Some(*e), xe, d);
        obs.see(layer, Role::MoeUp, Some(*e), xe, d);
    }
    let mut up_specs = Vec::with_capacity(2 * sel.len());
    for ((e, toks), xe) in sel.iter().zip(&xs) {
        for role in [Role::MoeGate, Role::MoeUp] {
            up_specs.push(Spec {
                id: WeightId::expert(role, layer, *e),
                x: xe,
                m: toks.len(),
                k: d,
                n: f,
            });
        }
    }
    let mut h = model.products(&up_specs, r.weights)?;
    drop(up_specs);
    drop(xs);
    h.iter_mut().for_each(|y| round_if(r.matmul_out, y));
    // act = gelu(x W_linear) ⊙ x W_linear_v, into the gate buffers.
    let mut acts: Vec<Vec<f32>> = Vec::with_capacity(sel.len());
    let mut it = h.into_iter();
    while let (Some(mut g), Some(u)) = (it.next(), it.next()) {
        g.iter_mut()
            .zip(&u)
            .for_each(|(a, b)| *a = gelu_tanh(*a) * b);
        acts.push(g);
    }
    for ((e, _), a) in sel.iter().zip(&acts) {
        obs.see(layer, Role::MoeDown, Some(*e), a, f);
    }
    let down_specs: Vec<Spec<'_>> = sel
        .iter()
        .zip(&acts)
        .map(|((e, toks), a)| Spec {
            id: WeightId::expert(Role::MoeDown, layer, *e),
            x: a,
            m: toks.len(),
            k: f,
            n: d,
        })
        .collect();
    let ys = model.products(&down_specs, r.weights)?;
    let mut out = vec![0f32; n * d];
    for ((_, toks), y) in sel.iter().zip(&ys) {
        for (i, &(t, g)) in toks.iter().enumerate() {
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
