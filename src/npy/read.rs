//! Reading `.npy` and `.npy.zst`: the preamble and header alone first, then exactly the data
//! the header declares, after every bound was checked (see the module docs of `npy`).

use super::{
    fmt_err, is_zst, NpyError, NpyF32, MAGIC, NPY_MAX_DATA_BYTES, NPY_MAX_DIMS, NPY_MAX_HEADER,
    NPY_MAX_ZST_RATIO, READ_STEP,
};
use crate::io::input::open_regular;
use crate::io::term::escape;
use crate::io::IoError;
use std::io::Read;
use std::path::Path;

/// Parse `.npy` bytes (`path` is used only in error messages).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<NpyF32, NpyError> {
    let mut r = bytes;
    read_from(&mut r, path, Some(bytes.len() as u64), u64::MAX, None)
}

/// What is known about a `.npy.zst` before inflating it.
#[derive(Clone, Copy)]
struct Zst {
    /// The file's size.
    compressed: u64,
    /// What the first zstd frame header says it inflates to, when recorded.
    frame_size: Option<u64>,
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
/// nothing more. For a `.npy.zst`, `zst` bounds the declared size by the compressed size
/// ([`NPY_MAX_ZST_RATIO`]) and by what the zstd frame header declares.
fn read_from(
    r: &mut impl Read,
    path: &Path,
    total: Option<u64>,
    cap: u64,
    zst: Option<Zst>,
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
    if let Some(z) = zst {
        if needed > z.compressed.saturating_mul(NPY_MAX_ZST_RATIO) {
            return Err(NpyError::Inflation {
                path: path.into(),
                needed,
                compressed: z.compressed,
            });
        }
    }
    if let Some(fs) = zst.and_then(|z| z.frame_size) {
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
            format!("data continues past the {needed} bytes shape {shape:?} declares"),
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
    if is_zst(path) {
        read_zst(f, len, path, max_data_bytes)
    } else {
        read_from(&mut f, path, Some(len), max_data_bytes, None)
    }
}

/// Parse a `.npy.zst` held in memory (`path` is used only in error messages), with the same
/// bounds as [`read`]: the compressed size bounds what the header may declare, and exactly the
/// declared bytes are inflated.
pub fn from_zst_bytes(compressed: &[u8], path: &Path) -> Result<NpyF32, NpyError> {
    read_zst(
        compressed,
        compressed.len() as u64,
        path,
        NPY_MAX_DATA_BYTES,
    )
}

/// Inflate and parse a `.npy.zst` of `len` compressed bytes from `r`.
fn read_zst(mut r: impl Read, len: u64, path: &Path, cap: u64) -> Result<NpyF32, NpyError> {
    let zerr = |e| NpyError::Zstd {
        path: path.into(),
        source: e,
    };
    // The frame header (at most 18 bytes) says how much the first frame inflates to, when the
    // producer recorded it.
    let mut head = Vec::with_capacity(18);
    (&mut r)
        .take(18)
        .read_to_end(&mut head)
        .map_err(|e| read_error(path, e))?;
    let frame_size = zstd::zstd_safe::get_frame_content_size(&head)
        .ok()
        .flatten();
    let mut dec =
        zstd::stream::read::Decoder::new(std::io::Cursor::new(head).chain(r)).map_err(zerr)?;
    let zst = Zst {
        compressed: len,
        frame_size,
    };
    read_from(&mut dec, path, None, cap, Some(zst)).map_err(|e| match e {
        // A decoder failure arrives as a read error: report it as zstd's.
        NpyError::Io(IoError {
            op: "read", source, ..
        }) => zerr(source),
        e => e,
    })
}
