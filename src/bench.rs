//! `kiln bench` and the input handling it shares with `kiln run`: bind a
//! model's dimensions, complete its inputs, prepare it once on a backend, then
//! time warm runs.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use kiln_ir::{Model, Tensor};

use crate::backend::{Backend, PrepareOptions, Prepared};

/// The name of a backend as the `--backend` flag spells it.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Ref => "ref",
        Backend::Cpu => "cpu",
        Backend::CpuArtifact => "cpu-artifact",
    }
}

/// What `--threads 0` means: every core this process may use.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bind `m`'s symbolic dimensions and complete its inputs.
///
/// Dimensions come from the shapes of the `given` inputs, then from `dims`
/// (`--dim`; a conflict with the inputs is an error); unbound ones default
/// to one. Inputs not given get [`crate::init::random_input`] data. The inputs are
/// then checked against the graph (names, dtypes, shapes). Returns the inputs
/// and the notes to show the user (defaulted dimensions, generated inputs).
pub fn bind_inputs(
    m: &mut Model,
    mut given: HashMap<String, Tensor>,
    dims: &[(String, usize)],
) -> Result<(HashMap<String, Tensor>, Vec<String>)> {
    let mut notes = Vec::new();
    let mut bound: BTreeMap<String, usize> = kiln_ir::interp::dims_from_inputs(&m.graph, &given)?;
    for (k, n) in dims {
        if let Some(&prev) = bound.get(k) {
            if prev != *n {
                bail!("--dim {k}={n} conflicts with the given inputs, which have {k}={prev}");
            }
        }
        bound.insert(k.clone(), *n);
    }
    for sym in m.graph.symbols() {
        if let std::collections::btree_map::Entry::Vacant(e) = bound.entry(sym) {
            notes.push(format!(
                "dimension {0} is not bound; using {0}=1 (pass --dim {0}=...)",
                e.key()
            ));
            e.insert(1);
        }
    }
    m.graph.bind_dims(&bound)?;
    for &v in m.graph.inputs() {
        let val = m.graph.value(v);
        let name = val.name.clone().unwrap_or_default();
        if let std::collections::hash_map::Entry::Vacant(e) = given.entry(name) {
            let t = crate::init::random_input(e.key(), &val.ty).map_err(|e| anyhow!(e))?;
            notes.push(format!(
                "input `{}` not given; using deterministic pseudo-random data {}",
                e.key(),
                val.ty
            ));
            e.insert(t);
        }
    }
    kiln_ir::check_inputs(&m.graph, &given)?;
    Ok((given, notes))
}

/// How `kiln bench` runs a model.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub backend: Backend,
    /// Worker threads (0 = all cores), passed to the backend.
    pub threads: usize,
    /// Timed runs (at least 1).
    pub iters: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
    /// Also time each step (median over the timed runs' count of extra runs).
    pub profile: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            backend: Backend::Cpu,
            threads: 0,
            iters: 30,
            warmup: 3,
            profile: false,
        }
    }
}

/// The measurements of one `kiln bench`.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub backend: Backend,
    /// Threads asked for (0 = all cores).
    pub threads: usize,
    pub warmup: usize,
    /// Time to prepare the model (optimise, plan, JIT), in ms.
    pub compile_ms: f64,
    /// Wall time of each timed run, in ms, in the order they ran.
    pub times_ms: Vec<f64>,
    /// Peak bytes of the tensor arena, when the backend plans memory.
    pub peak_bytes: Option<usize>,
    /// How the backend planned the model (CPU backend).
    pub plan: Option<String>,
    /// Median time per step over `iters` profiled runs: `(step, kind, ms)`.
    pub profile: Option<Vec<(String, &'static str, f64)>>,
}

/// The `p`-th percentile (0..=100) of ascending `sorted` by linear
/// interpolation between closest ranks (numpy's default); the median is `p = 50`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

impl BenchReport {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.times_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median_ms(&self) -> f64 {
        percentile(&self.sorted(), 50.0)
    }
    pub fn p90_ms(&self) -> f64 {
        percentile(&self.sorted(), 90.0)
    }
    pub fn min_ms(&self) -> f64 {
        percentile(&self.sorted(), 0.0)
    }
    pub fn mean_ms(&self) -> f64 {
        self.times_ms.iter().sum::<f64>() / self.times_ms.len().max(1) as f64
    }

    /// One JSON object: `median_ms`, `p90_ms`, `compile_ms`, `peak_bytes`
    /// (null when the backend does not plan memory), then `min_ms`,
    /// `mean_ms`, `iters`, `warmup`, `threads` (resolved: 0 becomes the core
    /// count) and `backend`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "median_ms": self.median_ms(),
            "p90_ms": self.p90_ms(),
            "compile_ms": self.compile_ms,
            "peak_bytes": self.peak_bytes,
            "min_ms": self.min_ms(),
            "mean_ms": self.mean_ms(),
            "iters": self.times_ms.len(),
            "warmup": self.warmup,
            "threads": self.resolved_threads(),
            "backend": backend_name(self.backend),
        })
        .to_string()
    }

    fn resolved_threads(&self) -> usize {
        if self.threads == 0 {
            all_cores()
        } else {
            self.threads
        }
    }

    /// The human summary `kiln bench` prints.
    pub fn to_text(&self, model: &str) -> String {
        let threads = if self.threads == 0 {
            format!("{} (all cores)", all_cores())
        } else {
            self.threads.to_string()
        };
        let mut s = format!(
            "{model}: backend {}, threads {threads}, {} timed runs after {} warmup\n",
            backend_name(self.backend),
            self.times_ms.len(),
            self.warmup
        );
        s += &format!("  compile+JIT  {:>10.3} ms\n", self.compile_ms);
        s += &format!("  median       {:>10.3} ms\n", self.median_ms());
        s += &format!("  p90          {:>10.3} ms\n", self.p90_ms());
        s += &format!("  min          {:>10.3} ms\n", self.min_ms());
        match self.peak_bytes {
            Some(b) => {
                s += &format!(
                    "  peak arena   {:>10.3} MiB ({b} bytes)\n",
                    b as f64 / (1024.0 * 1024.0)
                )
            }
            None => s += "  peak arena   not planned by this backend\n",
        }
        if let Some(p) = &self.plan {
            s += &format!("  plan         {p}\n");
        }
        if let Some(prof) = &self.profile {
            let total: f64 = prof.iter().map(|p| p.2).sum();
            let mut kinds: Vec<(&str, f64, usize)> = Vec::new();
            for (_, k, t) in prof {
                match kinds.iter_mut().find(|e| e.0 == *k) {
                    Some(e) => {
                        e.1 += t;
                        e.2 += 1
                    }
                    None => kinds.push((k, *t, 1)),
                }
            }
            s += &format!("  profile (median per step, sum {total:.3} ms):\n");
            for (k, t, n) in &kinds {
                s += &format!(
                    "    {k:<8} {n:>4} steps {t:>9.3} ms {:>5.1}%\n",
                    100.0 * t / total.max(1e-12)
                );
            }
            let mut top: Vec<&(String, &str, f64)> = prof.iter().collect();
            top.sort_by(|a, b| b.2.total_cmp(&a.2));
            s += "  slowest steps:\n";
            for (label, k, t) in top.iter().take(12) {
                s += &format!("    {t:>9.3} ms  {k:<7} {label}\n");
            }
        }
        s
    }
}

/// Prepare `model` (timed as compile+JIT), run it `warmup` times, then time
/// `iters` runs. The model's dimensions must be bound and `inputs` complete
/// (see [`bind_inputs`]).
pub fn bench(
    model: Model,
    inputs: &HashMap<String, Tensor>,
    opts: &BenchOptions,
) -> Result<BenchReport> {
    if opts.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let t0 = Instant::now();
    let prepared = Prepared::new(
        model,
        opts.backend,
        &PrepareOptions {
            threads: opts.threads,
        },
    )?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    bench_prepared(&prepared, compile_ms, inputs, opts)
}

/// Time warm runs of a prepared model (see [`bench`]); `compile_ms` is what
/// preparing it took (for an artifact: loading, packing and JIT).
pub fn bench_prepared(
    prepared: &Prepared,
    compile_ms: f64,
    inputs: &HashMap<String, Tensor>,
    opts: &BenchOptions,
) -> Result<BenchReport> {
    if opts.iters == 0 {
        bail!("--iters must be at least 1");
    }
    for _ in 0..opts.warmup {
        prepared.run(inputs)?;
    }
    let mut times_ms = Vec::with_capacity(opts.iters);
    for _ in 0..opts.iters {
        let t = Instant::now();
        let outs = prepared.run(inputs)?;
        times_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(outs);
    }
    let profile = if opts.profile {
        let mut runs: Vec<Vec<(String, &'static str, f64)>> = Vec::new();
        for _ in 0..opts.iters {
            match prepared.profile(inputs)? {
                Some(p) => runs.push(p),
                None => break,
            }
        }
        runs.first().cloned().map(|first| {
            first
                .into_iter()
                .enumerate()
                .map(|(k, (label, kind, _))| {
                    let mut ts: Vec<f64> = runs.iter().map(|r| r[k].2).collect();
                    ts.sort_by(f64::total_cmp);
                    (label, kind, percentile(&ts, 50.0))
                })
                .collect()
        })
    } else {
        None
    };
    Ok(BenchReport {
        plan: prepared.plan_summary(),
        profile,
        backend: opts.backend,
        threads: opts.threads,
        warmup: opts.warmup,
        compile_ms,
        times_ms,
        peak_bytes: prepared.peak_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn report_json_has_the_four_fields() {
        let r = BenchReport {
            backend: Backend::Ref,
            threads: 1,
            warmup: 0,
            compile_ms: 0.5,
            times_ms: vec![3.0, 1.0, 2.0],
            peak_bytes: None,
            plan: None,
            profile: None,
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["median_ms"], 2.0);
        assert_eq!(v["min_ms"], 1.0);
        assert_eq!(v["compile_ms"], 0.5);
        assert!(v["peak_bytes"].is_null());
        assert_eq!(v["iters"], 3);
        assert_eq!(v["backend"], "ref");
    }
}
