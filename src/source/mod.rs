//! L2: model-aware sources. `grok` reads the release's `ckpt-0` directory.

pub mod grok;

pub use grok::{Checkpoint, Problem, SourceError, Tensor};
