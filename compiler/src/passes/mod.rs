//! The pass manager and the graph-level passes.
//!
//! A pass rewrites a [`Graph`] in place (and may add or drop weights). Each has
//! a name and a one-line description ([`Pass`]); [`registry`] lists them all.
//! A [`Pipeline`] is a list of steps, where a step is one pass or a group of
//! passes iterated to a fixed point under an iteration bound. The
//! [`PassManager`] runs a pipeline, verifies the graph (and its weights) after
//! every pass, records per-pass statistics, and can print the IR after chosen
//! passes.
//!
//! Adding a pass: write a type implementing [`Pass`] in its own module, add it
//! to [`registry`], put it into the `O1`/`O2` pipelines in [`Pipeline::level`]
//! if it should run by default, and add cases under `tests/passes/<name>/`.

pub mod autodiff;
mod bn_fold;
mod cse;
mod dce;
mod expand_rnn;
mod fold;
mod fusion;
mod shape_fold;
mod simplify;
pub mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use kiln_ir::{Graph, ValueId, VerifyError, Weights};

pub use autodiff::{autodiff, Autodiff};
pub use bn_fold::BnFold;
pub use cse::Cse;
pub use dce::Dce;
pub use expand_rnn::ExpandRnn;
pub use fold::ConstFold;
pub use fusion::Fusion;
pub use shape_fold::ShapeFold;
pub use simplify::{Rule, Simplify, RULES};

/// Options every pass can read.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// Treat params as frozen (inference): passes may fold them into new
    /// weights. Training graphs set this to false so parameters stay live.
    pub fold_params: bool,
    /// Constant folding skips a result that is more than this many bytes
    /// larger than its inputs together, so folding cannot bloat the artifact.
    pub fold_budget_bytes: usize,
    /// Folded tensors with at most this many elements are written inline as
    /// `constant` nodes; larger ones become new weights.
    pub inline_max_elems: usize,
    /// How many times a fixed-point group may run before the manager stops it.
    pub max_iterations: usize,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            fold_params: true,
            fold_budget_bytes: 64 * 1024,
            inline_max_elems: 16,
            max_iterations: 8,
        }
    }
}

/// What a pass sees besides the graph.
pub struct PassCtx<'a> {
    pub weights: &'a mut Weights,
    pub opts: &'a PassOptions,
    /// Values folded to constants by this pass run; passes add to it.
    pub folded: usize,
}

/// A pass failed on its own (as opposed to leaving a graph the verifier rejects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassFailure(pub String);

impl fmt::Display for PassFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub trait Pass {
    /// Kebab-case name used on the command line.
    fn name(&self) -> &'static str;
    /// One line, shown by `kiln opt --list-passes`.
    fn description(&self) -> &'static str;
    /// Rewrite `g`. Returns whether anything changed.
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure>;
}

/// Every pass, in the order `--list-passes` shows them.
pub fn registry() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(Dce),
        Box::new(Cse),
        Box::new(ConstFold),
        Box::new(Simplify),
        Box::new(ShapeFold),
        Box::new(BnFold),
        Box::new(Fusion),
        Box::new(ExpandRnn),
        Box::new(Autodiff),
    ]
}

/// Look a pass up by name.
pub fn pass_by_name(name: &str) -> Option<Box<dyn Pass>> {
    registry().into_iter().find(|p| p.name() == name)
}

/// One pipeline step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Pass(String),
    /// Run the passes in order, again and again, until none changes the graph
    /// (or the iteration bound is hit).
    FixedPoint(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown optimisation level `{0}` (have O0, O1, O2)")]
    UnknownLevel(String),
    #[error("unknown pass `{0}` (see `kiln opt --list-passes`)")]
    UnknownPass(String),
}

impl Pipeline {
    /// The named pipelines: `O0` (nothing), `O1` (cleanup and folding), `O2`
    /// (O1 plus batch-norm folding, recurrent-layer unrolling and shape
    /// folding, then the fusion grouping the backends compile).
    pub fn level(name: &str) -> Result<Pipeline, PipelineError> {
        let group =
            |names: &[&str]| Step::FixedPoint(names.iter().map(|s| s.to_string()).collect());
        let pass = |n: &str| Step::Pass(n.to_string());
        let steps = match name.trim_start_matches(['O', 'o']) {
            "0" => vec![],
            "1" => vec![
                pass("dce"),
                group(&["cse", "const-fold", "simplify", "dce"]),
            ],
            "2" => vec![
                pass("dce"),
                group(&["shape-fold", "cse", "const-fold", "simplify", "dce"]),
                pass("bn-fold"),
                pass("expand-rnn"),
                group(&["shape-fold", "cse", "const-fold", "simplify", "dce"]),
                pass("fusion"),
            ],
            _ => return Err(PipelineError::UnknownLevel(name.to_string())),
        };
        Ok(Pipeline { steps })
    }

    /// A comma-separated list of pass names, each run once, in order.
    pub fn from_list(list: &str) -> Result<Pipeline, PipelineError> {
        let mut steps = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if pass_by_name(name).is_none() {
                return Err(PipelineError::UnknownPass(name.to_string()));
            }
            steps.push(Step::Pass(name.to_string()));
        }
        Ok(Pipeline { steps })
    }

    /// Remove a pass wherever it occurs.
    pub fn disable(&mut self, name: &str) -> Result<(), PipelineError> {
        if pass_by_name(name).is_none() {
            return Err(PipelineError::UnknownPass(name.to_string()));
        }
        self.steps.retain_mut(|s| match s {
            Step::Pass(p) => p != name,
            Step::FixedPoint(ps) => {
                ps.retain(|p| p != name);
                !ps.is_empty()
            }
        });
        Ok(())
    }

    /// Every pass name in the pipeline, in first-run order.
    pub fn pass_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            let names = match s {
                Step::Pass(p) => std::slice::from_ref(p),
                Step::FixedPoint(ps) => ps.as_slice(),
            };
            for n in names {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Pass(p) => p.clone(),
                Step::FixedPoint(ps) => format!("fixpoint({})", ps.join(",")),
            })
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// One pass run, for `--stats`.
#[derive(Clone, Debug)]
pub struct PassStat {
    pub pass: String,
    /// 1-based iteration within a fixed-point group (1 for plain steps).
    pub iteration: usize,
    pub time: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub removed: usize,
    pub added: usize,
    pub folded: usize,
    pub changed: bool,
}

/// Why a pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("pass `{pass}` failed: {msg}\nIR before the pass:\n{before}")]
    Failed {
        pass: String,
        msg: String,
        before: String,
    },
    #[error("pass `{pass}` left an invalid graph: {err}\nIR before the pass:\n{before}")]
    Verify {
        pass: String,
        err: Box<VerifyError>,
        before: String,
    },
    #[error("pass `{pass}` left weights that do not match the graph: {msg}\nIR before the pass:\n{before}")]
    Weights {
        pass: String,
        msg: String,
        before: String,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Where and when to print the IR while a pipeline runs.
#[derive(Clone, Debug, Default)]
pub enum PrintAfter {
    #[default]
    Never,
    /// After every run of these passes.
    Passes(BTreeSet<String>),
    All,
}

pub struct PassManager {
    pub pipeline: Pipeline,
    pub opts: PassOptions,
    pub print_after: PrintAfter,
    /// Receives `(pass, iteration, IR)` when `print_after` asks for it.
    pub printed: Vec<(String, usize, String)>,
    pub stats: Vec<PassStat>,
    /// Node count per op spelling before and after the whole pipeline.
    pub ops_before: BTreeMap<&'static str, usize>,
    pub ops_after: BTreeMap<&'static str, usize>,
    /// Passes outside the registry (tests, plugins), found by name first.
    pub extra: Vec<Box<dyn Pass>>,
}

/// How many nodes of each op the graph has.
pub fn op_histogram(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut h = BTreeMap::new();
    for n in g.node_ids() {
        *h.entry(g.node(n).op.spelling()).or_insert(0) += 1;
    }
    h
}

impl PassManager {
    pub fn new(pipeline: Pipeline) -> PassManager {
        PassManager {
            pipeline,
            opts: PassOptions::default(),
            print_after: PrintAfter::Never,
            printed: Vec::new(),
            stats: Vec::new(),
            ops_before: BTreeMap::new(),
            ops_after: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    /// Run the pipeline on `g` and its weights.
    pub fn run(&mut self, g: &mut Graph, weights: &mut Weights) -> Result<(), PassError> {
        self.ops_before = op_histogram(g);
        let steps = self.pipeline.steps.clone();
        for step in &steps {
            match step {
                Step::Pass(name) => {
                    self.run_one(name, 1, g, weights)?;
                }
                Step::FixedPoint(names) => {
                    for it in 1..=self.opts.max_iterations.max(1) {
                        let mut changed = false;
                        for name in names {
                            changed |= self.run_one(name, it, g, weights)?;
                        }
                        if !changed {
                            break;
                        }
                    }
                }
            }
        }
        self.ops_after = op_histogram(g);
        Ok(())
    }

    fn run_one(
        &mut self,
        name: &str,
        iteration: usize,
        g: &mut Graph,
        weights: &mut Weights,
    ) -> Result<bool, PassError> {
        let found;
        let pass: &dyn Pass = match self.extra.iter().find(|p| p.name() == name) {
            Some(p) => p.as_ref(),
            None => {
                found =
                    pass_by_name(name).ok_or_else(|| PipelineError::UnknownPass(name.into()))?;
                found.as_ref()
            }
        };
        // Kept as a graph and printed only on failure: printing every pass's
        // input (constants included) dominated compile time.
        let before_g = g.clone();
        let before = node_keys(g);
        let mut cx = PassCtx {
            weights,
            opts: &self.opts,
            folded: 0,
        };
        let t0 = Instant::now();
        let changed = pass.run(g, &mut cx).map_err(|e| PassError::Failed {
            pass: name.into(),
            msg: e.0,
            before: kiln_ir::print(&before_g),
        })?;
        let time = t0.elapsed();
        let folded = cx.folded;
        kiln_ir::verify(g).map_err(|err| PassError::Verify {
            pass: name.into(),
            err: Box::new(err),
            before: kiln_ir::print(&before_g),
        })?;
        if let Err(errs) = weights.check(g, "the weights") {
            let msg = errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PassError::Weights {
                pass: name.into(),
                msg,
                before: kiln_ir::print(&before_g),
            });
        }
        let after = node_keys(g);
        self.stats.push(PassStat {
            pass: name.into(),
            iteration,
            time,
            nodes_before: before.len(),
            nodes_after: after.len(),
            removed: before.difference(&after).count(),
            added: after.difference(&before).count(),
            folded,
            changed,
        });
        let print = match &self.print_after {
            PrintAfter::Never => false,
            PrintAfter::All => true,
            PrintAfter::Passes(s) => s.contains(name),
        };
        if print {
            self.printed
                .push((name.to_string(), iteration, kiln_ir::print(g)));
        }
        Ok(changed)
    }

    /// The statistics as a table, one row per pass run that did something,
    /// plus totals per pass.
    pub fn stats_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>4} {:>10} {:>7} {:>7} {:>7} {:>7}",
            "pass", "iter", "time(ms)", "nodes", "removed", "added", "folded"
        );
        for st in &self.stats {
            let _ = writeln!(
                s,
                "{:<12} {:>4} {:>10.3} {:>7} {:>7} {:>7} {:>7}",
                st.pass,
                st.iteration,
                st.time.as_secs_f64() * 1e3,
                format!("{}→{}", st.nodes_before, st.nodes_after),
                st.removed,
                st.added,
                st.folded
            );
        }
        let (first, last) = match (self.stats.first(), self.stats.last()) {
            (Some(a), Some(b)) => (a.nodes_before, b.nodes_after),
            _ => (0, 0),
        };
        let total: Duration = self.stats.iter().map(|s| s.time).sum();
        let folded: usize = self.stats.iter().map(|s| s.folded).sum();
        let _ = writeln!(
            s,
            "total: {} pass runs, {:.3} ms, nodes {first}→{last}, {folded} values folded",
            self.stats.len(),
            total.as_secs_f64() * 1e3
        );
        let mut diffs = Vec::new();
        let keys: BTreeSet<&str> = self
            .ops_before
            .keys()
            .chain(self.ops_after.keys())
            .copied()
            .collect();
        for k in keys {
            let (a, b) = (
                self.ops_before.get(k).copied().unwrap_or(0),
                self.ops_after.get(k).copied().unwrap_or(0),
            );
            if a != b {
                diffs.push(format!("{k} {a}→{b}"));
            }
        }
        if !diffs.is_empty() {
            let _ = writeln!(s, "ops changed: {}", diffs.join(", "));
        }
        s
    }
}

/// A node's identity for statistics: its first result. Node ids are reused
/// after removal, value ids never are.
fn node_keys(g: &Graph) -> BTreeSet<ValueId> {
    g.node_ids()
        .into_iter()
        .filter_map(|n| g.node(n).outputs.first().copied())
        .collect()
}

/// Convenience: run a named level (`O0`/`O1`/`O2`) with default options.
pub fn optimize(level: &str, g: &mut Graph, weights: &mut Weights) -> Result<(), PassError> {
    PassManager::new(Pipeline::level(level)?).run(g, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "graph t {\n  input %x: f32[3]\n  %a = neg(%x)\n  %b = neg(%a)\n  %c = exp(%b)\n  output y = %c\n}\n";

    /// Deletes the first node: leaves a dangling use.
    struct Breaker;
    impl Pass for Breaker {
        fn name(&self) -> &'static str {
            "breaker"
        }
        fn description(&self) -> &'static str {
            "test pass that corrupts the graph"
        }
        fn run(&self, g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassFailure> {
            let first = g.order().unwrap()[0];
            g.remove_node(first);
            Ok(true)
        }
    }

    /// Claims a change every time, so a fixed point is never reached.
    struct Restless;
    impl Pass for Restless {
        fn name(&self) -> &'static str {
            "restless"
        }
        fn description(&self) -> &'static str {
            "test pass that never settles"
        }
        fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassFailure> {
            Ok(true)
        }
    }

    #[test]
    fn verifier_failure_names_the_pass_and_shows_the_ir_before() {
        let mut g = kiln_ir::parse(SRC).unwrap();
        let mut pm = PassManager::new(Pipeline {
            steps: vec![Step::Pass("breaker".into())],
        });
        pm.extra.push(Box::new(Breaker));
        let err = pm.run(&mut g, &mut Weights::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PassError::Verify { .. }), "{msg}");
        assert!(
            msg.starts_with("pass `breaker` left an invalid graph"),
            "{msg}"
        );
        assert!(msg.contains("IR before the pass:\ngraph t {"), "{msg}");
        assert!(msg.contains("neg(%x)"), "{msg}");
    }

    #[test]
    fn fixed_point_groups_stop_at_the_iteration_bound() {
        let mut g = kiln_ir::parse(SRC).unwrap();
        let mut pm = PassManager::new(Pipeline {
            steps: vec![Step::FixedPoint(vec!["restless".into(), "dce".into()])],
        });
        pm.opts.max_iterations = 3;
        pm.extra.push(Box::new(Restless));
        pm.run(&mut g, &mut Weights::default()).unwrap();
        assert_eq!(pm.stats.len(), 6);
        assert_eq!(pm.stats.last().unwrap().iteration, 3);
    }

    #[test]
    fn fixed_point_groups_stop_when_nothing_changes() {
        let mut g = kiln_ir::parse(SRC).unwrap();
        let mut pm = PassManager::new(Pipeline::level("O1").unwrap());
        pm.run(&mut g, &mut Weights::default()).unwrap();
        // dce, then the group twice: once rewriting neg(neg(x)), once finding nothing.
        let iters: Vec<usize> = pm.stats.iter().map(|s| s.iteration).collect();
        assert_eq!(iters, [1, 1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(kiln_ir::print(&g).matches("neg").count(), 0);
        assert!(pm.stats_table().contains("ops changed: neg 2→0"));
    }

    #[test]
    fn pipelines_parse_and_disable() {
        assert_eq!(Pipeline::level("O0").unwrap().steps, vec![]);
        assert!(matches!(
            Pipeline::level("O7"),
            Err(PipelineError::UnknownLevel(_))
        ));
        assert!(matches!(
            Pipeline::from_list("dce,nope"),
            Err(PipelineError::UnknownPass(p)) if p == "nope"
        ));
        let mut p = Pipeline::level("O2").unwrap();
        p.disable("bn-fold").unwrap();
        assert!(!p.pass_names().contains(&"bn-fold".to_string()));
        assert!(p.pass_names().contains(&"cse".to_string()));
        assert_eq!(
            Pipeline::from_list("cse, dce").unwrap().to_string(),
            "cse dce"
        );
    }

    #[test]
    fn every_pass_has_a_unique_name_and_a_description() {
        let mut names = BTreeSet::new();
        for p in registry() {
            assert!(names.insert(p.name()), "duplicate pass {}", p.name());
            assert!(!p.description().is_empty());
            assert!(!p.description().contains('\n'));
        }
        for l in ["O1", "O2"] {
            for n in Pipeline::level(l).unwrap().pass_names() {
                assert!(pass_by_name(&n).is_some(), "{l} names unknown pass {n}");
            }
        }
    }
}
