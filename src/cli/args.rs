//! What the commands that write model files (`convert`, `quantize`) share: their common
//! arguments, written once and flattened into both, and the parsers and value lists behind
//! them.
//!
//! Value lists are read from the tables, never written out here: `--type` lists the weight
//! types of `quant::types::GGML_TYPES` (through [`quant::is_weight_type`]) and `--preset` the
//! rows of `quant::policy::PRESETS`, so a type or preset added there is offered and accepted
//! without touching the CLI.

use crate::quant::policy::PRESETS;
use crate::quant::{self, types::GgmlTypeInfo, types::GGML_TYPES};
use anyhow::Context;
use clap::Args;

/// Arguments shared by `convert` and `quantize` (how outputs are written and reported).
#[derive(Args, Debug)]
pub struct WriteArgs {
    /// GGUF: split into files of at most this size (e.g. 50G; decimal units).
    #[arg(long)]
    pub split_max_size: Option<String>,
    /// Parallel workers (default: all cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Write outputs through the page cache instead of with direct I/O (direct I/O is the
    /// default for GGUF files and safetensors shards on Linux: it reaches the disk's speed
    /// where buffered writes are limited by the cache; also GROKIT_DIRECT_IO=0).
    #[arg(long)]
    pub buffered_io: bool,
    /// Print the per-tensor report (types, bytes, bits per weight, RMS and max error).
    #[arg(long)]
    pub report: bool,
    /// Machine-readable JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the error statistics (faster for quantized types).
    #[arg(long)]
    pub no_error_stats: bool,
    /// Print the plan (names, shapes, types, bytes) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

impl WriteArgs {
    /// `--split-max-size` in bytes.
    pub fn split_max(&self) -> anyhow::Result<Option<u64>> {
        self.split_max_size.as_deref().map(parse_size).transpose()
    }
    /// `--jobs`, or every core of rayon's pool.
    pub fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(rayon::current_num_threads).max(1)
    }
}

/// Apply `--buffered-io` (a process-wide choice of the atomic-output layer).
pub fn apply_buffered_io(buffered: bool) {
    if buffered {
        crate::io::atomic::set_direct_writes(false);
    }
}

/// `--type`'s values: every weight type of the ggml table, plain types first, each group in
/// table order.
pub fn weight_type_names() -> Vec<&'static str> {
    let weights = GGML_TYPES.iter().filter(|r| quant::is_weight_type(r.ty));
    let (plain, blocks): (Vec<&GgmlTypeInfo>, Vec<_>) = weights.partition(|r| !r.ty.is_quantized());
    plain.into_iter().chain(blocks).map(|r| r.name).collect()
}

/// `--preset`'s values, in the presets table's order.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).collect()
}

/// Parse a size in bytes: a decimal number with an optional K/M/G/T suffix (powers of 1000,
/// like huggingface_hub and gguf-split) and an optional B: `50G`, `5GB`, `0.5G`, `500M`,
/// `1000`. The arithmetic is exact (`4.1G` is 4100000000 bytes); a fraction of a byte is
/// dropped, and a size below one byte is an error rather than a zero that would fail later.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, zeros) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 3),
        Some('M') => (&t[..t.len() - 1], 6),
        Some('G') => (&t[..t.len() - 1], 9),
        Some('T') => (&t[..t.len() - 1], 12),
        _ => (t, 0),
    };
    let num = num.trim();
    if num.starts_with('-') && parse_decimal(&num[1..]).is_some() {
        anyhow::bail!("size {s:?} must be positive");
    }
    let (digits, scale) = parse_decimal(num).with_context(|| {
        format!("size {s:?}: expected a number with an optional K/M/G/T suffix")
    })?;
    anyhow::ensure!(digits > 0, "size {s:?} must be positive");
    let exp = zeros - scale;
    let bytes = if exp >= 0 {
        10u128
            .checked_pow(exp as u32)
            .and_then(|p| digits.checked_mul(p))
    } else {
        10u128.checked_pow(exp.unsigned_abs()).map(|p| digits / p)
    };
    let bytes = bytes
        .and_then(|b| u64::try_from(b).ok())
        .with_context(|| format!("size {s:?} is too large"))?;
    anyhow::ensure!(bytes > 0, "size {s:?} is less than one byte");
    Ok(bytes)
}

/// `123.45` as (12345, 2): the digits as an integer and how many of them follow the point.
/// `None` unless the text is digits with at most one point (and at most 30 digits).
fn parse_decimal(t: &str) -> Option<(u128, i32)> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let all = || int.chars().chain(frac.chars());
    let n = all().count();
    if n == 0 || n > 30 || !all().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = all().fold(0u128, |v, c| v * 10 + u128::from(c as u8 - b'0'));
    Some((digits, frac.len() as i32))
}

/// Parse `--shard K/N` (0-based K of N workers).
pub fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("--shard takes K/N, e.g. 0/3")?;
    let (k, n): (usize, usize) = (k.trim().parse()?, n.trim().parse()?);
    anyhow::ensure!(n >= 1 && k < n, "--shard {s}: K must be in 0..N");
    Ok((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, want) in [
            ("1000", 1000),
            ("50G", 50_000_000_000),
            ("5GB", 5_000_000_000),
            ("5gb", 5_000_000_000),
            (" 500 M ", 500_000_000),
            ("0.5G", 500_000_000),
            ("0.3M", 300_000),
            ("4.1G", 4_100_000_000),
            ("1.5", 1),
            ("2T", 2_000_000_000_000),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn bad_sizes_say_why() {
        let err = |s: &str| parse_size(s).unwrap_err().to_string();
        // The bug of issue #17: "0.5" was 0 bytes.
        assert_eq!(err("0.5"), "size \"0.5\" is less than one byte");
        assert_eq!(err("0.0004K"), "size \"0.0004K\" is less than one byte");
        assert_eq!(err("0"), "size \"0\" must be positive");
        assert_eq!(err("-5G"), "size \"-5G\" must be positive");
        assert_eq!(
            err("abc"),
            "size \"abc\": expected a number with an optional K/M/G/T suffix"
        );
        for s in ["", "G", "1.2.3", "1e9", "5Q", "inf", "NaN", ".", "1,5G"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert_eq!(err("99999999999T"), "size \"99999999999T\" is too large");
    }

    #[test]
    fn shards() {
        assert_eq!(parse_shard("1/3").unwrap(), (1, 3));
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("x").is_err());
    }

    #[test]
    fn value_lists_come_from_the_tables() {
        let types = weight_type_names();
        // q2_k and q3_k were missing from the hand-written list.
        for t in [
            "f32", "f16", "bf16", "q8_0", "q4_0", "q2_k", "q3_k", "q4_k", "q6_k",
        ] {
            assert!(types.contains(&t), "{t} not in {types:?}");
        }
        // Activation-only formats are not weight types.
        assert!(!types.contains(&"q8_1") && !types.contains(&"q8_k"));
        assert_eq!(&types[..3], ["f32", "f16", "bf16"]);
        let presets = preset_names();
        for p in ["q8_0", "q4_k_m", "q5_k_m", "q6_k", "f32", "bf16"] {
            assert!(presets.contains(&p), "{p} not in {presets:?}");
        }
        // Every listed name parses back.
        for p in presets {
            assert!(crate::quant::policy::Policy::parse(p).is_ok(), "{p}");
        }
    }
}
