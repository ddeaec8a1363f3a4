//! The graph: SSA values produced by op nodes, stored in a petgraph
//! `StableDiGraph` behind dense typed ids.
//!
//! Every value has exactly one definition: a graph input, a parameter (a named
//! weight), or output `k` of a node. Node ids stay valid when other nodes are
//! removed. petgraph's indices never leave this module.

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::op::{Op, OpError};
use crate::shape::TensorType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    /// The id with this index (e.g. read from an artifact; check it with
    /// [`Graph::contains_node`] before use).
    pub fn from_index(i: usize) -> NodeId {
        NodeId(i as u32)
    }
    fn ix(self) -> NodeIndex<u32> {
        NodeIndex::new(self.0 as usize)
    }
}
impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    /// The id with this index (e.g. read from an artifact; check it against
    /// [`Graph::num_values`] before use).
    pub fn from_index(i: usize) -> ValueId {
        ValueId(i as u32)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// The graph input at this position.
    Input(usize),
    /// A named weight supplied beside the graph (safetensors).
    Param,
    /// Output `index` of `node`.
    Node { node: NodeId, index: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Inputs and params always have a name; node results may (from text or ONNX).
    pub name: Option<String>,
    pub ty: TensorType,
    pub def: ValueDef,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: SmallVec<[ValueId; 4]>,
    pub outputs: SmallVec<[ValueId; 1]>,
    /// Optional source name (an ONNX node name, say), used in messages.
    pub name: Option<String>,
    /// The fusion group the `fusion` pass put this node in (nodes of one group
    /// become one kernel). Printed as a comment; not part of the text format.
    pub group: Option<u32>,
}

/// A graph failed to accept a node: the op rejected its inputs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{op}: {err}")]
pub struct NodeError {
    pub op: &'static str,
    pub err: OpError,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    dag: StableDiGraph<Node, usize, u32>,
    values: Vec<Value>,
    inputs: Vec<ValueId>,
    params: Vec<ValueId>,
    outputs: Vec<(String, ValueId)>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    fn push_value(&mut self, name: Option<String>, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value { name, ty, def });
        id
    }

    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let pos = self.inputs.len();
        let v = self.push_value(Some(name.into()), ty, ValueDef::Input(pos));
        self.inputs.push(v);
        v
    }

    pub fn add_param(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let v = self.push_value(Some(name.into()), ty, ValueDef::Param);
        self.params.push(v);
        v
    }

    /// Add a node, inferring its output types. Fails if the op rejects its inputs.
    pub fn add_node(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<NodeId, NodeError> {
        let op = op.into();
        let tys: Vec<&TensorType> = inputs.iter().map(|v| &self.values[v.index()].ty).collect();
        let out = op.infer(&tys).map_err(|err| NodeError {
            op: op.spelling(),
            err,
        })?;
        Ok(self.add_node_typed(op, inputs, out, None))
    }

    /// Add a single-output node and return its value.
    pub fn add(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<ValueId, NodeError> {
        let n = self.add_node(op, inputs)?;
        Ok(self.node(n).outputs[0])
    }

    /// Add a node with the given output types, unchecked: the verifier checks
    /// them later. Used by parsers so that errors can carry file positions.
    pub fn add_node_typed(
        &mut self,
        op: Op,
        inputs: &[ValueId],
        out_types: Vec<TensorType>,
        name: Option<String>,
    ) -> NodeId {
        let ix = self.dag.add_node(Node {
            op,
            inputs: inputs.iter().copied().collect(),
            outputs: SmallVec::new(),
            name,
            group: None,
        });
        let id = NodeId(ix.index() as u32);
        let outs: SmallVec<[ValueId; 1]> = out_types
            .into_iter()
            .enumerate()
            .map(|(index, ty)| self.push_value(None, ty, ValueDef::Node { node: id, index }))
            .collect();
        self.dag[ix].outputs = outs;
        for (slot, &v) in inputs.iter().enumerate() {
            self.link(v, id, slot);
        }
        id
    }

    fn link(&mut self, v: ValueId, consumer: NodeId, slot: usize) {
        if let Some(Value {
            def: ValueDef::Node { node, .. },
            ..
        }) = self.values.get(v.index())
        {
            if self.dag.contains_node(node.ix()) {
                self.dag.add_edge(node.ix(), consumer.ix(), slot);
            }
        }
    }

    /// Drop a param from the graph's param list (its value becomes dangling,
    /// so the verifier reports any remaining use). Returns whether it was one.
    pub fn remove_param(&mut self, v: ValueId) -> bool {
        let before = self.params.len();
        self.params.retain(|&p| p != v);
        self.params.len() != before
    }

    /// Name a graph output. Output names are unique; setting one again replaces it.
    pub fn set_output(&mut self, name: impl Into<String>, v: ValueId) {
        let name = name.into();
        match self.outputs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = v,
            None => self.outputs.push((name, v)),
        }
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }
    pub fn params(&self) -> &[ValueId] {
        &self.params
    }
    pub fn outputs(&self) -> &[(String, ValueId)] {
        &self.outputs
    }
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.index()]
    }
    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.index()]
    }
    /// Whether `v` names a value of this graph whose definition still exists.
    pub fn is_live(&self, v: ValueId) -> bool {
        match self.values.get(v.index()) {
            None => false,
            Some(val) => match val.def {
                ValueDef::Node { node, .. } => self.dag.contains_node(node.ix()),
                ValueDef::Param => self.params.contains(&v),
                ValueDef::Input(_) => true,
            },
        }
    }
    pub fn num_values(&self) -> usize {
        self.values.len()
    }
    pub fn node(&self, n: NodeId) -> &Node {
        &self.dag[n.ix()]
    }
    pub fn node_mut(&mut self, n: NodeId) -> &mut Node {
        &mut self.dag[n.ix()]
    }
    pub fn contains_node(&self, n: NodeId) -> bool {
        self.dag.contains_node(n.ix())
    }
    /// Live node ids, in id order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.dag
            .node_indices()
            .map(|ix| NodeId(ix.index() as u32))
            .collect()
    }
    pub fn node_count(&self) -> usize {
        self.dag.node_count()
    }
    /// The node defining `v`, if it is a node result.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        match self.values[v.index()].def {
            ValueDef::Node { node, .. } => Some(node),
            _ => None,
        }
    }
    /// Nodes that read `v`, with the input slot, in id order.
    pub fn users(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let mut out = Vec::new();
        for n in self.node_ids() {
            for (slot, &i) in self.node(n).inputs.iter().enumerate() {
                if i == v {
                    out.push((n, slot));
                }
            }
        }
        out
    }

    /// Point input `slot` of `node` at `v`.
    pub fn set_node_input(&mut self, node: NodeId, slot: usize, v: ValueId) {
        let stale: Vec<_> = self
            .dag
            .edges_directed(node.ix(), Direction::Incoming)
            .filter(|e| *e.weight() == slot)
            .map(|e| e.id())
            .collect();
        for e in stale {
            self.dag.remove_edge(e);
        }
        self.dag[node.ix()].inputs[slot] = v;
        self.link(v, node, slot);
    }

    /// Redirect every use of `old` (node inputs and graph outputs) to `new`.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        for (n, slot) in self.users(old) {
            self.set_node_input(n, slot, new);
        }
        for (_, v) in self.outputs.iter_mut() {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Remove a node. Its result values become dangling; the verifier reports
    /// any remaining use of them.
    pub fn remove_node(&mut self, n: NodeId) -> Option<Node> {
        self.dag.remove_node(n.ix())
    }

    /// A short, stable label for messages: the node's source name, else its
    /// first result's name, else its id, always with the op.
    pub fn label(&self, n: NodeId) -> String {
        let node = self.node(n);
        let who = match (
            &node.name,
            node.outputs
                .first()
                .and_then(|v| self.values[v.index()].name.as_ref()),
        ) {
            (Some(name), _) => format!("\"{name}\""),
            (None, Some(v)) => format!("%{v}"),
            (None, None) => format!("#{}", n.0),
        };
        format!("{who} ({})", node.op.spelling())
    }

    /// The canonical node order: a depth-first post-order from the outputs (in
    /// output order, operands in order), then nodes no output reaches, in id
    /// order. It depends only on the graph's structure, so parsing a printed
    /// graph and printing it again gives the same order. Fails on a cycle.
    pub fn order(&self) -> Result<Vec<NodeId>, NodeId> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let cap = self.dag.node_bound();
        let mut mark = vec![Mark::New; cap];
        let mut order = Vec::with_capacity(self.node_count());
        let mut roots: Vec<NodeId> = self
            .outputs
            .iter()
            .filter_map(|(_, v)| self.producer_live(*v))
            .collect();
        roots.extend(self.node_ids());
        for root in roots {
            if mark[root.index()] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next operand index to visit).
            let mut stack = vec![(root, 0usize)];
            mark[root.index()] = Mark::Open;
            while let Some(&mut (n, ref mut next)) = stack.last_mut() {
                let inputs = &self.node(n).inputs;
                if *next < inputs.len() {
                    let v = inputs[*next];
                    *next += 1;
                    if let Some(p) = self.producer_live(v) {
                        match mark[p.index()] {
                            Mark::New => {
                                mark[p.index()] = Mark::Open;
                                stack.push((p, 0));
                            }
                            Mark::Open => return Err(p),
                            Mark::Done => {}
                        }
                    }
                } else {
                    mark[n.index()] = Mark::Done;
                    order.push(n);
                    stack.pop();
                }
            }
        }
        Ok(order)
    }

    fn producer_live(&self, v: ValueId) -> Option<NodeId> {
        match self.values.get(v.index())?.def {
            ValueDef::Node { node, .. } if self.dag.contains_node(node.ix()) => Some(node),
            _ => None,
        }
    }

    /// Every symbolic dimension named by the graph's inputs and params.
    pub fn symbols(&self) -> BTreeSet<String> {
        self.inputs
            .iter()
            .chain(&self.params)
            .flat_map(|v| {
                self.values[v.index()]
                    .ty
                    .shape
                    .symbols()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Bind symbolic dimensions to numbers and re-infer every node's types.
    pub fn bind_dims(
        &mut self,
        dims: &BTreeMap<String, usize>,
    ) -> Result<(), crate::verify::VerifyError> {
        for v in self.inputs.clone().into_iter().chain(self.params.clone()) {
            let ty = &mut self.values[v.index()].ty;
            ty.shape = ty.shape.bind(dims);
        }
        self.reinfer()
    }

    /// Recompute every node's output types from its inputs, in order.
    pub fn reinfer(&mut self) -> Result<(), crate::verify::VerifyError> {
        use crate::verify::{VerifyError, VerifyErrorKind};
        let order = self
            .order()
            .map_err(|n| VerifyError::new(self, Some(n), VerifyErrorKind::Cycle))?;
        for n in order {
            let node = self.node(n);
            let tys: Vec<&TensorType> = node
                .inputs
                .iter()
                .map(|v| &self.values[v.index()].ty)
                .collect();
            let out = node
                .op
                .infer(&tys)
                .map_err(|e| VerifyError::new(self, Some(n), VerifyErrorKind::Op(e)))?;
            let outs = self.node(n).outputs.clone();
            if out.len() != outs.len() {
                return Err(VerifyError::new(
                    self,
                    Some(n),
                    VerifyErrorKind::OutputCount {
                        declared: outs.len(),
                        inferred: out.len(),
                    },
                ));
            }
            for (v, ty) in outs.iter().zip(out) {
                self.values[v.index()].ty = ty;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::print(self))
    }
}
