//! Hostile inputs: seeded random mutations of real files must give errors, never panics, hangs
//! or huge allocations. (Coverage-guided fuzzing of the same entry points: tests/fuzz.)

use crate::util::repo;
use grokit::synth::Rng;

/// Mutate `data` with a few random edits: byte flips, truncation, insertion, length-field bumps.
pub fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    let edits = 1 + (rng.next_u64() % 4) as usize;
    for _ in 0..edits {
        if v.is_empty() {
            v.push(0);
        }
        let pos = (rng.next_u64() % v.len() as u64) as usize;
        match rng.next_u64() % 6 {
            0 => v[pos] = rng.next_u64() as u8,
            1 => v.truncate(pos),
            2 => v.insert(pos, rng.next_u64() as u8),
            3 => v[pos] ^= 0x80,
            4 => {
                // Overwrite 4 or 8 bytes with a large little-endian number (a hostile length).
                let big = [0xffu8, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
                for (k, b) in big.iter().enumerate() {
                    if let Some(x) = v.get_mut(pos + k) {
                        *x = *b;
                    }
                }
            }
            _ => {
                let end = (pos + 1 + (rng.next_u64() % 16) as usize).min(v.len());
                v.drain(pos..end);
            }
        }
    }
    v
}

#[test]
fn mutated_pickles_never_panic() {
    let dir = repo().join("fixtures/tiny/ckpt-0");
    let mut rng = Rng::new(42);
    let mut errors = 0;
    let mut total = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        for _ in 0..400 {
            let m = mutate(&mut rng, &data);
            total += 1;
            match grokit::pickle::run(&m, 0) {
                Ok(p) => {
                    if grokit::numpy::stored_from_value(&p.value).is_err() {
                        errors += 1;
                    }
                }
                Err(_) => errors += 1,
            }
        }
    }
    // Most mutations must be caught; some (payload bytes) are legitimately harmless.
    assert!(errors > total / 4, "{errors} of {total}");
}

#[test]
fn pickle_guard_cases_still_parse() {
    // Legal edge cases: zero-dim shape, empty payload, BINPUT/BINGET instead of MEMOIZE.
    let mut out = Vec::new();
    let mut f = |w: &mut dyn std::io::Write| w.write_all(&[]);
    grokit::pickle::writer::write_array(
        &mut out,
        grokit::pickle::writer::ArraySpec {
            dtype: grokit::base::DType::F32,
            shape: &[0, 4],
            payload: grokit::pickle::writer::Payload {
                len: 0,
                write: &mut f,
            },
        },
    )
    .unwrap();
    let p = grokit::pickle::run(&out, 0).unwrap();
    let s = grokit::numpy::stored_from_value(&p.value).unwrap();
    assert!(matches!(s, grokit::numpy::Stored::Array(a) if a.shape.dims() == [0, 4]));
    let p = grokit::pickle::run(b"\x80\x02K\x05q\x00h\x00\x86.", 0).unwrap();
    assert_eq!(p.value.as_tuple().unwrap().len(), 2);
}

// ---- the committed hostile files (fixtures/hostile, made by fixtures/gen/make_fixtures.py) ----

use grokit::pickle::PickleErrorKind;

fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures/hostile").join(name)).unwrap()
}

fn parse(name: &str) -> Result<grokit::numpy::Stored, String> {
    let b = hostile(name);
    let p = grokit::pickle::run(&b, 0).map_err(|e| format!("pickle: {e}"))?;
    grokit::numpy::stored_from_value(&p.value).map_err(|e| format!("numpy: {e}"))
}

#[test]
fn hostile_truncated_shard() {
    let e = grokit::pickle::run(&hostile("truncated_shard"), 0).unwrap_err();
    assert!(
        matches!(
            e.kind,
            PickleErrorKind::Truncated { .. }
                | PickleErrorKind::BadFrame { .. }
                | PickleErrorKind::NoStop
        ),
        "{e}"
    );
}

#[test]
fn hostile_forbidden_global_is_never_called() {
    let e = grokit::pickle::run(&hostile("forbidden_global"), 0).unwrap_err();
    match &e.kind {
        PickleErrorKind::ForbiddenGlobal { module, name } => {
            assert_eq!((module.as_str(), name.as_str()), ("posix", "system"))
        }
        k => panic!("{k:?}"),
    }
    assert!(e.to_string().contains("byte offset"), "{e}");
}

#[test]
fn hostile_wrong_dtype_is_a_problem_in_a_checkpoint() {
    // Parses as an array (f64 is a numpy dtype grokit knows) ...
    let s = parse("wrong_dtype").unwrap();
    assert!(matches!(&s, grokit::numpy::Stored::Array(a) if a.dtype == grokit::base::DType::F64));
    // ... and the checkpoint reports it against the slot that must be f32, naming the file.
    let d = tempfile::tempdir().unwrap();
    let c = d.path().join("ckpt-0");
    std::fs::create_dir(&c).unwrap();
    for e in std::fs::read_dir(repo().join("fixtures/tiny/ckpt-0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), c.join(e.file_name())).unwrap();
    }
    std::fs::copy(
        repo().join("fixtures/tiny/config.json"),
        d.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(c.join("tensor00001_000"), hostile("wrong_dtype")).unwrap();
    let ck = grokit::source::grok::Checkpoint::open(d.path(), &Default::default()).unwrap();
    let p = ck
        .problems
        .iter()
        .find(|p| p.file.ends_with("tensor00001_000"))
        .expect("a problem for file 1");
    assert!(p.msg.contains("dtype f64"), "{}", p.msg);
}

#[test]
fn hostile_payload_mismatch() {
    let e = parse("payload_mismatch").unwrap_err();
    assert!(
        e.contains("payload is 256 bytes but shape [65] of f32 needs 260"),
        "{e}"
    );
}

#[test]
fn hostile_absurd_length_is_refused_before_allocating() {
    let e = grokit::pickle::run(&hostile("absurd_length"), 0).unwrap_err();
    assert!(
        matches!(e.kind, PickleErrorKind::Truncated { needed, .. } if needed == 1 << 62),
        "{e}"
    );
    assert_eq!(e.offset, 2);
}

#[test]
fn hostile_guard_the_good_file_parses() {
    assert!(parse("good_norm").is_ok());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(7);
    for len in [0usize, 1, 2, 3, 10, 100, 1000] {
        for _ in 0..300 {
            let v: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let mut w = vec![0x80, 4];
            w.extend_from_slice(&v);
            for data in [&v, &w] {
                if let Ok(p) = grokit::pickle::run(data, 0) {
                    let _ = grokit::numpy::stored_from_value(&p.value);
                }
            }
        }
    }
}

#[test]
fn side_files_are_read_with_a_bound_even_from_devices() {
    // `/dev/zero` reports length 0 to stat and reads without end: only regular files are
    // data, so it is refused as a character device before a byte is read (issue #18).
    let zero = std::path::Path::new("/dev/zero");
    if zero.exists() {
        let e = grokit::verify::Torrent::read(zero).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let e = grokit::verify::Manifest::read(zero)
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        let e = grokit::io::read_capped(zero, 10).unwrap_err();
        assert_eq!(
            e.not_regular(),
            Some(grokit::io::input::FileKind::CharDevice)
        );
    }
    // A regular file over the cap: the read stops at cap + 1 bytes.
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    std::fs::write(&big, vec![1u8; 100]).unwrap();
    assert_eq!(grokit::io::read_capped(&big, 99).unwrap(), None);
    // A config.json over its cap (sparse, so the test writes almost nothing) is refused.
    let c = d.path().join("ckpt-0");
    std::fs::create_dir(&c).unwrap();
    for e in std::fs::read_dir(repo().join("fixtures/tiny/ckpt-0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), c.join(e.file_name())).unwrap();
    }
    let f = std::fs::File::create(d.path().join("config.json")).unwrap();
    f.set_len(grokit::base::limits::CKPT_MAX_CONFIG_BYTES + 1)
        .unwrap();
    let e = grokit::source::Checkpoint::open(d.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("larger than"),
        "{e}"
    );
}
