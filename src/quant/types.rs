//! The ggml tensor-type table (ggml.h `enum ggml_type`, ggml-common.h block structs), written
//! once. Sizes are layout arithmetic: e.g. Q4_K = 2 f16 + 12 scale bytes + 256/2 nibbles; the
//! i-quant layouts are in docs/formats/iquants.md. Only ids <= 30 are listed: older llama.cpp
//! builds reject newer ids (docs/formats/gguf-output.md). The i-quants have ids 16–23 and 29.

use std::fmt;

/// A ggml tensor type grokit reads or writes.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct GgmlTypeInfo {
    /// The type.
    pub ty: GgmlType,
    /// ggml type id as stored in GGUF tensor infos.
    pub id: u32,
    /// Lower-case name (`q4_k`), as used on grokit's command line.
    pub name: &'static str,
    /// Elements per block (1 for plain types).
    pub block_elems: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

const F16B: u64 = 2;
const QK: u64 = 32; // legacy block
const QKK: u64 = 256; // K-quant super-block

/// The table (ggml.h ids; ggml-common.h block layouts).
pub const GGML_TYPES: &[GgmlTypeInfo] = &[
    GgmlTypeInfo {
        ty: GgmlType::F32,
        id: 0,
        name: "f32",
        block_elems: 1,
        block_bytes: 4,
    },
    GgmlTypeInfo {
        ty: GgmlType::F16,
        id: 1,
        name: "f16",
        block_elems: 1,
        block_bytes: 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q4_0,
        id: 2,
        name: "q4_0",
        block_elems: QK,
        block_bytes: F16B + QK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q4_1,
        id: 3,
        name: "q4_1",
        block_elems: QK,
        block_bytes: 2 * F16B + QK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q5_0,
        id: 6,
        name: "q5_0",
        block_elems: QK,
        block_bytes: F16B + 4 + QK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q5_1,
        id: 7,
        name: "q5_1",
        block_elems: QK,
        block_bytes: 2 * F16B + 4 + QK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q8_0,
        id: 8,
        name: "q8_0",
        block_elems: QK,
        block_bytes: F16B + QK,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q8_1,
        id: 9,
        name: "q8_1",
        block_elems: QK,
        block_bytes: 2 * F16B + QK,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q2_K,
        id: 10,
        name: "q2_k",
        block_elems: QKK,
        block_bytes: QKK / 16 + QKK / 4 + 2 * F16B,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q3_K,
        id: 11,
        name: "q3_k",
        block_elems: QKK,
        block_bytes: QKK / 8 + QKK / 4 + 12 + F16B,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q4_K,
        id: 12,
        name: "q4_k",
        block_elems: QKK,
        block_bytes: 2 * F16B + 12 + QKK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q5_K,
        id: 13,
        name: "q5_k",
        block_elems: QKK,
        block_bytes: 2 * F16B + 12 + QKK / 8 + QKK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q6_K,
        id: 14,
        name: "q6_k",
        block_elems: QKK,
        block_bytes: QKK / 2 + QKK / 4 + QKK / 16 + F16B,
    },
    GgmlTypeInfo {
        ty: GgmlType::Q8_K,
        id: 15,
        name: "q8_k",
        block_elems: QKK,
        block_bytes: 4 + QKK + QKK / 16 * 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ2_XXS,
        id: 16,
        name: "iq2_xxs",
        block_elems: QKK,
        block_bytes: F16B + QKK / 4,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ2_XS,
        id: 17,
        name: "iq2_xs",
        block_elems: QKK,
        block_bytes: F16B + QKK / 4 + QKK / 32,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ3_XXS,
        id: 18,
        name: "iq3_xxs",
        block_elems: QKK,
        block_bytes: F16B + 3 * QKK / 8,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ1_S,
        id: 19,
        name: "iq1_s",
        block_elems: QKK,
        block_bytes: F16B + QKK / 8 + QKK / 16,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ4_NL,
        id: 20,
        name: "iq4_nl",
        block_elems: QK,
        block_bytes: F16B + QK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ3_S,
        id: 21,
        name: "iq3_s",
        block_elems: QKK,
        block_bytes: F16B + QKK / 4 + QKK / 32 + QKK / 8 + QKK / 64,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ2_S,
        id: 22,
        name: "iq2_s",
        block_elems: QKK,
        block_bytes: F16B + QKK / 4 + QKK / 32 + QKK / 32,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ4_XS,
        id: 23,
        name: "iq4_xs",
        block_elems: QKK,
        block_bytes: F16B + 2 + QKK / 64 + QKK / 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::I8,
        id: 24,
        name: "i8",
        block_elems: 1,
        block_bytes: 1,
    },
    GgmlTypeInfo {
        ty: GgmlType::I16,
        id: 25,
        name: "i16",
        block_elems: 1,
        block_bytes: 2,
    },
    GgmlTypeInfo {
        ty: GgmlType::I32,
        id: 26,
        name: "i32",
        block_elems: 1,
        block_bytes: 4,
    },
    GgmlTypeInfo {
        ty: GgmlType::I64,
        id: 27,
        name: "i64",
        block_elems: 1,
        block_bytes: 8,
    },
    GgmlTypeInfo {
        ty: GgmlType::F64,
        id: 28,
        name: "f64",
        block_elems: 1,
        block_bytes: 8,
    },
    GgmlTypeInfo {
        ty: GgmlType::IQ1_M,
        id: 29,
        name: "iq1_m",
        block_elems: QKK,
        block_bytes: QKK / 8 + QKK / 16 + QKK / 32,
    },
    GgmlTypeInfo {
        ty: GgmlType::BF16,
        id: 30,
        name: "bf16",
        block_elems: 1,
        block_bytes: 2,
    },
];

impl GgmlType {
    /// This type's row.
    pub fn info(self) -> &'static GgmlTypeInfo {
        GGML_TYPES
            .iter()
            .find(|r| r.ty == self)
            .unwrap_or(&GGML_TYPES[0])
    }
    /// ggml id.
    pub fn id(self) -> u32 {
        self.info().id
    }
    /// Name.
    pub fn name(self) -> &'static str {
        self.info().name
    }
    /// Elements per block.
    pub fn block_elems(self) -> u64 {
        self.info().block_elems
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.info().block_bytes
    }
    /// True for block-quantized types (block of more than one element).
    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }
    /// Look up by ggml id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GGML_TYPES.iter().find(|r| r.id == id).map(|r| r.ty)
    }
    /// Look up by name (case-insensitive).
    pub fn from_name(s: &str) -> Option<GgmlType> {
        GGML_TYPES
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(s))
            .map(|r| r.ty)
    }
    /// Bytes for `n` elements of one row: `None` if `n` is not a multiple of the block or the
    /// size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let be = self.block_elems();
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(self.block_bytes())
    }
    /// Bytes of a tensor with ggml dims `ne` (`ne[0]` fastest): `None` if `ne[0]` is not a multiple
    /// of the block or the size overflows.
    pub fn tensor_bytes(self, ne: &[u64]) -> Option<u64> {
        let first = ne.first().copied().unwrap_or(1);
        let row = self.row_bytes(first)?;
        ne.iter().skip(1).try_fold(row, |a, &d| a.checked_mul(d))
    }
    /// Bits per weight.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_elems() as f64
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes_match_ggml_common() {
        let expect = [
            (GgmlType::Q4_0, 18),
            (GgmlType::Q4_1, 20),
            (GgmlType::Q5_0, 22),
            (GgmlType::Q5_1, 24),
            (GgmlType::Q8_0, 34),
            (GgmlType::Q8_1, 36),
            (GgmlType::Q2_K, 84),
            (GgmlType::Q3_K, 110),
            (GgmlType::Q4_K, 144),
            (GgmlType::Q5_K, 176),
            (GgmlType::Q6_K, 210),
            (GgmlType::Q8_K, 292),
            (GgmlType::IQ2_XXS, 66),
            (GgmlType::IQ2_XS, 74),
            (GgmlType::IQ3_XXS, 98),
            (GgmlType::IQ1_S, 50),
            (GgmlType::IQ4_NL, 18),
            (GgmlType::IQ3_S, 110),
            (GgmlType::IQ2_S, 82),
            (GgmlType::IQ4_XS, 136),
            (GgmlType::IQ1_M, 56),
        ];
        for (t, b) in expect {
            assert_eq!(t.block_bytes(), b, "{t}");
        }
        for r in GGML_TYPES {
            assert_eq!(GgmlType::from_id(r.id), Some(r.ty));
            assert_eq!(GgmlType::from_name(r.name), Some(r.ty));
        }
        assert_eq!(GgmlType::Q8_0.tensor_bytes(&[64, 3]), Some(2 * 34 * 3));
        assert_eq!(GgmlType::Q8_0.tensor_bytes(&[33]), None);
    }
}
