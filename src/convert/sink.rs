//! The one file loop every output shares: GGUF files (`convert --to gguf`, `quantize`) and
//! safetensors shards are planned files ([`OutputFile`]) written through a [`FileSink`], the
//! small trait both writers implement, tensor by tensor in each file's own order.
//!
//! Why a trait and not two loops: the loop is where `--shard K/N` picks its files, where
//! `--resume` keeps finished ones, where progress is counted and where each finished file is
//! recorded; written twice, those rules drifted. The writers stay format code (they know
//! headers and layouts); the sink is all the loop needs of them: begin a tensor, append bytes,
//! commit. Both can hash while writing ([`Written::sha256`]): safetensors shards always do
//! (for `SHA256SUMS`), GGUF files when created with [`GgufFileWriter::create_hashed`].

use super::output::complete_as_planned;
use super::ConvertError;
use crate::gguf::{FilePlan, GgufFileWriter};
use crate::io::atomic::Written;
use crate::safetensors_io::{Shard, ShardWriter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An output file being written.
pub trait FileSink: Send + Sized {
    /// Declare that tensor `name`'s bytes start now (the writer checks it is the next one).
    fn begin_tensor(&mut self, name: &str) -> Result<(), ConvertError>;
    /// Append bytes to the current tensor.
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), ConvertError>;
    /// Commit the file once every tensor is complete.
    fn finish(self) -> Result<Written, ConvertError>;
}

/// Both writers have the sink's methods under the same names (their errors differ).
macro_rules! file_sink {
    ($writer:ty) => {
        impl FileSink for $writer {
            fn begin_tensor(&mut self, name: &str) -> Result<(), ConvertError> {
                Ok(<$writer>::begin_tensor(self, name)?)
            }
            fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
                Ok(self.write_tensor_chunk(bytes)?)
            }
            fn finish(self) -> Result<Written, ConvertError> {
                Ok(<$writer>::finish(self)?)
            }
        }
    };
}
file_sink!(GgufFileWriter);
file_sink!(ShardWriter);

/// One planned output file.
pub trait OutputFile {
    /// Its writer.
    type Sink: FileSink;
    /// The final path.
    fn path(&self) -> PathBuf;
    /// Tensor names in the order their bytes must arrive.
    fn tensor_names(&self) -> Vec<&str>;
    /// Tensor data bytes (what progress counts).
    fn data_len(&self) -> u64;
    /// Size of the finished file.
    fn file_len(&self) -> u64;
    /// The header bytes (`--resume` compares them).
    fn header(&self) -> std::borrow::Cow<'_, [u8]>;
    /// Create the temporary file and write the header.
    fn create(&self) -> Result<Self::Sink, ConvertError>;
}

impl OutputFile for FilePlan {
    type Sink = GgufFileWriter;
    fn path(&self) -> PathBuf {
        FilePlan::path(self).to_path_buf()
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.tensors().iter().map(|t| t.name.as_str()).collect()
    }
    fn data_len(&self) -> u64 {
        FilePlan::data_len(self)
    }
    fn file_len(&self) -> u64 {
        FilePlan::file_len(self)
    }
    fn header(&self) -> std::borrow::Cow<'_, [u8]> {
        self.header_bytes().into()
    }
    fn create(&self) -> Result<GgufFileWriter, ConvertError> {
        Ok(GgufFileWriter::create(self.clone())?)
    }
}

/// A safetensors shard of a plan, in its output directory.
pub struct ShardFile<'a> {
    /// Output directory.
    pub dir: &'a Path,
    /// The shard.
    pub shard: &'a Shard,
}

impl OutputFile for ShardFile<'_> {
    type Sink = ShardWriter;
    fn path(&self) -> PathBuf {
        self.dir.join(self.shard.file_name())
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.shard
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }
    fn data_len(&self) -> u64 {
        self.shard.data_len()
    }
    fn file_len(&self) -> u64 {
        self.shard.file_size()
    }
    fn header(&self) -> std::borrow::Cow<'_, [u8]> {
        self.shard.header().into()
    }
    fn create(&self) -> Result<ShardWriter, ConvertError> {
        Ok(ShardWriter::create(self.dir, self.shard)?)
    }
}

/// A plan's tensors by name, built once, looked up as each file asks for its tensors (no scan
/// of the plan per tensor).
pub struct ByName<'t, T>(HashMap<&'t str, &'t T>);

impl<'t, T> ByName<'t, T> {
    /// Index `items` by `name`.
    pub fn new(items: &'t [T], name: impl Fn(&'t T) -> &'t str) -> Self {
        ByName(items.iter().map(|t| (name(t), t)).collect())
    }
    /// The planned tensor `name` of output file `file`.
    pub fn get(&self, file: &Path, name: &str) -> Result<&'t T, ConvertError> {
        self.0
            .get(name)
            .copied()
            .ok_or_else(|| ConvertError::Unplanned {
                file: file.to_path_buf(),
                tensor: name.to_string(),
            })
    }
}

/// Which files of a plan this run writes, and how.
pub struct FileLoop<'a> {
    /// Write only files `k` (0-based) of every `n` (`--shard K/N`).
    pub shard: Option<(usize, usize)>,
    /// Keep files already complete as planned (`--resume`).
    pub resume: bool,
    /// Receives output bytes as they are written (and the data bytes of kept files).
    pub progress: &'a (dyn Fn(u64) + Sync),
}

/// Where one tensor's bytes go: the current file's sink, counted by the progress callback.
pub type Chunks<'a> = dyn FnMut(&[u8]) -> Result<(), ConvertError> + Send + 'a;

/// What [`FileLoop::run`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files written, in order.
    pub written: Vec<Written>,
    /// Files `keep` kept from an earlier run.
    pub kept: Vec<Written>,
}

impl FileLoop<'_> {
    /// True when file `i` is this run's (`--shard`).
    pub fn owns(&self, i: usize) -> bool {
        self.shard.is_none_or(|(k, n)| i % n == k)
    }

    /// This run's files' paths (`--shard`).
    pub fn paths<F: OutputFile>(&self, files: &[F]) -> Vec<PathBuf> {
        let own = files.iter().enumerate().filter(|&(i, _)| self.owns(i));
        own.map(|(_, f)| f.path()).collect()
    }

    /// Write this run's `files`. With `resume`, a file that already has its planned size and
    /// header is offered to `keep`, which keeps it (returning what it holds) or not; otherwise
    /// the file is created and `tensor(path, name, chunks)` is called for each of its tensors
    /// in write order and must feed exactly its bytes; then the file is committed and `done` is
    /// told (before the next file starts).
    pub fn run<F: OutputFile>(
        &self,
        files: &[F],
        keep: &mut dyn FnMut(&F) -> Result<Option<Written>, ConvertError>,
        tensor: &mut dyn FnMut(&Path, &str, &mut Chunks<'_>) -> Result<(), ConvertError>,
        done: &mut dyn FnMut(&Written) -> Result<(), ConvertError>,
    ) -> Result<Outcome, ConvertError> {
        let mut out = Outcome::default();
        for (i, f) in files.iter().enumerate() {
            if !self.owns(i) {
                continue;
            }
            let planned = self.resume && complete_as_planned(&f.path(), f.file_len(), &f.header());
            if let Some(w) = if planned { keep(f)? } else { None } {
                (self.progress)(f.data_len());
                out.kept.push(w);
                continue;
            }
            let mut sink = f.create()?;
            let path = f.path();
            for name in f.tensor_names() {
                sink.begin_tensor(name)?;
                let progress = self.progress;
                let mut chunks = |b: &[u8]| -> Result<(), ConvertError> {
                    sink.write_chunk(b)?;
                    progress(b.len() as u64);
                    Ok(())
                };
                tensor(&path, name, &mut chunks)?;
            }
            let w = sink.finish()?;
            done(&w)?;
            out.written.push(w);
        }
        Ok(out)
    }
}
