//! Shapes: static dimensions plus named symbolic ones (`N`) that are bound to
//! numbers before a graph runs or compiles.

use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::dtype::DType;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Known(usize),
    Sym(Arc<str>),
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }
    pub fn known(self: &Dim) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub SmallVec<[Dim; 4]>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(SmallVec::new())
    }
    pub fn from_dims(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }
    /// The concrete dimensions, or `None` if any dimension is symbolic.
    pub fn concrete(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }
    /// Number of elements, when every dimension is known.
    pub fn numel(&self) -> Option<usize> {
        self.concrete().map(|d| d.iter().product())
    }
    pub fn is_concrete(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Known(_)))
    }
    /// The symbols this shape mentions.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|d| match d {
            Dim::Sym(s) => Some(&**s),
            Dim::Known(_) => None,
        })
    }
    /// Substitute bound symbols by their values; unbound symbols stay symbolic.
    pub fn bind(&self, dims: &BTreeMap<String, usize>) -> Shape {
        Shape(
            self.0
                .iter()
                .map(|d| match d {
                    Dim::Sym(s) => dims.get(&**s).map_or_else(|| d.clone(), |&n| Dim::Known(n)),
                    Dim::Known(_) => d.clone(),
                })
                .collect(),
        )
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Shape {
        Shape(v.into())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The static type of a value: element type plus shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }
    pub fn concrete(dtype: DType, dims: &[usize]) -> Self {
        TensorType {
            dtype,
            shape: Shape::from_dims(dims),
        }
    }
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
    pub fn with_shape(&self, shape: Shape) -> Self {
        TensorType {
            dtype: self.dtype,
            shape,
        }
    }
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: self.shape.clone(),
        }
    }
    /// Bytes needed to hold a value of this type, when its shape is known.
    pub fn size_bytes(&self) -> Option<usize> {
        self.shape.numel().map(|n| n * self.dtype.size_bytes())
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
