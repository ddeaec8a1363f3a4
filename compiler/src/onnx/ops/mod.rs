//! ONNX op converters, one file per op family. Each table row names the ONNX
//! op, the opset range the converter covers, and the converter.

mod control;
mod elementwise;
mod index;
mod math;
mod nn;
mod quant;
mod reduce;
mod resample;
mod rnn;
mod shape;
// Attention, normalisations, losses, activations (issue 3, nn family).
mod attention;
mod norm_loss;
mod signal;
mod spatial;
// Sequences as import-time lists (issue 3).
mod sequence;
mod training;

use super::import::{CResult, Ctx};

pub type Converter = fn(&mut Ctx) -> CResult<()>;

/// (ONNX op type, first opset, last opset, converter).
pub type Row = (&'static str, i64, i64, Converter);

/// The newest opset in the test data; later opsets are accepted as long as the
/// op's semantics have not changed, which the conformance suite checks.
pub const MAX_OPSET: i64 = 28;

fn tables() -> [&'static [Row]; 16] {
    [
        elementwise::OPS,
        math::OPS,
        nn::OPS,
        reduce::OPS,
        shape::OPS,
        index::OPS,
        attention::OPS,
        norm_loss::OPS,
        quant::OPS,
        control::OPS,
        resample::OPS,
        rnn::OPS,
        spatial::OPS,
        signal::OPS,
        sequence::OPS,
        training::OPS,
    ]
}

/// The converter for `op_type` at `opset`, if kiln has one.
pub fn converter(op_type: &str, opset: i64) -> Option<Converter> {
    tables()
        .into_iter()
        .flatten()
        .find(|(name, lo, hi, _)| *name == op_type && (*lo..=*hi).contains(&opset))
        .map(|r| r.3)
}

/// Every supported ONNX op type with its opset range, for documentation.
pub fn supported() -> Vec<(&'static str, i64, i64)> {
    let mut v: Vec<_> = tables()
        .into_iter()
        .flatten()
        .map(|r| (r.0, r.1, r.2))
        .collect();
    v.sort();
    v
}
