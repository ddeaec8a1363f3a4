//! The zero-copy run: [`Session::run_into`] reads the inputs where the
//! caller keeps them and writes the outputs into the caller's buffers.
//!
//! ```no_run
//! use kiln_runtime::session::{Session, SessionOptions, TensorView};
//! use kiln_runtime::zero_copy::TensorViewMut;
//! let s = Session::load("model.kiln", &SessionOptions::default())?;
//! let x = vec![0.0f32; 4 * 784];
//! let mut y = vec![0.0f32; 4 * 10];
//! let (xs, ys) = ([4, 784], [4, 10]);
//! s.run_into(&[TensorView::f32(&x, &xs)], &mut [TensorViewMut::f32(&mut y, &ys)])?;
//! # Ok::<(), kiln_runtime::session::SessionError>(())
//! ```
//!
//! Each f32 output that a step computes is written straight into its
//! buffer (the executor binds the buffer where a fresh output tensor would
//! go); outputs that are not (non-f32, a weight, an input passed through,
//! a reshape of an intermediate) are copied in once at the end. Buffers
//! that are not 4-byte aligned are staged through a copy.

use kiln_ir::{DType, TensorType};

use crate::exec::ExecError;
use crate::session::{Session, SessionError, TensorView};

/// A caller's output buffer: element type, shape and room for the
/// elements' little-endian bytes in row-major order (one byte per element
/// for narrow types, as [`kiln_ir::Tensor::to_le_bytes`] writes them).
#[derive(Debug)]
pub struct TensorViewMut<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a mut [u8],
}

impl<'a> TensorViewMut<'a> {
    /// A view of an f32 buffer (written in place on a little-endian host).
    pub fn f32(data: &'a mut [f32], shape: &'a [usize]) -> Self {
        TensorViewMut {
            dtype: DType::F32,
            shape,
            data: bytemuck::cast_slice_mut(data),
        }
    }

    /// The same buffer, read-only.
    pub fn as_view(&self) -> TensorView<'_> {
        TensorView {
            dtype: self.dtype,
            shape: self.shape,
            data: self.data,
        }
    }
}

impl Session {
    /// Run on `inputs` ([`Session::inputs`] order), writing the outputs
    /// into `outputs` ([`Session::outputs`] order): see the module docs.
    /// Counts, dtypes, shapes and byte lengths are checked before anything
    /// runs, and errors name the input or output. On an error during the
    /// run the buffers may hold partial results.
    pub fn run_into(
        &self,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<(), SessionError> {
        let names = |io: &[crate::session::IoInfo]| {
            io.iter()
                .map(|i| format!("`{}`", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if inputs.len() != self.inputs().len() {
            return Err(SessionError::InputCount {
                expected: self.inputs().len(),
                got: inputs.len(),
                names: names(self.inputs()),
            });
        }
        if outputs.len() != self.outputs().len() {
            return Err(SessionError::Other(format!(
                "expected {} output buffers ({}), got {}",
                self.outputs().len(),
                names(self.outputs()),
                outputs.len()
            )));
        }
        for (info, t) in self.inputs().iter().zip(inputs) {
            Session::check_input(info, t)?;
        }
        for (info, t) in self.outputs().iter().zip(outputs.iter()) {
            let err = |msg: String| {
                SessionError::Exec(ExecError::Output {
                    name: info.name.clone(),
                    msg,
                })
            };
            if t.dtype != info.dtype || t.shape != info.shape.as_slice() {
                return Err(err(format!(
                    "expected {}, got {}",
                    TensorType::concrete(info.dtype, &info.shape),
                    TensorType::concrete(t.dtype, t.shape)
                )));
            }
            if t.data.len() != info.byte_len() {
                return Err(err(format!(
                    "{} needs {} bytes, the buffer has {}",
                    TensorType::concrete(info.dtype, &info.shape),
                    info.byte_len(),
                    t.data.len()
                )));
            }
        }
        self.executor().run_into(inputs, outputs)?;
        Ok(())
    }
}
