//! A bounded GGUF reader: parses the header of a mapped file, validates it with ggml's rules,
//! and hands out zero-copy tensor byte ranges.
//!
//! Why validate as strictly as ggml (offsets equal to the running aligned sum, data within the
//! file, names < 64 bytes, at most 4 dims): grokit reads GGUF to verify its own outputs and to
//! feed the reference model, so a file this reader accepts must be one llama.cpp accepts too.
//! Why caps before allocation: see `parse.rs`. Layout and checks:
//! docs/formats/gguf-output.md "Byte layout" and "What the reader validates".

use super::constants::{
    keys, ValueType, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MIN_READ_VERSION, GGUF_VERSION,
};
use super::error::{GgufError, Result};
use super::parse::Parser;
use super::plan::align_up;
use super::value::Value;
use crate::base::limits::{
    GGUF_MAX_DIMS, GGUF_MAX_NAME_LEN, GGUF_MIN_KV_BYTES, GGUF_MIN_TENSOR_INFO_BYTES,
};
use crate::io::MappedFile;
use crate::quant::GgmlType;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One tensor as described by its tensor info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// numpy / row-major shape (`ne` reversed).
    pub shape: Vec<u64>,
    /// ggml dims as stored (`ne[0]` fastest).
    pub ne: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Offset relative to the data section, as stored in the tensor info.
    pub rel_offset: u64,
    /// Data bytes.
    pub nbytes: u64,
    /// Absolute offset of this tensor's info record (for error messages).
    pub info_offset: u64,
}

enum Source {
    Mapped(MappedFile),
    Owned(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m.bytes(),
            Source::Owned(v) => v,
        }
    }
}

/// A parsed, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    source: Source,
    meta: Parsed,
}

struct Parsed {
    version: u32,
    alignment: u32,
    data_start: u64,
    kvs: Vec<(String, Value)>,
    kv_offsets: Vec<u64>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Map and parse `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        GgufFile::from_mapped(MappedFile::open(path)?)
    }

    /// Parse an already mapped file.
    pub fn from_mapped(map: MappedFile) -> Result<GgufFile> {
        let path = map.path().to_path_buf();
        let parsed = parse(&path, map.bytes())?;
        Ok(GgufFile::assemble(path, Source::Mapped(map), parsed))
    }

    /// Parse bytes held in memory; `path` is only used in messages.
    pub fn from_bytes(bytes: Vec<u8>, path: impl Into<PathBuf>) -> Result<GgufFile> {
        let path = path.into();
        let parsed = parse(&path, &bytes)?;
        Ok(GgufFile::assemble(path, Source::Owned(bytes), parsed))
    }

    fn assemble(path: PathBuf, source: Source, meta: Parsed) -> GgufFile {
        GgufFile { path, source, meta }
    }

    /// The path it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.meta.version
    }
    /// Data alignment in effect.
    pub fn alignment(&self) -> u32 {
        self.meta.alignment
    }
    /// Absolute offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.meta.data_start
    }
    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.source.bytes()
    }
    /// Metadata in file order.
    pub fn kvs(&self) -> &[(String, Value)] {
        &self.meta.kvs
    }
    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta
            .kv_index
            .get(key)
            .and_then(|&i| self.meta.kvs.get(i))
            .map(|(_, v)| v)
    }
    /// Absolute offset of a key's record.
    pub fn kv_offset(&self, key: &str) -> Option<u64> {
        self.meta
            .kv_index
            .get(key)
            .and_then(|&i| self.meta.kv_offsets.get(i))
            .copied()
    }
    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.meta.tensors
    }
    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.meta
            .tensor_index
            .get(name)
            .and_then(|&i| self.meta.tensors.get(i))
    }
    /// A tensor's bytes (validated to lie within the file at parse time). A `TensorInfo` that
    /// does not come from this file yields an empty slice if its range is outside the file.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset)
            .ok()
            .zip(usize::try_from(t.offset.saturating_add(t.nbytes)).ok());
        range
            .and_then(|(a, b)| self.bytes().get(a..b))
            .unwrap_or(&[])
    }
    /// Drop the resident pages of the absolute byte range `[start, start + len)` once it has
    /// been consumed (a no-op for files parsed from memory), so streaming a large file keeps
    /// peak RSS independent of its size. Pages are re-read from the file if touched again.
    pub fn release(&self, start: u64, len: u64) {
        if let (Source::Mapped(m), Ok(s), Ok(l)) =
            (&self.source, usize::try_from(start), usize::try_from(len))
        {
            m.release(s, l);
        }
    }
    /// [`GgufFile::release`] for one tensor's data.
    pub fn release_tensor(&self, t: &TensorInfo) {
        self.release(t.offset, t.nbytes);
    }
    /// A typed key grokit interprets: `Ok(None)` if absent, an error naming the key and its
    /// offset if present with another type.
    pub fn typed(&self, key: &str, expected: ValueType) -> Result<Option<&Value>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.value_type() == expected => Ok(Some(v)),
            Some(v) => Err(GgufError::WrongKeyType {
                path: self.path.clone(),
                key: key.to_string(),
                offset: self.kv_offset(key).unwrap_or(0),
                found: v.type_name(),
                expected: expected.name(),
            }),
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.meta.version)
            .field("kvs", &self.meta.kvs.len())
            .field("tensors", &self.meta.tensors.len())
            .finish()
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut p = Parser::new(path, bytes);
    let magic = p.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
            found: magic.to_vec(),
        });
    }
    let version = p.u32("version")?;
    if version & 0xFFFF == 0 {
        let note = " (low 16 bits are zero: a file of the other byte order?)";
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            note,
        });
    }
    if !(GGUF_MIN_READ_VERSION..=GGUF_VERSION).contains(&version) {
        let note = if version < GGUF_MIN_READ_VERSION {
            " (v1 is not supported)"
        } else {
            " (newer than v3)"
        };
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            note,
        });
    }
    let tc_at = p.offset();
    let n_tensors = p.u64("tensor count")?;
    let kc_at = p.offset();
    let n_kvs = p.u64("KV count")?;
    p.check_count(
        "tensor count",
        tc_at,
        n_tensors,
        i64::MAX as u64,
        GGUF_MIN_TENSOR_INFO_BYTES,
    )?;
    p.check_count("KV count", kc_at, n_kvs, i64::MAX as u64, GGUF_MIN_KV_BYTES)?;

    let (kvs, kv_offsets, kv_index) = parse_kvs(&mut p, n_kvs)?;
    let alignment = read_alignment(path, &kvs, &kv_offsets, &kv_index)?;
    let mut tensors = Vec::new();
    let mut tensor_index = HashMap::new();
    for i in 0..n_tensors {
        let t = parse_info(&mut p, i)?;
        if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor {
                path: path.to_path_buf(),
                name: t.name,
                offset: t.info_offset,
            });
        }
        tensors.push(t);
    }
    let end_of_infos = p.offset();
    let data_start = align_up(end_of_infos, alignment).unwrap_or(u64::MAX);
    let file_len = bytes.len() as u64;
    if n_tensors > 0 && data_start > file_len {
        return Err(GgufError::Truncated {
            path: path.to_path_buf(),
            what: "padding before the data section".into(),
            offset: end_of_infos,
            needed: data_start - end_of_infos,
            available: file_len - end_of_infos,
        });
    }
    check_offsets(path, &mut tensors, alignment, data_start, file_len)?;
    Ok(Parsed {
        version,
        alignment,
        data_start,
        kvs,
        kv_offsets,
        kv_index,
        tensors,
        tensor_index,
    })
}

type Kvs = (Vec<(String, Value)>, Vec<u64>, HashMap<String, usize>);

fn parse_kvs(p: &mut Parser<'_>, n: u64) -> Result<Kvs> {
    let (mut kvs, mut offsets, mut index) = (Vec::new(), Vec::new(), HashMap::new());
    for i in 0..n {
        let at = p.offset();
        let key = p.string(&format!("key of KV #{i}"))?;
        let what = format!("key '{key}'");
        let ty = p.value_type(&what)?;
        let value = p.value(ty, &what)?;
        if index.insert(key.clone(), kvs.len()).is_some() {
            return Err(GgufError::DuplicateKey {
                path: p.path.to_path_buf(),
                key,
                offset: at,
            });
        }
        kvs.push((key, value));
        offsets.push(at);
    }
    Ok((kvs, offsets, index))
}

fn read_alignment(
    path: &Path,
    kvs: &[(String, Value)],
    offsets: &[u64],
    index: &HashMap<String, usize>,
) -> Result<u32> {
    let Some(&i) = index.get(keys::GENERAL_ALIGNMENT) else {
        return Ok(GGUF_DEFAULT_ALIGNMENT);
    };
    let offset = offsets.get(i).copied().unwrap_or(0);
    match kvs.get(i).map(|(_, v)| v) {
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(*a),
        Some(Value::U32(a)) => Err(GgufError::BadAlignment {
            path: path.to_path_buf(),
            value: *a,
            offset,
        }),
        other => Err(GgufError::WrongKeyType {
            path: path.to_path_buf(),
            key: keys::GENERAL_ALIGNMENT.into(),
            offset,
            found: other.map(Value::type_name).unwrap_or_default(),
            expected: ValueType::U32.name(),
        }),
    }
}

fn parse_info(p: &mut Parser<'_>, i: u64) -> Result<TensorInfo> {
    let at = p.offset();
    let name = p.string(&format!("name of tensor #{i}"))?;
    let bad = |reason: String| GgufError::BadTensorInfo {
        path: p.path.to_path_buf(),
        name: name.clone(),
        offset: at,
        reason,
    };
    if name.len() > GGUF_MAX_NAME_LEN {
        return Err(bad(format!(
            "name of {} bytes; ggml allows at most {GGUF_MAX_NAME_LEN}",
            name.len()
        )));
    }
    let what = format!("tensor '{name}'");
    let n_dims = p.u32(&what)?;
    if n_dims as usize > GGUF_MAX_DIMS {
        return Err(bad(format!(
            "{n_dims} dims; ggml allows at most {GGUF_MAX_DIMS}"
        )));
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    for j in 0..n_dims {
        let d = p.u64(&what)?;
        if d > i64::MAX as u64 {
            return Err(bad(format!("ne[{j}] = {d} is negative as ggml's int64")));
        }
        ne.push(d);
    }
    if ne
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .is_none_or(|n| n > i64::MAX as u64)
    {
        return Err(bad(format!("element count of ne {ne:?} overflows int64")));
    }
    let ty_at = p.offset();
    let id = p.u32(&what)?;
    let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownTensorType {
        path: p.path.to_path_buf(),
        name: name.clone(),
        offset: ty_at,
        id,
    })?;
    let nbytes = ty.tensor_bytes(&ne).ok_or_else(|| {
        bad(format!(
            "ne[0] = {} is not a multiple of the {ty} block of {}",
            ne.first().copied().unwrap_or(1),
            ty.block_elems()
        ))
    })?;
    let rel_offset = p.u64(&what)?;
    let shape = ne.iter().rev().copied().collect();
    Ok(TensorInfo {
        name,
        shape,
        ne,
        ty,
        offset: 0,
        rel_offset,
        nbytes,
        info_offset: at,
    })
}

/// ggml's rule: offset_i is a multiple of the alignment and equals the running sum of the
/// padded sizes before it; the data must lie within the file.
fn check_offsets(
    path: &Path,
    tensors: &mut [TensorInfo],
    alignment: u32,
    data_start: u64,
    file_len: u64,
) -> Result<()> {
    let mut expected = 0u64;
    for t in tensors.iter_mut() {
        if t.rel_offset % u64::from(alignment) != 0 {
            return Err(GgufError::MisalignedOffset {
                path: path.to_path_buf(),
                name: t.name.clone(),
                offset: t.info_offset,
                found: t.rel_offset,
                alignment,
            });
        }
        if t.rel_offset != expected {
            return Err(GgufError::UnexpectedOffset {
                path: path.to_path_buf(),
                name: t.name.clone(),
                offset: t.info_offset,
                found: t.rel_offset,
                expected,
            });
        }
        let start = data_start.checked_add(t.rel_offset);
        let end = start.and_then(|s| s.checked_add(t.nbytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len => t.offset = s,
            _ => {
                return Err(GgufError::DataOutOfBounds {
                    path: path.to_path_buf(),
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
        expected = align_up(t.nbytes, alignment)
            .and_then(|n| expected.checked_add(n))
            .unwrap_or(u64::MAX);
    }
    Ok(())
}
