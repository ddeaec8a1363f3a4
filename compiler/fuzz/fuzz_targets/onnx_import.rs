//! Arbitrary bytes into the ONNX front end: protobuf decoding, then the
//! importer (constant folding with the reference semantics included), then
//! the verifier on what it built. Errors are fine; panics, crashes and
//! runaway allocations are bugs.
#![no_main]

use kiln_compiler::onnx::{import, read_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = read_model(data) else {
        return;
    };
    let opts = import::ImportOptions::default();
    if let Ok(imported) = import::import_model(&model, &opts) {
        let _ = kiln_ir::verify(&imported.graph);
    }
});
