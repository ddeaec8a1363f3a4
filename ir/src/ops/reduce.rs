//! STUB: to be implemented. Struct fields are fixed by the op table design.
#![allow(unused)]
use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{FusionKind, OpDef, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reduce { pub kind: ReduceKind, pub axes: Vec<i64>, pub keepdims: bool }
impl OpDef for Reduce {
    const SPELLINGS: &'static [&'static str] = &["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArgReduce { pub max: bool, pub axis: i64, pub keepdims: bool, pub select_last_index: bool }
impl OpDef for ArgReduce {
    const SPELLINGS: &'static [&'static str] = &["argmax", "argmin"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind { Sum, Mean, Max, Min, Prod }
