//! Parsing and validating one safetensors header against the bytes of its file.
//!
//! Why not just call the `safetensors` crate: its errors carry no file, offset or (for
//! overlap vs. gap) distinction, and it keeps the last of two duplicate keys. grokit parses
//! the header itself (typed, bounded: dims capped, duplicates rejected, no intermediate
//! `serde_json::Value` tree whose size could exceed the header's many times over), checks the
//! layout with distinct error kinds, and then asks the crate for a second opinion.

use super::{Result, StError};
use crate::base::limits::{ST_MAX_DIMS, ST_MAX_HEADER};
use crate::base::{DType, Shape};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

/// One tensor's header entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub begin: u64,
    pub end: u64,
}

/// A validated header.
#[derive(Clone, Debug)]
pub(crate) struct Parsed {
    /// File offset of the data buffer.
    pub data_start: u64,
    /// `__metadata__`, when present and not null.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tensors in data-offset order.
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Dims,
    data_offsets: [u64; 2],
}

/// A shape array that refuses more than [`ST_MAX_DIMS`] entries while parsing.
struct Dims(Vec<u64>);

impl<'de> Deserialize<'de> for Dims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of at most {ST_MAX_DIMS} unsigned integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Dims, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<u64>()? {
                    if v.len() == ST_MAX_DIMS {
                        return Err(de::Error::custom(format_args!(
                            "more than {ST_MAX_DIMS} dims"
                        )));
                    }
                    v.push(x);
                }
                Ok(Dims(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A JSON object of strings to strings that rejects duplicate keys (serde's maps keep the last).
pub(crate) struct UniqueStrMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for UniqueStrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueStrMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueStrMap, A::Error> {
                let mut m = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if m.contains_key(&k) {
                        return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueStrMap(m))
            }
        }
        d.deserialize_map(V)
    }
}

struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<(String, RawInfo)>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a safetensors header object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut seen = HashSet::new();
                let mut h = RawHeader {
                    metadata: None,
                    tensors: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    if key == super::plan::METADATA_KEY {
                        h.metadata = map
                            .next_value::<Option<BTreeMap<String, String>>>()
                            .map_err(|e| {
                                de::Error::custom(format_args!(
                                    "__metadata__ (must map strings to strings): {e}"
                                ))
                            })?;
                    } else {
                        let info = map
                            .next_value::<RawInfo>()
                            .map_err(|e| de::Error::custom(format_args!("tensor `{key}`: {e}")))?;
                        h.tensors.push((key, info));
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// Validate `bytes` (the whole file at `path`) and return its header.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let file_len = bytes.len() as u64;
    let p = || path.to_path_buf();
    let Some(prefix) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return Err(StError::TooSmall {
            path: p(),
            len: file_len,
        });
    };
    let n = u64::from_le_bytes(prefix);
    if n > ST_MAX_HEADER {
        return Err(StError::HeaderTooLarge {
            path: p(),
            len: n,
            max: ST_MAX_HEADER,
        });
    }
    // n <= 1e8, so 8 + n cannot overflow.
    let data_start = 8 + n;
    let header = usize::try_from(data_start)
        .ok()
        .and_then(|end| bytes.get(8..end));
    let Some(header) = header else {
        return Err(StError::HeaderPastEnd {
            path: p(),
            len: n,
            file_len,
        });
    };
    let text = std::str::from_utf8(header).map_err(|e| StError::HeaderNotUtf8 {
        path: p(),
        offset: 8 + e.valid_up_to() as u64,
    })?;
    let raw: RawHeader = serde_json::from_str(text).map_err(|e| StError::HeaderJson {
        path: p(),
        msg: e.to_string(),
    })?;

    let mut entries = Vec::with_capacity(raw.tensors.len());
    for (name, info) in raw.tensors {
        let Some(dtype) = DType::from_safetensors(&info.dtype) else {
            return Err(StError::UnsupportedDtype {
                path: p(),
                tensor: name,
                dtype: info.dtype,
            });
        };
        let [begin, end] = info.data_offsets;
        let expected = Shape::new(info.shape.0.clone())
            .byte_len(dtype.size())
            .unwrap_or(u64::MAX);
        if end < begin || end - begin != expected {
            return Err(StError::SizeMismatch {
                path: p(),
                tensor: name,
                begin,
                end,
                expected,
            });
        }
        entries.push(Entry {
            name,
            dtype,
            shape: info.shape.0,
            begin,
            end,
        });
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut at = 0u64;
    for e in &entries {
        if e.begin > at {
            return Err(StError::Gap {
                path: p(),
                tensor: e.name.clone(),
                begin: e.begin,
                expected: at,
            });
        }
        if e.begin < at {
            return Err(StError::Overlap {
                path: p(),
                tensor: e.name.clone(),
                begin: e.begin,
                expected: at,
            });
        }
        at = e.end;
    }
    let present = file_len - data_start;
    if at > present {
        return Err(StError::Truncated {
            path: p(),
            needed: at,
            present,
        });
    }
    if at < present {
        return Err(StError::TrailingBytes {
            path: p(),
            extra: present - at,
        });
    }
    // Second opinion from the reader every downstream loader shares.
    safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|source| StError::Crate { path: p(), source })?;
    Ok(Parsed {
        data_start,
        metadata: raw.metadata,
        entries,
    })
}
