//! `Session::run_into`, the zero-copy run: outputs written into the
//! caller's buffers must equal `Session::run`'s bitwise, on every example
//! model, at 1 and 2 threads, for aligned buffers (written in place) and
//! misaligned ones (staged), and for outputs that are not written in place
//! (a value listed twice, a reshape, an input passed through, a weight, a
//! non-f32 value). Bad views are errors that name the input or output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln::backend::compile_artifact;
use kiln::ir::program::Loc;
use kiln::ir::{self, DType, Model, Tensor};
use kiln::runtime::artifact::WriteOptions;
use kiln::runtime::session::{Session, SessionError, SessionOptions, TensorView};
use kiln::runtime::zero_copy::TensorViewMut;

fn example(name: &str, batch: usize) -> Model {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/models/{name}.kir"));
    let mut m = Model::load_kir(&p).expect("example loads");
    let dims: BTreeMap<String, usize> = m.graph.symbols().into_iter().map(|s| (s, batch)).collect();
    m.graph.bind_dims(&dims).expect("binds");
    m
}

fn session(m: &Model, threads: usize) -> Session {
    let bytes = compile_artifact(m.clone(), "O2", &WriteOptions::default())
        .expect("compiles")
        .0;
    Session::from_bytes(&bytes, &SessionOptions { threads }).expect("loads")
}

/// Random inputs in the session's order.
fn inputs(s: &Session) -> Vec<Tensor> {
    s.inputs()
        .iter()
        .map(|i| {
            let ty = ir::TensorType::concrete(i.dtype, &i.shape);
            kiln::init::random_input(&i.name, &ty).unwrap()
        })
        .collect()
}

/// Output buffers: one byte-vector per output, with `skew` bytes of slack
/// in front so the data may start misaligned. Filled with a pattern that
/// no output is likely to hold, so untouched bytes show.
fn buffers(s: &Session, skew: usize) -> Vec<Vec<u8>> {
    s.outputs()
        .iter()
        .map(|o| vec![0xA5u8; o.byte_len() + skew])
        .collect()
}

/// `run_into` with the inputs' and outputs' data `skew` bytes into byte
/// vectors (so misaligned for f32 unless `skew` is 0 or 4).
fn run_into(s: &Session, ins: &[Tensor], bufs: &mut [Vec<u8>], skew: usize) {
    let in_bytes: Vec<Vec<u8>> = ins
        .iter()
        .map(|t| {
            let mut b = vec![0u8; skew];
            b.extend_from_slice(&t.to_le_bytes());
            b
        })
        .collect();
    let views: Vec<TensorView> = ins
        .iter()
        .zip(&in_bytes)
        .map(|(t, b)| TensorView {
            dtype: t.dtype(),
            shape: t.shape(),
            data: &b[skew..],
        })
        .collect();
    let mut outs: Vec<TensorViewMut> = s
        .outputs()
        .iter()
        .zip(bufs.iter_mut())
        .map(|(o, b)| TensorViewMut {
            dtype: o.dtype,
            shape: &o.shape,
            data: &mut b[skew..],
        })
        .collect();
    s.run_into(&views, &mut outs).expect("run_into");
}

fn check_equal(s: &Session, ins: &[Tensor], ctx: &str) {
    let views: Vec<TensorView> = ins
        .iter()
        .map(|t| TensorView::from_tensor(t).unwrap())
        .collect();
    let want = s.run(&views).expect("run");
    for skew in [0, 1, 2] {
        let mut bufs = buffers(s, skew);
        run_into(s, ins, &mut bufs, skew);
        for ((o, w), b) in s.outputs().iter().zip(&want).zip(&bufs) {
            assert_eq!(
                &b[skew..],
                w.to_le_bytes().as_slice(),
                "{ctx}: output `{}` (skew {skew}) differs from run()",
                o.name
            );
        }
    }
}

#[test]
fn run_into_equals_run_bitwise_on_every_example() {
    for name in ["mlp", "lenet5", "vgg_small", "resnet_block"] {
        let m = example(name, 2);
        for threads in [1, 2] {
            let s = session(&m, threads);
            // The example's outputs are computed by steps, so the aligned
            // case really writes in place.
            let p = s.executor().program();
            assert!(
                p.graph
                    .outputs()
                    .iter()
                    .any(|(_, v)| p.loc(*v) == Loc::Output),
                "{name}: no output is written in place"
            );
            let ins = inputs(&s);
            check_equal(&s, &ins, &format!("{name} at {threads} threads"));
        }
    }
}

/// Outputs that live elsewhere than a fresh output buffer are copied in.
#[test]
fn outputs_not_written_in_place_are_copied_in() {
    let src = "graph t {
  input %x: f32[3,4]
  input %i: i64[3]
  param %w: f32[4,5]
  %a = exp(%x)
  %r = reshape(%a) {shape = [12]}
  %m = matmul(%x, %w)
  %n = neg(%i)
  %c = cast(%m) {to = f64}
  output e = %a
  output e2 = %a
  output r = %r
  output m = %m
  output m2 = %m
  output x = %x
  output w = %w
  output n = %n
  output c = %c
}";
    let graph = ir::parse(src).unwrap_or_else(|e| panic!("{e}"));
    let weights = kiln::init::init_weights(&graph, 7).unwrap();
    let m = Model { graph, weights };
    for threads in [1, 2] {
        let s = session(&m, threads);
        let p = s.executor().program();
        let locs: Vec<Loc> = p.graph.outputs().iter().map(|(_, v)| p.loc(*v)).collect();
        // Every kind of output location is exercised.
        for want in [Loc::Output, Loc::Input, Loc::Param, Loc::Boxed] {
            assert!(locs.contains(&want), "no {want:?} output in {locs:?}");
        }
        assert!(
            locs.iter().any(|l| matches!(l, Loc::Arena { .. })),
            "no arena output in {locs:?}"
        );
        let ins = inputs(&s);
        check_equal(&s, &ins, &format!("odd outputs at {threads} threads"));
    }
}

#[test]
fn bad_views_are_errors_naming_the_input_or_output() {
    let s = session(&example("mlp", 2), 1);
    let x = vec![0.25f32; 2 * 784];
    let xs = [2usize, 784];
    let (mut l, mut p) = (vec![0f32; 20], vec![0f32; 20]);
    let os = [2usize, 10];
    let good_in = [TensorView::f32(&x, &xs)];
    assert_eq!(s.outputs()[0].name, "logits");
    assert_eq!(s.outputs()[1].name, "probs");
    s.run_into(
        &good_in,
        &mut [
            TensorViewMut::f32(&mut l, &os),
            TensorViewMut::f32(&mut p, &os),
        ],
    )
    .unwrap();
    let sum: f32 = p[..10].iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "softmax row sums to {sum}");

    let err = |ins: &[TensorView], outs: &mut [TensorViewMut]| -> String {
        s.run_into(ins, outs).unwrap_err().to_string()
    };
    // Input count.
    let e = s
        .run_into(
            &[],
            &mut [
                TensorViewMut::f32(&mut l, &os),
                TensorViewMut::f32(&mut p, &os),
            ],
        )
        .unwrap_err();
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
    // Output count.
    let e = err(&good_in, &mut [TensorViewMut::f32(&mut l, &os)]);
    assert!(
        e.contains("expected 2 output buffers") && e.contains("`probs`"),
        "{e}"
    );
    // Input shape and byte length.
    let bad_shape = [784usize, 2];
    let e = err(
        &[TensorView::f32(&x, &bad_shape)],
        &mut [
            TensorViewMut::f32(&mut l, &os),
            TensorViewMut::f32(&mut p, &os),
        ],
    );
    assert!(e.starts_with("input `x`: expected f32[2,784]"), "{e}");
    let e = err(
        &[TensorView::f32(&x[1..], &xs)],
        &mut [
            TensorViewMut::f32(&mut l, &os),
            TensorViewMut::f32(&mut p, &os),
        ],
    );
    assert!(e.starts_with("input `x`") && e.contains("bytes"), "{e}");
    // Output dtype, shape and byte length.
    let mut wide = vec![0u8; 160];
    let e = err(
        &good_in,
        &mut [
            TensorViewMut::f32(&mut l, &os),
            TensorViewMut {
                dtype: DType::F64,
                shape: &os,
                data: &mut wide,
            },
        ],
    );
    assert!(
        e.starts_with("output `probs`: expected f32[2,10], got f64[2,10]"),
        "{e}"
    );
    let flat = [20usize];
    let e = err(
        &good_in,
        &mut [
            TensorViewMut::f32(&mut l, &flat),
            TensorViewMut::f32(&mut p, &os),
        ],
    );
    assert!(
        e.starts_with("output `logits`: expected f32[2,10], got f32[20]"),
        "{e}"
    );
    let e = err(
        &good_in,
        &mut [
            TensorViewMut::f32(&mut l[1..], &os),
            TensorViewMut::f32(&mut p, &os),
        ],
    );
    assert!(
        e.starts_with("output `logits`") && e.contains("bytes"),
        "{e}"
    );
}

#[test]
fn run_into_runs_concurrently() {
    let s = session(&example("lenet5", 2), 2);
    let ins = inputs(&s);
    let views: Vec<TensorView> = ins
        .iter()
        .map(|t| TensorView::from_tensor(t).unwrap())
        .collect();
    let want: Vec<Vec<u8>> = s
        .run(&views)
        .unwrap()
        .iter()
        .map(Tensor::to_le_bytes)
        .collect();
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| {
                for _ in 0..4 {
                    let mut bufs = buffers(&s, 0);
                    run_into(&s, &ins, &mut bufs, 0);
                    assert_eq!(bufs, want);
                }
            });
        }
    });
}
