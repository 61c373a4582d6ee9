//! A planned run of named byte ranges ("tensors") written into one atomic file: the header
//! first, then each tensor's bytes strictly in plan order, each followed by its padding.
//!
//! Why one state machine for both output formats: a GGUF file and a safetensors shard are
//! both "a header that already lists every tensor's offset, then the data in exactly that
//! order". A converter that produced tensors in another order, or one byte short, would write
//! a file whose header lies about its data. [`SequencedFile`] knows the plan, so it refuses a
//! chunk that overruns the current tensor, a tensor begun out of order and a finish with
//! anything missing, naming the tensor each time; only a complete file is renamed into place.
//! A [`SequenceError`] names the file and the tensor; the GGUF and safetensors errors carry it
//! (GGUF flattens it into variants of the same names).

use super::{AtomicFile, Written};
use crate::io::IoError;
use std::path::Path;

/// One tensor of the plan: its name, its byte count, and the zero bytes that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Name (for errors and [`SequencedFile::begin_tensor`]).
    pub name: String,
    /// Data bytes.
    pub len: u64,
    /// Zero bytes written after the data (alignment padding).
    pub pad: u64,
}

/// Declare an error enum whose variants are the caller's own followed by the defects a
/// [`SequencedFile`] reports (`ChunkOverflow`, `TensorIncomplete`, `NoTensorPending`,
/// `OutOfOrder`, each naming the file). [`SequenceError`] and the GGUF and safetensors errors
/// are declared with it, so the defects have one definition, one message and the same names in
/// every format; a format's error also gets `From<SequenceError>` (its `Io` variant must take
/// an [`IoError`]).
macro_rules! with_sequence_defects {
    ($(#[$attr:meta])* $vis:vis enum $name:ident { $($own:tt)* }) => {
        $(#[$attr])*
        $vis enum $name {
            $($own)*
            /// A chunk would give the current tensor more bytes than planned (nothing was
            /// written).
            #[error("{}: tensor '{name}' is planned as {expected} bytes, but a chunk of {chunk} brings it to {got}", path.display())]
            ChunkOverflow {
                /// The file.
                path: std::path::PathBuf,
                /// The tensor.
                name: String,
                /// Its planned bytes.
                expected: u64,
                /// Bytes it would have.
                got: u64,
                /// The chunk's size.
                chunk: u64,
            },
            /// A tensor did not receive all its bytes (before the next began, or at finish).
            #[error("{}: tensor '{name}' received {got} of its {expected} bytes", path.display())]
            TensorIncomplete {
                /// The file.
                path: std::path::PathBuf,
                /// The tensor.
                name: String,
                /// Its planned bytes.
                expected: u64,
                /// Bytes received.
                got: u64,
            },
            /// Bytes arrived after every tensor was complete.
            #[error("{}: {len} bytes written after the last planned tensor", path.display())]
            NoTensorPending {
                /// The file.
                path: std::path::PathBuf,
                /// Bytes offered.
                len: u64,
            },
            /// A tensor was begun out of plan order.
            #[error("{}: expected tensor '{expected}' next, got '{got}'", path.display())]
            OutOfOrder {
                /// The file.
                path: std::path::PathBuf,
                /// The tensor the plan wants next.
                expected: String,
                /// The tensor begun.
                got: String,
            },
        }
    };
}
pub(crate) use with_sequence_defects;

/// `From<SequenceError>` for an error declared with [`with_sequence_defects`].
macro_rules! from_sequence_error {
    ($name:ident) => {
        impl From<$crate::io::atomic::sequence::SequenceError> for $name {
            fn from(e: $crate::io::atomic::sequence::SequenceError) -> Self {
                use $crate::io::atomic::sequence::SequenceError as S;
                match e {
                    S::Io(e) => $name::Io(e),
                    S::ChunkOverflow {
                        path,
                        name,
                        expected,
                        got,
                        chunk,
                    } => $name::ChunkOverflow {
                        path,
                        name,
                        expected,
                        got,
                        chunk,
                    },
                    S::TensorIncomplete {
                        path,
                        name,
                        expected,
                        got,
                    } => $name::TensorIncomplete {
                        path,
                        name,
                        expected,
                        got,
                    },
                    S::NoTensorPending { path, len } => $name::NoTensorPending { path, len },
                    S::OutOfOrder {
                        path,
                        expected,
                        got,
                    } => $name::OutOfOrder {
                        path,
                        expected,
                        got,
                    },
                }
            }
        }
    };
}
pub(crate) use from_sequence_error;

with_sequence_defects! {
    /// A defect in the order or amount of data given to a [`SequencedFile`], naming the file.
    #[derive(Debug, thiserror::Error)]
    pub enum SequenceError {
        /// Writing failed.
        #[error(transparent)]
        Io(#[from] IoError),
    }
}

/// An atomic file receiving a planned sequence of tensors.
pub struct SequencedFile {
    out: AtomicFile,
    slots: Vec<Slot>,
    /// Index of the tensor receiving bytes (== `slots.len()` when all are complete).
    current: usize,
    /// Bytes the current tensor has received.
    received: u64,
    /// First of the empty tensors skipped since the last non-empty one completed: beginning
    /// one of them by name is in order.
    skipped_from: usize,
}

impl SequencedFile {
    /// Write `header` into `out` (a fresh atomic file) and get ready for the first tensor.
    pub fn new(mut out: AtomicFile, header: &[u8], slots: Vec<Slot>) -> Result<Self, IoError> {
        out.write_all(header)?;
        let mut f = SequencedFile {
            out,
            slots,
            current: 0,
            received: 0,
            skipped_from: 0,
        };
        f.skip_empty()?;
        Ok(f)
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        self.out.path()
    }

    /// Bytes written so far (header and padding included).
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// The tensor the next bytes belong to (`None` when every tensor is complete).
    pub fn current(&self) -> Option<&Slot> {
        self.slots.get(self.current)
    }

    /// The index of [`SequencedFile::current`] in the plan.
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// Declare that tensor `name`'s bytes start now. Optional (chunks alone follow the plan),
    /// but it turns a producer's ordering bug into an error naming both tensors. An empty
    /// tensor just passed over may be begun too.
    pub fn begin_tensor(&mut self, name: &str) -> Result<(), SequenceError> {
        self.check_no_partial()?;
        let passed = &self.slots[self.skipped_from.min(self.current)..self.current];
        if self.current().is_some_and(|t| t.name == name) || passed.iter().any(|t| t.name == name) {
            return Ok(());
        }
        Err(SequenceError::OutOfOrder {
            path: self.path().to_path_buf(),
            expected: self
                .current()
                .map_or_else(|| "(none: all tensors written)".into(), |t| t.name.clone()),
            got: name.to_string(),
        })
    }

    /// Append bytes to the current tensor. A chunk may not cross into the next tensor; when
    /// the tensor becomes complete its padding is written and the next one becomes current.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), SequenceError> {
        let len = bytes.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let Some(t) = self.slots.get(self.current) else {
            return Err(SequenceError::NoTensorPending {
                path: self.path().to_path_buf(),
                len,
            });
        };
        let got = self.received.saturating_add(len);
        if got > t.len {
            return Err(SequenceError::ChunkOverflow {
                path: self.path().to_path_buf(),
                name: t.name.clone(),
                expected: t.len,
                got,
                chunk: len,
            });
        }
        let pad = t.pad;
        self.out.write_all(bytes)?;
        self.received = got;
        if got == t.len {
            self.out.write_zeros(pad)?;
            self.current += 1;
            self.received = 0;
            self.skipped_from = self.current;
            self.skip_empty()?;
        }
        Ok(())
    }

    /// Write the whole rest of the current tensor: fewer bytes than it still needs is
    /// [`SequenceError::TensorIncomplete`] (nothing written), more is
    /// [`SequenceError::ChunkOverflow`].
    pub fn write_rest(&mut self, bytes: &[u8]) -> Result<(), SequenceError> {
        if let Some(t) = self.current() {
            let got = self.received.saturating_add(bytes.len() as u64);
            if got < t.len {
                return Err(self.incomplete(t, got));
            }
        }
        self.write_chunk(bytes)
    }

    /// Zero-byte tensors are complete as soon as they become current.
    fn skip_empty(&mut self) -> Result<(), IoError> {
        while let Some(t) = self.slots.get(self.current) {
            if t.len != 0 {
                break;
            }
            self.out.write_zeros(t.pad)?;
            self.current += 1;
        }
        Ok(())
    }

    fn incomplete(&self, t: &Slot, got: u64) -> SequenceError {
        SequenceError::TensorIncomplete {
            path: self.path().to_path_buf(),
            name: t.name.clone(),
            expected: t.len,
            got,
        }
    }

    /// The current tensor must not be partly written.
    fn check_no_partial(&self) -> Result<(), SequenceError> {
        match self.current() {
            Some(t) if self.received > 0 => Err(self.incomplete(t, self.received)),
            _ => Ok(()),
        }
    }

    /// Commit (fsync + rename) if every tensor is complete; otherwise the temporary file is
    /// removed and the first incomplete tensor is named.
    pub fn finish(self) -> Result<Written, SequenceError> {
        if let Some(t) = self.current() {
            return Err(self.incomplete(t, self.received));
        }
        Ok(self.out.commit_written()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, len: u64, pad: u64) -> Slot {
        Slot {
            name: name.into(),
            len,
            pad,
        }
    }

    #[test]
    fn order_counts_and_padding() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let slots = vec![
            slot("e", 0, 2),
            slot("a", 3, 1),
            slot("z", 0, 0),
            slot("b", 2, 0),
        ];
        let mut f =
            SequencedFile::new(AtomicFile::create_hashed(&p).unwrap(), b"H", slots).unwrap();
        f.begin_tensor("e").unwrap(); // an empty tensor already passed over
        assert_eq!(f.current().unwrap().name, "a");
        assert!(matches!(
            f.begin_tensor("b"),
            Err(SequenceError::OutOfOrder { expected, .. }) if expected == "a"
        ));
        f.write_chunk(&[1, 2]).unwrap();
        assert!(matches!(
            f.begin_tensor("a"),
            Err(SequenceError::TensorIncomplete { got: 2, .. })
        ));
        assert!(matches!(
            f.write_chunk(&[3, 4]),
            Err(SequenceError::ChunkOverflow {
                expected: 3,
                got: 4,
                chunk: 2,
                ..
            })
        ));
        f.write_chunk(&[3]).unwrap();
        f.begin_tensor("z").unwrap();
        f.begin_tensor("b").unwrap();
        f.write_chunk(&[5, 6]).unwrap();
        assert!(matches!(
            f.write_chunk(&[7]),
            Err(SequenceError::NoTensorPending { len: 1, .. })
        ));
        let w = f.finish().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes, [b'H', 0, 0, 1, 2, 3, 0, 5, 6]);
        assert_eq!(w.bytes, 9);
        assert_eq!(w.sha256, crate::io::atomic::Sha256Sum::of(&bytes));
    }

    #[test]
    fn an_incomplete_file_is_not_committed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut f = SequencedFile::new(AtomicFile::create(&p).unwrap(), b"", vec![slot("a", 2, 0)])
            .unwrap();
        f.write_chunk(&[1]).unwrap();
        assert!(matches!(
            f.finish(),
            Err(SequenceError::TensorIncomplete {
                got: 1,
                expected: 2,
                ..
            })
        ));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
