//! The per-tensor conversion report (`--report`, `--json`): type, bytes, bits per weight, and
//! error against the release's exact dequantized weights.

use super::encode::Stats;
use super::plan::OutTensor;
use serde::Serialize;
use std::path::PathBuf;

/// One output tensor's line.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    /// Name.
    pub name: String,
    /// Stored type.
    pub ty: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Bytes.
    pub bytes: u64,
    /// Bits per weight.
    pub bpw: f64,
    /// RMS error against the exact values (0 for lossless encodings).
    pub rms: f64,
    /// Max absolute error.
    pub max_abs: f32,
    /// Blocks/groups copied from the release's int8 unchanged.
    pub lossless_blocks: u64,
    /// Blocks/groups quantized from exact values.
    pub requantized_blocks: u64,
    /// A fallback that applied.
    pub note: Option<String>,
}

impl TensorReport {
    /// Build from a plan entry and its stats.
    pub fn new(t: &OutTensor, ty: &str, s: Stats) -> TensorReport {
        let elems = t.elems().max(1);
        TensorReport {
            name: t.name.clone(),
            ty: ty.to_string(),
            shape: t.shape.clone(),
            bytes: t.nbytes,
            bpw: t.nbytes as f64 * 8.0 / elems as f64,
            rms: s.rms(),
            max_abs: s.max_abs,
            lossless_blocks: s.lossless,
            requantized_blocks: s.requantized,
            note: t.note.clone(),
        }
    }
}

/// What a conversion wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConvertReport {
    /// Files written, with sizes.
    pub files: Vec<(PathBuf, u64)>,
    /// Files kept from an earlier run (`--resume`).
    pub skipped: Vec<PathBuf>,
    /// Tensors written.
    pub tensors: Vec<TensorReport>,
}
