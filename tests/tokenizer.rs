//! SentencePiece tokenizer: golden cases from the Python library, the real Grok-1 model, and
//! hostile inputs.
use std::path::Path;

use grokit::tokenizer::{PieceKind, Tokenizer};
use serde_json::Value;

use crate::util::{repo, shared};

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("fixtures/tokenizer").join(name)
}

/// Check every `{"text","ids","decoded"}` line of a cases file; returns the number checked.
fn check_cases(tok: &Tokenizer, cases: &Path) -> usize {
    let text = std::fs::read_to_string(cases).unwrap();
    let mut n = 0;
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = v["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        let got = tok.encode(s);
        if got != want {
            failures.push(format!("encode {s:?}: got {got:?}, want {want:?}"));
        }
        let decoded = v["decoded"].as_str().unwrap();
        if tok.decode(&want) != decoded {
            failures.push(format!(
                "decode {want:?}: got {:?}, want {decoded:?}",
                tok.decode(&want)
            ));
        }
        n += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

#[test]
fn tiny12_fixture_matches_library() {
    let tok = Tokenizer::from_file(fixture("tiny12.model")).unwrap();
    assert_eq!(tok.len(), 512);
    assert_eq!(
        (tok.pad_id(), tok.bos_id(), tok.eos_id(), tok.unk_id()),
        (Some(0), Some(1), Some(2), 3)
    );
    let n = check_cases(&tok, &fixture("tiny12_cases.jsonl"));
    assert!(n >= 100, "only {n} cases");
    eprintln!("tiny12: {n} library cases match");
}

#[test]
fn tiny12_tokens_json() {
    let Some(sh) = shared("tiny12 tokens.json") else {
        return;
    };
    let dir = sh.join("reference/tiny12");
    let tok = Tokenizer::from_file(dir.join("tokenizer.model")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("tokenizer.model")).unwrap(),
        std::fs::read(fixture("tiny12.model")).unwrap(),
        "fixtures/tokenizer/tiny12.model is a stale copy"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    let pad = v["pad_token"].as_u64().unwrap() as u32;
    for (p, row) in v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["tokens"].as_array().unwrap())
    {
        let mut want: Vec<u32> = serde_json::from_value(row.clone()).unwrap();
        while want.last() == Some(&pad) {
            want.pop();
        }
        assert_eq!(tok.encode(p.as_str().unwrap()), want, "prompt {p}");
    }
}

#[test]
fn grok1_real_tokenizer() {
    let Some(sh) = shared("Grok-1 tokenizer") else {
        return;
    };
    let path = sh.join("grok1/tokenizer.model");
    let bytes = std::fs::read(&path).unwrap();
    use sha2::Digest;
    assert_eq!(
        grokit::base::hex::encode(&sha2::Sha256::digest(&bytes)),
        "5c69d7cbad192fa2c9d14e2a77fbfdc11597c68907b043ddb0260e3d28eddd7f"
    );
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_file(&path).unwrap();
    eprintln!(
        "grok1 tokenizer loaded in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(tok.len(), 131_072);
    assert_eq!(
        (tok.pad_id(), tok.bos_id(), tok.eos_id(), tok.unk_id()),
        (Some(0), Some(1), Some(2), 3)
    );
    let m = tok.model();
    assert!(m.trainer.byte_fallback && m.trainer.split_digits);
    assert_eq!(m.normalizer.name, "identity");
    assert!(m.normalizer.add_dummy_prefix && !m.normalizer.remove_extra_whitespaces);
    let count = |k| tok.pieces().iter().filter(|p| p.kind == k).count();
    assert_eq!(
        [
            PieceKind::Normal,
            PieceKind::Byte,
            PieceKind::UserDefined,
            PieceKind::Control,
            PieceKind::Unknown
        ]
        .map(count),
        [130_747, 256, 65, 3, 1]
    );
    assert_eq!(tok.id_to_piece(79), Some("<0x0A>"));
    assert_eq!(tok.id_to_piece(47), Some("<|separator|>"));
    assert_eq!(tok.pieces()[325].score.to_bits(), (-0.0f32).to_bits());
    assert_eq!(tok.pieces()[131_071].score, -130_746.0);
    assert_eq!(tok.piece_to_id("[UNK]"), 3);
    assert_eq!(tok.piece_to_id("no such piece"), 3);
    let golden = "The answer to life the universe and everything is of course";
    assert_eq!(
        tok.encode(golden),
        [422, 3033, 356, 1180, 333, 9072, 360, 2175, 391, 359, 1805]
    );
    assert_eq!(tok.decode(&tok.encode(golden)), golden);
    let n = check_cases(&tok, &fixture("grok1_cases.jsonl"));
    assert!(n >= 200, "only {n} cases");
    eprintln!("grok1: {n} library cases match");

    // Speed: a few KB of mixed text must encode quickly even unoptimized.
    let text: String = std::fs::read_to_string(fixture("grok1_cases.jsonl"))
        .unwrap()
        .chars()
        .take(20_000)
        .collect();
    let t = std::time::Instant::now();
    let ids = tok.encode(&text);
    let dt = t.elapsed().as_secs_f64();
    eprintln!(
        "grok1: encoded {} bytes -> {} ids in {:.1} ms",
        text.len(),
        ids.len(),
        dt * 1e3
    );
    assert!(dt < 2.0);
    assert_eq!(tok.decode(&ids), text);

    // Hostile: truncations at many offsets of the real file must be errors, never panics.
    let step = bytes.len() / 97;
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        if cut == 0 {
            continue;
        }
        assert!(
            Tokenizer::from_bytes(&bytes[..cut], &path).is_err(),
            "cut at {cut} loaded"
        );
    }
}

/// Deterministic xorshift for the corruption test.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn hostile_models_error_without_panicking() {
    let good = std::fs::read(fixture("tiny12.model")).unwrap();
    // Every truncation.
    for cut in 0..good.len() {
        match Tokenizer::from_bytes(&good[..cut], "tiny12.model") {
            Ok(_) => panic!("model truncated to {cut} bytes loaded"),
            Err(e) => assert!(e.to_string().contains("tiny12.model"), "{e}"),
        }
    }
    // Huge declared length right at the start (field 1, length-delimited).
    let mut huge = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    huge.extend_from_slice(&good);
    let e = Tokenizer::from_bytes(&huge, "huge.model")
        .unwrap_err()
        .to_string();
    assert!(e.contains("offset 1") && e.contains("exceeds"), "{e}");
    // Wrong wire type for pieces (field 1 as varint).
    let e = Tokenizer::from_bytes(&[0x08, 0x01], "wire.model")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected length-delimited"), "{e}");
    // Random byte corruption: anything may happen except a panic.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut loaded = 0;
    for _ in 0..3000 {
        let mut m = good.clone();
        for _ in 0..1 + xorshift(&mut s) % 4 {
            let i = (xorshift(&mut s) % m.len() as u64) as usize;
            m[i] = xorshift(&mut s) as u8;
        }
        if let Ok(t) = Tokenizer::from_bytes(&m, "fuzz.model") {
            loaded += 1;
            let ids = t.encode("Hello wörld 123 \u{1F389}");
            let _ = t.decode(&ids);
        }
    }
    eprintln!("corruption fuzz: {loaded} of 3000 corrupted models still loaded (and encoded)");
}

// ---- the encoder built from a GGUF's tokenizer metadata (issue #18) -------------------------

use grokit::gguf::{GgufFile, Value as GValue};
use grokit::tokenizer::gguf_vocab::keys;

/// The encoder of a GGUF's tokenizer metadata, as `forward`/`compare --prompt` build it
/// (`GgufFile::tokenizer`, the library's one mapping of `tokenizer.ggml.*`).
fn tokenizer_of_gguf(g: &GgufFile) -> Result<Tokenizer, grokit::tokenizer::TokenizerError> {
    Ok(g.tokenizer()?.expect("the GGUF has tokenizer.ggml.tokens"))
}

/// The GGUF header grokit's writer produces for `tok`'s metadata (no tensors), read back.
fn gguf_of(tok: &Tokenizer) -> GgufFile {
    let kvs = grokit::convert::gguf::tokenizer_kvs(tok, false);
    let plan = grokit::gguf::GgufPlan::new(kvs, vec![]);
    let files = plan.split(None, Path::new("vocab.gguf")).unwrap();
    GgufFile::from_bytes(files[0].header_bytes(), "vocab.gguf").unwrap()
}

/// Both encoders agree: same pieces, special ids, and ids and text on every case.
fn assert_same_encoder(from_gguf: &Tokenizer, from_model: &Tokenizer, cases: &Path) -> usize {
    assert_eq!(from_gguf.pieces(), from_model.pieces());
    assert_eq!(
        (
            from_gguf.pad_id(),
            from_gguf.bos_id(),
            from_gguf.eos_id(),
            from_gguf.unk_id()
        ),
        (
            from_model.pad_id(),
            from_model.bos_id(),
            from_model.eos_id(),
            from_model.unk_id()
        )
    );
    let n = check_cases(from_gguf, cases);
    // and on strings no case file holds: every case text cut at odd places and doubled
    let text = std::fs::read_to_string(cases).unwrap();
    for line in text.lines().filter(|l| !l.is_empty()).take(200) {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = v["text"].as_str().unwrap();
        let cut: String = s.chars().skip(1).collect();
        for t in [format!("{s}{s}"), format!("  {cut} "), cut.clone()] {
            assert_eq!(from_gguf.encode(&t), from_model.encode(&t), "{t:?}");
        }
    }
    n
}

#[test]
fn gguf_vocabulary_encodes_like_tokenizer_model_tiny12() {
    let model = Tokenizer::from_file(fixture("tiny12.model")).unwrap();
    let tok = tokenizer_of_gguf(&gguf_of(&model)).unwrap();
    let n = assert_same_encoder(&tok, &model, &fixture("tiny12_cases.jsonl"));
    eprintln!("tiny12: the GGUF-built encoder matches on {n} library cases");
    // Through the real writer: `grokit convert` of the fixture checkpoint to GGUF.
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("tiny.gguf");
    crate::convert::convert(
        &crate::util::fixture(),
        &["--to", "gguf", "-o", out.to_str().unwrap(), "-q"],
    );
    let g = GgufFile::open(&out).unwrap();
    let tok = tokenizer_of_gguf(&g).unwrap();
    assert_same_encoder(&tok, &model, &fixture("tiny12_cases.jsonl"));
}

#[test]
fn gguf_vocabulary_encodes_like_tokenizer_model_grok1() {
    let Some(sh) = shared("Grok-1 tokenizer from GGUF metadata") else {
        return;
    };
    let model = Tokenizer::from_file(sh.join("grok1/tokenizer.model")).unwrap();
    let tok = tokenizer_of_gguf(&gguf_of(&model)).unwrap();
    assert_eq!(tok.len(), 131_072);
    let n = assert_same_encoder(&tok, &model, &fixture("grok1_cases.jsonl"));
    eprintln!("grok1: the GGUF-built encoder matches on {n} library cases");
}

#[test]
fn hostile_gguf_vocabularies_are_refused_by_key() {
    let model = Tokenizer::from_file(fixture("tiny12.model")).unwrap();
    let g = gguf_of(&model);
    let mut kvs: Vec<(String, GValue)> = g.kvs().to_vec();
    let set = |kvs: &mut Vec<(String, GValue)>, k: &str, v: GValue| {
        if let Some(e) = kvs.iter_mut().find(|(key, _)| key == k) {
            e.1 = v;
        } else {
            kvs.push((k.to_string(), v));
        }
    };
    // A present key of the wrong type is named, not taken for absent (grokit's writer
    // refuses to write one, so the lookup is changed instead of the file).
    let wrong = GValue::String("3".into());
    let lookup = |k: &str| {
        if k == keys::UNK_ID {
            Some(&wrong)
        } else {
            g.get(k)
        }
    };
    let e = grokit::gguf::vocab::tokenizer_of(&lookup, Path::new("t.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.gguf") && e.contains("tokenizer.ggml.unknown_token_id is STRING"),
        "{e}"
    );
    // An unknown id beyond the vocabulary, as a hostile GGUF would carry it.
    set(&mut kvs, keys::UNK_ID, GValue::U32(600));
    let plan = grokit::gguf::GgufPlan::new(kvs, vec![]);
    let bytes = plan.split(None, Path::new("h.gguf")).unwrap()[0].header_bytes();
    let g = GgufFile::from_bytes(bytes, "h.gguf").unwrap();
    let e = tokenizer_of_gguf(&g).unwrap_err().to_string();
    assert!(
        e.contains("h.gguf")
            && e.contains("tokenizer.ggml.unknown_token_id 600 is outside the vocabulary (0..512)"),
        "{e}"
    );
}

#[test]
fn declared_ids_beyond_the_vocabulary_are_refused() {
    // tiny12.model with trainer_spec.unk_id (field 40) set to 600: appended to the trainer
    // spec as a second occurrence (the last one wins, as protobuf says).
    let good = std::fs::read(fixture("tiny12.model")).unwrap();
    let m = grokit::tokenizer::ModelProto::parse(&good).unwrap();
    assert_eq!(m.trainer.unk_id, 3);
    // An extra top-level trainer_spec message merges into the first one.
    let varint = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    for (field, value, want) in [
        (
            40u64,
            600u64,
            "trainer_spec.unk_id 600 is outside the vocabulary (0..512)",
        ),
        (40, u64::MAX, "trainer_spec.unk_id -1 is outside"),
        (41, 512, "trainer_spec.bos_id 512 is outside"),
        (43, 70_000, "trainer_spec.pad_id 70000 is outside"),
    ] {
        let mut inner = Vec::new();
        varint(&mut inner, field << 3); // wire type 0
        varint(&mut inner, value);
        let mut bytes = good.clone();
        bytes.push(0x12); // field 2 (trainer_spec), length-delimited
        bytes.push(inner.len() as u8);
        bytes.extend_from_slice(&inner);
        let e = Tokenizer::from_bytes(&bytes, "unk.model")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unk.model") && e.contains(want), "{want}: {e}");
    }
}
