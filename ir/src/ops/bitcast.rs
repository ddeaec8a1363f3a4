//! `bitcast`: reinterpret each element's bits as another type of the same width.

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::op::{dtype_err, expect_arity, FusionKind, OpDef, OpError, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// ONNX BitCast: the same bits read as `to`, which must be as wide as the
/// input's type. Quantized types are refused (their meaning lives in the type).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BitCast {
    pub to: DType,
}

/// Bits per element (narrow types count their own width, not their byte).
fn bit_width(d: DType) -> usize {
    match d {
        DType::Narrow(n) => n.bits() as usize,
        _ => 8 * d.size_bytes(),
    }
}

impl OpDef for BitCast {
    const SPELLINGS: &'static [&'static str] = &["bitcast"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(BitCast {
            to: attrs.req_dtype("to")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "bitcast"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.dtype("to", self.to);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let from = inputs[0].dtype;
        if from.is_quantized() || self.to.is_quantized() {
            return dtype_err(format!(
                "bitcast between {from} and {} involves a quantized type",
                self.to
            ));
        }
        if bit_width(from) != bit_width(self.to) {
            return dtype_err(format!(
                "bitcast needs types of the same width: {from} has {} bits, {} has {}",
                bit_width(from),
                self.to,
                bit_width(self.to)
            ));
        }
        Ok(vec![inputs[0].with_dtype(self.to)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        self.infer(&[&x.ty()])?;
        // One byte per narrow element on both sides, so the layouts agree.
        Tensor::from_le_bytes(self.to, x.shape(), &x.to_le_bytes())
            .map(|t| vec![t])
            .map_err(OpError::Eval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Narrow;
    use crate::ops::test_util::roundtrip;
    use ndarray::arr1;

    fn cast(to: DType, x: &Tensor) -> OpResult<Tensor> {
        BitCast { to }.infer(&[&x.ty()])?;
        Ok(BitCast { to }.eval(&[x])?.remove(0))
    }

    #[test]
    fn reinterprets_bits() {
        let x = Tensor::f32(&[2], vec![1.0, -0.0]);
        let y = cast(DType::I32, &x).unwrap();
        assert_eq!(y, Tensor::I32(arr1(&[0x3f80_0000, i32::MIN]).into_dyn()));
        assert_eq!(cast(DType::F32, &y).unwrap(), x);
        let u = Tensor::U16(arr1(&[65535u16, 1]).into_dyn());
        assert_eq!(cast(DType::I16, &u).unwrap().values_f64(), [-1.0, 1.0]);
        let b = Tensor::U8(arr1(&[0x7Eu8]).into_dyn());
        let f8 = cast(DType::Narrow(Narrow::F8E4M3FN), &b).unwrap();
        assert_eq!(f8.values_f64(), [448.0]);
        let i4 = Tensor::from_i64(DType::Narrow(Narrow::I4), arr1(&[-1i64]).into_dyn());
        assert_eq!(
            cast(DType::Narrow(Narrow::U4), &i4).unwrap().values_f64(),
            [15.0]
        );
    }

    #[test]
    fn widths_must_match() {
        let x = Tensor::f32(&[1], vec![1.0]);
        assert!(matches!(cast(DType::I64, &x), Err(OpError::DType(_))));
        assert!(cast(
            DType::Narrow(Narrow::I4),
            &Tensor::U8(arr1(&[1u8]).into_dyn())
        )
        .is_err());
        roundtrip(&BitCast { to: DType::U64 });
    }
}
