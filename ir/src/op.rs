//! The op table.
//!
//! Every op is one Rust type implementing [`OpDef`]: its spelling, its typed
//! attributes (read and written in one place), its type rule, its fusion kind
//! and its reference semantics. [`declare_ops!`] gathers those types into the
//! [`Op`] enum, so adding an op is one `impl OpDef` plus one line in the list at
//! the bottom of this file. The reverse-mode gradient rule is `OpDef::grad`
//! (default: no rule, a clear error), listed per spelling in `GRAD_SPELLINGS`.

use std::fmt;
use std::hash::Hash;

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::grad::{GradCtx, GradError, GradResult};
use crate::graph::ValueId;
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// TVM-style op pattern, used by the fusion pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FusionKind {
    /// One output element depends on the same-index input elements.
    Elementwise,
    /// Elementwise after numpy broadcasting of the inputs.
    Broadcast,
    /// Each output element reads one input element through index arithmetic
    /// (reshape, transpose, slice, pad, gather with constant indices...).
    Injective,
    /// Reduces one or more axes.
    Reduction,
    /// Heavy op (matmul, conv) whose elementwise consumers can fuse into its epilogue.
    OutFusable,
    /// Fuses with nothing.
    Opaque,
}

/// Why an op rejected its inputs or attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// Wrong number of inputs.
    Arity { expected: String, found: usize },
    /// An input has a dtype this op does not accept.
    DType(String),
    /// Input shapes are incompatible with each other or with the attributes.
    Shape(String),
    /// An attribute value is invalid (negative stride, axis out of range...).
    Attr(AttrError),
    /// The reference interpreter cannot evaluate this case.
    Eval(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Arity { expected, found } => {
                write!(f, "expected {expected} inputs, found {found}")
            }
            OpError::DType(m) => write!(f, "dtype error: {m}"),
            OpError::Shape(m) => write!(f, "shape error: {m}"),
            OpError::Attr(e) => write!(f, "{e}"),
            OpError::Eval(m) => write!(f, "evaluation error: {m}"),
        }
    }
}

impl From<AttrError> for OpError {
    fn from(e: AttrError) -> OpError {
        OpError::Attr(e)
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Shorthand for an attribute-validity error.
pub fn attr_err<T>(attr: &str, msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::Attr(AttrError {
        attr: attr.into(),
        msg: msg.into(),
    }))
}
pub fn shape_err<T>(msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::Shape(msg.into()))
}
pub fn dtype_err<T>(msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::DType(msg.into()))
}
/// Check the input count is exactly `n`.
pub fn expect_arity<T>(inputs: &[T], n: usize) -> OpResult<()> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(OpError::Arity {
            expected: n.to_string(),
            found: inputs.len(),
        })
    }
}
/// Check the input count is within `lo..=hi`.
pub fn expect_arity_range<T>(inputs: &[T], lo: usize, hi: usize) -> OpResult<()> {
    if (lo..=hi).contains(&inputs.len()) {
        Ok(())
    } else {
        Err(OpError::Arity {
            expected: format!("{lo} to {hi}"),
            found: inputs.len(),
        })
    }
}

/// One op declaration. See the module docs.
pub trait OpDef: Sized + Clone + fmt::Debug + PartialEq + Eq + Hash {
    /// The spellings this type owns; `parse` is called only with one of these.
    const SPELLINGS: &'static [&'static str];
    /// Build the op from its spelling and attributes (defaults applied here).
    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError>;
    /// The text spelling of this op.
    fn spelling(&self) -> &'static str;
    /// Every attribute, in declaration order, defaults included.
    fn write_attrs(&self, w: &mut AttrWriter);
    /// Output types from input types; validates arity, dtypes, shapes, attributes.
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>>;
    fn fusion_kind(&self) -> FusionKind;
    /// Reference semantics. Inputs have already passed `infer`.
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>>;

    /// The spellings whose gradient rule `grad` implements (the gradient
    /// checks keep one case per entry).
    const GRAD_SPELLINGS: &'static [&'static str] = &[];
    /// Reverse-mode gradient rule: given the node's `inputs`, its `outputs` and
    /// the gradients of the loss with respect to each output (`None`: that
    /// output does not reach the loss; at least one is `Some`), build the
    /// gradient of each input with `cx` and return them in input order,
    /// shaped and typed like the input. `None` marks an input with no
    /// gradient (integer indices, a boolean condition). The default is the
    /// error naming the op: a missing rule is never a silent zero.
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = (cx, inputs, outputs, dout);
        Err(GradError::NoRule(self.spelling()))
    }
}

macro_rules! declare_ops {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every op kiln knows. See [`OpDef`] for what each carries.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Op { $($variant($ty)),* }

        impl Op {
            /// All spellings, for error messages and documentation.
            pub fn all_spellings() -> Vec<&'static str> {
                let mut v = Vec::new();
                $(v.extend_from_slice(<$ty as OpDef>::SPELLINGS);)*
                v
            }
            /// Parse an op from its spelling and attributes. Unknown spellings and
            /// unknown attributes are errors.
            pub fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Op, ParseOpError> {
                $(
                    if <$ty as OpDef>::SPELLINGS.contains(&spelling) {
                        let op = <$ty as OpDef>::parse(spelling, attrs)
                            .map(Op::$variant)
                            .map_err(ParseOpError::Attr)?;
                        let unused = attrs.unused();
                        if !unused.is_empty() {
                            return Err(ParseOpError::UnknownAttrs(unused));
                        }
                        return Ok(op);
                    }
                )*
                Err(ParseOpError::UnknownOp(spelling.to_string()))
            }
            pub fn spelling(&self) -> &'static str {
                match self { $(Op::$variant(o) => o.spelling()),* }
            }
            pub fn attrs(&self) -> Vec<(&'static str, crate::attr::AttrValue)> {
                let mut w = AttrWriter::default();
                match self { $(Op::$variant(o) => o.write_attrs(&mut w)),* }
                w.items
            }
            pub fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
                match self { $(Op::$variant(o) => o.infer(inputs)),* }
            }
            pub fn fusion_kind(&self) -> FusionKind {
                match self { $(Op::$variant(o) => o.fusion_kind()),* }
            }
            pub fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
                match self { $(Op::$variant(o) => o.eval(inputs)),* }
            }
            /// Every spelling with a gradient rule.
            pub fn grad_spellings() -> Vec<&'static str> {
                let mut v = Vec::new();
                $(v.extend_from_slice(<$ty as OpDef>::GRAD_SPELLINGS);)*
                v
            }
            /// The op's gradient rule (see [`OpDef::grad`]).
            pub fn grad(
                &self,
                cx: &mut GradCtx,
                inputs: &[ValueId],
                outputs: &[ValueId],
                dout: &[Option<ValueId>],
            ) -> GradResult<Vec<Option<ValueId>>> {
                cx.op = self.spelling();
                match self { $(Op::$variant(o) => o.grad(cx, inputs, outputs, dout)),* }
            }
        }
        $(impl From<$ty> for Op { fn from(o: $ty) -> Op { Op::$variant(o) } })*
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseOpError {
    UnknownOp(String),
    UnknownAttrs(Vec<String>),
    Attr(AttrError),
}

impl fmt::Display for ParseOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseOpError::UnknownOp(s) => write!(f, "unknown op `{s}`"),
            ParseOpError::UnknownAttrs(v) => write!(f, "unknown attribute(s): {}", v.join(", ")),
            ParseOpError::Attr(e) => write!(f, "{e}"),
        }
    }
}

use crate::ops::deform::DeformConv;
use crate::ops::grid::{AffineGrid, GridSample};
use crate::ops::pool_extra::{Col2Im, MaxPoolWithIndices, MaxUnpool};
use crate::ops::resample::Resize;
use crate::ops::rnn::Recurrent;
use crate::ops::roi::RoiAlign;
use crate::ops::signal::{Dft, Stft};
use crate::ops::{
    attention::{Attention, RotaryEmbedding},
    linear_attention::LinearAttention,
    loss::{NllLoss, SoftmaxCrossEntropy},
    norm::RmsNorm,
    norm_more::{Hardmax, Lrn},
};
use crate::ops::{
    bitcast::BitCast,
    conv::{Conv, ConvTranspose},
    einsum::Einsum,
    elementwise::{Binary, Unary, Where},
    elementwise_more::{Clip, Variadic},
    index::{GatherElements, GatherNd, ScatterElements, ScatterNd, TensorScatter},
    linalg::MatMul,
    norm::{BatchNorm, Dropout, LayerNorm, Softmax},
    pool::{GlobalPool, Pool},
    quant::{DequantizeLinear, DynamicQuantizeLinear, QuantizeLinear},
    reduce::{ArgReduce, Reduce},
    scan::{Cumulative, OneHot, ReverseSequence, Tile, TopK, Trilu},
    shape::{
        Cast, Concat, Constant, Expand, Flatten, Gather, Pad, Reshape, Slice, Split, Squeeze,
        Transpose, Unsqueeze,
    },
};

declare_ops! {
    Unary(Unary),
    Binary(Binary),
    Where(Where),
    Clip(Clip),
    Variadic(Variadic),
    MatMul(MatMul),
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Pool(Pool),
    GlobalPool(GlobalPool),
    Reduce(Reduce),
    ArgReduce(ArgReduce),
    Softmax(Softmax),
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
    Dropout(Dropout),
    Reshape(Reshape),
    Flatten(Flatten),
    Transpose(Transpose),
    Concat(Concat),
    Split(Split),
    Slice(Slice),
    Gather(Gather),
    Pad(Pad),
    Expand(Expand),
    Squeeze(Squeeze),
    Unsqueeze(Unsqueeze),
    Cast(Cast),
    Constant(Constant),
    GatherElements(GatherElements),
    ScatterElements(ScatterElements),
    GatherNd(GatherNd),
    ScatterNd(ScatterNd),
    TensorScatter(TensorScatter),
    Cumulative(Cumulative),
    TopK(TopK),
    Trilu(Trilu),
    OneHot(OneHot),
    Tile(Tile),
    ReverseSequence(ReverseSequence),
    Einsum(Einsum),
    RmsNorm(RmsNorm),
    NllLoss(NllLoss),
    SoftmaxCrossEntropy(SoftmaxCrossEntropy),
    Attention(Attention),
    RotaryEmbedding(RotaryEmbedding),
    Hardmax(Hardmax),
    Lrn(Lrn),
    LinearAttention(LinearAttention),
    QuantizeLinear(QuantizeLinear),
    DequantizeLinear(DequantizeLinear),
    DynamicQuantizeLinear(DynamicQuantizeLinear),
    BitCast(BitCast),
    Resize(Resize),
    Recurrent(Recurrent),
    GridSample(GridSample),
    AffineGrid(AffineGrid),
    MaxPoolWithIndices(MaxPoolWithIndices),
    MaxUnpool(MaxUnpool),
    Col2Im(Col2Im),
    Dft(Dft),
    Stft(Stft),
    RoiAlign(RoiAlign),
    DeformConv(DeformConv),
    PoolGrad(crate::ops::grad_ops::PoolGrad),
    NllLossGrad(crate::ops::grad_ops::NllLossGrad),
    HingeLoss(crate::ops::loss_more::HingeLoss),
    PairLoss(crate::ops::loss_more::PairLoss),
    KlDiv(crate::ops::loss_more::KlDiv),
    SoftCrossEntropy(crate::ops::loss_more::SoftCrossEntropy),
    NormPenalty(crate::ops::loss_more::NormPenalty),
    BatchNormTrain(crate::ops::norm_train::BatchNormTrain),
    DropoutTrain(crate::ops::norm_train::DropoutTrain),
    RandomUniformLike(crate::ops::norm_train::RandomUniformLike),
}
