//! The `.npy` reader (float32 arrays used by the reference tools): plain bytes, and the same
//! bytes as a `.npy.zst` (the bounded inflation path: header first, then exactly the declared
//! data; bombs refused by the compressed size and by the frame's declared content size).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plain = grokit::npy::from_bytes(data, std::path::Path::new("fuzz.npy"));
    let zst = grokit::npy::from_zst_bytes(data, std::path::Path::new("fuzz.npy.zst"));
    for a in [plain, zst].into_iter().flatten() {
        // whatever parsed holds exactly the elements its shape declares, and writes back
        assert_eq!(a.shape.iter().product::<usize>(), a.data.len());
        let again = grokit::npy::from_bytes(&grokit::npy::to_bytes(&a), std::path::Path::new("x"));
        assert_eq!(again.map(|b| b.shape).ok(), Some(a.shape));
    }
});
