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

use crate::io::input::open_regular;
use crate::io::output::{resolve_output, OutputError, OutputRules};
use crate::io::term::escape;
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
/// Bytes read (and inflated) per step while reading array data.
const READ_STEP: usize = 1 << 20;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

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

fn fmt_err(path: &Path, offset: u64, reason: impl Into<String>) -> NpyError {
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

/// Parse `.npy` bytes (`path` is used only in error messages).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<NpyF32, NpyError> {
    let mut r = bytes;
    read_from(&mut r, path, Some(bytes.len() as u64), u64::MAX, None)
}

/// The preamble of an `.npy`: its length in bytes and the header fields.
struct Preamble {
    len: u64,
    header: Header,
}

/// Map a short read of the preamble to a format error at `offset`.
fn short(path: &Path, offset: u64, what: &str) -> impl FnOnce(std::io::Error) -> NpyError {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            fmt_err(&path, offset, what)
        } else {
            NpyError::Io(IoError::new("read", path, e))
        }
    }
}

/// Read and check the magic, version, header length and header (at most
/// [`NPY_MAX_HEADER`] bytes, read alone).
fn read_preamble(r: &mut impl Read, path: &Path) -> Result<Preamble, NpyError> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head[..6])
        .map_err(short(path, 0, "shorter than the magic"))?;
    if &head[..6] != MAGIC {
        return Err(fmt_err(path, 0, "bad magic (expected \\x93NUMPY)"));
    }
    r.read_exact(&mut head[6..8])
        .map_err(short(path, 6, "truncated version"))?;
    let (hlen, len_bytes) = match [head[6], head[7]] {
        [1, 0] => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(short(path, 8, "truncated header length"))?;
            (u64::from(u16::from_le_bytes(b)), 2)
        }
        [2, 0] => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(short(path, 8, "truncated header length"))?;
            (u64::from(u32::from_le_bytes(b)), 4)
        }
        v => {
            return Err(NpyError::Unsupported {
                path: path.into(),
                reason: format!("format version {}.{}", v[0], v[1]),
            })
        }
    };
    let hoff = 8 + len_bytes;
    if hlen > NPY_MAX_HEADER as u64 {
        return Err(fmt_err(
            path,
            8,
            format!("header of {hlen} bytes exceeds cap {NPY_MAX_HEADER}"),
        ));
    }
    let mut header = vec![0u8; hlen as usize];
    r.read_exact(&mut header)
        .map_err(short(path, hoff, "truncated header"))?;
    let header = std::str::from_utf8(&header)
        .map_err(|_| fmt_err(path, hoff, "header is not ASCII/UTF-8"))?;
    let h = parse_header(header).map_err(|r| fmt_err(path, hoff, escape(&r)))?;
    if h.descr != "<f4" {
        return Err(NpyError::Unsupported {
            path: path.into(),
            reason: format!("dtype \"{}\" (only '<f4')", escape(&h.descr)),
        });
    }
    if h.fortran {
        return Err(NpyError::Unsupported {
            path: path.into(),
            reason: "fortran_order True".into(),
        });
    }
    Ok(Preamble {
        len: hoff + hlen,
        header: h,
    })
}

/// Read a whole `.npy` from `r`. `total` is the stream's length when known (a plain file, a
/// slice): the data must fill it exactly, checked before anything is allocated. Otherwise
/// (a decompressor) exactly the declared bytes are read, in steps, plus one to prove there is
/// nothing more. `frame_size` is what a zstd frame header declares (refused when larger than
/// the preamble plus the data).
fn read_from(
    r: &mut impl Read,
    path: &Path,
    total: Option<u64>,
    cap: u64,
    frame_size: Option<u64>,
) -> Result<NpyF32, NpyError> {
    let p = read_preamble(r, path)?;
    let shape = p.header.shape;
    let needed = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .and_then(|n| n.checked_mul(4))
        .unwrap_or(u64::MAX);
    if let Some(total) = total {
        let present = total.saturating_sub(p.len);
        if needed != present {
            return Err(NpyError::Size {
                path: path.into(),
                shape,
                needed,
                present,
            });
        }
    }
    if needed > cap {
        return Err(NpyError::TooLarge {
            path: path.into(),
            shape,
            needed,
            cap,
        });
    }
    if let Some(fs) = frame_size {
        if fs > p.len.saturating_add(needed) {
            return Err(fmt_err(
                path,
                0,
                format!(
                    "the zstd frame declares {fs} bytes but the .npy header needs {}",
                    p.len.saturating_add(needed)
                ),
            ));
        }
    }
    // Known-length sources were checked against the file: reserve once. A decompressor's
    // output grows with what actually arrives.
    let n = usize::try_from(needed / 4).unwrap_or(usize::MAX);
    let mut data: Vec<f32> = Vec::new();
    if total.is_some() {
        data.reserve_exact(n);
    }
    let mut buf = vec![0u8; READ_STEP.min(needed as usize)];
    let mut got = 0u64;
    while got < needed {
        let k = (needed - got).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..k];
        if let Err(e) = r.read_exact(chunk) {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                NpyError::Size {
                    path: path.into(),
                    shape,
                    needed,
                    present: got,
                }
            } else {
                read_error(path, e)
            });
        }
        let start = data.len();
        data.resize(start + k / 4, 0.0);
        crate::base::float::decode_f32_le(chunk, &mut data[start..]);
        got += k as u64;
    }
    let mut one = [0u8; 1];
    if r.read(&mut one).map_err(|e| read_error(path, e))? != 0 {
        return Err(fmt_err(
            path,
            p.len.saturating_add(needed),
            format!(
                "data continues past the {needed} bytes shape {shape:?} declares"
            ),
        ));
    }
    Ok(NpyF32 { shape, data })
}

fn read_error(path: &Path, e: std::io::Error) -> NpyError {
    NpyError::Io(IoError::new("read", path, e))
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// Parse numpy's header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
/// plus space/newline padding. Keys may come in any order; each must appear exactly once.
fn parse_header(h: &str) -> Result<Header, String> {
    let s = h.trim_end_matches([' ', '\n', '\0']).trim();
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or("header is not a {...} dict")?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or("expected a quoted key")?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or("expected ':' after key")?
            .trim_start();
        let after = match key {
            "descr" => {
                let (v, a) = quoted(after).ok_or("descr is not a string")?;
                set_once(&mut descr, v.to_string(), key)?;
                a
            }
            "fortran_order" => {
                let (v, a) = if let Some(a) = after.strip_prefix("False") {
                    (false, a)
                } else if let Some(a) = after.strip_prefix("True") {
                    (true, a)
                } else {
                    return Err("fortran_order is not True/False".into());
                };
                set_once(&mut fortran, v, key)?;
                a
            }
            "shape" => {
                let (v, a) = parse_shape(after)?;
                set_once(&mut shape, v, key)?;
                a
            }
            other => return Err(format!("unexpected key {other:?}")),
        };
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(a) => a.trim_start(),
            None if after.is_empty() => after,
            None => return Err("expected ',' between entries".into()),
        };
    }
    Ok(Header {
        descr: descr.ok_or("missing 'descr'")?,
        fortran: fortran.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

fn set_once<T>(slot: &mut Option<T>, v: T, key: &str) -> Result<(), String> {
    if slot.replace(v).is_some() {
        return Err(format!("duplicate key {key:?}"));
    }
    Ok(())
}

/// A `'...'` or `"..."` string without escapes; returns (content, rest).
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(q)?;
    Some((&body[..end], &body[end + 1..]))
}

/// `(d0, d1, ...)` with an optional trailing comma; returns (dims, rest).
fn parse_shape(s: &str) -> Result<(Vec<usize>, &str), String> {
    let body = s.strip_prefix('(').ok_or("shape is not a tuple")?;
    let end = body.find(')').ok_or("unterminated shape tuple")?;
    let mut dims = Vec::new();
    for part in body[..end].split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        if dims.len() == NPY_MAX_DIMS {
            return Err(format!("more than {NPY_MAX_DIMS} dims"));
        }
        dims.push(p.parse::<usize>().map_err(|_| format!("bad dim {p:?}"))?);
    }
    Ok((dims, &body[end + 1..]))
}

fn is_zst(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// Read a `.npy` (or, by name, `.npy.zst`) float32 array of at most [`NPY_MAX_DATA_BYTES`].
pub fn read(path: &Path) -> Result<NpyF32, NpyError> {
    read_limited(path, NPY_MAX_DATA_BYTES)
}

/// [`read`] with the caller's cap on the array's data bytes (the exact size, when the caller
/// knows the shape it expects): a header declaring more is refused before any data is read.
pub fn read_limited(path: &Path, max_data_bytes: u64) -> Result<NpyF32, NpyError> {
    let f = open_regular(path)?;
    let len = f
        .metadata()
        .map_err(|e| IoError::new("stat", path, e))?
        .len();
    let mut f = std::io::BufReader::new(f);
    if !is_zst(path) {
        return read_from(&mut f, path, Some(len), max_data_bytes, None);
    }
    let zerr = |e| NpyError::Zstd {
        path: path.into(),
        source: e,
    };
    // The frame header (at most 18 bytes) says how much the first frame inflates to, when the
    // producer recorded it.
    let mut head = Vec::with_capacity(18);
    (&mut f)
        .take(18)
        .read_to_end(&mut head)
        .map_err(|e| read_error(path, e))?;
    let frame_size = zstd::zstd_safe::get_frame_content_size(&head)
        .ok()
        .flatten();
    let mut dec = zstd::stream::read::Decoder::new(std::io::Cursor::new(head).chain(f))
        .map_err(zerr)?;
    read_from(&mut dec, path, None, max_data_bytes, frame_size).map_err(|e| match e {
        // A decoder failure arrives as a read error: report it as zstd's.
        NpyError::Io(IoError { op: "read", source, .. }) => zerr(source),
        e => e,
    })
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
    let mut rules = rules.clone();
    rules.streams = true;
    rules.replace_without_force |= replaceable_as_npy(path);
    let target = match resolve_output(path, &rules) {
        Err(OutputError::Exists { path }) => return Err(NpyError::NotAnNpy { path }),
        r => r?,
    };
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
