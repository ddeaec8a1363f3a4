//! Like `artifact_load`, but the checksums are recomputed first
//! (`artifact::reseal`), so mutated bytes reach the section parsers and
//! the program validator instead of stopping at a CRC mismatch. The bytes
//! are also written to a file and loaded with `Artifact::read_file` (the
//! streaming loader `Session::load` uses), which must agree with
//! `Artifact::from_bytes`: both refuse, or both give the same weights. A
//! program that loads is also run once on zero inputs.
#![no_main]

use kiln_runtime::artifact::{self, Artifact};
use kiln_runtime::session::{Session, SessionOptions, TensorView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    artifact::reseal(&mut bytes);

    let path = std::env::temp_dir().join(format!("kiln-fuzz-{}.kiln", std::process::id()));
    std::fs::write(&path, &bytes).expect("temp file");
    match (Artifact::from_bytes(&bytes), Artifact::read_file(&path)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.weights.0.len(), b.weights.0.len());
            for (name, t) in &a.weights.0 {
                assert_eq!(t.to_le_bytes(), b.weights.0[name].to_le_bytes(), "{name}");
            }
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("from_bytes: {:?}; read_file: {:?}", a.err(), b.err()),
    }

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
