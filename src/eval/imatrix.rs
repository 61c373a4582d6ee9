//! Importance matrices computed layer-major: the statistics `llama-imatrix` collects, on the
//! [`super::engine`] pass (docs/imatrix.md).
//!
//! What is collected, per weight matrix of every layer (llama-imatrix's semantics at
//! llama.cpp@0c1e57098, written down in docs/imatrix.md): for each input column, the sum over all
//! activation rows that entered the product of the squared activation, and the number of rows.
//! `attn_q`, `attn_k` and `attn_v` see the same normed input but are separate entries; the
//! router `ffn_gate_inp` is an entry (a plain product of a `blk.` tensor); the expert tensors
//! `ffn_gate_exps`, `ffn_up_exps` and `ffn_down_exps` have one matrix per expert, each summing
//! only the rows routed to it, with a count per expert (a token routed to two experts counts
//! once for each). Every token of every chunk is counted (llama-imatrix evaluates whole chunks
//! and requests every position's logits), the first replaced by BOS when the model adds one.
//! The token embedding and the output head are not entries (llama-imatrix's default; its
//! `--process-output` is not offered).
//!
//! Arithmetic: each activation (f32) is squared and summed in f64 (the square of an f32 is
//! exact in f64); llama-imatrix sums in f32. The file stores f32, as llama-imatrix's does. The
//! difference is far below the 1e-4 relative agreement the interop test checks.
//!
//! Persistence: what a layer call on one group of chunks contributed is written to the state
//! directory (`imatrix-LLLLL-GGGGG.bin`, atomic, checksummed, tied to the run's identity)
//! before that group's hidden states are saved, so a killed run resumed with `--resume` has
//! every contribution of the layers it skips. The totals are folded per layer in group order;
//! a resumed run keeps the saved grouping, so it gives the uninterrupted run's bytes. A shard
//! (`--shard K/N`) writes its totals per layer the same way to its part directory; `--finish`
//! folds the shards' totals in shard order (f64, so equal to a single run's totals to about
//! 1e-16 relative; counts exactly).
//!
//! File layout of a contribution (little-endian):
//!
//! ```text
//! 0   8   "GKIMXACC"
//! 8   4   format version (1)
//! 12  4   layer
//! 16  4   group (state) or shard index (part)
//! 20  4   entries
//! 24  8   numbers that follow (f64 sums and u64 counts)
//! 32  32  SHA-256 of the run's identity
//! 64  per entry, in the layer's entry order: sums f64 × (ne0 · n_mat), counts u64 × n_mat
//! …   32  SHA-256 of every byte before it
//! ```

use super::chunks::ChunkPlan;
use super::engine::{Calls, Pass, Step};
use super::state::{Identity, StateDir};
use super::{EvalError, Model, Observer};
use crate::io::IoError;
use crate::model::roles::fill;
use crate::model::Role;
use crate::reference::ModelDims;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GKIMXACC";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const PART_FORMAT: &str = "grokit-imatrix-part";

/// One entry of a layer: the weight it belongs to and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySpec {
    /// The weight's role.
    pub role: Role,
    /// Input columns.
    pub ne0: usize,
    /// Matrices (experts for the expert tensors, else 1).
    pub n_mat: usize,
}

impl EntrySpec {
    /// The GGUF tensor name in `layer` (llama-imatrix's entry name).
    pub fn name(&self, layer: usize) -> String {
        fill(self.role.info().gguf, Some(layer as u64), None)
    }
}

/// The entries of every layer, in a fixed order: the products' order in a layer.
pub fn layer_entries(d: &ModelDims) -> Vec<EntrySpec> {
    let e = |role, ne0, n_mat| EntrySpec { role, ne0, n_mat };
    vec![
        e(Role::AttnQ, d.d_model, 1),
        e(Role::AttnK, d.d_model, 1),
        e(Role::AttnV, d.d_model, 1),
        e(Role::AttnO, d.n_q_heads * d.head_dim, 1),
        e(Role::Router, d.d_model, 1),
        e(Role::MoeGate, d.d_model, d.n_experts),
        e(Role::MoeUp, d.d_model, d.n_experts),
        e(Role::MoeDown, d.ffn, d.n_experts),
    ]
}

/// One layer's sums and counts (per entry of [`layer_entries`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerAcc {
    /// Per entry: `n_mat · ne0` sums of squares, matrix-major.
    pub sums: Vec<Vec<f64>>,
    /// Per entry: rows seen per matrix.
    pub counts: Vec<Vec<u64>>,
}

impl LayerAcc {
    /// All zero.
    pub fn zero(specs: &[EntrySpec]) -> LayerAcc {
        LayerAcc {
            sums: specs.iter().map(|s| vec![0.0; s.ne0 * s.n_mat]).collect(),
            counts: specs.iter().map(|s| vec![0; s.n_mat]).collect(),
        }
    }

    /// Add `o` (same shapes).
    pub fn add(&mut self, o: &LayerAcc) {
        for (a, b) in self.sums.iter_mut().zip(&o.sums) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    fn numbers(&self) -> usize {
        self.sums.iter().map(Vec::len).sum::<usize>()
            + self.counts.iter().map(Vec::len).sum::<usize>()
    }
}

/// Accumulates the statistics of one layer call; [`Collector::take`] hands them over.
pub struct Collector {
    specs: Vec<EntrySpec>,
    acc: LayerAcc,
    layer: Option<usize>,
    error: Option<String>,
}

impl Collector {
    /// A collector for a model of dims `d`.
    pub fn new(d: &ModelDims) -> Collector {
        let specs = layer_entries(d);
        Collector {
            acc: LayerAcc::zero(&specs),
            specs,
            layer: None,
            error: None,
        }
    }

    /// The statistics gathered since the last `take`, which must all be of `layer`; resets.
    pub fn take(&mut self, layer: usize) -> Result<LayerAcc, EvalError> {
        if let Some(e) = self.error.take() {
            return Err(EvalError::Input(e));
        }
        if self.layer.is_some_and(|l| l != layer) {
            return Err(EvalError::Input(format!(
                "imatrix: statistics of layer {:?} handed over as layer {layer}",
                self.layer
            )));
        }
        self.layer = None;
        Ok(std::mem::replace(
            &mut self.acc,
            LayerAcc::zero(&self.specs),
        ))
    }
}

impl Observer for Collector {
    fn matmul_input(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    ) {
        if self.error.is_some() {
            return;
        }
        if *self.layer.get_or_insert(layer) != layer {
            self.error = Some(format!(
                "imatrix: layer {layer} inside a call of another layer"
            ));
            return;
        }
        let Some(i) = self.specs.iter().position(|s| s.role == role) else {
            self.error = Some(format!("imatrix: a product of {role:?} has no entry"));
            return;
        };
        let s = self.specs[i];
        let m = expert.unwrap_or(0);
        if k != s.ne0 || m >= s.n_mat || !x.len().is_multiple_of(k.max(1)) {
            self.error = Some(format!(
                "imatrix: {} got rows of {k} (expert {expert:?}), expected {} × {}",
                s.name(layer),
                s.n_mat,
                s.ne0
            ));
            return;
        }
        let acc = &mut self.acc.sums[i][m * k..(m + 1) * k];
        for row in x.chunks_exact(k) {
            for (a, &v) in acc.iter_mut().zip(row) {
                let v = f64::from(v);
                *a += v * v;
            }
        }
        self.acc.counts[i][m] += (x.len() / k) as u64;
    }
}

/// Feeds a shared collector (so the engine's hook can take what it gathered).
struct Feed<'c>(&'c RefCell<Collector>);

impl Observer for Feed<'_> {
    fn matmul_input(
        &mut self,
        layer: usize,
        role: Role,
        expert: Option<usize>,
        x: &[f32],
        k: usize,
    ) {
        self.0.borrow_mut().matmul_input(layer, role, expert, x, k);
    }
}

fn io(op: &'static str, p: &Path, e: std::io::Error) -> EvalError {
    EvalError::Io(IoError::new(op, p, e))
}

/// The contribution file of `layer`, group `g`, in a state directory.
pub fn acc_path(dir: &Path, layer: usize, g: usize) -> PathBuf {
    dir.join(format!("imatrix-{layer:05}-{g:05}.bin"))
}

/// Write `acc` to `path` atomically (see the module docs for the layout).
pub fn save_acc(
    path: &Path,
    id: &[u8; 32],
    layer: usize,
    index: usize,
    acc: &LayerAcc,
) -> Result<(), EvalError> {
    let mut b = Vec::with_capacity(HEADER + 8 * acc.numbers() + 32);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(layer as u32).to_le_bytes());
    b.extend_from_slice(&(index as u32).to_le_bytes());
    b.extend_from_slice(&(acc.sums.len() as u32).to_le_bytes());
    b.extend_from_slice(&(acc.numbers() as u64).to_le_bytes());
    b.extend_from_slice(id);
    for (s, c) in acc.sums.iter().zip(&acc.counts) {
        s.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        c.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    }
    let digest = Sha256::digest(&b);
    b.extend_from_slice(&digest);
    crate::io::atomic::write_file(path, &b)?;
    Ok(())
}

/// Read a contribution written by [`save_acc`], checking everything: size, magic, layer,
/// index, identity and checksum.
pub fn load_acc(
    path: &Path,
    id: &[u8; 32],
    layer: usize,
    index: usize,
    specs: &[EntrySpec],
) -> Result<LayerAcc, EvalError> {
    let mut acc = LayerAcc::zero(specs);
    let n = acc.numbers();
    let want = (HEADER + 8 * n + 32) as u64;
    let bad = |off: u64, r: String| EvalError::file(path, Some(off), r);
    let size = std::fs::metadata(path)
        .map_err(|e| io("open", path, e))?
        .len();
    if size != want {
        return Err(bad(
            size.min(want),
            format!("{size} bytes, expected {want} (truncated or not this model's statistics)"),
        ));
    }
    let b = std::fs::read(path).map_err(|e| io("read", path, e))?;
    let u32at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if &b[..8] != MAGIC || u32at(8) != VERSION {
        return Err(bad(
            0,
            "not a grokit imatrix contribution (magic/version)".into(),
        ));
    }
    if u32at(12) as usize != layer || u32at(16) as usize != index {
        return Err(bad(
            12,
            format!(
                "holds layer {} / {}, expected {layer} / {index}",
                u32at(12),
                u32at(16)
            ),
        ));
    }
    if u32at(20) as usize != specs.len() {
        return Err(bad(
            20,
            format!("{} entries, expected {}", u32at(20), specs.len()),
        ));
    }
    if &b[32..64] != id {
        return Err(bad(
            32,
            "belongs to another run (identity hash differs)".into(),
        ));
    }
    let body = b.len() - 32;
    if Sha256::digest(&b[..body])[..] != b[body..] {
        return Err(bad(
            body as u64,
            "checksum mismatch: the file was modified or damaged".into(),
        ));
    }
    let mut o = HEADER;
    let mut next = || {
        let v = u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        o += 8;
        v
    };
    for (s, c) in acc.sums.iter_mut().zip(acc.counts.iter_mut()) {
        s.iter_mut().for_each(|v| *v = f64::from_bits(next()));
        c.iter_mut().for_each(|v| *v = next());
    }
    Ok(acc)
}

/// Collect the statistics of chunks `chunks` of `plan` layer-major: every remaining layer
/// (continuing `state`), each group's contribution saved before its hidden states; then the
/// per-layer totals, folded in group order. `identity` is the state's.
pub fn collect(
    model: &Model<'_>,
    plan: &ChunkPlan,
    chunks: Range<usize>,
    state: &StateDir,
    identity: &Identity,
    in_ram: bool,
    on: &mut dyn FnMut(Step),
) -> Result<(Vec<LayerAcc>, Calls), EvalError> {
    let dims = model.dims();
    let specs = layer_entries(dims);
    let id = identity.hash();
    // A resumed state must hold every contribution of the layers its groups completed.
    for (g, &done) in state.done.iter().enumerate() {
        for layer in 0..done {
            let p = acc_path(state.dir(), layer, g);
            if !p.exists() {
                return Err(EvalError::file(
                    &p,
                    None,
                    format!(
                        "missing: group {g} completed layer {layer} but its statistics were not \
                         saved (a state written by another command?)"
                    ),
                ));
            }
            load_acc(&p, &id, layer, g, &specs)?;
        }
    }
    let seqs: Vec<Vec<u32>> = chunks.clone().map(|c| plan.eval_tokens(c)).collect();
    let mut pass = Pass::new(model, &seqs, state, in_ram)?;
    let col = RefCell::new(Collector::new(dims));
    let mut feed = Feed(&col);
    let dir = state.dir().to_path_buf();
    pass.run_layers_then(
        Some(&mut feed),
        &mut |layer, g| {
            let acc = col.borrow_mut().take(layer)?;
            save_acc(&acc_path(&dir, layer, g), &id, layer, g, &acc)
        },
        on,
    )?;
    let mut totals = Vec::with_capacity(dims.n_layers);
    for layer in 0..dims.n_layers {
        let mut t = LayerAcc::zero(&specs);
        for g in 0..state.groups().len() {
            t.add(&load_acc(&acc_path(&dir, layer, g), &id, layer, g, &specs)?);
        }
        totals.push(t);
    }
    Ok((totals, pass.calls))
}

/// Remove the contribution files of a finished run (before [`StateDir::remove`]).
pub fn remove_accs(state: &StateDir, n_layers: usize) -> Result<(), EvalError> {
    for layer in 0..n_layers {
        for g in 0..state.groups().len() {
            let p = acc_path(state.dir(), layer, g);
            for q in [crate::io::atomic::temp_path_for(&p), p] {
                if q.exists() {
                    std::fs::remove_file(&q).map_err(|e| io("remove", &q, e))?;
                }
            }
        }
    }
    Ok(())
}

/// The description of a shard's result (`part.json` in its directory, written last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// `grokit-imatrix-part`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The run (its `chunks` is the shard's block).
    pub identity: Identity,
    /// K and N.
    pub shard: (usize, usize),
}

/// The directory of shard `k` of `n` inside the parts directory.
pub fn part_dir(parts: &Path, k: usize, n: usize) -> PathBuf {
    parts.join(format!("imatrix-{k:04}-of-{n:04}"))
}

/// Write a shard's per-layer totals to `part_dir(parts, k, n)`: one contribution file per
/// layer, then `part.json` (its presence means the part is complete).
pub fn write_part(
    parts: &Path,
    identity: &Identity,
    (k, n): (usize, usize),
    totals: &[LayerAcc],
) -> Result<PathBuf, EvalError> {
    let dir = part_dir(parts, k, n);
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let id = identity.hash();
    for (layer, t) in totals.iter().enumerate() {
        save_acc(&acc_path(&dir, layer, k), &id, layer, k, t)?;
    }
    let info = PartInfo {
        format: PART_FORMAT.into(),
        version: VERSION,
        identity: identity.clone(),
        shard: (k, n),
    };
    let j = serde_json::to_vec_pretty(&info).map_err(|e| EvalError::Input(e.to_string()))?;
    let p = dir.join("part.json");
    crate::io::atomic::write_file(&p, &j)?;
    Ok(p)
}

/// Read the N shards of a run (`identity.chunks` is the whole run) and fold their totals per
/// layer in shard order.
pub fn finish_parts(
    parts: &Path,
    identity: &Identity,
    n: usize,
    dims: &ModelDims,
) -> Result<Vec<LayerAcc>, EvalError> {
    let specs = layer_entries(dims);
    let mut totals: Vec<LayerAcc> = (0..dims.n_layers).map(|_| LayerAcc::zero(&specs)).collect();
    for k in 0..n {
        let dir = part_dir(parts, k, n);
        let p = dir.join("part.json");
        if !p.is_file() {
            return Err(EvalError::file(
                &p,
                None,
                format!("shard {k}/{n} is missing or incomplete: run it with --shard {k}/{n}"),
            ));
        }
        let b = crate::io::read_capped(&p, 1 << 20)?
            .ok_or_else(|| EvalError::file(&p, None, "larger than 1 MiB"))?;
        let info: PartInfo = serde_json::from_slice(&b).map_err(|e| {
            EvalError::file(
                &p,
                Some(e.column() as u64),
                format!("not an imatrix part: {e}"),
            )
        })?;
        if info.format != PART_FORMAT || info.version != VERSION {
            return Err(EvalError::file(
                &p,
                None,
                format!("format {:?} version {}", info.format, info.version),
            ));
        }
        let mut want = identity.clone();
        want.chunks = super::chunks::shard_range(identity.n_chunks, k, n);
        if info.identity != want || info.shard != (k, n) {
            return Err(EvalError::Mismatch {
                path: p,
                reason: format!(
                    "belongs to another run or sharding (shard {:?}, chunks {:?}; expected \
                     {k}/{n}, chunks {:?})",
                    info.shard, info.identity.chunks, want.chunks
                ),
            });
        }
        let id = want.hash();
        for (layer, t) in totals.iter_mut().enumerate() {
            t.add(&load_acc(&acc_path(&dir, layer, k), &id, layer, k, &specs)?);
        }
    }
    Ok(totals)
}

/// One entry ready for the writers: GGUF name, values per matrix, f32 sums, counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Tensor name (`blk.N.attn_q.weight`, …).
    pub name: String,
    /// Values per matrix.
    pub ne0: usize,
    /// Sums (f32, as the file stores them), matrix-major.
    pub sums: Vec<f32>,
    /// Rows per matrix.
    pub counts: Vec<i64>,
}

/// The entries of all layers, checked finite (llama-imatrix refuses non-finite statistics).
pub fn entries(dims: &ModelDims, totals: &[LayerAcc]) -> Result<Vec<Entry>, EvalError> {
    let specs = layer_entries(dims);
    let mut out = Vec::with_capacity(specs.len() * totals.len());
    for (layer, t) in totals.iter().enumerate() {
        for (i, s) in specs.iter().enumerate() {
            let sums: Vec<f32> = t.sums[i].iter().map(|&v| v as f32).collect();
            if let Some(j) = sums.iter().position(|v| !v.is_finite()) {
                return Err(EvalError::Input(format!(
                    "{}: non-finite statistics at column {} of matrix {} (the model's activations \
                     overflow)",
                    s.name(layer),
                    j % s.ne0,
                    j / s.ne0
                )));
            }
            out.push(Entry {
                name: s.name(layer),
                ne0: s.ne0,
                sums,
                counts: t.counts[i].iter().map(|&c| c as i64).collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::state::tokens_hash;
    use crate::reference::sources::Source;
    use crate::reference::Precision;

    /// One product input: layer, role, expert, rows, row width.
    type Seen = (usize, Role, Option<usize>, Vec<f32>, usize);

    /// Every product input of a layer, recorded raw.
    #[derive(Default)]
    struct Recorder(Vec<Seen>);

    impl Observer for Recorder {
        fn matmul_input(&mut self, l: usize, r: Role, e: Option<usize>, x: &[f32], k: usize) {
            self.0.push((l, r, e, x.to_vec(), k));
        }
    }

    /// On the tiny release: the layer-major collection over three chunks in two groups equals
    /// sums computed directly from the raw product inputs of the reference model run one
    /// chunk at a time; counts are the tokens (per expert: the routed tokens, top_k per token
    /// in all); q/k/v sums are equal, and the experts' gate inputs sum to top_k times the
    /// router's input (the experts see the router's input).
    #[test]
    fn collected_sums_equal_a_direct_computation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny");
        let src = Source::open(&dir, &Default::default()).unwrap();
        let dims = src.dims().clone();
        let ctx = 16;
        let tokens: Vec<u32> = (0..ctx as u32 * 3)
            .map(|i| (i * 7919 + 13) % dims.vocab as u32)
            .collect();
        let plan = ChunkPlan::new(tokens, ctx, None, Some(1)).unwrap();
        let model = Model::new(src.weights(), dims.clone(), Precision::F32).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let id = Identity {
            grokit: "test".into(),
            model: "tiny".into(),
            n_layers: dims.n_layers,
            d_model: dims.d_model,
            tokens: tokens_hash(plan.tokens()),
            ctx,
            n_chunks: plan.n_chunks,
            chunks: 0..plan.n_chunks,
            bos: plan.bos,
            precision: "f32".into(),
        };
        let d = dims.d_model as u64;
        let (state, _) = StateDir::open(
            &scratch.path().join("s"),
            &id,
            vec![0..2, 2..3],
            |r| r.len() as u64 * ctx as u64 * d,
            false,
        )
        .unwrap();
        let (got, calls) = collect(&model, &plan, 0..3, &state, &id, false, &mut |_| {}).unwrap();
        assert_eq!(calls.layer, vec![2; dims.n_layers]);
        // Direct: each chunk alone through every layer, recording the raw inputs.
        let specs = layer_entries(&dims);
        let mut want: Vec<LayerAcc> = (0..dims.n_layers).map(|_| LayerAcc::zero(&specs)).collect();
        for c in 0..plan.n_chunks {
            let toks = plan.eval_tokens(c);
            let mut h = model.embed(&toks).unwrap();
            for layer in 0..dims.n_layers {
                let mut rec = Recorder::default();
                model
                    .layer(layer, &mut h, &[toks.as_slice()], Some(&mut rec))
                    .unwrap();
                for (l, role, e, x, k) in rec.0 {
                    assert_eq!(l, layer);
                    let i = specs.iter().position(|s| s.role == role).unwrap();
                    let m = e.unwrap_or(0);
                    for (j, v) in x.iter().enumerate() {
                        want[l].sums[i][m * k + j % k] += f64::from(*v) * f64::from(*v);
                    }
                    want[l].counts[i][m] += (x.len() / k) as u64;
                }
            }
        }
        let tokens = (plan.n_chunks * ctx) as u64;
        for (layer, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.counts, w.counts, "layer {layer}");
            for (i, s) in specs.iter().enumerate() {
                for (a, b) in g.sums[i].iter().zip(&w.sums[i]) {
                    assert!(
                        (a - b).abs() <= 1e-12 * b.abs().max(1e-30),
                        "{} {a} {b}",
                        s.name(layer)
                    );
                }
                let total: u64 = g.counts[i].iter().sum();
                let per_token = if s.n_mat > 1 { dims.top_k as u64 } else { 1 };
                assert_eq!(total, tokens * per_token, "{}", s.name(layer));
            }
            assert_eq!(g.sums[0], g.sums[1]);
            assert_eq!(g.sums[0], g.sums[2]);
            let ne0 = dims.d_model;
            for j in 0..ne0 {
                let experts: f64 = (0..dims.n_experts).map(|e| g.sums[5][e * ne0 + j]).sum();
                let router = g.sums[4][j] * dims.top_k as f64;
                assert!(
                    (experts - router).abs() <= 1e-9 * router,
                    "{experts} {router}"
                );
            }
        }
        // The written entries: GGUF names, f32 sums.
        let e = entries(&dims, &got).unwrap();
        assert_eq!(e.len(), 8 * dims.n_layers);
        assert_eq!(e[0].name, "blk.0.attn_q.weight");
        assert_eq!(e[7].name, "blk.0.ffn_down_exps.weight");
        assert_eq!(e[7].counts.len(), dims.n_experts);
        remove_accs(&state, dims.n_layers).unwrap();
        state.remove().unwrap();
    }

    #[test]
    fn contributions_round_trip_and_refuse_damage() {
        let specs = vec![
            EntrySpec {
                role: Role::AttnQ,
                ne0: 3,
                n_mat: 1,
            },
            EntrySpec {
                role: Role::MoeDown,
                ne0: 2,
                n_mat: 2,
            },
        ];
        let mut a = LayerAcc::zero(&specs);
        a.sums[0] = vec![1.5, 0.1, 3.0];
        a.sums[1] = vec![0.25, 7.0, 0.0, 1e-300];
        a.counts = vec![vec![4], vec![3, 0]];
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        let id = [7u8; 32];
        save_acc(&p, &id, 2, 1, &a).unwrap();
        assert_eq!(load_acc(&p, &id, 2, 1, &specs).unwrap(), a);
        let e = load_acc(&p, &[8u8; 32], 2, 1, &specs).unwrap_err();
        assert!(e.to_string().contains("another run"), "{e}");
        let e = load_acc(&p, &id, 3, 1, &specs).unwrap_err();
        assert!(e.to_string().contains("expected 3 / 1"), "{e}");
        let mut b = std::fs::read(&p).unwrap();
        b[70] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let e = load_acc(&p, &id, 2, 1, &specs).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        std::fs::write(&p, &b[..b.len() - 1]).unwrap();
        let e = load_acc(&p, &id, 2, 1, &specs).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
