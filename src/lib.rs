//! grokit: read, verify, convert, quantize and run the Grok-1 open-weights release in Rust.
//!
//! The crate is a stack of one-way layers (see `docs/architecture.md`; `tests/architecture.rs`
//! enforces the import table):
//!
//! - L0 `base`, `io`: element types, caps, bounded cursors; memory maps and atomic outputs.
//! - L1 codecs and descriptions: `pickle`, `numpy`, `model`, `quant`, `tokenizer`; `kernel`,
//!   matrix products over weights as they are stored.
//! - L2 readers and writers: `source` (the release), `gguf`, `safetensors_io`, `verify`,
//!   `imatrix` (importance-matrix files).
//! - L3 orchestration and the reference model: `convert`, `reference`; `eval`, whole-model
//!   evaluation (perplexity, KL divergence) layer by layer on the reference model.
//! - L4 `cli`, the binary's front end.
//!
//! `unsafe` appears in three small, documented places: `io::mmap` (read-only maps of inputs),
//! `io::signal` (ignoring SIGXFSZ) and `kernel::x86` (`std::arch` only: calls into
//! run-time-detected AVX2/FMA/F16C functions, unaligned vector loads/stores, prefetch;
//! docs/decisions/0005).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod base;
pub mod cli;
pub mod convert;
pub mod eval;
pub mod gguf;
pub mod imatrix;
#[allow(unsafe_code)]
pub mod io;
pub mod kernel;
pub mod model;
pub mod npy;
pub mod numpy;
pub mod pickle;
pub mod quant;
pub mod reference;
pub mod safetensors_io;
pub mod source;
pub mod synth;
pub mod tokenizer;
pub mod verify;
