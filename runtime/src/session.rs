//! The embedding API: a [`Session`] is a compiled model ready to run, built
//! from an in-memory [`Program`] or loaded from a `.kiln` artifact.
//!
//! ```no_run
//! use kiln_runtime::session::{Session, SessionOptions, TensorView};
//! let s = Session::load("model.kiln", &SessionOptions::default())?;
//! let x = vec![0.0f32; 4 * 784];
//! let shape = [4, 784];
//! let outs = s.run(&[TensorView::f32(&x, &shape)])?;
//! # Ok::<(), kiln_runtime::session::SessionError>(())
//! ```
//!
//! A `Session` is `Send + Sync`: several threads may call [`Session::run`]
//! at once, each run taking its own arena from the executor's pool.

use std::collections::HashMap;
use std::path::Path;

use kiln_ir::program::Program;
use kiln_ir::{DType, Tensor, TensorType, Weights};

use crate::artifact::ArtifactError;
use crate::exec::{ExecError, ExecOptions, Executor};

/// What can go wrong building or running a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// An input given to [`Session::run`] does not fit the model.
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    /// Wrong number of inputs given to [`Session::run`].
    #[error("expected {expected} inputs ({names}), got {got}")]
    InputCount {
        expected: usize,
        got: usize,
        names: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Session settings.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Worker threads, the calling one included (0: all cores).
    pub threads: usize,
}

/// A model input or output: its name, element type and (fixed) shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl IoInfo {
    /// Bytes of one tensor of this type (narrow types take a byte each).
    pub fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_bytes()
    }
}

impl std::fmt::Display for IoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name,
            TensorType::concrete(self.dtype, &self.shape)
        )
    }
}

/// A borrowed tensor: element type, shape and the elements' little-endian
/// bytes in row-major order (one byte per element for narrow types, as
/// [`Tensor::to_le_bytes`] writes them).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of f32 data (on a little-endian host its memory is the
    /// little-endian byte layout, so nothing is copied).
    pub fn f32(data: &'a [f32], shape: &'a [usize]) -> Self {
        TensorView {
            dtype: DType::F32,
            shape,
            data: bytemuck::cast_slice(data),
        }
    }

    /// A view of a tensor's memory. Fails for a tensor that is not
    /// contiguous in row-major order, or on a big-endian host.
    pub fn from_tensor(t: &'a Tensor) -> Result<Self, SessionError> {
        if cfg!(target_endian = "big") {
            return Err(SessionError::Other(
                "tensor views need a little-endian host".into(),
            ));
        }
        let not_contiguous = || {
            SessionError::Other(format!(
                "a {} tensor that is not contiguous in row-major order has no byte view",
                t.ty()
            ))
        };
        macro_rules! bytes {
            ($a:expr) => {
                bytemuck::cast_slice($a.as_slice().ok_or_else(not_contiguous)?)
            };
        }
        use half::slice::HalfFloatSliceExt;
        let data: &[u8] = match t {
            Tensor::F32(a) => bytes!(a),
            Tensor::F64(a) => bytes!(a),
            Tensor::F16(a) => {
                bytemuck::cast_slice(a.as_slice().ok_or_else(not_contiguous)?.reinterpret_cast())
            }
            Tensor::BF16(a) => {
                bytemuck::cast_slice(a.as_slice().ok_or_else(not_contiguous)?.reinterpret_cast())
            }
            Tensor::I8(a) => bytes!(a),
            Tensor::U8(a) => bytes!(a),
            Tensor::I16(a) => bytes!(a),
            Tensor::I32(a) => bytes!(a),
            Tensor::I64(a) => bytes!(a),
            Tensor::Bool(a) => bytes!(a),
            Tensor::U16(a) => bytes!(a),
            Tensor::U32(a) => bytes!(a),
            Tensor::U64(a) => bytes!(a),
            Tensor::Narrow(_, a) => bytes!(a),
        };
        Ok(TensorView {
            dtype: t.dtype(),
            shape: t.shape(),
            data,
        })
    }
}

/// A compiled model ready to run. See the module docs.
pub struct Session {
    exec: Executor,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
}

fn io_info(p: &Program, v: kiln_ir::ValueId, name: &str) -> Result<IoInfo, SessionError> {
    let ty = &p.graph.value(v).ty;
    let shape = ty.shape.concrete().ok_or_else(|| {
        SessionError::Other(format!(
            "`{name}` has symbolic dimensions ({ty}); bind them before compiling"
        ))
    })?;
    Ok(IoInfo {
        name: name.to_string(),
        dtype: ty.dtype,
        shape,
    })
}

impl Session {
    /// A session over a program compiled in this process (JIT-compiles its
    /// kernels and packs its weights).
    pub fn new(
        program: Program,
        weights: &Weights,
        opts: &SessionOptions,
    ) -> Result<Session, SessionError> {
        Session::with_exec_options(
            program,
            weights,
            &ExecOptions {
                threads: opts.threads,
                isa: None,
            },
        )
    }

    /// Like [`Session::new`], with every executor setting (e.g. a forced ISA).
    pub fn with_exec_options(
        program: Program,
        weights: &Weights,
        opts: &ExecOptions,
    ) -> Result<Session, SessionError> {
        Session::build(program, |p, o| Executor::new(p, weights, o), opts)
    }

    fn build(
        program: Program,
        exec: impl FnOnce(Program, &ExecOptions) -> Result<Executor, ExecError>,
        opts: &ExecOptions,
    ) -> Result<Session, SessionError> {
        let g = &program.graph;
        let inputs = g
            .inputs()
            .iter()
            .map(|&v| io_info(&program, v, g.value(v).name.as_deref().unwrap_or("")))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = g
            .outputs()
            .iter()
            .map(|(name, v)| io_info(&program, *v, name))
            .collect::<Result<Vec<_>, _>>()?;
        let exec = exec(program, opts)?;
        Ok(Session {
            exec,
            inputs,
            outputs,
        })
    }

    /// Load a `.kiln` artifact from memory (see [`crate::artifact`]).
    pub fn from_bytes(bytes: &[u8], opts: &SessionOptions) -> Result<Session, SessionError> {
        let art = crate::artifact::Artifact::from_bytes(bytes)?;
        Session::from_artifact(art, opts)
    }

    /// A session over a decoded artifact, on the ISA its target selects for
    /// this CPU (the weights are moved into the executor, not copied).
    pub fn from_artifact(
        art: crate::artifact::Artifact,
        opts: &SessionOptions,
    ) -> Result<Session, SessionError> {
        let isa = art.target.select_isa()?;
        let weights = art.weights;
        Session::build(
            art.program,
            |p, o| Executor::new_owned(p, weights, o),
            &ExecOptions {
                threads: opts.threads,
                isa: Some(isa),
            },
        )
    }

    /// Load a `.kiln` artifact file.
    pub fn load(path: impl AsRef<Path>, opts: &SessionOptions) -> Result<Session, SessionError> {
        let art = crate::artifact::Artifact::read_file(path.as_ref())?;
        Session::from_artifact(art, opts)
    }

    /// The inputs [`Session::run`] takes, in order.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// The outputs [`Session::run`] returns, in order.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// Check one input view against the model's declaration.
    pub fn check_input(info: &IoInfo, t: &TensorView) -> Result<(), SessionError> {
        let err = |msg: String| SessionError::Input {
            name: info.name.clone(),
            msg,
        };
        if t.dtype != info.dtype || t.shape != info.shape.as_slice() {
            return Err(err(format!(
                "expected {}, got {}",
                TensorType::concrete(info.dtype, &info.shape),
                TensorType::concrete(t.dtype, t.shape)
            )));
        }
        let want = info.byte_len();
        if t.data.len() != want {
            return Err(err(format!(
                "{} needs {want} bytes, got {}",
                TensorType::concrete(info.dtype, &info.shape),
                t.data.len()
            )));
        }
        Ok(())
    }

    /// Run on `inputs`, given in [`Session::inputs`] order; returns the
    /// outputs in [`Session::outputs`] order.
    pub fn run(&self, inputs: &[TensorView]) -> Result<Vec<Tensor>, SessionError> {
        if inputs.len() != self.inputs.len() {
            return Err(SessionError::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
                names: self
                    .inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut named = HashMap::with_capacity(inputs.len());
        for (info, t) in self.inputs.iter().zip(inputs) {
            Session::check_input(info, t)?;
            let tensor = Tensor::from_le_bytes(t.dtype, t.shape, t.data).map_err(|msg| {
                SessionError::Input {
                    name: info.name.clone(),
                    msg,
                }
            })?;
            named.insert(info.name.clone(), tensor);
        }
        let outs = self.exec.run(&named)?;
        Ok(outs.into_iter().map(|(_, t)| t).collect())
    }

    /// The executor underneath (its program, threads, profiled runs).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Session>();
    }

    #[test]
    fn f32_view_is_little_endian_bytes() {
        let x = [1.0f32, -2.5];
        let shape = [2];
        let v = TensorView::f32(&x, &shape);
        let mut want = 1.0f32.to_le_bytes().to_vec();
        want.extend_from_slice(&(-2.5f32).to_le_bytes());
        assert_eq!(v.data, want.as_slice());
        let t = Tensor::f32(&[2], x.to_vec());
        let v2 = TensorView::from_tensor(&t).unwrap();
        assert_eq!(v2.data, v.data);
        assert_eq!(v2.shape, &[2]);
    }
}
