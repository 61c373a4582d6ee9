//! One release shard as the checkpoint reader sees it: run the pickle machine, interpret the
//! value as a numpy array or QuantizedWeight8bit, and check payload ranges against the input. (The directory layer above it is covered by tests/faults.rs.)
#![no_main]
use grokit::numpy::Stored;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = grokit::pickle::run(data, 0) else { return };
    let Ok(s) = grokit::numpy::stored_from_value(&p.value) else { return };
    let in_file = |a: &grokit::numpy::ArrayRef| a.data.end <= data.len() as u64;
    match s {
        Stored::Array(a) => {
            let _ = in_file(&a);
        }
        Stored::Quantized { weight, scales } => {
            let _ = in_file(&weight) && in_file(&scales) && weight.shape.dims().len() == scales.shape.dims().len();
        }
    }
});
