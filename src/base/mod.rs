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

/// Give an enum `info()`, its row of a constant table (the row whose `$key` field is the
/// value), and one accessor per listed column: the format tables (`base::dtype::DTYPES`,
/// `gguf::constants::VALUE_TYPES`) are data, and this is the one way their rows are read.
/// Every variant must have a row (each table's unit test pins it); the first row is the
/// unreachable fallback, so a lookup never panics.
macro_rules! row_accessors {
    ($ty:ty => $row:ty, $table:ident, $key:ident { $($(#[$doc:meta])* $col:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            /// This value's row of the table.
            pub fn info(self) -> &'static $row {
                $table
                    .iter()
                    .find(|r| r.$key == self)
                    .unwrap_or(&$table[0])
            }
            $(
                $(#[$doc])*
                pub fn $col(self) -> $t {
                    self.info().$col
                }
            )*
        }
    };
}
pub(crate) use row_accessors;

pub use bytes::{ByteCursor, CursorError};
pub use dtype::DType;
pub use shape::{Shape, ShapeError};
