//! The stack machine: one match over [`Op`], one small function per non-trivial opcode.

use super::error::{PickleError, PickleErrorKind as K};
use super::opcode::Op;
use super::policy;
use super::value::Value;
use crate::base::limits::{
    PICKLE_MAX_DEPTH, PICKLE_MAX_ITEMS, PICKLE_MAX_MARKS, PICKLE_MAX_MEMO, PICKLE_MAX_OPS,
    PICKLE_MAX_STACK, PICKLE_MAX_STR,
};
use crate::base::ByteCursor;
use std::rc::Rc;

/// The result of running a pickle.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The value STOP returned.
    pub value: Value,
    /// Offset just after STOP (bytes after it are trailing garbage, which callers may reject).
    pub end: u64,
    /// Protocol from PROTO (0 if absent).
    pub protocol: u8,
}

type Item = (Value, usize); // value, nesting depth

struct Machine<'a> {
    cur: ByteCursor<'a>,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: Vec<Option<Item>>,
    op_offset: u64,
    op: Option<Op>,
    protocol: u8,
}

/// Run the pickle in `data`, whose byte 0 is at absolute offset `base` (for error messages and
/// for the ranges of [`Value::Bytes`]).
pub fn run(data: &[u8], base: u64) -> Result<Parsed, PickleError> {
    let mut m = Machine {
        cur: ByteCursor::with_base(data, base),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        op_offset: base,
        op: None,
        protocol: 0,
    };
    let mut ops = 0u64;
    loop {
        if m.cur.is_empty() {
            return Err(m.err(K::NoStop));
        }
        ops += 1;
        if ops > PICKLE_MAX_OPS {
            return Err(m.err(K::Cap {
                what: "opcode count",
                cap: PICKLE_MAX_OPS,
            }));
        }
        m.op_offset = m.cur.offset();
        m.op = None;
        let b = m.cur.u8().map_err(|e| m.trunc(e))?;
        let op = Op::from_byte(b).ok_or_else(|| m.err(K::UnknownOpcode(b)))?;
        m.op = Some(op);
        if op == Op::STOP {
            if m.stack.len() != 1 || !m.marks.is_empty() {
                return Err(m.err(K::BadStop(m.stack.len())));
            }
            let (value, _) = m.pop()?;
            return Ok(Parsed {
                value,
                end: m.cur.offset(),
                protocol: m.protocol,
            });
        }
        m.step(op)?;
    }
}

impl<'a> Machine<'a> {
    fn err(&self, kind: K) -> PickleError {
        PickleError {
            offset: self.op_offset,
            opcode: self.op.map(Op::name),
            kind,
        }
    }
    fn trunc(&self, e: crate::base::CursorError) -> PickleError {
        self.err(K::Truncated {
            needed: e.needed,
            available: e.available,
        })
    }
    fn push(&mut self, v: Value, depth: usize) -> Result<(), PickleError> {
        if self.stack.len() >= PICKLE_MAX_STACK {
            return Err(self.err(K::Cap {
                what: "stack depth",
                cap: PICKLE_MAX_STACK as u64,
            }));
        }
        if depth > PICKLE_MAX_DEPTH {
            return Err(self.err(K::Cap {
                what: "nesting depth",
                cap: PICKLE_MAX_DEPTH as u64,
            }));
        }
        self.stack.push((v, depth));
        Ok(())
    }
    fn push1(&mut self, v: Value) -> Result<(), PickleError> {
        self.push(v, 1)
    }
    fn pop(&mut self) -> Result<Item, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(K::StackUnderflow));
        }
        self.stack.pop().ok_or_else(|| self.err(K::StackUnderflow))
    }
    fn top(&self) -> Result<&Item, PickleError> {
        self.stack.last().ok_or_else(|| self.err(K::StackUnderflow))
    }
    fn pop_mark(&mut self) -> Result<Vec<Item>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| self.err(K::MarkMissing))?;
        let items = self.stack.split_off(m.min(self.stack.len()));
        if items.len() > PICKLE_MAX_ITEMS {
            return Err(self.err(K::Cap {
                what: "items after MARK",
                cap: PICKLE_MAX_ITEMS as u64,
            }));
        }
        Ok(items)
    }
    fn read_str(&mut self, len: u64) -> Result<Rc<str>, PickleError> {
        if len > PICKLE_MAX_STR {
            return Err(self.err(K::Cap {
                what: "string length",
                cap: PICKLE_MAX_STR,
            }));
        }
        let b = self.cur.take(len).map_err(|e| self.trunc(e))?;
        std::str::from_utf8(b)
            .map(Rc::from)
            .map_err(|_| self.err(K::Utf8))
    }
    fn read_bytes(&mut self, len: u64) -> Result<(), PickleError> {
        let start = self.cur.offset();
        self.cur.skip(len).map_err(|e| self.trunc(e))?;
        self.push1(Value::Bytes(start..start + len))
    }
    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        if idx >= PICKLE_MAX_MEMO as u64 {
            return Err(self.err(K::Cap {
                what: "memo index",
                cap: PICKLE_MAX_MEMO as u64,
            }));
        }
        let item = self.top()?.clone();
        let i = idx as usize;
        if self.memo.len() <= i {
            self.memo.resize(i + 1, None);
        }
        self.memo[i] = Some(item);
        Ok(())
    }
    fn memo_get(&mut self, idx: u64) -> Result<(), PickleError> {
        let item = self
            .memo
            .get(idx as usize)
            .and_then(|x| x.clone())
            .ok_or_else(|| self.err(K::MemoMissing(idx)))?;
        self.push(item.0, item.1)
    }
    fn tuple(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        let depth = 1 + items.iter().map(|i| i.1).max().unwrap_or(0);
        self.push(
            Value::Tuple(Rc::new(items.into_iter().map(|i| i.0).collect())),
            depth,
        )
    }
    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = policy::resolve(module, name).ok_or_else(|| {
            self.err(K::ForbiddenGlobal {
                module: module.to_string(),
                name: name.to_string(),
            })
        })?;
        self.push1(Value::Global(g))
    }
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.cur.data()[self.cur.pos()..];
        let n = rest
            .iter()
            .take(PICKLE_MAX_STR as usize + 1)
            .position(|&c| c == b'\n');
        let n = match n {
            Some(n) => n,
            None if rest.len() > PICKLE_MAX_STR as usize => {
                return Err(self.err(K::Cap {
                    what: "GLOBAL line",
                    cap: PICKLE_MAX_STR,
                }))
            }
            None => {
                return Err(self.err(K::Truncated {
                    needed: 1,
                    available: 0,
                }))
            }
        };
        let s = self.read_str(n as u64)?.to_string();
        self.cur.skip(1).map_err(|e| self.trunc(e))?;
        Ok(s)
    }
    fn pair(&mut self, make: fn(Rc<(Value, Value)>) -> Value) -> Result<(), PickleError> {
        let (b, db) = self.pop()?;
        let (a, da) = self.pop()?;
        self.push(make(Rc::new((a, b))), 1 + da.max(db))
    }
    fn set_items(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(K::Type("an even number of items for SETITEMS")));
        }
        let (d, dd) = self.pop()?;
        let mut entries = match d {
            Value::Dict(e) => Rc::try_unwrap(e).unwrap_or_else(|rc| (*rc).clone()),
            _ => return Err(self.err(K::Type("a dict under SETITEM(S)"))),
        };
        if entries.len() + items.len() / 2 > PICKLE_MAX_ITEMS {
            return Err(self.err(K::Cap {
                what: "dict entries",
                cap: PICKLE_MAX_ITEMS as u64,
            }));
        }
        let mut depth = dd;
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            depth = depth.max(1 + k.1.max(v.1));
            entries.push((k.0, v.0));
        }
        self.push(Value::Dict(Rc::new(entries)), depth)
    }

    fn step(&mut self, op: Op) -> Result<(), PickleError> {
        let c = |m: &Self, e| m.trunc(e);
        match op {
            Op::PROTO => {
                let p = self.cur.u8().map_err(|e| c(self, e))?;
                if !(2..=5).contains(&p) {
                    return Err(self.err(K::UnsupportedProtocol(p)));
                }
                self.protocol = p;
            }
            Op::FRAME => {
                // Frames are transparent to pickle semantics; check the declared length fits.
                let len = self.cur.u64_le().map_err(|e| c(self, e))?;
                if len > self.cur.remaining() as u64 {
                    return Err(self.err(K::BadFrame { len }));
                }
            }
            Op::STOP => {}
            Op::MARK => {
                if self.marks.len() >= PICKLE_MAX_MARKS {
                    return Err(self.err(K::Cap {
                        what: "MARK nesting",
                        cap: PICKLE_MAX_MARKS as u64,
                    }));
                }
                self.marks.push(self.stack.len());
            }
            Op::EMPTY_TUPLE => self.tuple(Vec::new())?,
            Op::TUPLE => {
                let items = self.pop_mark()?;
                self.tuple(items)?
            }
            Op::TUPLE1 | Op::TUPLE2 | Op::TUPLE3 => {
                let n = match op {
                    Op::TUPLE1 => 1,
                    Op::TUPLE2 => 2,
                    _ => 3,
                };
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.tuple(items)?
            }
            Op::EMPTY_DICT => self.push1(Value::Dict(Rc::new(Vec::new())))?,
            Op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?
            }
            Op::SETITEMS => {
                let items = self.pop_mark()?;
                self.set_items(items)?
            }
            Op::BININT => {
                let v = self.cur.i32_le().map_err(|e| c(self, e))?;
                self.push1(Value::Int(v.into()))?
            }
            Op::BININT1 => {
                let v = self.cur.u8().map_err(|e| c(self, e))?;
                self.push1(Value::Int(v.into()))?
            }
            Op::BININT2 => {
                let v = self.cur.u16_le().map_err(|e| c(self, e))?;
                self.push1(Value::Int(v.into()))?
            }
            Op::NONE => self.push1(Value::None)?,
            Op::NEWTRUE => self.push1(Value::Bool(true))?,
            Op::NEWFALSE => self.push1(Value::Bool(false))?,
            Op::SHORT_BINUNICODE => {
                let n = self.cur.u8().map_err(|e| c(self, e))?;
                let s = self.read_str(n.into())?;
                self.push1(Value::Str(s))?
            }
            Op::BINUNICODE => {
                let n = self.cur.u32_le().map_err(|e| c(self, e))?;
                let s = self.read_str(n.into())?;
                self.push1(Value::Str(s))?
            }
            Op::SHORT_BINBYTES => {
                let n = self.cur.u8().map_err(|e| c(self, e))?;
                self.read_bytes(n.into())?
            }
            Op::BINBYTES => {
                let n = self.cur.u32_le().map_err(|e| c(self, e))?;
                self.read_bytes(n.into())?
            }
            Op::BINBYTES8 => {
                let n = self.cur.u64_le().map_err(|e| c(self, e))?;
                self.read_bytes(n)?
            }
            Op::MEMOIZE => {
                let idx = self.memo.len() as u64;
                self.memo_put(idx)?
            }
            Op::BINPUT => {
                let i = self.cur.u8().map_err(|e| c(self, e))?;
                self.memo_put(i.into())?
            }
            Op::LONG_BINPUT => {
                let i = self.cur.u32_le().map_err(|e| c(self, e))?;
                self.memo_put(i.into())?
            }
            Op::BINGET => {
                let i = self.cur.u8().map_err(|e| c(self, e))?;
                self.memo_get(i.into())?
            }
            Op::LONG_BINGET => {
                let i = self.cur.u32_le().map_err(|e| c(self, e))?;
                self.memo_get(i.into())?
            }
            Op::STACK_GLOBAL => {
                let (name, _) = self.pop()?;
                let (module, _) = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => {
                        let (m, n) = (m.to_string(), n.to_string());
                        self.global(&m, &n)?
                    }
                    _ => return Err(self.err(K::Type("two strings for STACK_GLOBAL"))),
                }
            }
            Op::GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(&module, &name)?
            }
            Op::REDUCE => self.pair(Value::Reduce)?,
            Op::NEWOBJ => self.pair(Value::NewObj)?,
            Op::BUILD => self.pair(Value::Build)?,
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What CPython (3.11, numpy 1.26.4) pickles at protocol 4 for
    /// `numpy.arange(6, dtype=float32).reshape(2, 3)`: 173 bytes.
    pub(crate) fn example_a() -> Vec<u8> {
        let mut v = vec![0x80, 4, 0x95];
        v.extend_from_slice(&162u64.to_le_bytes());
        v.extend_from_slice(b"\x8c\x15numpy.core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02K\x03\x86\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x18");
        for i in 0..6 {
            v.extend_from_slice(&(i as f32).to_le_bytes());
        }
        v.extend_from_slice(b"\x94t\x94b.");
        v
    }

    #[test]
    fn runs_spec_example() {
        let a = example_a();
        assert_eq!(a.len(), 173);
        let p = run(&a, 0).unwrap();
        assert_eq!(p.end, 173);
        assert_eq!(p.protocol, 4);
        assert!(matches!(p.value, Value::Build(_)));
    }

    #[test]
    fn forbidden_global_is_refused() {
        let mut v = vec![0x80, 4];
        v.extend_from_slice(b"\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x85R.");
        let e = run(&v, 0).unwrap_err();
        assert!(matches!(e.kind, K::ForbiddenGlobal { .. }), "{e}");
        assert_eq!(e.offset, 16);
        let v = b"cbuiltins\neval\n(S'1'\ntR.".to_vec();
        assert!(matches!(
            run(&v, 0).unwrap_err().kind,
            K::ForbiddenGlobal { .. }
        ));
    }

    #[test]
    fn truncation_never_panics() {
        let a = example_a();
        for n in 0..a.len() {
            assert!(run(&a[..n], 0).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn caps() {
        // deep nesting of TUPLE1
        let mut v = vec![0x80, 4, b'N'];
        v.extend(std::iter::repeat_n(0x85u8, 100));
        v.push(b'.');
        assert!(matches!(
            run(&v, 0).unwrap_err().kind,
            K::Cap {
                what: "nesting depth",
                ..
            }
        ));
        // huge BINBYTES8 length
        let mut v = vec![0x80, 4, 0x8e];
        v.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(run(&v, 0).unwrap_err().kind, K::Truncated { .. }));
        // memo index out of range
        let v = b"\x80\x04N\x72\xff\xff\xff\xff.".to_vec();
        assert!(matches!(
            run(&v, 0).unwrap_err().kind,
            K::Cap {
                what: "memo index",
                ..
            }
        ));
        // BINGET of missing memo
        assert!(matches!(
            run(b"\x80\x04h\x05.", 0).unwrap_err().kind,
            K::MemoMissing(5)
        ));
        // unknown opcode (pickle's INST would run code)
        assert!(matches!(
            run(b"\x80\x04i", 0).unwrap_err().kind,
            K::UnknownOpcode(b'i')
        ));
        assert!(matches!(
            run(b"\x80\x09N.", 0).unwrap_err().kind,
            K::UnsupportedProtocol(9)
        ));
        assert!(matches!(run(b"N", 0).unwrap_err().kind, K::NoStop));
        assert!(matches!(run(b"NN.", 0).unwrap_err().kind, K::BadStop(2)));
        assert!(matches!(run(b"t.", 0).unwrap_err().kind, K::MarkMissing));
        assert!(matches!(
            run(b"(R.", 0).unwrap_err().kind,
            K::StackUnderflow
        ));
    }
}
