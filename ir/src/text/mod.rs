//! The `.kir` text format: a canonical printer and a parser with line/column
//! errors. `print(parse(print(g))) == print(g)` for every verified graph.
//!
//! ```text
//! graph mlp {
//!   input %x: f32[N,784]
//!   param %fc1.weight: f32[784,128]
//!   %0 = matmul(%x, %fc1.weight): f32[N,128]
//!   %1 = leaky_relu(%0) {alpha = 0.01}: f32[N,128]
//!   %2 = constant() {value = tensor<f32[2]>[1.0, 2.0]}: f32[2]
//!   output logits = %1
//! }
//! ```
//!
//! Inputs and params keep their names; node results are numbered `%0, %1, ...`
//! in canonical node order (see `Graph::order`). `#` starts a comment.

mod lexer;
mod parser;
mod printer;

pub use parser::{parse, parse_unverified, ParseError};
pub use printer::print;

/// Whether `s` can be written after `%` without quotes.
pub(crate) fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}
