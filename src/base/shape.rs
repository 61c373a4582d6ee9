//! Shapes with checked arithmetic: an element count or byte length that would overflow is an
//! error, never a wrapped number that later sizes an allocation.

use std::fmt;

/// A row-major (numpy order) shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<u64>);

/// Shape arithmetic overflowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape} overflows: {what}")]
pub struct ShapeError {
    /// The shape, rendered.
    pub shape: String,
    /// Which computation overflowed.
    pub what: &'static str,
}

impl Shape {
    /// Build from dims.
    pub fn new(dims: impl Into<Vec<u64>>) -> Self {
        Shape(dims.into())
    }
    /// The dims.
    pub fn dims(&self) -> &[u64] {
        &self.0
    }
    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Product of the dims, checked.
    pub fn elem_count(&self) -> Result<u64, ShapeError> {
        self.0
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.err("element count"))
    }
    /// Bytes at `elem_size` bytes an element, checked.
    pub fn byte_len(&self, elem_size: usize) -> Result<u64, ShapeError> {
        self.elem_count()?
            .checked_mul(elem_size as u64)
            .ok_or_else(|| self.err("byte length"))
    }
    /// The same dims in reverse order (ggml's `ne` order).
    pub fn reversed(&self) -> Shape {
        Shape(self.0.iter().rev().copied().collect())
    }
    fn err(&self, what: &'static str) -> ShapeError {
        ShapeError {
            shape: self.to_string(),
            what,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl From<&[u64]> for Shape {
    fn from(v: &[u64]) -> Self {
        Shape(v.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn overflow_is_error() {
        assert_eq!(
            Shape::new(vec![131072, 6144]).byte_len(4).unwrap(),
            3_221_225_472
        );
        assert!(Shape::new(vec![u64::MAX, 2]).elem_count().is_err());
        assert!(Shape::new(vec![u64::MAX / 2, 1]).byte_len(4).is_err());
        assert_eq!(Shape::new(vec![]).elem_count().unwrap(), 1);
        assert_eq!(Shape::new(vec![2, 3]).to_string(), "[2, 3]");
    }
}
