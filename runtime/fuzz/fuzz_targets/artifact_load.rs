//! Arbitrary bytes into the artifact loader: `Session::from_bytes` must
//! return an error or a session, never panic or crash. The bytes are also
//! resealed (checksums recomputed) and loaded again, so mutations reach the
//! section decoders and the executor's program checks behind the CRCs; a
//! session that loads is run once on zeros when its inputs are small.
#![no_main]

use kiln_runtime::artifact;
use kiln_runtime::session::{Session, SessionOptions, TensorView};
use libfuzzer_sys::fuzz_target;

fn load_and_run(bytes: &[u8]) {
    let opts = SessionOptions { threads: 1 };
    let Ok(s) = Session::from_bytes(bytes, &opts) else {
        return;
    };
    let total: usize = s.inputs().iter().map(|i| i.byte_len()).sum();
    let out_total: usize = s.outputs().iter().map(|o| o.byte_len()).sum();
    if total > (1 << 20) || out_total > (1 << 20) {
        return;
    }
    let data: Vec<Vec<u8>> = s.inputs().iter().map(|i| vec![0u8; i.byte_len()]).collect();
    let views: Vec<TensorView> = s
        .inputs()
        .iter()
        .zip(&data)
        .map(|(i, d)| TensorView {
            dtype: i.dtype,
            shape: &i.shape,
            data: d,
        })
        .collect();
    let _ = s.run(&views);
}

fuzz_target!(|data: &[u8]| {
    load_and_run(data);
    if artifact::is_artifact(data) {
        let mut resealed = data.to_vec();
        artifact::reseal(&mut resealed);
        load_and_run(&resealed);
    }
});
