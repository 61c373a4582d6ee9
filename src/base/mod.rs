//! Layer 0 foundations: element types, shapes, caps, bounded byte cursors and float helpers.
//!
//! Nothing here knows about pickles, GGUF, safetensors or Grok. Every other layer builds on
//! these pieces, so they are small, total (no panics on any input) and documented.

pub mod bytes;
pub mod dtype;
pub mod float;
pub mod hex;
pub mod limits;
pub mod shape;

pub use bytes::{ByteCursor, CursorError};
pub use dtype::DType;
pub use shape::{Shape, ShapeError};
