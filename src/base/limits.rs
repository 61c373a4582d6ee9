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

// ---- GGUF (reader and writer; docs/formats/gguf-output.md, ggml `src/gguf.cpp`) ------------

/// Longest GGUF string (key, string value, array element, tensor name) ggml accepts:
/// `GGUF_MAX_STRING_LENGTH` = 1 GiB. A declared length is also checked against the bytes left.
pub const GGUF_MAX_STRING_LEN: u64 = 1 << 30;
/// Most elements in one GGUF metadata array (ggml's `GGUF_MAX_ARRAY_ELEMENTS`-style cap of
/// 2^30); also bounded by the bytes left (Grok's vocabulary arrays hold 131072).
pub const GGUF_MAX_ARRAY_ELEMS: u64 = 1 << 30;
/// Most tensor dimensions (`GGML_MAX_DIMS`).
pub const GGUF_MAX_DIMS: usize = 4;
/// Longest tensor name in bytes: `GGML_MAX_NAME` is 64 including the NUL, so 63.
pub const GGUF_MAX_NAME_LEN: usize = 63;
/// Longest metadata key in bytes (ggml docs: keys are at most 65535 bytes).
pub const GGUF_MAX_KEY_LEN: usize = 65_535;
/// Smallest possible encoded KV pair (u64 key length + u32 type + 1 value byte): a declared
/// KV count above `bytes_left / 13` cannot be honest and is refused before parsing.
pub const GGUF_MIN_KV_BYTES: u64 = 13;
/// Smallest possible tensor info (u64 name length + u32 n_dims + u32 type + u64 offset).
pub const GGUF_MIN_TENSOR_INFO_BYTES: u64 = 24;
/// Most shards in a split set: `split.count` is a u16.
pub const GGUF_MAX_SPLITS: u64 = u16::MAX as u64;
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
// ---- tokenizer (SentencePiece `tokenizer.model`) ------------------------------------------

/// Largest `tokenizer.model` accepted. Grok-1's is 2.2 MB (131,072 pieces); 256 MiB is room for
/// a 4M-piece vocabulary while keeping a hostile file from pinning gigabytes.
pub const TOKENIZER_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Most pieces in one model. Grok-1 has 131,072; the largest public SentencePiece vocabularies
/// are about 256K. 4M bounds the piece table and its hash maps.
pub const TOKENIZER_MAX_PIECES: usize = 4 * 1024 * 1024;
/// Longest piece string in bytes. SentencePiece trains pieces of at most 16 characters
/// (`max_sentencepiece_length`, 64 UTF-8 bytes); user-defined symbols can be longer, and 4 KiB
/// leaves ample room (Grok-1's longest is `<|control20|>`, 13 bytes).
pub const TOKENIZER_MAX_PIECE_BYTES: u64 = 4096;
/// Longest string/bytes field in the trainer or normalizer spec (paths, `precompiled_charsmap`,
/// which is about 240 KB for `nmt_nfkc`).
pub const TOKENIZER_MAX_SPEC_FIELD_BYTES: u64 = 16 * 1024 * 1024;
// ---- verify (manifests, bencode, .torrent) -----------------------------------------------

/// Largest manifest file read (a 770-line `sha256sum` manifest is about 70 KB; 64 MiB allows
/// about half a million entries with long paths).
pub const VERIFY_MANIFEST_MAX_BYTES: u64 = 64 << 20;
/// Longest manifest line (PATH_MAX is 4096 on Linux; escaping can double it).
pub const VERIFY_MANIFEST_MAX_LINE: usize = 16 * 1024;
/// Most entries in one manifest.
pub const VERIFY_MANIFEST_MAX_ENTRIES: usize = 1_000_000;
/// Most directory entries visited when listing files under a root for "extra" files.
pub const VERIFY_MAX_WALK_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting followed when listing files under a root.
pub const VERIFY_MAX_WALK_DEPTH: usize = 64;
/// Largest `.torrent` file read. Grok-1 (about 318 GB) at the smallest common piece length
/// (256 KiB) needs about 1.2 M pieces, 24 MB of piece hashes; 128 MiB leaves room.
pub const TORRENT_MAX_BYTES: u64 = 128 << 20;
/// Deepest bencode nesting (torrents nest about 5 deep: dict > info > files > dict > path).
pub const BENCODE_MAX_DEPTH: usize = 64;
/// Most bencode values in one document (every list element, dict key and value counts).
pub const BENCODE_MAX_VALUES: usize = 4_000_000;
/// Most files in a multi-file torrent.
pub const TORRENT_MAX_FILES: usize = 1_000_000;
/// Most path components of one torrent file entry.
pub const TORRENT_MAX_PATH_COMPONENTS: usize = 64;
/// Longest path component (bytes) of a torrent file entry (NAME_MAX on Linux is 255).
pub const TORRENT_MAX_COMPONENT_BYTES: usize = 255;
/// Largest piece length accepted. Clients use 16 KiB - 64 MiB; a piece is held in memory while
/// hashed, so this bounds per-piece work (not allocation, which is by block).
pub const TORRENT_MAX_PIECE_LENGTH: u64 = 1 << 30;
/// Largest read block for hashing (the pipeline holds threads x buffers x block bytes).
pub const VERIFY_MAX_BLOCK: usize = 256 << 20;
/// Most buffers in flight per hashing thread.
pub const VERIFY_MAX_BUFFERS: usize = 16;
/// Most hashing threads.
pub const VERIFY_MAX_THREADS: usize = 256;
// ---- checkpoint side files (robustness pass) ----------------------------------------------

/// Largest `config.json` read beside a checkpoint (the release's is under 1 KB).
pub const CKPT_MAX_CONFIG_BYTES: u64 = 1 << 20;
