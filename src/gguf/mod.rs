//! L2 GGUF v3: a plan-then-stream writer (single file or llama.cpp split sets) and a bounded
//! reader, both following ggml's rules (docs/formats/gguf-output.md).
//!
//! Why this shape: a GGUF header lists every tensor's offset, so the writer first builds a
//! [`GgufPlan`] (validated, split into [`FilePlan`]s with exact header bytes and offsets), then
//! [`GgufFileWriter`] streams tensor bytes in plan order into a temp file that is renamed only
//! when complete. The reader ([`GgufFile`], [`GgufSet`]) checks every declared length against
//! named caps and the bytes present before allocating, and enforces the same offset rules as
//! ggml, so grokit can verify its own outputs with the checks llama.cpp will apply.
//! Tensor types come from [`crate::quant::GgmlType`], the one ggml type table.

pub mod constants;
pub mod error;
mod parse;
pub mod plan;
pub mod reader;
pub mod set;
pub mod value;
pub mod vocab;
pub mod writer;

pub use crate::io::atomic::Written;
pub use constants::{ValueType, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION};
pub use error::GgufError;
pub use plan::{plan_summary, FilePlan, GgufPlan, PlannedTensor, TensorPlan};
pub use reader::{GgufFile, TensorInfo};
pub use set::GgufSet;
pub use value::{ArrayValue, Value};
pub use writer::GgufFileWriter;
