//! `kiln run` on each example model, compared with outputs computed
//! independently by numpy (`tests/data/make_expected.py`) from the same
//! committed weights and the same input.

use std::path::Path;
use std::process::Command;

/// The backends checked against numpy.
const BACKENDS: &[&str] = &["ref", "cpu"];

fn check_model(name: &str, outputs: &[&str]) {
    for backend in BACKENDS {
        check_model_on(name, outputs, backend);
    }
}

fn check_model_on(name: &str, outputs: &[&str], backend: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("tests/data");
    let model = root.join(format!("examples/models/{name}.kir"));
    let out = std::env::temp_dir().join(format!("kiln-{backend}-{name}-{}", std::process::id()));
    let x = data.join(format!("{name}_x.npy"));
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "run",
            model.to_str().unwrap(),
            "--backend",
            backend,
            "--input",
            &format!("x={}", x.display()),
        ])
        .args(["--output-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The input's batch size binds N, so the run must not fall back to N=1.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("not bound"));
    for k in outputs {
        let got = kiln::npy::read(&out.join(format!("{k}.npy"))).unwrap();
        let want = kiln::npy::read(&data.join(format!("{name}_expected_{k}.npy"))).unwrap();
        // numpy computed in f64 and rounded once; kiln rounds after every op.
        kiln::ir::tensor::allclose(&got, &want, 1e-4, 1e-5)
            .unwrap_or_else(|e| panic!("{name}/{k} on {backend}: {e}"));
    }
}

#[test]
fn mlp_matches_numpy() {
    check_model("mlp", &["logits", "probs"]);
}

#[test]
fn lenet5_matches_numpy() {
    check_model("lenet5", &["logits"]);
}

#[test]
fn vgg_small_matches_numpy() {
    check_model("vgg_small", &["logits"]);
}

#[test]
fn resnet_block_matches_numpy() {
    check_model("resnet_block", &["y"]);
}
