//! Recursive-descent parser. Every error carries a line and column.

use std::collections::HashMap;
use std::fmt;

use super::lexer::{lex, Tok, Token};
use crate::attr::{AttrReader, AttrValue};
use crate::dtype::{DType, QuantParams};
use crate::graph::{Graph, NodeId, ValueId};
use crate::op::Op;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;
use crate::verify::verify;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// How a value was written: `%7` and `%x` live in separate namespaces, so an
/// input may be called `%"7"` without clashing with the seventh result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Num(u64),
    Name(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Num(n) => write!(f, "%{n}"),
            Key::Name(s) => write!(f, "%{s}"),
        }
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    values: HashMap<Key, ValueId>,
    g: Graph,
    /// Where each node was written, to place verifier errors.
    node_pos: HashMap<NodeId, (usize, usize)>,
}

type PResult<T> = Result<T, ParseError>;

/// Parse and verify. Verifier errors are reported at the offending node's line.
pub fn parse(src: &str) -> PResult<Graph> {
    let (g, node_pos) = parse_inner(src)?;
    if let Err(e) = verify(&g) {
        let (line, col) = e
            .node
            .and_then(|n| node_pos.get(&n).copied())
            .unwrap_or((1, 1));
        return Err(ParseError {
            line,
            col,
            msg: e.to_string(),
        });
    }
    Ok(g)
}

/// Parse without verifying (for tests of the verifier itself).
pub fn parse_unverified(src: &str) -> PResult<Graph> {
    parse_inner(src).map(|(g, _)| g)
}

/// Where each node was written (line, column).
type Positions = HashMap<NodeId, (usize, usize)>;

fn parse_inner(src: &str) -> PResult<(Graph, Positions)> {
    let toks = lex(src).map_err(|e| ParseError {
        line: e.line,
        col: e.col,
        msg: e.msg,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        values: HashMap::new(),
        g: Graph::default(),
        node_pos: HashMap::new(),
    };
    p.graph()?;
    Ok((p.g, p.node_pos))
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn here(&self) -> (usize, usize) {
        let t = &self.toks[self.pos];
        (t.line, t.col)
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].tok.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn error<T>(&self, msg: impl Into<String>) -> PResult<T> {
        let (line, col) = self.here();
        Err(ParseError {
            line,
            col,
            msg: msg.into(),
        })
    }
    fn error_at<T>(&self, at: (usize, usize), msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: at.0,
            col: at.1,
            msg: msg.into(),
        })
    }
    fn expect_punct(&mut self, c: char) -> PResult<()> {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            Ok(())
        } else {
            self.error(format!("expected `{c}`, found {}", self.peek().describe()))
        }
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }
    fn expect_word(&mut self, w: &str) -> PResult<()> {
        match self.peek() {
            Tok::Word(x) if x == w => {
                self.next();
                Ok(())
            }
            t => self.error(format!("expected `{w}`, found {}", t.describe())),
        }
    }
    /// A bare word or a quoted string (graph and output names).
    fn name(&mut self, what: &str) -> PResult<String> {
        match self.next() {
            Tok::Word(w) => Ok(w),
            Tok::Str(s) => Ok(s),
            t => {
                self.pos -= 1;
                self.error(format!("expected {what}, found {}", t.describe()))
            }
        }
    }

    fn graph(&mut self) -> PResult<()> {
        self.expect_word("graph")?;
        self.g.name = self.name("a graph name")?;
        self.expect_punct('{')?;
        loop {
            let at = self.here();
            match self.peek().clone() {
                Tok::Punct('}') => {
                    self.next();
                    break;
                }
                Tok::Word(w) if w == "input" || w == "param" => {
                    self.next();
                    let key = self.value_key()?;
                    let Key::Name(name) = key.clone() else {
                        return self
                            .error_at(at, format!("{w}s need a name, not a number like {key}"));
                    };
                    self.expect_punct(':')?;
                    let ty = self.tensor_type()?;
                    if self.values.contains_key(&key) {
                        return self.error_at(at, format!("{key} is defined twice"));
                    }
                    let v = if w == "input" {
                        self.g.add_input(name, ty)
                    } else {
                        self.g.add_param(name, ty)
                    };
                    self.values.insert(key, v);
                }
                Tok::Word(w) if w == "output" => {
                    self.next();
                    let name = self.name("an output name")?;
                    self.expect_punct('=')?;
                    let v = self.use_value()?;
                    if self.g.outputs().iter().any(|(n, _)| *n == name) {
                        return self.error_at(at, format!("output `{name}` is defined twice"));
                    }
                    self.g.set_output(name, v);
                }
                Tok::Name(_) | Tok::Num(_) => self.node()?,
                Tok::Eof => return self.error("unexpected end of file: missing `}`"),
                t => {
                    return self.error(format!(
                        "expected `input`, `param`, a node or `output`, found {}",
                        t.describe()
                    ))
                }
            }
        }
        if *self.peek() != Tok::Eof {
            return self.error(format!(
                "unexpected {} after the graph",
                self.peek().describe()
            ));
        }
        Ok(())
    }

    fn value_key(&mut self) -> PResult<Key> {
        match self.next() {
            Tok::Name(n) => Ok(Key::Name(n)),
            Tok::Num(n) => Ok(Key::Num(n)),
            t => {
                self.pos -= 1;
                self.error(format!(
                    "expected a value like `%x`, found {}",
                    t.describe()
                ))
            }
        }
    }

    fn use_value(&mut self) -> PResult<ValueId> {
        let at = self.here();
        let key = self.value_key()?;
        match self.values.get(&key) {
            Some(v) => Ok(*v),
            None => self.error_at(
                at,
                format!("{key} is not defined (values must be defined before use)"),
            ),
        }
    }

    fn node(&mut self) -> PResult<()> {
        let at = self.here();
        let mut results = vec![(self.here(), self.value_key()?)];
        while self.eat_punct(',') {
            results.push((self.here(), self.value_key()?));
        }
        self.expect_punct('=')?;
        let op_at = self.here();
        let spelling = match self.next() {
            Tok::Word(w) => w,
            t => {
                self.pos -= 1;
                return self.error(format!("expected an op name, found {}", t.describe()));
            }
        };
        self.expect_punct('(')?;
        let mut inputs = Vec::new();
        if !self.eat_punct(')') {
            loop {
                inputs.push(self.use_value()?);
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        let attrs_at = self.here();
        let mut attrs = Vec::new();
        if self.eat_punct('{') && !self.eat_punct('}') {
            loop {
                let key_at = self.here();
                let key = match self.next() {
                    Tok::Word(w) => w,
                    t => {
                        self.pos -= 1;
                        return self.error(format!(
                            "expected an attribute name, found {}",
                            t.describe()
                        ));
                    }
                };
                if attrs.iter().any(|(k, _)| *k == key) {
                    return self.error_at(key_at, format!("attribute `{key}` is given twice"));
                }
                self.expect_punct('=')?;
                let v = self.attr_value()?;
                attrs.push((key, v));
                if self.eat_punct('}') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        let op = match Op::parse(&spelling, &mut AttrReader::new(attrs)) {
            Ok(op) => op,
            Err(crate::op::ParseOpError::UnknownOp(s)) => {
                return self.error_at(op_at, format!("unknown op `{s}`"));
            }
            Err(e) => return self.error_at(attrs_at, format!("{spelling}: {e}")),
        };
        // Result types may be omitted in hand-written files; they are then
        // inferred here. The canonical printer always writes them.
        let types = if self.eat_punct(':') {
            let mut types = vec![self.tensor_type()?];
            while self.eat_punct(',') {
                types.push(self.tensor_type()?);
            }
            types
        } else {
            let tys: Vec<&TensorType> = inputs.iter().map(|v| &self.g.value(*v).ty).collect();
            match op.infer(&tys) {
                Ok(t) => t,
                Err(e) => return self.error_at(op_at, format!("{spelling}: {e}")),
            }
        };
        if types.len() != results.len() {
            return self.error_at(
                at,
                format!("{} results but {} types", results.len(), types.len()),
            );
        }
        let name = match self.peek().clone() {
            Tok::At(n) => {
                self.next();
                Some(n)
            }
            _ => None,
        };
        let node = self.g.add_node_typed(op, &inputs, types, name);
        self.node_pos.insert(node, at);
        let outs = self.g.node(node).outputs.clone();
        for ((rat, key), v) in results.into_iter().zip(outs) {
            if self.values.contains_key(&key) {
                return self.error_at(rat, format!("{key} is defined twice"));
            }
            if let Key::Name(n) = &key {
                self.g.value_mut(v).name = Some(n.clone());
            }
            self.values.insert(key, v);
        }
        Ok(())
    }

    fn dtype(&mut self) -> PResult<DType> {
        let at = self.here();
        let w = match self.next() {
            Tok::Word(w) => w,
            t => {
                self.pos -= 1;
                return self.error(format!(
                    "expected a dtype like `f32`, found {}",
                    t.describe()
                ));
            }
        };
        if w == "qi8" || w == "qu8" {
            self.expect_punct('<')?;
            let scale = self.number()?;
            self.expect_punct(',')?;
            let zp = self.int()?;
            self.expect_punct('>')?;
            let zp = i32::try_from(zp).or_else(|_| self.error_at(at, "zero point out of range"))?;
            let q = QuantParams::new(scale as f32, zp);
            return Ok(if w == "qi8" {
                DType::QI8(q)
            } else {
                DType::QU8(q)
            });
        }
        DType::from_name(&w).map_or_else(|| self.error_at(at, format!("unknown dtype `{w}`")), Ok)
    }

    fn tensor_type(&mut self) -> PResult<TensorType> {
        let dtype = self.dtype()?;
        self.expect_punct('[')?;
        let mut dims = Vec::new();
        if !self.eat_punct(']') {
            loop {
                let at = self.here();
                match self.next() {
                    Tok::Int(n) if n >= 0 => dims.push(Dim::Known(n as usize)),
                    Tok::Word(w) => dims.push(Dim::sym(&w)),
                    t => {
                        return self
                            .error_at(at, format!("expected a dimension, found {}", t.describe()))
                    }
                }
                if self.eat_punct(']') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        Ok(TensorType::new(dtype, Shape::from(dims)))
    }

    fn int(&mut self) -> PResult<i64> {
        match self.next() {
            Tok::Int(i) => Ok(i),
            t => {
                self.pos -= 1;
                self.error(format!("expected an integer, found {}", t.describe()))
            }
        }
    }

    fn number(&mut self) -> PResult<f64> {
        match self.next() {
            Tok::Int(i) => Ok(i as f64),
            Tok::BigInt(u) => Ok(u as f64),
            Tok::Float(x) => Ok(x),
            Tok::Word(w) if w == "inf" => Ok(f64::INFINITY),
            Tok::Word(w) if w == "nan" => Ok(f64::NAN),
            t => {
                self.pos -= 1;
                self.error(format!("expected a number, found {}", t.describe()))
            }
        }
    }

    fn attr_value(&mut self) -> PResult<AttrValue> {
        match self.peek().clone() {
            Tok::Int(i) => {
                self.next();
                Ok(AttrValue::Int(i))
            }
            Tok::Float(x) => {
                self.next();
                Ok(AttrValue::Float(x))
            }
            Tok::Str(s) => {
                self.next();
                Ok(AttrValue::Str(s))
            }
            Tok::Word(w) if w == "inf" || w == "nan" => Ok(AttrValue::Float(self.number()?)),
            Tok::Word(w) if w == "tensor" => self.tensor_literal().map(AttrValue::Tensor),
            Tok::Word(_) => self.dtype().map(AttrValue::DType),
            Tok::Punct('[') => {
                self.next();
                let mut ints = Vec::new();
                let mut floats = Vec::new();
                let mut is_float = false;
                if !self.eat_punct(']') {
                    loop {
                        match self.peek() {
                            Tok::Int(i) => {
                                ints.push(*i);
                                floats.push(*i as f64);
                                self.next();
                            }
                            _ => {
                                floats.push(self.number()?);
                                is_float = true;
                            }
                        }
                        if self.eat_punct(']') {
                            break;
                        }
                        self.expect_punct(',')?;
                    }
                }
                Ok(if is_float {
                    AttrValue::Floats(floats)
                } else {
                    AttrValue::Ints(ints)
                })
            }
            t => self.error(format!(
                "expected an attribute value, found {}",
                t.describe()
            )),
        }
    }

    /// `tensor<f32[2,2]>[1.0, 2.0, 3.0, 4.0]`
    fn tensor_literal(&mut self) -> PResult<Tensor> {
        let at = self.here();
        self.expect_word("tensor")?;
        self.expect_punct('<')?;
        let ty = self.tensor_type()?;
        self.expect_punct('>')?;
        self.expect_punct('[')?;
        let mut vals = Vec::new();
        let mut raw_ints = Vec::new();
        if !self.eat_punct(']') {
            loop {
                match self.peek().clone() {
                    Tok::Word(w) if w == "true" || w == "false" => {
                        self.next();
                        vals.push(if w == "true" { 1.0 } else { 0.0 });
                        raw_ints.push(i128::from(w == "true"));
                    }
                    Tok::Int(i) => {
                        self.next();
                        vals.push(i as f64);
                        raw_ints.push(i128::from(i));
                    }
                    Tok::BigInt(u) => {
                        self.next();
                        vals.push(u as f64);
                        raw_ints.push(i128::from(u));
                    }
                    _ => {
                        let x = self.number()?;
                        vals.push(x);
                        raw_ints.push(x as i128);
                    }
                }
                if self.eat_punct(']') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        let Some(dims) = ty.shape.concrete() else {
            return self.error_at(at, "a tensor literal needs a static shape");
        };
        let n: usize = dims.iter().product();
        if vals.len() != n {
            return self.error_at(
                at,
                format!(
                    "tensor literal of type {ty} needs {n} values, found {}",
                    vals.len()
                ),
            );
        }
        let t = if ty.dtype.is_float_like() {
            Tensor::from_vec_f64(ty.dtype, &dims, vals)
        } else if ty.dtype == DType::U64 {
            // Integers stay exact (not through f64): u64 through u64...
            let Ok(v) = raw_ints.iter().map(|&x| u64::try_from(x)).collect() else {
                return self.error_at(at, format!("a value of the {ty} literal is out of range"));
            };
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), v)
                .map(Tensor::U64)
                .map_err(|e| e.to_string())
        } else {
            // ...and every other integer type through i64 (narrowing wraps).
            let Ok(v) = raw_ints.iter().map(|&x| i64::try_from(x)).collect() else {
                return self.error_at(at, format!("a value of the {ty} literal is out of range"));
            };
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), v)
                .map(|a| Tensor::from_i64(ty.dtype, a))
                .map_err(|e| e.to_string())
        };
        t.or_else(|e| self.error_at(at, e))
    }
}
