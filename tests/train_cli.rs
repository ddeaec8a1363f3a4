//! `kiln data` and `kiln train` as a user runs them, and the trained weights
//! going through `kiln run --weights`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

/// The percentage on the line starting with `prefix`, e.g. `train: loss
/// 0.1 accuracy 99.33%`.
fn accuracy(out: &str, prefix: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in\n{out}"));
    let a = line.split("accuracy ").nth(1).unwrap();
    a[..a.find('%').unwrap()].trim().parse().unwrap()
}

/// The README's spiral command: ≥ 98% training accuracy; the saved weights
/// then run the inference model through `kiln run --weights` and classify
/// the same points as well.
#[test]
fn spiral_readme_command_and_inference() {
    let d = tmpdir("spiral");
    let csv = d.join("spiral.csv").display().to_string();
    let out = ok(&kiln(&["data", "spiral", "-o", &csv]));
    assert!(out.contains("300 samples, 3 classes"), "{out}");
    let w = d.join("mlp.safetensors").display().to_string();
    let model = repo("examples/spiral/mlp.kir");
    let out = ok(&kiln(&[
        "train", &model, "--data", &csv, "--epochs", "300", "--batch", "60", "--lr", "0.01",
        "--l2", "1e-4", "--save", &w,
    ]));
    assert!(out.contains("epoch   1: loss"), "{out}");
    assert!(out.contains("epoch 300: loss"), "{out}");
    assert!(accuracy(&out, "train:") >= 98.0, "{out}");

    // Inference with the trained weights.
    let ds = kiln::data::Dataset::load_csv(Path::new(&csv), -1).unwrap();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let (x, labels) = ds.gather(&idx, &[2]).unwrap();
    let xp = d.join("x.npy");
    kiln::npy::write(&xp, &x).unwrap();
    let outdir = d.join("out");
    ok(&kiln(&[
        "run",
        &model,
        "--weights",
        &w,
        "--input",
        &format!("x={}", xp.display()),
        "--output-dir",
        &outdir.display().to_string(),
    ]));
    let logits = kiln::npy::read(&outdir.join("logits.npy")).unwrap();
    let correct = kiln::train::count_correct(&logits, &labels);
    assert!(correct as f64 >= 0.98 * 300.0, "{correct}/300");
    // Without --weights the model has no weights beside it.
    fails(&kiln(&["run", &model]));
    std::fs::remove_dir_all(&d).ok();
}

/// `.npy` data with `--labels`, the optimizer/schedule flags, and a test set.
#[test]
fn npy_data_and_flags() {
    let d = tmpdir("npy");
    let ds = kiln::data::spiral(20, 3, 1);
    let idx: Vec<usize> = (0..ds.len()).collect();
    let (x, y) = ds.gather(&idx, &[2]).unwrap();
    let xp = d.join("x.npy");
    let yp = d.join("y.npy");
    kiln::npy::write(&xp, &x).unwrap();
    let yt = kiln::ir::Tensor::from_i64(
        kiln::ir::DType::I64,
        ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(&[y.len()]),
            y.iter().map(|&v| v as i64).collect(),
        )
        .unwrap(),
    );
    kiln::npy::write(&yp, &yt).unwrap();
    let (xs, ys) = (xp.display().to_string(), yp.display().to_string());
    let model = repo("examples/spiral/mlp.kir");
    for opt in ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"] {
        let out = ok(&kiln(&[
            "train",
            &model,
            "--data",
            &xs,
            "--labels",
            &ys,
            "--test",
            &xs,
            "--test-labels",
            &ys,
            "--optimizer",
            opt,
            "--lr",
            "0.05",
            "--weight-decay",
            "1e-4",
            "--clip-norm",
            "5",
            "--schedule",
            "cosine:20",
            "--epochs",
            "5",
            "--batch",
            "16",
            "--loss",
            if opt == "sgd" {
                "hinge"
            } else {
                "cross_entropy"
            },
        ]));
        assert!(out.contains("3 steps/epoch"), "{out}");
        assert!(out.contains("trained 5 epochs (15 steps)"), "{out}");
        assert_eq!(accuracy(&out, "train:"), accuracy(&out, "test:"), "{out}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bench_mode_times_a_step() {
    let out = ok(&kiln(&[
        "train",
        &repo("examples/spiral/mlp.kir"),
        "--bench",
        "3",
        "--batch",
        "8",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{out}");
    assert_eq!(v["batch"], 8);
}

#[test]
fn bad_training_input_is_an_error() {
    let d = tmpdir("bad");
    let model = repo("examples/spiral/mlp.kir");
    let csv = d.join("d.csv");
    std::fs::write(&csv, "0.1,0.2,0\n0.3,0.4,7\n").unwrap();
    let c = csv.display().to_string();
    let e = fails(&kiln(&["train", &model, "--data", &c, "--batch", "2"]));
    assert!(
        e.contains("labels go up to 7, but the model has 3 outputs"),
        "{e}"
    );
    std::fs::write(&csv, "0.1,0.2,0\n0.3,oops,1\n").unwrap();
    let e = fails(&kiln(&["train", &model, "--data", &c]));
    assert!(
        e.contains("d.csv:2: column 2: `oops` is not a number"),
        "{e}"
    );
    std::fs::write(&csv, "0.1,0.2,0.3,0\n").unwrap();
    let e = fails(&kiln(&["train", &model, "--data", &c]));
    assert!(e.contains("3 features"), "{e}");
    std::fs::write(&csv, "0.1,0.2,0\n").unwrap();
    for (flag, val, msg) in [
        ("--loss", "hinge2", "--loss hinge2: expected one of"),
        ("--optimizer", "lbfgs", "--optimizer lbfgs: expected one of"),
        ("--schedule", "step:0:0.5", "--schedule"),
        ("--lr", "nan", "learning rate"),
        ("--clip-norm", "0", "clipping norm"),
    ] {
        let e = fails(&kiln(&["train", &model, "--data", &c, flag, val]));
        assert!(e.contains(msg), "{flag} {val}: {e}");
    }
    let e = fails(&kiln(&["train", &model, "--data", &repo("nope.npy")]));
    assert!(e.contains("--labels"), "{e}");
    let e = fails(&kiln(&[
        "train",
        &model,
        "--data",
        &d.join("missing.csv").display().to_string(),
    ]));
    assert!(e.contains("missing.csv"), "{e}");
    // clap's usage error (exit 2) for a missing --data.
    let o = kiln(&["train", &model]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--data"));
    let e = fails(&kiln(&["data", "moons", "-o", &c]));
    assert!(e.contains("no dataset `moons`"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}
