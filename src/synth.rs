//! L3: `grokit synth` writes a checkpoint in the release's exact format (same pickles, same file
//! order, same scale conventions) with deterministic pseudo-random weights, so every command
//! can be tested and benchmarked without the 318 GB download:
//!
//! - `--preset tiny` is the 2-layer fixture in `fixtures/tiny` (byte-identical on every run);
//! - `--preset grok-1 --layers N` writes real-size layers (6.5 GB each);
//! - `--sparse` writes all 770 files of the full release with real headers and sizes, payloads
//!   left as holes, so `inspect` and structural `verify` can be measured on the real file set.
//!
//! Weights: int8 from a rounded sum of uniforms (bell-shaped, never -128), bf16 scales chosen so
//! activations keep unit scale (`1 / (40 · sqrt(in))`, and exactly representable in f16 so the
//! lossless Q8_0 path is exercised), norms near 1, embedding and router N(0, 0.02)-like.

use crate::base::float::f32_to_bf16_bits;
use crate::base::DType;
use crate::io::{AtomicFile, IoError};
use crate::model::{Config, ParamSpec, ParamTable, Role};
use crate::pickle::writer::{write_array, write_quantized, ArraySpec, Payload};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Model geometry.
    pub config: Config,
    /// PRNG seed.
    pub seed: u64,
    /// Leave payloads as holes (sparse files).
    pub sparse: bool,
}

/// Errors of `synth`.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The output exists and is not empty.
    #[error("{}: already exists and is not empty (choose a new directory)", .0.display())]
    Exists(PathBuf),
}

/// A small, fast, deterministic PRNG (splitmix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal with std 1 (sum of 4 uniforms).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }
}

/// Fill `out` with bell-shaped int8 values in [-127, 127] (std about 40).
fn fill_int8(rng: &mut Rng, out: &mut [u8]) {
    for chunk in out.chunks_mut(2) {
        let r = rng.next_u64();
        // Two values from one draw: each the sum of four 8-bit uniforms, centred.
        for (k, o) in chunk.iter_mut().enumerate() {
            let b = r >> (32 * k);
            let s = (b & 0xff) + ((b >> 8) & 0xff) + ((b >> 16) & 0xff) + ((b >> 24) & 0xff);
            let v = (s as i64 - 510) * 127 / 510; // [-127, 127]
            *o = (v.clamp(-127, 127) as i8) as u8;
        }
    }
}

/// A writer that turns writes from [`ZEROS`] into holes (seeks), for sparse files.
struct HoleWriter<W: Write + Seek> {
    inner: W,
}

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

impl<W: Write + Seek> Write for HoleWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if std::ptr::eq(buf.as_ptr(), ZEROS.as_ptr()) {
            self.inner.seek(SeekFrom::Current(buf.len() as i64))?;
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn zeros(w: &mut dyn Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Per-parameter generator state derived from the seed and the parameter index, so files can be
/// written in any order (or in parallel) with identical bytes.
fn rng_for(seed: u64, spec: &ParamSpec, part: u64) -> Rng {
    Rng::new(seed.wrapping_mul(0x100_0000_01b3) ^ ((spec.index as u64) << 8) ^ part)
}

fn f32_payload(spec: &ParamSpec, seed: u64) -> impl FnMut(&mut dyn Write) -> io::Result<()> + '_ {
    move |w: &mut dyn Write| {
        let mut rng = rng_for(seed, spec, 0);
        let n: u64 = spec.shape.iter().product();
        let mut buf = Vec::with_capacity(1 << 16);
        let mut left = n;
        while left > 0 {
            let k = left.min(1 << 14);
            buf.clear();
            for _ in 0..k {
                let v = match spec.role {
                    r if r.is_norm() => 1.0 + 0.1 * rng.normal(),
                    _ => 0.02 * rng.normal() * if spec.role == Role::Embed { 50.0 } else { 1.0 },
                };
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
            left -= k;
        }
        Ok(())
    }
}

fn int8_payload(spec: &ParamSpec, seed: u64) -> impl FnMut(&mut dyn Write) -> io::Result<()> + '_ {
    move |w: &mut dyn Write| {
        let mut rng = rng_for(seed, spec, 1);
        let n: u64 = spec.shape.iter().product();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            fill_int8(&mut rng, &mut buf[..k]);
            w.write_all(&buf[..k])?;
            left -= k as u64;
        }
        Ok(())
    }
}

fn scales_payload(
    spec: &ParamSpec,
    seed: u64,
) -> impl FnMut(&mut dyn Write) -> io::Result<()> + '_ {
    move |w: &mut dyn Write| {
        let mut rng = rng_for(seed, spec, 2);
        let ss = spec.scales_shape.as_deref().unwrap_or(&[]);
        let n: u64 = ss.iter().product();
        // The input dim is dim -2 of the weight.
        let fan_in = spec
            .shape
            .get(spec.shape.len().saturating_sub(2))
            .copied()
            .unwrap_or(1) as f32;
        let base = 1.0 / (40.0 * fan_in.sqrt());
        let mut buf = Vec::with_capacity(n as usize * 2);
        for _ in 0..n {
            let v = base * (0.75 + 0.5 * rng.unit());
            buf.extend_from_slice(&f32_to_bf16_bits(v).to_le_bytes());
        }
        w.write_all(&buf)
    }
}

/// A payload writer closure.
type PayloadFn<'a> = dyn FnMut(&mut dyn Write) -> io::Result<()> + 'a;

/// Write one parameter's file to `w`.
pub fn write_param(
    w: &mut dyn Write,
    spec: &ParamSpec,
    seed: u64,
    sparse: bool,
) -> io::Result<u64> {
    let n: u64 = spec.shape.iter().product();
    match &spec.scales_shape {
        None => {
            let len = n * 4;
            let mut gen = f32_payload(spec, seed);
            let mut hole = |w: &mut dyn Write| zeros(w, len);
            let write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()> =
                if sparse { &mut hole } else { &mut gen };
            write_array(
                w,
                ArraySpec {
                    dtype: DType::F32,
                    shape: &spec.shape,
                    payload: Payload { len, write },
                },
            )
        }
        Some(ss) => {
            let sl = ss.iter().product::<u64>() * 2;
            let (mut gw, mut gs) = (int8_payload(spec, seed), scales_payload(spec, seed));
            let mut hw = |w: &mut dyn Write| zeros(w, n);
            let mut hs = |w: &mut dyn Write| zeros(w, sl);
            let (ww, sw): (&mut PayloadFn<'_>, &mut PayloadFn<'_>) = if sparse {
                (&mut hw, &mut hs)
            } else {
                (&mut gw, &mut gs)
            };
            write_quantized(
                w,
                ArraySpec {
                    dtype: DType::I8,
                    shape: &spec.shape,
                    payload: Payload { len: n, write: ww },
                },
                ArraySpec {
                    dtype: DType::BF16,
                    shape: ss,
                    payload: Payload { len: sl, write: sw },
                },
            )
        }
    }
}

/// The release-style `config.json` written beside `ckpt-0/` (the release's field names).
pub fn config_json(c: &Config) -> String {
    let v = serde_json::json!({
        "vocab_size": c.vocab_size, "emb_size": c.emb_size, "key_size": c.key_size,
        "num_q_heads": c.num_q_heads, "num_kv_heads": c.num_kv_heads, "num_layers": c.num_layers,
        "num_experts": c.num_experts, "num_selected_experts": c.num_selected_experts, "ffn_size": c.ffn_size,
        "rms_norm_eps": c.rms_norm_eps, "rope_base": c.rope_base, "attn_logit_cap": c.attn_logit_cap,
        "pad_token": c.pad_token, "eos_token": c.eos_token,
        "embedding_multiplier_scale": c.embedding_multiplier_scale,
        "output_multiplier_scale": c.output_multiplier_scale,
        "attn_output_multiplier": c.attn_output_multiplier,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// Write a whole checkpoint under `out` (`out/ckpt-0/...`, `out/config.json`). `progress` gets
/// each file's bytes as it completes. Files are written atomically; returns total bytes.
pub fn synth(
    out: &Path,
    opts: &SynthOptions,
    progress: &(dyn Fn(u64, &str) + Sync),
) -> Result<u64, SynthError> {
    let dir = out.join("ckpt-0");
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(SynthError::Exists(dir));
    }
    std::fs::create_dir_all(&dir).map_err(|e| IoError::new("create", &dir, e))?;
    let table = ParamTable::new(&opts.config);
    use rayon::prelude::*;
    let sizes: Vec<u64> = table
        .params
        .par_iter()
        .with_max_len(1)
        .map(|spec| -> Result<u64, SynthError> {
            let path = dir.join(spec.file_name());
            let n = if opts.sparse {
                let tmp = crate::io::atomic::temp_path_for(&path);
                let f = crate::io::atomic::create_temp(&tmp, 0)
                    .map_err(|e| IoError::new("create", &tmp, e))?;
                let written = (|| {
                    let mut hw = HoleWriter {
                        inner: io::BufWriter::with_capacity(1 << 16, f),
                    };
                    let n = write_param(&mut hw, spec, opts.seed, true)
                        .map_err(|e| IoError::new("write", &tmp, e))?;
                    let f = hw
                        .inner
                        .into_inner()
                        .map_err(|e| IoError::new("write", &tmp, e.into_error()))?;
                    f.set_len(n)
                        .map_err(|e| IoError::new("truncate", &tmp, e))?;
                    crate::io::output::check_replaceable(&path)?;
                    std::fs::rename(&tmp, &path).map_err(|e| IoError::new("rename", &path, e))?;
                    Ok::<u64, IoError>(n)
                })();
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp); // no half-written temporary left behind
                }
                written?
            } else {
                let mut f = AtomicFile::create(&path)?;
                let n = write_param(&mut f, spec, opts.seed, false)
                    .map_err(|e| IoError::new("write", &path, e))?;
                f.commit()?;
                n
            };
            progress(n, &spec.path);
            Ok(n)
        })
        .collect::<Result<_, _>>()?;
    crate::io::atomic::write_file(
        &out.join("config.json"),
        config_json(&opts.config).as_bytes(),
    )?;
    Ok(sizes.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn int8_never_minus_128_and_centered() {
        let mut rng = Rng::new(1);
        let mut b = vec![0u8; 100_000];
        fill_int8(&mut rng, &mut b);
        let vals: Vec<i8> = b.iter().map(|&x| x as i8).collect();
        assert!(vals.iter().all(|&v| v > -128));
        let mean: f64 = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
        assert!(mean.abs() < 1.0, "{mean}");
    }
}
