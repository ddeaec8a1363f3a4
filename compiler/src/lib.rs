//! kiln-compiler: front ends, the pass manager and the passes.
//!
//! Empty so far: the ONNX importer (issue 3) and the pass manager with its
//! passes (issue 4) land here. It may depend on kiln-ir but never on the runtime.
