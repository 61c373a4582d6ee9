//! bencode, then the .torrent interpretation (info dict, files, pieces, infohash).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = grokit::verify::bencode::parse(data);
    if let Ok(t) = grokit::verify::torrent::Torrent::parse(data) {
        let _ = t.infohash_hex();
    }
});
