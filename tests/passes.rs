//! Pass snapshot tests, in the style of Cranelift's filetests.
//!
//! `tests/passes/<pass>/*.kir` are hand-written cases. Each starts with a
//! comment `# expect: changed.` or `# expect: unchanged.` and a sentence on
//! what it checks. [`check_pass`] runs the one pass (through the pass
//! manager, so the verifier runs after it), then:
//! - snapshots the canonical IR after the pass (`tests/passes/snapshots/`);
//! - checks the expectation: an `unchanged` case must print exactly as before;
//! - runs the reference interpreter on the graph before and after, on the same
//!   deterministic inputs and weights, and requires the outputs to agree.
//!
//! The second half snapshots the IR of each example model after every pass of
//! the whole `-O2` pipeline, and checks the optimised model against the original.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln::compiler::passes::{PassManager, Pipeline, PrintAfter};
use kiln::ir::{self, Graph, Tensor, Weights};

const SEED: u64 = 7;

fn inputs_for(g: &Graph) -> HashMap<String, Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let val = g.value(v);
            let name = val.name.clone().unwrap_or_default();
            let t = kiln::init::random_input(&name, &val.ty).expect("static input shapes");
            (name, t)
        })
        .collect()
}

/// Outputs of `after` must match `before` on the same inputs.
fn assert_same_outputs(what: &str, before: (&Graph, &Weights), after: (&Graph, &Weights)) {
    let feeds = inputs_for(before.0);
    let want =
        ir::run(before.0, before.1, &feeds).unwrap_or_else(|e| panic!("{what}: before: {e}"));
    let got = ir::run(after.0, after.1, &feeds).unwrap_or_else(|e| panic!("{what}: after: {e}"));
    assert_eq!(want.len(), got.len(), "{what}: output count");
    for ((n1, t1), (n2, t2)) in want.iter().zip(&got) {
        assert_eq!(n1, n2, "{what}: output order");
        assert_eq!(t1.dtype(), t2.dtype(), "{what}: output `{n1}` dtype");
        ir::tensor::allclose(t2, t1, 1e-5, 1e-6)
            .unwrap_or_else(|e| panic!("{what}: output `{n1}` differs after the pass: {e}"));
    }
}

fn cases(pass: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/passes")
        .join(pass);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "kir"))
        .collect();
    v.sort();
    v
}

/// Run every case of `pass`; see the module docs.
fn check_pass(pass: &str) {
    let files = cases(pass);
    assert!(files.len() >= 5, "{pass}: only {} cases", files.len());
    for path in files {
        let case = path.file_stem().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(&path).unwrap();
        let expect_change = if src.starts_with("# expect: changed") {
            true
        } else if src.starts_with("# expect: unchanged") {
            false
        } else {
            panic!(
                "{}: must start with `# expect: changed.` or `# expect: unchanged.`",
                path.display()
            );
        };
        let g0 = ir::parse(&src).unwrap_or_else(|e| panic!("{}:{e}", path.display()));
        let w0 = kiln::init::init_weights(&g0, SEED).unwrap();
        let (mut g, mut w) = (g0.clone(), w0.clone());
        let mut pm = PassManager::new(Pipeline::from_list(pass).unwrap());
        pm.run(&mut g, &mut w)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (before, after) = (ir::print(&g0), ir::print(&g));
        if expect_change {
            assert_ne!(
                before,
                after,
                "{}: the pass should have fired",
                path.display()
            );
        } else {
            assert_eq!(before, after, "{}: the pass must not fire", path.display());
        }
        assert_same_outputs(&path.display().to_string(), (&g0, &w0), (&g, &w));
        insta::with_settings!({
            snapshot_path => "passes/snapshots",
            prepend_module_to_snapshot => false,
            description => src.lines().next().unwrap_or_default().trim_start_matches("# "),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("{pass}__{case}"), after);
        });
    }
}

#[test]
fn pass_dce() {
    check_pass("dce");
}
#[test]
fn pass_cse() {
    check_pass("cse");
}
#[test]
fn pass_const_fold() {
    check_pass("const-fold");
}
#[test]
fn pass_simplify() {
    check_pass("simplify");
}
#[test]
fn pass_shape_fold() {
    check_pass("shape-fold");
}
#[test]
fn pass_bn_fold() {
    check_pass("bn-fold");
}
#[test]
fn pass_fusion() {
    check_pass("fusion");
}
#[test]
fn pass_expand_rnn() {
    check_pass("expand-rnn");
}

/// Every registered pass has a case folder.
#[test]
fn every_pass_has_cases() {
    for p in kiln::compiler::passes::registry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/passes")
            .join(p.name());
        assert!(
            dir.is_dir(),
            "pass `{}` has no tests/passes/{} folder",
            p.name(),
            p.name()
        );
    }
}

/// `-O2` on each example model: a snapshot after every pass run that changed
/// the graph, and the
/// optimised model must compute what the original does.
#[test]
fn o2_pipeline_on_examples() {
    for (name, src) in kiln::examples::MODELS {
        let mut g0 = ir::parse(src).unwrap();
        let dims = g0.symbols().into_iter().map(|s| (s, 2)).collect();
        g0.bind_dims(&dims).unwrap();
        let w0 = kiln::init::init_weights(&g0, kiln::examples::WEIGHT_SEED).unwrap();
        let (mut g, mut w) = (g0.clone(), w0.clone());
        let mut pm = PassManager::new(Pipeline::level("O2").unwrap());
        pm.print_after = PrintAfter::All;
        pm.run(&mut g, &mut w)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Snapshot the runs that changed something (unchanged runs would repeat the IR).
        assert_eq!(pm.printed.len(), pm.stats.len());
        let changed = pm
            .stats
            .iter()
            .zip(&pm.printed)
            .filter(|(st, _)| st.changed);
        for (k, (_, (pass, it, ir))) in changed.enumerate() {
            insta::with_settings!({
                snapshot_path => "passes/snapshots",
                prepend_module_to_snapshot => false,
                description => format!("{name} -O2, step {k}: after {pass} (iteration {it})"),
                omit_expression => true,
            }, {
                insta::assert_snapshot!(format!("o2__{name}__{k:02}_{pass}"), ir);
            });
        }
        insta::with_settings!({
            snapshot_path => "passes/snapshots",
            prepend_module_to_snapshot => false,
            description => format!("{name} after -O2"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("o2__{name}__final"), ir::print(&g));
        });
        assert_same_outputs(name, (&g0, &w0), (&g, &w));
    }
}

/// `autodiff` adds outputs, so it has its own check: the original outputs
/// are unchanged and come first, each param gets a `grad_<name>` output,
/// and the IR is snapshotted like the other passes'. (The gradients' values
/// are checked against finite differences in `compiler/tests/gradcheck.rs`.)
#[test]
fn pass_autodiff() {
    for path in cases("autodiff") {
        let case = path.file_stem().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(&path).unwrap();
        let expect_change = src.starts_with("# expect: changed");
        let g0 = ir::parse(&src).unwrap_or_else(|e| panic!("{}:{e}", path.display()));
        let w0 = kiln::init::init_weights(&g0, SEED).unwrap();
        let (mut g, mut w) = (g0.clone(), w0.clone());
        let mut pm = PassManager::new(Pipeline::from_list("autodiff").unwrap());
        pm.run(&mut g, &mut w)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (before, after) = (ir::print(&g0), ir::print(&g));
        assert_eq!(expect_change, before != after, "{}", path.display());
        let n0 = g0.outputs().len();
        let grads: Vec<String> = g.outputs()[n0..].iter().map(|(n, _)| n.clone()).collect();
        let want: Vec<String> = g0
            .params()
            .iter()
            .map(|&p| format!("grad_{}", g0.value(p).name.as_ref().unwrap()))
            .collect();
        assert_eq!(grads, want, "{}", path.display());
        let feeds = inputs_for(&g0);
        let a = ir::run(&g0, &w0, &feeds).unwrap();
        let b = ir::run(&g, &w, &feeds).unwrap();
        for ((n1, t1), (n2, t2)) in a.iter().zip(&b) {
            assert_eq!(n1, n2);
            ir::tensor::allclose(t2, t1, 0.0, 0.0).unwrap();
        }
        insta::with_settings!({
            snapshot_path => "passes/snapshots",
            prepend_module_to_snapshot => false,
            description => src.lines().next().unwrap_or_default().trim_start_matches("# "),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("autodiff__{case}"), after);
        });
    }
}
