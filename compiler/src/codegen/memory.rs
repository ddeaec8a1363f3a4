//! The memory planner: one static arena for every materialised f32 value.
//!
//! Time runs over the steps: graph inputs are written at time 0, step `i`
//! runs at time `i + 1`, graph outputs are read at the end. A value lives
//! from the step that writes it to its last reader. Values that must share
//! memory form one buffer: a reshape-like `Alias` step's result and its
//! input, and a kernel's output with an input it is the last reader of,
//! when the kernel is one elementwise store that reads that input exactly
//! where it writes (the in-place form the JIT supports). Buffers are then
//! placed largest first at the lowest 64-byte-aligned offset that no buffer
//! live at the same time overlaps (greedy by size, as in TFLite's planner).

use kiln_ir::kernel::{Expr, Kernel, Role, Stmt};
use kiln_ir::program::{Loc, Program, Step};
use kiln_ir::{DType, Graph, ValueDef, ValueId};

const ALIGN: usize = 64;

/// Values read and written by a step.
pub(crate) fn reads_writes(
    g: &Graph,
    kernels: &[Kernel],
    s: &Step,
) -> (Vec<ValueId>, Vec<ValueId>) {
    match s {
        Step::Kernel { kernel, args, .. } => {
            let k = &kernels[*kernel as usize];
            let (mut r, mut w) = (Vec::new(), Vec::new());
            for (a, b) in args.iter().zip(&k.bufs) {
                match b.role {
                    Role::Input => r.push(*a),
                    Role::Output => w.push(*a),
                }
            }
            (r, w)
        }
        Step::MatMul {
            node,
            out,
            epilogue,
            ..
        }
        | Step::Conv {
            node,
            out,
            epilogue,
            ..
        } => {
            let mut r: Vec<ValueId> = g.node(*node).inputs.to_vec();
            if let Some(e) = epilogue {
                // Buffer args other than the anchor and the output.
                r.extend(e.args.iter().flatten().filter(|&&v| v != *out));
            }
            (r, vec![*out])
        }
        Step::Ref { node } | Step::Alias { node } | Step::Pool { node } => {
            let n = g.node(*node);
            (n.inputs.to_vec(), n.outputs.to_vec())
        }
    }
}

fn find(p: &mut [usize], mut x: usize) -> usize {
    while p[x] != x {
        p[x] = p[p[x]];
        x = p[x];
    }
    x
}

/// Whether kernel `k` may write buffer `out` over input buffer `inp`.
fn in_place_ok(k: &Kernel, inp: usize, out: usize) -> bool {
    let [Stmt::Store { dst, .. }] = k.stmts.as_slice() else {
        return false;
    };
    dst.buf as usize == out
        && k.exprs.iter().all(|e| match e {
            // The same element the store writes (buffers differ by number).
            Expr::Load(a) if a.buf as usize == inp => {
                a.offset == dst.offset
                    && a.outer_strides == dst.outer_strides
                    && a.inner_stride == dst.inner_stride
            }
            _ => true,
        })
}

pub(crate) fn plan(graph: Graph, kernels: Vec<Kernel>, steps: Vec<Step>) -> Program {
    let g = &graph;
    let nv = g.num_values();
    let end = steps.len() + 1;
    let mut locs = vec![Loc::None; nv];
    let mut def = vec![usize::MAX; nv];
    let mut last = vec![0usize; nv];
    let mut arena = vec![false; nv];
    let mut size = vec![0usize; nv];
    let mut touch = |v: ValueId, locs: &mut Vec<Loc>, arena: &mut Vec<bool>| {
        let val = g.value(v);
        size[v.index()] = val.ty.size_bytes().unwrap_or(0);
        let constant = match val.def {
            ValueDef::Node { node, .. } => matches!(g.node(node).op, kiln_ir::Op::Constant(_)),
            _ => false,
        };
        locs[v.index()] = if matches!(val.def, ValueDef::Param) || constant {
            Loc::Param
        } else if val.ty.dtype == DType::F32 {
            arena[v.index()] = true;
            Loc::None
        } else {
            Loc::Boxed
        };
    };
    for &v in g.inputs() {
        touch(v, &mut locs, &mut arena);
    }
    let rw: Vec<(Vec<ValueId>, Vec<ValueId>)> =
        steps.iter().map(|s| reads_writes(g, &kernels, s)).collect();
    for (i, (r, w)) in rw.iter().enumerate() {
        let t = i + 1;
        for &v in r {
            touch(v, &mut locs, &mut arena);
            last[v.index()] = last[v.index()].max(t);
        }
        for &v in w {
            touch(v, &mut locs, &mut arena);
            def[v.index()] = def[v.index()].min(t);
            last[v.index()] = last[v.index()].max(t);
        }
    }
    for (_, v) in g.outputs() {
        touch(*v, &mut locs, &mut arena);
        last[v.index()] = end;
    }
    // Graph inputs are read where the caller keeps them; outputs written by
    // a step (and in no alias) go straight to the returned tensors.
    let mut in_alias = vec![false; nv];
    for s in &steps {
        if let Step::Alias { node } = s {
            let n = g.node(*node);
            in_alias[n.inputs[0].index()] = true;
            in_alias[n.outputs[0].index()] = true;
        }
    }
    for &v in g.inputs() {
        if arena[v.index()] {
            arena[v.index()] = false;
            locs[v.index()] = Loc::Input;
        }
    }
    for (_, v) in g.outputs() {
        let i = v.index();
        if arena[i] && !in_alias[i] && def[i] != usize::MAX {
            arena[i] = false;
            locs[i] = Loc::Output;
        }
    }
    let bytes = |v: usize| size[v];
    // Buffers: union-find over values.
    let mut parent: Vec<usize> = (0..nv).collect();
    for s in &steps {
        if let Step::Alias { node } = s {
            let n = g.node(*node);
            let (a, b) = (n.inputs[0].index(), n.outputs[0].index());
            if arena[a] && arena[b] {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[rb] = ra;
            }
        }
    }
    let class_span = |parent: &mut Vec<usize>| {
        let mut span = vec![(usize::MAX, 0usize); nv];
        for v in 0..nv {
            if arena[v] && def[v] != usize::MAX {
                let r = find(parent, v);
                span[r].0 = span[r].0.min(def[v]);
                span[r].1 = span[r].1.max(last[v]).max(def[v]);
            }
        }
        span
    };
    let mut span = class_span(&mut parent);
    for (i, s) in steps.iter().enumerate() {
        let t = i + 1;
        let Step::Kernel { kernel, args, .. } = s else {
            continue;
        };
        let k = &kernels[*kernel as usize];
        let Some(ob) = k.bufs.iter().position(|b| b.role == Role::Output) else {
            continue;
        };
        let out = args[ob].index();
        for (ib, a) in args.iter().enumerate() {
            let x = a.index();
            if k.bufs[ib].role != Role::Input || !arena[x] || bytes(x) != bytes(out) {
                continue;
            }
            let (rx, ro) = (find(&mut parent, x), find(&mut parent, out));
            if rx == ro || span[rx].1 != t || !in_place_ok(k, ib, ob) {
                continue;
            }
            parent[ro] = rx;
            span[rx] = (span[rx].0.min(span[ro].0), span[ro].1.max(t));
            break;
        }
    }
    span = class_span(&mut parent);
    // Place the buffers, largest first.
    let mut classes: Vec<(usize, usize, usize, usize)> = Vec::new(); // (root, size, start, end)
    let mut unplanned = 0usize;
    for v in 0..nv {
        if arena[v] && def[v] != usize::MAX {
            if find(&mut parent, v) == v {
                classes.push((v, bytes(v), span[v].0, span[v].1));
            }
            let aliased = steps.iter().any(
                |s| matches!(s, Step::Alias { node } if g.node(*node).outputs[0].index() == v),
            );
            if !aliased {
                unplanned += bytes(v);
            }
        }
    }
    classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, size, start, end)
    let mut offset_of = vec![0usize; nv];
    let mut arena_bytes = 0usize;
    for &(root, size, start, stop) in &classes {
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|p| p.2 <= stop && start <= p.3)
            .map(|p| (p.0, p.0 + p.1))
            .collect();
        busy.sort_unstable();
        let mut off = 0usize;
        for (b0, b1) in busy {
            if off + size <= b0 {
                break;
            }
            off = off.max(b1.div_ceil(ALIGN) * ALIGN);
        }
        placed.push((off, size, start, stop));
        offset_of[root] = off;
        arena_bytes = arena_bytes.max(off + size);
    }
    for v in 0..nv {
        if arena[v] && def[v] != usize::MAX {
            let r = find(&mut parent, v);
            locs[v] = Loc::Arena {
                offset: offset_of[r],
                len: bytes(v),
            };
        }
    }
    Program {
        graph,
        kernels,
        steps,
        locs,
        arena_bytes: arena_bytes.div_ceil(ALIGN) * ALIGN,
        unplanned_bytes: unplanned,
    }
}
