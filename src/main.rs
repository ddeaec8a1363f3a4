//! The `kiln` command-line tool.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln::ir::{self, Model, Tensor};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Compile and run neural-network graphs",
    after_help = "Examples:\n  kiln print examples/models/mlp.kir\n  kiln run examples/models/lenet5.kir --dim N=4 --output-dir out/\n  kiln demo"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse and verify a model, then print its canonical IR.
    #[command(after_help = "Example:\n  kiln print examples/models/resnet_block.kir")]
    Print {
        /// A `.kir` file.
        model: PathBuf,
    },
    /// Run a model and summarise its outputs.
    #[command(
        after_help = "Examples:\n  kiln run examples/models/mlp.kir --dim N=64\n  kiln run examples/models/mlp.kir --backend ref --input x=x.npy --output-dir out/"
    )]
    Run {
        /// A `.kir` file (weights are read from the `.safetensors` beside it)
        /// or an `.onnx` file.
        model: PathBuf,
        /// Which backend runs the model.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Worker threads for the CPU backend (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// An input as NAME=FILE.npy. Inputs not given get deterministic
        /// pseudo-random data in [-1, 1).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Bind a symbolic dimension, as NAME=SIZE (e.g. N=64). Dimensions are
        /// also taken from the shapes of given inputs; unbound ones default to 1.
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        /// Write each output to DIR/NAME.npy.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Print how the backend planned the model: peak arena bytes next to
        /// the sum of all tensor sizes, and the steps by kind.
        #[arg(long)]
        stats: bool,
    },
    /// Optimise a model and print its canonical IR.
    #[command(
        after_help = "Examples:\n  kiln opt examples/models/vgg_small.kir -O2 --stats\n  kiln opt model.onnx --passes dce,cse,const-fold --print-after-all\n  kiln opt examples/models/resnet_block.kir -O2 --disable-pass bn-fold -o out.kir\n  kiln opt --list-passes"
    )]
    Opt {
        /// A `.kir` or `.onnx` file (not needed with --list-passes).
        #[arg(required_unless_present = "list_passes")]
        model: Option<PathBuf>,
        /// Optimisation level: -O0, -O1 or -O2 (the default).
        #[arg(short = 'O', value_name = "LEVEL", conflicts_with = "passes")]
        level: Option<String>,
        /// Run exactly these passes, in order (comma-separated), instead of a level.
        #[arg(long, value_name = "A,B,C")]
        passes: Option<String>,
        /// Remove a pass from the pipeline (repeatable).
        #[arg(long = "disable-pass", value_name = "NAME")]
        disable: Vec<String>,
        /// Print the IR after every run of this pass (repeatable).
        #[arg(long = "print-after", value_name = "NAME")]
        print_after: Vec<String>,
        /// Print the IR after every pass.
        #[arg(long)]
        print_after_all: bool,
        /// Print per-pass statistics (time, nodes removed and added, values folded) to stderr.
        #[arg(long)]
        stats: bool,
        /// List the passes and the pipelines, then exit.
        #[arg(long)]
        list_passes: bool,
        /// Bind a symbolic dimension, as NAME=SIZE, before optimising.
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        /// Constant folding skips results more than this many bytes larger than their inputs.
        #[arg(long, value_name = "BYTES")]
        fold_budget: Option<usize>,
        /// Also write the optimised model: OUT.kir plus OUT.safetensors beside it.
        #[arg(short = 'o', long = "output", value_name = "OUT.kir")]
        output: Option<PathBuf>,
    },
    /// Run the ONNX backend test suite and score kiln against it.
    #[command(
        after_help = "Examples:\n  kiln conformance ../shared/onnx-tests\n  kiln conformance ../shared/onnx-tests/node --report conformance.tsv --markdown CONFORMANCE.md"
    )]
    Conformance {
        /// A folder of test folders (each with model.onnx and test_data_set_*), searched recursively.
        dir: PathBuf,
        /// Which backend runs the models.
        #[arg(long, value_enum, default_value = "ref")]
        backend: BackendArg,
        /// Write one TSV row per test (suite, test, ops, status, detail).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the Markdown scoreboard (per suite and per op), as in CONFORMANCE.md.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Only run tests whose suite/name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Optimise each imported model at this level (O0, O1, O2) before running it.
        #[arg(long, value_name = "LEVEL")]
        opt: Option<String>,
        /// Write the ids (suite/test) of the passing tests, one per line: the
        /// manifest the CI guard checks (tests/conformance/expected_pass.txt).
        #[arg(long)]
        write_manifest: Option<PathBuf>,
        /// With the cpu backend: compile each model into `.kiln` bytes, load
        /// them and run the loaded session (the artifact round trip).
        #[arg(long)]
        via_artifact: bool,
    },
    /// Run an embedded example model end to end, with no files needed.
    Demo {
        /// Which embedded model: mlp, lenet5, vgg_small or resnet_block.
        #[arg(long, default_value = "lenet5")]
        model: String,
        /// Batch size.
        #[arg(long, default_value_t = 4)]
        batch: usize,
    },
    /// Prepare a model once (timed as compile+JIT), then time warm runs.
    #[command(
        after_help = "Prints the median, p90 and min latency, the compile+JIT time and the peak arena bytes.\n\nExamples:\n  kiln bench examples/models/mlp.kir --dim N=64\n  kiln bench model.onnx --threads 1 --iters 100 --json\n  kiln bench examples/models/lenet5.kir --backend ref --input x=x.npy --iters 5"
    )]
    Bench {
        /// A `.kir` or `.onnx` file.
        model: PathBuf,
        /// Which backend runs the model.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 30)]
        iters: usize,
        /// Untimed runs before the timed ones.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Print one JSON object (median_ms, p90_ms, compile_ms, peak_bytes, ...) instead of text.
        #[arg(long)]
        json: bool,
        /// Also time every step (CPU backend) and print the slowest ones.
        #[arg(long)]
        profile: bool,
        /// Bind a symbolic dimension, as NAME=SIZE.
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        /// An input as NAME=FILE (.npy or .pb); inputs not given get
        /// deterministic pseudo-random data in [-1, 1).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
    },
    /// Compile a model into a `.kiln` artifact (optimised graph, kernels,
    /// memory plan and weights in one file).
    #[command(
        after_help = "Examples:\n  kiln compile examples/models/lenet5.kir --dim N=1 -o lenet5.kiln\n  kiln compile model.onnx -o model.kiln --target cpu-avx2\n  kiln run lenet5.kiln"
    )]
    Compile {
        /// A `.kir` or `.onnx` file.
        model: PathBuf,
        /// The artifact to write.
        #[arg(short = 'o', long = "output", value_name = "OUT.kiln")]
        output: PathBuf,
        /// Optimisation level: -O0, -O1 or -O2 (the default).
        #[arg(short = 'O', value_name = "LEVEL")]
        level: Option<String>,
        /// Bind a symbolic dimension, as NAME=SIZE (unbound ones become 1).
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        /// Which CPUs the artifact is for: `cpu` (any; the loader picks the
        /// best GEMM/conv kernels the host has), `cpu-avx2` or `cpu-avx512`
        /// (those kernels, required).
        #[arg(long, value_enum, default_value = "cpu")]
        target: TargetArg,
        /// With --target cpu-avx2/cpu-avx512: refuse to load on a CPU without
        /// the features, rather than fall back to the portable kernels.
        #[arg(long)]
        no_portable_fallback: bool,
    },
    /// Describe a `.kiln` artifact: header, sections, inputs and outputs,
    /// kernels, steps, weights and target requirements.
    #[command(after_help = "Example:\n  kiln inspect lenet5.kiln")]
    Inspect {
        /// A `.kiln` file.
        artifact: PathBuf,
        /// Print every kernel in full (kernel IR), not one line each.
        #[arg(long)]
        kernels: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TargetArg {
    /// Any CPU: the best ISA is chosen when the artifact is loaded.
    Cpu,
    /// x86-64 with AVX2 and FMA.
    #[value(name = "cpu-avx2")]
    CpuAvx2,
    /// x86-64 with AVX-512F.
    #[value(name = "cpu-avx512")]
    CpuAvx512,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// The reference interpreter.
    Ref,
    /// The CPU backend (fused JIT kernels, packed GEMM/conv, planned memory).
    Cpu,
}

impl From<BackendArg> for kiln::backend::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Ref => kiln::backend::Backend::Ref,
            BackendArg::Cpu => kiln::backend::Backend::Cpu,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KILN_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Print { model } => {
            let g = if is_onnx(&model) {
                load_onnx(&model, &[])?.graph
            } else {
                let src = std::fs::read_to_string(&model)
                    .with_context(|| format!("reading {}", model.display()))?;
                ir::parse(&src).map_err(|e| anyhow!("{}:{e}", model.display()))?
            };
            print!("{}", ir::print(&g));
            Ok(())
        }
        Cmd::Run {
            model,
            backend,
            threads,
            inputs,
            dims,
            output_dir,
            stats,
        } => {
            let mut given = read_inputs(&inputs)?;
            if is_artifact_file(&model) {
                if !dims.is_empty() || matches!(backend, BackendArg::Ref) {
                    let s = kiln::runtime::session::Session::load(
                        &model,
                        &kiln::runtime::session::SessionOptions { threads: 1 },
                    )?;
                    artifact_inputs(&s, HashMap::new(), &dims, backend)?;
                }
                return run_artifact(&model, threads, given, output_dir.as_deref(), stats);
            }
            let m = if is_onnx(&model) {
                load_onnx_with_inputs(&model, &dims, &mut given)?
            } else {
                Model::load_kir(&model)?
            };
            run_model(
                m,
                backend.into(),
                threads,
                given,
                &dims,
                output_dir.as_deref(),
                stats,
            )
        }
        Cmd::Conformance {
            dir,
            backend,
            report,
            markdown,
            filter,
            opt,
            write_manifest,
            via_artifact,
        } => {
            let backend: kiln::backend::Backend = match (backend, via_artifact) {
                (BackendArg::Cpu, true) => kiln::backend::Backend::CpuArtifact,
                (BackendArg::Ref, true) => {
                    bail!("--via-artifact needs --backend cpu (artifacts hold compiled programs)")
                }
                (b, false) => b.into(),
            };
            conformance(&dir, backend, report, markdown, filter, opt, write_manifest)
        }
        Cmd::Opt {
            model,
            level,
            passes,
            disable,
            print_after,
            print_after_all,
            stats,
            list_passes,
            dims,
            fold_budget,
            output,
        } => {
            if list_passes {
                print!("{}", list_passes_text());
                return Ok(());
            }
            let model = model.ok_or_else(|| anyhow!("a model is required"))?;
            let opts = OptArgs {
                level,
                passes,
                disable,
                print_after,
                print_after_all,
                stats,
                dims,
                fold_budget,
                output,
            };
            opt(&model, opts)
        }
        Cmd::Demo { model, batch } => demo(&model, batch),
        Cmd::Bench {
            model,
            backend,
            threads,
            iters,
            warmup,
            json,
            profile,
            dims,
            inputs,
        } => {
            let opts = kiln::bench::BenchOptions {
                backend: backend.into(),
                threads,
                iters,
                warmup,
                profile,
            };
            bench(&model, &opts, json, &inputs, &dims)
        }
        Cmd::Compile {
            model,
            output,
            level,
            dims,
            target,
            no_portable_fallback,
        } => compile(
            &model,
            &output,
            level.as_deref().unwrap_or("O2"),
            &dims,
            target,
            !no_portable_fallback,
        ),
        Cmd::Inspect { artifact, kernels } => inspect(&artifact, kernels),
    }
}

/// Whether `path` is a `.kiln` artifact, by its magic number (whatever its
/// extension).
fn is_artifact_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| kiln::runtime::artifact::is_artifact(&head))
}

fn read_artifact(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Inputs for an artifact's session: the given ones, the rest
/// deterministic pseudo-random data (with a note each).
fn artifact_inputs(
    s: &kiln::runtime::session::Session,
    mut given: HashMap<String, Tensor>,
    dims: &[String],
    backend: BackendArg,
) -> Result<(HashMap<String, Tensor>, Vec<String>)> {
    if !dims.is_empty() {
        bail!("--dim: an artifact's dimensions are fixed when it is compiled (see `kiln inspect`)");
    }
    if matches!(backend, BackendArg::Ref) {
        bail!("--backend ref: an artifact holds a compiled program, which runs on the cpu backend");
    }
    let mut notes = Vec::new();
    for i in s.inputs() {
        if !given.contains_key(&i.name) {
            let ty = ir::TensorType::concrete(i.dtype, &i.shape);
            let t = kiln::init::random_input(&i.name, &ty).map_err(|e| anyhow!(e))?;
            notes.push(format!(
                "input `{}` not given; using deterministic pseudo-random data {ty}",
                i.name
            ));
            given.insert(i.name.clone(), t);
        }
    }
    Ok((given, notes))
}

fn run_artifact(
    path: &Path,
    threads: usize,
    given: HashMap<String, Tensor>,
    output_dir: Option<&Path>,
    stats: bool,
) -> Result<()> {
    let bytes = read_artifact(path)?;
    let prepared =
        kiln::backend::Prepared::from_artifact(&bytes, &kiln::backend::PrepareOptions { threads })
            .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let s = prepared.session().ok_or_else(|| anyhow!("not a session"))?;
    let (given, notes) = artifact_inputs(s, given, &[], BackendArg::Cpu)?;
    for n in &notes {
        println!("note: {n}");
    }
    let t0 = Instant::now();
    let outs = prepared.run(&given)?;
    let dt = t0.elapsed();
    for (name, t) in &outs {
        println!("{}", summarize(name, t));
    }
    println!(
        "ran {} steps from {} on the cpu backend in {:.2} ms (loaded in {:.2} ms)",
        s.executor().program().steps.len(),
        path.display(),
        dt.as_secs_f64() * 1e3,
        prepared.compile_ms
    );
    if stats {
        if let Some(p) = prepared.plan_summary() {
            println!("plan: {p}");
        }
    }
    if let Some(dir) = output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, t) in &outs {
            let p = dir.join(format!("{}.npy", sanitize(name)));
            kiln::npy::write(&p, t).map_err(|e| anyhow!(e))?;
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn compile(
    path: &Path,
    out: &Path,
    level: &str,
    dims: &[String],
    target: TargetArg,
    fallback: bool,
) -> Result<()> {
    use kiln::runtime::artifact::{TargetSignature, WriteOptions};
    use kiln::runtime::gemm::Isa;
    let level = level.trim_start_matches('-').to_string();
    kiln::compiler::passes::Pipeline::level(&level)?;
    let mut m = load_any(path, dims)?;
    let unbound: BTreeMap<String, usize> = m.graph.symbols().into_iter().map(|s| (s, 1)).collect();
    for k in unbound.keys() {
        eprintln!("note: dimension {k} is not bound; using {k}=1 (pass --dim {k}=...)");
    }
    if !unbound.is_empty() {
        m.graph.bind_dims(&unbound)?;
    }
    let target = match target {
        TargetArg::Cpu => TargetSignature::any_cpu(),
        TargetArg::CpuAvx2 => TargetSignature::for_isa(Isa::Avx2, fallback),
        TargetArg::CpuAvx512 => TargetSignature::for_isa(Isa::Avx512, fallback),
    };
    let opts = WriteOptions {
        target,
        producer: format!("kiln {}", env!("CARGO_PKG_VERSION")),
    };
    let t0 = Instant::now();
    let (bytes, stats) = kiln::backend::compile_artifact(m, &level, &opts)
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let a = kiln::runtime::artifact::Artifact::from_bytes(&bytes)?;
    let w = a.weight_bytes();
    println!(
        "wrote {}: {} bytes ({} of weights, {:+.2}% over them), {} kernels, {} steps, target {}, in {ms:.1} ms (groups fused {}, split {})",
        out.display(),
        bytes.len(),
        w,
        (bytes.len() as f64 / w.max(1) as f64 - 1.0) * 100.0,
        a.program.kernels.len(),
        a.program.steps.len(),
        a.target,
        stats.groups_fused,
        stats.groups_split
    );
    Ok(())
}

fn inspect(path: &Path, full_kernels: bool) -> Result<()> {
    use kiln::runtime::artifact::{self, Artifact};
    let bytes = read_artifact(path)?;
    let a = Artifact::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let h = &a.header;
    println!("{}: kiln artifact, {} bytes", path.display(), bytes.len());
    println!(
        "header: format {}.{} (this kiln reads {}.x), producer `{}`, header crc32 {:#010x}, table crc32 {:#010x}",
        h.major,
        h.minor,
        artifact::FORMAT_MAJOR,
        a.producer,
        h.header_crc,
        h.table_crc
    );
    println!("target: {}", a.target);
    match a.target.select_isa() {
        Ok(isa) => println!("  on this CPU: loads with the {isa} GEMM/conv kernels"),
        Err(e) => println!("  on this CPU: {e}"),
    }
    println!("sections ({}):", h.sections.len());
    for s in &h.sections {
        println!(
            "  {:<8} offset {:>10}  size {:>10}  crc32 {:#010x}",
            s.name(),
            s.offset,
            s.len,
            s.crc32
        );
    }
    let p = &a.program;
    let g = &p.graph;
    println!("inputs:");
    for &v in g.inputs() {
        let val = g.value(v);
        println!("  {}: {}", val.name.as_deref().unwrap_or("?"), val.ty);
    }
    println!("outputs:");
    for (name, v) in g.outputs() {
        println!("  {name}: {}", g.value(*v).ty);
    }
    println!("graph: {} nodes, {} values", g.node_count(), g.num_values());
    println!("kernels: {}", p.kernels.len());
    for (k, kern) in p.kernels.iter().enumerate() {
        if full_kernels {
            print!("  #{k} {kern}");
        } else {
            println!(
                "  #{k} {}: {} buffers, outer {:?}, inner {}, {} exprs, {} stmts",
                kern.name,
                kern.bufs.len(),
                kern.outer,
                kern.inner,
                kern.exprs.len(),
                kern.stmts.len()
            );
        }
    }
    println!(
        "steps: {} ({}); arena {} bytes ({} without reuse)",
        p.steps.len(),
        p.summary(),
        p.arena_bytes,
        p.unplanned_bytes
    );
    let w = a.weight_bytes();
    println!(
        "weights: {} tensors, {w} bytes ({:.2} MiB); the file is {:+.2}% over them",
        a.weights.0.len(),
        w as f64 / (1024.0 * 1024.0),
        (bytes.len() as f64 / w.max(1) as f64 - 1.0) * 100.0
    );
    Ok(())
}

fn is_onnx(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "onnx")
}

/// Import an ONNX model, binding `--dim` values to its symbolic dimensions.
fn load_onnx(path: &Path, dims: &[String]) -> Result<Model> {
    let proto = kiln::compiler::onnx::load_model(path)?;
    let mut opts = kiln::compiler::onnx::import::ImportOptions::default();
    for s in dims {
        let (k, v) = parse_kv(s, "--dim")?;
        opts.dims.insert(
            k.clone(),
            v.parse()
                .map_err(|_| anyhow!("--dim {k}: `{v}` is not a size"))?,
        );
    }
    let imported = kiln::compiler::onnx::import::import_model(&proto, &opts)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Model {
        graph: imported.graph,
        weights: imported.weights,
    })
}

/// Import an ONNX model for `kiln run`: the given inputs fix their shapes,
/// and inputs the graph needs at compile time (a reshape target, axes) are
/// bound as constants and leave `given`, as `kiln conformance` does.
fn load_onnx_with_inputs(
    path: &Path,
    dims: &[String],
    given: &mut HashMap<String, Tensor>,
) -> Result<Model> {
    let proto = kiln::compiler::onnx::load_model(path)?;
    let mut opts = kiln::compiler::onnx::import::ImportOptions::default();
    for (k, v) in parse_dims(dims)? {
        opts.dims.insert(k, v);
    }
    for (name, t) in given.iter() {
        opts.input_shapes.insert(name.clone(), t.shape().to_vec());
    }
    let imported = kiln::conformance::import_binding_inputs(&proto, &mut opts, given)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Model {
        graph: imported.graph,
        weights: imported.weights,
    })
}

/// An input file: `.npy`, or a serialized ONNX `TensorProto` (`.pb`).
fn read_input(path: &Path) -> Result<Tensor> {
    if path.extension().is_some_and(|e| e == "pb") {
        Ok(kiln::compiler::onnx::tensor::load_tensor_pb(path)?.1)
    } else {
        kiln::npy::read(path).map_err(|e| anyhow!(e))
    }
}

fn conformance(
    dir: &Path,
    backend: kiln::backend::Backend,
    report: Option<PathBuf>,
    markdown: Option<PathBuf>,
    filter: Option<String>,
    opt: Option<String>,
    write_manifest: Option<PathBuf>,
) -> Result<()> {
    use kiln::conformance as conf;
    if !dir.is_dir() {
        bail!("{}: no such directory (regenerate the test data with tests/conformance/gen_onnx_tests.py)", dir.display());
    }
    if let Some(level) = &opt {
        kiln::compiler::passes::Pipeline::level(level)?;
    }
    let mut tests = conf::find_tests(dir);
    if let Some(f) = &filter {
        tests.retain(|t| t.to_string_lossy().contains(f.as_str()));
    }
    let bar = indicatif::ProgressBar::new(tests.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut results = Vec::with_capacity(tests.len());
    for t in &tests {
        bar.set_message(
            t.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        results.push(conf::run_test(t, dir, backend, opt.as_deref()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    for r in &results {
        if r.status != conf::Status::Passed {
            println!("{:<11} {}: {}", r.status.as_str(), r.id(), r.detail);
        }
    }
    if let Some(p) = report {
        std::fs::write(&p, conf::tsv(&results))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = markdown {
        let cmd = format!(
            "kiln conformance {} --markdown {}",
            dir.display(),
            p.display()
        );
        std::fs::write(&p, conf::markdown(&results, &cmd))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = write_manifest {
        let mut ids: Vec<String> = results
            .iter()
            .filter(|r| r.status == conf::Status::Passed)
            .map(|r| r.id())
            .collect();
        ids.sort();
        let body = format!("# ONNX tests that pass on the reference backend; checked by tests/conformance.rs.\n{}\n", ids.join("\n"));
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("{}", conf::summary_line(&results));
    Ok(())
}

fn parse_kv(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{what} `{s}` must look like NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// `--input NAME=FILE` values, read.
fn read_inputs(inputs: &[String]) -> Result<HashMap<String, Tensor>> {
    let mut given: HashMap<String, Tensor> = HashMap::new();
    for s in inputs {
        let (name, file) = parse_kv(s, "--input")?;
        let t = read_input(Path::new(&file)).map_err(|e| anyhow!("input `{name}`: {e:#}"))?;
        given.insert(name, t);
    }
    Ok(given)
}

/// `--dim NAME=SIZE` values, parsed.
fn parse_dims(dims: &[String]) -> Result<Vec<(String, usize)>> {
    dims.iter()
        .map(|s| {
            let (k, v) = parse_kv(s, "--dim")?;
            let n: usize = v
                .parse()
                .map_err(|_| anyhow!("--dim {k}: `{v}` is not a size"))?;
            Ok((k, n))
        })
        .collect()
}

fn backend_desc(b: kiln::backend::Backend) -> &'static str {
    match b {
        kiln::backend::Backend::Ref => "the ref backend (reference interpreter)",
        kiln::backend::Backend::Cpu => "the cpu backend",
        kiln::backend::Backend::CpuArtifact => "the cpu backend (through a .kiln artifact)",
    }
}

fn run_model(
    mut m: Model,
    backend: kiln::backend::Backend,
    threads: usize,
    given: HashMap<String, Tensor>,
    dims: &[String],
    output_dir: Option<&Path>,
    stats: bool,
) -> Result<()> {
    let (given, notes) = kiln::bench::bind_inputs(&mut m, given, &parse_dims(dims)?)?;
    for n in &notes {
        println!("note: {n}");
    }
    let nodes = m.graph.node_count();
    let prepared =
        kiln::backend::Prepared::new(m, backend, &kiln::backend::PrepareOptions { threads })?;
    let t0 = Instant::now();
    let outs = prepared.run(&given)?;
    let dt = t0.elapsed();
    for (name, t) in &outs {
        println!("{}", summarize(name, t));
    }
    println!(
        "ran {nodes} nodes on {} in {:.2} ms (prepared in {:.2} ms)",
        backend_desc(backend),
        dt.as_secs_f64() * 1e3,
        prepared.compile_ms
    );
    if stats {
        match prepared.plan_summary() {
            Some(p) => println!("plan: {p}"),
            None => println!("plan: the reference backend does not plan memory"),
        }
    }
    if let Some(dir) = output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, t) in &outs {
            let p = dir.join(format!("{}.npy", sanitize(name)));
            kiln::npy::write(&p, t).map_err(|e| anyhow!(e))?;
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn bench(
    path: &Path,
    opts: &kiln::bench::BenchOptions,
    json: bool,
    inputs: &[String],
    dims: &[String],
) -> Result<()> {
    if opts.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if is_artifact_file(path) {
        // Loading is timed from reading the file.
        let t0 = Instant::now();
        let bytes = read_artifact(path)?;
        let prepared = kiln::backend::Prepared::from_artifact(
            &bytes,
            &kiln::backend::PrepareOptions {
                threads: opts.threads,
            },
        )
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let s = prepared.session().ok_or_else(|| anyhow!("not a session"))?;
        let backend = match opts.backend {
            kiln::backend::Backend::Ref => BackendArg::Ref,
            _ => BackendArg::Cpu,
        };
        let (given, notes) = artifact_inputs(s, read_inputs(inputs)?, dims, backend)?;
        for n in &notes {
            eprintln!("note: {n}");
        }
        let mut o = opts.clone();
        o.backend = kiln::backend::Backend::Cpu;
        let report = kiln::bench::bench_prepared(&prepared, load_ms, &given, &o)?;
        if json {
            println!("{}", report.to_json());
        } else {
            print!("{}", report.to_text(&path.display().to_string()));
        }
        return Ok(());
    }
    let mut m = if is_onnx(path) {
        load_onnx(path, dims)?
    } else {
        Model::load_kir(path)?
    };
    let given = read_inputs(inputs)?;
    let (given, notes) = kiln::bench::bind_inputs(&mut m, given, &parse_dims(dims)?)?;
    // Notes go to stderr, so that `--json` prints exactly one JSON object.
    for n in &notes {
        eprintln!("note: {n}");
    }
    let report = kiln::bench::bench(m, &given, opts)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text(&path.display().to_string()));
    }
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `logits: f32[4,10] min -0.41 max 0.37 mean 0.012 [0.1, -0.2, ...]`
fn summarize(name: &str, t: &Tensor) -> String {
    let v = t.values_f64();
    let n = v.len().max(1) as f64;
    let (mn, mx) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mean = v.iter().sum::<f64>() / n;
    let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.5}")).collect();
    let more = if v.len() > 6 { ", ..." } else { "" };
    format!(
        "{name}: {} min {mn:.5} max {mx:.5} mean {mean:.5} [{}{more}]",
        t.ty(),
        head.join(", ")
    )
}

fn demo(name: &str, batch: usize) -> Result<()> {
    let src = kiln::examples::source(name).ok_or_else(|| {
        let names: Vec<&str> = kiln::examples::MODELS.iter().map(|(n, _)| *n).collect();
        anyhow!("no embedded model `{name}` (have: {})", names.join(", "))
    })?;
    println!("kiln demo: {name} (embedded example), batch {batch}");
    match kiln::runtime::host::host_target() {
        Ok(h) => println!(
            "  host: {} ({} Cranelift ISA features)",
            h.triple,
            h.features.len()
        ),
        Err(e) => println!("  host: {e}"),
    }
    let t0 = Instant::now();
    let mut g = ir::parse(src).map_err(|e| anyhow!("embedded {name}.kir:{e}"))?;
    let dims: BTreeMap<String, usize> = g.symbols().into_iter().map(|s| (s, batch)).collect();
    g.bind_dims(&dims)?;
    ir::verify(&g)?;
    let weights =
        kiln::init::init_weights(&g, kiln::examples::WEIGHT_SEED).map_err(|e| anyhow!(e))?;
    let params: usize = weights.0.values().map(|t| t.len()).sum();
    println!(
        "  parsed and verified: {} nodes, {} params ({:.1} KiB of weights) in {:.2} ms",
        g.node_count(),
        params,
        params as f64 * 4.0 / 1024.0,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut inputs = HashMap::new();
    for &v in g.inputs() {
        let val = g.value(v);
        let name = val.name.clone().unwrap_or_default();
        inputs.insert(
            name.clone(),
            kiln::init::random_input(&name, &val.ty).map_err(|e| anyhow!(e))?,
        );
    }
    let t1 = Instant::now();
    let outs = ir::run(&g, &weights, &inputs)?;
    println!(
        "  ran on the reference interpreter in {:.2} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );
    for (name, t) in &outs {
        println!("  {}", summarize(name, t));
    }
    Ok(())
}

struct OptArgs {
    level: Option<String>,
    passes: Option<String>,
    disable: Vec<String>,
    print_after: Vec<String>,
    print_after_all: bool,
    stats: bool,
    dims: Vec<String>,
    fold_budget: Option<usize>,
    output: Option<PathBuf>,
}

fn list_passes_text() -> String {
    use kiln::compiler::passes::{registry, Pipeline, RULES};
    let mut s = String::from("passes:\n");
    for p in registry() {
        s += &format!("  {:<12} {}\n", p.name(), p.description());
    }
    s += "\nsimplify rules:\n";
    for r in RULES {
        s += &format!("  {:<24} {}\n", r.name, r.description);
    }
    s += "\npipelines:\n";
    for l in ["O0", "O1", "O2"] {
        if let Ok(p) = Pipeline::level(l) {
            s += &format!(
                "  -{l}: {}\n",
                if p.steps.is_empty() {
                    "(nothing)".to_string()
                } else {
                    p.to_string()
                }
            );
        }
    }
    s
}

/// A `.kir` (with its weights) or `.onnx` model, with `--dim` values bound.
fn load_any(path: &Path, dims: &[String]) -> Result<Model> {
    let mut m = if is_onnx(path) {
        load_onnx(path, dims)?
    } else {
        Model::load_kir(path)?
    };
    if !dims.is_empty() && !is_onnx(path) {
        let mut bound = BTreeMap::new();
        for s in dims {
            let (k, v) = parse_kv(s, "--dim")?;
            bound.insert(
                k.clone(),
                v.parse()
                    .map_err(|_| anyhow!("--dim {k}: `{v}` is not a size"))?,
            );
        }
        m.graph.bind_dims(&bound)?;
    }
    Ok(m)
}

fn opt(path: &Path, a: OptArgs) -> Result<()> {
    use kiln::compiler::passes::{PassManager, Pipeline, PrintAfter};
    let mut m = load_any(path, &a.dims)?;
    let mut pipeline = match &a.passes {
        Some(list) => Pipeline::from_list(list)?,
        None => Pipeline::level(a.level.as_deref().unwrap_or("O2"))?,
    };
    for d in &a.disable {
        pipeline.disable(d)?;
    }
    let names = pipeline.pass_names();
    for p in &a.print_after {
        if kiln::compiler::passes::pass_by_name(p).is_none() {
            bail!("--print-after {p}: unknown pass (see `kiln opt --list-passes`)");
        }
        if !names.contains(p) {
            bail!("--print-after {p}: the pass is not in the pipeline ({pipeline})");
        }
    }
    let mut pm = PassManager::new(pipeline);
    if let Some(b) = a.fold_budget {
        pm.opts.fold_budget_bytes = b;
    }
    pm.print_after = if a.print_after_all {
        PrintAfter::All
    } else if !a.print_after.is_empty() {
        PrintAfter::Passes(a.print_after.iter().cloned().collect())
    } else {
        PrintAfter::Never
    };
    let result = pm.run(&mut m.graph, &mut m.weights);
    for (pass, it, ir) in &pm.printed {
        println!("# ---- IR after {pass} (iteration {it}) ----");
        print!("{ir}");
    }
    if a.stats {
        eprint!("{}", pm.stats_table());
    }
    result?;
    if !pm.printed.is_empty() {
        println!("# ---- final IR ----");
    }
    print!("{}", ir::print(&m.graph));
    if let Some(out) = &a.output {
        std::fs::write(out, ir::print(&m.graph))
            .with_context(|| format!("writing {}", out.display()))?;
        if !m.graph.params().is_empty() {
            let wp = out.with_extension("safetensors");
            m.weights.save(&wp)?;
            eprintln!("wrote {} and {}", out.display(), wp.display());
        } else {
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}
