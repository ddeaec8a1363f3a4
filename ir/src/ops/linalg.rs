//! Linear algebra: `matmul` with numpy semantics.

use crate::grad::{GradCtx, GradError, GradResult};
use crate::graph::ValueId;
use ndarray::{Array2, Array3, ArrayD, ArrayView2, Axis, IxDyn, LinalgScalar};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::{broadcast_shapes, same_dtype};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// `matmul(a, b)`: numpy `matmul`. Leading (batch) dimensions broadcast; a 1-D
/// `a` is treated as a row `[1, K]` and a 1-D `b` as a column `[K, 1]`, and the
/// added dimension is removed from the result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatMul;

/// The operand shapes split into batch dims (left-padded with 1s to a common
/// rank) and the matrix dims, with 1-D promotion applied.
struct MatDims<D> {
    a_batch: Vec<D>,
    b_batch: Vec<D>,
    m: D,
    k_a: D,
    k_b: D,
    n: D,
}

fn split<D: Clone>(a: &[D], b: &[D], one: D) -> MatDims<D> {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    if a.len() == 1 {
        a.insert(0, one.clone());
    }
    if b.len() == 1 {
        b.push(one.clone());
    }
    let (ra, rb) = (a.len() - 2, b.len() - 2);
    let r = ra.max(rb);
    let pad = |v: &[D], n: usize| {
        let mut out = vec![one.clone(); r - n];
        out.extend_from_slice(&v[..n]);
        out
    };
    MatDims {
        a_batch: pad(&a, ra),
        b_batch: pad(&b, rb),
        m: a[ra].clone(),
        k_a: a[ra + 1].clone(),
        k_b: b[rb].clone(),
        n: b[rb + 1].clone(),
    }
}

impl OpDef for MatMul {
    const SPELLINGS: &'static [&'static str] = &["matmul"];

    fn parse(_: &str, _: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(MatMul)
    }
    fn spelling(&self) -> &'static str {
        "matmul"
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let dtype = same_dtype(inputs)?;
        if !dtype.is_numeric() {
            return dtype_err(format!("matmul takes a numeric type, found {dtype}"));
        }
        let (a, b) = (inputs[0], inputs[1]);
        if a.rank() == 0 || b.rank() == 0 {
            return shape_err(format!(
                "matmul operands must have rank >= 1, found {a} and {b}"
            ));
        }
        let s = split(a.shape.dims(), b.shape.dims(), Dim::Known(1));
        if s.k_a != s.k_b {
            let why = if matches!((&s.k_a, &s.k_b), (Dim::Known(_), Dim::Known(_))) {
                "differ"
            } else {
                "cannot be proven equal (bind the symbol with --dim)"
            };
            return shape_err(format!(
                "matmul inner dimensions {why}: {a} has K = {}, {b} has K = {}",
                s.k_a, s.k_b
            ));
        }
        let batch = broadcast_shapes(&Shape::from(s.a_batch), &Shape::from(s.b_batch))
            .map_err(|e| OpError::Shape(format!("matmul batch dimensions of {a} and {b}: {e}")))?;
        let mut out: Vec<Dim> = batch.dims().to_vec();
        if a.rank() > 1 {
            out.push(s.m);
        }
        if b.rank() > 1 {
            out.push(s.n);
        }
        Ok(vec![TensorType::new(dtype, Shape::from(out))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::OutFusable
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["matmul"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None, None]);
        };
        let (a, b) = (inputs[0], inputs[1]);
        let (ta, tb) = (cx.ty(a), cx.ty(b));
        if !ta.dtype.is_float() {
            return Err(GradError::NoRule("matmul"));
        }
        // Promote 1-D operands to matrices, as the forward op does.
        let unsq = |cx: &mut GradCtx, v: ValueId, axes: Vec<i64>| {
            cx.add(crate::ops::shape::Unsqueeze { axes }, &[v])
        };
        let a2 = if ta.rank() == 1 {
            unsq(cx, a, vec![0])?
        } else {
            a
        };
        let b2 = if tb.rank() == 1 {
            unsq(cx, b, vec![1])?
        } else {
            b
        };
        let ry = cx.ty(dy).rank() as i64;
        let dy2 = match (ta.rank() == 1, tb.rank() == 1) {
            (true, true) => unsq(cx, dy, vec![0, 1])?,
            (true, false) => unsq(cx, dy, vec![ry - 1])?,
            (false, true) => unsq(cx, dy, vec![ry])?,
            (false, false) => dy,
        };
        let swap = |cx: &mut GradCtx, v: ValueId| {
            let r = cx.ty(v).rank();
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 2, r - 1);
            cx.transpose(v, &perm)
        };
        let mut out = vec![None, None];
        // Batch dims that broadcast are summed back.
        if cx.wants(a) {
            let bt = swap(cx, b2)?;
            let ga = cx.add(MatMul, &[dy2, bt])?;
            let ga = cx.sum_to(ga, &cx.ty(a2).shape)?;
            out[0] = Some(cx.reshape_like(ga, a)?);
        }
        if cx.wants(b) {
            let at = swap(cx, a2)?;
            let gb = cx.add(MatMul, &[at, dy2])?;
            let gb = cx.sum_to(gb, &cx.ty(b2).shape)?;
            out[1] = Some(cx.reshape_like(gb, b)?);
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let out_ty = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let out_dims = out_ty
            .shape
            .concrete()
            .ok_or_else(|| eval_err("symbolic output"))?;
        let (x, y) = (inputs[0], inputs[1]);
        let s = split(x.shape(), y.shape(), 1usize);
        let out = if out_ty.dtype.is_float() {
            let r = batched(&x.to_f64(), &y.to_f64(), &s, &out_dims, |a, b| a.dot(&b))?;
            Tensor::from_f64(out_ty.dtype, r)
        } else {
            // Integers accumulate in i64 and wrap, as the integer binary ops do,
            // so large values neither lose precision nor trap.
            let r = batched(&x.to_i64(), &y.to_i64(), &s, &out_dims, matmul_i64)?;
            Tensor::from_i64(out_ty.dtype, r)
        };
        Ok(vec![out])
    }
}

fn eval_err(msg: &str) -> OpError {
    OpError::Eval(format!("matmul: {msg}"))
}

fn matmul_i64(a: ArrayView2<i64>, b: ArrayView2<i64>) -> Array2<i64> {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let mut out = Array2::<i64>::zeros((m, n));
    for i in 0..m {
        for p in 0..k {
            let av = a[[i, p]];
            for j in 0..n {
                out[[i, j]] = out[[i, j]].wrapping_add(av.wrapping_mul(b[[p, j]]));
            }
        }
    }
    out
}

/// Runs `mm` on every pair of matrices, mapping each output batch index back to
/// the (possibly broadcast) operand batch index without materialising copies.
fn batched<T: LinalgScalar>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    s: &MatDims<usize>,
    out_dims: &[usize],
    mm: impl Fn(ArrayView2<T>, ArrayView2<T>) -> Array2<T>,
) -> OpResult<ArrayD<T>> {
    let batch: Vec<usize> = s
        .a_batch
        .iter()
        .zip(&s.b_batch)
        .map(|(&p, &q)| p.max(q))
        .collect();
    let nb: usize = batch.iter().product();
    let (m, k, n) = (s.m, s.k_a, s.n);
    let a3: Array3<T> = to3(a, s.a_batch.iter().product(), m, k)?;
    let b3: Array3<T> = to3(b, s.b_batch.iter().product(), k, n)?;
    let mut out = Array3::<T>::zeros((nb, m, n));
    let mut idx = vec![0usize; batch.len()];
    for bi in 0..nb {
        let ai = flat_index(&idx, &s.a_batch);
        let bj = flat_index(&idx, &s.b_batch);
        let r = mm(a3.index_axis(Axis(0), ai), b3.index_axis(Axis(0), bj));
        out.index_axis_mut(Axis(0), bi).assign(&r);
        // Odometer increment over the output batch dims, last dim fastest.
        for d in (0..batch.len()).rev() {
            idx[d] += 1;
            if idx[d] < batch[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out.into_shape_with_order(IxDyn(out_dims))
        .map_err(|e| eval_err(&e.to_string()))
}

fn to3<T: Clone>(a: &ArrayD<T>, b: usize, r: usize, c: usize) -> OpResult<Array3<T>> {
    a.to_shape((b, r, c))
        .map(|v| v.into_owned())
        .map_err(|e| eval_err(&e.to_string()))
}

/// Row-major flat index into `dims` of a broadcast multi-index (size-1 dims pin to 0).
fn flat_index(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter()
        .zip(dims)
        .fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::op::Op;

    fn t(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, data.to_vec()).unwrap()
    }
    fn ty(shape: &[usize]) -> TensorType {
        TensorType::concrete(DType::F32, shape)
    }
    fn run(a: &Tensor, b: &Tensor) -> Tensor {
        MatMul.eval(&[a, b]).unwrap().remove(0)
    }
    /// Deterministic small values, exact in f32 products and sums.
    fn seq(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
            .collect()
    }

    #[test]
    fn row_times_matrix() {
        let c = run(&t(&[1, 2], &[1., 2.]), &t(&[2, 2], &[3., 4., 5., 6.]));
        assert_eq!(c.shape(), &[1, 2]);
        assert_eq!(c.values_f64(), vec![13., 16.]);
    }

    #[test]
    fn batched_broadcast_matches_naive_loop() {
        // a [2,1,3,4] @ b [3,4,5] -> [2,3,3,5]
        let (av, bv) = (seq(24, 1), seq(60, 2));
        let c = run(&t(&[2, 1, 3, 4], &av), &t(&[3, 4, 5], &bv));
        assert_eq!(c.shape(), &[2, 3, 3, 5]);
        let got = c.values_f64();
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for m in 0..3 {
                    for n in 0..5 {
                        let mut acc = 0.0;
                        for k in 0..4 {
                            acc += av[i * 12 + m * 4 + k] * bv[j * 20 + k * 5 + n];
                        }
                        want.push(acc);
                    }
                }
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn one_dimensional_operands() {
        let v = t(&[2], &[1., 2.]);
        let m = t(&[2, 2], &[3., 4., 5., 6.]);
        let vm = run(&v, &m);
        assert_eq!((vm.shape(), vm.values_f64()), (&[2][..], vec![13., 16.]));
        let mv = run(&m, &v);
        assert_eq!((mv.shape(), mv.values_f64()), (&[2][..], vec![11., 17.]));
        let dot = run(&v, &v);
        assert_eq!((dot.shape(), dot.values_f64()), (&[][..], vec![5.]));
        // A 1-D operand against a batched one broadcasts over the batch.
        let bm = run(&v, &t(&[2, 2, 2], &[3., 4., 5., 6., 1., 0., 0., 1.]));
        assert_eq!(
            (bm.shape(), bm.values_f64()),
            (&[2, 2][..], vec![13., 16., 1., 2.])
        );
    }

    #[test]
    fn integer_matmul_wraps_like_the_dtype() {
        let a = Tensor::from_vec_f64(DType::I32, &[2, 2], vec![1., 2., 3., 4.]).unwrap();
        let b = Tensor::from_vec_f64(DType::I32, &[2, 1], vec![5., -6.]).unwrap();
        let c = run(&a, &b);
        assert_eq!(c.dtype(), DType::I32);
        assert_eq!(c.values_f64(), vec![-7., -9.]);
        let big = Tensor::from_vec_f64(DType::I8, &[1, 2], vec![100., 100.]).unwrap();
        let one = Tensor::from_vec_f64(DType::I8, &[2, 1], vec![1., 1.]).unwrap();
        assert_eq!(run(&big, &one).values_f64(), vec![-56.]); // 200 wraps in i8
    }

    #[test]
    fn f16_rounds_to_output_dtype() {
        let a = Tensor::from_vec_f64(DType::F16, &[1, 2], vec![1., 2.]).unwrap();
        let b = Tensor::from_vec_f64(DType::F16, &[2, 1], vec![3., 4.]).unwrap();
        let c = run(&a, &b);
        assert_eq!((c.dtype(), c.values_f64()), (DType::F16, vec![11.]));
    }

    #[test]
    fn symbolic_batch_and_rows_propagate() {
        let a = TensorType::new(
            DType::F32,
            Shape::from(vec![Dim::sym("N"), Dim::sym("S"), 4.into()]),
        );
        let out = MatMul.infer(&[&a, &ty(&[4, 5])]).unwrap();
        assert_eq!(out[0].shape.to_string(), "[N,S,5]");
        let k = TensorType::new(DType::F32, Shape::from(vec![3.into(), Dim::sym("K")]));
        let kk = TensorType::new(DType::F32, Shape::from(vec![Dim::sym("K"), 2.into()]));
        assert_eq!(
            MatMul.infer(&[&k, &kk]).unwrap()[0].shape.to_string(),
            "[3,2]"
        );
        match MatMul.infer(&[&k, &ty(&[4, 2])]) {
            Err(OpError::Shape(m)) => assert!(m.contains("--dim"), "{m}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(
            MatMul.infer(&[&ty(&[2, 3]), &ty(&[4, 5])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            MatMul.infer(&[&ty(&[2, 2, 3]), &ty(&[3, 3, 5])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            MatMul.infer(&[&ty(&[]), &ty(&[2])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            MatMul.infer(&[&ty(&[2, 2])]),
            Err(OpError::Arity { found: 1, .. })
        ));
        let i = TensorType::concrete(DType::I32, &[2, 2]);
        assert!(matches!(
            MatMul.infer(&[&ty(&[2, 2]), &i]),
            Err(OpError::DType(_))
        ));
        let b = TensorType::concrete(DType::Bool, &[2, 2]);
        assert!(matches!(MatMul.infer(&[&b, &b]), Err(OpError::DType(_))));
        // eval re-checks rather than panicking on bad inputs.
        let x = t(&[2, 3], &[0.; 6]);
        assert!(matches!(MatMul.eval(&[&x, &x]), Err(OpError::Shape(_))));
        assert!(matches!(MatMul.eval(&[&x]), Err(OpError::Arity { .. })));
    }

    #[test]
    fn op_table_entry() {
        let op = Op::parse("matmul", &mut AttrReader::new(vec![])).unwrap();
        assert_eq!(op.spelling(), "matmul");
        assert!(op.attrs().is_empty());
        assert_eq!(op.fusion_kind(), FusionKind::OutFusable);
    }
}
