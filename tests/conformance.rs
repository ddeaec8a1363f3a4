//! CI guard for ONNX conformance: every test in the committed manifest
//! (`tests/conformance/expected_pass.txt`) must still pass on the reference
//! backend, and on the CPU backend (fused JIT kernels, native GEMM/conv,
//! memory plan), also through a `.kiln` artifact round trip. New passes are added with
//! `kiln conformance DIR --write-manifest tests/conformance/expected_pass.txt`.
//!
//! The data comes from `KILN_ONNX_TESTS`, else `../shared/onnx-tests`; when
//! neither exists the test says so and passes (regenerate the data with
//! `tests/conformance/gen_onnx_tests.py`).

use std::path::PathBuf;

use kiln::conformance::{run_test, Backend, Status};

fn data_dir() -> Option<PathBuf> {
    let p = match std::env::var_os("KILN_ONNX_TESTS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/onnx-tests"),
    };
    p.is_dir().then_some(p)
}

fn manifest() -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/expected_pass.txt");
    std::fs::read_to_string(path)
        .expect("the manifest is committed")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Run every manifest test with `opt` and fail listing each regression.
fn check_manifest(backend: Backend, opt: Option<&str>) {
    let Some(root) = data_dir() else {
        eprintln!(
            "skipping: no ONNX test data (set KILN_ONNX_TESTS or create ../shared/onnx-tests with tests/conformance/gen_onnx_tests.py)"
        );
        return;
    };
    let ids = manifest();
    assert!(!ids.is_empty(), "the manifest lists no tests");
    let mut broken = Vec::new();
    for id in &ids {
        let dir = root.join(id);
        if !dir.join("model.onnx").is_file() {
            broken.push(format!("{id}: missing from {}", root.display()));
            continue;
        }
        let r = run_test(&dir, &root, backend, opt);
        if r.status != Status::Passed {
            broken.push(format!("{id}: {} ({})", r.status.as_str(), r.detail));
        }
    }
    eprintln!(
        "{} manifest tests checked ({backend:?}, {opt:?})",
        ids.len()
    );
    assert!(
        broken.is_empty(),
        "{} regressions:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn manifest_tests_still_pass_on_ref() {
    check_manifest(Backend::Ref, None);
}

/// The differential check of the pass pipeline: every test that passes
/// unoptimised must pass after `-O2` too.
#[test]
fn manifest_tests_still_pass_on_ref_after_o2() {
    check_manifest(Backend::Ref, Some("O2"));
}

/// The CPU backend (which optimises at -O2 itself) passes everything the
/// reference passes.
#[test]
fn manifest_tests_still_pass_on_cpu() {
    check_manifest(Backend::Cpu, None);
}

/// The artifact round trip: each manifest model compiled at -O2, written as
/// `.kiln` bytes, loaded into a `Session` and run must pass too, so the
/// score through an artifact equals the in-memory CPU score (every manifest
/// test, as `manifest_tests_still_pass_on_cpu` checks). Both are kept: they
/// share the executor but not the graph's path (in memory, or printed,
/// parsed back and rebound by the loader).
#[test]
fn manifest_tests_still_pass_via_artifact() {
    check_manifest(Backend::CpuArtifact, None);
}
