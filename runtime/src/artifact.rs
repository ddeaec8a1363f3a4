//! The `.kiln` artifact: a compiled [`Program`] and its weights in one file,
//! written by `kiln compile` and loaded by [`crate::session::Session`].
//!
//! The byte layout and the compatibility rule are documented in
//! ARCHITECTURE.md ("The .kiln artifact"). In short: a 64-byte header
//! (magic, format version, file length, section count, CRC32s of the header
//! and of the section table), a table of 32-byte section entries (kind,
//! offset, length, CRC32), then the sections, each 64-byte aligned:
//!
//! - `meta`: the producer's version and the target signature;
//! - `graph`: the optimised graph in canonical `.kir` text;
//! - `kernels`: the kernel IR programs in their binary codec;
//! - `plan`: the steps, one location per value, the arena size, and a
//!   binding table that proves the parsed graph numbers its values and nodes
//!   as the steps expect;
//! - `weights`: an index (name, dtype, shape, offset, length) and the raw
//!   little-endian data, each tensor 64-byte aligned in the file;
//! - `ptx`: reserved for CUDA modules (present, empty).
//!
//! The reader never panics and never trusts a number from the file: every
//! offset, length, count and index is bounds-checked before use, every
//! section's checksum is verified before it is parsed, and the program is
//! validated (locations against value sizes, steps against the graph and
//! the kernels) before the executor sees it.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use kiln_ir::kernel::Kernel;
use kiln_ir::program::{Epilogue, Loc, Program, Step};
use kiln_ir::{DType, Graph, NodeId, Op, Tensor, ValueDef, ValueId, Weights};

use crate::gemm::Isa;

/// The first eight bytes of every artifact (PNG-style: a high byte, the
/// name, and line endings that text-mode transfers would mangle).
pub const MAGIC: [u8; 8] = *b"\x89KILN\r\n\x1a";
/// The format's major version: a reader loads only its own major version.
pub const FORMAT_MAJOR: u16 = 1;
/// The format's minor version: minor revisions only add section kinds that
/// older readers of the same major version skip.
pub const FORMAT_MINOR: u16 = 0;

const HEADER_LEN: usize = 64;
const ENTRY_LEN: usize = 32;
const ALIGN: usize = 64;
/// More sections than this is a corrupt table, not a real artifact.
const MAX_SECTIONS: usize = 64;

/// Whether `bytes` starts like an artifact (for tools that accept several
/// file kinds).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

/// Why an artifact could not be written or loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("not a kiln artifact (bad magic number)")]
    BadMagic,
    #[error("artifact format version {major}.{minor} is not supported (this kiln reads {FORMAT_MAJOR}.x)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("truncated artifact: {what} needs {need} bytes, the file has {have}")]
    Truncated { what: String, need: u64, have: u64 },
    #[error("checksum mismatch in {what}: stored {stored:#010x}, computed {actual:#010x}")]
    Checksum {
        what: String,
        stored: u32,
        actual: u32,
    },
    #[error("out-of-range {what}: {msg}")]
    OutOfRange { what: String, msg: String },
    #[error("malformed {section} section: {msg}")]
    Malformed { section: &'static str, msg: String },
    #[error("the artifact has no {0} section")]
    MissingSection(&'static str),
    #[error("this CPU lacks `{feature}`, which the artifact's {isa} kernels require, and the artifact forbids the portable fallback")]
    MissingFeature { isa: String, feature: String },
    #[error("cannot write an artifact: {0}")]
    Write(String),
}

fn malformed(section: &'static str, msg: impl Into<String>) -> ArtifactError {
    ArtifactError::Malformed {
        section,
        msg: msg.into(),
    }
}

/// A section's kind, as stored in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Meta = 1,
    Graph = 2,
    Kernels = 3,
    Plan = 4,
    Weights = 5,
    Ptx = 6,
}

impl SectionKind {
    pub const ALL: [SectionKind; 6] = [
        SectionKind::Meta,
        SectionKind::Graph,
        SectionKind::Kernels,
        SectionKind::Plan,
        SectionKind::Weights,
        SectionKind::Ptx,
    ];
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Meta => "meta",
            SectionKind::Graph => "graph",
            SectionKind::Kernels => "kernels",
            SectionKind::Plan => "plan",
            SectionKind::Weights => "weights",
            SectionKind::Ptx => "ptx",
        }
    }
    fn from_code(c: u32) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| *k as u32 == c)
    }
}

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The stored kind code ([`SectionKind`] as a number; unknown codes of a
    /// newer minor version are listed and skipped).
    pub kind: u32,
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
}

impl SectionInfo {
    pub fn name(&self) -> &'static str {
        SectionKind::from_code(self.kind).map_or("unknown", SectionKind::name)
    }
}

/// The fixed header and the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub major: u16,
    pub minor: u16,
    pub file_len: u64,
    pub header_crc: u32,
    pub table_crc: u32,
    pub sections: Vec<SectionInfo>,
}

/// What CPU the artifact's kernels need. Kernel IR is JIT-compiled at load
/// time, so a `cpu` artifact (no ISA) runs anywhere with the best GEMM/conv
/// microkernels the host has; an artifact compiled for an ISA pins that
/// microkernel family (the results are then bitwise those of that ISA) and
/// requires its CPU features.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSignature {
    /// The GEMM/conv microkernel family the compile targeted; `None`: any.
    pub isa: Option<Isa>,
    /// The CPU features that ISA requires (e.g. `avx2`, `fma`).
    pub features: Vec<String>,
    /// Whether a CPU without them may run the portable kernels instead.
    pub portable_fallback: bool,
    /// The architecture the compile targeted (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// CUDA compute capabilities of the PTX modules (none yet).
    pub cuda_archs: Vec<u32>,
}

impl TargetSignature {
    /// Any CPU: the loader picks the best ISA the host has.
    pub fn any_cpu() -> Self {
        TargetSignature {
            isa: None,
            features: Vec::new(),
            portable_fallback: true,
            arch: std::env::consts::ARCH.to_string(),
            cuda_archs: Vec::new(),
        }
    }

    /// Pinned to `isa`, requiring its CPU features.
    pub fn for_isa(isa: Isa, portable_fallback: bool) -> Self {
        let (arch, features): (&str, &[&str]) = match isa {
            Isa::Portable => (std::env::consts::ARCH, &[]),
            Isa::Avx2 => ("x86_64", &["avx2", "fma"]),
            Isa::Avx512 => ("x86_64", &["avx512f", "avx2", "fma"]),
        };
        TargetSignature {
            isa: Some(isa),
            features: features.iter().map(|s| s.to_string()).collect(),
            portable_fallback,
            arch: arch.to_string(),
            cuda_archs: Vec::new(),
        }
    }

    /// The ISA to run with on this host (see [`TargetSignature::select_isa_with`]).
    pub fn select_isa(&self) -> Result<Isa, ArtifactError> {
        self.select_isa_with(host_has)
    }

    /// The ISA to run with on a host that has the features `has` says it
    /// has: the pinned ISA when every required feature is there, else the
    /// portable kernels when the artifact allows it, else an error naming
    /// the first missing feature. An unpinned artifact takes the best ISA
    /// the host has.
    pub fn select_isa_with(&self, has: impl Fn(&str) -> bool) -> Result<Isa, ArtifactError> {
        let Some(isa) = self.isa else {
            return Ok(Isa::ALL
                .into_iter()
                .rev()
                .find(|i| i.is_available() && isa_features(*i).iter().all(|f| has(f)))
                .unwrap_or(Isa::Portable));
        };
        let arch_ok = self.arch == std::env::consts::ARCH || isa == Isa::Portable;
        let missing = if arch_ok {
            self.features.iter().find(|f| !has(f)).cloned()
        } else {
            Some(format!("the {} architecture", self.arch))
        };
        match missing {
            None if isa.is_available() || isa == Isa::Portable => Ok(isa),
            None => Some(Isa::Portable)
                .filter(|_| self.portable_fallback)
                .ok_or_else(|| ArtifactError::MissingFeature {
                    isa: isa.to_string(),
                    feature: isa_features(isa).first().unwrap_or(&"?").to_string(),
                }),
            Some(_) if self.portable_fallback => Ok(Isa::Portable),
            Some(feature) => Err(ArtifactError::MissingFeature {
                isa: isa.to_string(),
                feature,
            }),
        }
    }
}

fn isa_features(isa: Isa) -> &'static [&'static str] {
    match isa {
        Isa::Portable => &[],
        Isa::Avx2 => &["avx2", "fma"],
        Isa::Avx512 => &["avx512f", "avx2", "fma"],
    }
}

/// Whether this CPU has the named feature (unknown names: no).
pub fn host_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx2" => std::is_x86_feature_detected!("avx2"),
            "fma" => std::is_x86_feature_detected!("fma"),
            "avx512f" => std::is_x86_feature_detected!("avx512f"),
            "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

impl fmt::Display for TargetSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.isa {
            None => write!(f, "cpu (any {}; best ISA chosen at load)", self.arch)?,
            Some(isa) => {
                write!(f, "cpu-{isa} ({}", self.arch)?;
                if !self.features.is_empty() {
                    write!(f, "; requires {}", self.features.join(", "))?;
                }
                write!(
                    f,
                    "; portable fallback {})",
                    if self.portable_fallback {
                        "allowed"
                    } else {
                        "forbidden"
                    }
                )?;
            }
        }
        if !self.cuda_archs.is_empty() {
            write!(f, "; cuda {:?}", self.cuda_archs)?;
        }
        Ok(())
    }
}

/// What the writer records besides the program.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub target: TargetSignature,
    /// e.g. `kiln 0.1.0`.
    pub producer: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target: TargetSignature::any_cpu(),
            producer: format!("kiln-runtime {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A loaded artifact: everything needed to build an executor.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub header: Header,
    pub producer: String,
    pub target: TargetSignature,
    pub program: Program,
    pub weights: Weights,
}

// ---------------------------------------------------------------- writing

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn idx(&mut self, v: usize) {
        self.u32(v as u32);
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn pad_to(&mut self, align: usize) {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
    }
}

/// Constants bigger than this many bytes, held like weights, are written
/// to the weights section (raw bytes) rather than inline in the graph text.
const INLINE_CONST_BYTES: usize = 64;

/// Move the data of large constants that the plan holds like weights
/// (`Loc::Param`, named by no step) out of the graph: each becomes a param
/// `const.K` whose weight is the constant's tensor. The executor treats
/// both the same, and the graph text stays small.
fn externalize_constants(prog: &Program, weights: &Weights) -> (Program, Weights) {
    let mut g = prog.graph.clone();
    // Fusion groups print as comments the parser drops: leave them out.
    for n in g.node_ids() {
        g.node_mut(n).group = None;
    }
    let mut w = weights.clone();
    let mut locs = prog.locs.clone();
    let named: std::collections::HashSet<NodeId> = prog
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::MatMul { node, .. } | Step::Conv { node, .. } => vec![*node],
            Step::Pool { node } | Step::Ref { node } | Step::Alias { node } => vec![*node],
            Step::Kernel { .. } => vec![],
        })
        .collect();
    let mut used: std::collections::HashSet<String> = g
        .inputs()
        .iter()
        .chain(g.params())
        .filter_map(|&v| g.value(v).name.clone())
        .collect();
    let mut remap: std::collections::HashMap<ValueId, ValueId> = Default::default();
    let mut removed: std::collections::HashSet<NodeId> = Default::default();
    let order = g.order().unwrap_or_else(|_| g.node_ids());
    let mut k = 0usize;
    for n in order {
        let node = g.node(n);
        let (Op::Constant(c), [out]) = (&node.op, node.outputs.as_slice()) else {
            continue;
        };
        let out = *out;
        let bytes = c.value.len() * c.value.dtype().size_bytes();
        if bytes <= INLINE_CONST_BYTES || prog.loc(out) != Loc::Param || named.contains(&n) {
            continue;
        }
        let name = loop {
            let cand = format!("const.{k}");
            k += 1;
            if used.insert(cand.clone()) {
                break cand;
            }
        };
        let t = c.value.clone();
        let p = g.add_param(name.clone(), g.value(out).ty.clone());
        w.insert(name, t);
        g.replace_all_uses(out, p);
        g.remove_node(n);
        locs.resize(g.num_values(), Loc::None);
        locs[p.index()] = Loc::Param;
        locs[out.index()] = Loc::None;
        remap.insert(out, p);
        removed.insert(n);
    }
    let v = |x: &ValueId| *remap.get(x).unwrap_or(x);
    let ns = |x: &[NodeId]| -> Vec<NodeId> {
        x.iter().copied().filter(|n| !removed.contains(n)).collect()
    };
    let epi = |e: &Option<Epilogue>| {
        e.as_ref().map(|e| Epilogue {
            kernel: e.kernel,
            args: e.args.iter().map(|a| a.as_ref().map(v)).collect(),
        })
    };
    let steps = prog
        .steps
        .iter()
        .map(|s| match s {
            Step::Kernel {
                kernel,
                args,
                nodes,
            } => Step::Kernel {
                kernel: *kernel,
                args: args.iter().map(v).collect(),
                nodes: ns(nodes),
            },
            Step::MatMul {
                node,
                out,
                epilogue,
                nodes,
            } => Step::MatMul {
                node: *node,
                out: v(out),
                epilogue: epi(epilogue),
                nodes: ns(nodes),
            },
            Step::Conv {
                node,
                out,
                epilogue,
                nodes,
            } => Step::Conv {
                node: *node,
                out: v(out),
                epilogue: epi(epilogue),
                nodes: ns(nodes),
            },
            other => other.clone(),
        })
        .collect();
    (
        Program {
            graph: g,
            kernels: prog.kernels.clone(),
            steps,
            locs,
            arena_bytes: prog.arena_bytes,
            unplanned_bytes: prog.unplanned_bytes,
        },
        w,
    )
}

/// The program with its graph replaced by `parse(print(graph))` and every
/// id remapped to that graph's numbering, which is what a reader gets back.
fn canonicalize(prog: &Program) -> Result<(String, Program), ArtifactError> {
    let werr = |m: String| ArtifactError::Write(m);
    let g = &prog.graph;
    let text = kiln_ir::print(g);
    let p = kiln_ir::parse(&text)
        .map_err(|e| werr(format!("the graph does not parse back from its text: {e}")))?;
    let mut vmap: Vec<Option<ValueId>> = vec![None; g.num_values()];
    let mut nmap: std::collections::HashMap<NodeId, NodeId> = Default::default();
    if g.inputs().len() != p.inputs().len() || g.params().len() != p.params().len() {
        return Err(werr(
            "inputs or params changed through the text form".into(),
        ));
    }
    for (a, b) in g
        .inputs()
        .iter()
        .zip(p.inputs())
        .chain(g.params().iter().zip(p.params()))
    {
        vmap[a.index()] = Some(*b);
    }
    let oa = g
        .order()
        .map_err(|n| werr(format!("cycle at {}", g.label(n))))?;
    let ob = p
        .order()
        .map_err(|n| werr(format!("cycle at {}", p.label(n))))?;
    if oa.len() != ob.len() {
        return Err(werr("node count changed through the text form".into()));
    }
    for (&a, &b) in oa.iter().zip(&ob) {
        let (na, nb) = (g.node(a), p.node(b));
        if na.op.spelling() != nb.op.spelling() || na.outputs.len() != nb.outputs.len() {
            return Err(werr(format!(
                "node {} changed through the text form",
                g.label(a)
            )));
        }
        nmap.insert(a, b);
        for (x, y) in na.outputs.iter().zip(&nb.outputs) {
            vmap[x.index()] = Some(*y);
        }
    }
    let v = |x: ValueId| {
        vmap.get(x.index()).copied().flatten().ok_or_else(|| {
            werr(format!(
                "a step uses value {} that the graph no longer defines",
                x.index()
            ))
        })
    };
    let n = |x: NodeId| {
        nmap.get(&x).copied().ok_or_else(|| {
            werr(format!(
                "a step uses node {} that the graph no longer has",
                x.index()
            ))
        })
    };
    let nodes = |ns: &[NodeId]| ns.iter().map(|&x| n(x)).collect::<Result<Vec<_>, _>>();
    let epi = |e: &Option<Epilogue>| -> Result<Option<Epilogue>, ArtifactError> {
        e.as_ref()
            .map(|e| {
                Ok(Epilogue {
                    kernel: e.kernel,
                    args: e
                        .args
                        .iter()
                        .map(|a| a.map(v).transpose())
                        .collect::<Result<_, _>>()?,
                })
            })
            .transpose()
    };
    let mut steps = Vec::with_capacity(prog.steps.len());
    for s in &prog.steps {
        steps.push(match s {
            Step::Kernel {
                kernel,
                args,
                nodes: ns,
            } => Step::Kernel {
                kernel: *kernel,
                args: args.iter().map(|&a| v(a)).collect::<Result<_, _>>()?,
                nodes: nodes(ns)?,
            },
            Step::MatMul {
                node,
                out,
                epilogue,
                nodes: ns,
            } => Step::MatMul {
                node: n(*node)?,
                out: v(*out)?,
                epilogue: epi(epilogue)?,
                nodes: nodes(ns)?,
            },
            Step::Conv {
                node,
                out,
                epilogue,
                nodes: ns,
            } => Step::Conv {
                node: n(*node)?,
                out: v(*out)?,
                epilogue: epi(epilogue)?,
                nodes: nodes(ns)?,
            },
            Step::Pool { node } => Step::Pool { node: n(*node)? },
            Step::Ref { node } => Step::Ref { node: n(*node)? },
            Step::Alias { node } => Step::Alias { node: n(*node)? },
        });
    }
    let mut locs = vec![Loc::None; p.num_values()];
    for (i, m) in vmap.iter().enumerate() {
        if let Some(nv) = m {
            locs[nv.index()] = prog.locs.get(i).copied().unwrap_or(Loc::None);
        }
    }
    Ok((
        text,
        Program {
            graph: p,
            kernels: prog.kernels.clone(),
            steps,
            locs,
            arena_bytes: prog.arena_bytes,
            unplanned_bytes: prog.unplanned_bytes,
        },
    ))
}

fn encode_meta(opts: &WriteOptions) -> Vec<u8> {
    let mut o = Out::default();
    o.str(&opts.producer);
    let t = &opts.target;
    o.str(t.isa.map_or("any", |i| i.name()));
    o.u8(t.portable_fallback as u8);
    o.str(&t.arch);
    o.u32(t.features.len() as u32);
    for f in &t.features {
        o.str(f);
    }
    o.u32(t.cuda_archs.len() as u32);
    for &a in &t.cuda_archs {
        o.u32(a);
    }
    o.0
}

fn encode_kernels(ks: &[Kernel]) -> Vec<u8> {
    let mut o = Out::default();
    o.u32(ks.len() as u32);
    for k in ks {
        let b = k.encode();
        o.u32(b.len() as u32);
        o.0.extend_from_slice(&b);
    }
    o.0
}

fn def_code(g: &Graph, v: ValueId) -> (u8, u32, u32) {
    match g.value(v).def {
        ValueDef::Input(k) => (0, k as u32, 0),
        ValueDef::Param => (1, 0, 0),
        ValueDef::Node { node, index } => (2, node.index() as u32, index as u32),
    }
}

/// A CRC32 of the graph's numbering: per value its definition (input
/// position, param, or node id and output index), per node its id and op.
/// Equal digests mean the ids the plan uses bind to the same things.
fn binding_digest(g: &Graph) -> u32 {
    let mut o = Out::default();
    for i in 0..g.num_values() {
        let (t, a, b) = def_code(g, ValueId::from_index(i));
        o.u8(t);
        o.u32(a);
        o.u32(b);
    }
    for n in g.node_ids() {
        o.idx(n.index());
        o.str(g.node(n).op.spelling());
    }
    crc32fast::hash(&o.0)
}

fn encode_plan(p: &Program) -> Vec<u8> {
    let g = &p.graph;
    let mut o = Out::default();
    o.u64(p.arena_bytes as u64);
    o.u64(p.unplanned_bytes as u64);
    // How the parsed graph must number its values and nodes.
    o.idx(g.num_values());
    o.idx(g.node_count());
    o.u32(binding_digest(g));
    for l in &p.locs {
        match *l {
            Loc::None => o.u8(0),
            Loc::Arena { offset, len } => {
                o.u8(1);
                o.u64(offset as u64);
                o.u64(len as u64);
            }
            Loc::Param => o.u8(2),
            Loc::Boxed => o.u8(3),
            Loc::Input => o.u8(4),
            Loc::Output => o.u8(5),
        }
    }
    o.idx(p.steps.len());
    let nodes = |o: &mut Out, ns: &[NodeId]| {
        o.idx(ns.len());
        for n in ns {
            o.idx(n.index());
        }
    };
    let epi = |o: &mut Out, e: &Option<Epilogue>| match e {
        None => o.u8(0),
        Some(e) => {
            o.u8(1);
            o.u32(e.kernel);
            o.idx(e.args.len());
            for a in &e.args {
                match a {
                    None => o.u32(u32::MAX),
                    Some(v) => o.idx(v.index()),
                }
            }
        }
    };
    for s in &p.steps {
        match s {
            Step::Kernel {
                kernel,
                args,
                nodes: ns,
            } => {
                o.u8(0);
                o.u32(*kernel);
                o.idx(args.len());
                for a in args {
                    o.idx(a.index());
                }
                nodes(&mut o, ns);
            }
            Step::MatMul {
                node,
                out,
                epilogue,
                nodes: ns,
            }
            | Step::Conv {
                node,
                out,
                epilogue,
                nodes: ns,
            } => {
                o.u8(if matches!(s, Step::MatMul { .. }) {
                    1
                } else {
                    2
                });
                o.idx(node.index());
                o.idx(out.index());
                epi(&mut o, epilogue);
                nodes(&mut o, ns);
            }
            Step::Pool { node } => {
                o.u8(3);
                o.idx(node.index());
            }
            Step::Ref { node } => {
                o.u8(4);
                o.idx(node.index());
            }
            Step::Alias { node } => {
                o.u8(5);
                o.idx(node.index());
            }
        }
    }
    o.0
}

/// The weights section: the index, then the data at 64-byte-aligned offsets
/// (relative to the section, which is itself 64-byte aligned in the file).
fn encode_weights(g: &Graph, w: &Weights) -> Result<Vec<u8>, ArtifactError> {
    let mut tensors: Vec<(&str, &Tensor)> = Vec::new();
    for &v in g.params() {
        let name = g.value(v).name.as_deref().unwrap_or("");
        let t = w
            .get(name)
            .ok_or_else(|| ArtifactError::Write(format!("param `{name}` has no weight")))?;
        tensors.push((name, t));
    }
    let mut index = Out::default();
    index.idx(tensors.len());
    // Index size first, so data offsets are known while writing it.
    let index_len: usize = 4 + tensors
        .iter()
        .map(|(n, t)| 4 + n.len() + 4 + t.dtype().base_name().len() + 4 + 8 * t.shape().len() + 16)
        .sum::<usize>();
    let mut off = index_len.next_multiple_of(ALIGN);
    let mut datas = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let bytes = t.to_le_bytes();
        index.str(name);
        index.str(t.dtype().base_name());
        index.idx(t.shape().len());
        for &d in t.shape() {
            index.u64(d as u64);
        }
        index.u64(off as u64);
        index.u64(bytes.len() as u64);
        datas.push((off, bytes));
        off = (off + datas.last().map_or(0, |d| d.1.len())).next_multiple_of(ALIGN);
    }
    debug_assert_eq!(index.0.len(), index_len);
    let mut out = index;
    for (off, bytes) in datas {
        out.0.resize(off, 0);
        out.0.extend_from_slice(&bytes);
    }
    Ok(out.0)
}

/// Write `program` and its `weights` as artifact bytes. The program's graph
/// is renumbered into the canonical order its text form parses back to.
pub fn write(
    program: &Program,
    weights: &Weights,
    opts: &WriteOptions,
) -> Result<Vec<u8>, ArtifactError> {
    let (program, weights) = externalize_constants(program, weights);
    let (text, prog) = canonicalize(&program)?;
    validate_program(&prog).map_err(|e| ArtifactError::Write(e.to_string()))?;
    let weights = &weights;
    let sections: Vec<(SectionKind, Vec<u8>)> = vec![
        (SectionKind::Meta, encode_meta(opts)),
        (SectionKind::Graph, text.into_bytes()),
        (SectionKind::Kernels, encode_kernels(&prog.kernels)),
        (SectionKind::Plan, encode_plan(&prog)),
        (SectionKind::Weights, encode_weights(&prog.graph, weights)?),
        (SectionKind::Ptx, Vec::new()),
    ];
    let table_end = HEADER_LEN + ENTRY_LEN * sections.len();
    let mut off = table_end.next_multiple_of(ALIGN);
    let mut table = Out::default();
    for (kind, bytes) in &sections {
        table.u32(*kind as u32);
        table.u32(0);
        table.u64(off as u64);
        table.u64(bytes.len() as u64);
        table.u32(crc32fast::hash(bytes));
        table.u32(0);
        off = (off + bytes.len()).next_multiple_of(ALIGN);
    }
    // The last section ends the file (no padding after it).
    let file_len = sections.last().map_or(table_end, |(_, b)| {
        off - b.len().next_multiple_of(ALIGN) + b.len()
    });
    let mut out = Out(Vec::with_capacity(file_len));
    out.0.extend_from_slice(&MAGIC);
    out.0.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.0.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.u32(0); // flags
    out.u64(file_len as u64);
    out.idx(sections.len());
    out.u32(crc32fast::hash(&table.0));
    out.0.resize(HEADER_LEN - 4, 0);
    let hcrc = crc32fast::hash(&out.0);
    out.u32(hcrc);
    out.0.extend_from_slice(&table.0);
    for (_, bytes) in &sections {
        out.pad_to(ALIGN);
        out.0.extend_from_slice(bytes);
    }
    debug_assert_eq!(out.0.len(), file_len);
    Ok(out.0)
}

/// Recompute the header, table and section checksums of artifact bytes in
/// place (for fuzzing and robustness tests that want to reach the section
/// parsers past the checksums). Does nothing to bytes whose table is out of
/// range.
pub fn reseal(bytes: &mut [u8]) {
    let Ok(h) = read_header_unchecked(bytes) else {
        return;
    };
    for (k, s) in h.sections.iter().enumerate() {
        let (Ok(a), Ok(l)) = (usize::try_from(s.offset), usize::try_from(s.len)) else {
            continue;
        };
        if let Some(data) = a.checked_add(l).and_then(|e| bytes.get(a..e)) {
            let c = crc32fast::hash(data);
            let at = HEADER_LEN + k * ENTRY_LEN + 24;
            bytes[at..at + 4].copy_from_slice(&c.to_le_bytes());
        }
    }
    let table_end = HEADER_LEN + h.sections.len() * ENTRY_LEN;
    let c = crc32fast::hash(&bytes[HEADER_LEN..table_end]);
    bytes[28..32].copy_from_slice(&c.to_le_bytes());
    let c = crc32fast::hash(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&c.to_le_bytes());
}

// ---------------------------------------------------------------- reading

/// A bounds-checked little-endian reader over one section.
struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    section: &'static str,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8], section: &'static str) -> Self {
        Rd { b, pos: 0, section }
    }
    fn fail<T>(&self, msg: impl fmt::Display) -> Result<T, ArtifactError> {
        Err(malformed(
            self.section,
            format!("at byte {}: {msg}", self.pos),
        ))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        match self
            .pos
            .checked_add(n)
            .and_then(|e| self.b.get(self.pos..e))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => self.fail(format!(
                "{n} bytes wanted, {} left",
                self.b.len().saturating_sub(self.pos)
            )),
        }
    }
    fn u8(&mut self) -> Result<u8, ArtifactError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn usize(&mut self) -> Result<usize, ArtifactError> {
        let v = self.u64()?;
        usize::try_from(v).or_else(|_| self.fail(format!("{v} does not fit in memory")))
    }
    /// A count of items that take at least `min_size` bytes each: never more
    /// than the bytes left can hold.
    fn count(&mut self, min_size: usize) -> Result<usize, ArtifactError> {
        let n = self.u32()? as usize;
        let left = self.b.len() - self.pos;
        if n.saturating_mul(min_size.max(1)) > left {
            return self.fail(format!(
                "a count of {n} does not fit in the {left} bytes left"
            ));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<&'a str, ArtifactError> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        std::str::from_utf8(b).or_else(|_| self.fail("a string that is not UTF-8"))
    }
    fn value(&mut self, n: usize) -> Result<ValueId, ArtifactError> {
        let i = self.u32()? as usize;
        if i >= n {
            return self.fail(format!("value {i} out of range (the graph has {n})"));
        }
        Ok(ValueId::from_index(i))
    }
    fn node(&mut self, g: &Graph) -> Result<NodeId, ArtifactError> {
        let i = self.u32()? as usize;
        let id = NodeId::from_index(i);
        if i > u32::MAX as usize || !g.contains_node(id) {
            return self.fail(format!("node {i} does not exist"));
        }
        Ok(id)
    }
    fn done(&self) -> Result<(), ArtifactError> {
        if self.pos != self.b.len() {
            return self.fail(format!("{} trailing bytes", self.b.len() - self.pos));
        }
        Ok(())
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Magic, version, and the table, with lengths checked but no checksums.
fn read_header_unchecked(bytes: &[u8]) -> Result<Header, ArtifactError> {
    let have = bytes.len() as u64;
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            ArtifactError::Truncated {
                what: "the magic number".into(),
                need: MAGIC.len() as u64,
                have,
            }
        } else {
            ArtifactError::BadMagic
        });
    }
    if !is_artifact(bytes) {
        return Err(ArtifactError::BadMagic);
    }
    if bytes.len() < 12 {
        return Err(ArtifactError::Truncated {
            what: "the version".into(),
            need: 12,
            have,
        });
    }
    let (major, minor) = (le_u16(bytes, 8), le_u16(bytes, 10));
    if major != FORMAT_MAJOR {
        return Err(ArtifactError::UnsupportedVersion { major, minor });
    }
    if bytes.len() < HEADER_LEN {
        return Err(ArtifactError::Truncated {
            what: "the header".into(),
            need: HEADER_LEN as u64,
            have,
        });
    }
    let file_len = le_u64(bytes, 16);
    let count = le_u32(bytes, 24) as usize;
    if count > MAX_SECTIONS {
        return Err(ArtifactError::OutOfRange {
            what: "section count".into(),
            msg: format!("{count} sections (at most {MAX_SECTIONS})"),
        });
    }
    let table_end = HEADER_LEN + count * ENTRY_LEN;
    if bytes.len() < table_end {
        return Err(ArtifactError::Truncated {
            what: "the section table".into(),
            need: table_end as u64,
            have,
        });
    }
    let sections = (0..count)
        .map(|k| {
            let e = HEADER_LEN + k * ENTRY_LEN;
            SectionInfo {
                kind: le_u32(bytes, e),
                offset: le_u64(bytes, e + 8),
                len: le_u64(bytes, e + 16),
                crc32: le_u32(bytes, e + 24),
            }
        })
        .collect();
    Ok(Header {
        major,
        minor,
        file_len,
        table_crc: le_u32(bytes, 28),
        header_crc: le_u32(bytes, HEADER_LEN - 4),
        sections,
    })
}

/// Read and check the header and section table: magic, version, length,
/// checksums of the header and table, and every section's range. Section
/// contents are not checked (see [`Artifact::from_bytes`]).
pub fn read_header(bytes: &[u8]) -> Result<Header, ArtifactError> {
    let h = read_header_unchecked(bytes)?;
    let have = bytes.len() as u64;
    let actual = crc32fast::hash(&bytes[..HEADER_LEN - 4]);
    if actual != h.header_crc {
        return Err(ArtifactError::Checksum {
            what: "the header".into(),
            stored: h.header_crc,
            actual,
        });
    }
    if h.file_len != have {
        return Err(if h.file_len > have {
            ArtifactError::Truncated {
                what: "the file the header describes".into(),
                need: h.file_len,
                have,
            }
        } else {
            ArtifactError::OutOfRange {
                what: "file length".into(),
                msg: format!("the header says {} bytes, the file has {have}", h.file_len),
            }
        });
    }
    let table_end = HEADER_LEN + h.sections.len() * ENTRY_LEN;
    let actual = crc32fast::hash(&bytes[HEADER_LEN..table_end]);
    if actual != h.table_crc {
        return Err(ArtifactError::Checksum {
            what: "the section table".into(),
            stored: h.table_crc,
            actual,
        });
    }
    let mut prev_end = table_end as u64;
    for s in &h.sections {
        let oor = |msg: String| ArtifactError::OutOfRange {
            what: format!("{} section", s.name()),
            msg,
        };
        let end = s
            .offset
            .checked_add(s.len)
            .ok_or_else(|| oor(format!("offset {} + length {} overflows", s.offset, s.len)))?;
        if s.offset < prev_end || end > have || s.offset % ALIGN as u64 != 0 {
            return Err(oor(format!(
                "bytes {}..{end} are not a 64-byte-aligned range after byte {prev_end} within the {have}-byte file",
                s.offset
            )));
        }
        prev_end = end;
    }
    Ok(h)
}

fn section<'a>(bytes: &'a [u8], h: &Header, kind: SectionKind) -> Result<&'a [u8], ArtifactError> {
    section_with(bytes, h, kind, true)
}

/// [`section`], checking the CRC only if `check` (a section whose CRC was
/// computed while it streamed in is not checked again).
fn section_with<'a>(
    bytes: &'a [u8],
    h: &Header,
    kind: SectionKind,
    check: bool,
) -> Result<&'a [u8], ArtifactError> {
    let mut found = h.sections.iter().filter(|s| s.kind == kind as u32);
    let s = found
        .next()
        .ok_or(ArtifactError::MissingSection(kind.name()))?;
    if found.next().is_some() {
        return Err(malformed(kind.name(), "the table lists it twice"));
    }
    // `read_header` checked the range against the file.
    let data = &bytes[s.offset as usize..(s.offset + s.len) as usize];
    if !check {
        return Ok(data);
    }
    let actual = crc32fast::hash(data);
    if actual != s.crc32 {
        return Err(ArtifactError::Checksum {
            what: format!("the {} section", kind.name()),
            stored: s.crc32,
            actual,
        });
    }
    Ok(data)
}

fn decode_meta(b: &[u8]) -> Result<(String, TargetSignature), ArtifactError> {
    let mut r = Rd::new(b, "meta");
    let producer = r.str()?.to_string();
    let isa = match r.str()? {
        "any" => None,
        name => match Isa::parse(name) {
            Some(i) => Some(i),
            None => return r.fail(format!("unknown ISA `{name}`")),
        },
    };
    let portable_fallback = match r.u8()? {
        0 => false,
        1 => true,
        x => return r.fail(format!("fallback flag {x}")),
    };
    let arch = r.str()?.to_string();
    let nf = r.count(4)?;
    let features = (0..nf)
        .map(|_| r.str().map(str::to_string))
        .collect::<Result<_, _>>()?;
    let nc = r.count(4)?;
    let cuda_archs = (0..nc).map(|_| r.u32()).collect::<Result<_, _>>()?;
    r.done()?;
    Ok((
        producer,
        TargetSignature {
            isa,
            features,
            portable_fallback,
            arch,
            cuda_archs,
        },
    ))
}

fn decode_kernels(b: &[u8]) -> Result<Vec<Kernel>, ArtifactError> {
    let mut r = Rd::new(b, "kernels");
    let n = r.count(4)?;
    let mut ks = Vec::with_capacity(n);
    for i in 0..n {
        let len = r.count(1)?;
        let kb = r.take(len)?;
        ks.push(Kernel::decode(kb).map_err(|e| malformed("kernels", format!("kernel {i}: {e}")))?);
    }
    r.done()?;
    Ok(ks)
}

fn decode_plan(b: &[u8], g: Graph, kernels: Vec<Kernel>) -> Result<Program, ArtifactError> {
    let mut r = Rd::new(b, "plan");
    let arena_bytes = r.usize()?;
    let unplanned_bytes = r.usize()?;
    // The ids below must bind to the graph exactly as parsed.
    let nv = r.count(1)?;
    let nn = r.u32()? as usize;
    let digest = r.u32()?;
    if nv != g.num_values() || nn != g.node_count() || digest != binding_digest(&g) {
        return r.fail(format!(
            "the graph section numbers its values and nodes differently than the plan expects ({} values, {} nodes, binding digest {:#010x}; the plan was written for {nv}, {nn}, {digest:#010x})",
            g.num_values(),
            g.node_count(),
            binding_digest(&g)
        ));
    }
    let mut locs = Vec::with_capacity(nv);
    for _ in 0..nv {
        locs.push(match r.u8()? {
            0 => Loc::None,
            1 => Loc::Arena {
                offset: r.usize()?,
                len: r.usize()?,
            },
            2 => Loc::Param,
            3 => Loc::Boxed,
            4 => Loc::Input,
            5 => Loc::Output,
            t => return r.fail(format!("unknown location kind {t}")),
        });
    }
    let ns = r.count(5)?;
    let mut steps = Vec::with_capacity(ns);
    let nodes = |r: &mut Rd| -> Result<Vec<NodeId>, ArtifactError> {
        let n = r.count(4)?;
        (0..n).map(|_| r.node(&g)).collect()
    };
    let epi = |r: &mut Rd| -> Result<Option<Epilogue>, ArtifactError> {
        match r.u8()? {
            0 => Ok(None),
            1 => {
                let kernel = r.u32()?;
                let n = r.count(4)?;
                let args = (0..n)
                    .map(|_| {
                        let at = r.pos;
                        if r.u32()? == u32::MAX {
                            Ok(None)
                        } else {
                            r.pos = at;
                            r.value(nv).map(Some)
                        }
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Some(Epilogue { kernel, args }))
            }
            t => r.fail(format!("epilogue flag {t}")),
        }
    };
    for _ in 0..ns {
        let tag = r.u8()?;
        steps.push(match tag {
            0 => {
                let kernel = r.u32()?;
                let n = r.count(4)?;
                let args = (0..n).map(|_| r.value(nv)).collect::<Result<_, _>>()?;
                Step::Kernel {
                    kernel,
                    args,
                    nodes: nodes(&mut r)?,
                }
            }
            1 | 2 => {
                let node = r.node(&g)?;
                let out = r.value(nv)?;
                let epilogue = epi(&mut r)?;
                let ns = nodes(&mut r)?;
                if tag == 1 {
                    Step::MatMul {
                        node,
                        out,
                        epilogue,
                        nodes: ns,
                    }
                } else {
                    Step::Conv {
                        node,
                        out,
                        epilogue,
                        nodes: ns,
                    }
                }
            }
            3 => Step::Pool { node: r.node(&g)? },
            4 => Step::Ref { node: r.node(&g)? },
            5 => Step::Alias { node: r.node(&g)? },
            t => return r.fail(format!("unknown step kind {t}")),
        });
    }
    r.done()?;
    let p = Program {
        graph: g,
        kernels,
        steps,
        locs,
        arena_bytes,
        unplanned_bytes,
    };
    validate_program(&p)?;
    Ok(p)
}

fn numel(g: &Graph, v: ValueId) -> Option<usize> {
    g.value(v)
        .ty
        .shape
        .concrete()?
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// What the executor relies on and cannot check itself: every value has a
/// concrete shape, every location matches its value (arena ranges exactly
/// the value's size, inside the arena; inputs, outputs and params where the
/// graph has them), every step names nodes of the right op and kernels that
/// exist, and no step writes over a buffer it reads, other than an
/// elementwise kernel's exact in-place form.
fn validate_program(p: &Program) -> Result<(), ArtifactError> {
    let bad = |msg: String| malformed("plan", msg);
    let g = &p.graph;
    if p.locs.len() != g.num_values() {
        return Err(bad(format!(
            "{} locations for {} values",
            p.locs.len(),
            g.num_values()
        )));
    }
    let mut max_end = 0usize;
    for (i, l) in p.locs.iter().enumerate() {
        let v = ValueId::from_index(i);
        let val = g.value(v);
        let n = numel(g, v).ok_or_else(|| {
            bad(format!(
                "value {i} has type {}, not a concrete size that fits in memory",
                val.ty
            ))
        })?;
        let f32_only = |what: &str| {
            if val.ty.dtype == DType::F32 {
                Ok(())
            } else {
                Err(bad(format!("value {i} ({}) is {what} but not f32", val.ty)))
            }
        };
        match *l {
            Loc::None | Loc::Boxed => {}
            Loc::Arena { offset, len } => {
                f32_only("in the arena")?;
                let end = offset.checked_add(len);
                if Some(len) != n.checked_mul(4)
                    || offset % 4 != 0
                    || end.is_none_or(|e| e > p.arena_bytes)
                {
                    return Err(bad(format!(
                        "value {i} ({}) at arena bytes {offset}+{len} does not fit it or the {}-byte arena",
                        val.ty, p.arena_bytes
                    )));
                }
                max_end = max_end.max(offset + len);
            }
            Loc::Input => {
                f32_only("an input")?;
                if !g.inputs().contains(&v) {
                    return Err(bad(format!(
                        "value {i} is placed as an input but is not one"
                    )));
                }
            }
            Loc::Output => {
                f32_only("an output")?;
                if !g.outputs().iter().any(|(_, o)| *o == v) {
                    return Err(bad(format!(
                        "value {i} is placed as an output but is not one"
                    )));
                }
            }
            Loc::Param => {
                let is_const = g
                    .producer(v)
                    .is_some_and(|n| g.contains_node(n) && matches!(g.node(n).op, Op::Constant(_)));
                if !(g.params().contains(&v) || is_const) {
                    return Err(bad(format!(
                        "value {i} is placed as a weight but is neither a param nor a constant"
                    )));
                }
            }
        }
    }
    if p.arena_bytes > max_end.next_multiple_of(ALIGN) {
        return Err(bad(format!(
            "an arena of {} bytes for values ending at byte {max_end}",
            p.arena_bytes
        )));
    }
    let range = |v: ValueId| match p.loc(v) {
        Loc::Arena { offset, len } => Some(offset..offset + len),
        _ => None,
    };
    let overlap =
        |a: &std::ops::Range<usize>, b: &std::ops::Range<usize>| a.start < b.end && b.start < a.end;
    // Buffers a step writes must be disjoint from those it reads, or (for
    // kernels) exactly the same range.
    let kernel_aliasing = |k: u32, args: &[Option<ValueId>], anchor: ValueId| {
        let Some(kern) = p.kernels.get(k as usize) else {
            return Err(bad(format!(
                "kernel {k} does not exist ({} kernels)",
                p.kernels.len()
            )));
        };
        if kern.bufs.len() != args.len() {
            return Err(bad(format!(
                "kernel {k} takes {} buffers, the step binds {}",
                kern.bufs.len(),
                args.len()
            )));
        }
        let rs: Vec<_> = args.iter().map(|a| range(a.unwrap_or(anchor))).collect();
        for (i, d) in kern.bufs.iter().enumerate() {
            if d.role != kiln_ir::kernel::Role::Output {
                continue;
            }
            let Some(ri) = &rs[i] else { continue };
            for (j, rj) in rs.iter().enumerate() {
                if let Some(rj) = rj {
                    if i != j && rj != ri && overlap(ri, rj) {
                        return Err(bad(format!(
                            "kernel {k} writes buffer {i} over part of buffer {j}"
                        )));
                    }
                }
            }
        }
        Ok(())
    };
    let node_op = |n: NodeId, ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(bad(format!("step on {} is not a {what}", g.label(n))))
        }
    };
    for s in &p.steps {
        match s {
            Step::Kernel { kernel, args, .. } => {
                let a: Vec<Option<ValueId>> = args.iter().copied().map(Some).collect();
                let first = args.first().copied().unwrap_or(ValueId::from_index(0));
                kernel_aliasing(*kernel, &a, first)?;
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
                let n = g.node(*node);
                let want_mm = matches!(s, Step::MatMul { .. });
                node_op(
                    *node,
                    if want_mm {
                        matches!(n.op, Op::MatMul(_))
                    } else {
                        matches!(n.op, Op::Conv(_))
                    },
                    if want_mm { "matmul" } else { "conv" },
                )?;
                if n.outputs.len() != 1 {
                    return Err(bad(format!(
                        "{} has {} results",
                        g.label(*node),
                        n.outputs.len()
                    )));
                }
                if let Some(ro) = range(*out) {
                    for &i in &n.inputs {
                        if range(i).is_some_and(|ri| overlap(&ri, &ro)) {
                            return Err(bad(format!(
                                "{} writes over its own operand",
                                g.label(*node)
                            )));
                        }
                    }
                }
                if let Some(e) = epilogue {
                    kernel_aliasing(e.kernel, &e.args, *out)?;
                }
            }
            Step::Pool { node } => {
                let n = g.node(*node);
                node_op(*node, matches!(n.op, Op::Pool(_)), "pool")?;
                if n.inputs.len() != 1 || n.outputs.len() != 1 {
                    return Err(bad(format!("{} is not one-in, one-out", g.label(*node))));
                }
                if let (Some(a), Some(b)) = (range(n.inputs[0]), range(n.outputs[0])) {
                    if overlap(&a, &b) {
                        return Err(bad(format!("{} writes over its input", g.label(*node))));
                    }
                }
            }
            Step::Ref { .. } | Step::Alias { .. } => {}
        }
    }
    Ok(())
}

/// The weights section's tensor data spans `(offset, length, is f32)` in
/// section bytes, from its index alone, and where the index ends; `None` if
/// the index does not parse
/// within `b` (the loader then reads the whole section and lets
/// [`decode_weights`] say what is wrong).
/// `(offset, length, is f32)` of one tensor's data in the weights section.
type Span = (usize, usize, bool);

fn weight_spans(b: &[u8]) -> Option<(Vec<Span>, usize)> {
    let mut r = Rd::new(b, "weights");
    let n = r.count(4 + 4 + 4 + 16).ok()?;
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        r.str().ok()?;
        let is_f32 = r.str().ok()? == "f32";
        let rank = r.count(8).ok()?;
        for _ in 0..rank {
            r.u64().ok()?;
        }
        spans.push((r.usize().ok()?, r.usize().ok()?, is_f32));
    }
    Some((spans, r.pos))
}

fn decode_weights(
    b: &[u8],
    g: &Graph,
    mut pre: HashMap<usize, Vec<f32>>,
) -> Result<Weights, ArtifactError> {
    let mut r = Rd::new(b, "weights");
    let n = r.count(4 + 4 + 4 + 16)?;
    let mut w = Weights::default();
    for _ in 0..n {
        let name = r.str()?.to_string();
        let dt = r.str()?;
        let dtype = match DType::from_name(dt) {
            Some(d) => d,
            None => return r.fail(format!("weight `{name}`: unknown dtype `{dt}`")),
        };
        let rank = r.count(8)?;
        let shape = (0..rank)
            .map(|_| r.usize())
            .collect::<Result<Vec<_>, _>>()?;
        let (off, len) = (r.usize()?, r.usize()?);
        let want = shape
            .iter()
            .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d));
        let data = off.checked_add(len).and_then(|e| b.get(off..e));
        let Some(data) = data.filter(|_| off % ALIGN == 0 && want == Some(len)) else {
            return Err(ArtifactError::OutOfRange {
                what: format!("weight `{name}`"),
                msg: format!(
                    "{dtype}{shape:?} at section bytes {off}+{len} (the section has {} bytes; data must be 64-byte aligned and {} bytes long)",
                    b.len(),
                    want.map_or("too many".to_string(), |w| w.to_string())
                ),
            });
        };
        let t = if dtype == DType::F32 && cfg!(target_endian = "little") {
            // Read straight from the file by `Artifact::read_file`, or one
            // memcpy (the length is checked above).
            let v = match pre.remove(&off) {
                Some(v) if v.len() * 4 == len => v,
                _ => {
                    let mut v = vec![0f32; len / 4];
                    bytemuck::cast_slice_mut::<f32, u8>(&mut v).copy_from_slice(data);
                    v
                }
            };
            // Still fallible: a shape with a zero dim has no bytes however
            // large its other dims, and ndarray refuses those that overflow.
            Tensor::try_f32(&shape, v)
                .map_err(|e| malformed("weights", format!("weight `{name}` {shape:?}: {e}")))?
        } else {
            Tensor::from_le_bytes(dtype, &shape, data)
                .map_err(|e| malformed("weights", format!("weight `{name}`: {e}")))?
        };
        if w.0.insert(name.clone(), t).is_some() {
            return r.fail(format!("weight `{name}` appears twice"));
        }
    }
    // The index ends where the first tensor's data (or the section) begins.
    for &v in g.params() {
        let name = g.value(v).name.as_deref().unwrap_or("");
        if w.get(name).is_none() {
            return Err(malformed(
                "weights",
                format!("no weight for param `{name}`"),
            ));
        }
    }
    if w.0.len() != g.params().len() {
        return Err(malformed(
            "weights",
            format!("{} weights for {} params", w.0.len(), g.params().len()),
        ));
    }
    Ok(w)
}

impl Artifact {
    /// Parse and check artifact bytes (see the module docs). Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        let header = read_header(bytes)?;
        Artifact::assemble(bytes, header, None)
    }

    /// Read and check an artifact file, as [`Artifact::from_bytes`] would
    /// its bytes, but with each f32 weight read from the file straight into
    /// its tensor (the weights section's checksum computed as it streams):
    /// one pass over the weights' memory instead of two. Never panics.
    pub fn read_file(path: &Path) -> Result<Artifact, ArtifactError> {
        let io = |e: std::io::Error| ArtifactError::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let mut f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let Ok(len) = usize::try_from(len) else {
            return Err(ArtifactError::OutOfRange {
                what: "file length".into(),
                msg: format!("{len} bytes do not fit in memory"),
            });
        };
        // Zeroed memory of the file's size: its pages are only mapped when
        // written, and the f32 weights' ranges never are.
        let mut bytes = vec![0u8; len];
        let head = HEADER_LEN.min(len);
        f.read_exact(&mut bytes[..head]).map_err(io)?;
        let h0 = read_header_unchecked(&bytes)?;
        let table_end = (HEADER_LEN + h0.sections.len() * ENTRY_LEN).min(len);
        f.read_exact(&mut bytes[head..table_end]).map_err(io)?;
        let header = read_header(&bytes)?;
        let read_at =
            |f: &mut File, bytes: &mut [u8], from: usize, to: usize| -> Result<(), ArtifactError> {
                f.seek(SeekFrom::Start(from as u64)).map_err(io)?;
                f.read_exact(&mut bytes[from..to]).map_err(io)
            };
        let mut pre = HashMap::new();
        let mut streamed = false;
        for s in &header.sections {
            // `read_header` checked every range against the file.
            let (from, to) = (s.offset as usize, (s.offset + s.len) as usize);
            if s.kind != SectionKind::Weights as u32 {
                read_at(&mut f, &mut bytes, from, to)?;
                continue;
            }
            // The index first (it is at the start of the section), then
            // each f32 tensor's data into its own vector.
            let mut prefix = (to - from).min(1 << 16);
            read_at(&mut f, &mut bytes, from, from + prefix)?;
            let mut index = weight_spans(&bytes[from..from + prefix]);
            if index.is_none() && prefix < to - from {
                let more = (to - from).min(1 << 20);
                read_at(&mut f, &mut bytes, from + prefix, from + more)?;
                prefix = more;
                index = weight_spans(&bytes[from..from + prefix]);
            }
            let Some((mut spans, index_end)) = index else {
                read_at(&mut f, &mut bytes, from + prefix, to)?;
                continue;
            };
            // Data read with the index is read again, into its tensor.
            let prefix = index_end;
            spans.retain(|&(off, l, f32)| f32 && off >= prefix && l % 4 == 0);
            spans.sort_unstable();
            let fits = spans
                .windows(2)
                .all(|w| w[0].0.checked_add(w[0].1).is_some_and(|e| e <= w[1].0))
                && spans
                    .last()
                    .is_none_or(|&(o, l, _)| o.checked_add(l).is_some_and(|e| e <= to - from));
            if !fits {
                read_at(&mut f, &mut bytes, from + prefix, to)?;
                continue;
            }
            let mut crc = crc32fast::Hasher::new();
            crc.update(&bytes[from..from + prefix]);
            let mut pos = prefix;
            for &(off, l, _) in &spans {
                read_at(&mut f, &mut bytes, from + pos, from + off)?;
                crc.update(&bytes[from + pos..from + off]);
                let mut v = vec![0f32; l / 4];
                let vb = bytemuck::cast_slice_mut::<f32, u8>(&mut v);
                f.read_exact(vb).map_err(io)?;
                crc.update(vb);
                pre.insert(off, v);
                pos = off + l;
            }
            read_at(&mut f, &mut bytes, from + pos, to)?;
            crc.update(&bytes[from + pos..to]);
            let actual = crc.finalize();
            if actual != s.crc32 {
                return Err(ArtifactError::Checksum {
                    what: "the weights section".into(),
                    stored: s.crc32,
                    actual,
                });
            }
            streamed = true;
        }
        Artifact::assemble(&bytes, header, streamed.then_some(pre))
    }

    /// The sections' contents, decoded and checked. `pre`: f32 weight data
    /// already read (by section offset), the weights' checksum verified.
    fn assemble(
        bytes: &[u8],
        header: Header,
        pre: Option<HashMap<usize, Vec<f32>>>,
    ) -> Result<Artifact, ArtifactError> {
        let (producer, target) = decode_meta(section(bytes, &header, SectionKind::Meta)?)?;
        let text = section(bytes, &header, SectionKind::Graph)?;
        let text = std::str::from_utf8(text).map_err(|e| malformed("graph", e.to_string()))?;
        let graph = kiln_ir::parse(text).map_err(|e| malformed("graph", e.to_string()))?;
        let kernels = decode_kernels(section(bytes, &header, SectionKind::Kernels)?)?;
        let weights = decode_weights(
            section_with(bytes, &header, SectionKind::Weights, pre.is_none())?,
            &graph,
            pre.unwrap_or_default(),
        )?;
        let program = decode_plan(section(bytes, &header, SectionKind::Plan)?, graph, kernels)?;
        let ptx = section(bytes, &header, SectionKind::Ptx)?;
        if !ptx.is_empty() {
            return Err(malformed(
                "ptx",
                "this version runs no PTX modules; the section must be empty",
            ));
        }
        Ok(Artifact {
            header,
            producer,
            target,
            program,
            weights,
        })
    }

    /// Total bytes of the weights.
    pub fn weight_bytes(&self) -> usize {
        self.weights
            .0
            .values()
            .map(|t| t.len() * t.dtype().size_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_selection_follows_the_rule() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        let t = TargetSignature::for_isa(Isa::Avx512, false);
        #[cfg(target_arch = "x86_64")]
        {
            let e = t.select_isa_with(none).unwrap_err();
            assert!(e.to_string().contains("`avx512f`"), "{e}");
            let t2 = TargetSignature::for_isa(Isa::Avx512, true);
            assert_eq!(t2.select_isa_with(none).unwrap(), Isa::Portable);
            if Isa::Avx512.is_available() {
                assert_eq!(t.select_isa_with(all).unwrap(), Isa::Avx512);
            }
            let t3 = TargetSignature::for_isa(Isa::Avx2, false);
            let only_avx2 = |f: &str| f == "avx2";
            let e = t3.select_isa_with(only_avx2).unwrap_err();
            assert!(e.to_string().contains("`fma`"), "{e}");
        }
        assert_eq!(
            TargetSignature::any_cpu().select_isa_with(none).unwrap(),
            Isa::Portable
        );
        let _ = all;
    }

    #[test]
    fn header_errors_are_specific() {
        assert_eq!(
            read_header(b"\x89KI").unwrap_err(),
            ArtifactError::Truncated {
                what: "the magic number".into(),
                need: 8,
                have: 3
            }
        );
        assert_eq!(
            read_header(b"PK\x03\x04xxxxxxxx").unwrap_err(),
            ArtifactError::BadMagic
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[2, 0, 0, 0]);
        assert!(matches!(
            read_header(&b).unwrap_err(),
            ArtifactError::UnsupportedVersion { major: 2, .. }
        ));
    }
}
