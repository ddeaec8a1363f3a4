//! ONNX graph → kiln IR.
//!
//! Initializers become params (weights). Values that are known at import time
//! (initializers, `Constant` nodes, and anything computed from them or from
//! static shapes, such as `Shape → Gather → Concat → Reshape`) are tracked as
//! constants and evaluated with the ops' reference semantics, so a model whose
//! input shapes are known never leaves a dynamic shape behind. Every
//! unsupported op, attribute or dtype is collected and reported at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use kiln_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId, Weights};

use super::proto::{self, attribute_proto::AttributeType, NodeProto};
use super::tensor::{dtype_from_onnx, tensor_from_proto};

/// One reason an ONNX model cannot be imported.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// No converter for this op (or this opset version of it).
    UnsupportedOp {
        node: String,
        op_type: String,
        opset: i64,
    },
    /// The converter exists, but not for this attribute value or input form.
    Unsupported {
        node: String,
        op_type: String,
        what: String,
    },
    /// The model itself is malformed (missing input, bad attribute type...).
    Invalid {
        node: String,
        op_type: String,
        msg: String,
    },
}

impl Problem {
    /// Unsupported (a missing feature) rather than invalid (a broken model).
    pub fn is_unsupported(&self) -> bool {
        !matches!(self, Problem::Invalid { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnsupportedOp {
                node,
                op_type,
                opset,
            } => {
                write!(
                    f,
                    "node \"{node}\": unsupported op {op_type} (opset {opset})"
                )
            }
            Problem::Unsupported {
                node,
                op_type,
                what,
            } => {
                write!(f, "node \"{node}\" ({op_type}): unsupported {what}")
            }
            Problem::Invalid { node, op_type, msg } => {
                write!(f, "node \"{node}\" ({op_type}): {msg}")
            }
        }
    }
}

/// Every problem found in a model, reported together.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("cannot import the ONNX model:\n{}", .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ImportError {
    pub problems: Vec<Problem>,
}

impl ImportError {
    /// True when some problem is an input that must be known at import time;
    /// binding it with `ImportOptions::const_inputs` may resolve it.
    pub fn needs_const_inputs(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, Problem::Unsupported { what, .. } if what.contains(NOT_KNOWN)))
    }
    /// The ONNX value names that were needed at import time but are not
    /// constants. Binding those that are graph inputs may resolve the problems.
    pub fn const_input_names(&self) -> Vec<String> {
        self.problems
            .iter()
            .filter_map(|p| match p {
                Problem::Unsupported { what, .. } => {
                    let rest = &what[what.find(NOT_KNOWN)? + NOT_KNOWN.len()..];
                    let name = rest.strip_prefix(" (value `")?.strip_suffix("`)")?;
                    Some(name.to_string())
                }
                _ => None,
            })
            .collect()
    }
    /// True when every problem is a missing feature rather than a broken model.
    pub fn is_unsupported(&self) -> bool {
        self.problems.iter().all(Problem::is_unsupported)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Values for symbolic dimensions (`dim_param`s) of the graph inputs.
    pub dims: BTreeMap<String, usize>,
    /// Concrete shapes for graph inputs, overriding what the model declares
    /// (used when the input data is known, as in conformance tests).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Graph inputs whose values are fixed at compile time. They become
    /// constants (not inputs), so shape-like inputs (`axes`, `pads`, a
    /// `Reshape` target) can be folded into attributes.
    pub const_inputs: HashMap<String, Tensor>,
}

pub struct Imported {
    pub graph: Graph,
    pub weights: Weights,
}

/// What an ONNX value name stands for during import.
#[derive(Clone, Debug)]
pub enum Val {
    /// A runtime value of the kiln graph.
    Value(ValueId),
    /// Known at import time. `param` names the initializer it came from, so
    /// that it becomes a weight (not an inline constant) if the graph reads it.
    Const { t: Tensor, param: Option<String> },
}

/// What an ONNX name stands for: a tensor, or a sequence of tensors. kiln
/// graphs hold only tensors, so a sequence is a list the importer keeps at
/// import time (its length and positions are known); each element is an
/// ordinary `Val`. Sequences live in their own table (`Importer::seqs`) and
/// never reach the kiln graph.
#[derive(Clone, Debug)]
pub enum Item {
    Tensor(Val),
    Seq(Vec<Val>),
}

const NOT_KNOWN: &str = "that is not known at import time";

/// Results larger than this are not folded at import (the weights stay params
/// and the op stays in the graph, for the optimiser to decide).
const FOLD_LIMIT: usize = 1 << 16;

/// The default domain, plus `Gradient` from the training preview domain.
fn known_domain(n: &NodeProto) -> bool {
    n.domain().is_empty()
        || n.domain() == "ai.onnx"
        || (n.domain() == "ai.onnx.preview.training" && n.op_type() == "Gradient")
}

pub(crate) struct Importer {
    pub g: Graph,
    pub weights: Weights,
    vals: HashMap<String, Val>,
    /// Sequence-valued names (the side table of `vals`): compile-time lists.
    seqs: HashMap<String, Vec<Val>>,
    /// Params already created for initializers.
    params: HashMap<String, ValueId>,
}

/// The conversion context of one node: its inputs, attributes and outputs.
pub struct Ctx<'a> {
    pub(crate) imp: &'a mut Importer,
    pub node: &'a NodeProto,
    pub opset: i64,
    outputs: Vec<Option<Item>>,
}

pub type CResult<T> = Result<T, Problem>;

impl<'a> Ctx<'a> {
    pub fn name(&self) -> String {
        node_name(self.node)
    }
    pub fn op_type(&self) -> &str {
        self.node.op_type()
    }
    pub fn invalid<T>(&self, msg: impl Into<String>) -> CResult<T> {
        Err(Problem::Invalid {
            node: self.name(),
            op_type: self.op_type().into(),
            msg: msg.into(),
        })
    }
    pub fn unsupported<T>(&self, what: impl Into<String>) -> CResult<T> {
        Err(Problem::Unsupported {
            node: self.name(),
            op_type: self.op_type().into(),
            what: what.into(),
        })
    }
    /// Number of inputs, counting trailing empty names as absent.
    pub fn num_inputs(&self) -> usize {
        let ins = &self.node.input;
        ins.iter().rposition(|s| !s.is_empty()).map_or(0, |p| p + 1)
    }
    /// The tensor an ONNX name stands for in the current scope (attributes
    /// such as `Gradient`'s `xs`/`y` name values rather than take them as inputs).
    pub fn named(&self, name: &str) -> CResult<Val> {
        match self.imp.vals.get(name) {
            Some(v) => Ok(v.clone()),
            None => self.invalid(format!("`{name}` is not defined before this node")),
        }
    }
    /// The graph being built, for converters that rewrite it as a whole
    /// (`Gradient` appends a backward graph).
    pub fn graph_mut(&mut self) -> &mut Graph {
        &mut self.imp.g
    }
    /// Input `i`, or `None` if absent or given as the empty name.
    pub fn opt_input(&self, i: usize) -> CResult<Option<Val>> {
        match self.node.input.get(i) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => match self.imp.vals.get(s) {
                Some(v) => Ok(Some(v.clone())),
                None if self.imp.seqs.contains_key(s) => self.unsupported(format!(
                    "input {i} `{s}`: a sequence where a tensor is expected"
                )),
                None => self.invalid(format!("input {i} `{s}` is not defined")),
            },
        }
    }
    /// Input `i` as a sequence (a compile-time list of tensors).
    pub fn seq_input(&self, i: usize) -> CResult<Vec<Val>> {
        match self.node.input.get(i).filter(|s| !s.is_empty()) {
            None => self.invalid(format!("input {i} (a sequence) is required")),
            Some(s) => match self.imp.seqs.get(s) {
                Some(v) => Ok(v.clone()),
                None if self.imp.vals.contains_key(s) => {
                    self.invalid(format!("input {i} `{s}` is a tensor, not a sequence"))
                }
                None => self.invalid(format!("input {i} `{s}` is not defined")),
            },
        }
    }
    /// Whether input `i` names a sequence.
    pub fn is_seq_input(&self, i: usize) -> bool {
        self.node
            .input
            .get(i)
            .is_some_and(|s| self.imp.seqs.contains_key(s))
    }
    /// Input `i`, tensor or sequence.
    pub fn item_input(&self, i: usize) -> CResult<Item> {
        if self.is_seq_input(i) {
            self.seq_input(i).map(Item::Seq)
        } else {
            self.input(i).map(Item::Tensor)
        }
    }
    pub fn input(&self, i: usize) -> CResult<Val> {
        self.opt_input(i)?
            .map_or_else(|| self.invalid(format!("input {i} is required")), Ok)
    }
    /// Input `i` as a runtime value (constants are materialised).
    pub fn value(&mut self, i: usize) -> CResult<ValueId> {
        let v = self.input(i)?;
        self.materialize(v)
    }
    pub fn opt_value(&mut self, i: usize) -> CResult<Option<ValueId>> {
        match self.opt_input(i)? {
            None => Ok(None),
            Some(v) => self.materialize(v).map(Some),
        }
    }
    /// Input `i` as a constant, or an "unsupported" problem naming it.
    pub fn const_input(&self, i: usize, what: &str) -> CResult<Option<Tensor>> {
        match self.opt_input(i)? {
            None => Ok(None),
            Some(Val::Const { t, .. }) => Ok(Some(t)),
            Some(Val::Value(_)) => {
                let name = &self.node.input[i];
                self.unsupported(format!("{what} (input {i}) {NOT_KNOWN} (value `{name}`)"))
            }
        }
    }
    pub fn const_ints(&self, i: usize, what: &str) -> CResult<Option<Vec<i64>>> {
        Ok(self
            .const_input(i, what)?
            .map(|t| t.to_i64().iter().copied().collect()))
    }
    pub fn ty(&self, v: ValueId) -> TensorType {
        self.imp.g.value(v).ty.clone()
    }
    /// The type of input `i`, whether constant or not.
    pub fn input_type(&self, i: usize) -> CResult<TensorType> {
        Ok(match self.input(i)? {
            Val::Value(v) => self.ty(v),
            Val::Const { t, .. } => t.ty(),
        })
    }
    /// The concrete shape of input `i`.
    pub fn input_dims(&self, i: usize) -> CResult<Vec<usize>> {
        let ty = self.input_type(i)?;
        ty.shape.concrete().map_or_else(
            || self.unsupported(format!("symbolic input shape {ty} (bind it)")),
            Ok,
        )
    }

    pub fn materialize(&mut self, v: Val) -> CResult<ValueId> {
        match v {
            Val::Value(v) => Ok(v),
            Val::Const {
                t,
                param: Some(name),
            } => {
                if let Some(&p) = self.imp.params.get(&name) {
                    return Ok(p);
                }
                let p = self.imp.g.add_param(name.clone(), t.ty());
                self.imp.weights.insert(name.clone(), t);
                self.imp.params.insert(name, p);
                Ok(p)
            }
            Val::Const { t, param: None } => {
                let op = kiln_ir::ops::shape::Constant { value: t };
                self.imp.g.add(op, &[]).map_err(|e| Problem::Invalid {
                    node: self.name(),
                    op_type: self.op_type().into(),
                    msg: e.to_string(),
                })
            }
        }
    }

    /// Apply `op` to `inputs`: evaluated now if every input is known and the
    /// result is small, otherwise added to the graph.
    pub fn apply(&mut self, op: impl Into<Op>, inputs: Vec<Val>) -> CResult<Val> {
        let mut outs = self.apply_multi(op, inputs)?;
        if outs.len() != 1 {
            return self.invalid(format!("expected one result, got {}", outs.len()));
        }
        Ok(outs.remove(0))
    }

    pub fn apply_multi(&mut self, op: impl Into<Op>, inputs: Vec<Val>) -> CResult<Vec<Val>> {
        let op = op.into();
        let op_err = |ctx: &Ctx, e: String| Problem::Invalid {
            node: ctx.name(),
            op_type: ctx.op_type().into(),
            msg: format!("{}: {e}", op.spelling()),
        };
        if inputs.iter().all(|v| matches!(v, Val::Const { .. })) {
            let ts: Vec<&Tensor> = inputs
                .iter()
                .map(|v| match v {
                    Val::Const { t, .. } => t,
                    Val::Value(_) => unreachable!("all constant"),
                })
                .collect();
            let tys: Vec<TensorType> = ts.iter().map(|t| t.ty()).collect();
            let ty_refs: Vec<&TensorType> = tys.iter().collect();
            let out_tys = op
                .infer(&ty_refs)
                .map_err(|e| op_err(self, e.to_string()))?;
            let small = out_tys
                .iter()
                .all(|t| t.shape.numel().is_some_and(|n| n <= FOLD_LIMIT));
            if small {
                let outs = op.eval(&ts).map_err(|e| op_err(self, e.to_string()))?;
                return Ok(outs
                    .into_iter()
                    .map(|t| Val::Const { t, param: None })
                    .collect());
            }
        }
        let mut ids = Vec::with_capacity(inputs.len());
        for v in inputs {
            ids.push(self.materialize(v)?);
        }
        let n = self
            .imp
            .g
            .add_node(op.clone(), &ids)
            .map_err(|e| op_err(self, e.err.to_string()))?;
        let node = self.imp.g.node_mut(n);
        node.name = Some(node_name(self.node));
        Ok(node.outputs.iter().map(|&v| Val::Value(v)).collect())
    }

    /// Shorthand: apply to runtime-or-constant inputs given by index.
    pub fn apply_inputs(&mut self, op: impl Into<Op>, idx: &[usize]) -> CResult<Val> {
        let ins = idx
            .iter()
            .map(|&i| self.input(i))
            .collect::<CResult<Vec<_>>>()?;
        self.apply(op, ins)
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&self, dtype: DType, x: f64) -> Val {
        Val::Const {
            t: Tensor::from_vec_f64(dtype, &[], vec![x]).expect("one value fits a scalar"),
            param: None,
        }
    }
    /// The dtype of a value, constant or not.
    pub fn dtype_of(&self, v: &Val) -> DType {
        match v {
            Val::Value(id) => self.ty(*id).dtype,
            Val::Const { t, .. } => t.dtype(),
        }
    }

    pub fn set_output(&mut self, i: usize, v: Val) {
        self.set_item_output(i, Item::Tensor(v));
    }
    /// Set output `i` to a sequence.
    pub fn set_seq_output(&mut self, i: usize, v: Vec<Val>) {
        self.set_item_output(i, Item::Seq(v));
    }
    pub fn set_item_output(&mut self, i: usize, v: Item) {
        if self.outputs.len() <= i {
            self.outputs.resize(i + 1, None);
        }
        self.outputs[i] = Some(v);
    }
    /// Whether output `i` is requested (present and named).
    pub fn wants_output(&self, i: usize) -> bool {
        self.node.output.get(i).is_some_and(|s| !s.is_empty())
    }

    // Attributes.
    fn attr(&self, name: &str) -> Option<&proto::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }
    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    fn attr_typed(
        &self,
        name: &str,
        want: AttributeType,
    ) -> CResult<Option<&proto::AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type() == want || a.r#type() == AttributeType::Undefined => Ok(Some(a)),
            Some(a) => self.invalid(format!(
                "attribute `{name}` should be {want:?}, found {:?}",
                a.r#type()
            )),
        }
    }
    pub fn attr_int(&self, name: &str, default: i64) -> CResult<i64> {
        Ok(self
            .attr_typed(name, AttributeType::Int)?
            .map_or(default, |a| a.i()))
    }
    pub fn attr_opt_int(&self, name: &str) -> CResult<Option<i64>> {
        Ok(self.attr_typed(name, AttributeType::Int)?.map(|a| a.i()))
    }
    pub fn attr_float(&self, name: &str, default: f32) -> CResult<f32> {
        Ok(self
            .attr_typed(name, AttributeType::Float)?
            .map_or(default, |a| a.f()))
    }
    pub fn attr_ints(&self, name: &str) -> CResult<Option<Vec<i64>>> {
        Ok(self
            .attr_typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }
    pub fn attr_floats(&self, name: &str) -> CResult<Option<Vec<f32>>> {
        Ok(self
            .attr_typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }
    pub fn attr_str(&self, name: &str, default: &str) -> CResult<String> {
        Ok(self.attr_typed(name, AttributeType::String)?.map_or_else(
            || default.to_string(),
            |a| String::from_utf8_lossy(a.s()).into_owned(),
        ))
    }
    pub fn attr_tensor(&self, name: &str) -> CResult<Option<Tensor>> {
        match self.attr_typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => match &a.t {
                None => self.invalid(format!("attribute `{name}` has no tensor")),
                Some(t) => tensor_from_proto(t)
                    .map(Some)
                    .or_else(|e| self.unsupported(format!("tensor attribute `{name}`: {e}"))),
            },
        }
    }
    /// Reject an attribute whose value kiln does not implement.
    pub fn reject_attr_unless(&self, name: &str, ok: bool, why: &str) -> CResult<()> {
        if ok {
            Ok(())
        } else {
            self.unsupported(format!("attribute `{name}`: {why}"))
        }
    }

    /// A list-of-strings attribute (RNN activations).
    pub fn attr_strs(&self, name: &str) -> CResult<Option<Vec<String>>> {
        Ok(self.attr_typed(name, AttributeType::Strings)?.map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        }))
    }

    // Subgraphs (the bodies of If, Loop and Scan).
    /// A graph-valued attribute, borrowed from the node (not from `self`), so
    /// the graph can be inlined while the context is mutated.
    pub fn attr_graph(&self, name: &str) -> CResult<Option<&'a proto::GraphProto>> {
        let node: &'a NodeProto = self.node;
        match node.attribute.iter().find(|a| a.name() == name) {
            None => Ok(None),
            Some(a) => match &a.g {
                Some(g)
                    if matches!(a.r#type(), AttributeType::Graph | AttributeType::Undefined) =>
                {
                    Ok(Some(g))
                }
                _ => self.invalid(format!("attribute `{name}` should be a graph")),
            },
        }
    }
    /// The type of a value, constant or not.
    pub fn val_type(&self, v: &Val) -> TensorType {
        match v {
            Val::Value(id) => self.ty(*id),
            Val::Const { t, .. } => t.ty(),
        }
    }
    /// Convert subgraph `g` in place, its inputs bound to `inputs`, and return
    /// its outputs. Values of the enclosing scopes stay visible inside; the
    /// names `g` defines shadow them only while it is converted, so the same
    /// body can be inlined once per iteration of an unrolled loop. Constants
    /// fold through the body as they do at the top level.
    pub fn inline_graph(&mut self, g: &proto::GraphProto, inputs: Vec<Val>) -> CResult<Vec<Val>> {
        let items = inputs.into_iter().map(Item::Tensor).collect();
        self.inline_graph_items(g, items)?
            .into_iter()
            .zip(&g.output)
            .map(|(it, o)| match it {
                Item::Tensor(v) => Ok(v),
                Item::Seq(_) => self.unsupported(format!(
                    "subgraph `{}` output `{}` is a sequence where a tensor is expected",
                    g.name(),
                    o.name()
                )),
            })
            .collect()
    }
    /// `inline_graph` with inputs and outputs that may be sequences (the
    /// state a `Loop` carries, the result of an `If`).
    pub fn inline_graph_items(
        &mut self,
        g: &proto::GraphProto,
        inputs: Vec<Item>,
    ) -> CResult<Vec<Item>> {
        if g.input.len() != inputs.len() {
            return self.invalid(format!(
                "subgraph `{}` takes {} inputs, given {}",
                g.name(),
                g.input.len(),
                inputs.len()
            ));
        }
        let defined = g
            .input
            .iter()
            .map(|v| v.name())
            .chain(g.initializer.iter().map(|t| t.name()))
            .chain(
                g.node
                    .iter()
                    .flat_map(|n| n.output.iter().map(|s| s.as_str())),
            )
            .filter(|s| !s.is_empty());
        type Saved = (String, Option<Val>, Option<Vec<Val>>);
        let saved: Vec<Saved> = defined
            .map(|n| {
                let (v, s) = (self.imp.vals.remove(n), self.imp.seqs.remove(n));
                (n.to_string(), v, s)
            })
            .collect();
        let result = self.inline_scope(g, inputs);
        // Restore in reverse, so a name defined twice gets its outer value back.
        for (name, v, s) in saved.into_iter().rev() {
            match v {
                Some(v) => self.imp.vals.insert(name.clone(), v),
                None => self.imp.vals.remove(&name),
            };
            match s {
                Some(s) => self.imp.seqs.insert(name, s),
                None => self.imp.seqs.remove(&name),
            };
        }
        result
    }
    fn inline_scope(&mut self, g: &proto::GraphProto, inputs: Vec<Item>) -> CResult<Vec<Item>> {
        for init in &g.initializer {
            let t = tensor_from_proto(init).or_else(|e| {
                self.unsupported(format!("subgraph initializer `{}`: {e}", init.name()))
            })?;
            self.imp
                .vals
                .insert(init.name().to_string(), Val::Const { t, param: None });
        }
        for (vi, v) in g.input.iter().zip(inputs) {
            self.imp.bind(vi.name(), v);
        }
        for n in &g.node {
            let domain_ok = known_domain(n);
            if !domain_ok || super::ops::converter(n.op_type(), self.opset).is_none() {
                return Err(Problem::UnsupportedOp {
                    node: node_name(n),
                    op_type: n.op_type().to_string(),
                    opset: self.opset,
                });
            }
        }
        let mut problems = Vec::new();
        let mut poisoned = std::collections::HashSet::new();
        convert_nodes(self.imp, &g.node, self.opset, &mut problems, &mut poisoned);
        if let Some(p) = problems.into_iter().next() {
            return Err(p);
        }
        g.output
            .iter()
            .map(|o| match self.imp.item(o.name()) {
                Some(v) => Ok(v),
                None => self.invalid(format!(
                    "subgraph `{}` output `{}` is never computed",
                    g.name(),
                    o.name()
                )),
            })
            .collect()
    }
}

impl Importer {
    /// Bind `name` to a tensor or a sequence (replacing any earlier binding).
    fn bind(&mut self, name: &str, v: Item) {
        match v {
            Item::Tensor(v) => {
                self.seqs.remove(name);
                self.vals.insert(name.to_string(), v);
            }
            Item::Seq(s) => {
                self.vals.remove(name);
                self.seqs.insert(name.to_string(), s);
            }
        }
    }
    fn item(&self, name: &str) -> Option<Item> {
        match self.vals.get(name) {
            Some(v) => Some(Item::Tensor(v.clone())),
            None => self.seqs.get(name).cloned().map(Item::Seq),
        }
    }
}

pub fn node_name(n: &NodeProto) -> String {
    if n.name().is_empty() {
        format!(
            "{}({})",
            n.op_type(),
            n.output.first().map_or("", |s| s.as_str())
        )
    } else {
        n.name().to_string()
    }
}

/// The kiln dtype for an ONNX element type used *in a model* (graph inputs,
/// initializers, Cast targets): every type kiln can hold.
pub fn model_dtype(elem_type: i32) -> Option<DType> {
    dtype_from_onnx(elem_type)
}

fn value_type(vi: &proto::ValueInfoProto, opts: &ImportOptions) -> Result<TensorType, String> {
    use proto::tensor_shape_proto::dimension::Value as D;
    use proto::type_proto::Value as T;
    let Some(T::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("is not a tensor (sequences, maps and optionals are unsupported)".into());
    };
    let dtype = model_dtype(tt.elem_type())
        .ok_or_else(|| format!("has unsupported element type {}", tt.elem_type()))?;
    if let Some(dims) = opts.input_shapes.get(vi.name()) {
        return Ok(TensorType::concrete(dtype, dims));
    }
    let Some(shape) = &tt.shape else {
        return Err("has no shape".into());
    };
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(D::DimValue(n)) if *n >= 0 => Ok(Dim::Known(*n as usize)),
            Some(D::DimParam(p)) if !p.is_empty() => Ok(opts
                .dims
                .get(p)
                .map_or_else(|| Dim::sym(p), |&n| Dim::Known(n))),
            _ => Err(format!(
                "dimension {i} is unknown (give it with --dim or an input)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorType::new(dtype, Shape::from(dims)))
}

/// Import an ONNX model.
pub fn import_model(
    model: &proto::ModelProto,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let mut problems = Vec::new();
    let model_problem = |msg: String| Problem::Invalid {
        node: "<model>".into(),
        op_type: "".into(),
        msg,
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map_or(1, |o| o.version());
    let Some(graph) = &model.graph else {
        return Err(ImportError {
            problems: vec![model_problem("the model has no graph".into())],
        });
    };
    let mut imp = Importer {
        g: Graph::new(if graph.name().is_empty() {
            "onnx"
        } else {
            graph.name()
        }),
        weights: Weights::default(),
        vals: HashMap::new(),
        seqs: HashMap::new(),
        params: HashMap::new(),
    };

    // Names whose definition failed: their users are skipped, not re-reported.
    let mut poisoned: std::collections::HashSet<String> = std::collections::HashSet::new();
    for init in &graph.initializer {
        if model_dtype(init.data_type()).is_none() {
            problems.push(Problem::Unsupported {
                node: init.name().into(),
                op_type: "initializer".into(),
                what: format!("element type {}", init.data_type()),
            });
            poisoned.insert(init.name().to_string());
            continue;
        }
        match tensor_from_proto(init) {
            Ok(t) => {
                imp.vals.insert(
                    init.name().to_string(),
                    Val::Const {
                        t,
                        param: Some(init.name().to_string()),
                    },
                );
            }
            Err(e) => {
                problems.push(Problem::Unsupported {
                    node: init.name().into(),
                    op_type: "initializer".into(),
                    what: e.to_string(),
                });
                poisoned.insert(init.name().to_string());
            }
        }
    }
    for vi in &graph.input {
        if imp.vals.contains_key(vi.name()) {
            continue; // an initializer with a default value: kiln treats it as a weight
        }
        if let Some(t) = opts.const_inputs.get(vi.name()) {
            imp.vals.insert(
                vi.name().to_string(),
                Val::Const {
                    t: t.clone(),
                    param: None,
                },
            );
            continue;
        }
        match value_type(vi, opts) {
            Ok(ty) => {
                let v = imp.g.add_input(vi.name(), ty);
                imp.vals.insert(vi.name().to_string(), Val::Value(v));
            }
            Err(e) => {
                problems.push(Problem::Unsupported {
                    node: vi.name().into(),
                    op_type: "graph input".into(),
                    what: format!("input `{}` {e}", vi.name()),
                });
                poisoned.insert(vi.name().to_string());
            }
        }
    }

    // Report every unsupported op up front, then convert what can be converted.
    for n in &graph.node {
        let domain_ok = known_domain(n);
        if !domain_ok || super::ops::converter(n.op_type(), opset).is_none() {
            let op_type = if domain_ok {
                n.op_type().to_string()
            } else {
                format!("{}:{}", n.domain(), n.op_type())
            };
            problems.push(Problem::UnsupportedOp {
                node: node_name(n),
                op_type,
                opset,
            });
        }
    }
    convert_nodes(&mut imp, &graph.node, opset, &mut problems, &mut poisoned);

    for vo in &graph.output {
        if poisoned.contains(vo.name()) {
            continue;
        }
        if imp.seqs.contains_key(vo.name()) {
            problems.push(Problem::Unsupported {
                node: vo.name().into(),
                op_type: "graph output".into(),
                what: format!(
                    "output `{}` is a sequence (kiln graphs return only tensors)",
                    vo.name()
                ),
            });
            continue;
        }
        let Some(v) = imp.vals.get(vo.name()).cloned() else {
            problems.push(model_problem(format!(
                "graph output `{}` is never computed",
                vo.name()
            )));
            continue;
        };
        let id = match v {
            Val::Value(id) => id,
            Val::Const { t, param } => {
                // A fully folded output still needs a node (or param) to name it.
                let mut dummy = Ctx {
                    imp: &mut imp,
                    node: &NodeProto::default(),
                    opset,
                    outputs: Vec::new(),
                };
                match dummy.materialize(Val::Const { t, param }) {
                    Ok(id) => id,
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                }
            }
        };
        imp.g.set_output(vo.name(), id);
    }

    if !problems.is_empty() {
        return Err(ImportError { problems });
    }
    if let Err(e) = kiln_ir::verify(&imp.g) {
        return Err(ImportError {
            problems: vec![model_problem(format!(
                "imported graph fails verification: {e}"
            ))],
        });
    }
    Ok(Imported {
        graph: imp.g,
        weights: imp.weights,
    })
}

/// Convert `nodes` in order. A node whose converter fails poisons its
/// outputs, and nodes reading a poisoned value are skipped.
fn convert_nodes(
    imp: &mut Importer,
    nodes: &[NodeProto],
    opset: i64,
    problems: &mut Vec<Problem>,
    poisoned: &mut std::collections::HashSet<String>,
) {
    for n in nodes {
        let Some(conv) = super::ops::converter(n.op_type(), opset).filter(|_| known_domain(n))
        else {
            poisoned.extend(n.output.iter().cloned());
            continue;
        };
        let mut reads: Vec<&str> = n.input.iter().map(|s| s.as_str()).collect();
        subgraph_reads(n, &mut reads);
        if reads.iter().any(|i| poisoned.contains(*i)) {
            poisoned.extend(n.output.iter().cloned());
            continue;
        }
        let mut ctx = Ctx {
            imp: &mut *imp,
            node: n,
            opset,
            outputs: Vec::new(),
        };
        match conv(&mut ctx) {
            Ok(()) => {
                let outs = std::mem::take(&mut ctx.outputs);
                for (i, name) in n.output.iter().enumerate() {
                    if name.is_empty() {
                        continue;
                    }
                    match outs.get(i).cloned().flatten() {
                        Some(v) => imp.bind(name, v),
                        None => {
                            problems.push(Problem::Unsupported {
                                node: node_name(n),
                                op_type: n.op_type().into(),
                                what: format!("output {i} (`{name}`)"),
                            });
                            poisoned.insert(name.clone());
                        }
                    }
                }
            }
            Err(p) => {
                problems.push(p);
                poisoned.extend(n.output.iter().cloned());
            }
        }
    }
}

/// Every value name that the subgraphs of `n` (at any depth) read, so that a
/// node whose body uses a value that failed to import is skipped too.
fn subgraph_reads<'n>(n: &'n NodeProto, out: &mut Vec<&'n str>) {
    for a in &n.attribute {
        for g in a.g.iter().chain(&a.graphs) {
            for inner in &g.node {
                out.extend(inner.input.iter().map(|s| s.as_str()));
                subgraph_reads(inner, out);
            }
        }
    }
}
