//! The `.kiln` artifact: round trips (compile → bytes → load → run equals
//! the in-memory run bitwise), robustness (every flipped or truncated byte
//! is a clean error, never a panic), the target rule, input errors, and the
//! runtime's dependency boundary.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use kiln::backend::{compile_artifact, Backend, PrepareOptions, Prepared};
use kiln::ir::{Model, Tensor};
use kiln::runtime::artifact::{
    self, Artifact, ArtifactError, SectionKind, TargetSignature, WriteOptions,
};
use kiln::runtime::gemm::Isa;
use kiln::runtime::session::{Session, SessionError, SessionOptions, TensorView};

fn example(name: &str, batch: usize) -> Model {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/models/{name}.kir"));
    let mut m = Model::load_kir(&p).expect("example loads");
    let dims: BTreeMap<String, usize> = m.graph.symbols().into_iter().map(|s| (s, batch)).collect();
    m.graph.bind_dims(&dims).expect("binds");
    m
}

fn inputs_of(m: &Model) -> HashMap<String, Tensor> {
    m.graph
        .inputs()
        .iter()
        .map(|&v| {
            let val = m.graph.value(v);
            let name = val.name.clone().unwrap();
            let t = kiln::init::random_input(&name, &val.ty).unwrap();
            (name, t)
        })
        .collect()
}

fn compile(m: &Model) -> Vec<u8> {
    compile_artifact(m.clone(), "O2", &WriteOptions::default())
        .expect("compiles")
        .0
}

fn bits(t: &Tensor) -> Vec<u8> {
    t.to_le_bytes()
}

const EXAMPLES: [&str; 4] = ["mlp", "lenet5", "vgg_small", "resnet_block"];

#[test]
fn round_trip_runs_bitwise_like_the_in_memory_program() {
    for name in EXAMPLES {
        let m = example(name, 2);
        let inputs = inputs_of(&m);
        let mem = Prepared::new(m.clone(), Backend::Cpu, &PrepareOptions { threads: 2 }).unwrap();
        let want = mem.run(&inputs).unwrap();
        let bytes = compile(&m);
        let s = Session::from_bytes(&bytes, &SessionOptions { threads: 2 }).unwrap();
        let views: Vec<Tensor> = s.inputs().iter().map(|i| inputs[&i.name].clone()).collect();
        let views: Vec<TensorView> = views
            .iter()
            .map(|t| TensorView::from_tensor(t).unwrap())
            .collect();
        let got = s.run(&views).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for ((wn, w), (o, g)) in want.iter().zip(s.outputs().iter().zip(&got)) {
            assert_eq!(wn, &o.name, "{name}");
            assert_eq!(o.shape, g.shape(), "{name}");
            assert_eq!(bits(w), bits(g), "{name}: output `{wn}` differs");
        }
        // Writing the loaded program again gives the same sections: the ids
        let a = Artifact::from_bytes(&bytes).unwrap();
        // are canonical. (Only the graph's fusion-group comments, which the
        // parser drops, may differ.)
        let again = artifact::write(&a.program, &a.weights, &WriteOptions::default()).unwrap();
        let b = Artifact::from_bytes(&again).unwrap();
        let (ha, hb) = (&a.header.sections, &b.header.sections);
        for (sa, sb) in ha.iter().zip(hb) {
            let get = |bytes: &[u8], s: &artifact::SectionInfo| {
                bytes[s.offset as usize..(s.offset + s.len) as usize].to_vec()
            };
            let (x, y) = (get(&bytes, sa), get(&again, sb));
            if sa.kind == SectionKind::Graph as u32 {
                let strip = |t: Vec<u8>| {
                    String::from_utf8(t)
                        .unwrap()
                        .lines()
                        .map(|l| l.split("  #").next().unwrap().to_string())
                        .filter(|l| !l.trim().is_empty())
                        .collect::<Vec<_>>()
                };
                assert_eq!(strip(x), strip(y), "{name}: graph text changed");
            } else {
                assert!(x == y, "{name}: section {} changed on rewriting", sa.name());
            }
        }
    }
}

#[test]
fn session_io_and_input_errors_name_the_input() {
    let m = example("lenet5", 3);
    let s = Session::from_bytes(&compile(&m), &SessionOptions::default()).unwrap();
    assert_eq!(s.inputs().len(), 1);
    let x = &s.inputs()[0];
    assert_eq!(x.dtype, kiln::ir::DType::F32);
    let n: usize = x.shape.iter().product();
    let data = vec![0.5f32; n];
    assert_eq!(
        s.run(&[TensorView::f32(&data, &x.shape)]).unwrap().len(),
        s.outputs().len()
    );
    // Wrong shape.
    let short = &x.shape[..x.shape.len() - 1];
    let e = s
        .run(&[TensorView::f32(&data, short)])
        .unwrap_err()
        .to_string();
    let ty = |d: &[usize]| kiln::ir::TensorType::concrete(kiln::ir::DType::F32, d).to_string();
    assert_eq!(
        e,
        format!(
            "input `{}`: expected {}, got {}",
            x.name,
            ty(&x.shape),
            ty(short)
        )
    );
    // Wrong byte length.
    let e = s
        .run(&[TensorView::f32(&data[1..], &x.shape)])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("input `{}`", x.name)) && e.contains("bytes"),
        "{e}"
    );
    // Wrong dtype.
    let bytes = vec![0u8; n * 8];
    let v = TensorView {
        dtype: kiln::ir::DType::F64,
        shape: &x.shape,
        data: &bytes,
    };
    let e = s.run(&[v]).unwrap_err().to_string();
    assert!(
        e.contains(&format!("input `{}`", x.name)) && e.contains("got f64"),
        "{e}"
    );
    // Wrong count.
    let e = s.run(&[]).unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::InputCount {
                expected: 1,
                got: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn sessions_run_concurrently() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Session>();
    let m = example("mlp", 4);
    let inputs = inputs_of(&m);
    let s = Session::from_bytes(&compile(&m), &SessionOptions { threads: 1 }).unwrap();
    let owned: Vec<Tensor> = s.inputs().iter().map(|i| inputs[&i.name].clone()).collect();
    let views: Vec<TensorView> = owned
        .iter()
        .map(|t| TensorView::from_tensor(t).unwrap())
        .collect();
    let want = s.run(&views).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..5 {
                    let got = s.run(&views).unwrap();
                    assert!(got.iter().zip(&want).all(|(a, b)| bits(a) == bits(b)));
                }
            });
        }
    });
}

/// Load under `catch_unwind`: any panic fails the test with its context.
fn load_no_panic(bytes: &[u8], ctx: &str) -> Result<Artifact, ArtifactError> {
    match catch_unwind(AssertUnwindSafe(|| Artifact::from_bytes(bytes))) {
        Ok(r) => r,
        Err(_) => panic!("the loader panicked on {ctx}"),
    }
}

/// Deterministic positions across `range`: both ends, and `n` spread evenly.
fn sample(range: std::ops::Range<usize>, n: usize) -> Vec<usize> {
    if range.is_empty() {
        return Vec::new();
    }
    let len = range.end - range.start;
    let mut v: Vec<usize> = (0..n).map(|k| range.start + k * len / n).collect();
    v.push(range.end - 1);
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = compile(&example("resnet_block", 1));
    let h = artifact::read_header(&bytes).unwrap();
    // The header and the section table, every byte.
    let table_end = 64 + 32 * h.sections.len();
    let mut positions: Vec<(String, usize)> = (0..table_end)
        .map(|i| ("header/table".to_string(), i))
        .collect();
    // A sample of every section (the ptx section is empty).
    for s in &h.sections {
        let r = s.offset as usize..(s.offset + s.len) as usize;
        for i in sample(r, 48) {
            positions.push((s.name().to_string(), i));
        }
    }
    // Padding between sections is not covered by a checksum: a flip there
    // changes nothing the loader reads, so only the covered bytes are flipped.
    let mut caught = 0;
    for (what, i) in &positions {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[*i] ^= mask;
            match load_no_panic(&b, &format!("a flip of byte {i} ({what}) by {mask:#x}")) {
                Err(_) => caught += 1,
                Ok(_) if (8..12).contains(i) => {}
                Ok(_) => panic!("a flip of byte {i} ({what}) by {mask:#x} loaded"),
            }
        }
    }
    assert!(caught > 1000, "{caught}");
}

#[test]
fn flips_in_the_graph_and_weights_are_caught_by_their_checksums() {
    let bytes = compile(&example("lenet5", 1));
    let h = artifact::read_header(&bytes).unwrap();
    for kind in [
        SectionKind::Graph,
        SectionKind::Weights,
        SectionKind::Kernels,
        SectionKind::Plan,
    ] {
        let s = h.sections.iter().find(|s| s.kind == kind as u32).unwrap();
        for i in sample(s.offset as usize..(s.offset + s.len) as usize, 64) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            match load_no_panic(&b, "a section flip") {
                Err(ArtifactError::Checksum { what, .. }) => {
                    assert!(what.contains(kind.name()), "{what}")
                }
                other => panic!("flip at {i} in {}: {other:?}", kind.name()),
            }
        }
    }
}

/// Past the checksums: flip bytes and reseal, so every section parser and
/// the program validator see corrupt contents. Loading may succeed (a
/// weight's value changed) but must never panic, and what loads must build
/// an executor or fail cleanly.
#[test]
fn resealed_corruption_never_panics() {
    let bytes = compile(&example("resnet_block", 1));
    let h = artifact::read_header(&bytes).unwrap();
    let mut loaded = 0;
    let mut refused = 0;
    for s in &h.sections {
        if s.kind == SectionKind::Weights as u32 {
            continue; // weight values: any bits load, nothing to learn.
        }
        let r = s.offset as usize..(s.offset + s.len) as usize;
        for i in sample(r, 200) {
            for mask in [0x01u8, 0x04, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                artifact::reseal(&mut b);
                let ctx = format!("a resealed flip of byte {i} ({}) by {mask:#x}", s.name());
                let res = catch_unwind(AssertUnwindSafe(|| {
                    Session::from_bytes(&b, &SessionOptions { threads: 1 }).map(|_| ())
                }));
                match res {
                    Ok(Ok(())) => loaded += 1,
                    Ok(Err(_)) => refused += 1,
                    Err(_) => panic!("panicked on {ctx}"),
                }
            }
        }
    }
    eprintln!("resealed flips: {loaded} loaded, {refused} refused");
    assert!(refused > 0);
}

#[test]
fn every_truncation_is_caught() {
    let bytes = compile(&example("lenet5", 1));
    let mut lens: Vec<usize> = (0..200.min(bytes.len())).collect();
    lens.extend(sample(200..bytes.len(), 400));
    for len in lens {
        match load_no_panic(&bytes[..len], &format!("a truncation to {len} bytes")) {
            Err(ArtifactError::Truncated { .. }) => {}
            Err(e) if len < 8 => assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}"),
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    // Extra bytes after the end are refused too.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        load_no_panic(&longer, "an extra byte"),
        Err(ArtifactError::OutOfRange { .. })
    ));
}

#[test]
fn header_errors_are_specific() {
    let bytes = compile(&example("mlp", 1));
    let mut b = bytes.clone();
    b[0] = b'P';
    assert_eq!(
        load_no_panic(&b, "bad magic").unwrap_err(),
        ArtifactError::BadMagic
    );
    let mut b = bytes.clone();
    b[8] = 9;
    assert!(matches!(
        load_no_panic(&b, "a new version").unwrap_err(),
        ArtifactError::UnsupportedVersion { major: 9, .. }
    ));
    // A newer minor version of the same major loads (after resealing the
    // header checksum it covers).
    let mut b = bytes.clone();
    b[10] = 7;
    artifact::reseal(&mut b);
    assert_eq!(load_no_panic(&b, "a minor bump").unwrap().header.minor, 7);
    // A section pointing past the end, resealed so the checksums pass.
    let mut b = bytes.clone();
    let e = 64 + 32 * 4 + 8; // the fifth entry's offset
    b[e..e + 8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    artifact::reseal(&mut b);
    assert!(matches!(
        load_no_panic(&b, "an out-of-range offset").unwrap_err(),
        ArtifactError::OutOfRange { .. }
    ));
    // A missing section.
    let mut b = bytes.clone();
    b[64..68].copy_from_slice(&99u32.to_le_bytes());
    artifact::reseal(&mut b);
    assert_eq!(
        load_no_panic(&b, "no meta section").unwrap_err(),
        ArtifactError::MissingSection("meta")
    );
}

#[test]
fn target_requirements_are_enforced() {
    let m = example("mlp", 1);
    for (isa, fallback) in [
        (Isa::Avx512, false),
        (Isa::Avx512, true),
        (Isa::Avx2, false),
    ] {
        let opts = WriteOptions {
            target: TargetSignature::for_isa(isa, fallback),
            ..WriteOptions::default()
        };
        let bytes = compile_artifact(m.clone(), "O2", &opts).unwrap().0;
        let a = Artifact::from_bytes(&bytes).unwrap();
        assert_eq!(a.target, opts.target);
        let r = Session::from_bytes(&bytes, &SessionOptions::default());
        match (isa.is_available(), fallback) {
            (true, _) => assert!(r.is_ok()),
            (false, true) => assert!(r.is_ok(), "falls back to portable kernels"),
            (false, false) => {
                let e = r.err().unwrap().to_string();
                assert!(e.contains("lacks `avx") && e.contains("fallback"), "{e}");
            }
        }
    }
}

#[test]
fn the_runtime_does_not_depend_on_the_compiler_or_protobuf() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "kiln-runtime",
            "--prefix",
            "none",
            "-e",
            "normal,build",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("kiln-runtime"), "{tree}");
    assert!(tree.contains("kiln-ir"), "{tree}");
    for bad in ["kiln-compiler", "prost", "protobuf"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(bad)),
            "kiln-runtime depends on {bad}:\n{tree}"
        );
    }
}

/// Inputs the fuzzers (`runtime/fuzz`) found crashing the loader, kept as
/// regressions: each, resealed as the fuzz target does, loads to an error.
#[test]
fn fuzz_regressions_load_to_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        kiln::runtime::artifact::reseal(&mut bytes);
        let r = catch_unwind(AssertUnwindSafe(|| {
            Session::from_bytes(&bytes, &SessionOptions { threads: 1 }).map(|_| ())
        }));
        match r {
            Ok(Err(e)) => eprintln!("{}: {e}", path.display()),
            Ok(Ok(())) => panic!("{} loaded", path.display()),
            Err(_) => panic!("{} panicked the loader", path.display()),
        }
        seen += 1;
    }
    assert!(seen >= 1);
}

/// `Artifact::read_file` (what `Session::load` uses: f32 weights streamed
/// from the file into their tensors, the weights' checksum computed on the
/// way) decodes exactly what `from_bytes` does, and refuses the same
/// corruptions: flips in every section, truncations, a missing file.
#[test]
fn reading_a_file_matches_from_bytes_and_refuses_corruption() {
    let bytes = compile(&example("resnet_block", 1));
    let dir = std::env::temp_dir().join(format!("kiln-read-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.kiln");
    std::fs::write(&path, &bytes).unwrap();
    let a = Artifact::read_file(&path).unwrap();
    let b = Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(a.weights.0.len(), b.weights.0.len());
    for (name, t) in &b.weights.0 {
        assert_eq!(bits(&a.weights.0[name]), bits(t), "{name}");
    }
    assert_eq!(a.program.steps, b.program.steps);

    let h = artifact::read_header(&bytes).unwrap();
    let mut tried = 0;
    for s in &h.sections {
        let r = s.offset as usize..(s.offset + s.len) as usize;
        for i in sample(r, 24) {
            let mut c = bytes.clone();
            c[i] ^= 0x10;
            std::fs::write(&path, &c).unwrap();
            let res = catch_unwind(AssertUnwindSafe(|| Artifact::read_file(&path)));
            match res {
                Ok(Err(_)) => tried += 1,
                Ok(Ok(_)) => panic!("a flip at byte {i} ({}) loaded", s.name()),
                Err(_) => panic!("a flip at byte {i} ({}) panicked", s.name()),
            }
        }
    }
    assert!(tried > 100, "{tried}");
    for cut in sample(0..bytes.len(), 64) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let res = catch_unwind(AssertUnwindSafe(|| Artifact::read_file(&path)));
        assert!(
            matches!(res, Ok(Err(_))),
            "a cut at {cut} loaded or panicked"
        );
    }
    std::fs::remove_file(&path).unwrap();
    let e = Artifact::read_file(&path).unwrap_err();
    assert!(matches!(e, ArtifactError::Io { .. }), "{e}");
    let _ = std::fs::remove_dir(&dir);
}
