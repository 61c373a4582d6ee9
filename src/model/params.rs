//! The ordered parameter table: release file index -> parameter. This is the ONLY place that
//! knows the file order: two global tensors, then each layer's 12 files, with layers ordered as
//! STRINGS ("0", "1", "10", "11", ..., "19", "2", ...) because `jax.tree_util` sorts dict keys
//! (docs/formats/grok-checkpoint.md "File order"). Compute order is numeric; file order is
//! not.

use super::config::Config;
use super::roles::{fill, Role, SLOTS_PER_LAYER};

/// One release file's parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// File index (the `i` of `tensor{i:05}_000`).
    pub index: usize,
    /// The role.
    pub role: Role,
    /// Layer (numeric), for per-layer roles.
    pub layer: Option<u64>,
    /// Release path, e.g. `transformer/decoder_layer_10/moe/linear/w`.
    pub path: String,
    /// Expected weight shape in the release orientation.
    pub shape: Vec<u64>,
    /// Expected scales shape for int8 weights.
    pub scales_shape: Option<Vec<u64>>,
}

impl ParamSpec {
    /// The GGUF tensor name.
    pub fn gguf_name(&self) -> String {
        fill(self.role.info().gguf, self.layer, None)
    }
    /// The file name `tensor{i:05}_000`.
    pub fn file_name(&self) -> String {
        file_name(self.index)
    }
}

/// `tensor{i:05}_000`.
pub fn file_name(index: usize) -> String {
    format!("tensor{index:05}_000")
}

/// Layers in file order (sorted as strings).
pub fn layers_in_file_order(n_layers: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n_layers).collect();
    v.sort_by_key(|l| l.to_string());
    v
}

/// The whole table for a config.
#[derive(Clone, Debug)]
pub struct ParamTable {
    /// Rows in file order.
    pub params: Vec<ParamSpec>,
}

impl ParamTable {
    /// Build the table.
    pub fn new(c: &Config) -> ParamTable {
        let shape_of = |role: Role| {
            let info = role.info();
            (info.release_shape(c), info.scales_shape(c))
        };
        let mut params = Vec::new();
        for role in [Role::Embed, Role::FinalNorm] {
            let (shape, scales_shape) = shape_of(role);
            params.push(ParamSpec {
                index: params.len(),
                role,
                layer: None,
                path: role.info().path.to_string(),
                shape,
                scales_shape,
            });
        }
        for layer in layers_in_file_order(c.num_layers) {
            for slot in 0..SLOTS_PER_LAYER {
                let Some(role) = Role::from_slot(slot) else {
                    continue;
                };
                let (shape, scales_shape) = shape_of(role);
                params.push(ParamSpec {
                    index: params.len(),
                    role,
                    layer: Some(layer),
                    path: fill(role.info().path, Some(layer), None),
                    shape,
                    scales_shape,
                });
            }
        }
        ParamTable { params }
    }
    /// Number of files.
    pub fn len(&self) -> usize {
        self.params.len()
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Find by role and layer.
    pub fn find(&self, role: Role, layer: Option<u64>) -> Option<&ParamSpec> {
        self.params
            .iter()
            .find(|p| p.role == role && p.layer == layer)
    }
    /// Find by release path.
    pub fn by_path(&self, path: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.path == path)
    }
    /// Number of layers for a file count (None if not 2 + 12k).
    pub fn layers_for_files(n: usize) -> Option<u64> {
        (n >= 2 && (n - 2).is_multiple_of(SLOTS_PER_LAYER))
            .then(|| ((n - 2) / SLOTS_PER_LAYER) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grok1_order_matches_spec() {
        let t = ParamTable::new(&Config::grok1());
        assert_eq!(t.len(), 770);
        // base(L) = 2 + 12 · (rank of the string "L" among the layer names sorted as strings)
        for (l, base) in [
            (0u64, 2usize),
            (1, 14),
            (2, 146),
            (10, 26),
            (19, 134),
            (63, 722),
            (9, 758),
            (7, 734),
            (48, 518),
        ] {
            let p = t.find(Role::MoeGate, Some(l)).unwrap();
            assert_eq!(p.index, base, "layer {l}");
        }
        assert_eq!(t.params[769].path, "transformer/decoder_layer_9/router/w");
        assert_eq!(t.params[3].shape, vec![8, 32768, 6144]);
        assert_eq!(t.params[3].scales_shape, Some(vec![8, 8, 6144]));
        assert_eq!(t.params[6].scales_shape, Some(vec![8, 6144]));
        assert_eq!(t.params[7].gguf_name(), "blk.0.attn_q.weight");
    }
}
