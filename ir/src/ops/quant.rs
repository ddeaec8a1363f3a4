//! Linear quantization with the scale and zero point as runtime inputs (ONNX
//! QuantizeLinear / DequantizeLinear, per tensor, per axis or blocked), and
//! `dynamic_quantize_linear`. The types `qi8`/`qu8`, which carry fixed
//! parameters in the type, are a separate mechanism.
//!
//! The scale (and zero point, of the same shape) is one of:
//! - a scalar or a one-element tensor: per tensor;
//! - a 1-D tensor as long as `x`'s dimension `axis` (`block_size = 0`): per axis;
//! - `x`'s rank, equal to `x`'s dims except along `axis`, where it has
//!   `ceil(dim / block_size)` entries (`block_size > 0`): blocked.

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::{DType, Narrow};
use crate::op::{
    attr_err, dtype_err, expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError,
    OpResult,
};
use crate::ops::{axis_or_err, concrete};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// How scale and zero point map onto `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    PerTensor,
    PerAxis(usize),
    Blocked { axis: usize, size: usize },
}

fn layout(x: &TensorType, s: &TensorType, axis: i64, block_size: i64) -> OpResult<Layout> {
    if s.rank() == 0 || s.shape.numel() == Some(1) {
        return Ok(Layout::PerTensor);
    }
    let ax = axis_or_err("axis", axis, x.rank())?;
    if block_size < 0 {
        return attr_err("block_size", format!("must be >= 0, found {block_size}"));
    }
    if block_size == 0 {
        if s.rank() != 1 || s.shape.0[0] != x.shape.0[ax] {
            return shape_err(format!(
                "a per-axis scale must be 1-D with x's dimension {ax} ({}), found {}",
                x.shape.0[ax], s.shape
            ));
        }
        return Ok(Layout::PerAxis(ax));
    }
    let size = block_size as usize;
    let bad = || {
        shape_err(format!(
            "a blocked scale must match x {} except along axis {ax}, where it has \
             ceil(dim / {size}) entries; found {}",
            x.shape, s.shape
        ))
    };
    if s.rank() != x.rank() {
        return bad();
    }
    for (i, (xd, sd)) in x.shape.0.iter().zip(s.shape.0.iter()).enumerate() {
        let ok = if i == ax {
            match (xd, sd) {
                (Dim::Known(n), Dim::Known(m)) => n.div_ceil(size) == *m,
                _ => false,
            }
        } else {
            xd == sd
        };
        if !ok {
            return bad();
        }
    }
    Ok(Layout::Blocked { axis: ax, size })
}

/// The flat index into the scale for each element of `x`, in row-major order.
fn param_indices(layout: Layout, x_dims: &[usize], s_dims: &[usize]) -> Vec<usize> {
    let n: usize = x_dims.iter().product();
    match layout {
        Layout::PerTensor => vec![0; n],
        Layout::PerAxis(ax) => {
            let inner: usize = x_dims[ax + 1..].iter().product();
            (0..n).map(|i| (i / inner.max(1)) % x_dims[ax]).collect()
        }
        Layout::Blocked { axis, size } => {
            let mut strides = vec![1usize; s_dims.len()];
            for i in (0..s_dims.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * s_dims[i + 1];
            }
            let mut out = Vec::with_capacity(n);
            let mut idx = vec![0usize; x_dims.len()];
            for _ in 0..n {
                let k = idx
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| if i == axis { v / size } else { v } * strides[i])
                    .sum();
                out.push(k);
                // Advance the row-major multi-index.
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < x_dims[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            out
        }
    }
}

/// Check scale and zero point against `x`; return the layout.
fn check_params(
    x: &TensorType,
    s: &TensorType,
    zp: Option<&TensorType>,
    axis: i64,
    block_size: i64,
) -> OpResult<Layout> {
    if !s.dtype.is_float() {
        return dtype_err(format!("the scale must be a float type, found {}", s.dtype));
    }
    let l = layout(x, s, axis, block_size)?;
    if let Some(z) = zp {
        // Per tensor, any one-element shape will do for either.
        let one = |t: &TensorType| t.rank() == 0 || t.shape.numel() == Some(1);
        let ok = if l == Layout::PerTensor {
            one(z)
        } else {
            z.shape == s.shape
        };
        if !ok {
            return shape_err(format!(
                "the zero point's shape {} does not match the scale's {}",
                z.shape, s.shape
            ));
        }
    }
    Ok(l)
}

/// The types quantize_linear can produce (and dequantize_linear reads, with i32).
fn is_quant_type(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8 | DType::I16 | DType::U16)
        || matches!(d, DType::Narrow(n) if n != Narrow::F8E8M0)
}

/// The integer range of an integer quantized type.
fn int_range(d: DType) -> Option<(i64, i64)> {
    Some(match d {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I16 => (-32768, 32767),
        DType::U16 => (0, 65535),
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::Narrow(n) if n.is_int() => n.int_range(),
        _ => return None,
    })
}

/// The flat row-major values of a tensor as f64.
fn flat(t: &Tensor) -> Vec<f64> {
    t.to_f64().iter().copied().collect()
}

/// Round `v` to the precision of float type `d` (identity for f64).
fn round_to(d: DType, v: f64) -> f64 {
    match d {
        DType::F32 => f64::from(v as f32),
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// numpy's result type of `x / scale` for float x and scale.
fn promote(a: DType, b: DType) -> DType {
    match (a, b) {
        _ if !a.is_float() || !b.is_float() => DType::F64,
        (DType::F64, _) | (_, DType::F64) => DType::F64,
        _ if a == b => a,
        _ => DType::F32,
    }
}

fn flag(attrs: &mut AttrReader, name: &str, default: bool) -> Result<bool, AttrError> {
    match attrs.int(name, i64::from(default))? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(AttrError {
            attr: name.into(),
            msg: format!("expected 0 or 1, found {v}"),
        }),
    }
}

/// `y = saturate(round(x / scale) + zero_point)` for integer `to`; for float8
/// `to`, `x / scale` cast with Cast's rounding (`saturate` as in Cast, the zero
/// point ignored: it must be 0); for fp4, `x / scale + zero_point` cast.
/// `x / scale` is rounded to `precision` (default: the promoted type of x and
/// scale) before rounding to an integer, as ONNX computes it in that type.
/// Integer rounding is half to even; NaN gives the lowest value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuantizeLinear {
    pub to: DType,
    pub axis: i64,
    pub block_size: i64,
    pub saturate: bool,
    pub precision: Option<DType>,
}

impl QuantizeLinear {
    pub fn new(to: DType) -> QuantizeLinear {
        QuantizeLinear {
            to,
            axis: 1,
            block_size: 0,
            saturate: true,
            precision: None,
        }
    }
}

impl OpDef for QuantizeLinear {
    const SPELLINGS: &'static [&'static str] = &["quantize_linear"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(QuantizeLinear {
            to: attrs.req_dtype("to")?,
            axis: attrs.int("axis", 1)?,
            block_size: attrs.int("block_size", 0)?,
            saturate: flag(attrs, "saturate", true)?,
            precision: attrs.opt_dtype("precision")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "quantize_linear"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.dtype("to", self.to);
        w.int("axis", self.axis);
        w.int("block_size", self.block_size);
        w.int("saturate", i64::from(self.saturate));
        if let Some(p) = self.precision {
            w.dtype("precision", p);
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 2, 3)?;
        let x = inputs[0];
        if !x.dtype.is_float() && x.dtype != DType::I32 {
            return dtype_err(format!(
                "quantize_linear takes a float or i32 input, found {}",
                x.dtype
            ));
        }
        if !is_quant_type(self.to) {
            return dtype_err(format!("cannot quantize to {}", self.to));
        }
        if let Some(p) = self.precision {
            if !p.is_float() {
                return attr_err("precision", format!("must be a float type, found {p}"));
            }
        }
        let zp = inputs.get(2).copied();
        if let Some(z) = zp {
            if z.dtype != self.to {
                return dtype_err(format!(
                    "the zero point's dtype {} differs from the output's {}",
                    z.dtype, self.to
                ));
            }
        }
        check_params(x, inputs[1], zp, self.axis, self.block_size)?;
        Ok(vec![x.with_dtype(self.to)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        self.infer(&refs)?;
        let (x, s) = (inputs[0], inputs[1]);
        let l = check_params(&tys[0], &tys[1], tys.get(2), self.axis, self.block_size)?;
        let idx = param_indices(l, x.shape(), s.shape());
        let sv = flat(s);
        let zv = inputs.get(2).map(|z| flat(z));
        let z = |k: usize| zv.as_ref().map_or(0.0, |z| z[k]);
        let prec = self
            .precision
            .unwrap_or_else(|| promote(x.dtype(), s.dtype()));
        let q: Vec<f64> = x
            .to_f64()
            .iter()
            .zip(&idx)
            .map(|(&v, &k)| round_to(prec, v / sv[k]))
            .collect();
        let dims = IxDyn(x.shape());
        let shape_err = |e: ndarray::ShapeError| OpError::Eval(e.to_string());
        let out = match self.to {
            DType::Narrow(n) if n.is_float() => {
                let bits: Vec<u8> = if n == Narrow::F4E2M1 {
                    q.iter()
                        .zip(&idx)
                        .map(|(&v, &k)| n.encode(v + z(k), true))
                        .collect()
                } else {
                    q.iter().map(|&v| n.encode(v, self.saturate)).collect()
                };
                Tensor::Narrow(n, ArrayD::from_shape_vec(dims, bits).map_err(shape_err)?)
            }
            to => {
                let (lo, hi) = int_range(to).expect("infer admits integer targets only");
                let ints: Vec<i64> = q
                    .iter()
                    .zip(&idx)
                    .map(|(&v, &k)| {
                        let r = if v.is_nan() {
                            i64::from(i32::MIN)
                        } else {
                            v.round_ties_even() as i64
                        };
                        r.saturating_add(z(k) as i64).clamp(lo, hi)
                    })
                    .collect();
                Tensor::from_i64(to, ArrayD::from_shape_vec(dims, ints).map_err(shape_err)?)
            }
        };
        Ok(vec![out])
    }
}

/// `y = (x - zero_point) * scale`, rounded once to `to`. Float8 and fp4 inputs
/// ignore the zero point (it must be 0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DequantizeLinear {
    pub to: DType,
    pub axis: i64,
    pub block_size: i64,
}

impl DequantizeLinear {
    pub fn new(to: DType) -> DequantizeLinear {
        DequantizeLinear {
            to,
            axis: 1,
            block_size: 0,
        }
    }
}

impl OpDef for DequantizeLinear {
    const SPELLINGS: &'static [&'static str] = &["dequantize_linear"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(DequantizeLinear {
            to: attrs.req_dtype("to")?,
            axis: attrs.int("axis", 1)?,
            block_size: attrs.int("block_size", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "dequantize_linear"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.dtype("to", self.to);
        w.int("axis", self.axis);
        w.int("block_size", self.block_size);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 2, 3)?;
        let x = inputs[0];
        if !is_quant_type(x.dtype) && x.dtype != DType::I32 {
            return dtype_err(format!("cannot dequantize {}", x.dtype));
        }
        if !self.to.is_float() {
            return dtype_err(format!(
                "dequantize_linear produces a float type, not {}",
                self.to
            ));
        }
        let zp = inputs.get(2).copied();
        if let Some(z) = zp {
            if z.dtype != x.dtype {
                return dtype_err(format!(
                    "the zero point's dtype {} differs from the input's {}",
                    z.dtype, x.dtype
                ));
            }
        }
        check_params(x, inputs[1], zp, self.axis, self.block_size)?;
        Ok(vec![x.with_dtype(self.to)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        self.infer(&refs)?;
        let (x, s) = (inputs[0], inputs[1]);
        let l = check_params(&tys[0], &tys[1], tys.get(2), self.axis, self.block_size)?;
        let idx = param_indices(l, x.shape(), s.shape());
        let sv = flat(s);
        let zv = inputs
            .get(2)
            .filter(|_| !x.dtype().is_float_like())
            .map(|z| flat(z));
        let y: Vec<f64> = x
            .to_f64()
            .iter()
            .zip(&idx)
            .map(|(&v, &k)| (v - zv.as_ref().map_or(0.0, |z| z[k])) * sv[k])
            .collect();
        let a = ArrayD::from_shape_vec(IxDyn(x.shape()), y)
            .map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(self.to, a)])
    }
}

/// `dynamic_quantize_linear(x) -> (y: u8, scale: f32[], zero_point: u8[])`:
/// u8 quantization of an f32 tensor over the range [min(0, min x), max(0, max
/// x)], computed in f32 step by step as ONNX defines it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DynamicQuantizeLinear;

impl OpDef for DynamicQuantizeLinear {
    const SPELLINGS: &'static [&'static str] = &["dynamic_quantize_linear"];

    fn parse(_spelling: &str, _attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(DynamicQuantizeLinear)
    }
    fn spelling(&self) -> &'static str {
        "dynamic_quantize_linear"
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        if x.dtype != DType::F32 {
            return dtype_err(format!(
                "dynamic_quantize_linear takes f32, found {}",
                x.dtype
            ));
        }
        Ok(vec![
            x.with_dtype(DType::U8),
            TensorType::new(DType::F32, Shape::scalar()),
            TensorType::new(DType::U8, Shape::scalar()),
        ])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let Tensor::F32(x) = inputs[0] else {
            return dtype_err("dynamic_quantize_linear takes f32");
        };
        concrete(&inputs[0].ty(), "dynamic_quantize_linear")?;
        // NaN-propagating, like numpy's max/min.
        let fold = |init: f32, f: fn(f32, f32) -> f32| {
            x.iter().fold(init, |a, &b| {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    f(a, b)
                }
            })
        };
        let max = fold(0.0, f32::max);
        let min = fold(0.0, f32::min);
        let scale = if max == min { 1.0 } else { max - min } / 255.0;
        let zp = (0.0 - min / scale).clamp(0.0, 255.0).round_ties_even();
        let y = x.mapv(|v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8);
        Ok(vec![
            Tensor::U8(y),
            Tensor::F32(ndarray::arr0(scale).into_dyn()),
            Tensor::U8(ndarray::arr0(zp as u8).into_dyn()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;

    fn t(d: DType, dims: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_vec_f64(d, dims, v.to_vec()).unwrap()
    }
    fn run(op: &impl OpDef, inputs: &[&Tensor]) -> Tensor {
        op.eval(inputs).unwrap().remove(0)
    }

    #[test]
    fn quantize_per_tensor_rounds_half_to_even_and_saturates() {
        let x = t(
            DType::F32,
            &[7],
            &[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0, 5.0],
        );
        let s = t(DType::F32, &[], &[2.0]);
        let z = t(DType::U8, &[], &[128.0]);
        let y = run(&QuantizeLinear::new(DType::U8), &[&x, &s, &z]);
        assert_eq!(y.dtype(), DType::U8);
        // 1.5 -> 2 and 2.5 -> 2 (ties to even), then + 128.
        assert_eq!(
            y.values_f64(),
            [128.0, 129.0, 130.0, 255.0, 1.0, 0.0, 130.0]
        );
        let y = run(&QuantizeLinear::new(DType::Narrow(Narrow::I4)), &[&x, &s]);
        assert_eq!(y.values_f64(), [0.0, 1.0, 2.0, 7.0, -8.0, -8.0, 2.0]);
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        let x = t(
            DType::F32,
            &[2, 4],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        );
        let s = t(DType::F32, &[2], &[1.0, 2.0]);
        let mut op = QuantizeLinear::new(DType::I8);
        op.axis = 0;
        assert_eq!(
            run(&op, &[&x, &s]).values_f64(),
            [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 4.0]
        );
        // Blocks of 3 along axis 1: columns {0,1,2} and {3}.
        let s = t(DType::F32, &[2, 2], &[1.0, 4.0, 0.5, 8.0]);
        let z = t(DType::I8, &[2, 2], &[0.0, 1.0, -1.0, 0.0]);
        let mut op = QuantizeLinear::new(DType::I8);
        op.block_size = 3;
        assert_eq!(
            run(&op, &[&x, &s, &z]).values_f64(),
            [1.0, 2.0, 3.0, 2.0, 9.0, 11.0, 13.0, 1.0]
        );
        // Wrong block count, wrong per-axis length, mismatched zero point.
        let bad = t(DType::F32, &[2, 3], &[1.0; 6]);
        assert!(matches!(
            op.infer(&[&x.ty(), &bad.ty()]),
            Err(OpError::Shape(_))
        ));
        let mut per_axis = QuantizeLinear::new(DType::I8);
        per_axis.axis = 1;
        let s3 = t(DType::F32, &[3], &[1.0; 3]);
        assert!(per_axis.infer(&[&x.ty(), &s3.ty()]).is_err());
        let zu = t(DType::U8, &[2, 2], &[0.0; 4]);
        assert!(matches!(
            op.infer(&[&x.ty(), &s.ty(), &zu.ty()]),
            Err(OpError::DType(_))
        ));
    }

    #[test]
    fn quantize_to_float8_uses_cast_rounding() {
        let x = t(DType::F32, &[4], &[0.0, 1.0, 1000.0, -1e9]);
        let s = t(DType::F32, &[], &[2.0]);
        let e4 = DType::Narrow(Narrow::F8E4M3FN);
        let y = run(&QuantizeLinear::new(e4), &[&x, &s]);
        assert_eq!(y.values_f64(), [0.0, 0.5, 448.0, -448.0]);
        let mut op = QuantizeLinear::new(e4);
        op.saturate = false;
        let y = run(&op, &[&x, &s]);
        assert!(y.values_f64()[2].is_nan());
    }

    #[test]
    fn quantize_divides_in_the_promoted_precision() {
        // 1 / 3 = 0.333.. rounds to 0.33325 in f16 (no visible change after
        // rint), so check the type rule directly and a value through each path.
        assert_eq!(promote(DType::F16, DType::F16), DType::F16);
        assert_eq!(promote(DType::F32, DType::F16), DType::F32);
        assert_eq!(promote(DType::I32, DType::F32), DType::F64);
        assert_eq!(
            round_to(DType::F16, 1.0 / 3.0),
            f16::from_f64(1.0 / 3.0).to_f64()
        );
        // 2^24 + 1 over 1: f32 division lands on 2^24 before rint.
        let x = t(DType::I32, &[1], &[16_777_217.0]);
        let s = t(DType::F32, &[], &[1.0]);
        let mut op = QuantizeLinear::new(DType::U16);
        assert_eq!(run(&op, &[&x, &s]).values_f64(), [65535.0]);
        op.precision = Some(DType::F32);
        op.to = DType::I8;
        assert_eq!(run(&op, &[&x, &s]).values_f64(), [127.0]);
        let x = t(DType::F32, &[1], &[3.0]);
        let s = t(DType::F16, &[], &[2.0]);
        assert_eq!(
            run(&QuantizeLinear::new(DType::I16), &[&x, &s]).values_f64(),
            [2.0]
        );
    }

    #[test]
    fn dequantize() {
        let x = t(DType::U8, &[4], &[0.0, 3.0, 128.0, 255.0]);
        let s = t(DType::F32, &[], &[2.0]);
        let z = t(DType::U8, &[], &[128.0]);
        let y = run(&DequantizeLinear::new(DType::F32), &[&x, &s, &z]);
        assert_eq!(y.values_f64(), [-256.0, -250.0, 0.0, 254.0]);
        let i4 = DType::Narrow(Narrow::I4);
        let x = Tensor::from_i64(i4, ndarray::arr1(&[-8i64, 7, 1]).into_dyn());
        let s = t(DType::F16, &[], &[0.5]);
        let y = run(&DequantizeLinear::new(DType::F16), &[&x, &s]);
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(y.values_f64(), [-4.0, 3.5, 0.5]);
        // Per axis, on axis 1 of [1, 2, 2].
        let x = t(DType::I8, &[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let s = t(DType::F32, &[2], &[1.0, 10.0]);
        let z = t(DType::I8, &[2], &[1.0, 0.0]);
        let y = run(&DequantizeLinear::new(DType::F32), &[&x, &s, &z]);
        assert_eq!(y.values_f64(), [0.0, 1.0, 30.0, 40.0]);
        assert!(DequantizeLinear::new(DType::I32)
            .infer(&[&x.ty(), &s.ty(), &z.ty()])
            .is_err());
        let f = t(DType::F32, &[2], &[1.0, 2.0]);
        assert!(DequantizeLinear::new(DType::F32)
            .infer(&[&f.ty(), &s.ty()])
            .is_err());
    }

    #[test]
    fn dynamic_quantize_linear_reference_values() {
        // The ONNX example: [0, 2, -3, -2.5, 1.34, 0.5].
        let x = Tensor::f32(&[6], vec![0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
        let out = DynamicQuantizeLinear.eval(&[&x]).unwrap();
        assert_eq!(out[0].values_f64(), [153.0, 255.0, 0.0, 26.0, 221.0, 179.0]);
        assert_eq!(
            out[1],
            Tensor::F32(ndarray::arr0(5.0f32 / 255.0).into_dyn())
        );
        assert_eq!(out[2].values_f64(), [153.0]);
        let tys = DynamicQuantizeLinear.infer(&[&x.ty()]).unwrap();
        assert_eq!(tys[1].to_string(), "f32[]");
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&QuantizeLinear::new(DType::U8));
        let mut q = QuantizeLinear::new(DType::Narrow(Narrow::F8E5M2));
        q.saturate = false;
        q.block_size = 4;
        q.precision = Some(DType::F32);
        roundtrip(&q);
        let mut d = DequantizeLinear::new(DType::BF16);
        d.axis = -1;
        roundtrip(&d);
        roundtrip(&DynamicQuantizeLinear);
    }
}
