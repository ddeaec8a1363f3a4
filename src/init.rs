//! Deterministic pseudo-random weights and inputs.
//!
//! Each tensor's stream is seeded from its name (FNV-1a) and a global seed, so
//! adding a parameter never changes the values of the others, and the same
//! model always gets the same data on every machine (ChaCha8 is specified
//! bit-for-bit, unlike `StdRng`).

use kiln_ir::{DType, Graph, Tensor, TensorType, Weights};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn name_seed(name: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Uniform values in `[lo, hi)` of the given type (floats), or integers in
/// `[lo, hi)` (integer types), or fair booleans.
pub fn uniform(name: &str, seed: u64, ty: &TensorType, lo: f64, hi: f64) -> Result<Tensor, String> {
    let dims = ty
        .shape
        .concrete()
        .ok_or_else(|| format!("`{name}` has unbound dimensions: {ty}"))?;
    let n: usize = dims.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed(name, seed));
    let vals: Vec<f64> = if ty.dtype.is_float() {
        (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f64>())
            .collect()
    } else if ty.dtype == DType::Bool {
        (0..n)
            .map(|_| f64::from(u8::from(rng.random::<bool>())))
            .collect()
    } else {
        let (l, h) = (
            lo.ceil() as i64,
            (hi.ceil() as i64).max(lo.ceil() as i64 + 1),
        );
        (0..n).map(|_| rng.random_range(l..h) as f64).collect()
    };
    Tensor::from_vec_f64(ty.dtype, &dims, vals)
}

/// The role a parameter plays, guessed from its name, which picks its init.
fn init_range(name: &str, ty: &TensorType) -> (f64, f64) {
    let last = name.rsplit(['.', '/']).next().unwrap_or(name);
    match last {
        // Batch-norm statistics and affine parameters: plausible, well-conditioned.
        "gamma" | "scale" => (0.8, 1.2),
        "beta" => (-0.1, 0.1),
        "mean" | "running_mean" => (-0.2, 0.2),
        "var" | "running_var" => (0.5, 1.5),
        "bias" | "b" => (-0.1, 0.1),
        _ => {
            // PyTorch's default (Kaiming-uniform with a = sqrt(5)): U(±1/sqrt(fan_in)).
            // fan_in is every dim but the output one: dim 0 for conv weights
            // [M, C, k...], dim 0 for matmul weights stored [in, out].
            let dims = ty.shape.concrete().unwrap_or_default();
            let fan_in: usize = match dims.len() {
                0 | 1 => 1,
                2 => dims[0],
                _ => dims[1..].iter().product(),
            };
            let b = 1.0 / (fan_in.max(1) as f64).sqrt();
            (-b, b)
        }
    }
}

/// Deterministic weights for every param of `g`.
pub fn init_weights(g: &Graph, seed: u64) -> Result<Weights, String> {
    let mut w = Weights::default();
    for &p in g.params() {
        let v = g.value(p);
        let name = v.name.clone().unwrap_or_default();
        let (lo, hi) = init_range(&name, &v.ty);
        w.insert(name.clone(), uniform(&name, seed, &v.ty, lo, hi)?);
    }
    Ok(w)
}

/// Deterministic input data in [-1, 1) for an input of type `ty`.
pub fn random_input(name: &str, ty: &TensorType) -> Result<Tensor, String> {
    uniform(name, 0x6b69_6c6e, ty, -1.0, 1.0)
}
