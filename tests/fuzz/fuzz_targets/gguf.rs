//! The GGUF reader on arbitrary bytes: header, metadata, tensor infos, data ranges.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = grokit::gguf::GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") {
        for t in f.tensors() {
            let _ = f.tensor_data(t).len();
        }
        let _ = f.get("general.architecture");
    }
});
