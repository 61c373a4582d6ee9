//! SentencePiece `tokenizer.model` (protobuf) parsing, then encoding and decoding a fixed text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = grokit::tokenizer::Tokenizer::from_bytes(data, "fuzz.model") {
        let ids = t.encode("Hello, wörld! 12345 <|separator|>\n\t  grok");
        let _ = t.decode(&ids);
    }
});
