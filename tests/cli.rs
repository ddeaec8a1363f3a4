//! The `kiln` command as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn models() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kir"))
        .collect();
    v.sort();
    v
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A failed command must exit 1 with an `error:` line, and never panic.
fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    err
}

#[test]
fn print_roundtrips_every_example_byte_for_byte() {
    let ms = models();
    assert!(ms.len() >= 4, "{ms:?}");
    for m in ms {
        let o = kiln(&["print", m.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", m.display(), stderr(&o));
        let file = std::fs::read_to_string(&m).unwrap();
        assert_eq!(stdout(&o), file, "{} is not in canonical form", m.display());
    }
}

#[test]
fn run_every_example_and_write_npy() {
    for m in models() {
        let out = tmpdir(m.file_stem().unwrap().to_str().unwrap());
        let o = kiln(&[
            "run",
            "--backend",
            "ref",
            m.to_str().unwrap(),
            "--dim",
            "N=2",
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}: {}", m.display(), stderr(&o));
        let s = stdout(&o);
        assert!(
            s.contains("not given; using deterministic pseudo-random data"),
            "{s}"
        );
        assert!(s.contains("wrote "), "{s}");
        let npys: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(!npys.is_empty());
        // Deterministic: a second run gives identical bytes.
        let out2 = tmpdir(&format!(
            "{}-again",
            m.file_stem().unwrap().to_str().unwrap()
        ));
        let o2 = kiln(&[
            "run",
            "--backend",
            "ref",
            m.to_str().unwrap(),
            "--dim",
            "N=2",
            "--output-dir",
            out2.to_str().unwrap(),
        ]);
        assert!(o2.status.success());
        for e in std::fs::read_dir(&out).unwrap() {
            let p = e.unwrap().path();
            let q = out2.join(p.file_name().unwrap());
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&q).unwrap(),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn unbound_dimension_defaults_to_one_and_says_so() {
    let m = models()
        .into_iter()
        .find(|p| p.ends_with("mlp.kir"))
        .unwrap();
    let o = kiln(&["run", m.to_str().unwrap(), "--backend", "ref"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("dimension N is not bound; using N=1"), "{s}");
    assert!(s.contains("logits: f32[1,10]"), "{s}");
}

#[test]
fn demo_runs_a_real_model() {
    let o = kiln(&["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("logits: f32[4,10]"), "{s}");
}

#[test]
fn malformed_kir_reports_file_line_and_column() {
    let d = tmpdir("malformed");
    let p = d.join("bad.kir");
    std::fs::write(
        &p,
        "graph g {\n  input %x: f32[2]\n  %y = relu(%x\n  output y = %y\n}\n",
    )
    .unwrap();
    for cmd in ["print", "run"] {
        let err = assert_clean_failure(&kiln(&[cmd, p.to_str().unwrap()]));
        assert!(
            err.contains(&format!("{}:4:3: expected `,`", p.display())),
            "{err}"
        );
    }
}

#[test]
fn shape_mismatch_names_the_node_and_position() {
    let d = tmpdir("shape");
    let p = d.join("shape.kir");
    std::fs::write(
        &p,
        "graph g {\n  input %x: f32[2,3]\n  input %w: f32[4,5]\n  %y = matmul(%x, %w) @fc1\n  output y = %y\n}\n",
    )
    .unwrap();
    let err = assert_clean_failure(&kiln(&["run", p.to_str().unwrap()]));
    assert!(
        err.contains(&format!("{}:4:8: matmul: shape error", p.display())),
        "{err}"
    );
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let d = tmpdir("input");
    let m = models()
        .into_iter()
        .find(|p| p.ends_with("mlp.kir"))
        .unwrap();
    let x = d.join("x.npy");
    kiln::npy::write(&x, &kiln::ir::Tensor::f32(&[2, 3], vec![0.0; 6])).unwrap();
    let err = assert_clean_failure(&kiln(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        &format!("x={}", x.display()),
    ]));
    assert!(err.contains("input `x`: expected shape [2, 784]"), "{err}");
    let err = assert_clean_failure(&kiln(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        &format!("nope={}", x.display()),
    ]));
    assert!(
        err.contains("input `nope`: the graph has no such input"),
        "{err}"
    );
    let err = assert_clean_failure(&kiln(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        "x=/no/such/file.npy",
    ]));
    assert!(err.contains("/no/such/file.npy"), "{err}");
}

#[test]
fn missing_and_mismatched_weights_are_reported_together() {
    let d = tmpdir("weights");
    let p = d.join("m.kir");
    std::fs::write(
        &p,
        "graph g {\n  input %x: f32[2]\n  param %a: f32[2]\n  param %b: f32[2]\n  param %c: f32[2]\n  %y = add(%x, %a)\n  %z = add(%y, %b)\n  %w = add(%z, %c)\n  output w = %w\n}\n",
    )
    .unwrap();
    // No weights file at all.
    let err = assert_clean_failure(&kiln(&["run", p.to_str().unwrap()]));
    assert!(err.contains("m.safetensors"), "{err}");
    // A weights file with `a` of the wrong shape, `b` present, `c` missing.
    let mut w = kiln::ir::Weights::default();
    w.insert("a", kiln::ir::Tensor::f32(&[3], vec![0.0; 3]));
    w.insert("b", kiln::ir::Tensor::f32(&[2], vec![0.0; 2]));
    w.save(&d.join("m.safetensors")).unwrap();
    let err = assert_clean_failure(&kiln(&["run", p.to_str().unwrap()]));
    assert!(err.contains("param %a: declared f32[2] but"), "{err}");
    assert!(err.contains("holds f32[3]"), "{err}");
    assert!(err.contains("param %c: missing from"), "{err}");
    // A corrupt weights file.
    std::fs::write(d.join("m.safetensors"), b"\xff\xff\xff\xff not safetensors").unwrap();
    let err = assert_clean_failure(&kiln(&["run", p.to_str().unwrap()]));
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn bad_flags_are_clear() {
    let m = models()
        .into_iter()
        .find(|p| p.ends_with("mlp.kir"))
        .unwrap();
    let err = assert_clean_failure(&kiln(&["run", m.to_str().unwrap(), "--dim", "N"]));
    assert!(err.contains("must look like NAME=VALUE"), "{err}");
    let err = assert_clean_failure(&kiln(&["run", m.to_str().unwrap(), "--dim", "N=lots"]));
    assert!(err.contains("is not a size"), "{err}");
    let err = assert_clean_failure(&kiln(&["print", "/no/such/model.kir"]));
    assert!(err.contains("/no/such/model.kir"), "{err}");
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/models")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn opt_o2_folds_batch_norm_and_reports_stats() {
    let o = kiln(&["opt", &example("vgg_small.kir"), "-O2", "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!out.contains("batch_norm"), "{out}");
    assert!(
        out.contains("conv(%x, %s1c1.weight.bn, %s1c1.bias.bn)"),
        "{out}"
    );
    assert!(err.contains("ops changed: batch_norm 6→0"), "{err}");
    assert!(err.contains("12 values folded"), "{err}");
    let bn = err.lines().find(|l| l.starts_with("bn-fold")).unwrap();
    assert_eq!(bn.split_whitespace().last(), Some("12"), "{bn}");
    // The optimised IR is itself a valid model.
    assert!(ir_parses(&out), "{out}");
}

fn ir_parses(src: &str) -> bool {
    kiln::ir::parse(src).is_ok()
}

#[test]
fn opt_print_after_all_shows_each_stage() {
    let o = kiln(&["opt", &example("resnet_block.kir"), "--print-after-all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for pass in [
        "dce",
        "shape-fold",
        "cse",
        "const-fold",
        "simplify",
        "bn-fold",
    ] {
        assert!(
            out.contains(&format!("# ---- IR after {pass} (iteration 1) ----")),
            "{pass}: {out}"
        );
    }
    assert!(out.contains("# ---- final IR ----"));
    let o = kiln(&[
        "opt",
        &example("resnet_block.kir"),
        "--print-after",
        "bn-fold",
    ]);
    let out = stdout(&o);
    assert_eq!(out.matches("# ---- IR after").count(), 1, "{out}");
}

#[test]
fn opt_list_passes_and_pipeline_flags() {
    let o = kiln(&["opt", "--list-passes"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for p in kiln::compiler::passes::registry() {
        assert!(
            out.contains(p.name()) && out.contains(p.description()),
            "{out}"
        );
    }
    assert!(out.contains("-O2: dce fixpoint("), "{out}");
    // A pass list, and a disabled pass.
    let o = kiln(&["opt", &example("vgg_small.kir"), "--passes", "dce,cse"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("batch_norm"));
    let o = kiln(&[
        "opt",
        &example("vgg_small.kir"),
        "-O2",
        "--disable-pass",
        "bn-fold",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("batch_norm"));
    // Mistakes are clear errors.
    let err = assert_clean_failure(&kiln(&["opt", &example("mlp.kir"), "--passes", "dce,nope"]));
    assert!(err.contains("unknown pass `nope`"), "{err}");
    let err = assert_clean_failure(&kiln(&["opt", &example("mlp.kir"), "-O9"]));
    assert!(err.contains("unknown optimisation level `9`"), "{err}");
    let err = assert_clean_failure(&kiln(&[
        "opt",
        &example("mlp.kir"),
        "--passes",
        "dce",
        "--print-after",
        "cse",
    ]));
    assert!(err.contains("not in the pipeline"), "{err}");
}

#[test]
fn opt_output_runs_and_matches_the_original() {
    let d = tmpdir("opt");
    let out = d.join("vgg_o2.kir");
    let o = kiln(&[
        "opt",
        &example("vgg_small.kir"),
        "-O2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("vgg_o2.safetensors").is_file());
    for (model, sub) in [
        (example("vgg_small.kir"), "a"),
        (out.display().to_string(), "b"),
    ] {
        let o = kiln(&[
            "run",
            "--backend",
            "ref",
            &model,
            "--dim",
            "N=2",
            "--output-dir",
            d.join(sub).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let a = kiln::npy::read(&d.join("a/logits.npy")).unwrap();
    let b = kiln::npy::read(&d.join("b/logits.npy")).unwrap();
    kiln::ir::tensor::allclose(&b, &a, 1e-4, 1e-5).unwrap();
}

#[test]
fn bench_json_is_one_consistent_object() {
    let o = kiln(&[
        "bench",
        &example("mlp.kir"),
        "--backend",
        "ref",
        "--dim",
        "N=2",
        "--threads",
        "1",
        "--iters",
        "4",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench --json prints JSON");
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {out}"))
    };
    let (median, p90, min) = (num("median_ms"), num("p90_ms"), num("min_ms"));
    assert!(min > 0.0 && min <= median && median <= p90, "{out}");
    assert!(num("compile_ms") >= 0.0, "{out}");
    // The reference interpreter plans no memory.
    assert!(v["peak_bytes"].is_null(), "{out}");
    assert_eq!(v["iters"], 4, "{out}");
    assert_eq!(v["warmup"], 1, "{out}");
    assert_eq!(v["threads"], 1, "{out}");
    assert_eq!(v["backend"], "ref", "{out}");
    // The notes about generated inputs go to stderr, not into the JSON.
    assert!(stderr(&o).contains("input `x` not given"), "{}", stderr(&o));
}

#[test]
fn bench_text_reports_latency_and_compile_time() {
    let d = tmpdir("bench");
    let x = d.join("x.npy");
    let t = kiln::ir::Tensor::F32(ndarray::ArrayD::from_elem(vec![3, 784], 0.25f32));
    kiln::npy::write(&x, &t).unwrap();
    let o = kiln(&[
        "bench",
        &example("mlp.kir"),
        "--backend",
        "ref",
        "--input",
        &format!("x={}", x.display()),
        "--iters",
        "2",
        "--warmup",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for want in [
        "backend ref",
        "2 timed runs after 0 warmup",
        "compile+JIT",
        "median",
        "p90",
        "min",
        "peak arena",
    ] {
        assert!(s.contains(want), "missing `{want}`: {s}");
    }
    // N was taken from the input's shape: no note about unbound dimensions.
    assert!(!stderr(&o).contains("not bound"), "{}", stderr(&o));
}

#[test]
fn run_says_which_backend_ran() {
    let o = kiln(&[
        "run",
        &example("mlp.kir"),
        "--backend",
        "ref",
        "--dim",
        "N=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("on the ref backend"), "{}", stdout(&o));
}

#[test]
fn bench_bad_arguments_are_clear() {
    let m = example("mlp.kir");
    let err = assert_clean_failure(&kiln(&["bench", &m, "--backend", "ref", "--iters", "0"]));
    assert!(err.contains("--iters must be at least 1"), "{err}");
    let err = assert_clean_failure(&kiln(&["bench", &m, "--backend", "ref", "--input", "x"]));
    assert!(err.contains("must look like NAME=VALUE"), "{err}");
    let err = assert_clean_failure(&kiln(&[
        "bench",
        &m,
        "--backend",
        "ref",
        "--input",
        "x=/no/such/file.npy",
    ]));
    assert!(
        err.contains("input `x`") && err.contains("/no/such/file.npy"),
        "{err}"
    );
    let d = tmpdir("bench-bad");
    let y = d.join("y.npy");
    let t = kiln::ir::Tensor::F32(ndarray::ArrayD::from_elem(vec![1, 784], 0.0f32));
    kiln::npy::write(&y, &t).unwrap();
    let err = assert_clean_failure(&kiln(&[
        "bench",
        &m,
        "--backend",
        "ref",
        "--input",
        &format!("y={}", y.display()),
    ]));
    assert!(
        err.contains("input `y`") && err.contains("no such input"),
        "{err}"
    );
    let err = assert_clean_failure(&kiln(&[
        "bench",
        &m,
        "--backend",
        "ref",
        "--input",
        &format!("x={}", y.display()),
        "--dim",
        "N=5",
    ]));
    assert!(err.contains("--dim N=5 conflicts"), "{err}");
    let err = assert_clean_failure(&kiln(&["bench", "/no/such/model.kir", "--backend", "ref"]));
    assert!(err.contains("/no/such/model.kir"), "{err}");
    // Flags clap rejects: exit status 2, naming the flag and the bad value.
    for (flag, val) in [
        ("--backend", "gpu"),
        ("--threads", "many"),
        ("--iters", "lots"),
    ] {
        let o = kiln(&["bench", &m, flag, val]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(flag) && err.contains(val), "{err}");
    }
}

/// `kiln run` on an ONNX test whose integer input is a reshape target: the
/// input is bound at import time, as `kiln conformance` does, and the result
/// matches the test's expected output on both backends.
#[test]
fn run_onnx_binds_shape_inputs() {
    let root = std::env::var("KILN_ONNX_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/onnx-tests"));
    let t = root.join("node/test_reshape_extended_dims");
    if !t.join("model.onnx").exists() {
        eprintln!("skipping: no ONNX test data at {}", root.display());
        return;
    }
    let set = t.join("test_data_set_0");
    for backend in ["cpu", "ref"] {
        let out = tmpdir(&format!("onnx_bind_{backend}"));
        let o = kiln(&[
            "run",
            t.join("model.onnx").to_str().unwrap(),
            "--backend",
            backend,
            "--input",
            &format!("data={}", set.join("input_0.pb").display()),
            "--input",
            &format!("shape={}", set.join("input_1.pb").display()),
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("reshaped: f32[2,3,2,2]"),
            "{}",
            stdout(&o)
        );
        let got = kiln::npy::read(&out.join("reshaped.npy")).unwrap();
        let (_, want) =
            kiln::compiler::onnx::tensor::load_tensor_pb(&set.join("output_0.pb")).unwrap();
        kiln::ir::tensor::allclose(&got, &want, 0.0, 0.0).unwrap();
    }
}

/// `kiln run --stats` reports the planned arena next to the graph's tensors.
#[test]
fn run_stats_reports_the_plan() {
    let o = kiln(&[
        "run",
        "examples/models/vgg_small.kir",
        "--dim",
        "N=2",
        "--stats",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("plan: peak arena "))
        .unwrap_or_else(|| panic!("no plan line in {out}"));
    let num = |key: &str| -> usize {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (peak, all) = (num("peak arena "), num("all tensors of the graph "));
    assert!(peak > 0 && peak < all, "{line}");
    assert!(line.contains("conv 6"), "{line}");
}

/// `kiln compile` → `kiln inspect` → `kiln run model.kiln` on every example:
/// the artifact's outputs are the in-memory CPU backend's, bit for bit.
#[test]
fn compile_inspect_and_run_every_example_as_an_artifact() {
    let dir = tmpdir("artifact");
    for m in models() {
        let stem = m.file_stem().unwrap().to_str().unwrap().to_string();
        let art = dir.join(format!("{stem}.kiln"));
        let o = kiln(&[
            "compile",
            m.to_str().unwrap(),
            "--dim",
            "N=2",
            "-o",
            art.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        assert!(stdout(&o).contains("wrote "), "{}", stdout(&o));
        let o = kiln(&["inspect", art.to_str().unwrap()]);
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        let text = stdout(&o);
        for want in [
            "header: format 1.0",
            "target: cpu",
            "  meta ",
            "  graph ",
            "  kernels ",
            "  plan ",
            "  weights ",
            "  ptx ",
            "inputs:\n  x: f32[2,",
            "outputs:",
            "kernels: ",
            "steps: ",
            "weights: ",
        ] {
            assert!(text.contains(want), "{stem}: no `{want}` in\n{text}");
        }
        // Run the artifact (named without its extension: detected by magic)
        // and the model itself, writing the outputs.
        let renamed = dir.join(format!("{stem}.bin"));
        std::fs::copy(&art, &renamed).unwrap();
        let (a_out, m_out) = (dir.join(format!("{stem}-a")), dir.join(format!("{stem}-m")));
        let o = kiln(&[
            "run",
            renamed.to_str().unwrap(),
            "--output-dir",
            a_out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        let o = kiln(&[
            "run",
            m.to_str().unwrap(),
            "--dim",
            "N=2",
            "--output-dir",
            m_out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        for e in std::fs::read_dir(&m_out).unwrap() {
            let name = e.unwrap().file_name();
            let (x, y) = (
                std::fs::read(m_out.join(&name)).unwrap(),
                std::fs::read(a_out.join(&name)).unwrap(),
            );
            assert!(x == y, "{stem}: {name:?} differs through the artifact");
        }
        let o = kiln(&["bench", art.to_str().unwrap(), "--iters", "2", "--json"]);
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        assert!(stdout(&o).contains("\"median_ms\""), "{}", stdout(&o));
    }
}

#[test]
fn corrupt_artifacts_are_clear_errors() {
    let dir = tmpdir("artifact-bad");
    let m = models()
        .into_iter()
        .find(|p| p.ends_with("mlp.kir"))
        .unwrap();
    let art = dir.join("mlp.kiln");
    let o = kiln(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        art.to_str().unwrap(),
        "-O1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("dimension N is not bound; using N=1"),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(&art).unwrap();
    // A flipped weight byte: the weights checksum.
    let mut b = bytes.clone();
    let last = b.len() - 100;
    b[last] ^= 1;
    let bad = dir.join("flipped.kiln");
    std::fs::write(&bad, &b).unwrap();
    for cmd in ["run", "inspect", "bench"] {
        let e = assert_clean_failure(&kiln(&[cmd, bad.to_str().unwrap()]));
        assert!(
            e.contains("checksum mismatch in the weights section"),
            "{cmd}: {e}"
        );
    }
    // Truncated.
    let cut = dir.join("cut.kiln");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = assert_clean_failure(&kiln(&["run", cut.to_str().unwrap()]));
    assert!(e.contains("truncated artifact"), "{e}");
    // Not an artifact at all.
    let e = assert_clean_failure(&kiln(&["inspect", m.to_str().unwrap()]));
    assert!(e.contains("bad magic"), "{e}");
    // Options that make no sense for an artifact.
    let e = assert_clean_failure(&kiln(&["run", art.to_str().unwrap(), "--dim", "N=4"]));
    assert!(e.contains("fixed when it is compiled"), "{e}");
    let e = assert_clean_failure(&kiln(&["run", art.to_str().unwrap(), "--backend", "ref"]));
    assert!(e.contains("cpu backend"), "{e}");
    // A wrong input shape names the input.
    let x = dir.join("x.npy");
    kiln::npy::write(&x, &kiln::ir::Tensor::f32(&[1, 3], vec![0.0; 3])).unwrap();
    let e = assert_clean_failure(&kiln(&[
        "run",
        art.to_str().unwrap(),
        "--input",
        &format!("x={}", x.display()),
    ]));
    assert!(
        e.contains("input `x`: expected f32[1,784], got f32[1,3]"),
        "{e}"
    );
}
