//! L1 quantization codecs: ggml block types and compressed-tensors packing.
//!
//! `types` holds the ONE table of ggml tensor types (id, name, block geometry) that the GGUF
//! reader/writer and the codecs share.

pub mod types;

pub use types::GgmlType;
