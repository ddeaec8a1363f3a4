//! STUB: to be implemented. Struct fields are fixed by the op table design.
#![allow(unused)]
use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{FusionKind, OpDef, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatMul;
impl OpDef for MatMul {
    const SPELLINGS: &'static [&'static str] = &["matmul"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}
