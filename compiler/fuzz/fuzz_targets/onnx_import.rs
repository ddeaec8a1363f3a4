//! Arbitrary bytes through the ONNX importer: protobuf decoding, then the
//! import itself (converters, constant folding of shape computations,
//! verification). Any `Err` is fine; a panic or an abort is a bug.
#![no_main]

use kiln_compiler::onnx::{import::import_model, read_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = read_model(data) {
        let _ = import_model(&m, &Default::default());
    }
});
