//! GGUF writer and reader: round trips, a hand-computed golden header, split sets, and
//! hostile inputs built byte by byte (each asserting the error kind), with guard cases for
//! legal edge cases.

use grokit::gguf::{
    ArrayValue, FilePlan, GgufError, GgufFile, GgufFileWriter, GgufPlan, GgufSet, TensorPlan, Value,
};
use grokit::quant::GgmlType;
use std::path::Path;

// ---- helpers ------------------------------------------------------------------------------

fn every_value() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", "grok".into()),
        kv("t.u8", Value::U8(200)),
        kv("t.i8", Value::I8(-100)),
        kv("t.u16", Value::U16(65535)),
        kv("t.i16", Value::I16(-32768)),
        kv("t.u32", Value::U32(4_000_000_000)),
        kv("t.i32", Value::I32(-2_000_000_000)),
        kv("t.f32", Value::F32(-0.1)),
        kv("t.bool", Value::Bool(true)),
        kv("t.string", "▁héllo <0x0A>".into()),
        kv("t.empty_string", "".into()),
        kv("t.u64", Value::U64(u64::MAX)),
        kv("t.i64", Value::I64(i64::MIN)),
        kv("t.f64", Value::F64(1e300)),
        kv("a.u8", vec![1u8, 2, 255].into()),
        kv("a.i8", vec![-1i8, 127].into()),
        kv("a.u16", vec![1u16, 65535].into()),
        kv("a.i16", vec![-1i16, 2].into()),
        kv("a.u32", vec![7u32].into()),
        kv("a.i32", vec![1i32, 2, 3, 6].into()),
        kv("a.f32", vec![0.0f32, -0.0, -1.0, 3.5e-38].into()),
        kv("a.bool", vec![true, false, true].into()),
        kv(
            "a.str",
            vec!["[PAD]".to_string(), String::new(), "▁▁".to_string()].into(),
        ),
        kv("a.u64", vec![u64::MAX, 0].into()),
        kv("a.i64", vec![i64::MIN, 5].into()),
        kv("a.f64", vec![f64::MIN_POSITIVE, -2.0].into()),
    ]
}

fn tensors() -> Vec<TensorPlan> {
    vec![
        TensorPlan::new("token_embd.weight", vec![3u64, 64], GgmlType::Q8_0),
        TensorPlan::new("output_norm.weight", vec![5u64], GgmlType::F32),
        TensorPlan::new("blk.0.attn_q.weight", vec![2u64, 3, 4], GgmlType::F16),
        TensorPlan::new("blk.0.attn_k.weight", vec![1u64, 7], GgmlType::BF16),
        TensorPlan::new(
            "blk.0.ffn_up_exps.weight",
            vec![2u64, 1, 2, 256],
            GgmlType::Q4_K,
        ),
        TensorPlan::new("blk.0.i32", vec![3u64], GgmlType::I32),
    ]
}

/// Deterministic bytes for a tensor (a cheap LCG seeded by its name).
fn data_for(name: &str, n: u64) -> Vec<u8> {
    let mut s: u32 = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 24) as u8
        })
        .collect()
}

/// Write planned files, streaming each tensor in chunks of 7 bytes.
fn write(files: &[FilePlan]) {
    for f in files {
        let mut w = GgufFileWriter::create(f.clone()).unwrap();
        for t in f.tensors() {
            for c in data_for(&t.name, t.nbytes).chunks(7) {
                w.write_tensor_chunk(c).unwrap();
            }
        }
        let done = w.finish().unwrap();
        assert_eq!(done.bytes, f.file_len());
        assert_eq!(std::fs::metadata(&done.path).unwrap().len(), f.file_len());
    }
}

fn plan() -> GgufPlan {
    GgufPlan::new(every_value(), tensors())
}

// ---- round trips --------------------------------------------------------------------------

#[test]
fn round_trip_every_value_type_and_tensor_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let files = plan().split(None, &out).unwrap();
    assert_eq!(files.len(), 1);
    write(&files);
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.kvs(), &every_value()[..]);
    assert_eq!(f.get("t.u16"), Some(&Value::U16(65535)));
    assert_eq!(f.tensors().len(), tensors().len());
    for (t, p) in f.tensors().iter().zip(tensors()) {
        assert_eq!(
            (t.name.as_str(), &t.shape, t.ty),
            (p.name.as_str(), &p.shape, p.ty)
        );
        assert_eq!(t.ne, p.ne());
        assert_eq!(t.nbytes, p.nbytes().unwrap());
        assert_eq!(t.offset % 32, 0);
        assert_eq!(f.tensor_data(t), &data_for(&t.name, t.nbytes)[..]);
    }
    // Determinism: the same plan and data give identical bytes.
    let out2 = dir.path().join("m2.gguf");
    write(&plan().split(None, &out2).unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn split_set_has_the_same_content_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("one.gguf");
    write(&plan().split(None, &single).unwrap());
    let out = dir.path().join("grok.gguf");
    let files = plan().split(Some(150), &out).unwrap();
    assert!(files.len() >= 3, "{}", files.len());
    let names: Vec<_> = files
        .iter()
        .map(|f| f.path().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], format!("grok-00001-of-{:05}.gguf", files.len()));
    let summary = grokit::gguf::plan_summary(&files);
    assert!(
        summary.contains(&names[1]) && summary.contains("blk.0.attn_k.weight"),
        "{summary}"
    );
    write(&files);
    let one = GgufSet::open(&single).unwrap();
    let set = GgufSet::open(files[0].path()).unwrap();
    assert_eq!(set.files().len(), files.len());
    assert_eq!(set.tensor_count(), one.tensor_count());
    let meta: Vec<_> = set
        .kvs()
        .iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .cloned()
        .collect();
    assert_eq!(meta, one.kvs());
    for (i, f) in set.files().iter().enumerate() {
        assert_eq!(f.get("split.no"), Some(&Value::U16(i as u16)));
        assert_eq!(f.get("split.count"), Some(&Value::U16(files.len() as u16)));
        assert_eq!(f.get("split.tensors.count"), Some(&Value::I32(6)));
        if i > 0 {
            assert_eq!(f.kvs().len(), 3, "only split keys after the first shard");
        }
        assert_eq!(f.tensors().first().map(|t| t.rel_offset), Some(0));
    }
    for (_, t) in one.tensors() {
        assert_eq!(
            set.tensor_data(&t.name),
            one.tensor_data(&t.name),
            "{}",
            t.name
        );
        assert_eq!(set.tensor(&t.name).unwrap().1.shape, t.shape);
    }
    // llama.cpp only opens a set from shard 1; a missing shard is named.
    assert!(matches!(
        GgufSet::open(files[1].path()),
        Err(GgufError::BadSplit { .. })
    ));
    std::fs::remove_file(files[2].path()).unwrap();
    let e = GgufSet::open(files[0].path()).unwrap_err();
    assert!(
        matches!(&e, GgufError::BadSplit { reason, .. } if reason.contains("missing")),
        "{e}"
    );
}

#[test]
fn non_default_alignment_is_written_and_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan();
    p.alignment = 64;
    let files = p.split(Some(200), &dir.path().join("a.gguf")).unwrap();
    write(&files);
    let set = GgufSet::open(files[0].path()).unwrap();
    for f in set.files() {
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_start() % 64, 0);
        assert!(f.tensors().iter().all(|t| t.offset % 64 == 0));
    }
}

// ---- golden header ------------------------------------------------------------------------

#[test]
fn golden_header_for_a_tiny_plan() {
    let p = GgufPlan::new(
        vec![("general.architecture".into(), "grok".into())],
        vec![TensorPlan::new("a", vec![2u64], GgmlType::F32)],
    );
    let files = p.split(None, Path::new("unused.gguf")).unwrap();
    let mut want: Vec<u8> = Vec::new();
    want.extend(b"GGUF");
    want.extend([3, 0, 0, 0]); // version
    want.extend([1, 0, 0, 0, 0, 0, 0, 0]); // tensor count
    want.extend([1, 0, 0, 0, 0, 0, 0, 0]); // kv count
    want.extend([20, 0, 0, 0, 0, 0, 0, 0]);
    want.extend(b"general.architecture");
    want.extend([8, 0, 0, 0]); // STRING
    want.extend([4, 0, 0, 0, 0, 0, 0, 0]);
    want.extend(b"grok"); // 68 bytes so far
    want.extend([1, 0, 0, 0, 0, 0, 0, 0]);
    want.extend(b"a");
    want.extend([1, 0, 0, 0]); // n_dims
    want.extend([2, 0, 0, 0, 0, 0, 0, 0]); // ne[0]
    want.extend([0, 0, 0, 0]); // F32
    want.extend([0, 0, 0, 0, 0, 0, 0, 0]); // offset; 101 bytes so far
    want.extend([0u8; 27]); // pad to 128
    assert_eq!(files[0].header_bytes(), want);
    assert_eq!(files[0].header_len(), 128);
    assert_eq!(files[0].file_len(), 160);
}

// ---- streaming writer errors --------------------------------------------------------------

#[test]
fn writer_refuses_wrong_byte_counts_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.gguf");
    let p = GgufPlan::new(
        vec![],
        vec![
            TensorPlan::new("x", vec![4u64], GgmlType::F32),
            TensorPlan::new("y", vec![1u64], GgmlType::F32),
        ],
    );
    let f = p.split(None, &out).unwrap().remove(0);
    let mut w = GgufFileWriter::create(f.clone()).unwrap();
    let e = w.write_tensor_chunk(&[0; 17]).unwrap_err();
    assert!(
        matches!(&e, GgufError::ChunkOverflow { name, expected: 16, got: 17, .. } if name == "x"),
        "{e}"
    );
    w.write_tensor_chunk(&[1; 10]).unwrap();
    let e = w.write_tensor(&[1; 2]).unwrap_err();
    assert!(
        matches!(&e, GgufError::TensorIncomplete { name, .. } if name == "x"),
        "{e}"
    );
    w.write_tensor_chunk(&[1; 6]).unwrap();
    assert_eq!(w.current_tensor().map(|t| t.name.as_str()), Some("y"));
    let e = w.finish().unwrap_err();
    assert!(
        matches!(&e, GgufError::TensorIncomplete { name, expected: 4, got: 0, .. } if name == "y"),
        "{e}"
    );
    assert!(!out.exists());
    let mut w = GgufFileWriter::create(f).unwrap();
    w.write_tensor(&[1; 16]).unwrap();
    w.write_tensor(&[2; 4]).unwrap();
    assert!(matches!(
        w.write_tensor_chunk(&[0]),
        Err(GgufError::NoTensorPending { len: 1, .. })
    ));
    w.finish().unwrap();
    assert!(GgufFile::open(&out).is_ok());
}

// ---- plan validation ----------------------------------------------------------------------

#[test]
fn plan_validation_names_the_offender() {
    let t = |name: &str, shape: Vec<u64>, ty| {
        GgufPlan::new(vec![], vec![TensorPlan::new(name, shape, ty)])
    };
    let long = "x".repeat(64);
    let cases = [
        t(&long, vec![1], GgmlType::F32),
        t("", vec![1], GgmlType::F32),
        t("five", vec![1, 1, 1, 1, 1], GgmlType::F32),
        t("scalar", vec![], GgmlType::F32),
        t("q8", vec![2, 33], GgmlType::Q8_0),
        t("huge", vec![u64::MAX, 2], GgmlType::F32),
    ];
    for p in cases {
        assert!(
            matches!(p.validate(), Err(GgufError::PlanTensor { .. })),
            "{:?}",
            p.tensors
        );
    }
    let dup = GgufPlan::new(
        vec![],
        vec![TensorPlan::new("a", vec![1u64], GgmlType::F32); 2],
    );
    assert!(
        matches!(dup.validate(), Err(GgufError::PlanTensor { reason, .. }) if reason.contains("duplicate"))
    );
    assert!(GgufPlan::new(
        vec![],
        vec![TensorPlan::new(
            "x".repeat(63),
            vec![1u64, 1, 1, 32],
            GgmlType::Q8_0
        )]
    )
    .validate()
    .is_ok());

    let k = |key: &str, v: Value| GgufPlan::new(vec![(key.into(), v)], vec![]);
    for p in [
        k("", 1u32.into()),
        k("général", 1u32.into()),
        k("split.no", Value::U16(0)),
        k("general.alignment", Value::U64(32)),
        k("general.alignment", Value::U32(64)),
        k("a", Value::Array(ArrayValue::F32(vec![]))),
        k("general.file_type", Value::I32(7)),
        k("tokenizer.ggml.bos_token_id", Value::I32(1)),
        k("tokenizer.ggml.scores", vec![0.0f64].into()),
        k("tokenizer.ggml.token_type", vec![1u32].into()),
    ] {
        assert!(
            matches!(p.validate(), Err(GgufError::PlanKey { .. })),
            "{:?}",
            p.kvs
        );
    }
    let grok = |key: &str, v: Value| {
        GgufPlan::new(
            vec![
                ("general.architecture".into(), "grok".into()),
                (key.into(), v),
            ],
            vec![],
        )
    };
    let e = grok("grok.block_count", Value::U64(64))
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("UINT32"), "{e}");
    assert!(
        grok("grok.attention.layer_norm_rms_epsilon", Value::F64(1e-5))
            .validate()
            .is_err()
    );
    assert!(
        grok("grok.feed_forward_length", vec![32768u32].into())
            .validate()
            .is_err(),
        "u32 arrays are rejected"
    );
    assert!(grok("grok.feed_forward_length", vec![32768i32].into())
        .validate()
        .is_ok());
    assert!(
        grok("llama.block_count", Value::U64(1)).validate().is_ok(),
        "another arch's keys are free-form"
    );
    let dup = GgufPlan::new(
        vec![("a".into(), 1u8.into()), ("a".into(), 2u8.into())],
        vec![],
    );
    assert!(matches!(dup.validate(), Err(GgufError::PlanKey { .. })));
    let mut p = plan();
    p.alignment = 48;
    assert!(matches!(
        p.validate(),
        Err(GgufError::PlanAlignment { alignment: 48 })
    ));
}

// ---- hostile inputs, built byte by byte ---------------------------------------------------

/// A hand-assembled GGUF file (bypasses every writer check).
#[derive(Default)]
struct Raw {
    b: Vec<u8>,
}

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kvs: u64) -> Raw {
        let mut r = Raw::default();
        r.b.extend(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kvs);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.b.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.b.extend(v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.b.extend(s);
        self
    }
    /// key + type id + raw value bytes
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        self.str(key.as_bytes()).u32(ty);
        self.b.extend(value);
        self
    }
    fn info(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while !self.b.len().is_multiple_of(align) {
            self.b.push(0);
        }
        self
    }
    fn data(&mut self, n: usize) -> &mut Self {
        self.b.extend(std::iter::repeat_n(0xAB, n));
        self
    }
    fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(self.b.clone(), "hostile.gguf")
    }
}

/// Two F32 tensors of 4 and 1 elements, data padded, one string KV.
fn valid_raw() -> Raw {
    let mut r = Raw::header(3, 2, 1);
    r.kv(
        "general.architecture",
        8,
        &[4, 0, 0, 0, 0, 0, 0, 0, b'g', b'r', b'o', b'k'],
    );
    r.info("a", &[4], 0, 0)
        .info("b", &[1], 0, 32)
        .pad(32)
        .data(16)
        .pad(32)
        .data(4);
    r
}

macro_rules! assert_err {
    ($r:expr, $pat:pat) => {{
        let e = $r.parse().unwrap_err();
        assert!(matches!(e, $pat), "unexpected error: {e}");
        e
    }};
}

#[test]
fn truncation_at_every_byte_errors_without_panicking() {
    let full = valid_raw().b;
    let f = GgufFile::from_bytes(full.clone(), "x.gguf").unwrap();
    let data_end = f.tensors().last().map(|t| t.offset + t.nbytes).unwrap() as usize;
    assert_eq!(data_end, full.len());
    for cut in 0..full.len() {
        let e = GgufFile::from_bytes(full[..cut].to_vec(), "x.gguf").unwrap_err();
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. }
                    | GgufError::DataOutOfBounds { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::StringTooLong { .. }
            ),
            "cut {cut}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("x.gguf") && msg.contains("byte") || msg.contains("not within"),
            "{msg}"
        );
    }
}

#[test]
fn hostile_lengths_and_counts_are_refused_before_allocation() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).u32(8).u64(0);
    assert_err!(r, GgufError::StringTooLong { offset: 24, .. });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(8).u64(1 << 40);
    assert_err!(r, GgufError::StringTooLong { .. });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(6).u64(1 << 62);
    let e = assert_err!(r, GgufError::CountTooLarge { .. });
    assert!(e.to_string().contains("key 'k'"), "{e}");
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(8).u64(1 << 31); // strings: more than the cap and the bytes
    assert_err!(r, GgufError::CountTooLarge { .. });
    assert_err!(
        Raw::header(3, 0, u64::MAX),
        GgufError::CountTooLarge { offset: 16, .. }
    );
    assert_err!(
        Raw::header(3, 1 << 40, 0),
        GgufError::CountTooLarge { offset: 8, .. }
    );
}

#[test]
fn wrong_magic_and_versions() {
    let mut r = valid_raw();
    r.b[0] = b'g';
    assert_err!(r, GgufError::BadMagic { .. });
    for v in [0u32, 1, 4, 0x0003_0000] {
        let mut r = valid_raw();
        r.b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = assert_err!(r, GgufError::UnsupportedVersion { .. });
        assert!(e.to_string().contains(&v.to_string()), "{e}");
    }
    let mut r = valid_raw();
    r.b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        r.parse().unwrap().version(),
        2,
        "v2 has the v3 layout and stays readable"
    );
}

#[test]
fn bad_values() {
    let one = |ty: u32, v: &[u8]| {
        let mut r = Raw::header(3, 0, 1);
        r.kv("k", ty, v);
        r
    };
    assert_err!(one(13, &[0]), GgufError::BadValueType { id: 13, .. });
    assert_err!(
        one(9, &[9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
        GgufError::NestedArray { .. }
    );
    assert_err!(
        one(9, &[77, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
        GgufError::BadValueType { id: 77, .. }
    );
    assert_err!(one(7, &[2]), GgufError::BadBool { byte: 2, .. });
    assert_err!(
        one(8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]),
        GgufError::BadUtf8 { .. }
    );
    let mut r = Raw::header(3, 0, 2);
    r.kv("k", 0, &[1]).kv("k", 0, &[2]);
    assert_err!(r, GgufError::DuplicateKey { offset: 38, .. });
    assert_err!(one(4, &[1, 0]), GgufError::Truncated { .. });
}

#[test]
fn bad_tensor_infos() {
    let t = |name: &str, ne: &[u64], ty: u32| {
        let mut r = Raw::header(3, 1, 0);
        r.info(name, ne, ty, 0).pad(32).data(1 << 12);
        r
    };
    assert_err!(
        t(&"n".repeat(64), &[1], 0),
        GgufError::BadTensorInfo { offset: 24, .. }
    );
    assert_err!(
        t("five", &[1, 1, 1, 1, 1], 0),
        GgufError::BadTensorInfo { .. }
    );
    assert_err!(t("neg", &[u64::MAX], 0), GgufError::BadTensorInfo { .. });
    assert_err!(
        t("big", &[1 << 40, 1 << 40], 0),
        GgufError::BadTensorInfo { .. }
    );
    assert_err!(t("q8", &[33], 8), GgufError::BadTensorInfo { .. });
    assert_err!(
        t("ty", &[1], 31),
        GgufError::UnknownTensorType { id: 31, .. }
    );
    assert_err!(t("ty", &[1], 4), GgufError::UnknownTensorType { id: 4, .. });
    let mut r = Raw::header(3, 2, 0);
    r.info("same", &[1], 0, 0)
        .info("same", &[1], 0, 32)
        .pad(32)
        .data(64);
    let e = assert_err!(r, GgufError::DuplicateTensor { .. });
    assert!(e.to_string().contains("'same'"));
}

#[test]
fn offsets_and_bounds_follow_ggml() {
    let two = |off_b: u64| {
        let mut r = Raw::header(3, 2, 0);
        r.info("a", &[4], 0, 0)
            .info("b", &[1], 0, off_b)
            .pad(32)
            .data(96);
        r
    };
    assert!(two(32).parse().is_ok());
    let e = assert_err!(two(16), GgufError::MisalignedOffset { found: 16, .. });
    assert!(e.to_string().contains("'b'"), "{e}");
    assert_err!(
        two(64),
        GgufError::UnexpectedOffset {
            found: 64,
            expected: 32,
            ..
        }
    );
    assert_err!(
        two(0),
        GgufError::UnexpectedOffset {
            found: 0,
            expected: 32,
            ..
        }
    );
    let mut r = Raw::header(3, 1, 0);
    r.info("a", &[4], 0, 0).pad(32).data(15);
    let e = assert_err!(r, GgufError::DataOutOfBounds { .. });
    assert!(e.to_string().contains("'a'"));
    let mut r = Raw::header(3, 1, 0);
    r.info("a", &[4], 0, 0); // no padding, no data
    assert_err!(r, GgufError::Truncated { .. });
}

#[test]
fn alignment_key_rules() {
    let with_align = |ty: u32, v: &[u8]| {
        let mut r = Raw::header(3, 0, 1);
        r.kv("general.alignment", ty, v);
        r
    };
    assert_err!(
        with_align(10, &64u64.to_le_bytes()),
        GgufError::WrongKeyType { .. }
    );
    assert_err!(
        with_align(4, &0u32.to_le_bytes()),
        GgufError::BadAlignment { value: 0, .. }
    );
    assert_err!(
        with_align(4, &48u32.to_le_bytes()),
        GgufError::BadAlignment { value: 48, .. }
    );
    let mut r = Raw::header(3, 2, 1);
    r.kv("general.alignment", 4, &64u32.to_le_bytes());
    r.info("a", &[4], 0, 0)
        .info("b", &[1], 0, 64)
        .pad(64)
        .data(68);
    let f = r.parse().unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.tensors()[1].offset, f.data_start() + 64);
}

#[test]
fn legal_edge_cases_still_parse() {
    // Zero tensors, zero KVs, no padding at all.
    let f = Raw::header(3, 0, 0).parse().unwrap();
    assert!(f.kvs().is_empty() && f.tensors().is_empty());
    // Empty strings, empty key, an empty array (ggml reads them), 0 dims, a zero-size tensor,
    // no trailing padding after the last tensor.
    let mut r = Raw::header(3, 3, 3);
    r.kv("s", 8, &[0; 8])
        .kv("", 8, &[0; 8])
        .kv("arr", 9, &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    r.info("", &[], 0, 0)
        .info("zero", &[0, 5], 0, 32)
        .info("last", &[3], 1, 32)
        .pad(32)
        .data(4)
        .pad(32)
        .data(6);
    let f = r.parse().unwrap();
    assert_eq!(f.get("s"), Some(&Value::String(String::new())));
    assert_eq!(f.get("arr"), Some(&Value::Array(ArrayValue::F32(vec![]))));
    assert_eq!(f.tensors()[0].shape, Vec::<u64>::new());
    assert_eq!(f.tensors()[0].nbytes, 4);
    assert_eq!(f.tensors()[1].nbytes, 0);
    assert_eq!(f.tensor_data(&f.tensors()[2]), &[0xAB; 6]);
    // A valid file still validates after the hostile cases above.
    assert!(valid_raw().parse().is_ok());
}

#[test]
fn every_prefix_and_byte_flip_of_a_rich_file_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rich.gguf");
    let files = plan().split(None, &out).unwrap();
    write(&files);
    let full = std::fs::read(&out).unwrap();
    let header = files[0].header_len() as usize;
    let last = GgufFile::open(&out)
        .unwrap()
        .tensors()
        .last()
        .map(|t| (t.offset + t.nbytes) as usize)
        .unwrap();
    for cut in 0..full.len() {
        let r = GgufFile::from_bytes(full[..cut].to_vec(), "rich.gguf");
        assert_eq!(r.is_ok(), cut >= last, "cut {cut}");
    }
    // Flipping any header byte must give Ok or a clean error, never a panic or a huge allocation.
    for i in 0..header {
        for v in [0x00u8, 0xFF, 0x80] {
            let mut b = full.clone();
            b[i] = v;
            let _ = GgufFile::from_bytes(b, "flip.gguf");
        }
    }
}
