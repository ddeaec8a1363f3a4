//! The reference interpreter: runs any verified graph on concrete tensors.
//!
//! It defines what every op means (through `OpDef::eval`); every pass and
//! backend is tested against it. It frees each value after its last use, and
//! checks each result against the type the graph declares.

use std::collections::{BTreeMap, HashMap};

use crate::graph::{Graph, ValueDef, ValueId};
use crate::tensor::Tensor;
use crate::weights::Weights;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    #[error("param %{name}: {msg}")]
    Param { name: String, msg: String },
    #[error("node {label}: {msg}")]
    Node { label: String, msg: String },
    #[error("{0}")]
    Graph(String),
}

/// Work out symbolic dimensions from the shapes of the given inputs
/// (`f32[N,784]` given a 64×784 tensor binds N=64). Conflicts are errors.
pub fn dims_from_inputs(
    g: &Graph,
    inputs: &HashMap<String, Tensor>,
) -> Result<BTreeMap<String, usize>, RunError> {
    let mut dims = BTreeMap::new();
    for &v in g.inputs() {
        let val = g.value(v);
        let name = val.name.clone().unwrap_or_default();
        let Some(t) = inputs.get(&name) else { continue };
        if t.shape().len() != val.ty.rank() {
            return Err(RunError::Input {
                name,
                msg: format!(
                    "expected rank {} ({}), got shape {:?}",
                    val.ty.rank(),
                    val.ty,
                    t.shape()
                ),
            });
        }
        for (d, &n) in val.ty.shape.dims().iter().zip(t.shape()) {
            if let crate::shape::Dim::Sym(s) = d {
                if let Some(&prev) = dims.get(&**s) {
                    if prev != n {
                        return Err(RunError::Input {
                            name,
                            msg: format!("dimension {s} is {n} here but {prev} in another input"),
                        });
                    }
                }
                dims.insert(s.to_string(), n);
            }
        }
    }
    Ok(dims)
}

/// Check named inputs against `g`'s inputs (all dimensions bound): every
/// name is an input of the graph, and each input is given with its dtype and
/// shape. Every backend checks its inputs with this before running.
pub fn check_inputs(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<(), RunError> {
    for name in inputs.keys() {
        if !g
            .inputs()
            .iter()
            .any(|&v| g.value(v).name.as_deref() == Some(name))
        {
            let known: Vec<&str> = g
                .inputs()
                .iter()
                .filter_map(|&v| g.value(v).name.as_deref())
                .collect();
            return Err(RunError::Input {
                name: name.clone(),
                msg: format!(
                    "the graph has no such input (its inputs: {})",
                    known.join(", ")
                ),
            });
        }
    }
    for &v in g.inputs() {
        let val = g.value(v);
        let name = val.name.clone().unwrap_or_default();
        let t = inputs.get(&name).ok_or_else(|| RunError::Input {
            name: name.clone(),
            msg: "not given".into(),
        })?;
        check_type(t, &val.ty).map_err(|msg| RunError::Input {
            name: name.clone(),
            msg,
        })?;
    }
    Ok(())
}

/// Run `g` (all dimensions bound) on named inputs. Returns outputs in order.
pub fn run(
    g: &Graph,
    weights: &Weights,
    inputs: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>, RunError> {
    let order = g
        .order()
        .map_err(|n| RunError::Graph(format!("node {} is part of a cycle", g.label(n))))?;
    let mut slots: Vec<Option<Tensor>> = vec![None; g.num_values()];

    check_inputs(g, inputs)?;
    for &v in g.inputs() {
        let name = g.value(v).name.clone().unwrap_or_default();
        slots[v.index()] = inputs.get(&name).cloned();
    }
    for &v in g.params() {
        let val = g.value(v);
        let name = val.name.clone().unwrap_or_default();
        let t = weights.get(&name).ok_or_else(|| RunError::Param {
            name: name.clone(),
            msg: "no weight given".into(),
        })?;
        check_type(t, &val.ty).map_err(|msg| RunError::Param {
            name: name.clone(),
            msg,
        })?;
        slots[v.index()] = Some(t.clone());
    }

    // Remaining uses of each value, so it can be freed after its last reader.
    let mut uses = vec![0usize; g.num_values()];
    for &n in &order {
        for &v in &g.node(n).inputs {
            uses[v.index()] += 1;
        }
    }
    for (_, v) in g.outputs() {
        uses[v.index()] += 1;
    }

    for &n in &order {
        let node = g.node(n);
        let label = || g.label(n);
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|v| slots[v.index()].as_ref())
            .collect::<Option<_>>()
            .ok_or_else(|| RunError::Node {
                label: label(),
                msg: "an input was not computed".into(),
            })?;
        let outs = node.op.eval(&args).map_err(|e| RunError::Node {
            label: label(),
            msg: e.to_string(),
        })?;
        if outs.len() != node.outputs.len() {
            return Err(RunError::Node {
                label: label(),
                msg: format!(
                    "produced {} results, expected {}",
                    outs.len(),
                    node.outputs.len()
                ),
            });
        }
        for (k, (&v, t)) in node.outputs.iter().zip(outs).enumerate() {
            check_type(&t, &g.value(v).ty).map_err(|msg| RunError::Node {
                label: label(),
                msg: format!("result {k}: {msg}"),
            })?;
            slots[v.index()] = Some(t);
        }
        for &v in &node.inputs {
            uses[v.index()] -= 1;
            if uses[v.index()] == 0 && !matches!(g.value(v).def, ValueDef::Param) {
                slots[v.index()] = None;
            }
        }
    }

    g.outputs()
        .iter()
        .map(|(name, v)| {
            let t: Option<&Tensor> = slots[ValueId::index(*v)].as_ref();
            t.cloned()
                .map(|t| (name.clone(), t))
                .ok_or_else(|| RunError::Graph(format!("output `{name}` was not computed")))
        })
        .collect()
}

fn check_type(t: &Tensor, ty: &crate::shape::TensorType) -> Result<(), String> {
    let Some(dims) = ty.shape.concrete() else {
        let syms: Vec<&str> = ty.shape.symbols().collect();
        return Err(format!(
            "type {ty} has unbound dimensions ({}); bind them with --dim",
            syms.join(", ")
        ));
    };
    let storage_ok = t.dtype() == ty.dtype
        || matches!(
            (ty.dtype, t.dtype()),
            (crate::DType::QI8(_), crate::DType::I8) | (crate::DType::QU8(_), crate::DType::U8)
        );
    if !storage_ok {
        return Err(format!("expected dtype {}, got {}", ty.dtype, t.dtype()));
    }
    if t.shape() != dims.as_slice() {
        return Err(format!(
            "expected shape {:?} ({ty}), got {:?}",
            dims,
            t.shape()
        ));
    }
    Ok(())
}
