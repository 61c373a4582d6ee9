//! BitTorrent v1 metainfo (`.torrent`) parsing and piece verification of a download on disk.
//!
//! Why: the release's only official integrity anchor is its magnet link (infohash
//! `5f96d435…`). Given the `.torrent` (or its info dict), this checks every piece's SHA-1
//! against the files on disk and reports the infohash so the user can compare it with the
//! magnet. Partial downloads are common, so the report distinguishes *bad* pieces (data present
//! but wrong) from *missing* ones (a file absent or short), and gives each file's verified
//! fraction.
//!
//! Facts honoured (BEP 3, BEP 47): the infohash is SHA-1 over the `info` value's exact bytes
//! (never re-encoded; see `bencode`); pieces run over the concatenation of files in `files`
//! order, crossing file boundaries; the last piece is short; padding files (`attr` contains
//! `p`) are virtual zeros never read from disk. A hostile torrent must not make grokit read
//! outside the root: every path component is checked (no `..`, `.`, empty, separators, NUL,
//! or over-long names). v2 (`meta version` 2, `file tree`) and hybrid torrents are refused.

//!
//! Layout: [`meta`] parses the metainfo; [`locate`] finds where the torrent's files are on disk
//! (the torrent's top folder may be the directory given, its `ckpt-0`, its parent, or a
//! directory named after the torrent); [`check`] verifies pieces and builds the report, with
//! the streaming piece hasher in `pieces`.

pub mod check;
pub mod locate;
pub mod meta;
mod pieces;

pub use check::{
    check_torrent, check_torrent_at, disk_path, BadPiece, FileReport, FileState, PieceState,
    TorrentReport,
};
pub use locate::{find_root, RootSearch};
pub use meta::{Torrent, TorrentError, TorrentFile};
