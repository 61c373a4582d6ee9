//! Making file-derived text safe to print on a terminal.
//!
//! Why: names inside files (a pickle's global, a GGUF tensor name or key, a torrent's file
//! paths, a manifest's paths, a tokenizer piece) reached the user's terminal verbatim, so a
//! crafted file could send escape sequences: retitle the window, rewrite what is on screen,
//! hide text, or (on some terminals) answer back as if the user had typed (issue #18,
//! class 11). Every string that comes from a file is passed through [`escape`] (or
//! [`escape_bytes`] / [`escape_path`]) before it is put into a message.
//!
//! What is escaped, and how (readable and unambiguous: a printed name maps back to exactly
//! one string):
//! - C0 controls (including ESC, BEL, CR, LF, TAB), DEL and the C1 controls U+0080..U+009F
//!   (CSI U+009B starts a sequence on many terminals): `\t`, `\n`, `\r` for the usual three,
//!   `\xNN` for the rest of the ASCII range, `\u{NN}` for C1;
//! - the Unicode bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E,
//!   U+2066..U+2069), which reorder what is shown ("Trojan Source"), and the line/paragraph
//!   separators U+2028/U+2029: `\u{XXXX}`;
//! - a backslash, as `\\`, so that an escaped text is never mistaken for a name that
//!   literally contains `\x1b`;
//! - in byte strings, bytes that are not valid UTF-8: `\xNN`.
//!
//! Everything else (all printable Unicode, SentencePiece's `▁`) passes through unchanged.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with control characters, bidirectional controls and backslashes escaped (see the
/// module docs); borrowed unchanged when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes from a file shown as text: valid UTF-8 runs go through [`escape`], every other byte
/// becomes `\xNN`.
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return escape(s);
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for &x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    Cow::Owned(out)
}

/// A path (possibly not UTF-8, possibly derived from a file's contents) shown as text.
pub fn escape_path(p: &Path) -> Cow<'_, str> {
    escape_bytes(p.as_os_str().as_encoded_bytes())
}

/// Text for the terminal that may already hold escapes: every control character (newlines
/// included, so a message stays one line), bidirectional control and line separator is
/// written as in [`escape`], but a backslash is left alone (so names escaped where the message
/// was built are not escaped twice). The CLI passes every error message through this before
/// printing it: the net under the per-name escaping of the readers.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\\' && needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c != '\\' && needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as a JSON/report string: the path itself when it is UTF-8, else [`escape_path`]
/// (non-UTF-8 bytes as `\xNN`). Why: serde refuses a non-UTF-8 `Path`, and `json!` turned
/// that refusal into a panic in `inspect --json` and `verify --json`.
pub fn path_string(p: &Path) -> String {
    match p.to_str() {
        Some(s) => s.to_owned(),
        None => escape_path(p).into_owned(),
    }
}

/// `serialize_with` for a path field of a report type (see [`path_string`]).
pub fn serialize_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path_string(p))
}

/// `serialize_with` for a list of paths (see [`path_string`]).
pub fn serialize_paths<S: serde::Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|p| path_string(p)))
}

/// `serialize_with` for `(path, size)` pairs, as reports list written files (see
/// [`path_string`]).
pub fn serialize_sized_paths<S: serde::Serializer>(
    v: &[(PathBuf, u64)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(p, n)| (path_string(p), *n)))
}

/// `Display` adapter: `format!("{}", Escaped(name))` prints `escape(name)`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert!(matches!(escape("plain ▁name.weight"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(escape("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\r\\n\\t\\x7f");
        assert_eq!(escape("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(escape("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(escape("back\\x1b"), "back\\\\x1b");
        assert_eq!(escape_bytes(b"ok\xff\x1b"), "ok\\xff\\x1b");
        assert_eq!(
            escape_path(Path::new("dir/\x1b[31mred")),
            "dir/\\x1b[31mred"
        );
        assert_eq!(format!("{}", Escaped("\x00")), "\\x00");
        // printable non-ASCII passes
        assert_eq!(escape("日本語 émoji 🎉"), "日本語 émoji 🎉");
    }

    #[test]
    fn sanitize_keeps_backslashes_and_paths_serialize() {
        assert_eq!(sanitize("a\\x1b\x1b[2J\nb"), "a\\x1b\\x1b[2J\\nb");
        assert!(matches!(sanitize("plain \\ text"), Cow::Borrowed(_)));
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"dir/\xffname"));
        assert_eq!(path_string(p), "dir/\\xffname");
        assert_eq!(path_string(Path::new("a/b")), "a/b");
    }

    #[test]
    fn no_control_survives() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = c.to_string();
            let e = escape(&s);
            assert!(
                !e.chars()
                    .any(|x| x.is_control() || needs_escape(x) && x != '\\'),
                "U+{:04X} -> {e:?}",
                c as u32
            );
        }
    }
}
