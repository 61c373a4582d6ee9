//! Errors of the pickle machine: what went wrong, at which byte offset, in which opcode.

use std::fmt;

/// A pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PickleError {
    /// Byte offset of the opcode (or field) that failed.
    pub offset: u64,
    /// The opcode's name, when one was being executed.
    pub opcode: Option<&'static str>,
    /// What went wrong.
    pub kind: PickleErrorKind,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opcode {
            Some(op) => write!(
                f,
                "pickle error at byte offset {} ({op}): {}",
                self.offset, self.kind
            ),
            None => write!(
                f,
                "pickle error at byte offset {}: {}",
                self.offset, self.kind
            ),
        }
    }
}

/// The kinds of pickle defects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleErrorKind {
    /// The data ended inside an opcode or before STOP.
    #[error("truncated: needed {needed} more bytes, {available} left")]
    Truncated {
        /// bytes needed
        needed: u64,
        /// bytes left
        available: u64,
    },
    /// An opcode outside the allow-list.
    #[error("opcode 0x{0:02x} is not in grokit's allow-list")]
    UnknownOpcode(u8),
    /// A protocol other than 2..=5.
    #[error("unsupported pickle protocol {0}")]
    UnsupportedProtocol(u8),
    /// A global outside the allow-list (this is where malicious pickles stop).
    #[error("forbidden global {module_e}.{name_e}: grokit only resolves numpy/ml_dtypes array globals and __main__.QuantizedWeight8bit", name_e = crate::io::term::Escaped(name), module_e = crate::io::term::Escaped(module))]
    ForbiddenGlobal {
        /// module
        module: String,
        /// attribute
        name: String,
    },
    /// An opcode needed more stack items than present.
    #[error("stack underflow")]
    StackUnderflow,
    /// A cap from `base::limits` was exceeded.
    #[error("{what} exceeds the cap of {cap}")]
    Cap {
        /// what
        what: &'static str,
        /// the cap
        cap: u64,
    },
    /// BINGET of an index never stored.
    #[error("memo index {0} was never stored")]
    MemoMissing(u64),
    /// TUPLE/SETITEMS without a MARK.
    #[error("no MARK on the stack")]
    MarkMissing,
    /// An operand had the wrong type.
    #[error("expected {0}")]
    Type(&'static str),
    /// A string was not UTF-8.
    #[error("string is not valid UTF-8")]
    Utf8,
    /// The data ended without STOP.
    #[error("no STOP opcode")]
    NoStop,
    /// STOP with a stack that does not hold exactly one value.
    #[error("STOP with {0} values on the stack (expected 1)")]
    BadStop(usize),
    /// A FRAME whose length runs past the end of the data.
    #[error("FRAME of {len} bytes runs past the end of the data")]
    BadFrame {
        /// declared frame length
        len: u64,
    },
}
