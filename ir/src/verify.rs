//! The verifier: every graph that leaves a parser, builder or pass satisfies it.
//!
//! It checks that values are defined (no dangling uses), the graph is acyclic,
//! names are unique, each op accepts its inputs and attributes, and each node's
//! recorded output types equal what its op infers. Errors name the node.

use std::collections::BTreeSet;
use std::fmt;

use crate::graph::{Graph, NodeId, ValueDef};
use crate::op::OpError;
use crate::shape::TensorType;

#[derive(Clone, Debug, PartialEq)]
pub enum VerifyErrorKind {
    /// A node input or graph output refers to a value that does not exist or
    /// whose defining node was removed.
    DanglingValue { slot: String },
    /// The node is part of a cycle.
    Cycle,
    /// The op rejected its inputs or attributes (arity, dtype, shape, attribute).
    Op(OpError),
    /// The recorded output type differs from the inferred one.
    TypeMismatch {
        output: usize,
        declared: Box<TensorType>,
        inferred: Box<TensorType>,
    },
    /// The node records a different number of outputs than its op produces.
    OutputCount { declared: usize, inferred: usize },
    /// Two inputs/params share a name, or two outputs do.
    DuplicateName(String),
    /// The graph has no outputs.
    NoOutputs,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyError {
    pub node: Option<NodeId>,
    /// `"conv1" (conv)`, `%h (relu)` or `#4 (add)`; empty for graph-level errors.
    pub label: String,
    pub kind: VerifyErrorKind,
}

impl VerifyError {
    pub fn new(g: &Graph, node: Option<NodeId>, kind: VerifyErrorKind) -> VerifyError {
        let label = node
            .filter(|n| g.contains_node(*n))
            .map(|n| g.label(n))
            .unwrap_or_default();
        VerifyError { node, label, kind }
    }
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyErrorKind::DanglingValue { slot } => {
                write!(f, "{slot} uses a value that is not defined")
            }
            VerifyErrorKind::Cycle => write!(f, "the node is part of a cycle"),
            VerifyErrorKind::Op(e) => write!(f, "{e}"),
            VerifyErrorKind::TypeMismatch {
                output,
                declared,
                inferred,
            } => {
                write!(
                    f,
                    "result {output} is declared {declared} but the op produces {inferred}"
                )
            }
            VerifyErrorKind::OutputCount { declared, inferred } => {
                write!(
                    f,
                    "declares {declared} results but the op produces {inferred}"
                )
            }
            VerifyErrorKind::DuplicateName(n) => write!(f, "the name `{n}` is defined twice"),
            VerifyErrorKind::NoOutputs => write!(f, "the graph has no outputs"),
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.label.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "node {}: {}", self.label, self.kind)
        }
    }
}

impl std::error::Error for VerifyError {}

/// Check `g`; return the first problem found, in canonical node order.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let err = |node: Option<NodeId>, kind| Err(VerifyError::new(g, node, kind));

    let mut names = BTreeSet::new();
    for &v in g.inputs().iter().chain(g.params()) {
        let name = g.value(v).name.clone().unwrap_or_default();
        if !names.insert(name.clone()) {
            return err(None, VerifyErrorKind::DuplicateName(name));
        }
    }
    let mut out_names = BTreeSet::new();
    for (name, v) in g.outputs() {
        if !out_names.insert(name.clone()) {
            return err(None, VerifyErrorKind::DuplicateName(name.clone()));
        }
        if !g.is_live(*v) {
            return err(
                None,
                VerifyErrorKind::DanglingValue {
                    slot: format!("output `{name}`"),
                },
            );
        }
    }
    if g.outputs().is_empty() {
        return err(None, VerifyErrorKind::NoOutputs);
    }

    // Dangling uses first: ordering needs every input to resolve.
    for n in g.node_ids() {
        for (slot, &v) in g.node(n).inputs.iter().enumerate() {
            if !g.is_live(v) {
                return err(
                    Some(n),
                    VerifyErrorKind::DanglingValue {
                        slot: format!("input {slot}"),
                    },
                );
            }
        }
        for (k, &v) in g.node(n).outputs.iter().enumerate() {
            let ok = v.index() < g.num_values()
                && g.value(v).def == (ValueDef::Node { node: n, index: k });
            if !ok {
                return err(
                    Some(n),
                    VerifyErrorKind::DanglingValue {
                        slot: format!("result {k}"),
                    },
                );
            }
        }
    }

    let order = match g.order() {
        Ok(o) => o,
        Err(n) => return err(Some(n), VerifyErrorKind::Cycle),
    };
    for n in order {
        let node = g.node(n);
        let tys: Vec<&TensorType> = node.inputs.iter().map(|v| &g.value(*v).ty).collect();
        let inferred = match node.op.infer(&tys) {
            Ok(t) => t,
            Err(e) => return err(Some(n), VerifyErrorKind::Op(e)),
        };
        if inferred.len() != node.outputs.len() {
            return err(
                Some(n),
                VerifyErrorKind::OutputCount {
                    declared: node.outputs.len(),
                    inferred: inferred.len(),
                },
            );
        }
        for (k, (v, ty)) in node.outputs.iter().zip(inferred).enumerate() {
            let declared = &g.value(*v).ty;
            if *declared != ty {
                return err(
                    Some(n),
                    VerifyErrorKind::TypeMismatch {
                        output: k,
                        declared: Box::new(declared.clone()),
                        inferred: Box::new(ty),
                    },
                );
            }
        }
    }
    Ok(())
}
