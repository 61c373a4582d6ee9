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
use std::path::Path;

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
