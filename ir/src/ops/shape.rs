//! STUB: to be implemented. Struct fields are fixed by the op table design.
#![allow(unused)]
use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{FusionKind, OpDef, OpResult};
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reshape { pub shape: Vec<i64> }
impl OpDef for Reshape {
    const SPELLINGS: &'static [&'static str] = &["reshape"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flatten { pub axis: i64 }
impl OpDef for Flatten {
    const SPELLINGS: &'static [&'static str] = &["flatten"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transpose { pub perm: Vec<i64> }
impl OpDef for Transpose {
    const SPELLINGS: &'static [&'static str] = &["transpose"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Concat { pub axis: i64 }
impl OpDef for Concat {
    const SPELLINGS: &'static [&'static str] = &["concat"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Split { pub axis: i64, pub sizes: Vec<i64> }
impl OpDef for Split {
    const SPELLINGS: &'static [&'static str] = &["split"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slice { pub starts: Vec<i64>, pub ends: Vec<i64>, pub axes: Vec<i64>, pub steps: Vec<i64> }
impl OpDef for Slice {
    const SPELLINGS: &'static [&'static str] = &["slice"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gather { pub axis: i64 }
impl OpDef for Gather {
    const SPELLINGS: &'static [&'static str] = &["gather"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pad { pub mode: PadMode, pub pads: Vec<i64>, pub value: F64 }
impl OpDef for Pad {
    const SPELLINGS: &'static [&'static str] = &["pad"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Expand { pub shape: Vec<i64> }
impl OpDef for Expand {
    const SPELLINGS: &'static [&'static str] = &["expand"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Squeeze { pub axes: Vec<i64> }
impl OpDef for Squeeze {
    const SPELLINGS: &'static [&'static str] = &["squeeze"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unsqueeze { pub axes: Vec<i64> }
impl OpDef for Unsqueeze {
    const SPELLINGS: &'static [&'static str] = &["unsqueeze"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cast { pub to: DType }
impl OpDef for Cast {
    const SPELLINGS: &'static [&'static str] = &["cast"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constant { pub value: Tensor }
impl OpDef for Constant {
    const SPELLINGS: &'static [&'static str] = &["constant"];
    fn parse(_s: &str, _a: &mut AttrReader) -> Result<Self, AttrError> { todo!() }
    fn spelling(&self) -> &'static str { todo!() }
    fn write_attrs(&self, _w: &mut AttrWriter) { todo!() }
    fn infer(&self, _i: &[&TensorType]) -> OpResult<Vec<TensorType>> { todo!() }
    fn fusion_kind(&self) -> FusionKind { todo!() }
    fn eval(&self, _i: &[&Tensor]) -> OpResult<Vec<Tensor>> { todo!() }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode { Constant, Reflect, Edge }
