//! L2: importance-matrix files, the two formats current llama.cpp reads (docs/formats/imatrix.md).
//!
//! Why this module exists: below 5 bits llama.cpp's quality depends on an importance matrix —
//! per weight matrix, per input column, the mean squared activation seen on calibration text
//! (`llama-imatrix`). `llama-quantize --imatrix` turns it into per-column weights for the
//! encoders. grokit reads the files llama-imatrix writes, writes files llama-quantize accepts
//! (and, in part 2 of issue #15, computes them itself), converts between the formats, and hands
//! the quantizer exactly the weights llama-quantize would ([`Imatrix::weights`]).
//!
//! - GGUF (`general.type = imatrix`, current default): per entry two F32 tensors,
//!   `<name>.in_sum2` [ne0, n_mat] (raw sums of squared activations) and `<name>.counts`
//!   [1, n_mat] (activation rows seen, per expert for the MoE tensors); keys `imatrix.datasets`,
//!   `imatrix.chunk_count`, `imatrix.chunk_size`. Read through [`crate::gguf`].
//! - Legacy `.dat`: i32 entry count, then per entry name, `ncall`, value count and the values
//!   `(sum / count) · ncall`; an optional trailer with the chunk count and the dataset name.
//!
//! The file stays mapped; an entry's values are decoded when asked for, so memory does not
//! grow with the model (Grok-1's matrix is about 100 MB). Every count and length read from a
//! file is checked against the bytes present before anything is allocated from it.

mod dat;
mod gguf_form;

use crate::gguf::GgufFile;
use crate::io::MappedFile;
use std::path::{Path, PathBuf};

pub use dat::write_dat;
pub use gguf_form::write_gguf;

/// Anything wrong with an importance-matrix file or its use with a model.
#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    /// Opening, mapping, writing or renaming failed.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// The GGUF container is broken (the message names the file and byte offset).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// The file's structure is wrong at a byte offset.
    #[error("{}: {what} at byte {offset}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
        /// Absolute byte offset.
        offset: u64,
    },
    /// An entry is inconsistent or unusable.
    #[error("{}: entry '{entry}': {what}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// Entry (tensor) name.
        entry: String,
        /// What is wrong.
        what: String,
    },
    /// The matrix does not belong to the model being quantized.
    #[error("{}: tensor '{tensor}': {what} (an importance matrix made for another model?)", path.display())]
    WrongModel {
        /// The imatrix file.
        path: PathBuf,
        /// The tensor (or entry) concerned.
        tensor: String,
        /// What does not match.
        what: String,
    },
    /// Something the output formats cannot hold (a value beyond their field's range).
    #[error("{}: {what}", path.display())]
    Refused {
        /// The output path.
        path: PathBuf,
        /// Why.
        what: String,
    },
    /// The output would replace something it must not (the one output policy, `io::output`).
    #[error(transparent)]
    Output(#[from] crate::io::output::OutputError),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ImatrixError>;

/// Which on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// GGUF with `general.type = imatrix`.
    Gguf,
    /// llama.cpp's legacy binary `.dat`.
    Dat,
}

impl Format {
    /// The format a path's extension names: `.dat` is legacy, anything else GGUF (as
    /// `llama-imatrix` decides from `--output-format` / the name).
    pub fn from_path(p: &Path) -> Format {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("dat") => Format::Dat,
            _ => Format::Gguf,
        }
    }
}

/// Where an entry's numbers lie in the mapped file.
#[derive(Clone, Debug)]
struct EntryIndex {
    name: String,
    /// Byte range of the little-endian f32 values.
    values: std::ops::Range<usize>,
    /// GGUF: byte range of the f32 counts; legacy: empty.
    counts: std::ops::Range<usize>,
    /// Legacy: the stored `ncall`.
    ncall: i32,
    /// Matrices (experts) the values cover.
    n_mat: usize,
}

/// One entry's description.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EntryInfo {
    /// Tensor name (`blk.0.ffn_up_exps.weight`).
    pub name: String,
    /// Values per matrix (the tensor's input width, `ne0`).
    pub ne0: usize,
    /// Matrices (experts; 1 for a 2-D tensor).
    pub n_mat: usize,
    /// Activation rows seen per matrix (GGUF), or `[ncall]` (legacy).
    pub counts: Vec<i64>,
}

/// An importance-matrix file, mapped and indexed.
pub struct Imatrix {
    path: PathBuf,
    format: Format,
    map: Source,
    entries: Vec<EntryIndex>,
    datasets: Vec<String>,
    chunk_count: u32,
    chunk_size: u32,
}

// One per open matrix: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    Map(MappedFile),
    Gguf(GgufFile),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Map(m) => m.bytes(),
            Source::Gguf(g) => g.bytes(),
        }
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Imatrix {
    /// Open either format: a file starting with `GGUF` is read as GGUF, anything else as the
    /// legacy format (llama.cpp's loader falls back the same way).
    pub fn open(path: &Path) -> Result<Imatrix> {
        let map = MappedFile::open(path)?;
        if map.bytes().starts_with(&crate::gguf::GGUF_MAGIC) {
            drop(map);
            gguf_form::read(path)
        } else {
            dat::read(path, map)
        }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Its format.
    pub fn format(&self) -> Format {
        self.format
    }
    /// Calibration datasets recorded in the file (GGUF: all; legacy: the one in the trailer).
    pub fn datasets(&self) -> &[String] {
        &self.datasets
    }
    /// Chunks the matrix was computed over.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }
    /// Tokens per chunk (GGUF; 0 for legacy files, which do not record it).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True with no entries (never for a file [`Imatrix::open`] accepted).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entry names in file order (sorted, in files llama-imatrix writes).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    fn find(&self, name: &str) -> Option<&EntryIndex> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// An entry's description.
    pub fn info(&self, name: &str) -> Option<EntryInfo> {
        let e = self.find(name)?;
        let nval = e.values.len() / 4;
        Some(EntryInfo {
            name: e.name.clone(),
            ne0: nval / e.n_mat.max(1),
            n_mat: e.n_mat,
            counts: self.counts_of(e),
        })
    }

    /// Every entry's description, in file order.
    pub fn infos(&self) -> Vec<EntryInfo> {
        self.names().filter_map(|n| self.info(n)).collect()
    }

    fn counts_of(&self, e: &EntryIndex) -> Vec<i64> {
        match self.format {
            // llama.cpp reads GGUF counts with lround
            Format::Gguf => f32s(&self.map.bytes()[e.counts.clone()])
                .into_iter()
                .map(|c| c.round() as i64)
                .collect(),
            Format::Dat => vec![i64::from(e.ncall)],
        }
    }

    /// The values as stored: GGUF raw sums of squared activations, legacy `(sum/count)·ncall`.
    pub fn values(&self, name: &str) -> Option<Vec<f32>> {
        self.find(name)
            .map(|e| f32s(&self.map.bytes()[e.values.clone()]))
    }

    /// The raw sums and per-matrix counts of an entry, in the GGUF form (legacy entries are
    /// turned into it as `llama-imatrix --in-file` does: values and `ncall` times `chunk_size`).
    pub fn sums_and_counts(&self, name: &str, chunk_size: u32) -> Option<(Vec<f32>, Vec<i64>)> {
        let e = self.find(name)?;
        let v = f32s(&self.map.bytes()[e.values.clone()]);
        Some(match self.format {
            Format::Gguf => (v, self.counts_of(e)),
            Format::Dat => {
                let cs = chunk_size as f32;
                (
                    v.into_iter().map(|x| x * cs).collect(),
                    vec![i64::from(e.ncall) * i64::from(chunk_size)],
                )
            }
        })
    }

    /// The per-column weights llama-quantize derives from an entry (`load_imatrix` in
    /// tools/quantize): GGUF sums divided by each matrix's count (1 where a matrix saw no
    /// data), legacy values divided by `ncall`. `n_mat · ne0` values, matrix-major. An error if
    /// a weight is not finite (llama-quantize refuses such a matrix).
    pub fn weights(&self, name: &str) -> Result<Option<Vec<f32>>> {
        let Some(e) = self.find(name) else {
            return Ok(None);
        };
        let v = f32s(&self.map.bytes()[e.values.clone()]);
        let w: Vec<f32> = match self.format {
            Format::Gguf => {
                let counts = self.counts_of(e);
                let ne0 = v.len() / counts.len().max(1);
                let mut w = v;
                for (j, chunk) in w.chunks_mut(ne0.max(1)).enumerate() {
                    let c = counts.get(j).copied().unwrap_or(0) as f32;
                    for x in chunk {
                        *x = if c > 0.0 { *x / c } else { 1.0 };
                    }
                }
                w
            }
            Format::Dat => {
                let ncall = i64::from(e.ncall);
                if ncall > 0 {
                    v.into_iter().map(|x| x / ncall as f32).collect()
                } else {
                    v
                }
            }
        };
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(ImatrixError::Entry {
                path: self.path.clone(),
                entry: name.to_string(),
                what: format!(
                    "weight {i} is {} (llama-quantize refuses non-finite values)",
                    w[i]
                ),
            });
        }
        Ok(Some(w))
    }

    /// Check the matrix against a model's tensors (`(name, ne)` of every tensor): each entry
    /// must name a tensor of the model, with that tensor's input width (`ne0`) and, for stacked
    /// expert tensors, its expert count (`ne2`). The first mismatch is an error naming it.
    pub fn check_model<'a>(
        &self,
        tensors: impl IntoIterator<Item = (&'a str, &'a [u64])>,
    ) -> Result<()> {
        let model: std::collections::HashMap<&str, &[u64]> = tensors.into_iter().collect();
        for e in &self.entries {
            let wrong = |what: String| ImatrixError::WrongModel {
                path: self.path.clone(),
                tensor: e.name.clone(),
                what,
            };
            let Some(ne) = model.get(e.name.as_str()) else {
                return Err(wrong("the model has no tensor of this name".into()));
            };
            let ne0 = ne.first().copied().unwrap_or(1) as usize;
            let n_mat = ne.get(2).copied().unwrap_or(1) as usize;
            let nval = e.values.len() / 4;
            if nval != ne0 * n_mat {
                return Err(wrong(format!(
                    "{nval} values, but the tensor's {} input columns × {n_mat} matrices need {}",
                    ne0,
                    ne0 * n_mat
                )));
            }
            if self.format == Format::Gguf && e.n_mat != 1 && e.n_mat != n_mat {
                return Err(wrong(format!(
                    "counts for {} experts, but the tensor has {n_mat}",
                    e.n_mat
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Imatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imatrix")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("entries", &self.entries.len())
            .field("chunk_count", &self.chunk_count)
            .field("chunk_size", &self.chunk_size)
            .finish()
    }
}

/// Metadata written with a matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Calibration datasets (the legacy format keeps the last one).
    pub datasets: Vec<String>,
    /// Chunks the matrix was computed over.
    pub chunk_count: u32,
    /// Tokens per chunk.
    pub chunk_size: u32,
}

/// One entry to write, in the GGUF form: raw sums (`n_mat · ne0`, matrix-major) and counts per
/// matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryData {
    /// Tensor name.
    pub name: String,
    /// Raw sums of squared activations.
    pub sums: Vec<f32>,
    /// Activation rows per matrix.
    pub counts: Vec<i64>,
}

/// An entry's shape for the writers' plans: name, values per matrix, matrices, counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryShape {
    /// Tensor name.
    pub name: String,
    /// Values per matrix.
    pub ne0: usize,
    /// Matrices.
    pub n_mat: usize,
    /// Activation rows per matrix (the legacy writer skips entries where all are 0).
    pub counts: Vec<i64>,
}

/// The one output policy of every command (`io::output`): never the input, never a directory,
/// a device or a FIFO, an existing file only with `overwrite` (`--force`).
fn check_output(out: &Path, input: Option<&Path>, overwrite: bool) -> Result<()> {
    let rules = crate::io::output::OutputRules {
        inputs: input.map(Path::to_path_buf).into_iter().collect(),
        force: overwrite,
        ..Default::default()
    };
    crate::io::output::resolve_output(out, &rules)?;
    Ok(())
}

/// Rewrite `input` as `out` in `format` (GGUF → GGUF and legacy → legacy keep every value;
/// legacy → GGUF multiplies values and `ncall` by `chunk_size`, as `llama-imatrix --in-file`;
/// GGUF → legacy divides by the counts and scales by `ncall`, as llama-imatrix's legacy
/// writer). Entries are copied one at a time. Returns the entries written.
pub fn convert(
    input: &Imatrix,
    out: &Path,
    format: Format,
    chunk_size: u32,
    overwrite: bool,
) -> Result<usize> {
    check_output(out, Some(input.path()), overwrite)?;
    if input.format() == Format::Dat && format == Format::Dat {
        return dat::copy(input, out, true);
    }
    let cs = if input.chunk_size() > 0 {
        input.chunk_size()
    } else {
        chunk_size
    };
    let meta = Meta {
        datasets: input.datasets().to_vec(),
        chunk_count: input.chunk_count(),
        chunk_size: cs,
    };
    let shapes: Vec<EntryShape> = input
        .infos()
        .into_iter()
        .map(|i| {
            let counts = match input.format() {
                Format::Gguf => i.counts,
                Format::Dat => i.counts.iter().map(|c| c * i64::from(cs)).collect(),
            };
            EntryShape {
                name: i.name,
                ne0: i.ne0,
                n_mat: i.n_mat,
                counts,
            }
        })
        .collect();
    let data = |name: &str| -> Result<EntryData> {
        let (sums, counts) =
            input
                .sums_and_counts(name, cs)
                .ok_or_else(|| ImatrixError::Entry {
                    path: input.path().to_path_buf(),
                    entry: name.to_string(),
                    what: "vanished".into(),
                })?;
        Ok(EntryData {
            name: name.to_string(),
            sums,
            counts,
        })
    };
    match format {
        Format::Gguf => write_gguf(out, &meta, &shapes, data, true),
        Format::Dat => write_dat(out, &meta, &shapes, data, true),
    }
}

#[cfg(test)]
mod tests;
