//! The per-tensor conversion report (`--report`, `--json`): type, bytes, bits per weight, and
//! error against the release's exact dequantized weights.

use super::encode::Stats;
use super::plan::OutTensor;
use super::sink::Outcome;
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
        TensorReport {
            name: t.name.clone(),
            ty: ty.to_string(),
            shape: t.shape.clone(),
            bytes: t.nbytes,
            bpw: bits_per_weight(t.nbytes, t.elems()),
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
    #[serde(serialize_with = "crate::io::term::serialize_sized_paths")]
    pub files: Vec<(PathBuf, u64)>,
    /// Files kept from an earlier run (`--resume`).
    #[serde(serialize_with = "crate::io::term::serialize_paths")]
    pub skipped: Vec<PathBuf>,
    /// Tensors written.
    pub tensors: Vec<TensorReport>,
}

impl ConvertReport {
    /// Record the files of a [`FileLoop::run`](super::sink::FileLoop::run).
    pub fn add(&mut self, o: Outcome) {
        self.files
            .extend(o.written.into_iter().map(|w| (w.path, w.bytes)));
        self.skipped.extend(o.kept.into_iter().map(|w| w.path));
    }
}

/// Bits per weight of `bytes` holding `elems` elements.
pub fn bits_per_weight(bytes: u64, elems: u64) -> f64 {
    bytes as f64 * 8.0 / elems.max(1) as f64
}
