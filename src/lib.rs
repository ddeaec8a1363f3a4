//! kiln: a compiler and runtime for neural-network computation graphs.
//!
//! This facade re-exports the three crates and holds what the `kiln` command
//! shares with tests and examples: deterministic initialisation, `.npy` I/O,
//! and the embedded example models.

pub use kiln_compiler as compiler;
pub use kiln_ir as ir;
pub use kiln_runtime as runtime;

pub mod backend;
pub mod bench;
pub mod conformance;
pub mod data;
pub mod examples;
pub mod init;
pub mod npy;
pub mod train;
