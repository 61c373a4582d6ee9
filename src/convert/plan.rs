//! The output plan: every tensor an output will hold, in order, with its exact shape, encoding,
//! byte length and where its rows come from. Built completely before any byte is written, so
//! writers know every size up front and `--dry-run` can print it.

use super::ConvertError;
use crate::base::DType;
use crate::model::{roles::fill, Config, Role, ROLES};
use crate::quant::GgmlType;
use crate::source::Checkpoint;

pub use crate::model::roles::Layout;

/// Where an output tensor's rows come from: one source parameter (or one expert of it),
/// transposed from the release's [in, out] to [out, in] or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index into `Checkpoint::tensors` (= release file index).
    pub tensor: usize,
    /// Expert, for stacked expert tensors.
    pub expert: Option<usize>,
    /// Transpose [in, out] -> [out, in].
    pub transpose: bool,
}

/// How the output rows are encoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Encode {
    /// Plain float elements (RNE from the exact f32 values).
    Float(DType),
    /// ggml blocks, row by row (Q8_0 from int8 sources copies the release's int8 where possible).
    Ggml(GgmlType),
    /// compressed-tensors `weight_packed` (I32 words), symmetric, `bits` 4 or 8, groups of `group`.
    CtPacked {
        /// 4 or 8
        bits: u32,
        /// group size
        group: usize,
    },
    /// compressed-tensors `weight_scale` (BF16 [out, in / group]).
    CtScale {
        /// 4 or 8
        bits: u32,
        /// group size
        group: usize,
    },
    /// Fixed bytes (e.g. compressed-tensors `weight_shape`).
    Bytes(Vec<u8>),
}

impl Encode {
    /// How a tensor of ggml type `t` is encoded: plain types as float elements, block types
    /// as ggml blocks.
    pub fn of_ggml(t: GgmlType) -> Encode {
        match DType::from_ggml(t.id()) {
            Some(d) if !t.is_quantized() => Encode::Float(d),
            _ => Encode::Ggml(t),
        }
    }
    /// The ggml type of the encoded bytes; `None` for encodings GGUF does not carry
    /// (compressed-tensors, fixed bytes).
    pub fn ggml_type(&self) -> Option<GgmlType> {
        match self {
            Encode::Float(d) => d.info().ggml.and_then(GgmlType::from_id),
            Encode::Ggml(t) => Some(*t),
            Encode::CtPacked { .. } | Encode::CtScale { .. } | Encode::Bytes(_) => None,
        }
    }
    /// The safetensors dtype of the encoded bytes.
    pub fn st_dtype(&self) -> DType {
        match self {
            Encode::Float(d) => *d,
            Encode::CtPacked { .. } | Encode::Bytes(_) => DType::I32,
            Encode::CtScale { .. } => DType::BF16,
            Encode::Ggml(_) => DType::U8,
        }
    }
}

/// One output tensor.
#[derive(Clone, Debug)]
pub struct OutTensor {
    /// Name in the output format.
    pub name: String,
    /// Row-major shape in the output.
    pub shape: Vec<u64>,
    /// Encoding.
    pub encode: Encode,
    /// Sources, concatenated along the first dim (experts).
    pub pieces: Vec<Piece>,
    /// Exact encoded size in bytes.
    pub nbytes: u64,
    /// Role (for reports and policies).
    pub role: Role,
    /// Layer.
    pub layer: Option<u64>,
    /// A fallback that was applied (row length not a multiple of the type's block, ...).
    pub note: Option<String>,
    /// Encoded with importance-matrix weights (GGUF with `--imatrix`).
    pub imatrix: bool,
}

impl OutTensor {
    /// Elements per output row (the last dim).
    pub fn row_len(&self) -> u64 {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Number of elements.
    pub fn elems(&self) -> u64 {
        self.shape.iter().product()
    }
    /// The safetensors dtype the encoded bytes have.
    pub fn st_dtype(&self) -> DType {
        self.encode.st_dtype()
    }
    /// The ggml type the encoded bytes have, or [`ConvertError::NotGguf`].
    pub fn ggml_type(&self) -> Result<GgmlType, ConvertError> {
        self.encode
            .ggml_type()
            .ok_or_else(|| ConvertError::NotGguf {
                tensor: self.name.clone(),
            })
    }
}

/// Encoded byte size of `shape` under `e`; `None` when the row length does not fit the encoding.
pub fn encoded_bytes(shape: &[u64], e: &Encode) -> Option<u64> {
    let row = *shape.last()?;
    let rows: u64 = shape[..shape.len() - 1].iter().product();
    match e {
        Encode::Float(d) => rows.checked_mul(row)?.checked_mul(d.size() as u64),
        Encode::Ggml(t) => rows.checked_mul(t.row_bytes(row)?),
        // compressed-tensors shapes are the STORED shapes ([out, words] I32, [out, groups] BF16).
        Encode::CtPacked { .. } => rows.checked_mul(row)?.checked_mul(4),
        Encode::CtScale { .. } => rows.checked_mul(row)?.checked_mul(2),
        Encode::Bytes(b) => Some(b.len() as u64),
    }
}

/// Per-layer output order (GGUF and safetensors): attention, then MoE, norms where they act.
pub const LAYER_ORDER: &[Role] = &[
    Role::PreAttnNorm,
    Role::AttnQ,
    Role::AttnK,
    Role::AttnV,
    Role::AttnO,
    Role::PostAttnNorm,
    Role::PreMoeNorm,
    Role::Router,
    Role::MoeGate,
    Role::MoeUp,
    Role::MoeDown,
    Role::PostMoeNorm,
];

/// (role, layer) in output order: embedding, layers 0..n numerically, final norm.
pub fn output_order(c: &Config) -> Vec<(Role, Option<u64>)> {
    let mut v = vec![(Role::Embed, None)];
    for l in 0..c.num_layers {
        v.extend(LAYER_ORDER.iter().map(|&r| (r, Some(l))));
    }
    v.push((Role::FinalNorm, None));
    v
}

/// Plan the GGUF tensors: llama.cpp's `grok` names, experts stacked [E, out, in], norms and
/// router F32, the rest by `choose(role, layer, row_len) -> (type, note)`.
pub fn gguf_tensors(
    ck: &Checkpoint,
    choose: &dyn Fn(Role, Option<u64>, u64) -> (GgmlType, Option<String>),
) -> Vec<OutTensor> {
    let c = &ck.config;
    let mut out = Vec::new();
    for (role, layer) in output_order(c) {
        let Some(t) = ck.tensor(role, layer) else {
            continue;
        };
        let info = role.info();
        let (shape, transpose) = (info.piece_shape(c), info.transposed);
        let (pieces, shape) = if info.experts {
            let p: Vec<Piece> = (0..c.num_experts as usize)
                .map(|e| Piece {
                    tensor: t.spec.index,
                    expert: Some(e),
                    transpose,
                })
                .collect();
            (p, [vec![c.num_experts], shape].concat())
        } else {
            (
                vec![Piece {
                    tensor: t.spec.index,
                    expert: None,
                    transpose,
                }],
                shape,
            )
        };
        let row = *shape.last().unwrap_or(&1);
        let (ty, note) = if role.stays_f32() {
            (GgmlType::F32, None)
        } else {
            choose(role, layer, row)
        };
        let encode = Encode::of_ggml(ty);
        let nbytes = encoded_bytes(&shape, &encode).unwrap_or(0);
        out.push(OutTensor {
            name: fill(info.gguf, layer, None),
            shape,
            encode,
            pieces,
            nbytes,
            role,
            layer,
            note,
            imatrix: false,
        });
    }
    out
}

/// What safetensors holds for matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StDtype {
    /// Plain floats.
    Float(DType),
    /// compressed-tensors pack-quantized, symmetric, group 128, `bits` 4 or 8.
    Ct(u32),
}

/// compressed-tensors group size (W4A16 / W8A16 presets; divides every Grok-1 input width).
pub const CT_GROUP: usize = 128;

/// The compressed-tensors group size for a checkpoint. `config_groups` holds ONE group size:
/// - [`CT_GROUP`] (128) when it divides every matrix input width and every release scale block,
///   as in Grok-1 (int8 then keeps every release value and scale: lossless);
/// - otherwise the largest power of two, at least 4, dividing every width and every scale block,
///   so int8 stays lossless (xAI's tiny12, whose o_proj blocks are 12 rows: 4);
/// - `None` when there is none (the fixture's 344-wide down projection has 43-row blocks): one
///   scale per output channel (strategy "channel"), lossless only for single-block matrices.
pub fn ct_group(c: &Config) -> Option<usize> {
    let largest = |with_blocks: bool| {
        let mut g = CT_GROUP as u64;
        for info in ROLES.iter().filter(|r| r.quantized) {
            let width = info.piece_shape(c).get(1).copied().unwrap_or(0);
            let b = info.scale_blocks.max(1);
            let block = if width % b == 0 { width / b } else { width };
            let ns: &[u64] = if with_blocks {
                &[width, block]
            } else {
                &[width]
            };
            for &n in ns {
                while g > 1 && n % g != 0 {
                    g /= 2;
                }
            }
        }
        g
    };
    Some(largest(true)).filter(|&g| g >= 4).map(|g| g as usize)
}

/// Plan the safetensors tensors (experts split out, one tensor per expert).
pub fn st_tensors(
    ck: &Checkpoint,
    layout: Layout,
    dtype: StDtype,
) -> Result<Vec<OutTensor>, ConvertError> {
    let c = &ck.config;
    let ct = ct_group(c);
    let mut out = Vec::new();
    for (role, layer) in output_order(c) {
        let Some(t) = ck.tensor(role, layer) else {
            continue;
        };
        let info = role.info();
        let template = info.st_name(layout);
        let (shape, transpose) = (info.piece_shape(c), info.transposed);
        let experts: Vec<Option<usize>> = if info.experts {
            (0..c.num_experts as usize).map(Some).collect()
        } else {
            vec![None]
        };
        for e in experts {
            let name = fill(template, layer, e.map(|x| x as u64));
            let pieces = vec![Piece {
                tensor: t.spec.index,
                expert: e,
                transpose,
            }];
            let mk = |name: String, shape: Vec<u64>, encode: Encode, note: Option<String>| {
                let nbytes = encoded_bytes(&shape, &encode).unwrap_or(0);
                OutTensor {
                    name,
                    shape,
                    encode,
                    pieces: pieces.clone(),
                    nbytes,
                    role,
                    layer,
                    note,
                    imatrix: false,
                }
            };
            if role.stays_f32() {
                out.push(mk(name, shape.clone(), Encode::Float(DType::F32), None));
                continue;
            }
            match dtype {
                StDtype::Float(d) => out.push(mk(name, shape.clone(), Encode::Float(d), None)),
                StDtype::Ct(_) if role == Role::Embed => out.push(mk(
                    name,
                    shape.clone(),
                    Encode::Float(DType::BF16),
                    Some("embedding kept in BF16 (compressed-tensors ignore list)".into()),
                )),
                StDtype::Ct(bits) => {
                    let base = name.strip_suffix(".weight").unwrap_or(&name).to_string();
                    let (rows, cols) = (shape[0], shape[1]);
                    let group = ct.unwrap_or(cols as usize);
                    if group == 0 || cols % group as u64 != 0 {
                        return Err(ConvertError::GroupWidth {
                            tensor: name,
                            width: cols,
                            group,
                        });
                    }
                    out.push(mk(
                        format!("{base}.weight_packed"),
                        vec![rows, cols.div_ceil(32 / u64::from(bits))],
                        Encode::CtPacked { bits, group },
                        None,
                    ));
                    out.push(mk(
                        format!("{base}.weight_scale"),
                        vec![rows, cols / group as u64],
                        Encode::CtScale { bits, group },
                        None,
                    ));
                    let mut b = Vec::new();
                    b.extend_from_slice(&(rows as i32).to_le_bytes());
                    b.extend_from_slice(&(cols as i32).to_le_bytes());
                    out.push(mk(
                        format!("{base}.weight_shape"),
                        vec![2],
                        Encode::Bytes(b),
                        None,
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_group_is_128_for_grok1_and_divides_small_geometries() {
        assert_eq!(ct_group(&Config::grok1()), Some(128));
        // Fixture: the down projection's input width 344 is not a multiple of 32: per channel.
        assert_eq!(ct_group(&Config::tiny()), None);
        // tiny12: d = 96, q width 96, ffn 512 (o_proj blocks of 12 rows): groups of 4.
        let t12 = Config {
            emb_size: 96,
            key_size: 16,
            num_q_heads: 6,
            num_kv_heads: 2,
            ffn_size: 512,
            ..Config::tiny()
        };
        assert_eq!(ct_group(&t12), Some(4));
    }
}
