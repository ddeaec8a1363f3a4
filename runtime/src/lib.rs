//! kiln-runtime: what an application embeds to run a compiled model.
//!
//! Today it knows the host: which instruction set the Cranelift JIT will target
//! and which CPU features the kernels may use. The artifact loader, the CPU
//! executor and the C API build on this. It never depends on the compiler or on
//! protobuf.

pub mod artifact;
pub mod capi;
pub mod conv;
pub mod exec;
pub mod gemm;
pub mod host;
pub mod jit;
pub mod pool;
pub mod session;
pub mod zero_copy;
