//! Training-mode forms of batch normalisation and dropout (issue 7).
//!
//! - `batch_norm_train(x [N, C, ...], scale, bias, running_mean, running_var)
//!   {epsilon = 1e-5, momentum = 0.1}` → `(y, new_running_mean,
//!   new_running_var)`: normalises with the batch statistics of each channel
//!   (mean and biased variance over every axis but 1), and updates the
//!   running statistics PyTorch's way: `new = (1 − momentum)·old +
//!   momentum·batch`, with the unbiased variance (`·M/(M−1)`, M values per
//!   channel). ONNX's momentum is `1 −` this one.
//! - `dropout_train(x, seed int[]) {ratio = 0.5}` → `(y, mask)`: inverted
//!   dropout, `y = x·mask/(1 − ratio)`, `mask` 0 or 1 in x's dtype. Element i
//!   (row-major) is kept when `uniform(seed, i) >= ratio`, where
//!   [`uniform`] is a counter-based hash (SplitMix64 finaliser), so a seed
//!   gives the same mask on every backend and at every thread count. The seed
//!   is a graph input, so a trainer changes it per step.
//! - `random_uniform_like(x, seed int[]) {low = 0, high = 1}`: the same
//!   stream, `low + (high − low)·uniform(seed, i)`, shaped like x.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::grad::{GradCtx, GradResult};
use crate::graph::ValueId;
use crate::op::{dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::elementwise::UnaryKind;
use crate::ops::{require_float, same_dtype};
use crate::shape::{Dim, TensorType};
use crate::tensor::Tensor;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The counter-based uniform draw of element `i` under `seed`, in [0, 1):
/// `key = mix64(seed)`, `z = mix64(key + (i + 1)·0x9e3779b97f4a7c15)` (wrapping
/// u64 arithmetic), and the top 53 bits of `z` over 2^53. Every backend that
/// implements the random ops must compute exactly this.
pub fn uniform(seed: i64, i: u64) -> f64 {
    let key = mix64(seed as u64);
    let z = mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)));
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn check_unit(attr: &str, v: f64, hi_open: bool) -> Result<(), AttrError> {
    let ok = if hi_open {
        (0.0..1.0).contains(&v)
    } else {
        (0.0..=1.0).contains(&v)
    };
    if ok {
        Ok(())
    } else {
        Err(AttrError {
            attr: attr.into(),
            msg: format!(
                "must be in [0, 1{}, found {v}",
                if hi_open { ")" } else { "]" }
            ),
        })
    }
}

/// The seed input: a rank-0 integer.
fn check_seed(what: &str, t: &TensorType) -> OpResult<()> {
    if !t.dtype.is_int() {
        return dtype_err(format!(
            "{what} seed must be an integer type, found {}",
            t.dtype
        ));
    }
    if t.rank() != 0 {
        return shape_err(format!("{what} seed must be a scalar, found {}", t.shape));
    }
    Ok(())
}

fn seed_of(what: &str, t: &Tensor) -> OpResult<i64> {
    if t.len() != 1 {
        return Err(OpError::Eval(format!(
            "{what} seed must hold one value, found {:?}",
            t.shape()
        )));
    }
    Ok(t.to_i64().iter().copied().next().expect("one value"))
}

// ---------------------------------------------------------------------------
// batch_norm_train.

/// Batch normalisation with batch statistics (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchNormTrain {
    pub epsilon: F64,
    pub momentum: F64,
}

impl BatchNormTrain {
    pub fn new(epsilon: f64, momentum: f64) -> BatchNormTrain {
        BatchNormTrain {
            epsilon: F64(epsilon),
            momentum: F64(momentum),
        }
    }
}

const BN_PARAMS: [&str; 4] = ["scale", "bias", "running_mean", "running_var"];

impl OpDef for BatchNormTrain {
    const SPELLINGS: &'static [&'static str] = &["batch_norm_train"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let eps = attrs.float("epsilon", 1e-5)?;
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(AttrError {
                attr: "epsilon".into(),
                msg: format!("must be finite and >= 0, found {eps}"),
            });
        }
        let m = attrs.float("momentum", 0.1)?;
        check_unit("momentum", m, false)?;
        Ok(BatchNormTrain::new(eps, m))
    }
    fn spelling(&self) -> &'static str {
        "batch_norm_train"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("epsilon", self.epsilon.0);
        w.float("momentum", self.momentum.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 5)?;
        check_unit("momentum", self.momentum.0, false)?;
        let x = inputs[0];
        require_float(x, "batch_norm_train input")?;
        same_dtype(inputs)?;
        if x.rank() < 2 {
            return shape_err(format!(
                "batch_norm_train input must be [N,C,...], found {}",
                x.shape
            ));
        }
        let c = &x.shape.dims()[1];
        for (name, t) in BN_PARAMS.iter().zip(&inputs[1..]) {
            if t.rank() != 1 || &t.shape.dims()[0] != c {
                return shape_err(format!(
                    "batch_norm_train {name} must have shape [{c}] to match input {}, found {}",
                    x.shape, t.shape
                ));
            }
        }
        // M values per channel; the unbiased variance needs two.
        let m: Option<usize> = x
            .shape
            .dims()
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 1)
            .map(|(_, d)| match d {
                Dim::Known(n) => Some(*n),
                Dim::Sym(_) => None,
            })
            .product();
        if m.is_some_and(|m| m < 2) {
            return shape_err(format!(
                "batch_norm_train needs more than one value per channel, input is {}",
                x.shape
            ));
        }
        Ok(vec![x.clone(), inputs[3].clone(), inputs[4].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 5)?;
        let x = inputs[0];
        if x.shape().len() < 2 {
            return Err(OpError::Eval(
                "batch_norm_train input must have rank >= 2".into(),
            ));
        }
        let c = x.shape()[1];
        let mut params = Vec::with_capacity(4);
        for (name, t) in BN_PARAMS.iter().zip(&inputs[1..]) {
            if t.shape() != [c] {
                return Err(OpError::Eval(format!(
                    "batch_norm_train {name} has shape {:?}, expected [{c}]",
                    t.shape()
                )));
            }
            params.push(t.to_f64().iter().copied().collect::<Vec<f64>>());
        }
        let (s, b, rm, rv) = (&params[0], &params[1], &params[2], &params[3]);
        let (eps, mom) = (self.epsilon.0, self.momentum.0);
        let m = x.len() / c.max(1);
        if m < 2 {
            return Err(OpError::Eval(format!(
                "batch_norm_train needs more than one value per channel, input is {:?}",
                x.shape()
            )));
        }
        let mut a = x.to_f64();
        let (mut nm, mut nv) = (vec![0.0; c], vec![0.0; c]);
        for (ch, mut sub) in a.axis_iter_mut(Axis(1)).enumerate() {
            let mean = sub.sum() / m as f64;
            let ss: f64 = sub.iter().map(|v| (v - mean) * (v - mean)).sum();
            let var = ss / m as f64;
            let d = (var + eps).sqrt();
            sub.mapv_inplace(|xv| s[ch] * (xv - mean) / d + b[ch]);
            nm[ch] = (1.0 - mom) * rm[ch] + mom * mean;
            nv[ch] = (1.0 - mom) * rv[ch] + mom * ss / (m - 1) as f64;
        }
        let dt = x.dtype();
        let vec1 =
            |v: Vec<f64>| Tensor::from_f64(dt, ArrayD::from_shape_vec(IxDyn(&[c]), v).expect("c"));
        Ok(vec![Tensor::from_f64(dt, a), vec1(nm), vec1(nv)])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["batch_norm_train"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let [x, scale, _bias, _rm, _rv] = [inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]];
        let dims = cx.dims(x)?;
        let r = dims.len();
        let dt = cx.ty(x).dtype;
        let c = dims[1];
        let m = dims.iter().product::<usize>() / c.max(1);
        let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
        let mut pd = vec![c];
        pd.resize(r - 1, 1);
        let mom = self.momentum.0;
        // The batch statistics, recomputed (kept dims: [1, C, 1, ...]).
        let mean = cx.add(
            crate::ops::reduce::Reduce::new(
                crate::ops::reduce::ReduceKind::Mean,
                axes.iter().map(|&a| a as i64).collect(),
                true,
            ),
            &[x],
        )?;
        let xc = cx.sub(x, mean)?;
        let mut gx: Option<ValueId> = None;
        let mut out = vec![None; 5];
        if let Some(dy) = dout[0] {
            let xc2 = cx.mul(xc, xc)?;
            let ss = cx.reduce_sum(xc2, &axes, true)?;
            let var = cx.scale(ss, 1.0 / m as f64)?;
            let eps = cx.scalar(self.epsilon.0, dt)?;
            let ve = cx.add2(var, eps)?;
            let inv = cx.unary(UnaryKind::Rsqrt, ve)?;
            let xh = cx.mul(xc, inv)?;
            // d bias = Σ dy, d scale = Σ dy·x̂.
            let gb = cx.reduce_sum(dy, &axes, false)?;
            let dyxh = cx.mul(dy, xh)?;
            let gs = cx.reduce_sum(dyxh, &axes, false)?;
            // dx = γ·inv·(dy − mean(dy) − x̂·mean(dy·x̂)).
            let sdy = cx.reduce_sum(dy, &axes, true)?;
            let mdy = cx.scale(sdy, 1.0 / m as f64)?;
            let sdx = cx.reduce_sum(dyxh, &axes, true)?;
            let mdx = cx.scale(sdx, 1.0 / m as f64)?;
            let t1 = cx.sub(dy, mdy)?;
            let t2 = cx.mul(xh, mdx)?;
            let t = cx.sub(t1, t2)?;
            let scale_b = cx.reshape(scale, &pd)?;
            let k = cx.mul(scale_b, inv)?;
            gx = Some(cx.mul(t, k)?);
            out[1] = Some(gs);
            out[2] = Some(gb);
        }
        // The running statistics: new = (1 − m)·old + m·batch.
        for (slot, d) in [(3usize, dout[1]), (4, dout[2])] {
            let Some(d) = d else { continue };
            out[slot] = Some(cx.scale(d, 1.0 - mom)?);
            let db = cx.reshape(d, &pd)?;
            // d mean/dx = 1/M; d var_unbiased/dx = 2(x − μ)/(M − 1).
            let g = if slot == 3 {
                let g = cx.scale(db, mom / m as f64)?;
                cx.expand_like(g, x)?
            } else {
                let k = cx.scale(db, 2.0 * mom / (m - 1) as f64)?;
                cx.mul(xc, k)?
            };
            gx = Some(match gx {
                Some(a) => cx.add2(a, g)?,
                None => g,
            });
        }
        out[0] = gx;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// dropout_train, random_uniform_like.

/// Inverted dropout in training mode (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DropoutTrain {
    pub ratio: F64,
}

impl DropoutTrain {
    pub fn new(ratio: f64) -> DropoutTrain {
        DropoutTrain { ratio: F64(ratio) }
    }
}

impl OpDef for DropoutTrain {
    const SPELLINGS: &'static [&'static str] = &["dropout_train"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let r = attrs.float("ratio", 0.5)?;
        check_unit("ratio", r, true)?;
        Ok(DropoutTrain::new(r))
    }
    fn spelling(&self) -> &'static str {
        "dropout_train"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("ratio", self.ratio.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        check_unit("ratio", self.ratio.0, true)?;
        require_float(inputs[0], "dropout_train input")?;
        check_seed("dropout_train", inputs[1])?;
        Ok(vec![inputs[0].clone(), inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 2)?;
        let seed = seed_of("dropout_train", inputs[1])?;
        let p = self.ratio.0;
        let k = 1.0 / (1.0 - p);
        let x = inputs[0].to_f64();
        let mut mask = ArrayD::<f64>::zeros(x.raw_dim());
        let mut y = x;
        for (i, (yv, mv)) in y.iter_mut().zip(mask.iter_mut()).enumerate() {
            if uniform(seed, i as u64) >= p {
                *mv = 1.0;
                *yv *= k;
            } else {
                *yv = 0.0;
            }
        }
        let dt = inputs[0].dtype();
        Ok(vec![Tensor::from_f64(dt, y), Tensor::from_f64(dt, mask)])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["dropout_train"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        // The mask is piecewise constant in x: only y carries a gradient.
        let Some(dy) = dout[0] else {
            return Ok(vec![None, None]);
        };
        let dm = cx.mul(dy, outputs[1])?;
        let gx = cx.scale(dm, 1.0 / (1.0 - self.ratio.0))?;
        let _ = inputs;
        Ok(vec![Some(gx), None])
    }
}

/// Uniform random values shaped like the input (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RandomUniformLike {
    pub low: F64,
    pub high: F64,
}

impl OpDef for RandomUniformLike {
    const SPELLINGS: &'static [&'static str] = &["random_uniform_like"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let low = attrs.float("low", 0.0)?;
        let high = attrs.float("high", 1.0)?;
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(AttrError {
                attr: "high".into(),
                msg: format!("needs finite low <= high, found low {low}, high {high}"),
            });
        }
        Ok(RandomUniformLike {
            low: F64(low),
            high: F64(high),
        })
    }
    fn spelling(&self) -> &'static str {
        "random_uniform_like"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("low", self.low.0);
        w.float("high", self.high.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        require_float(inputs[0], "random_uniform_like input")?;
        check_seed("random_uniform_like", inputs[1])?;
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 2)?;
        let seed = seed_of("random_uniform_like", inputs[1])?;
        let (lo, hi) = (self.low.0, self.high.0);
        let mut a = ArrayD::<f64>::zeros(IxDyn(inputs[0].shape()));
        for (i, v) in a.iter_mut().enumerate() {
            *v = lo + (hi - lo) * uniform(seed, i as u64);
        }
        Ok(vec![Tensor::from_f64(inputs[0].dtype(), a)])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["random_uniform_like"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        // The values do not depend on x (only its shape): a zero gradient.
        let _ = (cx, inputs, outputs, dout);
        Ok(vec![None, None])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::test_util::roundtrip;
    use crate::tensor::allclose;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn seed(s: i64) -> Tensor {
        Tensor::I64(ArrayD::from_elem(IxDyn(&[]), s))
    }
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Vec<Tensor> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap();
        for (o, t) in out.iter().zip(&ty) {
            assert_eq!(&o.ty(), t, "eval agrees with infer");
        }
        out
    }

    #[test]
    fn batch_norm_train_by_hand() {
        // One channel, values [1, 2, 3, 6] over N = 4: mean 3, biased var
        // (4 + 1 + 0 + 9)/4 = 3.5, unbiased 14/3.
        let x = f64t(&[4, 1], &[1.0, 2.0, 3.0, 6.0]);
        let one = f64t(&[1], &[1.0]);
        let zero = f64t(&[1], &[0.0]);
        let op = BatchNormTrain::new(0.0, 0.1);
        let out = run(&op, &[&x, &one, &zero, &zero, &one]);
        let d = 3.5f64.sqrt();
        allclose(
            &out[0],
            &f64t(&[4, 1], &[-2.0 / d, -1.0 / d, 0.0, 3.0 / d]),
            0.0,
            1e-12,
        )
        .unwrap();
        allclose(&out[1], &f64t(&[1], &[0.3]), 0.0, 1e-12).unwrap();
        allclose(&out[2], &f64t(&[1], &[0.9 + 0.1 * 14.0 / 3.0]), 0.0, 1e-12).unwrap();
        // Two channels over [2, 2, 2] with scale and bias.
        let x = f64t(&[2, 2, 2], &[1., 3., 0., 0., 5., 7., 2., 6.]);
        let s = f64t(&[2], &[2.0, 1.0]);
        let b = f64t(&[2], &[0.5, -1.0]);
        let rm = f64t(&[2], &[1.0, 1.0]);
        let rv = f64t(&[2], &[2.0, 2.0]);
        let out = run(&BatchNormTrain::new(0.0, 0.5), &[&x, &s, &b, &rm, &rv]);
        // Channel 0: [1, 3, 5, 7], mean 4, var 5; channel 1: [0, 0, 2, 6],
        // mean 2, var (4 + 4 + 0 + 16)/4 = 6.
        let (d0, d1) = (5f64.sqrt(), 6f64.sqrt());
        let y = [
            2.0 * -3.0 / d0 + 0.5,
            -2.0 / d0 + 0.5,
            -2.0 / d1 - 1.0,
            -2.0 / d1 - 1.0,
            2.0 * 1.0 / d0 + 0.5,
            2.0 * 3.0 / d0 + 0.5,
            0.0 - 1.0,
            4.0 / d1 - 1.0,
        ];
        allclose(&out[0], &f64t(&[2, 2, 2], &y), 0.0, 1e-12).unwrap();
        allclose(&out[1], &f64t(&[2], &[2.5, 1.5]), 0.0, 1e-12).unwrap();
        allclose(
            &out[2],
            &f64t(&[2], &[1.0 + 0.5 * 20.0 / 3.0, 1.0 + 0.5 * 8.0]),
            0.0,
            1e-12,
        )
        .unwrap();
        // One value per channel is refused.
        let t = TensorType::concrete(DType::F32, &[1, 3]);
        let p = TensorType::concrete(DType::F32, &[3]);
        assert!(op.infer(&[&t, &p, &p, &p, &p]).is_err());
        let t = TensorType::concrete(DType::F32, &[2, 3]);
        let q = TensorType::concrete(DType::F32, &[2]);
        assert!(op.infer(&[&t, &p, &q, &p, &p]).is_err());
    }

    #[test]
    fn dropout_train_is_seeded_inverted_dropout() {
        let n = 4000;
        let x = f64t(&[40, 100], &vec![2.0; n]);
        let op = DropoutTrain::new(0.25);
        let a = run(&op, &[&x, &seed(7)]);
        let b = run(&op, &[&x, &seed(7)]);
        let c = run(&op, &[&x, &seed(8)]);
        assert_eq!(a, b, "same seed, same mask");
        assert_ne!(a[1], c[1], "another seed, another mask");
        let mask: Vec<f64> = a[1].to_f64().iter().copied().collect();
        let kept = mask.iter().filter(|&&m| m == 1.0).count();
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));
        // About 3/4 kept (binomial sd ≈ 27).
        assert!((kept as f64 - 3000.0).abs() < 150.0, "{kept}");
        for (y, m) in a[0].to_f64().iter().zip(&mask) {
            assert_eq!(*y, m * 2.0 / 0.75);
        }
        // Ratio 0 keeps everything.
        let z = run(&DropoutTrain::new(0.0), &[&x, &seed(1)]);
        assert_eq!(z[0], x);
        // The stream is fixed: these values are part of the op's definition.
        assert_eq!(uniform(0, 0), uniform(0, 0));
        let u: Vec<f64> = (0..4).map(|i| uniform(42, i)).collect();
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
        let mean = (0..10000).map(|i| uniform(3, i)).sum::<f64>() / 10000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        // Seeds must be integer scalars.
        let xt = TensorType::concrete(DType::F32, &[3]);
        let sf = TensorType::concrete(DType::F32, &[]);
        let s1 = TensorType::concrete(DType::I64, &[1]);
        assert!(matches!(op.infer(&[&xt, &sf]), Err(OpError::DType(_))));
        assert!(matches!(op.infer(&[&xt, &s1]), Err(OpError::Shape(_))));
    }

    #[test]
    fn random_uniform_like_range() {
        let x = f64t(&[10, 10], &[0.0; 100]);
        let op = RandomUniformLike {
            low: F64(-2.0),
            high: F64(3.0),
        };
        let a = run(&op, &[&x, &seed(5)]);
        assert!(a[0].to_f64().iter().all(|&v| (-2.0..3.0).contains(&v)));
        // The same stream as dropout_train's.
        let d = run(&DropoutTrain::new(0.5), &[&x, &seed(5)]);
        for (u, m) in a[0].to_f64().iter().zip(d[1].to_f64().iter()) {
            assert_eq!(*m == 1.0, (u + 2.0) / 5.0 >= 0.5);
        }
    }

    #[test]
    fn attrs() {
        roundtrip(&BatchNormTrain::new(1e-3, 0.2));
        roundtrip(&DropoutTrain::new(0.3));
        roundtrip(&RandomUniformLike {
            low: F64(0.0),
            high: F64(1.0),
        });
        let mut r = AttrReader::new(vec![("ratio".into(), crate::attr::AttrValue::Float(1.0))]);
        assert!(DropoutTrain::parse("dropout_train", &mut r).is_err());
        let mut r = AttrReader::new(vec![(
            "momentum".into(),
            crate::attr::AttrValue::Float(1.5),
        )]);
        assert!(BatchNormTrain::parse("batch_norm_train", &mut r).is_err());
        let mut r = AttrReader::default();
        assert_eq!(
            BatchNormTrain::parse("batch_norm_train", &mut r).unwrap(),
            BatchNormTrain::new(1e-5, 0.1)
        );
    }
}
