//! llama.cpp's file types (llama.h `enum llama_ftype`) with llama-quantize's names, written once:
//! the number `general.file_type` holds, the preset name a user types, and the default tensor
//! type the preset starts from (llama-quant.cpp `llama_ftype_get_default_type`). Presets
//! ([`Preset`]), `general.file_type` of ad-hoc policies ([`GgmlType::mostly_ftype`]) and the
//! CLI's list of preset names (`policy::PRESETS`) all read this table.

use super::GgmlType;

/// A llama-quantize file type ("preset"): a default tensor type plus per-tensor rules.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ1_S,
    IQ1_M,
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ2_M,
    IQ3_XXS,
    IQ3_XS,
    IQ3_S,
    IQ3_M,
    IQ4_NL,
    IQ4_XS,
}

/// One row of [`LLAMA_FTYPES`].
#[derive(Clone, Copy, Debug)]
pub struct FtypeInfo {
    /// The preset.
    pub preset: Preset,
    /// llama-quantize's name, lower-cased (names are case-insensitive, as in llama-quantize).
    pub name: &'static str,
    /// Another name llama-quantize accepts for it (`Q4_K` = `Q4_K_M`), if any.
    pub alias: Option<&'static str>,
    /// `llama_ftype` (`general.file_type`).
    pub ftype: u32,
    /// The tensor type the preset's rules start from.
    pub default_type: GgmlType,
    /// This is the ftype of a file whose large tensors are "mostly" `default_type`.
    pub mostly: bool,
}

const fn row(
    preset: Preset,
    name: &'static str,
    alias: Option<&'static str>,
    ftype: u32,
    default_type: GgmlType,
    mostly: bool,
) -> FtypeInfo {
    FtypeInfo {
        preset,
        name,
        alias,
        ftype,
        default_type,
        mostly,
    }
}

/// The table (llama.h numbers; llama-quantize's `QUANT_OPTIONS` names).
pub const LLAMA_FTYPES: &[FtypeInfo] = {
    use GgmlType as G;
    use Preset as P;
    &[
        row(P::F32, "f32", None, 0, G::F32, true),
        row(P::F16, "f16", None, 1, G::F16, true),
        row(P::Q4_0, "q4_0", None, 2, G::Q4_0, true),
        row(P::Q4_1, "q4_1", None, 3, G::Q4_1, true),
        row(P::Q8_0, "q8_0", None, 7, G::Q8_0, true),
        row(P::Q5_0, "q5_0", None, 8, G::Q5_0, true),
        row(P::Q5_1, "q5_1", None, 9, G::Q5_1, true),
        row(P::Q2_K, "q2_k", None, 10, G::Q2_K, true),
        row(P::Q3_K_S, "q3_k_s", None, 11, G::Q3_K, false),
        row(P::Q3_K_M, "q3_k_m", Some("q3_k"), 12, G::Q3_K, true),
        row(P::Q3_K_L, "q3_k_l", None, 13, G::Q3_K, false),
        row(P::Q4_K_S, "q4_k_s", None, 14, G::Q4_K, false),
        row(P::Q4_K_M, "q4_k_m", Some("q4_k"), 15, G::Q4_K, true),
        row(P::Q5_K_S, "q5_k_s", None, 16, G::Q5_K, false),
        row(P::Q5_K_M, "q5_k_m", Some("q5_k"), 17, G::Q5_K, true),
        row(P::Q6_K, "q6_k", None, 18, G::Q6_K, true),
        row(P::IQ2_XXS, "iq2_xxs", None, 19, G::IQ2_XXS, true),
        row(P::IQ2_XS, "iq2_xs", None, 20, G::IQ2_XS, true),
        row(P::Q2_K_S, "q2_k_s", None, 21, G::Q2_K, false),
        row(P::IQ3_XS, "iq3_xs", None, 22, G::IQ3_S, false),
        row(P::IQ3_XXS, "iq3_xxs", None, 23, G::IQ3_XXS, true),
        row(P::IQ1_S, "iq1_s", None, 24, G::IQ1_S, true),
        row(P::IQ4_NL, "iq4_nl", None, 25, G::IQ4_NL, true),
        row(P::IQ3_S, "iq3_s", None, 26, G::IQ3_S, true),
        row(P::IQ3_M, "iq3_m", None, 27, G::IQ3_S, false),
        row(P::IQ2_S, "iq2_s", None, 28, G::IQ2_XS, false),
        row(P::IQ2_M, "iq2_m", None, 29, G::IQ2_S, true),
        row(P::IQ4_XS, "iq4_xs", None, 30, G::IQ4_XS, true),
        row(P::IQ1_M, "iq1_m", None, 31, G::IQ1_M, true),
        row(P::BF16, "bf16", None, 32, G::BF16, true),
    ]
};

impl Preset {
    /// This preset's row.
    pub fn info(self) -> &'static FtypeInfo {
        LLAMA_FTYPES
            .iter()
            .find(|r| r.preset == self)
            .unwrap_or(&LLAMA_FTYPES[0])
    }
    /// Look up by llama-quantize name or alias (case-insensitive).
    pub fn from_name(s: &str) -> Option<Preset> {
        LLAMA_FTYPES
            .iter()
            .find(|r| {
                r.name.eq_ignore_ascii_case(s) || r.alias.is_some_and(|a| a.eq_ignore_ascii_case(s))
            })
            .map(|r| r.preset)
    }
    /// llama-quantize's name.
    pub fn name(self) -> &'static str {
        self.info().name
    }
    /// `llama_ftype` number.
    pub fn ftype(self) -> u32 {
        self.info().ftype
    }
    /// The preset's default tensor type (llama-quantize `default_type`).
    pub fn default_type(self) -> GgmlType {
        self.info().default_type
    }
    /// True when grokit implements every tensor type the preset can choose.
    pub fn is_supported(self) -> bool {
        super::is_supported(self.default_type())
    }
}

impl GgmlType {
    /// The llama_ftype (`general.file_type`) of a file whose large tensors are mostly this type
    /// (the table row marked `mostly`; the BF16 ftype for types no file is named after).
    pub fn mostly_ftype(self) -> u32 {
        LLAMA_FTYPES
            .iter()
            .find(|r| r.mostly && r.default_type == self)
            .map_or(Preset::BF16.ftype(), |r| r.ftype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, r) in LLAMA_FTYPES.iter().enumerate() {
            assert_eq!(Preset::from_name(r.name), Some(r.preset));
            assert_eq!(r.preset.ftype(), r.ftype);
            // one row per preset and per ftype number; at most one "mostly" row per type
            for o in &LLAMA_FTYPES[i + 1..] {
                assert_ne!(o.preset, r.preset);
                assert_ne!(o.ftype, r.ftype);
                assert!(!(o.mostly && r.mostly && o.default_type == r.default_type));
            }
        }
        assert_eq!(Preset::from_name("q4_k"), Some(Preset::Q4_K_M));
        assert_eq!(GgmlType::Q4_K.mostly_ftype(), 15);
        assert_eq!(GgmlType::Q3_K.mostly_ftype(), 12);
        assert_eq!(GgmlType::IQ4_XS.mostly_ftype(), 30);
        assert_eq!(GgmlType::IQ2_S.mostly_ftype(), 29);
        assert_eq!(GgmlType::BF16.mostly_ftype(), 32);
        assert_eq!(GgmlType::Q8_K.mostly_ftype(), 32);
    }
}
