//! Inert values built by the machine. Containers are reference-counted so memo lookups copy a
//! pointer, not a tree (no "billion laughs"); the machine tracks and caps nesting depth.

use super::policy::Global;
use std::ops::Range;
use std::rc::Rc;

/// A value on the pickle stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An integer (BININT* fit in i64).
    Int(i64),
    /// A text string.
    Str(Rc<str>),
    /// A bytes object: a range of absolute offsets into the input (zero-copy).
    Bytes(Range<u64>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A dict, in insertion order.
    Dict(Rc<Vec<(Value, Value)>>),
    /// An allowed global.
    Global(Global),
    /// `callable(*args)`, recorded, never called.
    Reduce(Rc<(Value, Value)>),
    /// `cls.__new__(cls, *args)`, recorded.
    NewObj(Rc<(Value, Value)>),
    /// `obj.__setstate__(state)`, recorded.
    Build(Rc<(Value, Value)>),
}

impl Value {
    /// The tuple's items.
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
    /// The integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// A short type name for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Reduce(_) => "reduce",
            Value::NewObj(_) => "object",
            Value::Build(_) => "built object",
        }
    }
}
