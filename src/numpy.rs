//! L1: interpret the pickle machine's inert values as numpy arrays and the release's
//! `QuantizedWeight8bit`, following numpy's reduce protocol (docs/formats/grok-checkpoint.md
//! "Arrays and QuantizedWeight8bit"):
//! `_reconstruct(ndarray, (0,), b'b')` then `BUILD (1, shape, dtype, fortran, data)`, with the
//! dtype built by `dtype(descr, False, True)` + `BUILD (3, byteorder, ...)`.
//!
//! The result holds byte RANGES into the file, not data: payloads are used in place.

use crate::base::limits::NUMPY_MAX_DIMS;
use crate::base::{DType, Shape};
use crate::pickle::{Global, Value};
use std::ops::Range;

/// A numpy array inside a pickle: its type, shape and payload's absolute byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayRef {
    /// Element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Shape,
    /// Absolute byte range of the raw little-endian payload in the file.
    pub data: Range<u64>,
}

/// What one release file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A plain array (the embedding, norms, routers: float32).
    Array(ArrayRef),
    /// `QuantizedWeight8bit`: int8 weight and bf16 scales.
    Quantized {
        /// int8 weight [.., in, out]
        weight: ArrayRef,
        /// bf16 scales [.., B, out] with B in {1, 8}
        scales: ArrayRef,
    },
}

/// Why a value is not an array the release could contain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumpyError {
    /// The structure is not numpy's reduce protocol.
    #[error("not a numpy array pickle: {0}")]
    Structure(&'static str),
    /// A dtype grokit does not read.
    #[error("unsupported dtype {}", crate::io::term::Escaped(.0))]
    Dtype(String),
    /// Big-endian or Fortran-ordered data.
    #[error("unsupported array layout: {0}")]
    Layout(&'static str),
    /// Payload length does not match shape × element size.
    #[error("payload is {actual} bytes but shape {shape} of {dtype} needs {expected}")]
    PayloadLength {
        /// shape
        shape: String,
        /// dtype
        dtype: String,
        /// expected bytes
        expected: u64,
        /// actual bytes
        actual: u64,
    },
    /// A shape dimension that is negative, too many dims, or overflowing.
    #[error("bad shape: {0}")]
    Shape(String),
}

fn pair(v: &Value) -> Option<(&Value, &Value)> {
    match v {
        Value::Reduce(p) | Value::Build(p) | Value::NewObj(p) => Some((&p.0, &p.1)),
        _ => None,
    }
}

/// Interpret a top-level value (what STOP returned).
pub fn stored_from_value(v: &Value) -> Result<Stored, NumpyError> {
    let bad = NumpyError::Structure;
    if let Value::Build(p) = v {
        if let Value::NewObj(n) = &p.0 {
            if n.0 != Value::Global(Global::QuantizedWeight8bit) {
                return Err(bad("NEWOBJ of a class other than QuantizedWeight8bit"));
            }
            if n.1.as_tuple().is_none_or(|t| !t.is_empty()) {
                return Err(bad("QuantizedWeight8bit built with arguments"));
            }
            let entries = match &p.1 {
                Value::Dict(d) => d,
                _ => return Err(bad("QuantizedWeight8bit state is not a dict")),
            };
            let field = |name: &str| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            };
            if entries.len() != 2 {
                return Err(bad(
                    "QuantizedWeight8bit state must have exactly `weight` and `scales`",
                ));
            }
            let weight = array_from_value(
                field("weight").ok_or(bad("QuantizedWeight8bit has no `weight`"))?,
            )?;
            let scales = array_from_value(
                field("scales").ok_or(bad("QuantizedWeight8bit has no `scales`"))?,
            )?;
            return Ok(Stored::Quantized { weight, scales });
        }
    }
    Ok(Stored::Array(array_from_value(v)?))
}

/// Interpret a value as an ndarray.
pub fn array_from_value(v: &Value) -> Result<ArrayRef, NumpyError> {
    let bad = NumpyError::Structure;
    let (obj, state) = match v {
        Value::Build(p) => (&p.0, &p.1),
        _ => return Err(bad("expected BUILD of an ndarray")),
    };
    let (func, args) = pair(obj)
        .filter(|_| matches!(obj, Value::Reduce(_)))
        .ok_or(bad("expected _reconstruct(...)"))?;
    if *func != Value::Global(Global::NumpyReconstruct) {
        return Err(bad("array not made by numpy _reconstruct"));
    }
    let args = args
        .as_tuple()
        .ok_or(bad("_reconstruct args not a tuple"))?;
    match args {
        [Value::Global(Global::NumpyNdarray), _, Value::Bytes(_)] => {}
        _ => return Err(bad("_reconstruct args are not (ndarray, (0,), b'b')")),
    }
    let st = state.as_tuple().ok_or(bad("array state not a tuple"))?;
    let (shape_v, dtype_v, fortran, data) = match st {
        [ver, shape, dtype, fortran, data] if ver.as_int() == Some(1) => {
            (shape, dtype, fortran, data)
        }
        _ => return Err(bad("array state is not (1, shape, dtype, fortran, data)")),
    };
    if fortran.as_bool() != Some(false) {
        return Err(NumpyError::Layout("Fortran order"));
    }
    let dims = shape_v.as_tuple().ok_or(bad("shape is not a tuple"))?;
    if dims.len() > NUMPY_MAX_DIMS {
        return Err(NumpyError::Shape(format!(
            "{} dims (cap {NUMPY_MAX_DIMS})",
            dims.len()
        )));
    }
    let mut shape = Vec::with_capacity(dims.len());
    for d in dims {
        let d = d.as_int().ok_or(bad("shape dim is not an int"))?;
        shape.push(u64::try_from(d).map_err(|_| NumpyError::Shape(format!("negative dim {d}")))?);
    }
    let shape = Shape::new(shape);
    let dtype = dtype_from_value(dtype_v)?;
    let data = match data {
        Value::Bytes(r) => r.clone(),
        _ => return Err(bad("array data is not bytes")),
    };
    let expected = shape
        .byte_len(dtype.size())
        .map_err(|e| NumpyError::Shape(e.to_string()))?;
    let actual = data.end - data.start;
    if expected != actual {
        return Err(NumpyError::PayloadLength {
            shape: shape.to_string(),
            dtype: dtype.to_string(),
            expected,
            actual,
        });
    }
    Ok(ArrayRef { dtype, shape, data })
}

fn dtype_from_value(v: &Value) -> Result<DType, NumpyError> {
    let bad = NumpyError::Structure;
    let (obj, state) = match v {
        Value::Build(p) => (&p.0, &p.1),
        _ => return Err(bad("dtype without state")),
    };
    let (func, args) = match obj {
        Value::Reduce(p) => (&p.0, &p.1),
        _ => return Err(bad("dtype not built by dtype(...)")),
    };
    if *func != Value::Global(Global::NumpyDtype) {
        return Err(bad("dtype not built by numpy.dtype"));
    }
    let args = args.as_tuple().ok_or(bad("dtype args not a tuple"))?;
    let first = args.first().ok_or(bad("dtype args empty"))?;
    let dtype = match first {
        Value::Global(Global::Bfloat16) => DType::BF16,
        Value::Str(s) => DType::from_numpy(s).ok_or_else(|| NumpyError::Dtype(s.to_string()))?,
        _ => {
            return Err(bad(
                "dtype descriptor is neither a string nor ml_dtypes.bfloat16",
            ))
        }
    };
    let st = state.as_tuple().ok_or(bad("dtype state not a tuple"))?;
    let order = st
        .get(1)
        .and_then(Value::as_str)
        .ok_or(bad("dtype state has no byte order"))?;
    match order {
        "<" | "|" | "=" => {}
        ">" => return Err(NumpyError::Layout("big-endian data")),
        _ => return Err(bad("unknown byte order")),
    }
    Ok(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn spec_example_a() {
        let a = crate::pickle::vm::tests::example_a();
        let p = crate::pickle::run(&a, 0).unwrap();
        let s = stored_from_value(&p.value).unwrap();
        assert_eq!(
            s,
            Stored::Array(ArrayRef {
                dtype: DType::F32,
                shape: Shape::new(vec![2, 3]),
                data: 144..168
            })
        );
    }
}
