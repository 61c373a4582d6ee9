//! Unit tests on small synthetic models built with the test protobuf writer.
use super::proto::write::*;
use super::*;

/// Build a model: pieces as (text, score, kind), trainer options as (field, varint).
fn model(
    pieces: &[(&str, f32, i32)],
    trainer: &[(u32, u64)],
    normalizer: &[(u32, u64)],
) -> Vec<u8> {
    let mut m = Vec::new();
    for (s, score, kind) in pieces {
        let mut p = Vec::new();
        field_bytes(&mut p, 1, s.as_bytes());
        field_f32(&mut p, 2, *score);
        field_varint(&mut p, 3, *kind as u64);
        field_bytes(&mut m, 1, &p);
    }
    let mut t = Vec::new();
    field_varint(&mut t, 3, 2);
    for &(f, v) in trainer {
        field_varint(&mut t, f, v);
    }
    for (f, s) in [(45u32, "<unk>"), (46, "<s>"), (47, "</s>")] {
        field_bytes(&mut t, f, s.as_bytes());
    }
    field_bytes(&mut m, 2, &t);
    let mut n = Vec::new();
    field_bytes(&mut n, 1, b"identity");
    for &(f, v) in normalizer {
        field_varint(&mut n, f, v);
    }
    field_bytes(&mut m, 3, &n);
    m
}

fn base_pieces() -> Vec<(&'static str, f32, i32)> {
    vec![
        ("<unk>", 0.0, 2),
        ("<s>", 0.0, 3),
        ("</s>", 0.0, 3),
        ("<sep>", 0.0, 4),
        ("▁", -1.0, 1),
        ("a", -2.0, 1),
        ("b", -3.0, 1),
        ("c", -4.0, 1),
        ("ab", -5.0, 1),
        ("bc", -6.0, 1),
        ("▁ab", -7.0, 1),
        ("abc", -8.0, 1),
    ]
}

fn tok(
    pieces: &[(&str, f32, i32)],
    trainer: &[(u32, u64)],
    normalizer: &[(u32, u64)],
) -> Tokenizer {
    Tokenizer::from_bytes(&model(pieces, trainer, normalizer), "test.model").unwrap()
}

#[test]
fn merges_by_score_and_keeps_user_defined_atomic() {
    let t = tok(&base_pieces(), &[], &[(4, 0)]);
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.pad_id(), None);
    // ▁ a b c: best pair is "ab" (-5) over "bc" (-6) and "▁a" (absent); then "▁ab" (-7).
    assert_eq!(t.encode_pieces("abc"), ["▁ab", "c"]);
    assert_eq!(t.encode_pieces("ab<sep>c"), ["▁ab", "<sep>", "c"]);
    // Unknown character without byte fallback -> unk.
    assert_eq!(t.encode("x"), [4, 0]);
    // ...and a run of unknown characters collapses into one unk, as the library does.
    assert_eq!(t.encode("axyéb"), [4, 5, 0, 6]);
    assert_eq!(t.encode(""), Vec::<u32>::new());
    assert_eq!(t.decode(&t.encode("abc ab")), "abc ab");
    assert_eq!(t.decode(&[1, 0, 2]), " \u{2047} ");
}

#[test]
fn ties_go_left() {
    let mut p = base_pieces();
    p[8].1 = -6.0; // "ab" now ties with "bc"
    let t = tok(&p, &[], &[(3, 0), (4, 0)]);
    assert_eq!(t.encode_pieces("abc"), ["abc"]);
    assert_eq!(t.encode_pieces("bcab"), ["bc", "ab"]);
}

#[test]
fn whitespace_options() {
    let t = tok(&base_pieces(), &[], &[(4, 1)]);
    assert_eq!(t.normalize("  a  b "), "▁a▁b".as_bytes());
    let t = tok(&base_pieces(), &[], &[(4, 0)]);
    assert_eq!(t.normalize("  a  b "), "▁▁▁a▁▁b▁".as_bytes());
    let t = tok(&base_pieces(), &[(24, 1)], &[(4, 0)]);
    assert_eq!(t.normalize("a b"), "a▁b▁".as_bytes());
    let t = tok(&base_pieces(), &[], &[(3, 0), (4, 0), (5, 0)]);
    assert_eq!(t.normalize("a b"), b"a b");
}

#[test]
fn byte_fallback_and_decode() {
    let mut p = base_pieces();
    let names: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    for n in &names {
        p.push((n.as_str(), 0.0, 6));
    }
    let t = tok(&p, &[(35, 1)], &[(4, 0)]);
    let ids = t.encode("aé");
    let e = 12 + 0xc3;
    assert_eq!(ids, [4, 5, e, 12 + 0xa9]);
    assert_eq!(t.decode(&ids), "aé");
    // A lone continuation byte and a truncated sequence: one U+FFFD per byte.
    assert_eq!(
        t.decode(&[12 + 0x80, 12 + 0xf0, 12 + 0x9f, 5]),
        "\u{FFFD}\u{FFFD}\u{FFFD}a"
    );
    assert_eq!(t.try_decode(&[100_000]), Err(100_000));
}

#[test]
fn unused_pieces_are_resegmented() {
    let mut p = base_pieces();
    p[8].2 = 5; // "ab" unused
    let t = tok(&p, &[], &[(4, 0)]);
    // "ab" merges (as the library does) but is emitted as its parts; "▁ab" still forms.
    assert_eq!(t.encode_pieces("abc"), ["▁ab", "c"]);
    assert_eq!(t.encode_pieces("<sep>ab"), ["▁", "<sep>", "a", "b"]);
    // A single unused character cannot be split: it is treated as unknown.
    let mut p = base_pieces();
    p[5].2 = 5; // "a" unused
    let t = tok(&p, &[], &[(4, 0)]);
    assert_eq!(t.encode_pieces("aac"), ["▁", "<unk>", "c"]);
}

#[test]
fn load_checks() {
    let mut p = base_pieces();
    p[0].2 = 1;
    let e = Tokenizer::from_bytes(&model(&p, &[], &[]), "m").unwrap_err();
    assert!(e.to_string().contains("no unknown piece"), "{e}");
    let mut p = base_pieces();
    p.push(("a", 0.0, 1));
    assert!(Tokenizer::from_bytes(&model(&p, &[], &[]), "m")
        .unwrap_err()
        .to_string()
        .contains("already defined"));
    let mut p = base_pieces();
    p.push(("<0x00>", 0.0, 6));
    assert!(Tokenizer::from_bytes(&model(&p, &[], &[]), "m")
        .unwrap_err()
        .to_string()
        .contains("byte_fallback"));
    let e = Tokenizer::from_bytes(&model(&base_pieces(), &[(3, 1)], &[]), "m").unwrap_err();
    assert!(matches!(e, TokenizerError::Unsupported { .. }), "{e}");
}

#[test]
fn truncations_never_panic() {
    let m = model(&base_pieces(), &[(35, 0)], &[(4, 0)]);
    for cut in 0..m.len() {
        let _ = Tokenizer::from_bytes(&m[..cut], "cut.model");
    }
    let e = Tokenizer::from_bytes(&m[..m.len() - 1], "cut.model").unwrap_err();
    assert!(
        e.to_string().contains("cut.model") && e.to_string().contains("offset"),
        "{e}"
    );
}
