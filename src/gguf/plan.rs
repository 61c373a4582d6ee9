//! Planning a GGUF output before any byte is written: validation, split assignment, offsets
//! and the exact header bytes of every file.
//!
//! Why plan first: a GGUF header holds every tensor's data offset, so all names, shapes and
//! types must be known before the first tensor byte. Planning also lets `--dry-run` print the
//! file list and sizes, and lets independent workers each stream their own shard
//! (as gguf-py's writer does). Layout rules: docs/formats/gguf-output.md "Byte layout" and
//! "Splits".

use super::constants::{
    expected_key_types, keys, ValueType, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION,
};
use super::error::{GgufError, Result};
use super::value::{encode_str, str_len, ArrayValue, Value};
use crate::base::limits::{
    GGUF_MAX_ARRAY_ELEMS, GGUF_MAX_DIMS, GGUF_MAX_KEY_LEN, GGUF_MAX_NAME_LEN, GGUF_MAX_SPLITS,
    GGUF_MAX_STRING_LEN,
};
use crate::quant::GgmlType;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One tensor to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    /// GGUF tensor name (< 64 bytes).
    pub name: String,
    /// numpy / row-major shape; the writer reverses it into ggml's `ne`.
    pub shape: Vec<u64>,
    /// ggml storage type.
    pub ty: GgmlType,
}

impl TensorPlan {
    /// A tensor plan.
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<u64>>, ty: GgmlType) -> Self {
        TensorPlan {
            name: name.into(),
            shape: shape.into(),
            ty,
        }
    }
    /// ggml dims (`ne[0]` fastest): the numpy shape reversed.
    pub fn ne(&self) -> Vec<u64> {
        self.shape.iter().rev().copied().collect()
    }
    /// Data bytes, or an error naming the tensor when `ne[0]` is not a block multiple or the
    /// size overflows.
    pub fn nbytes(&self) -> Result<u64> {
        self.ty.tensor_bytes(&self.ne()).ok_or_else(|| self.err(format!(
            "{} elements in the last dim are not a multiple of the {} block of {}, or the size overflows",
            self.shape.last().copied().unwrap_or(1),
            self.ty,
            self.ty.block_elems()
        )))
    }
    fn err(&self, reason: String) -> GgufError {
        GgufError::PlanTensor {
            name: self.name.clone(),
            reason,
        }
    }
}

/// Everything one GGUF output (one file or a split set) will contain, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufPlan {
    /// Metadata in write order (split keys are added by [`GgufPlan::split`]).
    pub kvs: Vec<(String, Value)>,
    /// Tensors in write order (info order = data order).
    pub tensors: Vec<TensorPlan>,
    /// Data alignment (default 32). A non-default value is written as `general.alignment`.
    pub alignment: u32,
}

/// One tensor's place in a planned file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTensor {
    /// Name.
    pub name: String,
    /// numpy order.
    pub shape: Vec<u64>,
    /// ggml order (what the tensor info stores).
    pub ne: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Offset relative to the file's data section (a multiple of the alignment).
    pub offset: u64,
    /// Data bytes.
    pub nbytes: u64,
    /// Data bytes plus the zero padding that follows them.
    pub padded: u64,
}

/// One output file: its name, metadata and tensors with offsets. Built by [`GgufPlan::split`].
#[derive(Clone, Debug, PartialEq)]
pub struct FilePlan {
    path: PathBuf,
    split: Option<(u16, u16)>,
    kvs: Vec<(String, Value)>,
    tensors: Vec<PlannedTensor>,
    alignment: u32,
}

/// Round `x` up to a multiple of the power of two `align` (checked).
pub fn align_up(x: u64, align: u32) -> Option<u64> {
    let a = u64::from(align).max(1);
    x.checked_add(a - 1).map(|v| v / a * a)
}

impl GgufPlan {
    /// A plan with the default alignment.
    pub fn new(kvs: Vec<(String, Value)>, tensors: Vec<TensorPlan>) -> Self {
        GgufPlan {
            kvs,
            tensors,
            alignment: GGUF_DEFAULT_ALIGNMENT,
        }
    }

    /// Check every rule llama.cpp/ggml enforce on load, so a plan that validates writes files
    /// they accept: keys non-empty ASCII unique (split keys reserved), keys llama.cpp reads
    /// with typed getters carry the type it expects (`constants::KEY_TYPES`: u32 hparams and
    /// token ids, f32 eps/scales, f32 scores, i32 token types), strings and arrays within
    /// ggml's caps, no empty arrays (gguf-py refuses them), `general.alignment` a u32 equal to
    /// `alignment`; tensor names 1..=63 bytes and unique, 1..=4 dims, last numpy dim (`ne[0]`) a
    /// multiple of the block, element count and byte size without overflow.
    pub fn validate(&self) -> Result<()> {
        if self.alignment == 0 || !self.alignment.is_power_of_two() {
            return Err(GgufError::PlanAlignment {
                alignment: self.alignment,
            });
        }
        let arch = self
            .kvs
            .iter()
            .find(|(k, _)| k == keys::GENERAL_ARCHITECTURE)
            .and_then(|(_, v)| v.as_str());
        let mut seen = HashSet::new();
        for (k, v) in &self.kvs {
            validate_kv(k, v, self.alignment)?;
            check_known_type(k, v, arch)?;
            if !seen.insert(k.as_str()) {
                return Err(key_err(k, "duplicate key"));
            }
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            validate_tensor(t)?;
            if !names.insert(t.name.as_str()) {
                return Err(t.err("duplicate tensor name".into()));
            }
        }
        Ok(())
    }

    /// Validate, then lay the plan out as files. `max_bytes: None` (or a plan that fits) gives
    /// one file at `out` with no split keys. Otherwise tensors are assigned in order, greedily:
    /// a new shard starts when the current one holds a tensor and adding the next tensor's
    /// padded bytes would exceed `max_bytes` (decimal bytes, as gguf-split counts them; a
    /// single larger tensor gets a shard of its own). Shards are named
    /// `<out without .gguf>-0000i-of-0000n.gguf`; every shard carries `split.no` (u16),
    /// `split.count` (u16) and `split.tensors.count` (i32); other metadata goes into the first
    /// only, except a non-default `general.alignment`, which every shard needs to be read.
    pub fn split(&self, max_bytes: Option<u64>, out: &Path) -> Result<Vec<FilePlan>> {
        self.validate()?;
        let mut sized = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let nbytes = t.nbytes()?;
            let padded =
                align_up(nbytes, self.alignment).ok_or_else(|| t.err("size overflows".into()))?;
            sized.push((t, nbytes, padded));
        }
        let groups = group(&sized, max_bytes)?;
        let mut kvs = self.kvs.clone();
        let align_kv = (self.alignment != GGUF_DEFAULT_ALIGNMENT).then(|| {
            (
                keys::GENERAL_ALIGNMENT.to_string(),
                Value::U32(self.alignment),
            )
        });
        if let Some(kv) = &align_kv {
            if !kvs.iter().any(|(k, _)| k == keys::GENERAL_ALIGNMENT) {
                kvs.push(kv.clone());
            }
        }
        if groups.len() <= 1 {
            let tensors = place(sized.iter().copied())?;
            return Ok(vec![FilePlan {
                path: out.to_path_buf(),
                split: None,
                kvs,
                tensors,
                alignment: self.alignment,
            }]);
        }
        let count = u16::try_from(groups.len()).map_err(|_| {
            split_err(format!(
                "{} shards, more than {GGUF_MAX_SPLITS}",
                groups.len()
            ))
        })?;
        let total = i32::try_from(self.tensors.len()).map_err(|_| {
            split_err(format!(
                "{} tensors do not fit split.tensors.count (i32)",
                self.tensors.len()
            ))
        })?;
        let mut files = Vec::with_capacity(groups.len());
        for (i, range) in groups.into_iter().enumerate() {
            let no = u16::try_from(i).map_err(|_| split_err("shard index overflow".into()))?;
            let mut file_kvs = if i == 0 { kvs.clone() } else { Vec::new() };
            file_kvs.push((keys::SPLIT_NO.into(), Value::U16(no)));
            file_kvs.push((keys::SPLIT_COUNT.into(), Value::U16(count)));
            file_kvs.push((keys::SPLIT_TENSORS_COUNT.into(), Value::I32(total)));
            if i > 0 {
                file_kvs.extend(align_kv.clone());
            }
            let tensors = place(sized[range].iter().copied())?;
            let path = split_path(out, i + 1, usize::from(count))?;
            files.push(FilePlan {
                path,
                split: Some((no, count)),
                kvs: file_kvs,
                tensors,
                alignment: self.alignment,
            });
        }
        Ok(files)
    }
}

fn key_err(k: &str, reason: impl Into<String>) -> GgufError {
    GgufError::PlanKey {
        key: k.to_string(),
        reason: reason.into(),
    }
}

fn split_err(reason: String) -> GgufError {
    GgufError::PlanSplit { reason }
}

fn validate_kv(k: &str, v: &Value, alignment: u32) -> Result<()> {
    if k.is_empty() || !k.is_ascii() || k.len() > GGUF_MAX_KEY_LEN {
        return Err(key_err(
            k,
            format!("keys must be 1..={GGUF_MAX_KEY_LEN} ASCII bytes"),
        ));
    }
    if keys::SPLIT_KEYS.contains(&k) {
        return Err(key_err(k, "split keys are written by the split planner"));
    }
    if k == keys::GENERAL_ALIGNMENT && v.as_u32() != Some(alignment) {
        return Err(key_err(
            k,
            format!(
                "must be UINT32 {alignment} (the plan's alignment), got {} {v:?}",
                v.type_name()
            ),
        ));
    }
    let long = |s: &String| s.len() as u64 > GGUF_MAX_STRING_LEN;
    match v {
        Value::String(s) if long(s) => Err(key_err(k, "string longer than 1 GiB")),
        Value::Array(a) if a.is_empty() => {
            Err(key_err(k, "empty array (gguf-py cannot write or read it)"))
        }
        Value::Array(a) if a.len() as u64 > GGUF_MAX_ARRAY_ELEMS => {
            Err(key_err(k, "array longer than 2^30"))
        }
        Value::Array(ArrayValue::Str(v)) if v.iter().any(long) => {
            Err(key_err(k, "array string longer than 1 GiB"))
        }
        _ => Ok(()),
    }
}

fn check_known_type(k: &str, v: &Value, arch: Option<&str>) -> Result<()> {
    let Some(allowed) = expected_key_types(k, arch) else {
        return Ok(());
    };
    let actual = (v.value_type(), v.as_array().map(ArrayValue::elem_type));
    if allowed.contains(&actual) {
        return Ok(());
    }
    let names: Vec<String> = allowed
        .iter()
        .map(|(t, e)| e.map_or_else(|| t.name().to_string(), |e| format!("ARRAY[{}]", e.name())))
        .collect();
    Err(key_err(
        k,
        format!(
            "llama.cpp reads it as {}, not {}",
            names.join(" or "),
            v.type_name()
        ),
    ))
}

fn validate_tensor(t: &TensorPlan) -> Result<()> {
    if t.name.is_empty() || t.name.len() > GGUF_MAX_NAME_LEN {
        return Err(t.err(format!(
            "name must be 1..={GGUF_MAX_NAME_LEN} bytes, is {}",
            t.name.len()
        )));
    }
    if t.shape.is_empty() || t.shape.len() > GGUF_MAX_DIMS {
        return Err(t.err(format!(
            "{} dims; GGUF tensors have 1..={GGUF_MAX_DIMS}",
            t.shape.len()
        )));
    }
    let elems = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if elems.is_none_or(|e| e > i64::MAX as u64) {
        return Err(t.err(format!(
            "shape {:?} overflows ggml's int64 element count",
            t.shape
        )));
    }
    t.nbytes().map(|_| ())
}

/// Greedy shard assignment: ranges of tensor indices.
fn group(
    sized: &[(&TensorPlan, u64, u64)],
    max_bytes: Option<u64>,
) -> Result<Vec<std::ops::Range<usize>>> {
    let Some(max) = max_bytes else {
        return Ok(std::iter::once(0..sized.len()).collect());
    };
    if max == 0 {
        return Err(split_err("maximum shard size must be positive".into()));
    }
    let mut groups = Vec::new();
    let (mut start, mut cur) = (0usize, 0u64);
    for (i, &(_, _, padded)) in sized.iter().enumerate() {
        if i > start && cur.saturating_add(padded) > max {
            groups.push(start..i);
            start = i;
            cur = 0;
        }
        cur = cur.saturating_add(padded);
    }
    groups.push(start..sized.len());
    if groups.len() as u64 > GGUF_MAX_SPLITS {
        return Err(split_err(format!(
            "{} shards, more than {GGUF_MAX_SPLITS}",
            groups.len()
        )));
    }
    Ok(groups)
}

/// Offsets: each tensor starts at the running padded sum (ggml's rule).
fn place<'a>(
    items: impl Iterator<Item = (&'a TensorPlan, u64, u64)>,
) -> Result<Vec<PlannedTensor>> {
    let mut off = 0u64;
    let mut out = Vec::new();
    for (t, nbytes, padded) in items {
        out.push(PlannedTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            ne: t.ne(),
            ty: t.ty,
            offset: off,
            nbytes,
            padded,
        });
        off = off
            .checked_add(padded)
            .ok_or_else(|| t.err("data section size overflows".into()))?;
    }
    Ok(out)
}

/// `<out minus .gguf>-{no:05}-of-{count:05}.gguf` (llama.cpp's `llama_split_path`).
pub fn split_path(out: &Path, no: usize, count: usize) -> Result<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| split_err(format!("output {} has no file name", out.display())))?;
    let name = name.to_string_lossy();
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    let mut file = OsString::from(stem);
    file.push(format!("-{no:05}-of-{count:05}.gguf"));
    Ok(out.with_file_name(file))
}

impl FilePlan {
    /// Final path of this file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// `(split.no, split.count)` for a shard of a split set, `None` for a single file.
    pub fn split(&self) -> Option<(u16, u16)> {
        self.split
    }
    /// Metadata in write order (including split keys).
    pub fn kvs(&self) -> &[(String, Value)] {
        &self.kvs
    }
    /// Tensors in write order with offsets relative to the data section.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }
    /// Data alignment.
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    fn unpadded_header_len(&self) -> u64 {
        let mut n = 4 + 4 + 8 + 8;
        for (k, v) in &self.kvs {
            n += str_len(k) + 4 + v.encoded_len();
        }
        for t in &self.tensors {
            n += str_len(&t.name) + 4 + 8 * t.ne.len() as u64 + 4 + 8;
        }
        n
    }

    /// Header bytes including the padding to the alignment = where the data section starts.
    pub fn header_len(&self) -> u64 {
        let n = self.unpadded_header_len();
        align_up(n, self.alignment).unwrap_or(n)
    }

    /// Data section bytes (every tensor padded, including the last).
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.padded).sum()
    }

    /// Size of the finished file.
    pub fn file_len(&self) -> u64 {
        self.header_len() + self.data_len()
    }

    /// The header: magic, version, tensor and KV counts, KVs, tensor infos, zero padding to
    /// the alignment. Deterministic: the same plan always gives the same bytes.
    pub fn header_bytes(&self) -> Vec<u8> {
        let len = self.header_len();
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            encode_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.encode(&mut out);
        }
        for t in &self.tensors {
            encode_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        out.resize(usize::try_from(len).unwrap_or(out.len()), 0);
        out
    }
}

/// A human-readable listing of planned files for `--dry-run`: per file its path, header and
/// data sizes and KV count, then one line per tensor (name, type, numpy shape, offset, bytes).
pub fn plan_summary(files: &[FilePlan]) -> String {
    let mut s = String::new();
    let total: u64 = files.iter().map(FilePlan::file_len).sum();
    let _ = writeln!(s, "{} file(s), {} bytes in total", files.len(), total);
    for f in files {
        let _ = writeln!(
            s,
            "{}: {} bytes (header {}, data {}), {} KVs, {} tensors",
            f.path.display(),
            f.file_len(),
            f.header_len(),
            f.data_len(),
            f.kvs.len(),
            f.tensors.len()
        );
        for t in &f.tensors {
            let _ = writeln!(
                s,
                "  {:<40} {:<5} {:?} offset {} bytes {}",
                t.name,
                t.ty.to_string(),
                t.shape,
                t.offset,
                t.nbytes
            );
        }
    }
    s
}

/// Is `ty` the value type grokit writes for `key`'s split role? (Used by the reader.)
pub(crate) fn split_key_type(key: &str) -> Option<ValueType> {
    match key {
        keys::SPLIT_NO | keys::SPLIT_COUNT => Some(ValueType::U16),
        keys::SPLIT_TENSORS_COUNT => Some(ValueType::I32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_sizes_and_groups() {
        let p = Path::new("/x/model.gguf");
        assert_eq!(
            split_path(p, 2, 9).unwrap(),
            Path::new("/x/model-00002-of-00009.gguf")
        );
        assert_eq!(
            split_path(Path::new("m"), 1, 2).unwrap(),
            Path::new("m-00001-of-00002.gguf")
        );
        assert_eq!(align_up(33, 32), Some(64));
        assert_eq!(align_up(0, 32), Some(0));
        assert_eq!(align_up(u64::MAX, 32), None);
        let t = |n: &str| TensorPlan::new(n, vec![8u64], GgmlType::F32); // 32 bytes each
        let plan = GgufPlan::new(vec![], vec![t("a"), t("b"), t("c")]);
        let files = plan.split(Some(64), p).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].tensors().len(), 2);
        assert_eq!(files[1].tensors()[0].offset, 0);
        let files = plan.split(Some(1), p).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(plan.split(Some(1000), p).unwrap().len(), 1);
        assert!(matches!(
            plan.split(Some(0), p),
            Err(GgufError::PlanSplit { .. })
        ));
    }
}
