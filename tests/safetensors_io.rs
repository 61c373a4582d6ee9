//! safetensors writer/reader: round trips (through grokit's reader AND the `safetensors`
//! crate), byte-identical reruns, identity with the crate's own serializer, hostile files.

use grokit::base::DType;
use grokit::safetensors_io::plan::INDEX_FILE_NAME;
use grokit::safetensors_io::{
    plan_shards, write_sha256sums, write_small_file, ShardPlan, ShardWriter, StError, StReader,
    StTensor, Written,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Deterministic test bytes for a tensor.
fn data_for(t: &StTensor) -> Vec<u8> {
    let n = t.byte_len().unwrap() as usize;
    let seed = t
        .name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    (0..n)
        .map(|i| (seed.wrapping_add(i as u32).wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

fn sample() -> Vec<StTensor> {
    vec![
        StTensor::new("model.embed_tokens.weight", DType::BF16, vec![16, 8]),
        StTensor::new("model.norm.weight", DType::F32, vec![8]),
        StTensor::new("model.layers.0.attn.q_proj.weight", DType::BF16, vec![8, 8]),
        StTensor::new(
            "model.layers.0.moe_block.gate.weight",
            DType::F32,
            vec![4, 8],
        ),
        StTensor::new("model.layers.0.q.weight_packed", DType::I32, vec![8, 1]),
        StTensor::new("model.layers.0.q.weight_scale", DType::F16, vec![8, 1]),
        StTensor::new("model.layers.0.q8", DType::I8, vec![7, 3]),
        StTensor::new("scalar", DType::F32, vec![]),
        StTensor::new("empty", DType::F16, vec![0, 4]),
        StTensor::new("wide", DType::F64, vec![3]),
        StTensor::new("big", DType::U8, vec![700]),
    ]
}

/// Write every shard of `plan` (data in 5-byte chunks), the index when sharded, and SHA256SUMS.
fn write_set(dir: &Path, tensors: &[StTensor], plan: &ShardPlan) -> Vec<Written> {
    let by_name: HashMap<&str, &StTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out = Vec::new();
    for shard in plan.shards() {
        let mut w = ShardWriter::create(dir, shard).unwrap();
        let layout: Vec<String> = w.layout().iter().map(|t| t.name.clone()).collect();
        for name in layout {
            w.begin_tensor(&name).unwrap();
            for c in data_for(by_name[name.as_str()]).chunks(5) {
                w.write_tensor_chunk(c).unwrap();
            }
        }
        out.push(w.finish().unwrap());
    }
    if plan.is_sharded() {
        out.push(write_small_file(dir, INDEX_FILE_NAME, plan.index_json().as_bytes()).unwrap());
    }
    write_sha256sums(dir, &out).unwrap();
    out
}

#[test]
fn sharded_round_trip_through_reader_and_crate() {
    let d = tempfile::tempdir().unwrap();
    let tensors = sample();
    let plan = plan_shards(&tensors, 300).unwrap();
    assert!(plan.shards().len() >= 3, "{}", plan.shards().len());
    let written = write_set(d.path(), &tensors, &plan);
    for (w, s) in written.iter().zip(plan.shards()) {
        assert_eq!(w.bytes, s.file_size());
    }

    // grokit's reader, via the directory (index) and via the index path.
    for open in [d.path().to_path_buf(), d.path().join(INDEX_FILE_NAME)] {
        let r = StReader::open(&open).unwrap();
        assert_eq!(r.len(), tensors.len());
        assert_eq!(r.declared_total_size(), Some(plan.total_size()));
        assert_eq!(r.total_size(), plan.total_size());
        for i in 0..plan.shards().len() {
            assert_eq!(
                r.file_metadata(i).unwrap(),
                &BTreeMap::from([("format".to_string(), "pt".to_string())])
            );
        }
        for t in &tensors {
            let e = r.tensor(&t.name).unwrap();
            assert_eq!((e.dtype, &e.shape), (t.dtype, &t.shape), "{}", t.name);
            assert_eq!(
                e.file.file_name().unwrap().to_str().unwrap(),
                plan.weight_map()[&t.name]
            );
            assert_eq!(
                e.file_offset % t.dtype.size() as u64,
                0,
                "{} misaligned",
                t.name
            );
            assert_eq!(r.tensor_bytes(&t.name).unwrap(), data_for(t), "{}", t.name);
        }
        assert!(matches!(r.tensor_bytes("nope"), Err(StError::NotFound(_))));
    }

    // The safetensors crate directly, shard by shard.
    for shard in plan.shards() {
        let bytes = std::fs::read(d.path().join(shard.file_name())).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), shard.tensors().len());
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .unwrap()
                .get("format")
                .map(String::as_str),
            Some("pt")
        );
        assert_eq!(
            meta.offset_keys(),
            shard
                .tensors()
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        );
        for p in shard.tensors() {
            let t = tensors.iter().find(|t| t.name == p.name).unwrap();
            let v = st.tensor(&p.name).unwrap();
            assert_eq!(v.dtype().to_string(), t.dtype.safetensors());
            assert_eq!(
                v.shape().iter().map(|&x| x as u64).collect::<Vec<_>>(),
                t.shape
            );
            assert_eq!(v.data(), data_for(t).as_slice());
        }
    }

    // SHA256SUMS lists every shard and the index, sorted, with matching hashes.
    let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), plan.shards().len() + 1);
    for w in &written {
        assert!(sums.contains(&format!("{}  {}\n", w.sha256, w.file_name())));
    }
}

#[test]
fn single_file_is_byte_identical_to_crate_serialize() {
    let d = tempfile::tempdir().unwrap();
    let tensors = sample();
    let plan = plan_shards(&tensors, u64::MAX).unwrap();
    assert_eq!(plan.shards().len(), 1);
    let written = write_set(d.path(), &tensors, &plan);
    assert_eq!(written.len(), 1);
    assert!(!d.path().join(INDEX_FILE_NAME).exists());
    let ours = std::fs::read(d.path().join("model.safetensors")).unwrap();

    let datas: Vec<Vec<u8>> = tensors.iter().map(data_for).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&datas)
        .map(|(t, b)| {
            let dt = grokit::safetensors_io::plan::crate_dtype(t.dtype).unwrap();
            let shape = t.shape.iter().map(|&x| x as usize).collect();
            (
                t.name.clone(),
                safetensors::tensor::TensorView::new(dt, shape, b).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let theirs = safetensors::serialize(views, Some(meta)).unwrap();
    assert_eq!(ours, theirs);
    // And StReader opens the directory as a single file.
    let r = StReader::open(d.path()).unwrap();
    assert!(r.index_path().is_none());
    assert_eq!(r.len(), tensors.len());
}

#[test]
fn reruns_are_byte_identical() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tensors = sample();
    let plan = plan_shards(&tensors, 200).unwrap();
    write_set(a.path(), &tensors, &plan);
    write_set(b.path(), &tensors, &plan_shards(&tensors, 200).unwrap());
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), plan.shards().len() + 2);
    for n in names {
        assert_eq!(
            std::fs::read(a.path().join(&n)).unwrap(),
            std::fs::read(b.path().join(&n)).unwrap(),
            "{n:?}"
        );
    }
}

#[test]
fn dropped_writer_leaves_no_file() {
    let d = tempfile::tempdir().unwrap();
    let tensors = sample();
    let plan = plan_shards(&tensors, u64::MAX).unwrap();
    {
        let mut w = ShardWriter::create(d.path(), &plan.shards()[0]).unwrap();
        let first = w.layout()[0].clone();
        w.write_tensor_chunk(&vec![0; first.byte_len() as usize])
            .unwrap();
        // Dropped here without finish().
    }
    assert!(!d.path().join("model.safetensors").exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "temp file left behind"
    );
}

// ---- hostile files ------------------------------------------------------------------------

/// A file from raw header JSON (padded to 8 with spaces) and data.
fn craft(json: &str, data: &[u8]) -> Vec<u8> {
    let mut h = json.as_bytes().to_vec();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut f = (h.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(&h);
    f.extend_from_slice(data);
    f
}

fn open_bytes(bytes: &[u8]) -> Result<StReader, StError> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.safetensors");
    std::fs::write(&p, bytes).unwrap();
    StReader::open(&p)
}

const GOOD: &str = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]}}"#;

#[test]
fn truncated_at_every_byte() {
    let full = craft(GOOD, &[1; 11]);
    let r = open_bytes(&full).unwrap();
    assert_eq!(r.tensor_bytes("b").unwrap(), &[1, 1, 1]);
    let data_start = full.len() - 11;
    for k in 0..full.len() {
        let e = match open_bytes(&full[..k]) {
            Ok(_) => panic!("truncated to {k} bytes accepted"),
            Err(e) => e,
        };
        let ok = if k < 8 {
            matches!(e, StError::TooSmall { len, .. } if len == k as u64)
        } else if k < data_start {
            matches!(e, StError::HeaderPastEnd { .. })
        } else {
            matches!(e, StError::Truncated { needed: 11, present, .. } if present == (k - data_start) as u64)
        };
        assert!(ok, "truncated to {k}: {e}");
        assert!(e.to_string().contains("x.safetensors"), "{e}");
    }
}

#[test]
fn huge_header_lengths() {
    let mut f = craft(GOOD, &[0; 11]);
    for (n, want_too_large) in [
        (u64::MAX, true),
        (100_000_001, true),
        (100_000_000, false),
        (4096, false),
    ] {
        f[..8].copy_from_slice(&n.to_le_bytes());
        match open_bytes(&f) {
            Err(StError::HeaderTooLarge { len, .. }) if want_too_large => assert_eq!(len, n),
            Err(StError::HeaderPastEnd { len, .. }) if !want_too_large => assert_eq!(len, n),
            other => panic!("n={n}: {:?}", other.err()),
        }
    }
}

#[test]
fn layout_defects_have_distinct_kinds() {
    let t = |a: &str, b: &str| {
        format!(
            r#"{{"a":{{"dtype":"F32","shape":[2],"data_offsets":{a}}},"b":{{"dtype":"F32","shape":[2],"data_offsets":{b}}}}}"#
        )
    };
    let overlap = open_bytes(&craft(&t("[0,8]", "[4,12]"), &[0; 12]))
        .err()
        .unwrap();
    assert!(
        matches!(&overlap, StError::Overlap { tensor, begin: 4, expected: 8, .. } if tensor == "b"),
        "{overlap}"
    );
    let gap = open_bytes(&craft(&t("[0,8]", "[12,20]"), &[0; 20]))
        .err()
        .unwrap();
    assert!(
        matches!(&gap, StError::Gap { tensor, begin: 12, expected: 8, .. } if tensor == "b"),
        "{gap}"
    );
    let late = open_bytes(&craft(&t("[4,12]", "[12,20]"), &[0; 20]))
        .err()
        .unwrap();
    assert!(
        matches!(&late, StError::Gap { tensor, begin: 4, expected: 0, .. } if tensor == "a"),
        "{late}"
    );
    let size = open_bytes(&craft(&t("[0,8]", "[8,12]"), &[0; 12]))
        .err()
        .unwrap();
    assert!(
        matches!(&size, StError::SizeMismatch { tensor, expected: 8, .. } if tensor == "b"),
        "{size}"
    );
    let backwards = open_bytes(&craft(&t("[0,8]", "[16,8]"), &[0; 16]))
        .err()
        .unwrap();
    assert!(
        matches!(backwards, StError::SizeMismatch { .. }),
        "{backwards}"
    );
    let trailing = open_bytes(&craft(&t("[0,8]", "[8,16]"), &[0; 17]))
        .err()
        .unwrap();
    assert!(
        matches!(trailing, StError::TrailingBytes { extra: 1, .. }),
        "{trailing}"
    );
    let overflow = open_bytes(&craft(
        r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#,
        &[0; 8],
    ))
    .err()
    .unwrap();
    assert!(
        matches!(
            overflow,
            StError::SizeMismatch {
                expected: u64::MAX,
                ..
            }
        ),
        "{overflow}"
    );
}

#[test]
fn header_content_defects() {
    // Non-UTF-8: the offset of the bad byte is reported.
    let mut f = craft(GOOD, &[0; 11]);
    f[20] = 0xff;
    let e = open_bytes(&f).err().unwrap();
    assert!(
        matches!(e, StError::HeaderNotUtf8 { offset: 20, .. }),
        "{e}"
    );
    let json = |h: &str| open_bytes(&craft(h, &[])).err().unwrap();
    for bad in [
        "[1,2]",
        "{",
        r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#,
        r#"{"__metadata__":{"format":1}}"#,
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#,
        r#"{"a":{"dtype":"F32","data_offsets":[0,0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0,0]}}"#,
    ] {
        let e = json(bad);
        assert!(matches!(e, StError::HeaderJson { .. }), "{bad}: {e}");
    }
    let dims = format!(
        r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[0,1]}}}}"#,
        vec!["1"; 65].join(",")
    );
    assert!(
        matches!(open_bytes(&craft(&dims, &[0])).err().unwrap(), StError::HeaderJson { msg, .. } if msg.contains("dims"))
    );
    // Unknown or unsupported dtypes: a clear error, not a panic.
    for dt in ["F8_E4M3", "BOOL", "U64", "Q4_K"] {
        let h = format!(r#"{{"t":{{"dtype":"{dt}","shape":[1],"data_offsets":[0,1]}}}}"#);
        let e = open_bytes(&craft(&h, &[0])).err().unwrap();
        assert!(
            matches!(&e, StError::UnsupportedDtype { tensor, dtype, .. } if tensor == "t" && dtype == dt),
            "{dt}: {e}"
        );
    }
    // Accepted edge cases: no metadata, null metadata, no tensors, leading whitespace.
    for ok in [
        r#"{}"#,
        r#"{"__metadata__":null}"#,
        r#"  {"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}"#,
    ] {
        let data: &[u8] = if ok.contains("\"a\"") { &[9] } else { &[] };
        let r = open_bytes(&craft(ok, data)).unwrap();
        assert!(r.metadata().is_none());
    }
}

#[test]
fn mutated_files_never_panic() {
    let base = craft(GOOD, &[3; 11]);
    let mut x = 0x2545F4914F6CDD1Du64;
    for _ in 0..400 {
        let mut f = base.clone();
        for _ in 0..1 + (x % 3) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % f.len() as u64) as usize;
            f[i] = (x >> 32) as u8;
        }
        if let Ok(r) = open_bytes(&f) {
            for t in r.tensors() {
                r.tensor_bytes(&t.name).unwrap();
            }
        }
    }
}

#[test]
fn bad_indexes() {
    let d = tempfile::tempdir().unwrap();
    let tensors = sample();
    let plan = plan_shards(&tensors, 300).unwrap();
    write_set(d.path(), &tensors, &plan);
    let idx = d.path().join(INDEX_FILE_NAME);
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
    let try_index = |v: &serde_json::Value| {
        std::fs::write(&idx, serde_json::to_string(v).unwrap()).unwrap();
        StReader::open(d.path()).err()
    };
    let mut v = good.clone();
    v["weight_map"]["big"] = "../etc/passwd".into();
    assert!(matches!(try_index(&v), Some(StError::BadIndex { msg, .. }) if msg.contains("plain")));
    let mut v = good.clone();
    v["weight_map"]["ghost"] = plan.shards()[0].file_name().into();
    assert!(matches!(try_index(&v), Some(StError::BadIndex { msg, .. }) if msg.contains("ghost")));
    let mut v = good.clone();
    v["weight_map"].as_object_mut().unwrap().remove("scalar");
    assert!(matches!(try_index(&v), Some(StError::BadIndex { msg, .. }) if msg.contains("scalar")));
    let mut v = good.clone();
    let first = plan.shards()[0].tensors()[0].name.clone();
    let other = plan.shards()[1].file_name().to_string();
    v["weight_map"][&first] = other.into();
    assert!(matches!(try_index(&v), Some(StError::BadIndex { msg, .. }) if msg.contains(&first)));
    let mut v = good.clone();
    v["weight_map"]["big"] = "missing.safetensors".into();
    assert!(matches!(try_index(&v), Some(StError::Io(_))));
    assert!(try_index(&good).is_none());
    // Duplicate keys in weight_map are refused, not silently collapsed.
    let text = serde_json::to_string(&good).unwrap().replacen(
        "\"weight_map\":{",
        "\"weight_map\":{\"big\":\"x.safetensors\",",
        1,
    );
    std::fs::write(&idx, text).unwrap();
    assert!(
        matches!(StReader::open(d.path()).err(), Some(StError::BadIndex { msg, .. }) if msg.contains("duplicate"))
    );
    std::fs::remove_file(&idx).unwrap();
    assert!(matches!(
        StReader::open(d.path()).err(),
        Some(StError::NoModel { .. })
    ));
}
