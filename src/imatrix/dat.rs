//! The legacy `.dat` importance-matrix format (llama.cpp `save_imatrix_legacy` /
//! `common_imatrix_load_legacy`; docs/formats/imatrix.md), all little-endian:
//!
//! ```text
//! i32 n_entries
//! n_entries × { i32 len; u8 name[len]; i32 ncall; i32 nval; f32 values[nval] }
//! optional: i32 chunk_count; i32 dataset_len; u8 dataset[dataset_len]
//! ```
//! with `values = (sum of squared activations / rows seen) · ncall`.

use super::{
    check_output, EntryData, EntryIndex, EntryShape, Format, Imatrix, ImatrixError, Meta, Result,
    Source,
};
use crate::io::{AtomicFile, MappedFile};
use std::path::Path;

/// Longest entry name accepted (ggml tensor names are under 64 bytes).
const MAX_NAME: usize = 4096;
/// Smallest possible entry: name length, ncall, nval and one value.
const MIN_ENTRY: usize = 16;

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn err(&self, what: String) -> ImatrixError {
        ImatrixError::Format {
            path: self.path.to_path_buf(),
            what,
            offset: self.pos as u64,
        }
    }
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        let Some(c) = self.b.get(self.pos..self.pos + 4) else {
            return Err(self.err(format!(
                "truncated reading {what}: 4 bytes needed, {} left",
                self.left()
            )));
        };
        self.pos += 4;
        Ok(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
    /// A length read at the cursor, checked against `max` and the bytes present (in units of
    /// `unit` bytes) before it is used.
    fn len(&mut self, what: &str, min: i64, max: usize, unit: usize) -> Result<usize> {
        let at = self.pos;
        let v = self.i32(what)?;
        let ok = i64::from(v) >= min
            && (v as usize) <= max
            && (v as usize).saturating_mul(unit) <= self.left();
        if !ok {
            self.pos = at;
            return Err(self.err(format!(
                "{what} {v} is out of range ({min}..={}, {} bytes left)",
                max.min(self.left() / unit.max(1)),
                self.left().saturating_sub(4)
            )));
        }
        Ok(v as usize)
    }
}

/// Parse a legacy file already mapped.
pub(super) fn read(path: &Path, map: MappedFile) -> Result<Imatrix> {
    let b = map.bytes();
    let mut c = Cursor { b, pos: 0, path };
    let n = c.len("entry count", 1, usize::MAX, MIN_ENTRY)?;
    let mut entries: Vec<EntryIndex> = Vec::with_capacity(n);
    for i in 0..n {
        let name_at = c.pos;
        let len = c.len(&format!("entry {i}: name length"), 1, MAX_NAME, 1)?;
        let name = std::str::from_utf8(&b[c.pos..c.pos + len])
            .map_err(|_| {
                c.pos = name_at;
                c.err(format!("entry {i}: name is not UTF-8"))
            })?
            .to_string();
        c.pos += len;
        if entries.iter().any(|e| e.name == name) {
            return Err(c.err(format!("entry {i}: '{name}' appears twice")));
        }
        let ncall = c.i32(&format!("entry '{name}': ncall"))?;
        let nval = c.len(&format!("entry '{name}': value count"), 1, usize::MAX, 4)?;
        let values = c.pos..c.pos + 4 * nval;
        c.pos += 4 * nval;
        entries.push(EntryIndex {
            name,
            values,
            counts: 0..0,
            ncall,
            n_mat: 1,
        });
    }
    // The trailer is optional; what is there is read as llama.cpp reads it.
    let mut chunk_count = 0u32;
    let mut datasets = Vec::new();
    if c.left() >= 4 {
        chunk_count = c.i32("chunk count")?.max(0) as u32;
        if c.left() >= 4 {
            let at = c.pos;
            let dl = c.i32("dataset name length")?;
            if dl > 0 && (dl as usize) <= c.left() {
                let s = String::from_utf8_lossy(&b[c.pos..c.pos + dl as usize]).into_owned();
                datasets.push(s);
            } else if dl > 0 {
                c.pos = at;
                return Err(c.err(format!(
                    "dataset name length {dl} is more than the {} bytes left",
                    c.left().saturating_sub(4)
                )));
            }
        }
    }
    Ok(Imatrix {
        path: path.to_path_buf(),
        format: Format::Dat,
        map: Source::Map(map),
        entries,
        datasets,
        chunk_count,
        chunk_size: 0,
    })
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn i32_of(v: usize, what: &str, path: &Path) -> Result<i32> {
    i32::try_from(v).map_err(|_| ImatrixError::Refused {
        path: path.to_path_buf(),
        what: format!("{what} {v} does not fit the format's i32"),
    })
}

/// Write one entry record.
fn put_entry(f: &mut AtomicFile, out: &Path, name: &str, ncall: i32, values: &[f32]) -> Result<()> {
    let mut rec = Vec::with_capacity(12 + name.len() + 4 * values.len());
    put_i32(&mut rec, i32_of(name.len(), "name length", out)?);
    rec.extend_from_slice(name.as_bytes());
    put_i32(&mut rec, ncall);
    put_i32(&mut rec, i32_of(values.len(), "value count", out)?);
    for v in values {
        rec.extend_from_slice(&v.to_le_bytes());
    }
    f.write_all(&rec)?;
    Ok(())
}

fn put_trailer(
    f: &mut AtomicFile,
    out: &Path,
    chunk_count: u32,
    dataset: Option<&String>,
) -> Result<()> {
    let mut t = Vec::new();
    put_i32(&mut t, i32::try_from(chunk_count).unwrap_or(i32::MAX));
    let d = dataset.map_or("", String::as_str);
    put_i32(&mut t, i32_of(d.len(), "dataset name length", out)?);
    t.extend_from_slice(d.as_bytes());
    f.write_all(&t)?;
    Ok(())
}

/// Write a legacy file from GGUF-form entries, as llama-imatrix's legacy writer does: entries
/// whose counts are all zero are skipped; `ncall = ⌈max count / chunk_size⌉`; each value is
/// `(sum / count) · ncall` with its matrix's count (a matrix with no data stores 1 · ncall).
/// `data` is asked for each entry in turn; the trailer records the chunk count and the last
/// dataset. Written to a temporary name, renamed when complete.
pub fn write_dat(
    out: &Path,
    meta: &Meta,
    shapes: &[EntryShape],
    mut data: impl FnMut(&str) -> Result<EntryData>,
    overwrite: bool,
) -> Result<usize> {
    check_output(out, None, overwrite)?;
    if meta.chunk_size == 0 {
        return Err(ImatrixError::Refused {
            path: out.to_path_buf(),
            what: "the legacy format needs a chunk size > 0".into(),
        });
    }
    let cs = i64::from(meta.chunk_size);
    let mut stored: Vec<&EntryShape> = shapes
        .iter()
        .filter(|s| !s.counts.is_empty() && s.counts.iter().any(|&c| c != 0))
        .collect();
    stored.sort_by(|a, b| a.name.cmp(&b.name));
    let mut f = AtomicFile::create(out)?;
    let mut head = Vec::new();
    put_i32(&mut head, i32_of(stored.len(), "entry count", out)?);
    f.write_all(&head)?;
    for s in &stored {
        let e = data(&s.name)?;
        let nmat = e.counts.len().max(1);
        let max = e.counts.iter().copied().max().unwrap_or(0);
        let ncall = i32::try_from((max + (cs - 1)) / cs).unwrap_or(i32::MAX);
        let per = (e.sums.len() / nmat).max(1);
        let values: Vec<f32> = e
            .sums
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let mut count = e.counts.get(i / per).copied().unwrap_or(0) as f32;
                let mut value = v;
                if count == 0.0 {
                    value = 1.0;
                    count = 1.0;
                }
                (value / count) * ncall as f32
            })
            .collect();
        put_entry(&mut f, out, &s.name, ncall, &values)?;
    }
    put_trailer(&mut f, out, meta.chunk_count, meta.datasets.last())?;
    f.commit()?;
    Ok(stored.len())
}

/// Copy a legacy file's entries exactly (values and `ncall` as stored).
pub(super) fn copy(input: &Imatrix, out: &Path, overwrite: bool) -> Result<usize> {
    check_output(out, Some(input.path()), overwrite)?;
    let mut f = AtomicFile::create(out)?;
    let mut head = Vec::new();
    put_i32(&mut head, i32_of(input.entries.len(), "entry count", out)?);
    f.write_all(&head)?;
    for e in &input.entries {
        let values = super::f32s(&input.map.bytes()[e.values.clone()]);
        put_entry(&mut f, out, &e.name, e.ncall, &values)?;
    }
    put_trailer(&mut f, out, input.chunk_count, input.datasets.last())?;
    f.commit()?;
    Ok(input.entries.len())
}
