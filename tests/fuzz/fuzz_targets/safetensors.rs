//! The safetensors header parser and layout validation on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = grokit::safetensors_io::reader::entries_from_bytes(data, std::path::Path::new("fuzz.safetensors"));
});
