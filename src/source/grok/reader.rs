//! Opening a checkpoint: parse every shard's pickle (in parallel; payloads are skipped, so only
//! header pages are touched), infer the configuration ([`super::config`]), and check each
//! tensor against the parameter table ([`super::check`]). Reading the tensors' data is
//! [`super::access`].

use super::config::infer_config;
use super::layout::discover;
use super::SourceError;
use crate::io::MappedFile;
use crate::model::{Config, ParamSpec, ParamTable};
use crate::numpy::{stored_from_value, ArrayRef, Stored};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Options for [`Checkpoint::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Head dimension, when neither `config.json` nor the default (128) applies.
    pub key_size: Option<u64>,
    /// Experts per token (default 2 or `config.json`'s `num_selected_experts`).
    pub top_k: Option<u64>,
    /// An explicit `config.json` (release field names).
    pub config_json: Option<PathBuf>,
}

/// Default options.
pub fn open_options() -> OpenOptions {
    OpenOptions::default()
}

/// One shard, parsed.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// What it should be.
    pub spec: ParamSpec,
    /// The file.
    pub file: PathBuf,
    /// File length.
    pub file_len: u64,
    /// What the pickle holds (byte ranges into the file).
    pub stored: Stored,
    /// Offset just after the pickle's STOP.
    pub pickle_end: u64,
}

impl Tensor {
    /// The weight array (the array itself for plain tensors).
    pub fn weight(&self) -> &ArrayRef {
        match &self.stored {
            Stored::Array(a) => a,
            Stored::Quantized { weight, .. } => weight,
        }
    }
    /// The scales, for int8 tensors.
    pub fn scales(&self) -> Option<&ArrayRef> {
        match &self.stored {
            Stored::Array(_) => None,
            Stored::Quantized { scales, .. } => Some(scales),
        }
    }
    /// Payload bytes (weight + scales).
    pub fn payload_bytes(&self) -> u64 {
        let w = self.weight();
        let s = self
            .scales()
            .map(|s| s.data.end - s.data.start)
            .unwrap_or(0);
        w.data.end - w.data.start + s
    }
}

/// A non-fatal structural problem (inspect/verify list them; convert refuses to run).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// The file.
    #[serde(serialize_with = "crate::io::term::serialize_path")]
    pub file: PathBuf,
    /// The parameter path.
    pub tensor: String,
    /// Byte offset, when one applies.
    pub offset: Option<u64>,
    /// What is wrong.
    pub msg: String,
}

/// An opened release checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Directory of the shards.
    pub dir: PathBuf,
    /// Configuration (from shapes, `config.json`, options).
    pub config: Config,
    /// Where each part of the configuration came from.
    pub config_notes: Vec<String>,
    /// Shards in file order.
    pub tensors: Vec<Tensor>,
    /// Structural problems found.
    pub problems: Vec<Problem>,
    /// Departures from Grok-1's architecture rules (8 experts, square attention output, the FFN
    /// width rule): reported, but they do not stop a conversion.
    pub warnings: Vec<Problem>,
}

pub(super) type Parsed = (usize, PathBuf, u64, Stored, u64);

fn parse_one(index: usize, path: &Path) -> Result<Parsed, SourceError> {
    let map = MappedFile::open(path)?;
    let tensor = format!("file {index}");
    let parsed = crate::pickle::run(map.bytes(), 0).map_err(|source| SourceError::Pickle {
        file: path.to_path_buf(),
        tensor: tensor.clone(),
        source,
    })?;
    let stored = stored_from_value(&parsed.value).map_err(|source| SourceError::Numpy {
        file: path.to_path_buf(),
        tensor,
        source,
    })?;
    Ok((index, path.to_path_buf(), map.len(), stored, parsed.end))
}

impl Checkpoint {
    /// Open the checkpoint at `path` (`ckpt-0/`, `ckpt/`, or a directory containing one).
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Checkpoint, SourceError> {
        let files = discover(path)?;
        let dir = files.dir.clone();
        let parsed: Vec<_> = files
            .files
            .par_iter()
            .map(|(i, p)| parse_one(*i, p))
            .collect::<Result<_, _>>()?;
        let (config, config_notes) = infer_config(&dir, &parsed, files.num_layers, opts)?;
        let table = ParamTable::new(&config);
        let mut tensors = Vec::with_capacity(parsed.len());
        for ((index, file, file_len, stored, pickle_end), spec) in
            parsed.into_iter().zip(table.params)
        {
            debug_assert_eq!(index, spec.index);
            tensors.push(Tensor {
                spec,
                file,
                file_len,
                stored,
                pickle_end,
            });
        }
        let warnings = config
            .rule_violations()
            .into_iter()
            .map(|msg| Problem {
                file: dir.clone(),
                tensor: "(architecture)".into(),
                offset: None,
                msg,
            })
            .collect();
        let mut ck = Checkpoint {
            dir,
            config,
            config_notes,
            tensors,
            problems: Vec::new(),
            warnings,
        };
        ck.problems = ck.check();
        Ok(ck)
    }
}
