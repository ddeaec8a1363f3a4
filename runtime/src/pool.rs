//! Pooling over gather tables ([`kiln_ir::ops::pool::PoolTable`]): every
//! output element of a plane reduces a fixed list of input offsets, shared
//! by all planes, so padding, dilation and ceil mode cost nothing extra.
//! Max propagates NaN and averages divide by the table's divisors, as the
//! reference `max_pool`/`avg_pool` do (in f32 rather than f64).

use kiln_ir::ops::pool::{PoolKind, PoolTable};
use rayon::prelude::*;

/// Planes per rayon task.
const PLANES_PER_TASK: usize = 4;

fn plane(t: &PoolTable, x: &[f32], y: &mut [f32]) {
    let taps = t.taps;
    for (o, out) in y.iter_mut().enumerate() {
        let row = &t.idx[o * taps..(o + 1) * taps];
        *out = match t.kind {
            PoolKind::Max => {
                let mut acc = f32::NEG_INFINITY;
                for &i in row {
                    if i >= 0 {
                        let v = x[i as usize];
                        if v > acc || v.is_nan() {
                            acc = v;
                        }
                        if acc.is_nan() {
                            break;
                        }
                    }
                }
                acc
            }
            PoolKind::Avg => {
                let mut acc = 0f32;
                for &i in row {
                    if i >= 0 {
                        acc += x[i as usize];
                    }
                }
                acc / t.divisors[o] as f32
            }
        };
    }
}

/// `y = pool(x)` over `planes` planes (`x`: planes × `in_plane`, `y`:
/// planes × `out_plane`), on `pool` when given.
pub fn pool(
    t: &PoolTable,
    x: &[f32],
    y: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
) -> Result<(), String> {
    let (ip, op) = (t.in_plane, t.out_plane);
    if ip == 0 || op == 0 || !x.len().is_multiple_of(ip) || y.len() != x.len() / ip * op {
        return Err(format!(
            "pool over {} input and {} output elements does not match planes of {ip} and {op}",
            x.len(),
            y.len()
        ));
    }
    if t.idx.len() != op * t.taps || t.idx.iter().any(|&i| i >= ip as i32) {
        return Err("malformed pool table".into());
    }
    match pool {
        Some(p) if y.len() >= 1 << 14 => p.install(|| {
            y.par_chunks_mut(op * PLANES_PER_TASK)
                .zip(x.par_chunks(ip * PLANES_PER_TASK))
                .for_each(|(yc, xc)| {
                    for (yp, xp) in yc.chunks_mut(op).zip(xc.chunks(ip)) {
                        plane(t, xp, yp);
                    }
                })
        }),
        _ => {
            for (yp, xp) in y.chunks_mut(op).zip(x.chunks(ip)) {
                plane(t, xp, yp);
            }
        }
    }
    Ok(())
}
