//! A pickle writer that emits, byte for byte, what CPython's C pickler (protocol 4) writes for
//! the release's two object shapes: a numpy array and `__main__.QuantizedWeight8bit`.
//!
//! It mirrors the C pickler's rules (Modules/_pickle.c): PROTO unframed; FRAME opened lazily on
//! the first write and committed at an opcode boundary once it reaches 64 KiB
//! (`FRAME_SIZE_TARGET`); a frame under 4 bytes (`FRAME_SIZE_MIN`) is written without a FRAME
//! header; a bytes payload of 64 KiB or more is written OUTSIDE any frame after committing the
//! current one; every str/bytes/tuple/global/reduce result is memoized (MEMOIZE), and a repeat of
//! the same object is a BINGET. Object identity follows CPython: the ndarray/dtype globals, the
//! `"numpy"` module string, one-character strings and numpy's cached `b"b"` are shared; shape
//! tuples, descriptor strings and payloads are fresh objects.
//! Tested by re-emitting every file of xAI's tiny12 checkpoint and comparing bytes.

use super::opcode::Op;
use crate::base::DType;
use std::collections::HashMap;
use std::io::{self, Write};

const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;

/// Where an array's payload comes from: a closure that writes exactly `len` bytes.
pub struct Payload<'a> {
    /// Byte length.
    pub len: u64,
    /// Writes the bytes.
    pub write: &'a mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
}

/// One array to pickle.
pub struct ArraySpec<'a> {
    /// Element type (f32, i8 or bf16 in the release).
    pub dtype: DType,
    /// Shape (row-major).
    pub shape: &'a [u64],
    /// The payload.
    pub payload: Payload<'a>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Str(String),
    Global(&'static str, &'static str),
    SharedBytes(&'static [u8]),
}

/// The emitter. Use [`write_array`] / [`write_quantized`] rather than driving it directly.
struct Emitter<W: Write> {
    out: W,
    frame: Option<Vec<u8>>,
    memo: HashMap<Key, u32>,
    next_memo: u32,
    written: u64,
}

impl<W: Write> Emitter<W> {
    fn new(out: W) -> Self {
        Emitter {
            out,
            frame: None,
            memo: HashMap::new(),
            next_memo: 0,
            written: 0,
        }
    }
    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }
    fn emit(&mut self, b: &[u8]) {
        self.frame.get_or_insert_with(Vec::new).extend_from_slice(b);
    }
    fn op(&mut self, op: Op) {
        self.emit(&[op.byte()]);
    }
    fn commit_frame(&mut self) -> io::Result<()> {
        if let Some(f) = self.frame.take() {
            if f.len() >= FRAME_SIZE_MIN {
                let mut h = vec![Op::FRAME.byte()];
                h.extend_from_slice(&(f.len() as u64).to_le_bytes());
                self.raw(&h)?;
            }
            self.raw(&f)?;
        }
        Ok(())
    }
    /// `_Pickler_OpcodeBoundary`, called at the start of every `save()`.
    fn boundary(&mut self) -> io::Result<()> {
        if self
            .frame
            .as_ref()
            .is_some_and(|f| f.len() >= FRAME_SIZE_TARGET)
        {
            self.commit_frame()?;
        }
        Ok(())
    }
    fn memoize(&mut self, key: Option<Key>) {
        self.op(Op::MEMOIZE);
        if let Some(k) = key {
            self.memo.insert(k, self.next_memo);
        }
        self.next_memo += 1;
    }
    /// Emit BINGET if `key` is memoized; returns whether it was.
    fn get(&mut self, key: &Key) -> bool {
        match self.memo.get(key).copied() {
            Some(i) if i < 256 => {
                self.emit(&[Op::BINGET.byte(), i as u8]);
                true
            }
            Some(i) => {
                self.op(Op::LONG_BINGET);
                self.emit(&i.to_le_bytes());
                true
            }
            None => false,
        }
    }
    fn save_str(&mut self, s: &str, shared: bool) -> io::Result<()> {
        self.boundary()?;
        let key = Key::Str(s.to_string());
        if shared && self.get(&key) {
            return Ok(());
        }
        if s.len() < 256 {
            self.emit(&[Op::SHORT_BINUNICODE.byte(), s.len() as u8]);
        } else {
            self.op(Op::BINUNICODE);
            self.emit(&(s.len() as u32).to_le_bytes());
        }
        self.emit(s.as_bytes());
        self.memoize(shared.then_some(key));
        Ok(())
    }
    fn save_int(&mut self, v: i64) -> io::Result<()> {
        self.boundary()?;
        if (0..=0xff).contains(&v) {
            self.emit(&[Op::BININT1.byte(), v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.op(Op::BININT2);
            self.emit(&(v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.op(Op::BININT);
            self.emit(&v.to_le_bytes());
        } else {
            return Err(io::Error::other("integer does not fit BININT"));
        }
        Ok(())
    }
    fn save_const(&mut self, op: Op) -> io::Result<()> {
        self.boundary()?;
        self.op(op);
        Ok(())
    }
    fn save_global(&mut self, module: &'static str, name: &'static str) -> io::Result<()> {
        self.boundary()?;
        let key = Key::Global(module, name);
        if self.get(&key) {
            return Ok(());
        }
        // Module names are interned identifiers in CPython; attribute names likewise.
        self.save_str(module, true)?;
        self.save_str(name, true)?;
        self.op(Op::STACK_GLOBAL);
        self.memoize(Some(key));
        Ok(())
    }
    fn save_shared_bytes(&mut self, b: &'static [u8]) -> io::Result<()> {
        self.boundary()?;
        let key = Key::SharedBytes(b);
        if self.get(&key) {
            return Ok(());
        }
        self.emit(&[Op::SHORT_BINBYTES.byte(), b.len() as u8]);
        self.emit(b);
        self.memoize(Some(key));
        Ok(())
    }
    fn save_payload(&mut self, p: &mut Payload<'_>) -> io::Result<()> {
        self.boundary()?;
        let mut header = Vec::with_capacity(9);
        if p.len < 256 {
            header.extend_from_slice(&[Op::SHORT_BINBYTES.byte(), p.len as u8]);
        } else if let Ok(n) = u32::try_from(p.len) {
            header.push(Op::BINBYTES.byte());
            header.extend_from_slice(&n.to_le_bytes());
        } else {
            header.push(Op::BINBYTES8.byte());
            header.extend_from_slice(&p.len.to_le_bytes());
        }
        if p.len >= FRAME_SIZE_TARGET as u64 {
            self.commit_frame()?;
            self.raw(&header)?;
            let mut counter = Counting {
                inner: &mut self.out,
                n: 0,
            };
            (p.write)(&mut counter)?;
            let n = counter.n;
            self.written += n;
            if n != p.len {
                return Err(io::Error::other(format!(
                    "payload wrote {n} bytes, declared {}",
                    p.len
                )));
            }
        } else {
            self.emit(&header);
            let mut buf = Vec::with_capacity(p.len as usize);
            (p.write)(&mut buf)?;
            if buf.len() as u64 != p.len {
                return Err(io::Error::other(format!(
                    "payload wrote {} bytes, declared {}",
                    buf.len(),
                    p.len
                )));
            }
            self.emit(&buf);
        }
        self.memoize(None);
        Ok(())
    }
    /// After saving `n` items: TUPLE1/2/3 (or TUPLE after a MARK the caller emitted), memoized.
    fn end_tuple(&mut self, n: usize) {
        self.op(match n {
            1 => Op::TUPLE1,
            2 => Op::TUPLE2,
            3 => Op::TUPLE3,
            _ => Op::TUPLE,
        });
        self.memoize(None);
    }
    fn start_tuple(&mut self, n: usize) -> io::Result<()> {
        self.boundary()?;
        if n == 0 || n > 3 {
            self.op(Op::MARK);
        }
        Ok(())
    }
    fn save_dtype(&mut self, dtype: DType) -> io::Result<()> {
        self.boundary()?;
        // numpy.dtype.__reduce__: (dtype, (descr, False, True), (3, byteorder, None, None, None, elsize, alignment, flags))
        self.save_global("numpy", "dtype")?;
        self.start_tuple(3)?;
        let (byteorder, elsize, align, flags): (&str, i64, i64, i64) = match dtype {
            DType::BF16 => {
                self.save_global("ml_dtypes", "bfloat16")?;
                ("<", 2, 2, 64)
            }
            DType::I8 | DType::U8 => {
                self.save_str(if dtype == DType::I8 { "i1" } else { "u1" }, false)?;
                ("|", -1, -1, 0)
            }
            other => {
                let d = other
                    .info()
                    .numpy
                    .first()
                    .copied()
                    .ok_or_else(|| io::Error::other("dtype has no numpy descriptor"))?;
                self.save_str(d, false)?;
                ("<", -1, -1, 0)
            }
        };
        self.save_const(Op::NEWFALSE)?;
        self.save_const(Op::NEWTRUE)?;
        self.end_tuple(3);
        self.op(Op::REDUCE);
        self.memoize(None);
        // state
        self.start_tuple(8)?;
        self.save_int(3)?;
        self.save_str(byteorder, true)?;
        for _ in 0..3 {
            self.save_const(Op::NONE)?;
        }
        self.save_int(elsize)?;
        self.save_int(align)?;
        self.save_int(flags)?;
        self.end_tuple(8);
        self.op(Op::BUILD);
        Ok(())
    }
    fn save_array(&mut self, a: &mut ArraySpec<'_>) -> io::Result<()> {
        self.boundary()?;
        // ndarray.__reduce__: (_reconstruct, (ndarray, (0,), b'b'), (1, shape, dtype, False, data))
        self.save_global("numpy.core.multiarray", "_reconstruct")?;
        self.start_tuple(3)?;
        self.save_global("numpy", "ndarray")?;
        self.start_tuple(1)?;
        self.save_int(0)?;
        self.end_tuple(1);
        self.save_shared_bytes(b"b")?;
        self.end_tuple(3);
        self.op(Op::REDUCE);
        self.memoize(None);
        self.start_tuple(5)?;
        self.save_int(1)?;
        self.start_tuple(a.shape.len())?;
        for &d in a.shape {
            self.save_int(d as i64)?;
        }
        if a.shape.is_empty() {
            // `()` is EMPTY_TUPLE, never memoized.
            self.frame.as_mut().map(|f| f.pop());
            self.op(Op::EMPTY_TUPLE);
        } else {
            self.end_tuple(a.shape.len());
        }
        self.save_dtype(a.dtype)?;
        self.save_const(Op::NEWFALSE)?;
        self.save_payload(&mut a.payload)?;
        self.end_tuple(5);
        self.op(Op::BUILD);
        Ok(())
    }
    fn finish(mut self) -> io::Result<u64> {
        self.op(Op::STOP);
        self.commit_frame()?;
        self.out.flush()?;
        Ok(self.written)
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}
impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Pickle one numpy array as `pickle.dump(array, f)` (protocol 4) would. Returns bytes written.
pub fn write_array<W: Write>(out: W, mut a: ArraySpec<'_>) -> io::Result<u64> {
    let mut e = Emitter::new(out);
    e.raw(&[Op::PROTO.byte(), 4])?;
    e.save_array(&mut a)?;
    e.finish()
}

/// Pickle `QuantizedWeight8bit(weight=..., scales=...)` as the release's `pickle.dump` did.
pub fn write_quantized<W: Write>(
    out: W,
    mut weight: ArraySpec<'_>,
    mut scales: ArraySpec<'_>,
) -> io::Result<u64> {
    let mut e = Emitter::new(out);
    e.raw(&[Op::PROTO.byte(), 4])?;
    e.boundary()?;
    e.save_global("__main__", "QuantizedWeight8bit")?;
    e.boundary()?;
    e.op(Op::EMPTY_TUPLE);
    e.op(Op::NEWOBJ);
    e.memoize(None);
    // state dict {"weight": ..., "scales": ...}
    e.boundary()?;
    e.op(Op::EMPTY_DICT);
    e.memoize(None);
    e.op(Op::MARK);
    e.save_str("weight", false)?;
    e.save_array(&mut weight)?;
    e.save_str("scales", false)?;
    e.save_array(&mut scales)?;
    e.op(Op::SETITEMS);
    e.op(Op::BUILD);
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_payload(data: &[u8]) -> impl FnMut(&mut dyn Write) -> io::Result<()> + '_ {
        move |w: &mut dyn Write| w.write_all(data)
    }

    /// An array of `dtype` and `shape` whose payload is `len` bytes from `write`.
    fn spec<'a>(
        dtype: DType,
        shape: &'a [u64],
        len: u64,
        write: &'a mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> ArraySpec<'a> {
        ArraySpec {
            dtype,
            shape,
            payload: Payload { len, write },
        }
    }

    #[test]
    fn spec_example_a_is_reproduced() {
        let mut data = Vec::new();
        for i in 0..6 {
            data.extend_from_slice(&(i as f32).to_le_bytes());
        }
        let mut f = bytes_payload(&data);
        let mut out = Vec::new();
        write_array(&mut out, spec(DType::F32, &[2, 3], 24, &mut f)).unwrap();
        assert_eq!(out, crate::pickle::vm::tests::example_a());
    }

    #[test]
    fn spec_example_c_is_reproduced() {
        let w: Vec<u8> = (0..12u8).collect();
        let s = [0x80u8, 0x3f, 0x80, 0x3f, 0x80, 0x3f];
        let (mut fw, mut fs) = (bytes_payload(&w), bytes_payload(&s));
        let mut out = Vec::new();
        write_quantized(
            &mut out,
            spec(DType::I8, &[4, 3], 12, &mut fw),
            spec(DType::BF16, &[1, 3], 6, &mut fs),
        )
        .unwrap();
        assert_eq!(out.len(), 310);
        // Spot checks against CPython's pickle of the same object: the second array fetches the
        // globals memoized by the first (BINGET 8, 11, 13, 18), then SETITEMS, BUILD, STOP.
        assert_eq!(&out[219..223], &[0x68, 8, 0x68, 11]);
        assert_eq!(&out[227..229], &[0x68, 13]);
        assert_eq!(&out[242..244], &[0x68, 18]);
        assert_eq!(&out[307..], &[0x75, 0x62, 0x2e]);
        crate::pickle::run(&out, 0).unwrap();
    }
}
