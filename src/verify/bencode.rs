//! A bounded bencode parser that keeps every value's byte span.
//!
//! Why spans: a torrent's infohash is the SHA-1 of the `info` value's bytes *exactly as they
//! appear in the file*. Re-encoding parsed fields (what several crates do) silently produces a
//! different hash for any non-canonical or extended file, so this parser never re-encodes: it
//! hands back `span` ranges into the input and the caller hashes `&input[span]`.
//!
//! Bounds: nesting depth ([`BENCODE_MAX_DEPTH`]) and total value count
//! ([`BENCODE_MAX_VALUES`]) are capped; every declared string length is checked against the
//! bytes actually present before it is used; nothing is allocated from a declared length.
//!
//! Strictness (BEP 3): integers must not have leading zeros, `-0` or an empty body, and must
//! fit in `i64`; string lengths must not have leading zeros; the input must hold exactly one
//! value (trailing bytes are an error). Dictionary keys: **duplicates are rejected** (which
//! value would a client use?), but **unsorted keys are tolerated** and flagged with
//! [`Document::noncanonical`]: older producers wrote unsorted dictionaries, and since the
//! infohash is taken over the original bytes, order does not change what is verified.

use crate::base::limits::{BENCODE_MAX_DEPTH, BENCODE_MAX_VALUES};
use std::ops::Range;

/// A bencode syntax or bound violation, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// Input ended inside a value.
    #[error("bencode: unexpected end of input at byte {offset} (inside {inside})")]
    Truncated {
        /// Offset where more bytes were needed.
        offset: usize,
        /// What was being read.
        inside: &'static str,
    },
    /// A byte that cannot start or continue a value here.
    #[error("bencode: unexpected byte 0x{byte:02x} at byte {offset}")]
    Unexpected {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A malformed integer (leading zero, `-0`, empty, overflow).
    #[error("bencode: bad integer at byte {offset}: {why}")]
    BadInt {
        /// Offset of the `i`.
        offset: usize,
        /// The defect.
        why: &'static str,
    },
    /// A string whose declared length is malformed or runs past the end of the input.
    #[error("bencode: bad string length at byte {offset}: {why}")]
    BadLength {
        /// Offset of the length prefix.
        offset: usize,
        /// The defect.
        why: String,
    },
    /// A dictionary key that appears twice.
    #[error("bencode: duplicate dictionary key {key:?} at byte {offset}")]
    DuplicateKey {
        /// Offset of the second occurrence.
        offset: usize,
        /// The key (lossy UTF-8).
        key: String,
    },
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key at byte {offset} is not a string")]
    NonStringKey {
        /// Offset of the key.
        offset: usize,
    },
    /// Nesting deeper than the cap.
    #[error("bencode: nesting deeper than {max} at byte {offset}")]
    TooDeep {
        /// Offset of the container that went too deep.
        offset: usize,
        /// The cap.
        max: usize,
    },
    /// More values than the cap.
    #[error("bencode: more than {max} values (at byte {offset})")]
    TooManyValues {
        /// Offset where the cap was hit.
        offset: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes after the single top-level value.
    #[error("bencode: {count} trailing bytes after the value, starting at byte {offset}")]
    Trailing {
        /// Offset of the first trailing byte.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
}

/// A parsed value. Byte strings borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `i...e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l...e`
    List(Vec<Value<'a>>),
    /// `d...e`, keys in file order.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

/// A value and the byte range it occupies in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    /// The value.
    pub kind: Kind<'a>,
    /// `input[span]` is this value's exact encoding.
    pub span: Range<usize>,
}

/// A parsed document: its single top-level value plus canonical-form notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    /// The top-level value.
    pub root: Value<'a>,
    /// True if some dictionary had keys out of sorted order (tolerated; see module docs).
    pub noncanonical: bool,
}

impl<'a> Value<'a> {
    /// Look up a dictionary key (`None` if not a dict or absent).
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match &self.kind {
            Kind::Dict(items) => items.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }
    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(v) => Some(v),
            _ => None,
        }
    }
    /// The dictionary items, if this is a dict.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match &self.kind {
            Kind::Dict(v) => Some(v),
            _ => None,
        }
    }
}

/// Parse exactly one bencode value from `input`.
pub fn parse(input: &[u8]) -> Result<Document<'_>, BencodeError> {
    let mut p = Parser {
        b: input,
        pos: 0,
        values: 0,
        noncanonical: false,
    };
    let root = p.value(0)?;
    if p.pos != input.len() {
        return Err(BencodeError::Trailing {
            offset: p.pos,
            count: input.len() - p.pos,
        });
    }
    Ok(Document {
        root,
        noncanonical: p.noncanonical,
    })
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    values: usize,
    noncanonical: bool,
}

impl<'a> Parser<'a> {
    fn peek(&self, inside: &'static str) -> Result<u8, BencodeError> {
        self.b
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Truncated {
                offset: self.pos,
                inside,
            })
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.values += 1;
        if self.values > BENCODE_MAX_VALUES {
            return Err(BencodeError::TooManyValues {
                offset: self.pos,
                max: BENCODE_MAX_VALUES,
            });
        }
        let start = self.pos;
        let kind = match self.peek("value")? {
            b'i' => Kind::Int(self.int()?),
            b'0'..=b'9' => Kind::Bytes(self.bytes()?),
            b'l' | b'd' => {
                if depth >= BENCODE_MAX_DEPTH {
                    return Err(BencodeError::TooDeep {
                        offset: start,
                        max: BENCODE_MAX_DEPTH,
                    });
                }
                if self.peek("value")? == b'l' {
                    self.list(depth)?
                } else {
                    self.dict(depth)?
                }
            }
            byte => {
                return Err(BencodeError::Unexpected {
                    offset: start,
                    byte,
                })
            }
        };
        Ok(Value {
            kind,
            span: start..self.pos,
        })
    }

    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let neg = self.peek("integer")? == b'-';
        if neg {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut v: i64 = 0;
        loop {
            let c = self.peek("integer")?;
            match c {
                b'0'..=b'9' => {
                    let d = i64::from(c - b'0');
                    v = v
                        .checked_mul(10)
                        .and_then(|x| {
                            if neg {
                                x.checked_sub(d)
                            } else {
                                x.checked_add(d)
                            }
                        })
                        .ok_or(BencodeError::BadInt {
                            offset: start,
                            why: "does not fit in 64 bits",
                        })?;
                    self.pos += 1;
                }
                b'e' => break,
                byte => {
                    return Err(BencodeError::Unexpected {
                        offset: self.pos,
                        byte,
                    })
                }
            }
        }
        let digits = &self.b[digits_start..self.pos];
        self.pos += 1; // 'e'
        match digits {
            [] => Err(BencodeError::BadInt {
                offset: start,
                why: "no digits",
            }),
            [b'0', _, ..] => Err(BencodeError::BadInt {
                offset: start,
                why: "leading zero",
            }),
            [b'0'] if neg => Err(BencodeError::BadInt {
                offset: start,
                why: "negative zero",
            }),
            _ => Ok(v),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let mut len: usize = 0;
        let mut ndigits = 0usize;
        loop {
            let c = self.peek("string length")?;
            match c {
                b'0'..=b'9' => {
                    if ndigits == 1 && len == 0 {
                        return Err(BencodeError::BadLength {
                            offset: start,
                            why: "leading zero".into(),
                        });
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|x| x.checked_add(usize::from(c - b'0')))
                        .ok_or_else(|| BencodeError::BadLength {
                            offset: start,
                            why: "length overflows".into(),
                        })?;
                    ndigits += 1;
                    self.pos += 1;
                }
                b':' => break,
                byte => {
                    return Err(BencodeError::Unexpected {
                        offset: self.pos,
                        byte,
                    })
                }
            }
        }
        self.pos += 1; // ':'
        let avail = self.b.len() - self.pos;
        if len > avail {
            return Err(BencodeError::BadLength {
                offset: start,
                why: format!("declares {len} bytes but only {avail} remain"),
            });
        }
        let s = &self.b[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn list(&mut self, depth: usize) -> Result<Kind<'a>, BencodeError> {
        self.pos += 1; // 'l'
        let mut items = Vec::new();
        while self.peek("list")? != b'e' {
            items.push(self.value(depth + 1)?);
        }
        self.pos += 1;
        Ok(Kind::List(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Kind<'a>, BencodeError> {
        self.pos += 1; // 'd'
        let mut items: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        // Built only once the keys go out of order, so canonical input costs nothing extra and
        // a hostile unsorted dictionary is still O(n log n), not O(n^2).
        let mut seen: Option<std::collections::BTreeSet<&'a [u8]>> = None;
        while self.peek("dictionary")? != b'e' {
            let key_at = self.pos;
            if !self.peek("dictionary")?.is_ascii_digit() {
                return Err(BencodeError::NonStringKey { offset: key_at });
            }
            self.values += 1;
            let key = self.bytes()?;
            if seen.is_none() && items.last().is_some_and(|(last, _)| key <= *last) {
                self.noncanonical = true;
                seen = Some(items.iter().map(|(k, _)| *k).collect());
            }
            if let Some(set) = seen.as_mut() {
                if !set.insert(key) {
                    return Err(BencodeError::DuplicateKey {
                        offset: key_at,
                        key: String::from_utf8_lossy(key).into_owned(),
                    });
                }
            }
            let v = self.value(depth + 1)?;
            items.push((key, v));
        }
        self.pos += 1;
        Ok(Kind::Dict(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_spans() {
        let d = parse(b"d3:agei-42e4:infod1:xli1ei2eee4:name3:abce").unwrap();
        assert!(!d.noncanonical);
        assert_eq!(d.root.get(b"age").unwrap().as_int(), Some(-42));
        let info = d.root.get(b"info").unwrap();
        assert_eq!(
            &b"d3:agei-42e4:infod1:xli1ei2eee4:name3:abce"[info.span.clone()],
            b"d1:xli1ei2eee"
        );
        assert_eq!(d.root.get(b"name").unwrap().as_bytes(), Some(&b"abc"[..]));
        assert_eq!(parse(b"0:").unwrap().root.as_bytes(), Some(&b""[..]));
        assert_eq!(parse(b"i0e").unwrap().root.as_int(), Some(0));
        assert_eq!(
            parse(b"i-9223372036854775808e").unwrap().root.as_int(),
            Some(i64::MIN)
        );
    }

    #[test]
    fn strict_integers_and_lengths() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"i-e",
            b"i9223372036854775808e",
            b"i1",
            b"i1x",
            b"01:a",
            b"5:abc",
            b"99999999999999999999999:a",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(
            parse(b"i1ei2e"),
            Err(BencodeError::Trailing {
                offset: 3,
                count: 3
            })
        ));
    }

    #[test]
    fn dict_keys() {
        assert!(parse(b"d1:bi1e1:ai2ee").unwrap().noncanonical);
        assert!(matches!(
            parse(b"d1:ai1e1:ai2ee"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            parse(b"d1:bi1e1:ci1e1:bi2ee"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            parse(b"d1:ci1e1:ai1e1:bi1e1:ci2ee"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            parse(b"di1ei2ee"),
            Err(BencodeError::NonStringKey { .. })
        ));
    }

    #[test]
    fn hostile() {
        let deep = vec![b'l'; 100_000];
        assert!(matches!(parse(&deep), Err(BencodeError::TooDeep { .. })));
        let full = b"d4:infod6:lengthi5e4:name1:xe1:zli1eli2eeee";
        assert!(parse(full).is_ok());
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err());
        }
    }
}
