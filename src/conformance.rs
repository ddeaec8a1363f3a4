//! The ONNX backend-test conformance runner behind `kiln conformance`.
//!
//! Each test folder holds `model.onnx` and `test_data_set_*/{input,output}_K.pb`.
//! A test passes when every data set's outputs match within the upstream
//! tolerances (rtol 1e-3, atol 1e-7); it is *unsupported* when the import fails
//! only on missing ops/attributes/dtypes, and *failed* otherwise.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kiln_compiler::onnx::{self, import::ImportOptions};
use kiln_ir::{Tensor, Weights};

pub const RTOL: f64 = 1e-3;
pub const ATOL: f64 = 1e-7;

pub use crate::backend::Backend;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    Unsupported,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Unsupported => "unsupported",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TestResult {
    /// The suite (`node`, `simple`, ...): the test folder's parent, relative to the root.
    pub suite: String,
    pub name: String,
    /// Distinct ONNX op types in the model, in first-use order.
    pub ops: Vec<String>,
    /// Every graph input and output is a non-string tensor (the issue's
    /// "tensor-only" tests: no string, sequence, optional or map values).
    pub tensor_only: bool,
    pub status: Status,
    /// Why it failed or is unsupported (one line).
    pub detail: String,
}

impl TestResult {
    pub fn id(&self) -> String {
        format!("{}/{}", self.suite, self.name)
    }
}

/// Every test folder (one holding `model.onnx`) under `root`, sorted.
pub fn find_tests(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("model.onnx").is_file() {
            out.push(d);
            continue;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn one_line(s: &str) -> String {
    let s = s.replace(['\n', '\t'], " ");
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(297).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Run one test folder. With `opt`, the imported graph is first optimised at
/// that level (`O1`, `O2`), so the test checks the passes as well.
pub fn run_test(dir: &Path, root: &Path, backend: Backend, opt: Option<&str>) -> TestResult {
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suite = dir
        .parent()
        .and_then(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ".".into());
    let mut r = TestResult {
        suite,
        name,
        ops: Vec::new(),
        tensor_only: tensor_only(&dir.join("model.onnx")),
        status: Status::Failed,
        detail: String::new(),
    };
    // A panic is a kiln bug, but one test's bug must not stop the scoreboard.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_test_inner(dir, backend, opt, &mut r.ops)
    }));
    match outcome {
        Ok(Ok(())) => r.status = Status::Passed,
        Ok(Err((status, detail))) => {
            r.status = status;
            r.detail = one_line(&detail);
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            r.detail = one_line(&format!("panic: {}", msg.unwrap_or_default()));
        }
    }
    r
}

/// Whether every graph input and output of the model is a non-string tensor.
fn tensor_only(model: &Path) -> bool {
    use kiln_compiler::onnx::proto::type_proto::Value as T;
    const STRING: i32 = 8;
    let Ok(m) = onnx::load_model(model) else {
        return true;
    };
    let Some(g) = &m.graph else { return true };
    g.input.iter().chain(&g.output).all(|vi| {
        match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(T::TensorType(t)) => t.elem_type() != STRING,
            None => true,
            Some(_) => false,
        }
    })
}

type Outcome = Result<(), (Status, String)>;

fn failed(msg: impl Into<String>) -> (Status, String) {
    (Status::Failed, msg.into())
}

fn run_test_inner(
    dir: &Path,
    backend: Backend,
    opt: Option<&str>,
    ops: &mut Vec<String>,
) -> Outcome {
    let model = onnx::load_model(&dir.join("model.onnx")).map_err(|e| failed(e.to_string()))?;
    if let Some(g) = &model.graph {
        for n in &g.node {
            let op = if n.domain().is_empty() || n.domain() == "ai.onnx" {
                n.op_type().to_string()
            } else {
                format!("{}:{}", n.domain(), n.op_type())
            };
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| failed("the model has no graph"))?;
    for vi in graph.input.iter().chain(&graph.output) {
        use kiln_compiler::onnx::proto::type_proto::Value as T;
        let kind = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(T::TensorType(_)) | None => continue,
            Some(T::SequenceType(_)) => "sequence",
            Some(T::OptionalType(_)) => "optional",
            Some(T::MapType(_)) => "map",
            Some(_) => "non-tensor",
        };
        return Err((
            Status::Unsupported,
            format!(
                "`{}` is a {kind} value (kiln supports tensors only)",
                vi.name()
            ),
        ));
    }
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name()).collect();
    let input_names: Vec<String> = graph
        .input
        .iter()
        .map(|v| v.name().to_string())
        .filter(|n| !inits.contains(n.as_str()))
        .collect();
    let output_names: Vec<String> = graph.output.iter().map(|v| v.name().to_string()).collect();

    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err(failed("no test_data_set_* folders"));
    }
    for set in &sets {
        let read = |prefix: &str, n: usize| -> Result<Vec<Tensor>, (Status, String)> {
            (0..n)
                .map(|k| {
                    let p = set.join(format!("{prefix}_{k}.pb"));
                    onnx::tensor::load_tensor_pb(&p)
                        .map(|(_, t)| t)
                        .map_err(|e| {
                            let s = e.to_string();
                            // An input dtype kiln lacks (strings, float8...) is unsupported, not wrong.
                            let status = if s.contains("unsupported") {
                                Status::Unsupported
                            } else {
                                Status::Failed
                            };
                            (status, s)
                        })
                })
                .collect()
        };
        let inputs = read("input", input_names.len())?;
        let expected = read("output", output_names.len())?;
        let mut opts = ImportOptions {
            input_shapes: input_names
                .iter()
                .cloned()
                .zip(inputs.iter().map(|t| t.shape().to_vec()))
                .collect(),
            ..Default::default()
        };
        let mut feeds: HashMap<String, Tensor> = input_names.iter().cloned().zip(inputs).collect();
        let attempt = import_binding_inputs(&model, &mut opts, &mut feeds);
        let imported = attempt.map_err(|e| {
            let status = if e.is_unsupported() {
                Status::Unsupported
            } else {
                Status::Failed
            };
            (
                status,
                e.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let mut imported = imported;
        if let Some(level) = opt {
            kiln_compiler::passes::optimize(level, &mut imported.graph, &mut imported.weights)
                .map_err(|e| failed(format!("-{level}: {e}")))?;
        }
        let outs = match backend {
            Backend::Ref => run_ref(&imported.graph, &imported.weights, &feeds)?,
            Backend::Cpu | Backend::CpuArtifact => {
                run_cpu(imported.graph, imported.weights, &feeds, backend)?
            }
        };
        for (k, (name, want)) in output_names.iter().zip(&expected).enumerate() {
            let got = outs
                .get(name)
                .ok_or_else(|| failed(format!("output {k} `{name}` missing")))?;
            if got.dtype() != want.dtype() {
                return Err(failed(format!(
                    "output `{name}`: dtype {} but expected {}",
                    got.dtype(),
                    want.dtype()
                )));
            }
            kiln_ir::tensor::allclose(got, want, RTOL, ATOL)
                .map_err(|e| failed(format!("output `{name}`: {e}")))?;
        }
    }
    Ok(())
}

/// Import `model`, binding given inputs as compile-time constants where the
/// importer needs them. kiln compiles static graphs: when an integer input
/// feeds a shape-like parameter (axes, pads, a reshape target), it is bound
/// at import time, as a user would with a fixed model. Inputs the importer
/// names as needed (Resize's float scales, a Loop condition) are bound too;
/// one converter may name only its first such input, so this repeats. As a
/// last resort, scalars of any dtype are bound (a float OneHot depth,
/// Range's bounds, Dropout's training_mode). Bound inputs leave `feeds`.
pub fn import_binding_inputs(
    model: &onnx::proto::ModelProto,
    opts: &mut ImportOptions,
    feeds: &mut HashMap<String, Tensor>,
) -> Result<onnx::import::Imported, onnx::import::ImportError> {
    let mut attempt = onnx::import::import_model(model, opts);
    let mut bind_scalars = false;
    for round in 0..5 {
        let Err(e) = &attempt else { break };
        if !e.needs_const_inputs() {
            break;
        }
        let named = e.const_input_names();
        let before = opts.const_inputs.len();
        for (name, t) in feeds.iter() {
            let int = matches!(t.dtype(), kiln_ir::DType::I64 | kiln_ir::DType::I32);
            let scalar = bind_scalars && t.shape().is_empty();
            if (round == 0 && int) || named.contains(name) || scalar {
                opts.const_inputs.insert(name.clone(), t.clone());
            }
        }
        if opts.const_inputs.len() == before {
            if bind_scalars {
                break;
            }
            bind_scalars = true;
            continue;
        }
        feeds.retain(|n, _| !opts.const_inputs.contains_key(n));
        attempt = onnx::import::import_model(model, opts);
    }
    attempt
}

fn run_ref(
    g: &kiln_ir::Graph,
    w: &Weights,
    feeds: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, (Status, String)> {
    kiln_ir::run(g, w, feeds)
        .map(|v| v.into_iter().collect())
        .map_err(|e| failed(e.to_string()))
}

fn run_cpu(
    graph: kiln_ir::Graph,
    weights: Weights,
    feeds: &HashMap<String, Tensor>,
    backend: Backend,
) -> Result<HashMap<String, Tensor>, (Status, String)> {
    let p = crate::backend::Prepared::new(
        kiln_ir::Model { graph, weights },
        backend,
        &crate::backend::PrepareOptions::default(),
    )
    .map_err(|e| failed(format!("cpu backend: {e:#}")))?;
    p.run(feeds)
        .map(|v| v.into_iter().collect())
        .map_err(|e| failed(format!("{e:#}")))
}

/// Counts (passed, failed, unsupported).
pub fn totals<'a>(rs: impl IntoIterator<Item = &'a TestResult>) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for r in rs {
        match r.status {
            Status::Passed => t.0 += 1,
            Status::Failed => t.1 += 1,
            Status::Unsupported => t.2 += 1,
        }
    }
    t
}

pub fn summary_line(rs: &[TestResult]) -> String {
    let (p, f, u) = totals(rs);
    format!(
        "conformance: {p} passed, {f} failed, {u} unsupported of {}",
        rs.len()
    )
}

pub fn tsv(rs: &[TestResult]) -> String {
    let mut s = String::from("suite\ttest\tops\tstatus\tdetail\n");
    for r in rs {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}",
            r.suite,
            r.name,
            r.ops.join(" "),
            r.status.as_str(),
            r.detail
        );
    }
    s
}

/// `CONFORMANCE.md`: totals per suite and a per-op table.
pub fn markdown(rs: &[TestResult], command: &str) -> String {
    let mut s = String::from("# ONNX conformance\n\n");
    let _ = writeln!(s, "Generated by `{command}`; do not edit by hand.\n");
    let _ = writeln!(s, "A test passes when every data set matches within rtol {RTOL}, atol {ATOL}. It is *unsupported* when import fails only on missing ops, attributes or dtypes, and *failed* otherwise (wrong numbers, or an error while running).\n");
    let _ = writeln!(s, "**{}**\n", summary_line(rs));
    s.push_str("## Per suite\n\n| suite | passed | failed | unsupported | total | pass rate |\n|---|---|---|---|---|---|\n");
    let mut suites: BTreeMap<&str, Vec<&TestResult>> = BTreeMap::new();
    for r in rs {
        suites.entry(&r.suite).or_default().push(r);
    }
    for (suite, v) in &suites {
        let (p, f, u) = totals(v.iter().copied());
        let _ = writeln!(
            s,
            "| {suite} | {p} | {f} | {u} | {} | {:.1}% |",
            v.len(),
            100.0 * p as f64 / v.len().max(1) as f64
        );
    }
    let node: Vec<&TestResult> = rs
        .iter()
        .filter(|r| r.suite == "node" && r.tensor_only)
        .collect();
    if !node.is_empty() {
        let (p, _, _) = totals(node.iter().copied());
        let _ = writeln!(
            s,
            "\n**node tests whose inputs and outputs are all tensors** (no string, sequence, optional or map values): {p} of {} pass, {:.1}%.",
            node.len(),
            100.0 * p as f64 / node.len() as f64
        );
    }
    let others: Vec<&TestResult> = rs
        .iter()
        .filter(|r| r.suite != "node" && r.status != Status::Passed)
        .collect();
    if !others.is_empty() {
        s.push_str("\n## Tests outside `node/` that do not pass\n\n| test | status | reason |\n|---|---|---|\n");
        for r in others {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                r.id(),
                r.status.as_str(),
                r.detail.replace('|', "\\|")
            );
        }
    }
    s.push_str("\n## Per op\n\nEach test counts for every op its model uses; single-op tests live in the `node` suite.\n\n| op | tests | passed | failed | unsupported |\n|---|---|---|---|---|\n");
    let mut per_op: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for r in rs {
        for op in &r.ops {
            let e = per_op.entry(op).or_default();
            e.0 += 1;
            match r.status {
                Status::Passed => e.1 += 1,
                Status::Failed => e.2 += 1,
                Status::Unsupported => e.3 += 1,
            }
        }
    }
    for (op, (n, p, f, u)) in &per_op {
        let _ = writeln!(s, "| {op} | {n} | {p} | {f} | {u} |");
    }
    s
}
