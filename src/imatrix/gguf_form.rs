//! The GGUF importance-matrix format (llama.cpp `IMatrixCollector::save_imatrix` /
//! `common_imatrix_load`; docs/formats/imatrix.md): keys `general.type = "imatrix"`,
//! `imatrix.datasets` (string array), `imatrix.chunk_count` and `imatrix.chunk_size` (u32);
//! per entry, in name order, `<name>.in_sum2` (F32, ne `[ne0, n_mat]`, sums of squared
//! activations) and `<name>.counts` (F32, ne `[1, n_mat]`, activation rows per matrix).

use super::{
    check_output, EntryData, EntryIndex, EntryShape, Format, Imatrix, ImatrixError, Meta, Result,
    Source,
};
use crate::gguf::{ArrayValue, GgufFile, GgufFileWriter, GgufPlan, TensorPlan, Value};
use crate::quant::GgmlType;
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata keys (llama.cpp `common/imatrix-loader.h`).
pub const KEY_DATASETS: &str = "imatrix.datasets";
/// Chunks the matrix was computed over.
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
/// Tokens per chunk.
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
const SUFFIX_SUMS: &str = ".in_sum2";
const SUFFIX_COUNTS: &str = ".counts";

/// Read a GGUF importance matrix.
pub(super) fn read(path: &Path) -> Result<Imatrix> {
    let g = GgufFile::open(path)?;
    let entry_err = |entry: &str, what: String| ImatrixError::Entry {
        path: path.to_path_buf(),
        entry: entry.to_string(),
        what,
    };
    let key_u32 = |k: &str| -> Result<Option<u32>> {
        match g.get(k) {
            None => Ok(None),
            Some(Value::U32(v)) => Ok(Some(*v)),
            Some(v) => Err(ImatrixError::Format {
                path: path.to_path_buf(),
                what: format!("key {k} is {}, not u32", v.type_name()),
                offset: g.kv_offset(k).unwrap_or(0),
            }),
        }
    };
    let datasets = match g.get(KEY_DATASETS) {
        Some(Value::Array(ArrayValue::Str(v))) => Some(v.clone()),
        Some(v) => {
            return Err(ImatrixError::Format {
                path: path.to_path_buf(),
                what: format!(
                    "key {KEY_DATASETS} is {}, not an array of strings",
                    v.type_name()
                ),
                offset: g.kv_offset(KEY_DATASETS).unwrap_or(0),
            })
        }
        None => None,
    };
    let chunk_count = key_u32(KEY_CHUNK_COUNT)?;
    let chunk_size = key_u32(KEY_CHUNK_SIZE)?;
    // llama-quantize refuses a GGUF matrix without these ("missing imatrix metadata").
    let (Some(datasets), Some(chunk_count), Some(chunk_size)) = (datasets, chunk_count, chunk_size)
    else {
        return Err(ImatrixError::Format {
            path: path.to_path_buf(),
            what: format!(
                "not an importance matrix llama-quantize accepts: keys {KEY_DATASETS}, {KEY_CHUNK_COUNT} and {KEY_CHUNK_SIZE} are required"
            ),
            offset: 0,
        });
    };
    let mut pairs: BTreeMap<String, (Option<usize>, Option<usize>)> = BTreeMap::new();
    for (i, t) in g.tensors().iter().enumerate() {
        if let Some(n) = t.name.strip_suffix(SUFFIX_SUMS) {
            pairs.entry(n.to_string()).or_default().0 = Some(i);
        } else if let Some(n) = t.name.strip_suffix(SUFFIX_COUNTS) {
            pairs.entry(n.to_string()).or_default().1 = Some(i);
        }
    }
    let mut entries = Vec::with_capacity(pairs.len());
    for (name, (s, c)) in pairs {
        let (Some(s), Some(c)) = (s, c) else {
            return Err(entry_err(
                &name,
                "has sums without counts or counts without sums".into(),
            ));
        };
        let (ts, tc) = (&g.tensors()[s], &g.tensors()[c]);
        for t in [ts, tc] {
            if t.ty != GgmlType::F32 {
                return Err(entry_err(
                    &name,
                    format!("tensor {} is {}, not F32", t.name, t.ty),
                ));
            }
        }
        let nval = (ts.nbytes / 4) as usize;
        let ncounts = (tc.nbytes / 4) as usize;
        if nval == 0 || ncounts == 0 || !nval.is_multiple_of(ncounts) {
            return Err(entry_err(
                &name,
                format!("{nval} sums do not divide into {ncounts} matrices"),
            ));
        }
        let range = |t: &crate::gguf::TensorInfo| t.offset as usize..(t.offset + t.nbytes) as usize;
        entries.push(EntryIndex {
            name,
            values: range(ts),
            counts: range(tc),
            ncall: 0,
            n_mat: ncounts,
        });
    }
    if entries.is_empty() {
        return Err(ImatrixError::Format {
            path: path.to_path_buf(),
            what: "no entries (no <name>.in_sum2 / <name>.counts tensors)".into(),
            offset: 0,
        });
    }
    Ok(Imatrix {
        path: path.to_path_buf(),
        format: Format::Gguf,
        map: Source::Gguf(g),
        entries,
        datasets,
        chunk_count,
        chunk_size,
    })
}

/// Write a GGUF importance matrix: the metadata, then per entry in name order its sums and
/// counts (`data` is asked for each entry in turn, so only one entry is in memory at a time).
/// Written to a temporary name and renamed when complete; returns the entries written.
pub fn write_gguf(
    out: &Path,
    meta: &Meta,
    shapes: &[EntryShape],
    mut data: impl FnMut(&str) -> Result<EntryData>,
    overwrite: bool,
) -> Result<usize> {
    check_output(out, None, overwrite)?;
    let mut sorted: Vec<&EntryShape> = shapes.iter().filter(|s| s.ne0 > 0 && s.n_mat > 0).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let kvs = vec![
        ("general.type".to_string(), Value::String("imatrix".into())),
        (
            KEY_DATASETS.to_string(),
            Value::Array(ArrayValue::Str(meta.datasets.clone())),
        ),
        (KEY_CHUNK_COUNT.to_string(), Value::U32(meta.chunk_count)),
        (KEY_CHUNK_SIZE.to_string(), Value::U32(meta.chunk_size)),
    ];
    let mut tensors = Vec::with_capacity(2 * sorted.len());
    for s in &sorted {
        let (ne0, nm) = (s.ne0 as u64, s.n_mat as u64);
        tensors.push(TensorPlan::new(
            format!("{}{SUFFIX_SUMS}", s.name),
            vec![nm, ne0],
            GgmlType::F32,
        ));
        tensors.push(TensorPlan::new(
            format!("{}{SUFFIX_COUNTS}", s.name),
            vec![nm, 1],
            GgmlType::F32,
        ));
    }
    // gguf-py refuses empty arrays; llama.cpp accepts them, and an empty dataset list is what
    // a matrix converted from a legacy file without a dataset name has. Keep the key, with one
    // empty string, so every reader accepts the file.
    let kvs = kvs
        .into_iter()
        .map(|(k, v)| match v {
            Value::Array(ArrayValue::Str(a)) if a.is_empty() => {
                (k, Value::Array(ArrayValue::Str(vec![String::new()])))
            }
            v => (k, v),
        })
        .collect();
    let files = GgufPlan::new(kvs, tensors).split(None, out)?;
    let mut w =
        GgufFileWriter::create(
            files
                .into_iter()
                .next()
                .ok_or_else(|| ImatrixError::Refused {
                    path: out.to_path_buf(),
                    what: "empty plan".into(),
                })?,
        )?;
    for s in &sorted {
        let e = data(&s.name)?;
        if e.sums.len() != s.ne0 * s.n_mat || e.counts.len() != s.n_mat {
            return Err(ImatrixError::Entry {
                path: out.to_path_buf(),
                entry: s.name.clone(),
                what: format!(
                    "{} sums and {} counts, planned {} × {}",
                    e.sums.len(),
                    e.counts.len(),
                    s.n_mat,
                    s.ne0
                ),
            });
        }
        let mut b = Vec::with_capacity(4 * e.sums.len());
        for v in &e.sums {
            b.extend_from_slice(&v.to_le_bytes());
        }
        w.write_tensor(&b)?;
        let c: Vec<u8> = e
            .counts
            .iter()
            .flat_map(|&c| (c as f32).to_le_bytes())
            .collect();
        w.write_tensor(&c)?;
    }
    w.finish()?;
    Ok(sorted.len())
}
