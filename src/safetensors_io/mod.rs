//! L2 safetensors: a streaming, sharded writer and a bounded, validating reader.
//!
//! Why grokit writes its own instead of calling `safetensors::serialize_to_file`: the crate
//! needs every tensor available as a `View` up front, is single-file and single-threaded, and
//! builds its header from `HashMap`s. Grok-1 in BF16 is ~630 GB, produced tensor by tensor by a
//! conversion pipeline, so grokit
//!
//! 1. plans the whole output from names, dtypes and shapes alone ([`plan`]): which shard each
//!    tensor lands in (huggingface_hub's algorithm), the byte-exact header of every shard, every
//!    tensor's offsets, and the `model.safetensors.index.json`;
//! 2. streams each shard through a [`writer::ShardWriter`] that enforces the planned order and
//!    byte counts, hashes the file with SHA-256 as it goes and renames it into place only when
//!    complete;
//! 3. reads files back ([`reader`]) with its own checks (distinct error kinds, file context),
//!    then lets the `safetensors` crate, the reader every downstream loader shares, validate
//!    the same bytes as a second opinion.
//!
//! The layout copies the crate's writer byte for byte (order, padding, header JSON), so a
//! single-shard grokit file is identical to what `safetensors::serialize` produces for the
//! same tensors; `docs/formats/safetensors-output.md` explains each choice.

pub mod error;
mod header;
pub mod plan;
pub mod reader;
pub mod writer;

pub use error::StError;
pub use plan::{plan_shards, plan_shards_with_metadata, PlannedTensor, Shard, ShardPlan, StTensor};
pub use reader::{StReader, TensorEntry};
pub use writer::{sha256sums_text, write_sha256sums, write_small_file, ShardWriter, Written};

/// Result type of this module.
pub type Result<T> = std::result::Result<T, StError>;
