//! Opening a checkpoint: parse every shard's pickle (in parallel; payloads are skipped, so only
//! header pages are touched), infer the configuration from the shapes (plus `config.json` when
//! present), and check each tensor against the parameter table.

use super::dequant::Matrix;
use super::layout::discover;
use super::SourceError;
use crate::base::float::decode_f32_le;
use crate::base::DType;
use crate::io::MappedFile;
use crate::model::{Config, ParamSpec, ParamTable, Role};
use crate::numpy::{stored_from_value, ArrayRef, Stored};
use crate::pickle::writer::{write_array, write_quantized, ArraySpec, Payload};
use rayon::prelude::*;
use serde_json::Value as Json;
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

fn parse_one(index: usize, path: &Path) -> Result<(usize, PathBuf, u64, Stored, u64), SourceError> {
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

/// The exact size `pickle.dump` gives a parameter with these shapes (computed by running the
/// CPython-exact writer into a sink), so any geometry's file sizes can be checked exactly.
pub fn expected_file_size(spec: &ParamSpec, config: &Config) -> u64 {
    let _ = config;
    let zeros = |len: u64| {
        move |w: &mut dyn std::io::Write| -> std::io::Result<()> {
            let z = [0u8; 1 << 16];
            let mut left = len;
            while left > 0 {
                let k = left.min(z.len() as u64) as usize;
                w.write_all(&z[..k])?;
                left -= k as u64;
            }
            Ok(())
        }
    };
    let n = |shape: &[u64], size: u64| shape.iter().product::<u64>() * size;
    let r = match &spec.scales_shape {
        None => {
            let len = n(&spec.shape, 4);
            let mut f = zeros(len);
            write_array(
                std::io::sink(),
                ArraySpec {
                    dtype: DType::F32,
                    shape: &spec.shape,
                    payload: Payload { len, write: &mut f },
                },
            )
        }
        Some(ss) => {
            let (wl, sl) = (n(&spec.shape, 1), n(ss, 2));
            let (mut fw, mut fs) = (zeros(wl), zeros(sl));
            write_quantized(
                std::io::sink(),
                ArraySpec {
                    dtype: DType::I8,
                    shape: &spec.shape,
                    payload: Payload {
                        len: wl,
                        write: &mut fw,
                    },
                },
                ArraySpec {
                    dtype: DType::BF16,
                    shape: ss,
                    payload: Payload {
                        len: sl,
                        write: &mut fs,
                    },
                },
            )
        }
    };
    r.unwrap_or(0)
}

/// A `config.json` found beside the checkpoint: its path and top-level object.
type ConfigJson = (PathBuf, serde_json::Map<String, Json>);

fn read_config_json(
    dir: &Path,
    explicit: Option<&Path>,
) -> Result<Option<ConfigJson>, SourceError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => [
            Some(dir.join("config.json")),
            dir.parent().map(|p| p.join("config.json")),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    for c in candidates {
        if !c.is_file() {
            if explicit.is_some() {
                return Err(SourceError::Config {
                    dir: dir.to_path_buf(),
                    msg: format!("{} not found", c.display()),
                });
            }
            continue;
        }
        let Some(text) = crate::io::read_capped(&c, crate::base::limits::CKPT_MAX_CONFIG_BYTES)?
        else {
            return Err(SourceError::Config {
                dir: dir.to_path_buf(),
                msg: format!("{}: larger than 1 MiB", c.display()),
            });
        };
        let v: Json = serde_json::from_slice(&text).map_err(|e| SourceError::Config {
            dir: dir.to_path_buf(),
            msg: format!("{}: {e}", c.display()),
        })?;
        return match v {
            Json::Object(m) => Ok(Some((c, m))),
            _ => Err(SourceError::Config {
                dir: dir.to_path_buf(),
                msg: format!("{}: not a JSON object", c.display()),
            }),
        };
    }
    Ok(None)
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

    fn check(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for t in &self.tensors {
            let mut p = |offset: Option<u64>, msg: String| {
                out.push(Problem {
                    file: t.file.clone(),
                    tensor: t.spec.path.clone(),
                    offset,
                    msg,
                })
            };
            let info = t.spec.role.info();
            match (&t.stored, info.quantized) {
                (Stored::Array(a), false) => {
                    if a.dtype != DType::F32 {
                        p(
                            Some(a.data.start),
                            format!("dtype {} (the release stores this as f32)", a.dtype),
                        );
                    }
                    if a.shape.dims() != t.spec.shape.as_slice() {
                        p(
                            Some(a.data.start),
                            format!("shape {} but the model needs {:?}", a.shape, t.spec.shape),
                        );
                    }
                }
                (Stored::Quantized { weight, scales }, true) => {
                    if weight.dtype != DType::I8 {
                        p(
                            Some(weight.data.start),
                            format!("weight dtype {} (expected i8)", weight.dtype),
                        );
                    }
                    if scales.dtype != DType::BF16 {
                        p(
                            Some(scales.data.start),
                            format!("scales dtype {} (expected bf16)", scales.dtype),
                        );
                    }
                    if weight.shape.dims() != t.spec.shape.as_slice() {
                        p(
                            Some(weight.data.start),
                            format!(
                                "weight shape {} but the model needs {:?}",
                                weight.shape, t.spec.shape
                            ),
                        );
                    } else if let Err(m) = scale_blocks(weight, scales) {
                        p(Some(scales.data.start), m);
                    } else if Some(scales.shape.dims()) != t.spec.scales_shape.as_deref() {
                        p(
                            Some(scales.data.start),
                            format!(
                                "scales shape {} differs from the release's {:?} (still readable)",
                                scales.shape,
                                t.spec.scales_shape.clone().unwrap_or_default()
                            ),
                        );
                    }
                }
                (Stored::Array(_), true) => p(
                    None,
                    "plain array where the release has QuantizedWeight8bit".into(),
                ),
                (Stored::Quantized { .. }, false) => p(
                    None,
                    "QuantizedWeight8bit where the release has a plain f32 array".into(),
                ),
            }
            if t.pickle_end != t.file_len {
                p(
                    Some(t.pickle_end),
                    format!(
                        "{} trailing bytes after the pickle's STOP",
                        t.file_len.saturating_sub(t.pickle_end)
                    ),
                );
            }
            // Only the full release has published sizes to hold the files to.
            let want = if self.config.is_grok1() {
                expected_file_size(&t.spec, &self.config)
            } else {
                t.file_len
            };
            if want != t.file_len {
                p(
                    None,
                    format!("file is {} bytes; the release's is {want}", t.file_len),
                );
            }
        }
        out
    }

    /// Find a tensor by role and layer.
    pub fn tensor(&self, role: Role, layer: Option<u64>) -> Option<&Tensor> {
        self.tensors
            .iter()
            .find(|t| t.spec.role == role && t.spec.layer == layer)
    }

    /// Find a tensor by release path.
    pub fn by_path(&self, path: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.spec.path == path)
    }

    /// Total bytes of all shard files.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.file_len).sum()
    }

    /// Map a tensor's file (checking it still has the length it had when opened).
    pub fn map(&self, t: &Tensor) -> Result<MappedFile, SourceError> {
        let m = MappedFile::open(&t.file)?;
        if m.len() != t.file_len {
            return Err(self.err(
                t,
                format!(
                    "file changed size since it was opened ({} -> {} bytes)",
                    t.file_len,
                    m.len()
                ),
            ));
        }
        Ok(m)
    }

    fn err(&self, t: &Tensor, msg: String) -> SourceError {
        SourceError::Tensor {
            file: t.file.clone(),
            tensor: t.spec.path.clone(),
            msg,
        }
    }

    /// The int8 matrix of one expert (or the whole 2-D tensor when `expert` is None) in a mapped file.
    pub fn matrix<'m>(
        &self,
        t: &Tensor,
        map: &'m MappedFile,
        expert: Option<usize>,
    ) -> Result<Matrix<'m>, SourceError> {
        let g = self.geometry(t, expert)?;
        let bytes = map.bytes();
        let (w_start, s_start) = (g.weight_offset as usize, g.scales_offset as usize);
        let w = bytes.get(w_start..w_start + g.weight_len).ok_or_else(|| {
            self.err(
                t,
                format!("weight payload at byte offset {w_start} runs past the end of the file"),
            )
        })?;
        let s = bytes.get(s_start..s_start + g.scales_len).ok_or_else(|| {
            self.err(
                t,
                format!("scales payload at byte offset {s_start} runs past the end of the file"),
            )
        })?;
        Ok(Matrix {
            weight: w,
            scales: s,
            rows: g.rows,
            cols: g.cols,
            blocks: g.blocks,
        })
    }

    /// Where one expert's (or a 2-D tensor's) int8 weight and scales lie in the file.
    fn geometry(&self, t: &Tensor, expert: Option<usize>) -> Result<Geometry, SourceError> {
        let (weight, scales) = match &t.stored {
            Stored::Quantized { weight, scales } => (weight, scales),
            Stored::Array(_) => return Err(self.err(t, "not an int8 tensor".into())),
        };
        let blocks = scale_blocks(weight, scales).map_err(|m| self.err(t, m))?;
        let d = weight.shape.dims();
        let (rows, cols) = match d {
            [r, c] | [_, r, c] => (*r as usize, *c as usize),
            _ => {
                return Err(self.err(
                    t,
                    format!("weight shape {} is not 2-D or 3-D", weight.shape),
                ))
            }
        };
        let e = match (d.len(), expert) {
            (3, Some(e)) if (e as u64) < d[0] => e,
            (2, None) => 0,
            (3, _) => {
                return Err(self.err(
                    t,
                    format!("expert index {expert:?} out of range 0..{}", d[0]),
                ))
            }
            _ => return Err(self.err(t, "expert index given for a 2-D tensor".into())),
        };
        let (weight_len, scales_len) = (rows * cols, blocks * cols * 2);
        Ok(Geometry {
            rows,
            cols,
            blocks,
            weight_offset: weight.data.start + (e * weight_len) as u64,
            weight_len,
            scales_offset: scales.data.start + (e * scales_len) as u64,
            scales_len,
        })
    }

    /// Read `len` bytes at `offset` of a tensor's file with `pread`, not through a map: if the
    /// file shrinks while grokit reads it (another process truncating it), this is an error
    /// naming the file and offset, never a SIGBUS.
    pub fn read_at(&self, t: &Tensor, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        let mut buf = Vec::new();
        self.read_at_into(t, offset, len, &mut buf)?;
        Ok(buf)
    }

    /// [`Checkpoint::read_at`] into a caller's buffer (cleared first), so a loop over many
    /// matrices reuses one allocation instead of faulting in fresh zeroed pages for each.
    pub fn read_at_into(
        &self,
        t: &Tensor,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), SourceError> {
        use std::io::{Read, Seek, SeekFrom};
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= t.file_len)
            .ok_or_else(|| {
                self.err(
                    t,
                    format!(
                        "read of {len} bytes at byte offset {offset} is past the end of the file"
                    ),
                )
            })?;
        let f = std::fs::File::open(&t.file)
            .map_err(|e| crate::io::IoError::new("open", &t.file, e))?;
        let now = f
            .metadata()
            .map_err(|e| crate::io::IoError::new("stat", &t.file, e))?
            .len();
        if now != t.file_len {
            return Err(self.err(
                t,
                format!(
                    "file changed size since it was opened ({} -> {now} bytes)",
                    t.file_len
                ),
            ));
        }
        buf.clear();
        buf.reserve_exact(len);
        // Reading into the spare capacity (no zeroing pass); the length check below catches a
        // file that shrank meanwhile.
        let mut f = f;
        let got = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| f.take(len as u64).read_to_end(buf));
        let why = match got {
            Ok(n) if n == len => return Ok(()),
            Ok(_) => "the file shrank while being read".to_string(),
            Err(e) => e.to_string(),
        };
        Err(self.err(
            t,
            format!("reading {len} bytes at byte offset {offset} (to {end}): {why}"),
        ))
    }

    /// The int8 matrix of one expert (or a 2-D tensor) read into memory with `pread`
    /// ([`Checkpoint::read_at`]): at most one Grok-1 expert matrix (201 MB) at a time.
    pub fn matrix_owned(
        &self,
        t: &Tensor,
        expert: Option<usize>,
    ) -> Result<OwnedMatrix, SourceError> {
        let mut m = OwnedMatrix::default();
        self.matrix_owned_into(t, expert, &mut m)?;
        Ok(m)
    }

    /// [`Checkpoint::matrix_owned`] into a reused [`OwnedMatrix`] (its buffers keep their
    /// capacity from one matrix to the next).
    pub fn matrix_owned_into(
        &self,
        t: &Tensor,
        expert: Option<usize>,
        m: &mut OwnedMatrix,
    ) -> Result<(), SourceError> {
        let g = self.geometry(t, expert)?;
        self.read_at_into(t, g.weight_offset, g.weight_len, &mut m.weight)?;
        self.read_at_into(t, g.scales_offset, g.scales_len, &mut m.scales)?;
        (m.rows, m.cols, m.blocks) = (g.rows, g.cols, g.blocks);
        Ok(())
    }

    /// The f32 payload of a plain tensor in a mapped file.
    pub fn f32_bytes<'m>(&self, t: &Tensor, map: &'m MappedFile) -> Result<&'m [u8], SourceError> {
        match &t.stored {
            Stored::Array(a) if a.dtype == DType::F32 => map
                .bytes()
                .get(a.data.start as usize..a.data.end as usize)
                .ok_or_else(|| {
                    self.err(
                        t,
                        format!(
                            "payload at byte offset {} runs past the end of the file",
                            a.data.start
                        ),
                    )
                }),
            _ => Err(self.err(t, "not an f32 array".into())),
        }
    }

    /// Exact f32 values of a parameter (or of one expert), in the release orientation.
    /// Allocates the result: for whole-model streaming use [`Checkpoint::matrix`] per row range.
    pub fn read_f32(
        &self,
        t: &Tensor,
        expert: Option<usize>,
    ) -> Result<(Vec<usize>, Vec<f32>), SourceError> {
        match &t.stored {
            Stored::Array(a) => {
                if expert.is_some() {
                    return Err(self.err(t, "expert index given for a plain tensor".into()));
                }
                if a.dtype != DType::F32 {
                    return Err(self.err(t, format!("dtype {} (expected f32)", a.dtype)));
                }
                let b = self.read_at(t, a.data.start, (a.data.end - a.data.start) as usize)?;
                let mut v = vec![0f32; b.len() / 4];
                decode_f32_le(&b, &mut v);
                Ok((a.shape.dims().iter().map(|&d| d as usize).collect(), v))
            }
            Stored::Quantized { .. } => {
                let om = self.matrix_owned(t, expert)?;
                let m = om.view();
                Ok((vec![m.rows, m.cols], super::dequant::dequant_block_rows(&m)))
            }
        }
    }
}

/// Where an int8 matrix lies in its file.
struct Geometry {
    rows: usize,
    cols: usize,
    blocks: usize,
    weight_offset: u64,
    weight_len: usize,
    scales_offset: u64,
    scales_len: usize,
}

/// An int8 matrix held in memory (see [`Checkpoint::matrix_owned`]).
#[derive(Clone, Debug, Default)]
pub struct OwnedMatrix {
    /// int8 payload.
    pub weight: Vec<u8>,
    /// bf16 scales payload.
    pub scales: Vec<u8>,
    /// Rows (input dim).
    pub rows: usize,
    /// Columns (output dim).
    pub cols: usize,
    /// Scale row blocks.
    pub blocks: usize,
}

impl OwnedMatrix {
    /// A borrowed view for the dequantization helpers.
    pub fn view(&self) -> Matrix<'_> {
        Matrix {
            weight: &self.weight,
            scales: &self.scales,
            rows: self.rows,
            cols: self.cols,
            blocks: self.blocks,
        }
    }
}

/// Row blocks B of the scales: dim -2 of the scales, which must divide the weight's rows
/// (grok1-checkpoint.md §4.5 "Validation").
pub fn scale_blocks(weight: &ArrayRef, scales: &ArrayRef) -> Result<usize, String> {
    let (w, s) = (weight.shape.dims(), scales.shape.dims());
    if w.len() < 2 || s.len() != w.len() {
        return Err(format!(
            "scales shape {} does not fit weight shape {}",
            scales.shape, weight.shape
        ));
    }
    let n = w.len();
    let b = s[n - 2];
    let lead_ok = w[..n - 2] == s[..n - 2] && w[n - 1] == s[n - 1];
    if !lead_ok || b == 0 || w[n - 2] % b != 0 {
        return Err(format!(
            "scales shape {} does not fit weight shape {} (row blocks must divide the rows)",
            scales.shape, weight.shape
        ));
    }
    Ok(b as usize)
}

type Parsed = (usize, PathBuf, u64, Stored, u64);

fn infer_config(
    dir: &Path,
    parsed: &[Parsed],
    num_layers: u64,
    opts: &OpenOptions,
) -> Result<(Config, Vec<String>), SourceError> {
    let cfg_err = |msg: String| SourceError::Config {
        dir: dir.to_path_buf(),
        msg,
    };
    let shape = |i: usize| -> Result<Vec<u64>, SourceError> {
        let p = parsed
            .get(i)
            .ok_or_else(|| cfg_err(format!("file {i} missing")))?;
        Ok(match &p.3 {
            Stored::Array(a) => a.shape.dims().to_vec(),
            Stored::Quantized { weight, .. } => weight.shape.dims().to_vec(),
        })
    };
    let mut notes = Vec::new();
    let mut c = Config::grok1();
    c.num_layers = num_layers;
    let emb = shape(0)?;
    if let [v, d] = emb[..] {
        c.vocab_size = v;
        c.emb_size = d;
    } else {
        return Err(cfg_err(format!(
            "file 0 (the embedding) has shape {emb:?}, expected [vocab, d_model]"
        )));
    }
    if num_layers > 0 {
        // Layer 0 is the first layer in file order; its slots start at 2.
        match shape(2)?[..] {
            [e, _, f] => {
                c.num_experts = e;
                c.ffn_size = f;
            }
            ref s => {
                return Err(cfg_err(format!(
                    "file 2 (moe/linear) has shape {s:?}, expected [experts, d_model, ffn]"
                )))
            }
        }
        let qw = shape(2 + 5)?.get(1).copied().unwrap_or(0);
        let kw = shape(2 + 3)?.get(1).copied().unwrap_or(0);
        let json = read_config_json(dir, opts.config_json.as_deref())?;
        let mut key_size = None;
        if let Some((path, m)) = &json {
            notes.push(format!("config.json: {}", path.display()));
            let num = |k: &str| m.get(k).and_then(Json::as_f64);
            if let Some(v) = num("key_size") {
                key_size = Some(v as u64);
            }
            if let Some(v) = num("num_selected_experts") {
                c.num_selected_experts = v as u64;
            }
            if let Some(v) = num("rms_norm_eps") {
                c.rms_norm_eps = v;
            }
            if let Some(v) = num("rope_base") {
                c.rope_base = v;
            }
            if let Some(v) = num("attn_logit_cap") {
                c.attn_logit_cap = v;
            }
            if let Some(v) = num("embedding_multiplier_scale") {
                c.embedding_multiplier_scale = v;
            }
            if let Some(v) = num("output_multiplier_scale") {
                c.output_multiplier_scale = v;
            }
            if let Some(v) = num("attn_output_multiplier") {
                c.attn_output_multiplier = v;
            }
            for (k, have) in [
                ("vocab_size", c.vocab_size),
                ("emb_size", c.emb_size),
                ("num_experts", c.num_experts),
                ("ffn_size", c.ffn_size),
                ("num_layers", num_layers),
            ] {
                if let Some(v) = num(k) {
                    if v as u64 != have {
                        return Err(cfg_err(format!(
                            "config.json says {k} = {v} but the shards say {have}"
                        )));
                    }
                }
            }
        }
        if let Some(k) = opts.key_size {
            key_size = Some(k);
            notes.push(format!("key_size {k} from the command line"));
        }
        if let Some(k) = opts.top_k {
            c.num_selected_experts = k;
        }
        let ks = match key_size {
            Some(k) => k,
            None if qw % 128 == 0 && kw % 128 == 0 => {
                notes.push("key_size 128 (Grok-1's head dimension; no config.json)".into());
                128
            }
            None => return Err(cfg_err(format!("cannot tell the head dimension from widths {qw} (query) and {kw} (key): put a config.json with key_size beside ckpt-0 or pass --key-size"))),
        };
        if ks == 0 || qw % ks != 0 || kw % ks != 0 {
            return Err(cfg_err(format!(
                "key_size {ks} does not divide the query width {qw} and key width {kw}"
            )));
        }
        c.key_size = ks;
        c.num_q_heads = qw / ks;
        c.num_kv_heads = kw / ks;
    }
    notes.push("sizes from the shards' shapes".into());
    let problems = c.problems();
    if !problems.is_empty() {
        return Err(cfg_err(problems.join("; ")));
    }
    Ok((c, notes))
}
