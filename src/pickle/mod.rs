//! L1: an allow-list pickle machine. It reads the subset of pickle protocol 4 that the Grok-1
//! release uses and executes nothing.
//!
//! Why a machine of our own: pickle is a code-execution format (`REDUCE` calls any importable
//! callable). This one recognizes exactly the opcodes in [`opcode::OPCODES`] and resolves only
//! the globals in [`policy::ALLOWED_GLOBALS`]; `REDUCE`, `NEWOBJ` and `BUILD` build inert
//! [`Value`] trees that `crate::numpy` interprets. Byte payloads are zero-copy ranges into the
//! input (the 3.2 GB embedding is never copied). Every length is checked against the bytes
//! present and every stack, memo and nesting depth against `base::limits` before use.
//!
//! `writer` is the inverse for the release's object shapes: it emits byte-for-byte what
//! CPython's C pickler (protocol 4, with framing) writes, for `grokit synth`.

pub mod error;
pub mod opcode;
pub mod policy;
pub mod value;
pub mod vm;
pub mod writer;

pub use error::{PickleError, PickleErrorKind};
pub use policy::Global;
pub use value::Value;
pub use vm::{run, Parsed};
