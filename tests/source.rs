//! The release reader against xAI's own tiny12 checkpoint (written by the release's code).

use crate::util::shared;
use grokit::base::DType;
use grokit::numpy::Stored;
use grokit::pickle::writer::{write_array, write_quantized, ArraySpec, Payload};
use grokit::source::grok::{expected_file_size, Checkpoint, OpenOptions};
use std::io::Write;

fn tiny12() -> Option<Checkpoint> {
    let s = shared("tiny12 reader tests")?;
    Some(Checkpoint::open(&s.join("reference/tiny12"), &OpenOptions::default()).unwrap())
}

#[test]
fn tiny12_opens_with_config_and_no_problems() {
    let Some(ck) = tiny12() else { return };
    assert_eq!(ck.tensors.len(), 146);
    assert!(ck.problems.is_empty(), "{:?}", ck.problems);
    let c = &ck.config;
    assert_eq!(
        (
            c.vocab_size,
            c.emb_size,
            c.key_size,
            c.num_q_heads,
            c.num_kv_heads,
            c.num_layers,
            c.num_experts,
            c.ffn_size
        ),
        (512, 96, 16, 6, 2, 12, 8, 512)
    );
}

#[test]
fn tiny12_matches_params_tsv() {
    let Some(s) = shared("params.tsv") else {
        return;
    };
    let ck = Checkpoint::open(&s.join("reference/tiny12"), &OpenOptions::default()).unwrap();
    let tsv = std::fs::read_to_string(s.join("reference/tiny12/params.tsv")).unwrap();
    for (line, t) in tsv.lines().skip(1).zip(&ck.tensors) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], t.spec.file_name());
        assert_eq!(f[1].strip_prefix("params/").unwrap(), t.spec.path);
        let w = t.weight();
        let dt = match w.dtype {
            DType::F32 => "float32",
            DType::I8 => "int8",
            _ => "?",
        };
        assert_eq!(f[3], format!("{dt}{}", w.shape), "{}", t.spec.path);
        match t.scales() {
            Some(sc) => assert_eq!(f[4], format!("bfloat16{}", sc.shape)),
            None => assert_eq!(f[4], "-"),
        }
    }
}

#[test]
fn tiny12_file_sizes_are_predicted_exactly() {
    let Some(ck) = tiny12() else { return };
    for t in &ck.tensors {
        assert_eq!(
            expected_file_size(&t.spec, &ck.config),
            t.file_len,
            "{}",
            t.spec.path
        );
    }
}

/// The CPython-exact writer re-emits every file of tiny12 byte for byte from its parsed
/// structure and payloads: this pins framing, memo and opcode choices to xAI's real bytes.
#[test]
fn tiny12_files_are_reemitted_byte_identically() {
    let Some(ck) = tiny12() else { return };
    for t in &ck.tensors {
        let orig = std::fs::read(&t.file).unwrap();
        let slice = |r: &std::ops::Range<u64>| orig[r.start as usize..r.end as usize].to_vec();
        let mut out = Vec::new();
        match &t.stored {
            Stored::Array(a) => {
                let data = slice(&a.data);
                let mut f = |w: &mut dyn Write| w.write_all(&data);
                let shape = a.shape.dims().to_vec();
                write_array(
                    &mut out,
                    ArraySpec {
                        dtype: a.dtype,
                        shape: &shape,
                        payload: Payload {
                            len: data.len() as u64,
                            write: &mut f,
                        },
                    },
                )
                .unwrap();
            }
            Stored::Quantized { weight, scales } => {
                let (wd, sd) = (slice(&weight.data), slice(&scales.data));
                let mut fw = |w: &mut dyn Write| w.write_all(&wd);
                let mut fs = |w: &mut dyn Write| w.write_all(&sd);
                let (ws, ss) = (weight.shape.dims().to_vec(), scales.shape.dims().to_vec());
                write_quantized(
                    &mut out,
                    ArraySpec {
                        dtype: DType::I8,
                        shape: &ws,
                        payload: Payload {
                            len: wd.len() as u64,
                            write: &mut fw,
                        },
                    },
                    ArraySpec {
                        dtype: DType::BF16,
                        shape: &ss,
                        payload: Payload {
                            len: sd.len() as u64,
                            write: &mut fs,
                        },
                    },
                )
                .unwrap();
            }
        }
        assert!(
            out == orig,
            "{} differs from the re-emitted bytes",
            t.spec.path
        );
    }
}

#[test]
fn grok1_sizes_match_the_release_table() {
    let Some(s) = shared("tensor-index.tsv") else {
        return;
    };
    let cfg = grokit::model::Config::grok1();
    let table = grokit::model::ParamTable::new(&cfg);
    let tsv = std::fs::read_to_string(s.join("grok1/tensor-index.tsv")).unwrap();
    let mut n = 0;
    for (line, p) in tsv.lines().skip(1).zip(&table.params) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[2], p.path);
        assert_eq!(f[15], p.gguf_name());
        assert_eq!(
            f[10].parse::<u64>().unwrap(),
            expected_file_size(p, &cfg),
            "{}",
            p.path
        );
        n += 1;
    }
    assert_eq!(n, 770);
}

/// A shard truncated after the checkpoint was opened (another process, a sync tool) is an error
/// naming the file, not a SIGBUS: payloads are read with pread, and sizes are re-checked.
#[test]
fn truncated_after_open_is_an_error_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let src = crate::util::repo().join("fixtures/tiny");
    std::fs::create_dir_all(d.path().join("ckpt-0")).unwrap();
    for e in std::fs::read_dir(src.join("ckpt-0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join("ckpt-0").join(e.file_name())).unwrap();
    }
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    let ck = Checkpoint::open(d.path(), &OpenOptions::default()).unwrap();
    let t = &ck.tensors[2];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&t.file)
        .unwrap();
    f.set_len(t.file_len / 2).unwrap();
    let e = ck.read_f32(t, Some(0)).unwrap_err().to_string();
    assert!(
        e.contains("tensor00002_000") && e.contains("changed size"),
        "{e}"
    );
    let e = ck.matrix_owned(t, Some(1)).unwrap_err().to_string();
    assert!(e.contains("changed size"), "{e}");
}
