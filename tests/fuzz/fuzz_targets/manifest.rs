//! `sha256sum` manifests: parsing any bytes, and the round trip of whatever parsed (GNU and
//! tagged renderings parse back to the same entries).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use grokit::verify::Manifest;
    let Ok(m) = Manifest::parse(data, "fuzz.sha256") else {
        return;
    };
    let key = |m: &Manifest| {
        m.entries
            .iter()
            .map(|e| (e.path.clone(), e.sha256))
            .collect::<Vec<_>>()
    };
    let gnu = Manifest::parse(&m.to_gnu_bytes(), "gnu").expect("GNU rendering parses");
    assert_eq!(key(&gnu), key(&m));
    let tagged = Manifest::parse(&m.to_tagged_bytes(), "tagged").expect("tagged rendering parses");
    assert_eq!(key(&tagged), key(&m));
});
