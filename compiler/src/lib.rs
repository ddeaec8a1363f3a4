//! kiln-compiler: front ends, the pass manager and the passes.
//!
//! So far: [`onnx`], the ONNX protobuf types, model loading and `TensorProto`
//! decoding that the ONNX importer (issue 3) builds on. The pass manager with
//! its passes (issue 4) lands here too. It may depend on kiln-ir but never on
//! the runtime.

pub mod onnx;
