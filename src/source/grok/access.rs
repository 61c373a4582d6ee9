//! Reading an opened checkpoint's tensors: int8 matrices (one expert at a time) and f32
//! arrays, with `pread` into reused buffers rather than through a map, so a file truncated by
//! another process mid-read is an error naming it, never a SIGBUS.

use super::check::scale_blocks;
use super::dequant::Matrix;
use super::reader::{Checkpoint, Tensor};
use super::SourceError;
use crate::base::float::decode_f32_le;
use crate::base::DType;
use crate::io::MappedFile;
use crate::model::Role;
use crate::numpy::Stored;

impl Checkpoint {
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
        let f = crate::io::input::open_regular(&t.file)?;
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
