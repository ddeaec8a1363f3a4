//! `einsum`: Einstein summation over labelled axes (ONNX Einsum).
//!
//! The equation is kept as written and parsed against the input ranks. Each
//! output element is the sum, over every label missing from the output, of
//! the product of the inputs, computed in the wide type and rounded once.
//! A label repeated within one operand reads its diagonal. Ellipsis dims are
//! aligned from the right and broadcast where one side has size 1.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::index::{for_each_index, strides};
use crate::ops::shape::out_dims;
use crate::ops::{concrete, require_numeric, same_dtype};
use crate::shape::{Shape, TensorType};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Einsum {
    pub equation: String,
}

/// Labels are small integers: letters 0..52, then one per ellipsis dim.
const ELLIPSIS_BASE: usize = 52;

fn letter(c: char) -> Option<usize> {
    match c {
        'a'..='z' => Some(c as usize - 'a' as usize),
        'A'..='Z' => Some(26 + c as usize - 'A' as usize),
        _ => None,
    }
}

/// One operand term: its letters, with the position of `...` if present.
struct Term {
    before: Vec<usize>,
    after: Option<Vec<usize>>,
}

fn parse_term(s: &str) -> Result<Term, String> {
    let parse_letters = |p: &str| -> Result<Vec<usize>, String> {
        p.chars()
            .map(|c| letter(c).ok_or_else(|| format!("invalid label {c:?}")))
            .collect()
    };
    match s.split_once("...") {
        None => Ok(Term {
            before: parse_letters(s)?,
            after: None,
        }),
        Some((a, b)) if !b.contains('.') => Ok(Term {
            before: parse_letters(a)?,
            after: Some(parse_letters(b)?),
        }),
        Some(_) => Err(format!("more than one ellipsis in {s:?}")),
    }
}

impl Term {
    fn explicit(&self) -> usize {
        self.before.len() + self.after.as_ref().map_or(0, Vec::len)
    }
    /// The labels of each axis, given `ell` ellipsis dims in total (this term
    /// has `mine` of them, right-aligned).
    fn labels(&self, mine: usize, ell: usize) -> Vec<usize> {
        let mut v = self.before.clone();
        if let Some(after) = &self.after {
            v.extend((ell - mine..ell).map(|k| ELLIPSIS_BASE + k));
            v.extend(after);
        }
        v
    }
}

/// The parsed equation: each input's axis labels, the output's labels, and
/// the size of every label.
struct Plan {
    inputs: Vec<Vec<usize>>,
    output: Vec<usize>,
    sizes: Vec<(usize, usize)>,
}

impl Plan {
    fn size(&self, label: usize) -> usize {
        self.sizes
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(1, |&(_, n)| n)
    }
}

impl Einsum {
    fn plan(&self, dims: &[Vec<usize>]) -> OpResult<Plan> {
        let bad = |m: String| attr_err::<Plan>("equation", m);
        let eq: String = self
            .equation
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let terms = lhs
            .split(',')
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>();
        let terms = match terms {
            Ok(t) => t,
            Err(m) => return bad(m),
        };
        if terms.len() != dims.len() {
            return bad(format!(
                "{} operands for {} inputs",
                terms.len(),
                dims.len()
            ));
        }
        let mut ell = 0;
        let mut mine = Vec::with_capacity(terms.len());
        for (t, d) in terms.iter().zip(dims) {
            let e = d.len() as i64 - t.explicit() as i64;
            if e < 0 || (e > 0 && t.after.is_none()) {
                return bad(format!(
                    "an operand has {} labels but rank {}",
                    t.explicit(),
                    d.len()
                ));
            }
            ell = ell.max(e as usize);
            mine.push(e as usize);
        }
        let inputs: Vec<Vec<usize>> = terms
            .iter()
            .zip(&mine)
            .map(|(t, &m)| t.labels(m, ell))
            .collect();
        let mut sizes: Vec<(usize, usize)> = Vec::new();
        for (labels, d) in inputs.iter().zip(dims) {
            for (&l, &n) in labels.iter().zip(d) {
                match sizes.iter_mut().find(|(x, _)| *x == l) {
                    None => sizes.push((l, n)),
                    Some((_, m)) if *m == n => {}
                    Some((_, m)) if l >= ELLIPSIS_BASE && (*m == 1 || n == 1) => *m = (*m).max(n),
                    Some((_, m)) => {
                        return shape_err(format!(
                            "einsum label sizes disagree: {m} vs {n} in {:?}",
                            self.equation
                        ))
                    }
                }
            }
        }
        let output = match rhs {
            Some(r) => match parse_term(r) {
                Ok(t) if t.after.is_some() || ell == 0 => t.labels(ell, ell),
                Ok(_) => return bad("the output drops the ellipsis dims".into()),
                Err(m) => return bad(m),
            },
            None => {
                let mut once: Vec<usize> = (0..ELLIPSIS_BASE)
                    .filter(|l| inputs.iter().flatten().filter(|&x| x == l).count() == 1)
                    .collect();
                // ASCII order: uppercase before lowercase, as numpy does.
                once.sort_by_key(|&l| if l >= 26 { l - 26 } else { l + 26 });
                (ELLIPSIS_BASE..ELLIPSIS_BASE + ell).chain(once).collect()
            }
        };
        for (i, l) in output.iter().enumerate() {
            if output[..i].contains(l) {
                return bad("a label repeats in the output".into());
            }
            if !inputs.iter().flatten().any(|x| x == l) {
                return bad("an output label is in no input".into());
            }
        }
        Ok(Plan {
            inputs,
            output,
            sizes,
        })
    }
}

impl OpDef for Einsum {
    const SPELLINGS: &'static [&'static str] = &["einsum"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Einsum {
            equation: attrs.opt_str("equation")?.ok_or_else(|| AttrError {
                attr: "equation".into(),
                msg: "required but missing".into(),
            })?,
        })
    }
    fn spelling(&self) -> &'static str {
        "einsum"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("equation", &self.equation);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        if inputs.is_empty() {
            return Err(OpError::Arity {
                expected: "at least 1".into(),
                found: 0,
            });
        }
        let dtype = same_dtype(inputs)?;
        require_numeric(inputs[0], "einsum inputs")?;
        let dims = inputs
            .iter()
            .map(|t| concrete(t, "einsum"))
            .collect::<OpResult<Vec<_>>>()?;
        let plan = self.plan(&dims)?;
        let out: Vec<usize> = plan.output.iter().map(|&l| plan.size(l)).collect();
        Ok(vec![TensorType::new(dtype, Shape::from_dims(&out))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::OutFusable
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let out = out_dims(self, inputs)?;
        let dims: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let plan = self.plan(&dims)?;
        // Every label: the output's first, then the summed ones.
        let mut all = plan.output.clone();
        for l in plan.inputs.iter().flatten() {
            if !all.contains(l) {
                all.push(*l);
            }
        }
        let loop_dims: Vec<usize> = all.iter().map(|&l| plan.size(l)).collect();
        let summed: usize = loop_dims[plan.output.len()..].iter().product();
        // Per input and axis: (loop slot, stride), stride 0 where it broadcasts.
        let access: Vec<Vec<(usize, usize)>> = plan
            .inputs
            .iter()
            .zip(&dims)
            .map(|(labels, d)| {
                let st = strides(d);
                labels
                    .iter()
                    .zip(d)
                    .zip(st)
                    .map(|((l, &n), s)| {
                        let slot = all.iter().position(|x| x == l).unwrap_or(0);
                        (slot, if n == 1 { 0 } else { s })
                    })
                    .collect()
            })
            .collect();
        let pos = |k: usize, m: &[usize]| -> usize {
            access[k].iter().map(|&(slot, s)| m[slot] * s).sum()
        };
        let n_out: usize = out.iter().product();
        let dtype = inputs[0].dtype();
        let mut p = 0usize;
        let result = if dtype.is_float() {
            let vals: Vec<Vec<f64>> = inputs
                .iter()
                .map(|t| t.to_f64().iter().copied().collect())
                .collect();
            let mut acc = vec![0.0f64; n_out];
            for_each_index(&loop_dims, |m| {
                let prod: f64 = (0..vals.len()).map(|k| vals[k][pos(k, m)]).product();
                acc[p / summed.max(1)] += prod;
                p += 1;
                Ok(())
            })?;
            Tensor::from_f64(dtype, shaped(&out, acc)?)
        } else {
            let vals: Vec<Vec<i64>> = inputs
                .iter()
                .map(|t| t.to_i64().iter().copied().collect())
                .collect();
            let mut acc = vec![0i64; n_out];
            for_each_index(&loop_dims, |m| {
                let prod = (0..vals.len()).fold(1i64, |a, k| a.wrapping_mul(vals[k][pos(k, m)]));
                let o = p / summed.max(1);
                acc[o] = acc[o].wrapping_add(prod);
                p += 1;
                Ok(())
            })?;
            Tensor::from_i64(dtype, shaped(&out, acc)?)
        };
        Ok(vec![result])
    }
}

fn shaped<T>(dims: &[usize], v: Vec<T>) -> OpResult<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| OpError::Eval(format!("einsum: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::test_util::roundtrip;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn ein(eq: &str, inputs: &[&Tensor]) -> Tensor {
        let op = Einsum {
            equation: eq.into(),
        };
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let want = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), want[0]);
        out
    }
    fn err(eq: &str, shapes: &[&[usize]]) -> OpError {
        let tys: Vec<TensorType> = shapes
            .iter()
            .map(|s| TensorType::concrete(DType::F32, s))
            .collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        Einsum {
            equation: eq.into(),
        }
        .infer(&refs)
        .unwrap_err()
    }

    #[test]
    fn matmul_transpose_sums_and_products() {
        let a = f64t(&[2, 2], &[1., 2., 3., 4.]);
        let b = f64t(&[2, 2], &[5., 6., 7., 8.]);
        let mm = f64t(&[2, 2], &[19., 22., 43., 50.]);
        assert_eq!(ein("ij,jk->ik", &[&a, &b]), mm);
        assert_eq!(ein("ij, jk", &[&a, &b]), mm);
        assert_eq!(ein("ij->ji", &[&a]), f64t(&[2, 2], &[1., 3., 2., 4.]));
        assert_eq!(ein("ij->i", &[&a]), f64t(&[2], &[3., 7.]));
        assert_eq!(ein("ij->", &[&a]), f64t(&[], &[10.]));
        assert_eq!(ein("ii->i", &[&a]), f64t(&[2], &[1., 4.]));
        assert_eq!(ein("ii", &[&a]), f64t(&[], &[5.]));
        let v = f64t(&[3], &[1., 2., 3.]);
        let w = f64t(&[3], &[4., 5., 6.]);
        assert_eq!(ein("i,i", &[&v, &w]), f64t(&[], &[32.]));
        let outer = ein("i,j->ij", &[&v, &f64t(&[2], &[1., -1.])]);
        assert_eq!(outer, f64t(&[3, 2], &[1., -1., 2., -2., 3., -3.]));
        // Implicit output: labels seen once, in alphabetical order.
        assert_eq!(ein("ji", &[&a]), f64t(&[2, 2], &[1., 3., 2., 4.]));
        assert_eq!(ein("->", &[&f64t(&[], &[2.5])]), f64t(&[], &[2.5]));
    }

    #[test]
    fn ellipsis_batches_and_broadcasts() {
        let x = f64t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        assert_eq!(ein("...ii->...i", &[&x]), f64t(&[2, 2], &[1., 4., 5., 8.]));
        let eye = f64t(&[2, 2], &[1., 0., 0., 1.]);
        assert_eq!(ein("bij,jk->bik", &[&x, &eye]), x);
        assert_eq!(ein("...ij,...jk", &[&x, &eye]), x);
        let one = f64t(&[1, 2, 2], &[1., 0., 0., 1.]);
        assert_eq!(ein("...ij,...jk->...ik", &[&x, &one]), x);
        let ints = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![3, 4]).unwrap());
        assert_eq!(
            ein("i,i->", &[&ints, &ints]),
            Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 25))
        );
    }

    #[test]
    fn bad_equations() {
        assert!(matches!(err("ij->i", &[&[2]]), OpError::Attr(_)));
        assert!(matches!(err("ij,jk->ik", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(err("ij->ii", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(err("ij->k", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(err("i1->i", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(err("......", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(err("...i->i", &[&[2, 2]]), OpError::Attr(_)));
        assert!(matches!(
            err("ij,jk", &[&[2, 3], &[2, 3]]),
            OpError::Shape(_)
        ));
        let b = TensorType::concrete(DType::Bool, &[2]);
        assert!(matches!(
            Einsum {
                equation: "i".into()
            }
            .infer(&[&b]),
            Err(OpError::DType(_))
        ));
        roundtrip(&Einsum {
            equation: "bij, bjk -> bik".into(),
        });
    }
}
