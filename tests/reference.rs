//! Reference forward pass: golden logits from the release's own JAX code (tiny12), KV-cache
//! equivalence, and a naive f64 re-implementation on a random model (runs without ../shared).
#![allow(clippy::needless_range_loop)]
mod tiny12;

use crate::util::{fixture, tiny12};
use grokit::model::Role;
use grokit::reference::compare::{compare, Thresholds};
use grokit::reference::ops::Rounding;
use grokit::reference::sources::ReleaseWeights;
use grokit::reference::store::dense;
use grokit::reference::{
    forward, Loaded, MatrixInfo, MemoryWeights, Model, ModelDims, Precision, ReferenceError,
    Session, WeightId, Weights,
};
use grokit::source::grok::open_options;
use std::collections::HashMap;
use std::ops::Range;
use tiny12::{tiny12_dims, tiny12_tokens, Tiny12};

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn argmax(r: &[f32]) -> usize {
    grokit::reference::compare::argmax(r)
}

// ---- golden: tiny12 --------------------------------------------------------------------------

/// tiny12 through the real release reader (`source::grok`), with its inferred config.
fn open_tiny12(dir: &std::path::Path) -> (ReleaseWeights, ModelDims) {
    let w = ReleaseWeights::open(dir, &open_options()).expect("open tiny12");
    let dims = w.dims.clone();
    (w, dims)
}

#[test]
fn release_reader_agrees_with_test_loader() {
    let Some(dir) = tiny12("reader vs loader") else {
        return;
    };
    let (ck, dims) = open_tiny12(&dir);
    assert_eq!(dims, tiny12_dims(&dir));
    let tl = Tiny12::load(&dir);
    assert_eq!(tl.tensors.len(), 146);
    let mem = tl.weights();
    for (path, (shape, _)) in &tl.tensors {
        let experts = if shape.len() == 3 { shape[0] } else { 1 };
        for e in 0..experts {
            let id = WeightId::from_path(path, (shape.len() == 3).then_some(e)).unwrap();
            assert_eq!(
                dense(&ck, id).unwrap(),
                dense(&mem, id).unwrap(),
                "{path} expert {e}"
            );
        }
    }
}

fn golden(name: &str) -> Option<(std::path::PathBuf, grokit::npy::NpyF32)> {
    let dir = tiny12(name)?;
    let g = grokit::npy::read(&dir.join(format!("logits_{name}.npy"))).expect("golden npy");
    Some((dir, g))
}

#[test]
fn tiny12_f32_matches_jax_per_row_and_batched() {
    let Some((dir, g)) = golden("f32") else {
        return;
    };
    let ((w, dims), toks) = (open_tiny12(&dir), tiny12_tokens(&dir));
    let [_, t, v] = [g.shape[0], g.shape[1], g.shape[2]];
    let mut worst = 0f32;
    for (b, row) in toks.iter().enumerate() {
        let lo = forward(&w, &dims, Precision::F32, std::slice::from_ref(row)).unwrap();
        let d = max_abs(&lo.data, &g.data[b * t * v..(b + 1) * t * v]);
        eprintln!("tiny12 f32 row {b} (batch of 1): max |Δ| = {d:e} over all {t} positions");
        worst = worst.max(d);
    }
    assert!(worst < 1e-4, "f32 max |Δ| {worst}");
    let lo = forward(&w, &dims, Precision::F32, &toks).unwrap();
    let d = max_abs(&lo.data, &g.data);
    eprintln!("tiny12 f32 padded batch of 2: max |Δ| = {d:e}");
    assert!(d < 1e-4);
    let mask: Vec<bool> = toks.iter().flatten().map(|&t| t != 0).collect();
    let m = compare(&g.data, &lo.data, [2, t, v], Some(&mask)).unwrap();
    assert!(Thresholds::f32_exact().check(&m).pass, "{m:?}");
}

#[test]
fn tiny12_bf16_top1_matches_jax() {
    let Some((dir, g)) = golden("bf16") else {
        return;
    };
    let ((w, dims), toks) = (open_tiny12(&dir), tiny12_tokens(&dir));
    let [_, t, v] = [g.shape[0], g.shape[1], g.shape[2]];
    let mut worst = 0f32;
    let mut sum = 0f64;
    for (b, row) in toks.iter().enumerate() {
        let lo = forward(&w, &dims, Precision::Bf16, std::slice::from_ref(row)).unwrap();
        let gr = &g.data[b * t * v..(b + 1) * t * v];
        worst = worst.max(max_abs(&lo.data, gr));
        sum += lo
            .data
            .iter()
            .zip(gr)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>();
        for p in 0..t {
            assert_eq!(
                argmax(&lo.data[p * v..(p + 1) * v]),
                argmax(&gr[p * v..(p + 1) * v]),
                "row {b} pos {p}"
            );
        }
    }
    let mean = sum / g.data.len() as f64;
    eprintln!("tiny12 bf16: max |Δ| = {worst}, mean |Δ| = {mean:.5}, top-1 equal at all positions");
    assert!(worst <= 0.25 && mean < 0.01, "bf16 max {worst} mean {mean}");
    // the documented plan beats pure f32 and beats rounding the residual stream
    let mean_with = |r: Rounding| {
        let mut s = 0f64;
        for (b, row) in toks.iter().enumerate() {
            let lo = Session::from_model(Model::with_rounding(&w, dims.clone(), r).unwrap(), 1)
                .unwrap()
                .prefill(std::slice::from_ref(row))
                .unwrap();
            s += lo
                .data
                .iter()
                .zip(&g.data[b * t * v..(b + 1) * t * v])
                .map(|(x, y)| f64::from((x - y).abs()))
                .sum::<f64>();
        }
        s / g.data.len() as f64
    };
    let plan = Rounding::for_precision(Precision::Bf16);
    let (f32_mean, res_mean) = (
        mean_with(Rounding::default()),
        mean_with(Rounding {
            residual: true,
            ..plan
        }),
    );
    eprintln!("tiny12 bf16 mean |Δ|: plan {mean:.5}, pure f32 {f32_mean:.5}, plan + bf16 residual {res_mean:.5}");
    assert!(mean < f32_mean && mean < res_mean);
    let mask: Vec<bool> = toks.iter().flatten().map(|&t| t != 0).collect();
    let lo = forward(&w, &dims, Precision::Bf16, &toks).unwrap();
    let m = compare(&g.data, &lo.data, [2, t, v], Some(&mask)).unwrap();
    eprintln!("tiny12 bf16 padded batch vs golden: {m:?}");
    assert!(Thresholds::bf16().check(&m).pass, "{m:?}");
}

#[test]
fn tiny12_kv_cache_equals_full_recompute() {
    let Some(dir) = tiny12("kv cache") else {
        return;
    };
    let ((w, dims), toks) = (open_tiny12(&dir), tiny12_tokens(&dir));
    for prec in [Precision::F32, Precision::Bf16] {
        let full = forward(&w, &dims, prec, &toks).unwrap();
        let mut s = Session::new(&w, dims.clone(), prec, 2).unwrap();
        let split = 9;
        let pre: Vec<Vec<u32>> = toks.iter().map(|r| r[..split].to_vec()).collect();
        let lo = s.prefill(&pre).unwrap();
        for b in 0..2 {
            for p in 0..split {
                assert_eq!(lo.at(b, p), full.at(b, p));
            }
        }
        for p in split..toks[0].len() {
            let step = s.step(&[toks[0][p], toks[1][p]]).unwrap();
            for b in 0..2 {
                let d = max_abs(step.at(b, 0).unwrap(), full.at(b, p).unwrap());
                assert!(d == 0.0, "{prec:?} row {b} pos {p}: {d}");
            }
        }
        assert_eq!(s.len(), toks[0].len());
    }
}

#[test]
fn tiny12_greedy_cached_equals_recompute() {
    let Some(dir) = tiny12("greedy") else {
        return;
    };
    let ((w, dims), toks) = (open_tiny12(&dir), tiny12_tokens(&dir));
    let prompt = &toks[0][..12];
    let gen = grokit::reference::greedy(&w, &dims, Precision::F32, prompt, 6, None).unwrap();
    assert_eq!(gen.len(), 6);
    let mut seq = prompt.to_vec();
    for &g in &gen {
        let lo = forward(&w, &dims, Precision::F32, &[seq.clone()]).unwrap();
        assert_eq!(argmax(lo.at(0, seq.len() - 1).unwrap()) as u32, g);
        seq.push(g);
    }
}

#[test]
fn npy_writer_is_byte_identical_to_numpy_save() {
    let Some(dir) = tiny12("npy bytes") else {
        return;
    };
    for name in ["logits_f32.npy", "logits_bf16.npy"] {
        let raw = std::fs::read(dir.join(name)).unwrap();
        let a = grokit::npy::from_bytes(&raw, std::path::Path::new(name)).unwrap();
        assert_eq!(a.shape, vec![2, 42, 512]);
        assert!(
            grokit::npy::to_bytes(&a) == raw,
            "{name}: re-serialized bytes differ"
        );
    }
}

// ---- random model vs a naive f64 implementation ----------------------------------------------

/// A random model: the f32 tensors by release path (for the naive implementation) and the
/// same values as a weight source.
struct RandomWeights {
    t: HashMap<String, (Vec<usize>, Vec<f32>)>,
    w: MemoryWeights,
}

fn lcg(s: &mut u64) -> f32 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn random_dims() -> ModelDims {
    ModelDims {
        vocab: 64,
        d_model: 32,
        n_layers: 3,
        n_q_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        n_experts: 4,
        top_k: 2,
        ffn: 48,
        ..ModelDims::grok1()
    }
}

impl RandomWeights {
    fn new(d: &ModelDims) -> Self {
        let mut s = 42u64;
        let mut m = HashMap::new();
        let mut put = |p: String, shape: Vec<usize>, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| offset + scale * lcg(&mut s)).collect();
            m.insert(p, (shape, data));
        };
        put(
            "language_model/in_out_embed/embeddings".into(),
            vec![d.vocab, d.d_model],
            1.0,
            0.0,
        );
        put(
            "language_model/rms_norm/scale".into(),
            vec![d.d_model],
            0.3,
            1.0,
        );
        let (dm, qd, kd) = (
            d.d_model,
            d.n_q_heads * d.head_dim,
            d.n_kv_heads * d.head_dim,
        );
        for l in 0..d.n_layers {
            let p = |x: &str| format!("transformer/decoder_layer_{l}/{x}");
            put(p("multi_head_attention/query/w"), vec![dm, qd], 0.5, 0.0);
            put(p("multi_head_attention/key/w"), vec![dm, kd], 0.5, 0.0);
            put(p("multi_head_attention/value/w"), vec![dm, kd], 0.5, 0.0);
            put(p("multi_head_attention/linear/w"), vec![qd, dm], 0.3, 0.0);
            for n in ["rms_norm", "rms_norm_1", "rms_norm_2", "rms_norm_3"] {
                put(p(&format!("{n}/scale")), vec![dm], 0.3, 1.0);
            }
            put(p("router/w"), vec![dm, d.n_experts], 0.5, 0.0);
            put(p("moe/linear/w"), vec![d.n_experts, dm, d.ffn], 0.3, 0.0);
            put(p("moe/linear_v/w"), vec![d.n_experts, dm, d.ffn], 0.3, 0.0);
            put(p("moe/linear_1/w"), vec![d.n_experts, d.ffn, dm], 0.3, 0.0);
        }
        let mut w = MemoryWeights::new();
        for (p, (shape, data)) in &m {
            w.insert_path(p, shape.clone(), data).unwrap();
        }
        RandomWeights { t: m, w }
    }
    fn t(&self, p: &str) -> &[f32] {
        &self.t[p].1
    }
}

/// The spec's §7 written as plainly as possible, in f64, one row at a time.
fn naive_forward(w: &RandomWeights, d: &ModelDims, toks: &[u32]) -> Vec<f64> {
    let (dm, h, kvh, hd, t_len) = (d.d_model, d.n_q_heads, d.n_kv_heads, d.head_dim, toks.len());
    let mm = |x: &[f64], wt: &[f32], k: usize, n: usize| -> Vec<f64> {
        (0..n)
            .map(|j| (0..k).map(|p| x[p] * f64::from(wt[p * n + j])).sum())
            .collect()
    };
    let norm = |x: &[f64], s: &[f32]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        x.iter()
            .zip(s)
            .map(|(v, s)| f64::from(*s) * v / (ms + f64::from(d.rms_eps)).sqrt())
            .collect()
    };
    let rope = |x: &mut [f64], pos: usize| {
        let half = x.len() / 2;
        for j in 0..half {
            let f = 1.0 / f64::from(d.rope_base).powf(2.0 * j as f64 / x.len() as f64);
            let (s, c) = (pos as f64 * f).sin_cos();
            let (a, b) = (x[j], x[j + half]);
            x[j] = a * c - b * s;
            x[j + half] = b * c + a * s;
        }
    };
    let emb = w.t("language_model/in_out_embed/embeddings");
    let mut hs: Vec<Vec<f64>> = toks
        .iter()
        .map(|&t| {
            emb[t as usize * dm..(t as usize + 1) * dm]
                .iter()
                .map(|&x| f64::from(x) * f64::from(d.emb_mult))
                .collect()
        })
        .collect();
    for l in 0..d.n_layers {
        let p = |x: &str| format!("transformer/decoder_layer_{l}/{x}");
        let wt = |x: &str| w.t(&p(x));
        let xs: Vec<Vec<f64>> = hs.iter().map(|x| norm(x, wt("rms_norm/scale"))).collect();
        let q: Vec<Vec<f64>> = xs
            .iter()
            .enumerate()
            .map(|(t, x)| {
                let mut q = mm(x, wt("multi_head_attention/query/w"), dm, h * hd);
                q.chunks_mut(hd).for_each(|c| rope(c, t));
                q
            })
            .collect();
        let k: Vec<Vec<f64>> = xs
            .iter()
            .enumerate()
            .map(|(t, x)| {
                let mut k = mm(x, wt("multi_head_attention/key/w"), dm, kvh * hd);
                k.chunks_mut(hd).for_each(|c| rope(c, t));
                k
            })
            .collect();
        let v: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| mm(x, wt("multi_head_attention/value/w"), dm, kvh * hd))
            .collect();
        for t in 0..t_len {
            let mut o = vec![0f64; h * hd];
            for hh in 0..h {
                let g = hh / (h / kvh);
                let mut lg: Vec<f64> = (0..t_len)
                    .map(|s| {
                        if s > t || toks[s] == d.pad_id {
                            return -1e30;
                        }
                        let dot: f64 = (0..hd).map(|i| q[t][hh * hd + i] * k[s][g * hd + i]).sum();
                        let x = dot * f64::from(d.attn_mult);
                        f64::from(d.attn_cap) * (x / f64::from(d.attn_cap)).tanh()
                    })
                    .collect();
                let mx = lg.iter().copied().fold(f64::MIN, f64::max);
                lg.iter_mut().for_each(|x| *x = (*x - mx).exp());
                let sum: f64 = lg.iter().sum();
                for s in 0..t_len {
                    for i in 0..hd {
                        o[hh * hd + i] += lg[s] / sum * v[s][g * hd + i];
                    }
                }
            }
            let a = mm(&o, wt("multi_head_attention/linear/w"), h * hd, dm);
            let a = norm(&a, wt("rms_norm_1/scale"));
            hs[t].iter_mut().zip(&a).for_each(|(x, y)| *x += y);
            let x = norm(&hs[t], wt("rms_norm_2/scale"));
            let mut pr = mm(&x, wt("router/w"), dm, d.n_experts);
            let mx = pr.iter().copied().fold(f64::MIN, f64::max);
            pr.iter_mut().for_each(|x| *x = (*x - mx).exp());
            let sum: f64 = pr.iter().sum();
            pr.iter_mut().for_each(|x| *x /= sum);
            let mut idx: Vec<usize> = (0..d.n_experts).collect();
            idx.sort_by(|a, b| pr[*b].partial_cmp(&pr[*a]).unwrap().then(a.cmp(b)));
            let mut y = vec![0f64; dm];
            for &e in &idx[..d.top_k] {
                let sl = |n: &str, a: usize, b: usize| wt(n)[e * a * b..(e + 1) * a * b].to_vec();
                let h1 = mm(&x, &sl("moe/linear/w", dm, d.ffn), dm, d.ffn);
                let h2 = mm(&x, &sl("moe/linear_v/w", dm, d.ffn), dm, d.ffn);
                let act: Vec<f64> = h1
                    .iter()
                    .zip(&h2)
                    .map(|(a, b)| {
                        0.5 * a
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (a + 0.044715 * a * a * a))
                                    .tanh())
                            * b
                    })
                    .collect();
                let ye = mm(&act, &sl("moe/linear_1/w", d.ffn, dm), d.ffn, dm);
                y.iter_mut().zip(&ye).for_each(|(a, b)| *a += pr[e] * b);
            }
            let y = norm(&y, wt("rms_norm_3/scale"));
            hs[t].iter_mut().zip(&y).for_each(|(x, y)| *x += y);
        }
    }
    let fnorm = w.t("language_model/rms_norm/scale");
    let mut out = Vec::new();
    for x in &hs {
        let x = norm(x, fnorm);
        for tok in 0..d.vocab {
            let s: f64 = (0..dm).map(|i| x[i] * f64::from(emb[tok * dm + i])).sum();
            out.push(s * f64::from(d.out_mult));
        }
    }
    out
}

#[test]
fn random_model_matches_naive_f64() {
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let w = &rw.w;
    let rows = vec![
        vec![5u32, 17, 3, 60, 9, 22, 41, 7],
        vec![8, 12, 33, 4, 0, 0, 0, 0],
    ];
    let lo = forward(w, &d, Precision::F32, &rows).unwrap();
    let scale = lo.data.iter().fold(0f32, |a, x| a.max(x.abs()));
    for (b, row) in rows.iter().enumerate() {
        let n = naive_forward(&rw, &d, row);
        let got = &lo.data[b * row.len() * d.vocab..(b + 1) * row.len() * d.vocab];
        let err = got
            .iter()
            .zip(&n)
            .map(|(x, y)| (f64::from(*x) - y).abs())
            .fold(0f64, f64::max);
        eprintln!("random model row {b}: max |Δ| vs naive f64 = {err:e} (max |logit| {scale})");
        assert!(err < 1e-4 * f64::from(scale.max(1.0)), "row {b}: {err}");
    }
}

#[test]
fn random_model_kv_cache_pads_and_bf16() {
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let w = &rw.w;
    let rows = vec![vec![5u32, 17, 3, 60, 9, 22], vec![8, 12, 33, 0, 0, 0]];
    for prec in [Precision::F32, Precision::Bf16] {
        let full = forward(w, &d, prec, &rows).unwrap();
        let mut s = Session::new(w, d.clone(), prec, 2).unwrap();
        let pre: Vec<Vec<u32>> = rows.iter().map(|r| r[..2].to_vec()).collect();
        s.prefill(&pre).unwrap();
        for p in 2..6 {
            let st = s.step(&[rows[0][p], rows[1][p]]).unwrap();
            assert_eq!(st.at(0, 0), full.at(0, p));
            assert_eq!(st.at(1, 0), full.at(1, p));
        }
        // a row's logits do not depend on its batch neighbours
        let alone = forward(w, &d, prec, &rows[1..]).unwrap();
        assert_eq!(alone.data, full.data[6 * d.vocab..]);
    }
    // pad keys are invisible: changing what follows a pad-terminated prefix as pads changes nothing before
    let a = forward(w, &d, Precision::F32, &[vec![8, 12, 33, 0, 0, 0]]).unwrap();
    let b = forward(w, &d, Precision::F32, &[vec![8, 12, 33]]).unwrap();
    assert_eq!(&a.data[..3 * d.vocab], &b.data[..]);
    // bf16 stays close to f32 on this model
    let f = forward(w, &d, Precision::F32, &rows).unwrap();
    let h = forward(w, &d, Precision::Bf16, &rows).unwrap();
    assert!(
        max_abs(&f.data, &h.data) < 0.1,
        "{}",
        max_abs(&f.data, &h.data)
    );
    // errors, not panics
    assert!(forward(w, &d, Precision::F32, &[vec![64]]).is_err());
    assert!(forward(w, &d, Precision::F32, &[vec![1, 2], vec![1]]).is_err());
    assert!(forward(w, &d, Precision::F32, &[]).is_err());
}

#[test]
fn random_model_long_sequence_blocks_and_cache() {
    // 300 positions: crosses the attention query block (128) and the kernel's k block (256).
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let w = &rw.w;
    let mut s = 9u64;
    let mut row: Vec<u32> = (0..290)
        .map(|_| 1 + ((lcg(&mut s) + 1.0) * 31.0) as u32)
        .collect();
    row.extend([0; 10]);
    let full = forward(w, &d, Precision::F32, std::slice::from_ref(&row)).unwrap();
    let n = naive_forward(&rw, &d, &row);
    let err = full
        .data
        .iter()
        .zip(&n)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0f64, f64::max);
    eprintln!("random model, 300 positions: max |Δ| vs naive f64 = {err:e}");
    assert!(err < 1e-3, "{err}");
    let mut sess = Session::new(w, d.clone(), Precision::F32, 1).unwrap();
    sess.prefill(&[row[..200].to_vec()]).unwrap();
    for p in 200..row.len() {
        let st = sess.step(&[row[p]]).unwrap();
        assert_eq!(st.at(0, 0), full.at(0, p), "pos {p}");
    }
    // a prefill cut into chunks of 37 positions gives the same logits, bit for bit
    let mut sess = Session::new(w, d.clone(), Precision::F32, 1).unwrap();
    sess.set_max_chunk(37);
    let chunked = sess.prefill(std::slice::from_ref(&row)).unwrap();
    assert_eq!(bits(&chunked.data), bits(&full.data));
    // the context is enforced
    let short = ModelDims {
        max_seq: 299,
        ..d.clone()
    };
    let e = forward(w, &short, Precision::F32, std::slice::from_ref(&row)).unwrap_err();
    assert!(e.to_string().contains("context of 299"), "{e}");
}

#[test]
fn wrong_weight_shape_is_an_error() {
    let d = random_dims();
    let mut rw = RandomWeights::new(&d);
    let id = WeightId::layer(Role::AttnK, 1);
    let (mut shape, data) = rw.w.get(id).unwrap();
    shape.reverse();
    rw.w.insert(id, shape, &data).unwrap();
    let e = forward(&rw.w, &d, Precision::F32, &[vec![1, 2]]).unwrap_err();
    assert!(matches!(e, ReferenceError::Shape { .. }), "{e}");
    // a source's own check names the key: d_model 32 but the embedding is [64, 32]
    let e = grokit::reference::sources::verify_shapes(
        &rw.w,
        &ModelDims {
            d_model: 48,
            ..d.clone()
        },
        "test.gguf",
        grokit::model::KeyFormat::Gguf,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("test.gguf") && e.to_string().contains("grok.embedding_length"),
        "{e}"
    );
}

// ---- the layer-major API -------------------------------------------------------------------

/// Records every `matmul_input` call.
#[derive(Default)]
struct Recorder(Vec<Call>);

/// (layer, role, expert, k, x)
type Call = (usize, Role, Option<usize>, usize, Vec<f32>);

impl grokit::reference::Observer for Recorder {
    fn matmul_input(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    ) {
        assert_eq!(x.len() % k, 0);
        self.0.push((layer, role, expert, k, x.to_vec()));
    }
}

/// Layer-major evaluation (every sequence through layer 0, then layer 1, ...) gives the logits
/// of a full forward of each sequence alone, bit for bit, and the observer sees every product's
/// input in a deterministic order.
#[test]
fn layer_major_equals_forward_and_observes_every_product() {
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let w = &rw.w;
    let seqs: Vec<Vec<u32>> = vec![
        vec![5, 17, 3, 60, 9],
        vec![8, 12],
        vec![33, 4, 0, 0, 7, 1, 2],
    ];
    for prec in [Precision::F32, Precision::Bf16] {
        let m = grokit::reference::Model::new(w, d.clone(), prec).unwrap();
        let flat: Vec<u32> = seqs.iter().flatten().copied().collect();
        let mut h = m.embed(&flat).unwrap();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let mut rec = Recorder::default();
        for l in 0..d.n_layers {
            m.layer(l, &mut h, &refs, Some(&mut rec)).unwrap();
        }
        let rows: Vec<usize> = (0..flat.len()).collect();
        let logits = m.head(&h, &rows).unwrap();
        let mut at = 0;
        for s in &seqs {
            let want = forward(w, &d, prec, std::slice::from_ref(s)).unwrap();
            let got = &logits[at * d.vocab..(at + s.len()) * d.vocab];
            assert_eq!(bits(got), bits(&want.data), "{prec:?} {s:?}");
            at += s.len();
        }
        // the order: q, k, v, o, router, then gate/up per expert, then down per expert
        let per_layer: Vec<Vec<(Role, Option<usize>)>> = (0..d.n_layers)
            .map(|l| {
                rec.0
                    .iter()
                    .filter(|c| c.0 == l)
                    .map(|c| (c.1, c.2))
                    .collect()
            })
            .collect();
        for calls in &per_layer {
            assert_eq!(
                &calls[..5],
                &[
                    (Role::AttnQ, None),
                    (Role::AttnK, None),
                    (Role::AttnV, None),
                    (Role::AttnO, None),
                    (Role::Router, None)
                ]
            );
            let experts: Vec<usize> = calls[5..]
                .iter()
                .filter(|c| c.0 == Role::MoeDown)
                .map(|c| c.1.unwrap())
                .collect();
            assert!(experts.windows(2).all(|p| p[0] < p[1]));
            assert_eq!(calls.len(), 5 + 3 * experts.len());
        }
        // every token goes to top_k experts: the expert inputs hold tokens × top_k rows
        let rows_in = |role: Role| -> usize {
            rec.0
                .iter()
                .filter(|c| c.0 == 0 && c.1 == role)
                .map(|c| c.4.len() / c.3)
                .sum()
        };
        assert_eq!(rows_in(Role::MoeGate), flat.len() * d.top_k);
        assert_eq!(rows_in(Role::MoeDown), flat.len() * d.top_k);
        assert_eq!(rows_in(Role::AttnQ), flat.len());
        // deterministic: a second run records the same calls, bit for bit
        let mut again = Recorder::default();
        let mut h2 = m.embed(&flat).unwrap();
        for l in 0..d.n_layers {
            m.layer(l, &mut h2, &refs, Some(&mut again)).unwrap();
        }
        assert_eq!(rec.0.len(), again.0.len());
        for (a, b) in rec.0.iter().zip(&again.0) {
            assert_eq!((a.0, a.1, a.2, a.3), (b.0, b.1, b.2, b.3));
            assert_eq!(bits(&a.4), bits(&b.4));
        }
    }
    // bad calls are errors
    let m = grokit::reference::Model::new(w, d.clone(), Precision::F32).unwrap();
    let mut h = vec![0f32; 3 * d.d_model];
    assert!(m.layer(0, &mut h, &[&[1, 2]], None).is_err());
    assert!(m.layer(d.n_layers, &mut h, &[&[1, 2, 3]], None).is_err());
    assert!(m.head(&h, &[3]).is_err());
    assert!(m.embed(&[64]).is_err());
}

/// Logits only where asked: the last real position of each row equals the full run's row there.
#[test]
fn last_position_logits_equal_the_full_run() {
    use grokit::reference::{forward_select, Positions};
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let rows = vec![vec![5u32, 17, 3, 60, 9, 22], vec![8, 12, 33, 0, 0, 0]];
    let full = forward(&rw.w, &d, Precision::F32, &rows).unwrap();
    let last = forward_select(&rw.w, &d, Precision::F32, &rows, Positions::Last).unwrap();
    assert_eq!(last.positions, vec![(0, 5), (1, 2)]);
    assert!(!last.is_full());
    assert_eq!(last.shape(), vec![2, d.vocab]);
    for &(b, t) in &last.positions {
        assert_eq!(bits(last.at(b, t).unwrap()), bits(full.at(b, t).unwrap()));
    }
    assert!(last.at(0, 0).is_none());
}

/// The optional router soft cap (SGLang's `30·tanh(x/30)`) is off by default and changes the
/// gates (hence the logits) when on; a non-finite cap is refused.
#[test]
fn router_cap_knob() {
    let d = random_dims();
    let rw = RandomWeights::new(&d);
    let rows = vec![vec![5u32, 17, 3, 60]];
    assert_eq!(d.router_cap, None);
    let off = forward(&rw.w, &d, Precision::F32, &rows).unwrap();
    let capped = ModelDims {
        router_cap: Some(0.5),
        ..d.clone()
    };
    let on = forward(&rw.w, &capped, Precision::F32, &rows).unwrap();
    assert!(max_abs(&off.data, &on.data) > 0.0);
    let huge = ModelDims {
        router_cap: Some(1e30),
        ..d.clone()
    };
    let same = forward(&rw.w, &huge, Precision::F32, &rows).unwrap();
    assert!(max_abs(&off.data, &same.data) < 1e-4);
    let bad = ModelDims {
        router_cap: Some(f32::NAN),
        ..d.clone()
    };
    assert!(forward(&rw.w, &bad, Precision::F32, &rows).is_err());
}

// ---- bounded memory: banded matrices give the whole-matrix logits, bit for bit ----------------

/// Delegates everything and counts `load` calls.
struct Counting<'a>(&'a dyn Weights, std::sync::atomic::AtomicUsize);
impl Weights for Counting<'_> {
    fn info(&self, id: WeightId) -> Result<MatrixInfo, ReferenceError> {
        self.0.info(id)
    }
    fn load(&self, id: WeightId, cols: Range<usize>) -> Result<Loaded<'_>, ReferenceError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.load(id, cols)
    }
    fn vector(&self, id: WeightId) -> Result<Vec<f32>, ReferenceError> {
        self.0.vector(id)
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// The tiny fixture as the release, and converted by the CLI to GGUF (f32, bf16, q8_0, q4_k) and
/// to safetensors (hf bf16, jax f32, compressed-tensors int8 and int4): for each source and both
/// precisions, logits with bands of 1 column (and a few uneven widths) equal the default
/// logits bit for bit, for a batched prefill and for KV-cached decode steps.
#[test]
fn banded_matrices_give_bit_identical_logits_on_every_source() {
    use grokit::reference::sources::Source;
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let mut paths = vec![fx.clone()];
    for (name, args) in [
        ("f32.gguf", &["--to", "gguf", "--type", "f32"][..]),
        ("bf16.gguf", &["--to", "gguf", "--type", "bf16"]),
        ("q8_0.gguf", &["--to", "gguf", "--type", "q8_0"]),
        ("q4_k_m.gguf", &["--to", "gguf", "--quant", "q4_k_m"]),
        ("st-bf16", &["--to", "safetensors", "--dtype", "bf16"]),
        (
            "st-jax-f32",
            &["--to", "safetensors", "--dtype", "f32", "--layout", "jax"],
        ),
        ("st-int8", &["--to", "safetensors", "--dtype", "int8"]),
        ("st-int4", &["--to", "safetensors", "--dtype", "int4"]),
    ] {
        let out = d.path().join(name);
        let st = crate::util::grokit()
            .arg("convert")
            .arg(&fx)
            .arg("-o")
            .arg(&out)
            .arg("-q")
            .args(args)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        paths.push(out);
    }
    let tokens = vec![
        vec![5u32, 6, 7, 300, 12, 99, 1],
        vec![17, 3, 511, 2, 0, 0, 0],
    ];
    for p in &paths {
        let source = Source::open(p, &open_options()).unwrap();
        let dims = source.dims().clone();
        let w = source.weights();
        for prec in [Precision::F32, Precision::Bf16] {
            let mut s = Session::new(w, dims.clone(), prec, 2).unwrap();
            let full = s.prefill(&tokens).unwrap();
            let steps: Vec<_> = [[8u32, 9], [10, 11]]
                .iter()
                .map(|t| s.step(t).unwrap())
                .collect();
            // 1 byte: one column (or vocabulary row) per band; then uneven band widths.
            for budget in [1u64, 64 * 3, 344 * 5 + 4, 64 * 100 * 4] {
                let counted = Counting(w, Default::default());
                let mut s = Session::new(&counted, dims.clone(), prec, 2).unwrap();
                s.set_band_bytes(budget);
                let got = s.prefill(&tokens).unwrap();
                let what = format!("{} {prec:?} band {budget} B", p.display());
                assert_eq!(bits(&got.data), bits(&full.data), "{what}: prefill");
                for (t, want) in [[8u32, 9], [10, 11]].iter().zip(&steps) {
                    let got = s.step(t).unwrap();
                    assert_eq!(bits(&got.data), bits(&want.data), "{what}: step");
                }
                // the banded path ran: more loads than matrices
                let loads = counted.1.load(std::sync::atomic::Ordering::Relaxed);
                assert!(loads > 3 * 40, "{what}: {loads} loads");
            }
        }
    }
}

/// Loads outside a matrix are errors, never panics, on every source; the release's int8
/// matrices are loaded whole only.
#[test]
fn load_ranges_are_checked() {
    use grokit::reference::sources::Source;
    let fx = fixture();
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("q8.gguf");
    let st = crate::util::grokit()
        .args([
            "convert",
            fx.to_str().unwrap(),
            "-o",
            g.to_str().unwrap(),
            "-q",
            "--to",
            "gguf",
            "--type",
            "q8_0",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    for p in [fx.clone(), g] {
        let source = Source::open(&p, &open_options()).unwrap();
        let w = source.weights();
        for id in [
            WeightId::global(Role::Embed),
            WeightId::expert(Role::MoeDown, 0, 3),
            WeightId::layer(Role::AttnQ, 1),
        ] {
            let info = w.info(id).unwrap();
            let n = info.n;
            assert!(w.load(id, n - 1..n + 1).is_err(), "{id}");
            assert!(w.load(id, n..n + 1).is_err() || n == 0, "{id}");
            let whole = w.load(id, 0..n).unwrap();
            assert_eq!(whole.matrix().unwrap().n(), n);
            if !info.bandable {
                assert!(w.load(id, 0..1).is_err(), "{id}");
            }
        }
        assert!(w.info(WeightId::expert(Role::MoeGate, 0, 8)).is_err());
        assert!(w.info(WeightId::layer(Role::MoeGate, 0)).is_err());
        assert!(w.info(WeightId::layer(Role::AttnQ, 2)).is_err());
    }
}
