//! kiln-ir: the typed graph IR at the centre of kiln.
//!
//! It owns the graph and its types, the op table (one declaration per op), the
//! `.kir` text format, the verifier and the reference interpreter. It depends on
//! neither Cranelift nor protobuf.

pub mod attr;
pub mod dtype;
pub mod narrow;
pub mod op;
pub mod ops;
pub mod shape;
pub mod tensor;

pub use attr::{AttrError, AttrValue, F64};
pub use dtype::{DType, Narrow, QuantParams};
pub use op::{FusionKind, Op, OpDef, OpError};
pub use shape::{Dim, Shape, TensorType};
pub use tensor::Tensor;
pub mod grad;
pub mod graph;
pub mod text;
pub mod verify;

pub use grad::{GradCtx, GradError, GradResult};
pub use graph::{Graph, Node, NodeId, Value, ValueDef, ValueId};
pub use text::{parse, print, ParseError};
pub use verify::{verify, VerifyError, VerifyErrorKind};
pub mod interp;
pub mod kernel;
pub mod model;
pub mod program;
pub mod weights;

pub use interp::{check_inputs, run, RunError};
pub use model::{LoadError, Model};
pub use weights::{Weights, WeightsError};
