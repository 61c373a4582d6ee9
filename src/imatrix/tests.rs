use super::*;

fn shapes_and_data() -> (Vec<EntryShape>, Vec<EntryData>) {
    let mk = |name: &str, ne0: usize, counts: Vec<i64>| {
        let n_mat = counts.len();
        let sums: Vec<f32> = (0..ne0 * n_mat).map(|i| (i as f32 + 1.0) * 0.5).collect();
        (
            EntryShape {
                name: name.into(),
                ne0,
                n_mat,
                counts: counts.clone(),
            },
            EntryData {
                name: name.into(),
                sums,
                counts,
            },
        )
    };
    let v = [
        mk("blk.0.attn_q.weight", 64, vec![1024]),
        mk(
            "blk.0.ffn_up_exps.weight",
            64,
            vec![300, 0, 724, 0, 10, 20, 30, 40],
        ),
        mk("blk.0.ffn_down_exps.weight", 32, vec![0; 8]),
    ];
    v.into_iter().unzip()
}

fn meta() -> Meta {
    Meta {
        datasets: vec!["calib.txt".into()],
        chunk_count: 2,
        chunk_size: 512,
    }
}

fn write(dir: &Path, name: &str, f: Format) -> PathBuf {
    let (shapes, data) = shapes_and_data();
    let p = dir.join(name);
    let get = |n: &str| Ok(data.iter().find(|d| d.name == n).unwrap().clone());
    match f {
        Format::Gguf => write_gguf(&p, &meta(), &shapes, get, false).unwrap(),
        Format::Dat => write_dat(&p, &meta(), &shapes, get, false).unwrap(),
    };
    p
}

#[test]
fn gguf_round_trip_and_weights() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "m.gguf", Format::Gguf);
    let m = Imatrix::open(&p).unwrap();
    assert_eq!(m.format(), Format::Gguf);
    assert_eq!(m.len(), 3);
    assert_eq!(m.datasets(), ["calib.txt"]);
    assert_eq!((m.chunk_count(), m.chunk_size()), (2, 512));
    let names: Vec<&str> = m.names().collect();
    assert_eq!(
        names,
        [
            "blk.0.attn_q.weight",
            "blk.0.ffn_down_exps.weight",
            "blk.0.ffn_up_exps.weight"
        ]
    );
    let (_, data) = shapes_and_data();
    for e in &data {
        let (s, c) = m.sums_and_counts(&e.name, 512).unwrap();
        assert_eq!(s, e.sums);
        assert_eq!(c, e.counts);
    }
    let w = m.weights("blk.0.ffn_up_exps.weight").unwrap().unwrap();
    assert_eq!(w.len(), 8 * 64);
    assert_eq!(w[0], 0.5 / 300.0);
    assert!(
        w[64..128].iter().all(|&x| x == 1.0),
        "an expert without data weighs 1"
    );
    assert_eq!(w[128], (128.0 + 1.0) * 0.5 / 724.0);
    let info = m.info("blk.0.ffn_up_exps.weight").unwrap();
    assert_eq!((info.ne0, info.n_mat), (64, 8));
    assert!(m.weights("nope").unwrap().is_none());
}

#[test]
fn dat_round_trip_skips_empty_entries_and_scales_by_ncall() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "m.dat", Format::Dat);
    let m = Imatrix::open(&p).unwrap();
    assert_eq!(m.format(), Format::Dat);
    // the all-zero-count entry is skipped, as llama-imatrix's legacy writer does
    assert_eq!(m.len(), 2);
    assert_eq!(m.datasets(), ["calib.txt"]);
    assert_eq!(m.chunk_count(), 2);
    let info = m.info("blk.0.ffn_up_exps.weight").unwrap();
    assert_eq!(info.counts, vec![2]); // ceil(724 / 512)
    let v = m.values("blk.0.ffn_up_exps.weight").unwrap();
    assert_eq!(v[0], (0.5 / 300.0) * 2.0);
    assert_eq!(v[64], 2.0); // no data: 1 · ncall
    let w = m.weights("blk.0.ffn_up_exps.weight").unwrap().unwrap();
    assert_eq!(w[0], (0.5f32 / 300.0) * 2.0 / 2.0);
    assert_eq!(w[64], 1.0);
}

#[test]
fn conversions_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let g = write(d.path(), "m.gguf", Format::Gguf);
    let m = Imatrix::open(&g).unwrap();
    // gguf -> gguf keeps every value
    let g2 = d.path().join("m2.gguf");
    assert_eq!(convert(&m, &g2, Format::Gguf, 512, false).unwrap(), 3);
    let m2 = Imatrix::open(&g2).unwrap();
    for n in m.names() {
        assert_eq!(m.weights(n).unwrap(), m2.weights(n).unwrap());
    }
    // gguf -> dat -> gguf
    let dt = d.path().join("m.dat");
    assert_eq!(convert(&m, &dt, Format::Dat, 512, false).unwrap(), 2);
    let md = Imatrix::open(&dt).unwrap();
    let g3 = d.path().join("m3.gguf");
    convert(&md, &g3, Format::Gguf, 512, false).unwrap();
    let m3 = Imatrix::open(&g3).unwrap();
    let i = m3.info("blk.0.ffn_up_exps.weight").unwrap();
    assert_eq!((i.n_mat, i.counts.clone()), (1, vec![1024]));
    let (a, b) = (
        md.weights("blk.0.attn_q.weight").unwrap().unwrap(),
        m3.weights("blk.0.attn_q.weight").unwrap().unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6 * x.abs());
    }
    // dat -> dat is exact
    let dt2 = d.path().join("m2.dat");
    convert(&md, &dt2, Format::Dat, 512, false).unwrap();
    assert_eq!(std::fs::read(&dt).unwrap(), std::fs::read(&dt2).unwrap());
    // outputs are never the input, never over a directory, never over a file without force
    assert!(convert(&m, &g, Format::Gguf, 512, true).is_err());
    assert!(convert(&m, d.path(), Format::Gguf, 512, true).is_err());
    assert!(convert(&m, &g2, Format::Gguf, 512, false).is_err());
    assert!(convert(&m, &g2, Format::Gguf, 512, true).is_ok());
}

#[test]
fn check_model_names_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let m = Imatrix::open(&write(d.path(), "m.gguf", Format::Gguf)).unwrap();
    let v: Vec<(&str, Vec<u64>)> = vec![
        ("blk.0.attn_q.weight", vec![64, 64]),
        ("blk.0.ffn_up_exps.weight", vec![64, 128, 8]),
        ("blk.0.ffn_down_exps.weight", vec![32, 64, 8]),
        ("token_embd.weight", vec![64, 512]),
    ];
    m.check_model(v.iter().map(|(n, ne)| (*n, &ne[..])))
        .unwrap();
    let mut wide = v.clone();
    wide[0].1 = vec![96, 64];
    let e = m
        .check_model(wide.iter().map(|(n, ne)| (*n, &ne[..])))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("another model"),
        "{e}"
    );
    let mut experts = v.clone();
    experts[1].1 = vec![64, 128, 4];
    let e = m
        .check_model(experts.iter().map(|(n, ne)| (*n, &ne[..])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ffn_up_exps"), "{e}");
    let missing = &v[1..];
    let e = m
        .check_model(missing.iter().map(|(n, ne)| (*n, &ne[..])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor of this name"), "{e}");
}

#[test]
fn hostile_legacy_files_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read(write(d.path(), "m.dat", Format::Dat)).unwrap();
    let p = d.path().join("bad.dat");
    let try_open = |b: &[u8]| {
        std::fs::write(&p, b).unwrap();
        Imatrix::open(&p)
    };
    // every truncation inside the entries is an error naming an offset, never a panic
    let entries_end = good.len() - 4 - 4 - "calib.txt".len();
    for cut in [0, 3, 4, 7, 20, 30, entries_end - 1] {
        let e = try_open(&good[..cut]).unwrap_err().to_string();
        assert!(e.contains("byte"), "{cut}: {e}");
    }
    // the trailer is optional
    assert!(try_open(&good[..entries_end]).is_ok());
    // a huge entry count, a negative or huge name length and value count
    let mut b = good.clone();
    b[..4].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(try_open(&b).is_err());
    let mut b = good.clone();
    b[4..8].copy_from_slice(&(-5i32).to_le_bytes());
    assert!(try_open(&b).is_err());
    let mut b = good.clone();
    b[4..8].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(try_open(&b).is_err());
    let nlen = i32::from_le_bytes([good[4], good[5], good[6], good[7]]) as usize;
    let nval_at = 8 + nlen + 4;
    let mut b = good.clone();
    b[nval_at..nval_at + 4].copy_from_slice(&0x4000_0000i32.to_le_bytes());
    let e = try_open(&b).unwrap_err().to_string();
    assert!(e.contains("value count"), "{e}");
    let mut b = good.clone();
    b[nval_at..nval_at + 4].copy_from_slice(&0i32.to_le_bytes());
    assert!(try_open(&b).is_err());
    // an empty file and a zero entry count
    assert!(try_open(&[]).is_err());
    assert!(try_open(&0i32.to_le_bytes()).is_err());
}

#[test]
fn gguf_without_metadata_or_pairs_is_refused() {
    use crate::gguf::{GgufFileWriter, GgufPlan, TensorPlan, Value};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.gguf");
    let plan = |kvs: Vec<(String, Value)>, tensors: Vec<TensorPlan>| {
        let _ = std::fs::remove_file(&p);
        let f = GgufPlan::new(kvs, tensors).split(None, &p).unwrap();
        let mut w = GgufFileWriter::create(f.into_iter().next().unwrap()).unwrap();
        while let Some(t) = w.current_tensor() {
            let n = t.nbytes as usize;
            w.write_tensor(&vec![0u8; n]).unwrap();
        }
        w.finish().unwrap();
        Imatrix::open(&p)
    };
    let t = |n: &str, shape: Vec<u64>| TensorPlan::new(n, shape, crate::quant::GgmlType::F32);
    let e = plan(
        vec![],
        vec![t("a.in_sum2", vec![1, 4]), t("a.counts", vec![1, 1])],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("imatrix.datasets"), "{e}");
    let kv = || {
        vec![
            (
                "imatrix.datasets".to_string(),
                Value::Array(crate::gguf::ArrayValue::Str(vec!["x".into()])),
            ),
            ("imatrix.chunk_count".to_string(), Value::U32(1)),
            ("imatrix.chunk_size".to_string(), Value::U32(512)),
        ]
    };
    let e = plan(kv(), vec![t("a.in_sum2", vec![1, 4])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'a'"), "{e}");
    let e = plan(
        kv(),
        vec![t("a.in_sum2", vec![1, 5]), t("a.counts", vec![2, 1])],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("do not divide"), "{e}");
    assert!(plan(
        kv(),
        vec![t("a.in_sum2", vec![2, 4]), t("a.counts", vec![2, 1])]
    )
    .is_ok());
}
