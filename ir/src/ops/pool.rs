//! STUB: to be implemented. Struct fields are fixed by the op table design.
#![allow(unused)]
use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{FusionKind, OpDef, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool { pub kind: PoolKind, pub kernel: Vec<i64>, pub strides: Vec<i64>, pub pads: Vec<i64>, pub dilations: Vec<i64>, pub ceil_mode: bool, pub count_include_pad: bool }
impl OpDef for Pool {
    const SPELLINGS: &'static [&'static str] = &["max_pool", "avg_pool"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobalPool { pub kind: PoolKind }
impl OpDef for GlobalPool {
    const SPELLINGS: &'static [&'static str] = &["global_max_pool", "global_avg_pool"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind { Max, Avg }
