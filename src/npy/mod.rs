//! `.npy` v1.0 float32 arrays: the interchange format for logits.
//!
//! Why our own: golden logits (`logits_f32.npy`) and `--logits-out` dumps must round-trip with
//! `numpy.load`/`numpy.save` without Python. Only what grokit needs is accepted: format version
//! 1.0 (or 2.0 when reading), little-endian `<f4`, C order. The header is parsed by a small
//! bounded parser (at most [`NPY_MAX_HEADER`] bytes, [`NPY_MAX_DIMS`] dims, checked sizes), so
//! a hostile file can neither allocate from a lie nor run past its end. The writer produces the
//! exact bytes `numpy.save` produces for a float32 C-order array: the dict in the order
//! `'descr', 'fortran_order', 'shape'`, a trailing `, ` inside the braces, one-element shapes as
//! `(n,)`, and space padding so magic + header length + header (incl. the final `\n`) is a
//! multiple of 64 bytes. `.npy.zst` files (zstd-compressed npy) are read and written through the
//! `zstd` crate, chosen by the file name.
//!
//! Reading is bounded at the source (issue #18, class 10): the file is opened only if it is a
//! regular file (`io::input`), the preamble and header are read alone, and the data is read
//! only after the shape it declares was checked against the cap ([`NPY_MAX_DATA_BYTES`], or
//! the caller's own through [`read_limited`]) and, for a plain `.npy`, against the file's size.
//! A `.npy.zst` is inflated exactly as far as its header declares (one byte more proves there
//! is no excess), in 1 MiB steps, so a small file cannot inflate toward a cap it merely claims;
//! a zstd frame that declares more content than the header needs is refused before inflating.
//!
//! Writing goes through the output policy (`io::output`): a character device or FIFO
//! (`/dev/null`, `/dev/stdout` piped) is streamed into, never renamed over, and an existing
//! file is replaced only if it is itself a `.npy` (or `.npy.zst`, or empty), so a model file,
//! a shard or a `config.json` given as `--logits-out` by mistake is never overwritten.

mod read;

pub use read::{from_bytes, from_zst_bytes, read, read_limited};

use crate::io::input::open_regular;
use crate::io::output::{resolve_output, OutputError, OutputRules, OutputTarget};
use crate::io::IoError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest header accepted (numpy itself refuses headers over 10 000 bytes by default).
pub const NPY_MAX_HEADER: usize = 10_000;
/// Most dimensions accepted in a shape.
pub const NPY_MAX_DIMS: usize = 8;
/// Largest array data [`read`] accepts (4 GiB: Grok-1's logits for 8,192 positions of its
/// 131,072-token vocabulary). A caller that knows the shape it expects passes the exact size
/// to [`read_limited`] instead.
pub const NPY_MAX_DATA_BYTES: u64 = 4 << 30;
/// Most a `.npy.zst`'s declared data may exceed its compressed size by. Float data such as
/// logits compresses by well under 2x; a header declaring more than 256x the file's size is a
/// decompression bomb (zstd can encode 4 GiB of zeros in 128 KiB), refused before inflating.
pub const NPY_MAX_ZST_RATIO: u64 = 256;
/// Bytes read (and inflated) per step while reading array data.
pub(crate) const READ_STEP: usize = 1 << 20;

pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Errors reading or writing `.npy`.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Not a `.npy` file, or a structurally broken one.
    #[error("{}: not a valid .npy file at byte {offset}: {reason}", path.display())]
    Format {
        /// The file (empty when parsing bytes in memory).
        path: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A valid `.npy` of a kind grokit does not handle (dtype, order, version).
    #[error("{}: unsupported .npy: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// Data length and shape disagree.
    #[error("{}: shape {shape:?} needs {needed} data bytes, file has {present}", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// Declared shape.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        needed: u64,
        /// Bytes present.
        present: u64,
    },
    /// The declared array is larger than the reader's cap.
    #[error("{}: shape {shape:?} declares {needed} data bytes, over the cap of {cap}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Declared shape.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        needed: u64,
        /// The cap.
        cap: u64,
    },
    /// A compressed file declaring far more data than it could honestly hold.
    #[error("{}: the header declares {needed} data bytes from {compressed} compressed bytes, more than {NPY_MAX_ZST_RATIO}x: refused as a decompression bomb", path.display())]
    Inflation {
        /// The file.
        path: PathBuf,
        /// Bytes the shape needs.
        needed: u64,
        /// The file's (compressed) size.
        compressed: u64,
    },
    /// The output path was refused by the output policy.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The output exists and is not a `.npy`.
    #[error("{}: already exists and is not a .npy file; refusing to replace it (remove it or choose another name)", path.display())]
    NotAnNpy {
        /// The output path.
        path: PathBuf,
    },
    /// zstd (de)compression failed.
    #[error("{}: zstd: {source}", path.display())]
    Zstd {
        /// The file.
        path: PathBuf,
        /// The codec error.
        #[source]
        source: std::io::Error,
    },
}

/// A float32 C-order array.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyF32 {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements in C order; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

pub(crate) fn fmt_err(path: &Path, offset: u64, reason: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Build the full preamble (magic, version, header length, header) numpy writes for a
/// little-endian float32 C-order array of `shape`: format 1.0, or 2.0 (u32 length) when the
/// header would not fit in 1.0's u16, as `numpy.save` decides.
pub fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic(6) + version(2) + length(2 or 4) + dict + padding + '\n' ≡ 0 (mod 64)
    let padded = |prefix: usize| {
        let unpadded = prefix + dict.len() + 1;
        let mut h = dict.clone();
        h.extend(std::iter::repeat_n(' ', (64 - unpadded % 64) % 64));
        h.push('\n');
        h
    };
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let h = padded(10);
    match u16::try_from(h.len()) {
        Ok(n) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(h.as_bytes());
        }
        Err(_) => {
            let h = padded(12);
            out.extend_from_slice(&[2, 0]);
            // a shape string over 4 GiB cannot be built in memory in the first place
            out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(h.as_bytes());
        }
    }
    out
}

/// Serialize `arr` exactly as `numpy.save` would.
pub fn to_bytes(arr: &NpyF32) -> Vec<u8> {
    let mut out = header_bytes(&arr.shape);
    crate::base::float::extend_f32_le(&mut out, &arr.data);
    out
}

pub(crate) fn is_zst(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// Whether an existing file may be replaced by a `.npy` output: empty, or already an `.npy`
/// (or a zstd frame, for `.zst` names).
fn replaceable_as_npy(path: &Path) -> bool {
    let Ok(mut f) = open_regular(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(6);
    if (&mut f).take(6).read_to_end(&mut head).is_err() {
        return false;
    }
    head.is_empty() || head == MAGIC || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// Write `arr` to `path` under the output policy (see the module docs): atomically (temp +
/// rename) for files, streamed into character devices and FIFOs; `.zst` names are
/// zstd-compressed (level 3).
pub fn write(path: &Path, arr: &NpyF32) -> Result<(), NpyError> {
    write_with(path, arr, &OutputRules::default())
}

/// Where [`write_with`] would write `path` under `rules`, decided without writing: commands
/// call this before their long computation so a refused output fails at once. A device or
/// FIFO is streamed into; an existing regular file is replaced without `--force` only when it
/// is itself an `.npy`/`.npy.zst` (or empty).
pub fn check_output(path: &Path, rules: &OutputRules) -> Result<OutputTarget, NpyError> {
    let mut rules = rules.clone();
    rules.streams = true;
    rules.replace_without_force |= replaceable_as_npy(path);
    match resolve_output(path, &rules) {
        Err(OutputError::Exists { path }) => Err(NpyError::NotAnNpy { path }),
        r => Ok(r?),
    }
}

/// [`write`] under `rules` (the command's inputs and input directories, `--force`). An
/// existing regular file is replaced without `--force` only when it is itself an `.npy`.
pub fn write_with(path: &Path, arr: &NpyF32, rules: &OutputRules) -> Result<(), NpyError> {
    let expect = arr.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expect != Some(arr.data.len()) {
        return Err(NpyError::Size {
            path: path.into(),
            shape: arr.shape.clone(),
            needed: expect
                .and_then(|n| n.checked_mul(4))
                .map_or(u64::MAX, |n| n as u64),
            present: (arr.data.len() as u64).saturating_mul(4),
        });
    }
    let target = check_output(path, rules)?;
    let bytes = to_bytes(arr);
    let payload = if is_zst(path) {
        zstd::stream::encode_all(bytes.as_slice(), 3).map_err(|e| NpyError::Zstd {
            path: path.into(),
            source: e,
        })?
    } else {
        bytes
    };
    let mut f = target.create()?;
    f.write_all(&payload)?;
    f.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_numpy() {
        // numpy.save(np.zeros((2, 42, 512), np.float32)) header, as in tiny12's golden files.
        let h = header_bytes(&[2, 42, 512]);
        assert_eq!(h.len(), 128);
        assert_eq!(&h[..10], b"\x93NUMPY\x01\x00v\x00");
        assert!(h[10..]
            .starts_with(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 42, 512), }   "));
        assert_eq!(h[127], b'\n');
        assert!(header_bytes(&[5]).windows(6).any(|w| w == b"(5,), "));
        assert!(header_bytes(&[]).windows(4).any(|w| w == b"(), "));
        for s in [&[][..], &[1], &[3, 4], &[123456789, 2, 3, 4, 5]] {
            assert_eq!(header_bytes(s).len() % 64, 0);
        }
        let huge = header_bytes(&vec![1; 30_000]);
        assert_eq!((&huge[6..8], huge.len() % 64), (&[2u8, 0][..], 0));
    }

    #[test]
    fn roundtrip_and_hostile() {
        let a = NpyF32 {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 0.0, 3.0, 4.0, f32::MIN_POSITIVE],
        };
        let b = to_bytes(&a);
        assert_eq!(from_bytes(&b, Path::new("")).unwrap(), a);
        // truncated data, extra data, truncated header, bad magic
        assert!(matches!(
            from_bytes(&b[..b.len() - 1], Path::new("")),
            Err(NpyError::Size { .. })
        ));
        let mut more = b.clone();
        more.push(0);
        assert!(from_bytes(&more, Path::new("")).is_err());
        assert!(from_bytes(&b[..20], Path::new("")).is_err());
        assert!(from_bytes(b"\x93NUMPX\x01\x00", Path::new("")).is_err());
        // a shape whose byte size overflows must not allocate
        let mut evil = b"\x93NUMPY\x01\x00".to_vec();
        let d = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }\n";
        evil.extend_from_slice(&(d.len() as u16).to_le_bytes());
        evil.extend_from_slice(d.as_bytes());
        assert!(matches!(
            from_bytes(&evil, Path::new("")),
            Err(NpyError::Size { .. })
        ));
        // unsupported dtype / order / duplicate key
        for d in [
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': False}",
        ] {
            let mut e = b"\x93NUMPY\x01\x00".to_vec();
            e.extend_from_slice(&(d.len() as u16).to_le_bytes());
            e.extend_from_slice(d.as_bytes());
            e.extend_from_slice(&[0; 4]);
            assert!(from_bytes(&e, Path::new("")).is_err(), "{d}");
        }
    }

    #[test]
    fn file_roundtrip_plain_and_zst() {
        let dir = tempfile::tempdir().unwrap();
        let a = NpyF32 {
            shape: vec![4],
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        for name in ["a.npy", "a.npy.zst"] {
            let p = dir.path().join(name);
            write(&p, &a).unwrap();
            assert_eq!(read(&p).unwrap(), a);
        }
        let bad = NpyF32 {
            shape: vec![5],
            data: vec![0.0; 4],
        };
        assert!(write(&dir.path().join("b.npy"), &bad).is_err());
    }
}
