//! Typed op attributes: how an op reads them from text and writes them back.
//!
//! Each op declares its attributes once, in its `OpDef::parse` (reading with
//! defaults) and `OpDef::write_attrs` (writing in declaration order). The text
//! format and every later serialiser go through these two functions only.

use std::fmt;

use crate::dtype::DType;
use crate::tensor::Tensor;

/// An f64 compared and hashed by its bits, so attributes stay `Eq + Hash`.
#[derive(Clone, Copy, Debug)]
pub struct F64(pub f64);
impl PartialEq for F64 {
    fn eq(&self, o: &F64) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}
impl Eq for F64 {}
impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.to_bits().hash(h)
    }
}
impl From<f64> for F64 {
    fn from(x: f64) -> F64 {
        F64(x)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Str(String),
    DType(DType),
    Tensor(Tensor),
}

impl AttrValue {
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::Ints(_) => "int list",
            AttrValue::Floats(_) => "float list",
            AttrValue::Str(_) => "string",
            AttrValue::DType(_) => "dtype",
            AttrValue::Tensor(_) => "tensor",
        }
    }
}

/// Writes a float so that it parses back to the same bits and always reads as a
/// float (`1.0`, never `1`).
pub fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{x:?}")
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Float(x) => f.write_str(&fmt_f64(*x)),
            AttrValue::Ints(v) => {
                let s: Vec<String> = v.iter().map(|i| i.to_string()).collect();
                write!(f, "[{}]", s.join(", "))
            }
            AttrValue::Floats(v) => {
                let s: Vec<String> = v.iter().map(|x| fmt_f64(*x)).collect();
                write!(f, "[{}]", s.join(", "))
            }
            AttrValue::Str(s) => write!(f, "{s:?}"),
            AttrValue::DType(d) => write!(f, "{d}"),
            AttrValue::Tensor(t) => write_tensor_literal(f, t),
        }
    }
}

/// `tensor<f32[2,2]>[1.0, 2.0, 3.0, 4.0]`: row-major, flat.
pub fn write_tensor_literal(f: &mut impl fmt::Write, t: &Tensor) -> fmt::Result {
    let ty = t.ty();
    write!(f, "tensor<{ty}>[")?;
    let vals = t.values_f64();
    // Integers print exactly (through i64, or u64 for u64), not through f64.
    let ints: Vec<String> = match t {
        Tensor::U64(a) => a.iter().map(|x| x.to_string()).collect(),
        _ if t.dtype().is_float_like() => Vec::new(),
        _ => t.to_i64().iter().map(|x| x.to_string()).collect(),
    };
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if t.dtype().is_float_like() {
            // Narrow floats decode exactly to f64 and encode back to the same
            // bits (NaN excepted, which prints as the type's canonical NaN).
            // f16/bf16/f32 values are exactly representable in f64; printing the
            // shortest f64 form round-trips after narrowing.
            match t {
                Tensor::F32(a) => {
                    let x = a.iter().nth(i).copied().unwrap_or_default();
                    if x.is_finite() {
                        write!(f, "{x:?}")?
                    } else {
                        f.write_str(&fmt_f64(x as f64))?
                    }
                }
                _ => f.write_str(&fmt_f64(*v))?,
            }
        } else if t.dtype() == DType::Bool {
            f.write_str(if *v != 0.0 { "true" } else { "false" })?;
        } else {
            f.write_str(&ints[i])?;
        }
    }
    f.write_str("]")
}

/// An error in an op's attributes: which attribute, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrError {
    pub attr: String,
    pub msg: String,
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attribute `{}`: {}", self.attr, self.msg)
    }
}

/// Hands an op its attributes by name, with type checks and defaults. Attributes
/// the op never asks for are reported by `finish` as unknown.
#[derive(Debug, Default)]
pub struct AttrReader {
    items: Vec<(String, AttrValue, bool)>,
}

impl AttrReader {
    pub fn new(items: Vec<(String, AttrValue)>) -> Self {
        AttrReader {
            items: items.into_iter().map(|(k, v)| (k, v, false)).collect(),
        }
    }
    fn take(&mut self, name: &str) -> Option<AttrValue> {
        self.items
            .iter_mut()
            .find(|(k, _, used)| k == name && !*used)
            .map(|(_, v, used)| {
                *used = true;
                v.clone()
            })
    }
    fn err<T>(name: &str, want: &str, got: &AttrValue) -> Result<T, AttrError> {
        Err(AttrError {
            attr: name.into(),
            msg: format!("expected {want}, found {}", got.kind()),
        })
    }
    pub fn opt_int(&mut self, name: &str) -> Result<Option<i64>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Int(i)) => Ok(Some(i)),
            Some(v) => Self::err(name, "int", &v),
        }
    }
    pub fn int(&mut self, name: &str, default: i64) -> Result<i64, AttrError> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }
    pub fn req_int(&mut self, name: &str) -> Result<i64, AttrError> {
        self.opt_int(name)?.ok_or_else(|| missing(name))
    }
    pub fn opt_float(&mut self, name: &str) -> Result<Option<f64>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Float(x)) => Ok(Some(x)),
            Some(AttrValue::Int(i)) => Ok(Some(i as f64)),
            Some(v) => Self::err(name, "float", &v),
        }
    }
    pub fn float(&mut self, name: &str, default: f64) -> Result<f64, AttrError> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }
    pub fn opt_ints(&mut self, name: &str) -> Result<Option<Vec<i64>>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            // `[]` parses as an empty int list; a single int is accepted as a 1-list.
            Some(AttrValue::Floats(v)) if v.is_empty() => Ok(Some(vec![])),
            Some(AttrValue::Int(i)) => Ok(Some(vec![i])),
            Some(v) => Self::err(name, "int list", &v),
        }
    }
    pub fn ints(&mut self, name: &str, default: &[i64]) -> Result<Vec<i64>, AttrError> {
        Ok(self.opt_ints(name)?.unwrap_or_else(|| default.to_vec()))
    }
    pub fn req_ints(&mut self, name: &str) -> Result<Vec<i64>, AttrError> {
        self.opt_ints(name)?.ok_or_else(|| missing(name))
    }
    pub fn opt_floats(&mut self, name: &str) -> Result<Option<Vec<f64>>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v)),
            Some(AttrValue::Ints(v)) => Ok(Some(v.into_iter().map(|i| i as f64).collect())),
            Some(v) => Self::err(name, "float list", &v),
        }
    }
    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Str(s)) => Ok(Some(s)),
            Some(v) => Self::err(name, "string", &v),
        }
    }
    pub fn str(&mut self, name: &str, default: &str) -> Result<String, AttrError> {
        Ok(self.opt_str(name)?.unwrap_or_else(|| default.to_string()))
    }
    pub fn req_dtype(&mut self, name: &str) -> Result<DType, AttrError> {
        match self.take(name) {
            None => Err(missing(name)),
            Some(AttrValue::DType(d)) => Ok(d),
            Some(v) => Self::err(name, "dtype", &v),
        }
    }
    pub fn opt_dtype(&mut self, name: &str) -> Result<Option<DType>, AttrError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::DType(d)) => Ok(Some(d)),
            Some(v) => Self::err(name, "dtype", &v),
        }
    }
    pub fn req_tensor(&mut self, name: &str) -> Result<Tensor, AttrError> {
        match self.take(name) {
            None => Err(missing(name)),
            Some(AttrValue::Tensor(t)) => Ok(t),
            Some(v) => Self::err(name, "tensor", &v),
        }
    }
    /// Names of attributes that were given but never read.
    pub fn unused(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, _, used)| !used)
            .map(|(k, _, _)| k.clone())
            .collect()
    }
}

fn missing(name: &str) -> AttrError {
    AttrError {
        attr: name.into(),
        msg: "required but missing".into(),
    }
}

/// Collects an op's attributes in declaration order, for printing and hashing.
#[derive(Debug, Default)]
pub struct AttrWriter {
    pub items: Vec<(&'static str, AttrValue)>,
}

impl AttrWriter {
    pub fn int(&mut self, name: &'static str, v: i64) {
        self.items.push((name, AttrValue::Int(v)));
    }
    pub fn float(&mut self, name: &'static str, v: f64) {
        self.items.push((name, AttrValue::Float(v)));
    }
    pub fn ints(&mut self, name: &'static str, v: &[i64]) {
        self.items.push((name, AttrValue::Ints(v.to_vec())));
    }
    pub fn floats(&mut self, name: &'static str, v: &[f64]) {
        self.items.push((name, AttrValue::Floats(v.to_vec())));
    }
    pub fn str(&mut self, name: &'static str, v: &str) {
        self.items.push((name, AttrValue::Str(v.to_string())));
    }
    pub fn dtype(&mut self, name: &'static str, v: DType) {
        self.items.push((name, AttrValue::DType(v)));
    }
    pub fn tensor(&mut self, name: &'static str, v: &Tensor) {
        self.items.push((name, AttrValue::Tensor(v.clone())));
    }
}
