//! A small application that embeds kiln's runtime: it uses only the
//! `kiln-runtime` crate (no compiler, no protobuf) to load an artifact that
//! `kiln compile` wrote, list its inputs and outputs, run it, and print the
//! outputs. The second run writes into buffers the application owns.
//!
//! ```text
//! kiln compile examples/models/mlp.kir --dim N=2 -o mlp.kiln
//! cargo run --release --example embed -- mlp.kiln [THREADS]
//! ```

use kiln_runtime::session::{Session, SessionOptions, TensorView};
use kiln_runtime::zero_copy::TensorViewMut;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: embed MODEL.kiln [THREADS]")?;
    let threads = args.next().map(|t| t.parse()).transpose()?.unwrap_or(1);
    let session = Session::load(&path, &SessionOptions { threads })?;

    for i in session.inputs() {
        println!("input  {i}");
    }
    for o in session.outputs() {
        println!("output {o}");
    }

    // Deterministic f32 inputs (this example feeds f32 models).
    let data: Vec<Vec<f32>> = session
        .inputs()
        .iter()
        .map(|i| {
            if i.dtype != kiln_ir::DType::F32 {
                return Err(format!("input `{}` is {}, not f32", i.name, i.dtype));
            }
            let n: usize = i.shape.iter().product();
            Ok((0..n).map(|k| ((k % 17) as f32 - 8.0) / 8.0).collect())
        })
        .collect::<Result<_, _>>()?;
    let views: Vec<TensorView> = data
        .iter()
        .zip(session.inputs())
        .map(|(d, i)| TensorView::f32(d, &i.shape))
        .collect();

    // 1. Outputs as new tensors.
    let outputs = session.run(&views)?;
    for (o, t) in session.outputs().iter().zip(&outputs) {
        let v = t.values_f64();
        let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:.5}")).collect();
        let more = if v.len() > 8 { " ..." } else { "" };
        println!("{} = [{}{more}]", o.name, head.join(", "));
    }

    // 2. Zero-copy: the same run into buffers the application owns.
    let mut bufs: Vec<Vec<u8>> = session
        .outputs()
        .iter()
        .map(|o| vec![0u8; o.byte_len()])
        .collect();
    let mut outs: Vec<TensorViewMut> = session
        .outputs()
        .iter()
        .zip(bufs.iter_mut())
        .map(|(o, b)| TensorViewMut {
            dtype: o.dtype,
            shape: &o.shape,
            data: b,
        })
        .collect();
    session.run_into(&views, &mut outs)?;
    let same = bufs
        .iter()
        .zip(&outputs)
        .all(|(b, t)| *b == t.to_le_bytes());
    println!("run_into wrote the same bytes: {same}");
    if !same {
        return Err("run and run_into disagree".into());
    }
    Ok(())
}
