//! STUB: to be implemented. Struct fields are fixed by the op table design.
#![allow(unused)]
use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{FusionKind, OpDef, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Softmax { pub axis: i64, pub log: bool }
impl OpDef for Softmax {
    const SPELLINGS: &'static [&'static str] = &["softmax", "log_softmax"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchNorm { pub epsilon: F64 }
impl OpDef for BatchNorm {
    const SPELLINGS: &'static [&'static str] = &["batch_norm"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayerNorm { pub axis: i64, pub epsilon: F64 }
impl OpDef for LayerNorm {
    const SPELLINGS: &'static [&'static str] = &["layer_norm"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dropout { pub ratio: F64 }
impl OpDef for Dropout {
    const SPELLINGS: &'static [&'static str] = &["dropout"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}
