//! The `.npy` reader (float32 arrays used by the reference tools).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = grokit::npy::from_bytes(data, std::path::Path::new("fuzz.npy"));
});
