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
