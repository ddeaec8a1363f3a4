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

/// A graph or output name: a bare word when the lexer reads it as one
/// (letters, digits, `_`, not starting with a digit), else quoted.
fn quote_word(s: &str) -> String {
    let mut chars = s.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
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

    // Fusion groups with more than one node, numbered in print order.
    let mut group_size: HashMap<u32, usize> = HashMap::new();
    for &n in &order {
        if let Some(gid) = g.node(n).group {
            *group_size.entry(gid).or_default() += 1;
        }
    }
    let mut group_num: HashMap<u32, usize> = HashMap::new();
    let mut group_kind: Vec<(usize, &'static str)> = Vec::new();
    for &n in &order {
        let Some(gid) = g.node(n).group else { continue };
        if group_size[&gid] < 2 {
            continue;
        }
        let k = *group_num.entry(gid).or_insert_with(|| {
            group_kind.push((0, "injective"));
            group_kind.len() - 1
        });
        use crate::op::FusionKind as F;
        let rank = match g.node(n).op.fusion_kind() {
            F::OutFusable => (3, "matmul/conv with fused epilogue"),
            F::Reduction => (2, "reduction with fused producers and consumers"),
            F::Elementwise | F::Broadcast => (1, "elementwise"),
            _ => (0, "injective"),
        };
        if rank.0 > group_kind[k].0 {
            group_kind[k] = rank;
        }
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "graph {} {{",
        quote_word(if g.name.is_empty() { "main" } else { &g.name })
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
        if let Some(k) = node.group.and_then(|gid| group_num.get(&gid)) {
            let _ = write!(s, "  # fusion group {k}");
        }
        s.push('\n');
    }
    for (name, v) in g.outputs() {
        let _ = writeln!(s, "  output {} = {}", quote_word(name), name_of(*v));
    }
    for (k, (_, kind)) in group_kind.iter().enumerate() {
        let size = group_num
            .iter()
            .find(|(_, &num)| num == k)
            .map_or(0, |(gid, _)| group_size[gid]);
        let _ = writeln!(s, "  # fusion group {k}: {kind}, {size} nodes, one kernel");
    }
    s.push_str("}\n");
    s
}
