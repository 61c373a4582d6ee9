//! The layer-major pass: every sequence through layer 0, then every sequence through layer 1,
//! …, then the output head, under a memory budget.
//!
//! Sequences are split into groups whose hidden states and layer working set fit the budget
//! ([`plan_layout`]); each layer is applied to one group at a time, in order, so a layer's
//! weights are requested once per group (once per run when everything fits one group; later
//! groups otherwise find the layer in the page cache, which the budget leaves room for). Hidden
//! states stay in RAM when all of them fit ([`Layout::in_ram`]), else only the group being
//! computed is in RAM and the others wait in the state directory. Either way every group's
//! states are saved there after every layer ([`super::state`]), which is what `--resume`
//! continues from.
//!
//! The engine knows nothing of perplexity: it runs [`Model::layer`] with an optional
//! [`Observer`] (what an importance matrix needs: the inputs of every matrix product, layer by
//! layer) and hands the output head's logits for chosen positions to a callback.
//!
//! Contract relied on: `Model::layer` and `Model::head` compute every row independently of the
//! other rows and sequences in the call (the reference's products split N, never K, and each
//! sequence attends only to itself). That is what makes results independent of the grouping,
//! the budget, `--resume` and `--shard` (tested).

use super::state::StateDir;
use super::{EvalError, Model, Observer};
use crate::reference::ModelDims;
use std::ops::Range;

/// How sequences are grouped and where their hidden states live.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Groups of sequences, in order, each a range of sequence indices.
    pub groups: Vec<Range<usize>>,
    /// All hidden states stay in RAM between layers (else only one group at a time).
    pub in_ram: bool,
    /// Sequences per output-head call.
    pub head_batch: usize,
    /// Bytes of hidden states of one sequence.
    pub state_per_seq: u64,
    /// The memory the layout expects to use at most.
    pub peak: u64,
}

/// Working-set estimate of [`Model::layer`] per token, in bytes: the normed input, the
/// attention's q/k/v/o and output, and the MoE's expert input, its three `[tokens, F]`
/// intermediates and output, with every token routed to one expert in the worst case.
pub fn layer_bytes_per_token(d: &ModelDims) -> u64 {
    let kv = (d.n_kv_heads * d.head_dim) as u64;
    4 * (6 * d.d_model as u64 + 4 * kv + 3 * d.ffn as u64)
}

/// Memory the model needs whatever the batch: one band of weights (at most 128 MiB of f32), the
/// raw bytes of the largest matrix (an int8 expert of the release), and some slack.
pub fn fixed_bytes(d: &ModelDims) -> u64 {
    let m = (d.d_model * d.ffn) as u64;
    (4 * m).min(128 << 20) + m + (16 << 20)
}

/// Output-head bytes per scored row: the logits, the KL base row, the head's band output and
/// the normed input.
pub fn head_bytes_per_row(d: &ModelDims) -> u64 {
    let v = d.vocab as u64;
    let band_rows = ((128u64 << 20) / (4 * d.d_model as u64).max(1)).min(v);
    4 * v + 2 * v + 8 + 4 * band_rows + 8 * d.d_model as u64
}

/// Group `n` sequences of `seq_len` tokens under `budget` bytes, for `head_rows` scored rows
/// per sequence.
pub fn plan_layout(
    d: &ModelDims,
    seq_len: usize,
    n: usize,
    head_rows: usize,
    budget: u64,
) -> Layout {
    let n64 = n.max(1) as u64;
    let avail = budget.saturating_sub(fixed_bytes(d)).max(1);
    let state = seq_len as u64 * d.d_model as u64 * 4;
    let work = seq_len as u64 * layer_bytes_per_token(d);
    let total_state = state * n64;
    let (in_ram, per_group) = if total_state + work <= avail {
        (true, ((avail - total_state) / work.max(1)).clamp(1, n64))
    } else {
        (false, (avail / (state + work).max(1)).clamp(1, n64))
    };
    let count = n64.div_ceil(per_group);
    let groups: Vec<Range<usize>> = (0..count)
        .map(|i| (i * n64 / count) as usize..((i + 1) * n64 / count) as usize)
        .collect();
    let largest = groups.iter().map(|g| g.len() as u64).max().unwrap_or(1);
    let resident = if in_ram { total_state } else { state * largest };
    let per_head = head_rows.max(1) as u64 * head_bytes_per_row(d);
    let head_batch = (avail.saturating_sub(resident) / per_head.max(1)).clamp(1, n64);
    let peak = fixed_bytes(d) + resident + (work * largest).max(head_batch * per_head);
    Layout {
        groups,
        in_ram,
        head_batch: head_batch as usize,
        state_per_seq: state,
        peak,
    }
}

/// Receives each sequence's head logits: `(sequence, logits [positions, V])`.
pub type HeadSink<'a> = dyn FnMut(usize, &[f32]) -> Result<(), EvalError> + 'a;

/// What the pass is doing (for progress reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `layer` finished on group `group` of `groups` (`tokens` tokens).
    LayerDone {
        /// The layer.
        layer: usize,
        /// The group.
        group: usize,
        /// Groups in all.
        groups: usize,
        /// Tokens in the group.
        tokens: usize,
    },
    /// The output head finished `seqs` more sequences.
    HeadDone {
        /// Sequences in this call.
        seqs: usize,
    },
}

/// Calls made in this process (what bytes-read-per-run is computed from).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calls {
    /// `Model::layer` calls per layer.
    pub layer: Vec<u64>,
    /// `Model::head` calls.
    pub head: u64,
    /// Distinct embedding rows gathered (per call: a row is read once however often its
    /// token occurs).
    pub embedded: u64,
}

/// A layer-major pass over `seqs`, its state in a [`StateDir`].
pub struct Pass<'p, 'w> {
    model: &'p Model<'w>,
    seqs: &'p [Vec<u32>],
    state: &'p StateDir,
    in_ram: bool,
    ram: Vec<Option<Vec<f32>>>,
    done: Vec<usize>,
    /// Calls made so far.
    pub calls: Calls,
}

impl<'p, 'w> Pass<'p, 'w> {
    /// A pass over `seqs` grouped as `state.groups()`, continuing from `state.done`.
    pub fn new(
        model: &'p Model<'w>,
        seqs: &'p [Vec<u32>],
        state: &'p StateDir,
        in_ram: bool,
    ) -> Result<Self, EvalError> {
        let n: usize = state.groups().iter().map(|g| g.len()).sum();
        if n != seqs.len() || state.done.len() != state.groups().len() {
            return Err(EvalError::Input(format!(
                "{} sequences for groups covering {n}",
                seqs.len()
            )));
        }
        Ok(Pass {
            model,
            seqs,
            state,
            in_ram,
            ram: vec![None; state.groups().len()],
            done: state.done.clone(),
            calls: Calls {
                layer: vec![0; model.dims().n_layers],
                ..Calls::default()
            },
        })
    }

    fn values(&self, g: usize) -> u64 {
        let t: usize = self.seqs[self.state.groups()[g].clone()]
            .iter()
            .map(Vec::len)
            .sum();
        (t * self.model.dims().d_model) as u64
    }

    /// Group `g`'s hidden states after its completed layers: from RAM, from its file, or (none
    /// completed) the embedding.
    fn take(&mut self, g: usize) -> Result<Vec<f32>, EvalError> {
        if let Some(h) = self.ram[g].take() {
            return Ok(h);
        }
        if self.done[g] == 0 {
            let toks: Vec<u32> = self.seqs[self.state.groups()[g].clone()].concat();
            let mut distinct = toks.clone();
            distinct.sort_unstable();
            distinct.dedup();
            self.calls.embedded += distinct.len() as u64;
            return Ok(self.model.embed(&toks)?);
        }
        self.state.load(g, self.values(g), self.done[g])
    }

    /// Run every layer not yet completed, layer-major.
    pub fn run_layers(
        &mut self,
        obs: Option<&mut dyn Observer>,
        on: &mut dyn FnMut(Step),
    ) -> Result<(), EvalError> {
        self.run_layers_then(obs, &mut |_, _| Ok(()), on)
    }

    /// [`Pass::run_layers`], calling `computed(layer, group)` after each layer ran on a group
    /// and before that group's hidden states are saved: what the observer gathered from the
    /// call is persisted first, so a resumed run never skips a group whose statistics were
    /// lost (`imatrix`).
    pub fn run_layers_then(
        &mut self,
        mut obs: Option<&mut dyn Observer>,
        computed: &mut dyn FnMut(usize, usize) -> Result<(), EvalError>,
        on: &mut dyn FnMut(Step),
    ) -> Result<(), EvalError> {
        let n_layers = self.model.dims().n_layers;
        let groups = self.state.groups().to_vec();
        let start = self.done.iter().copied().min().unwrap_or(n_layers);
        for layer in start..n_layers {
            for (g, range) in groups.iter().enumerate() {
                if self.done[g] > layer {
                    continue;
                }
                let mut h = self.take(g)?;
                let seqs: Vec<&[u32]> =
                    self.seqs[range.clone()].iter().map(Vec::as_slice).collect();
                let o: Option<&mut dyn Observer> = match obs {
                    Some(ref mut o) => Some(&mut **o),
                    None => None,
                };
                self.model.layer(layer, &mut h, &seqs, o)?;
                self.calls.layer[layer] += 1;
                computed(layer, g)?;
                self.state.save(g, layer + 1, &h)?;
                self.done[g] = layer + 1;
                if self.in_ram {
                    self.ram[g] = Some(h);
                }
                on(Step::LayerDone {
                    layer,
                    group: g,
                    groups: groups.len(),
                    tokens: seqs.iter().map(|s| s.len()).sum(),
                });
            }
        }
        Ok(())
    }

    /// The output head at positions `pos` of every sequence, `batch` sequences per call, in
    /// sequence order: `f(sequence, logits [pos.len(), V])`. Runs after [`Pass::run_layers`].
    pub fn head(
        &mut self,
        batch: usize,
        pos: Range<usize>,
        f: &mut HeadSink<'_>,
        on: &mut dyn FnMut(Step),
    ) -> Result<(), EvalError> {
        let n_layers = self.model.dims().n_layers;
        let v = self.model.dims().vocab;
        let d = self.model.dims().d_model;
        let groups = self.state.groups().to_vec();
        for (g, range) in groups.iter().enumerate() {
            if self.done[g] != n_layers {
                return Err(EvalError::Input(format!(
                    "group {g} is at layer {} of {n_layers}",
                    self.done[g]
                )));
            }
            let h = self.take(g)?;
            let mut offs = Vec::with_capacity(range.len());
            let mut o = 0;
            for s in range.clone() {
                offs.push(o);
                o += self.seqs[s].len();
            }
            if h.len() != o * d {
                return Err(EvalError::Input(format!("group {g}: hidden state size")));
            }
            let ids: Vec<usize> = range.clone().collect();
            for sub in ids.chunks(batch.max(1)) {
                let mut rows = Vec::with_capacity(sub.len() * pos.len());
                for &s in sub {
                    let len = self.seqs[s].len();
                    if pos.end > len {
                        return Err(EvalError::Input(format!(
                            "positions {pos:?} outside a sequence of {len}"
                        )));
                    }
                    rows.extend(pos.clone().map(|p| offs[s - range.start] + p));
                }
                let logits = self.model.head(&h, &rows)?;
                self.calls.head += 1;
                let per = pos.len() * v;
                for (i, &s) in sub.iter().enumerate() {
                    f(s, &logits[i * per..(i + 1) * per])?;
                }
                on(Step::HeadDone { seqs: sub.len() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fit_the_budget() {
        let g = ModelDims::grok1();
        // 16 chunks of 512 on a 12 GiB budget: one group, in RAM.
        let l = plan_layout(&g, 512, 16, 255, 12 << 30);
        assert!(l.in_ram && l.groups.len() == 1, "{l:?}");
        assert!(l.peak <= 12 << 30, "{l:?}");
        // 650 chunks (wikitext-2 sized): states in RAM, several groups.
        let l = plan_layout(&g, 512, 650, 255, 12 << 30);
        assert!(l.in_ram && l.groups.len() > 1, "{l:?}");
        assert!(l.peak <= 12 << 30, "{l:?}");
        // 2000 chunks: spilled.
        let l = plan_layout(&g, 512, 2000, 255, 12 << 30);
        assert!(!l.in_ram, "{l:?}");
        assert!(l.peak <= 12 << 30, "{l:?}");
        // A budget below one chunk still makes progress: one chunk per group.
        let l = plan_layout(&g, 512, 3, 255, 1);
        assert_eq!(l.groups, vec![0..1, 1..2, 2..3]);
        assert_eq!(l.head_batch, 1);
    }
}
