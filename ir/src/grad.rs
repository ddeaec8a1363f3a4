//! Gradient rules' building context.
//!
//! Each op's reverse-mode rule is [`crate::op::OpDef::grad`]: given the
//! node's inputs and outputs and the gradients flowing into its outputs, it
//! builds the gradients of its inputs as new nodes of the same graph, through
//! a [`GradCtx`]. Every node goes through [`Graph::add_node`], so its type is
//! inferred (and checked) like any other. The `autodiff` pass in kiln-compiler
//! walks the graph backwards and calls the rules.
//!
//! Rules build with ordinary ops where they can (so the backward graph fuses
//! and runs on every backend like the forward one) and with the dedicated
//! gradient ops of [`crate::ops::grad_ops`] where a rule has no reasonable
//! expression in them (pooling windows, loss targets).

use ndarray::{ArrayD, IxDyn};

use crate::dtype::DType;
use crate::graph::{Graph, NodeError, ValueId};
use crate::op::Op;
use crate::ops::binary::{Binary, BinaryKind};
use crate::ops::elementwise::{Unary, UnaryKind};
use crate::ops::reduce::{Reduce, ReduceKind};
use crate::ops::shape::{Constant, Expand, Reshape, Transpose};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Why a gradient could not be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GradError {
    /// The op declares no gradient rule.
    #[error("op `{0}` has no gradient rule")]
    NoRule(&'static str),
    /// The op has a rule, but not for this case (an attribute, a mode, a
    /// symbolic shape).
    #[error("{op}: no gradient for this case: {msg}")]
    Unsupported { op: &'static str, msg: String },
    /// A node the rule built was rejected (a bug in the rule).
    #[error("building a gradient node: {0}")]
    Node(#[from] NodeError),
}

pub type GradResult<T> = Result<T, GradError>;

/// Shorthand for [`GradError::Unsupported`].
pub fn unsupported<T>(op: &'static str, msg: impl Into<String>) -> GradResult<T> {
    Err(GradError::Unsupported {
        op,
        msg: msg.into(),
    })
}

/// Where gradient rules build their nodes: the graph, plus helpers for the
/// patterns rules share.
pub struct GradCtx<'g> {
    pub graph: &'g mut Graph,
    /// The spelling of the op whose rule is running, for error messages.
    pub op: &'static str,
    /// The values whose gradient is wanted (those that depend on a `wrt`
    /// value); `None` means all. Rules may skip work for the others, and
    /// must refuse rather than return `None` for a wanted float input they
    /// cannot differentiate.
    pub wanted: Option<std::collections::HashSet<ValueId>>,
}

impl<'g> GradCtx<'g> {
    pub fn new(graph: &'g mut Graph) -> GradCtx<'g> {
        GradCtx {
            graph,
            op: "",
            wanted: None,
        }
    }

    /// Whether the gradient of `v` is wanted.
    pub fn wants(&self, v: ValueId) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(&v))
    }

    pub fn ty(&self, v: ValueId) -> TensorType {
        self.graph.value(v).ty.clone()
    }

    /// The static dims of `v`, or an error saying a rule needs them.
    pub fn dims(&self, v: ValueId) -> GradResult<Vec<usize>> {
        let ty = self.ty(v);
        ty.shape.concrete().map_or_else(
            || {
                unsupported(
                    self.op,
                    format!("needs static shapes, found {} (bind the symbols)", ty.shape),
                )
            },
            Ok,
        )
    }

    /// Add a single-output node.
    pub fn add(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> GradResult<ValueId> {
        Ok(self.graph.add(op, inputs)?)
    }

    /// Add a node and return all its outputs.
    pub fn add_multi(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> GradResult<Vec<ValueId>> {
        let n = self.graph.add_node(op, inputs)?;
        Ok(self.graph.node(n).outputs.to_vec())
    }

    /// A constant tensor.
    pub fn constant(&mut self, t: Tensor) -> GradResult<ValueId> {
        self.add(Constant { value: t }, &[])
    }

    /// A rank-0 constant of `dtype`.
    pub fn scalar(&mut self, x: f64, dtype: DType) -> GradResult<ValueId> {
        self.constant(Tensor::from_f64(dtype, ArrayD::from_elem(IxDyn(&[]), x)))
    }

    /// A tensor of `ty` filled with `x` (needs a static shape): a scalar
    /// constant expanded, so no large constant is stored.
    pub fn full(&mut self, ty: &TensorType, x: f64) -> GradResult<ValueId> {
        let dims = ty.shape.concrete().map_or_else(
            || {
                unsupported(
                    self.op,
                    format!("needs static shapes, found {} (bind the symbols)", ty.shape),
                )
            },
            Ok,
        )?;
        let s = self.scalar(x, ty.dtype)?;
        if dims.is_empty() {
            return Ok(s);
        }
        self.add(
            Expand {
                shape: dims.iter().map(|&d| d as i64).collect(),
            },
            &[s],
        )
    }

    pub fn zeros(&mut self, ty: &TensorType) -> GradResult<ValueId> {
        self.full(ty, 0.0)
    }

    /// The output gradient if there is one, else zeros shaped like `like`.
    pub fn or_zeros(&mut self, g: Option<ValueId>, like: ValueId) -> GradResult<ValueId> {
        match g {
            Some(g) => Ok(g),
            None => {
                let ty = self.ty(like);
                self.zeros(&ty)
            }
        }
    }

    pub fn unary(&mut self, kind: UnaryKind, x: ValueId) -> GradResult<ValueId> {
        self.add(Unary::new(kind), &[x])
    }
    pub fn binary(&mut self, kind: BinaryKind, a: ValueId, b: ValueId) -> GradResult<ValueId> {
        self.add(Binary::new(kind), &[a, b])
    }
    pub fn add2(&mut self, a: ValueId, b: ValueId) -> GradResult<ValueId> {
        self.binary(BinaryKind::Add, a, b)
    }
    pub fn sub(&mut self, a: ValueId, b: ValueId) -> GradResult<ValueId> {
        self.binary(BinaryKind::Sub, a, b)
    }
    pub fn mul(&mut self, a: ValueId, b: ValueId) -> GradResult<ValueId> {
        self.binary(BinaryKind::Mul, a, b)
    }
    pub fn div(&mut self, a: ValueId, b: ValueId) -> GradResult<ValueId> {
        self.binary(BinaryKind::Div, a, b)
    }
    pub fn neg(&mut self, a: ValueId) -> GradResult<ValueId> {
        self.unary(UnaryKind::Neg, a)
    }
    /// `a * c` for a constant `c` of `a`'s dtype.
    pub fn scale(&mut self, a: ValueId, c: f64) -> GradResult<ValueId> {
        let k = self.scalar(c, self.ty(a).dtype)?;
        self.mul(a, k)
    }
    /// `a` compared with `b` (`gt`, `ge`, `eq`...) as 0/1 in `dtype`.
    pub fn mask(
        &mut self,
        kind: BinaryKind,
        a: ValueId,
        b: ValueId,
        dtype: DType,
    ) -> GradResult<ValueId> {
        let m = self.binary(kind, a, b)?;
        self.add(crate::ops::shape::Cast::new(dtype), &[m])
    }

    pub fn reduce_sum(
        &mut self,
        x: ValueId,
        axes: &[usize],
        keepdims: bool,
    ) -> GradResult<ValueId> {
        if axes.is_empty() {
            return Ok(x);
        }
        self.add(
            Reduce::new(
                ReduceKind::Sum,
                axes.iter().map(|&a| a as i64).collect(),
                keepdims,
            ),
            &[x],
        )
    }

    pub fn reshape(&mut self, x: ValueId, dims: &[usize]) -> GradResult<ValueId> {
        if self.ty(x).shape.concrete().as_deref() == Some(dims) {
            return Ok(x);
        }
        self.add(Reshape::new(dims.iter().map(|&d| d as i64).collect()), &[x])
    }

    /// Reshape `x` to the shape of `like` (static shapes only).
    /// The gradient of a reshape-like op (reshape, flatten, squeeze,
    /// unsqueeze) of `x`: the output gradient reshaped back to `x`'s shape.
    pub fn view_grad(
        &mut self,
        x: ValueId,
        dy: Option<ValueId>,
    ) -> GradResult<Vec<Option<ValueId>>> {
        let Some(dy) = dy else {
            return Ok(vec![None]);
        };
        if !self.ty(x).dtype.is_float() {
            return Ok(vec![None]);
        }
        Ok(vec![Some(self.reshape_like(dy, x)?)])
    }

    pub fn reshape_like(&mut self, x: ValueId, like: ValueId) -> GradResult<ValueId> {
        if self.ty(x).shape == self.ty(like).shape {
            return Ok(x);
        }
        let dims = self.dims(like)?;
        self.reshape(x, &dims)
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> GradResult<ValueId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.add(
            Transpose::new(perm.iter().map(|&p| p as i64).collect()),
            &[x],
        )
    }

    /// Sum a gradient of the broadcast shape back to `target` (the operand's
    /// shape before numpy broadcasting): leading axes the operand lacks are
    /// summed away, and axes where it had 1 are summed with keepdims.
    pub fn sum_to(&mut self, g: ValueId, target: &Shape) -> GradResult<ValueId> {
        let gs = self.ty(g).shape;
        if &gs == target {
            return Ok(g);
        }
        let (r, t) = (gs.rank(), target.rank());
        if t > r {
            return unsupported(
                self.op,
                format!("gradient shape {gs} has lower rank than its operand {target}"),
            );
        }
        let lead: Vec<usize> = (0..r - t).collect();
        let keep: Vec<usize> = (0..t)
            .filter(|&i| target.0[i] == Dim::Known(1) && gs.0[i + r - t] != Dim::Known(1))
            .collect();
        let g = self.reduce_sum(
            g,
            &keep.iter().map(|&i| i + r - t).collect::<Vec<_>>(),
            true,
        )?;
        let g = self.reduce_sum(g, &lead, false)?;
        if &self.ty(g).shape != target {
            return unsupported(
                self.op,
                format!("cannot sum a gradient of shape {gs} back to {target}"),
            );
        }
        Ok(g)
    }

    /// `g` reduced over `axes` without keepdims, given back its size-1 axes.
    pub fn keep_dims(&mut self, g: ValueId, axes: &[usize], keepdims: bool) -> GradResult<ValueId> {
        if keepdims || axes.is_empty() {
            return Ok(g);
        }
        let mut a: Vec<i64> = axes.iter().map(|&x| x as i64).collect();
        a.sort_unstable();
        self.add(crate::ops::shape::Unsqueeze { axes: a }, &[g])
    }

    /// Broadcast `g` to the shape of `like` (static shapes only).
    pub fn expand_like(&mut self, g: ValueId, like: ValueId) -> GradResult<ValueId> {
        if self.ty(g).shape == self.ty(like).shape {
            return Ok(g);
        }
        let dims = self.dims(like)?;
        self.add(
            Expand {
                shape: dims.iter().map(|&d| d as i64).collect(),
            },
            &[g],
        )
    }
}
