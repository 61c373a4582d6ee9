//! Every cap grokit enforces on untrusted input, as named constants with their reasons.
//!
//! A declared length or count from a file is compared against these (and against the bytes
//! actually present) BEFORE anything is allocated from it. Sections per parser; each helper
//! module cites the constants it uses.

// ---- pickle (the release's shards) -------------------------------------------------------

/// Largest pickle string (module/attribute/key names, dtype descriptors). The release's
/// longest is `numpy.core.multiarray` (21 bytes); 64 KiB leaves room for any sane producer.
pub const PICKLE_MAX_STR: u64 = 64 * 1024;
/// Largest in-frame `SHORT_BINBYTES`/`BINBYTES` payload is bounded by the file itself (payloads
/// are zero-copy ranges into the map); this caps the number of ops a single file may run.
pub const PICKLE_MAX_OPS: u64 = 1 << 20;
/// Deepest value stack (the release's files reach about 12).
pub const PICKLE_MAX_STACK: usize = 4096;
/// Most memo entries (the release's files use 40).
pub const PICKLE_MAX_MEMO: usize = 65_536;
/// Most pending MARKs (the release nests 3 deep).
pub const PICKLE_MAX_MARKS: usize = 256;
/// Largest tuple/dict built from a MARK (shape tuples have at most 3 dims; dtype state 8).
pub const PICKLE_MAX_ITEMS: usize = 4096;
/// Deepest nesting of container values (tuples inside tuples...).
pub const PICKLE_MAX_DEPTH: usize = 64;
/// Most array dimensions accepted in a numpy reconstruct (the release uses at most 3).
pub const NUMPY_MAX_DIMS: usize = 8;

// ---- checkpoint directory -----------------------------------------------------------------

/// Most `tensorNNNNN_NNN` files a checkpoint directory may hold (Grok-1 has 770).
pub const CKPT_MAX_FILES: usize = 100_000;

// ---- safetensors (reader and writer) -------------------------------------------------------

/// Largest safetensors JSON header, in bytes. Same value as the `safetensors` crate's
/// `MAX_HEADER_SIZE` (0.8.0, `tensor.rs`): Python, candle and most loaders reject larger
/// headers, so grokit neither reads nor writes one.
pub const ST_MAX_HEADER: u64 = 100_000_000;
/// Most dimensions of one safetensors tensor (numpy 2 allows 64; the release uses 3).
pub const ST_MAX_DIMS: usize = 64;
/// Largest `model.safetensors.index.json` read (real indexes of ~2,000 tensors are ~200 KB).
pub const ST_MAX_INDEX_BYTES: u64 = 100_000_000;
/// Most shard files one index may name (Grok-1 in BF16 needs ~130 at 5 GB a shard).
pub const ST_MAX_SHARDS: usize = 100_000;
