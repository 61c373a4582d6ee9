//! Planning a safetensors output from names, dtypes and shapes alone: shard assignment, each
//! shard's byte-exact header, every tensor's offsets, and the index JSON.
//!
//! Why plan first: a streaming writer must emit the header before any tensor data, and the
//! header holds every offset. Planning from metadata also lets the CLI print sizes and file
//! names (a dry run) and lets the orchestrator produce tensors in the order the file wants.
//!
//! Rules (sources in `docs/formats/safetensors-output.md`):
//! - **Sharding** is huggingface_hub's `split_state_dict_into_shards_factory`: tensors are taken
//!   in the caller's (state-dict) order; a tensor larger than the budget is put in a shard of its
//!   own *at once* (so it can precede the shard still being filled); otherwise, if adding it
//!   would take the current shard over the budget, the current shard is closed first. Only
//!   tensor bytes count toward the budget (headers do not). Shards are named
//!   `model-{i:05}-of-{n:05}.safetensors`, or `model.safetensors` when there is one.
//! - **Layout within a shard** is the `safetensors` crate's writer order (0.8.0 `prepare`):
//!   sort by the crate's `Dtype` enum *descending* (its declaration order is by alignment, so
//!   U64, I64, F64, C64, F32, U32, I32, BF16, F16, U16, I16, ..., I8, U8, BOOL), then by name
//!   ascending (byte order). The comparison uses the crate's own `Ord` on `Dtype`, so the
//!   order cannot drift from the crate's. With the data buffer 8-aligned, every tensor is then
//!   naturally aligned.
//! - **Header**: compact JSON, `__metadata__` first (keys sorted), then tensors in layout order
//!   as `{"dtype":..,"shape":[..],"data_offsets":[b,e]}`, right-padded with spaces to a multiple
//!   of 8 bytes; identical to the crate's `serialize` output for the same tensors.

use super::{Result, StError};
use crate::base::limits::ST_MAX_HEADER;
use crate::base::{DType, Shape};
use std::collections::{BTreeMap, HashSet};

/// huggingface_hub's default shard budget (`MAX_SHARD_SIZE`, decimal 5 GB).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;
/// File name of an unsharded output.
pub const SINGLE_FILE_NAME: &str = "model.safetensors";
/// File name of the index of a sharded output.
pub const INDEX_FILE_NAME: &str = "model.safetensors.index.json";
/// The key safetensors reserves for the string-to-string metadata map.
pub const METADATA_KEY: &str = "__metadata__";

/// One tensor to be written: what the plan needs to know (no data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StTensor {
    /// Tensor name (the header key).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<u64>,
}

impl StTensor {
    /// Convenience constructor.
    pub fn new(name: impl Into<String>, dtype: DType, shape: impl Into<Vec<u64>>) -> Self {
        StTensor {
            name: name.into(),
            dtype,
            shape: shape.into(),
        }
    }

    /// Data bytes (element count x element size), checked.
    pub fn byte_len(&self) -> Result<u64> {
        Shape::new(self.shape.clone())
            .byte_len(self.dtype.size())
            .map_err(|e| StError::ShapeOverflow {
                tensor: self.name.clone(),
                shape: e.shape,
            })
    }
}

/// A tensor placed in a shard: its offsets relative to the start of the shard's data buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTensor {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<u64>,
    /// First byte, relative to the data buffer.
    pub begin: u64,
    /// One past the last byte, relative to the data buffer.
    pub end: u64,
}

impl PlannedTensor {
    /// Data bytes.
    pub fn byte_len(&self) -> u64 {
        self.end - self.begin
    }
}

/// One planned shard file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    file_name: String,
    tensors: Vec<PlannedTensor>,
    header: Vec<u8>,
    data_len: u64,
}

impl Shard {
    /// The file's name (no directory).
    pub fn file_name(&self) -> &str {
        &self.file_name
    }
    /// Tensors in layout order: the order their bytes must be written.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }
    /// Everything before the data buffer: the u64-LE length followed by the padded JSON.
    pub fn header(&self) -> &[u8] {
        &self.header
    }
    /// File offset of the data buffer (8 + padded JSON length; a multiple of 8).
    pub fn data_start(&self) -> u64 {
        self.header.len() as u64
    }
    /// Bytes of tensor data.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }
    /// Total file size.
    pub fn file_size(&self) -> u64 {
        self.data_start() + self.data_len
    }
}

/// The whole output: shards in order, and the tensor-to-file map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    shards: Vec<Shard>,
    total_size: u64,
    weight_map: BTreeMap<String, String>,
}

impl ShardPlan {
    /// Shards in file-number order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
    /// Sum of all tensor data bytes (the index's `metadata.total_size`).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }
    /// True when there is more than one shard (and so an index file).
    pub fn is_sharded(&self) -> bool {
        self.shards.len() > 1
    }
    /// Tensor name -> shard file name, sorted by tensor name.
    pub fn weight_map(&self) -> &BTreeMap<String, String> {
        &self.weight_map
    }
    /// Where a tensor lands: shard index and its placement.
    pub fn find(&self, name: &str) -> Option<(usize, &PlannedTensor)> {
        self.shards
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.tensors.iter().find(|t| t.name == name).map(|t| (i, t)))
    }
    /// `model.safetensors.index.json` contents: `{"metadata": {"total_size": N}, "weight_map":
    /// {...}}` with sorted keys, two-space indent (as transformers writes it), newline-terminated.
    /// Written by convention only when [`ShardPlan::is_sharded`], but valid either way.
    pub fn index_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Meta {
            total_size: u64,
        }
        #[derive(serde::Serialize)]
        struct Index<'a> {
            metadata: Meta,
            weight_map: &'a BTreeMap<String, String>,
        }
        let idx = Index {
            metadata: Meta {
                total_size: self.total_size,
            },
            weight_map: &self.weight_map,
        };
        // Serializing plain structs and a BTreeMap of strings cannot fail.
        let mut s = serde_json::to_string_pretty(&idx).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The `safetensors` crate's `Dtype` for a grokit type (parsed from the shared dtype string, so
/// the two tables cannot disagree silently).
pub fn crate_dtype(d: DType) -> Option<safetensors::Dtype> {
    serde_json::from_value(serde_json::Value::String(d.safetensors().to_string())).ok()
}

/// Plan an output with `__metadata__ = {"format": "pt"}` (see the module docs for the rules).
pub fn plan_shards(tensors: &[StTensor], max_shard_bytes: u64) -> Result<ShardPlan> {
    plan_shards_with_metadata(tensors, max_shard_bytes, &BTreeMap::new())
}

/// Plan an output with extra `__metadata__` entries (written in every shard, keys sorted).
/// `"format"` defaults to `"pt"` (transformers refuses other values) unless `extra` sets it.
pub fn plan_shards_with_metadata(
    tensors: &[StTensor],
    max_shard_bytes: u64,
    extra: &BTreeMap<String, String>,
) -> Result<ShardPlan> {
    if tensors.is_empty() {
        return Err(StError::NoTensors);
    }
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    metadata.insert("format".into(), "pt".into());
    for (k, v) in extra {
        metadata.insert(k.clone(), v.clone());
    }

    // Validate names and sizes once, in state-dict order.
    let mut seen = HashSet::with_capacity(tensors.len());
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut kinds = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.name == METADATA_KEY {
            return Err(StError::BadTensorName(t.name.clone()));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(StError::DuplicateTensor(t.name.clone()));
        }
        let Some(kind) = crate_dtype(t.dtype) else {
            return Err(StError::DtypeNotInCrate {
                tensor: t.name.clone(),
                dtype: t.dtype.safetensors().into(),
            });
        };
        kinds.push(kind);
        sizes.push(t.byte_len()?);
    }

    // huggingface_hub's split: members of each shard, in state-dict order.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_size: u64 = 0;
    let mut total_size: u64 = 0;
    for (i, &size) in sizes.iter().enumerate() {
        total_size = checked_add(total_size, size, &tensors[i])?;
        if size > max_shard_bytes {
            groups.push(vec![i]);
            continue;
        }
        // current_size + size <= total_size (already checked), so this sum cannot overflow.
        if current_size + size > max_shard_bytes && !current.is_empty() {
            groups.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() {
        groups.push(current);
    }

    let n = groups.len();
    let mut shards = Vec::with_capacity(n);
    let mut weight_map = BTreeMap::new();
    for (k, members) in groups.iter().enumerate() {
        let file_name = if n == 1 {
            SINGLE_FILE_NAME.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, n)
        };
        let shard = layout_shard(file_name, tensors, &sizes, &kinds, members, &metadata)?;
        for t in &shard.tensors {
            weight_map.insert(t.name.clone(), shard.file_name.clone());
        }
        shards.push(shard);
    }
    Ok(ShardPlan {
        shards,
        total_size,
        weight_map,
    })
}

fn checked_add(a: u64, b: u64, t: &StTensor) -> Result<u64> {
    a.checked_add(b).ok_or_else(|| StError::ShapeOverflow {
        tensor: t.name.clone(),
        shape: Shape::new(t.shape.clone()).to_string(),
    })
}

/// Order one shard's members the crate's way, assign offsets and build the header.
fn layout_shard(
    file_name: String,
    tensors: &[StTensor],
    sizes: &[u64],
    kinds: &[safetensors::Dtype],
    members: &[usize],
    metadata: &BTreeMap<String, String>,
) -> Result<Shard> {
    let mut order: Vec<usize> = members.to_vec();
    // Descending crate dtype, then ascending name.
    order.sort_by(|&a, &b| {
        kinds[b]
            .cmp(&kinds[a])
            .then_with(|| tensors[a].name.cmp(&tensors[b].name))
    });
    let mut placed = Vec::with_capacity(order.len());
    let mut offset: u64 = 0;
    for &i in &order {
        let t = &tensors[i];
        let end = checked_add(offset, sizes[i], t)?;
        placed.push(PlannedTensor {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            begin: offset,
            end,
        });
        offset = end;
    }
    let json = header_json(&placed, metadata)?;
    let padded = json.len().next_multiple_of(8) as u64;
    if padded > ST_MAX_HEADER {
        return Err(StError::HeaderTooLargeToWrite {
            file: file_name,
            len: padded,
            max: ST_MAX_HEADER,
        });
    }
    let mut header = Vec::with_capacity(8 + padded as usize);
    header.extend_from_slice(&padded.to_le_bytes());
    header.extend_from_slice(json.as_bytes());
    header.resize(8 + padded as usize, b' ');
    Ok(Shard {
        file_name,
        tensors: placed,
        header,
        data_len: offset,
    })
}

/// Compact header JSON in the crate's key order and spelling.
fn header_json(placed: &[PlannedTensor], metadata: &BTreeMap<String, String>) -> Result<String> {
    let js = |s: &str| serde_json::to_string(s).map_err(|e| StError::BadMetadata(e.to_string()));
    let mut out = String::with_capacity(64 + placed.len() * 96);
    out.push('{');
    out.push_str(&js(METADATA_KEY)?);
    out.push_str(":{");
    for (i, (k, v)) in metadata.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&js(k)?);
        out.push(':');
        out.push_str(&js(v)?);
    }
    out.push('}');
    for t in placed {
        out.push(',');
        out.push_str(&js(&t.name)?);
        out.push_str(":{\"dtype\":");
        out.push_str(&js(t.dtype.safetensors())?);
        out.push_str(",\"shape\":[");
        for (i, d) in t.shape.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&d.to_string());
        }
        out.push_str("],\"data_offsets\":[");
        out.push_str(&t.begin.to_string());
        out.push(',');
        out.push_str(&t.end.to_string());
        out.push_str("]}");
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u8s(sizes: &[u64]) -> Vec<StTensor> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| StTensor::new(format!("t{i}"), DType::U8, vec![n]))
            .collect()
    }
    fn groups(p: &ShardPlan) -> Vec<Vec<String>> {
        // Members of each shard, restored to state-dict order (all U8, so layout = name order).
        p.shards()
            .iter()
            .map(|s| s.tensors().iter().map(|t| t.name.clone()).collect())
            .collect()
    }

    #[test]
    fn hub_docstring_example() {
        // huggingface_hub: [6, 6, 2, 6, 2, 2] with limit 10 -> [6], [6+2], [6+2+2].
        let p = plan_shards(&u8s(&[6, 6, 2, 6, 2, 2]), 10).unwrap();
        assert_eq!(
            groups(&p),
            vec![vec!["t0"], vec!["t1", "t2"], vec!["t3", "t4", "t5"]]
        );
        let names: Vec<_> = p
            .shards()
            .iter()
            .map(|s| s.file_name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "model-00001-of-00003.safetensors",
                "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors"
            ]
        );
        assert_eq!(p.total_size(), 24);
        assert!(p.is_sharded());
    }

    #[test]
    fn exactly_at_budget_stays_together() {
        let p = plan_shards(&u8s(&[5, 5]), 10).unwrap();
        assert_eq!(p.shards().len(), 1);
        assert_eq!(p.shards()[0].file_name(), SINGLE_FILE_NAME);
        assert!(!p.is_sharded());
        let p = plan_shards(&u8s(&[5, 6]), 10).unwrap();
        assert_eq!(groups(&p), vec![vec!["t0"], vec!["t1"]]);
    }

    #[test]
    fn oversized_tensor_gets_own_shard_immediately() {
        // As in huggingface_hub, the oversized tensor's shard is emitted before the shard still
        // being filled, so t0 and t2 share the second file.
        let p = plan_shards(&u8s(&[1, 20, 1]), 10).unwrap();
        assert_eq!(groups(&p), vec![vec!["t1"], vec!["t0", "t2"]]);
        assert_eq!(p.weight_map()["t1"], "model-00001-of-00002.safetensors");
        assert_eq!(p.weight_map()["t2"], "model-00002-of-00002.safetensors");
        // Zero budget: every non-empty tensor alone; empty ones ride along.
        let p = plan_shards(&u8s(&[3, 0, 4]), 0).unwrap();
        assert_eq!(groups(&p), vec![vec!["t0"], vec!["t2"], vec!["t1"]]);
    }

    #[test]
    fn single_shard_default_budget() {
        let t = vec![StTensor::new("w", DType::BF16, vec![131072, 6144])];
        let p = plan_shards(&t, DEFAULT_MAX_SHARD_BYTES).unwrap();
        assert_eq!(p.shards()[0].file_name(), "model.safetensors");
        assert_eq!(p.total_size(), 131072 * 6144 * 2);
    }

    #[test]
    fn header_is_padded_and_metadata_first() {
        for n in 0..20u64 {
            let name = "x".repeat(n as usize);
            let t = vec![StTensor::new(name.clone() + "y", DType::F32, vec![n])];
            let p = plan_shards(&t, DEFAULT_MAX_SHARD_BYTES).unwrap();
            let s = &p.shards()[0];
            let h = s.header();
            assert_eq!(h.len() % 8, 0);
            let len = u64::from_le_bytes(h[..8].try_into().unwrap());
            assert_eq!(len + 8, s.data_start());
            let json = std::str::from_utf8(&h[8..]).unwrap();
            assert!(
                json.starts_with(r#"{"__metadata__":{"format":"pt"},"#),
                "{json}"
            );
            let trimmed = json.trim_end_matches(' ');
            assert!(trimmed.ends_with('}'));
            assert!(json.len() - trimmed.len() < 8);
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(
                v[&(name + "y")]["data_offsets"],
                serde_json::json!([0, 4 * n])
            );
            assert_eq!(s.file_size(), s.data_start() + 4 * n);
        }
    }

    #[test]
    fn layout_order_is_crate_order_and_aligned() {
        let t = vec![
            StTensor::new("b", DType::F32, vec![3]),
            StTensor::new("a", DType::BF16, vec![3]),
            StTensor::new("c", DType::I8, vec![3]),
            StTensor::new("a2", DType::I32, vec![1]),
            StTensor::new("z", DType::F64, vec![1]),
            StTensor::new("aa", DType::F32, vec![1]),
            StTensor::new("u", DType::U8, vec![5]),
            StTensor::new("h", DType::F16, vec![1]),
            StTensor::new("i64", DType::I64, vec![1]),
            StTensor::new("u32", DType::U32, vec![1]),
            StTensor::new("i16", DType::I16, vec![1]),
        ];
        let p = plan_shards(&t, DEFAULT_MAX_SHARD_BYTES).unwrap();
        let order: Vec<_> = p.shards()[0]
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            order,
            ["i64", "z", "aa", "b", "u32", "a2", "a", "h", "i16", "c", "u"]
        );
        for t in p.shards()[0].tensors() {
            assert_eq!(t.begin % t.dtype.size() as u64, 0, "{} misaligned", t.name);
        }
        // The header lists tensors in layout order too.
        let json = std::str::from_utf8(&p.shards()[0].header()[8..]).unwrap();
        let pos: Vec<_> = order
            .iter()
            .map(|n| json.find(&format!("\"{n}\":")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_dtype_is_in_the_crate() {
        for row in crate::base::dtype::DTYPES {
            assert!(crate_dtype(row.dtype).is_some(), "{}", row.safetensors);
        }
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(plan_shards(&[], 10), Err(StError::NoTensors)));
        let dup = vec![
            StTensor::new("a", DType::U8, vec![1]),
            StTensor::new("a", DType::U8, vec![1]),
        ];
        assert!(matches!(plan_shards(&dup, 10), Err(StError::DuplicateTensor(n)) if n == "a"));
        let res = vec![StTensor::new("__metadata__", DType::U8, vec![1])];
        assert!(matches!(
            plan_shards(&res, 10),
            Err(StError::BadTensorName(_))
        ));
        let big = vec![StTensor::new("big", DType::F32, vec![u64::MAX / 2, 3])];
        assert!(
            matches!(plan_shards(&big, 10), Err(StError::ShapeOverflow { tensor, .. }) if tensor == "big")
        );
        let sum = vec![
            StTensor::new("p", DType::U8, vec![u64::MAX]),
            StTensor::new("q", DType::U8, vec![1]),
        ];
        assert!(
            matches!(plan_shards(&sum, 10), Err(StError::ShapeOverflow { tensor, .. }) if tensor == "q")
        );
    }

    #[test]
    fn index_json_is_sorted_and_sums_tensor_bytes() {
        let t = vec![
            StTensor::new("z", DType::F32, vec![4]),
            StTensor::new("a", DType::BF16, vec![8]),
            StTensor::new("m", DType::I8, vec![3]),
        ];
        let p = plan_shards(&t, 16).unwrap();
        let s = p.index_json();
        assert!(s.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["metadata"]["total_size"], 16 + 16 + 3);
        let wm = v["weight_map"].as_object().unwrap();
        assert_eq!(wm.len(), 3);
        let keys: Vec<_> = s
            .lines()
            .filter(|l| l.contains(".safetensors"))
            .map(|l| l.trim().to_string())
            .collect();
        assert!(
            keys[0].starts_with("\"a\"") && keys[2].starts_with("\"z\""),
            "{keys:?}"
        );
        assert_eq!(wm["z"], "model-00001-of-00003.safetensors");
        assert_eq!(wm["a"], "model-00002-of-00003.safetensors");
        assert_eq!(wm["m"], "model-00003-of-00003.safetensors");
        assert_eq!(p.find("m").unwrap().0, 2);
        // Deterministic: the same input gives the same bytes.
        assert_eq!(plan_shards(&t, 16).unwrap(), p);
    }

    #[test]
    fn extra_metadata_sorted() {
        let t = vec![StTensor::new("w", DType::U8, vec![1])];
        let mut m = BTreeMap::new();
        m.insert("zeta".to_string(), "1".to_string());
        m.insert("alpha".to_string(), "\"q\"".to_string());
        let p = plan_shards_with_metadata(&t, 10, &m).unwrap();
        let json = std::str::from_utf8(&p.shards()[0].header()[8..]).unwrap();
        assert!(
            json.starts_with(r#"{"__metadata__":{"alpha":"\"q\"","format":"pt","zeta":"1"},"w":"#),
            "{json}"
        );
    }
}
