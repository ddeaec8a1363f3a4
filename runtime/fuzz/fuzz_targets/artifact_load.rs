//! Arbitrary bytes through the whole loader: header, table, checksums,
//! sections, program validation and executor preparation. Any `Err` is
//! fine; a panic, an abort or undefined behaviour is a bug.
#![no_main]

use kiln_runtime::session::{Session, SessionOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Session::from_bytes(data, &SessionOptions { threads: 1 });
});
