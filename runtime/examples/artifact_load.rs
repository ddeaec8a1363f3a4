//! Time loading `.kiln` artifacts, phase by phase (median of N loads each):
//! reading, checking and decoding the file (`Artifact::read_file`, what
//! `Session::load` does: checksums, graph parse, kernels, plan, and each f32
//! weight read from the file straight into its tensor), and preparing the
//! executor (JIT, weight packing, thread pool). Also prints the file size
//! against the weights' bytes. Each file is loaded `--runs` times in this
//! process (default 9); the medians are printed as a Markdown row.
//!
//! ```sh
//! cargo run --release -p kiln-runtime --example artifact_load -- [--runs N] A.kiln [B.kiln ...]
//! ```

use std::time::Instant;

use kiln_runtime::artifact::Artifact;
use kiln_runtime::session::{Session, SessionOptions};

/// CPU time of the whole process (every thread), in ms: on a shared
/// machine it shows the work apart from waiting for a core.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 9;
    if let Some(k) = args.iter().position(|a| a == "--runs") {
        runs = args.get(k + 1).and_then(|s| s.parse().ok()).unwrap_or(runs);
        args.drain(k..(k + 2).min(args.len()));
    }
    if args.is_empty() {
        eprintln!("usage: artifact_load [--runs N] FILE.kiln ...");
        std::process::exit(2);
    }
    println!("| artifact | file bytes | weights bytes | overhead | read+decode ms | prepare ms | load total ms | load CPU ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for path in &args {
        let (mut decode, mut prep, mut total) = (vec![], vec![], vec![]);
        let mut cpu = vec![];
        let mut sizes = (0, 0);
        for _ in 0..runs {
            let c0 = process_cpu_ms();
            let t0 = Instant::now();
            let art = Artifact::read_file(std::path::Path::new(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let t2 = Instant::now();
            sizes = (art.header.file_len as usize, art.weight_bytes());
            let s = Session::from_artifact(art, &SessionOptions::default())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let t3 = Instant::now();
            cpu.push(process_cpu_ms() - c0);
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            decode.push(ms(t0, t2));
            prep.push(ms(t2, t3));
            total.push(ms(t0, t3));
            drop(s);
        }
        println!(
            "| {} | {} | {} | {:+.2}% | {:.1} | {:.1} | {:.1} | {:.1} |",
            std::path::Path::new(path)
                .file_name()
                .map_or(path.clone(), |f| f.to_string_lossy().into_owned()),
            sizes.0,
            sizes.1,
            (sizes.0 as f64 / sizes.1.max(1) as f64 - 1.0) * 100.0,
            median(decode),
            median(prep),
            median(total),
            median(cpu)
        );
    }
}
