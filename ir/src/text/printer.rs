//! Canonical printer.

use std::collections::HashMap;
use std::fmt::Write;

use crate::graph::{Graph, ValueDef, ValueId};

fn quote_name(s: &str) -> String {
    if super::is_plain_name(s) {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// Print `g` in canonical form. A graph that fails to order (a cycle) still
/// prints, with the unordered nodes in id order, so it can be inspected.
pub fn print(g: &Graph) -> String {
    let order = g.order().unwrap_or_else(|_| g.node_ids());
    let mut names: HashMap<ValueId, String> = HashMap::new();
    for &v in g.inputs().iter().chain(g.params()) {
        names.insert(
            v,
            format!("%{}", quote_name(g.value(v).name.as_deref().unwrap_or("?"))),
        );
    }
    let mut next = 0usize;
    for &n in &order {
        for &v in &g.node(n).outputs {
            names.insert(v, format!("%{next}"));
            next += 1;
        }
    }
    let name_of = |v: ValueId| {
        names
            .get(&v)
            .cloned()
            .unwrap_or_else(|| format!("%<undefined {}>", v.index()))
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        "graph {} {{",
        quote_name(if g.name.is_empty() { "main" } else { &g.name })
    );
    for &v in g.inputs() {
        let _ = writeln!(s, "  input {}: {}", name_of(v), g.value(v).ty);
    }
    for &v in g.params() {
        debug_assert_eq!(g.value(v).def, ValueDef::Param);
        let _ = writeln!(s, "  param {}: {}", name_of(v), g.value(v).ty);
    }
    for &n in &order {
        let node = g.node(n);
        let outs: Vec<String> = node.outputs.iter().map(|&v| name_of(v)).collect();
        let ins: Vec<String> = node.inputs.iter().map(|&v| name_of(v)).collect();
        let _ = write!(
            s,
            "  {} = {}({})",
            outs.join(", "),
            node.op.spelling(),
            ins.join(", ")
        );
        let attrs = node.op.attrs();
        if !attrs.is_empty() {
            let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = write!(s, " {{{}}}", a.join(", "));
        }
        let tys: Vec<String> = node
            .outputs
            .iter()
            .map(|&v| g.value(v).ty.to_string())
            .collect();
        let _ = write!(s, ": {}", tys.join(", "));
        if let Some(name) = &node.name {
            let _ = write!(s, " @{}", quote_name(name));
        }
        s.push('\n');
    }
    for (name, v) in g.outputs() {
        let _ = writeln!(s, "  output {} = {}", quote_name(name), name_of(*v));
    }
    s.push_str("}\n");
    s
}
