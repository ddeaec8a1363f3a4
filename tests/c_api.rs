//! The C API from C: `examples/c/main.c` is built with `cc` against
//! kiln-runtime's static library, run on an artifact of every example model
//! that the `kiln` CLI compiled, and must reproduce the Rust session's
//! outputs bit for bit; `tests/c/errors.c` drives the error paths (missing
//! and corrupt files, truncations, null pointers, wrong counts, ranks,
//! shapes, dtypes, lengths, overlapping buffers) and must see the right
//! code and a message for each, without crashing. Skipped, saying so, when
//! there is no `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::runtime::session::{Session, SessionOptions, TensorView};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// kiln-runtime's static library from this build: cargo builds every crate
/// type of the dependency into `target/<profile>/deps` (and `-p
/// kiln-runtime` builds uplift it one level up); take the newest.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("libkiln_runtime.a"),
        deps.parent().unwrap_or(deps).join("libkiln_runtime.a"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no libkiln_runtime.a in {candidates:?}"))
}

fn build_c(src: &Path, out: &Path) {
    let o = Command::new("cc")
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-std=c99", "-I"])
        .arg(root().join("runtime/include"))
        .arg(src)
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .output()
        .expect("runs cc");
    assert!(
        o.status.success(),
        "cc {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn kiln_compile(model: &str, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("compile")
        .arg(root().join(model))
        .args(["--dim", "N=2", "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kiln compile {model}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The outputs' bytes, one after another, as the Rust session computes
/// them on main.c's inputs.
fn expected(artifact: &Path) -> Vec<u8> {
    let s = Session::load(artifact, &SessionOptions { threads: 2 }).unwrap();
    let data: Vec<Vec<f32>> = s
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, io)| {
            let n: usize = io.shape.iter().product();
            (0..n)
                .map(|i| ((i * 37 + k * 11) % 101) as f32 - 50.0)
                .map(|v| v / 64.0)
                .collect()
        })
        .collect();
    let views: Vec<TensorView> = data
        .iter()
        .zip(s.inputs())
        .map(|(d, io)| TensorView::f32(d, &io.shape))
        .collect();
    s.run(&views)
        .unwrap()
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect()
}

#[test]
fn c_example_matches_the_rust_session_on_every_example() {
    if !have_cc() {
        eprintln!("SKIPPED: no `cc` on this machine; the C API test needs a C compiler");
        return;
    }
    let exe = tmp("kiln_c_example");
    build_c(&root().join("examples/c/main.c"), &exe);
    for name in ["mlp", "lenet5", "vgg_small", "resnet_block"] {
        let art = tmp(&format!("{name}.kiln"));
        kiln_compile(&format!("examples/models/{name}.kir"), &art);
        let want = expected(&art);
        let want_path = tmp(&format!("{name}.expected.bin"));
        std::fs::write(&want_path, &want).unwrap();
        let o = Command::new(&exe)
            .arg(&art)
            .arg(&want_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains("input 0: "), "{stdout}");
        assert!(
            stdout.contains(&format!("outputs match {}", want_path.display())),
            "{stdout}"
        );
        // The check can fail: one flipped bit is a mismatch (exit 2).
        let mut wrong = want.clone();
        let mid = wrong.len() / 2;
        wrong[mid] ^= 1;
        std::fs::write(&want_path, &wrong).unwrap();
        let o = Command::new(&exe)
            .arg(&art)
            .arg(&want_path)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{name}: a wrong expectation passed"
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("MISMATCH"));
    }
}

#[test]
fn c_error_paths_return_codes_and_messages() {
    if !have_cc() {
        eprintln!("SKIPPED: no `cc` on this machine; the C API test needs a C compiler");
        return;
    }
    let exe = tmp("kiln_c_errors");
    build_c(&root().join("tests/c/errors.c"), &exe);
    let art = tmp("errors_lenet5.kiln");
    kiln_compile("examples/models/lenet5.kir", &art);
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let corrupt = tmp("errors_corrupt.kiln");
    std::fs::write(&corrupt, &bytes).unwrap();
    let o = Command::new(&exe).arg(&art).arg(&corrupt).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "case missing_file: KILN_ERR_IO /nonexistent/dir/model.kiln",
        "case corrupt_file: KILN_ERR_FORMAT checksum mismatch",
        "case wrong_shape: KILN_ERR_INVALID_ARGUMENT input `x`: shape [2, 1, 28, 29] given",
        "case wrong_dtype: KILN_ERR_INVALID_ARGUMENT input `x`: dtype code 11",
        "case no_inputs: KILN_ERR_INVALID_ARGUMENT 0 inputs given, the model has 1",
        "case output_overlaps_input: KILN_ERR_INVALID_ARGUMENT output `logits`",
        "0 failures",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
}
