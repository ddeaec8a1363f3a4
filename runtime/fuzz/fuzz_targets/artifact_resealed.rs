//! Like `artifact_load`, but the checksums are recomputed first
//! (`artifact::reseal`), so mutated bytes reach the section parsers and
//! the program validator instead of stopping at a CRC mismatch. A program
//! that loads is also run once on zero inputs.
#![no_main]

use kiln_runtime::artifact;
use kiln_runtime::session::{Session, SessionOptions, TensorView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    artifact::reseal(&mut bytes);
    let Ok(s) = Session::from_bytes(&bytes, &SessionOptions { threads: 1 }) else {
        return;
    };
    // Inputs of the declared shapes, all zero (skip huge ones).
    let mut bufs = Vec::new();
    for i in s.inputs() {
        let n: usize = i.shape.iter().product::<usize>() * i.dtype.size_bytes();
        if n > 1 << 24 {
            return;
        }
        bufs.push(vec![0u8; n]);
    }
    let views: Vec<TensorView> = s
        .inputs()
        .iter()
        .zip(&bufs)
        .map(|(i, b)| TensorView {
            dtype: i.dtype,
            shape: &i.shape,
            data: b,
        })
        .collect();
    let _ = s.run(&views);
});
