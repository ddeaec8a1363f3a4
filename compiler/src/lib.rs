//! kiln-compiler: front ends, the pass manager and the passes.
//!
//! - [`onnx`]: the ONNX protobuf types and the importer;
//! - [`passes`]: the pass manager and the graph-level passes.
//!
//! It may depend on kiln-ir but never on the runtime.

pub mod codegen;
pub mod onnx;
pub mod passes;
// Loss and regulariser builders for training steps (issue 7).
pub mod losses;
pub mod train;
