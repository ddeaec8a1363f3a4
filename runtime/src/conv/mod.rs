//! 2-D convolution (NCHW, f32) on the packed GEMM.
//!
//! A [`Conv2d`] is prepared once from the weights (packed for the GEMM, per
//! group) and run many times. Each image and group is one GEMM
//! `Y[g] (M/G × OH·OW) = W[g] (M/G × C/G·KH·KW) · cols`, where the columns
//! matrix is never materialised: each GEMM unit packs its own panel of it
//! straight from the input (implicit im2col), so the panel is built in L2
//! right before the microkernels read it. Two shapes skip that:
//! - a 1×1 convolution with stride 1 and no padding multiplies the weights
//!   by the input itself (`cols` is the `C/G × H·W` input);
//! - a depthwise convolution (`groups == C == M`) runs a direct per-channel
//!   loop, vectorised along output rows.
//!
//! The bias is added per finished output tile, then the caller's epilogue
//! runs on the same tile (its `batch` is the image, its rows the output
//! channels, its columns the flattened output pixels `oh * OW + ow`).
//!
//! Threads follow the GEMM's rule: work is split over output tiles, images
//! and channels, never over the reduction, so 1 and N threads give bitwise
//! identical results. A 1-D convolution is run as a 2-D one of height 1;
//! 3-D and higher return [`ConvError::Unsupported`].

mod depthwise;
mod im2col;

use rayon::prelude::*;

use crate::gemm::{
    params, run_job, CPtr, Ctx, Epilogue, EpilogueTile, GemmError, Isa, Job, MatRef, PackedA,
};

/// Why a convolution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvError {
    /// The parameters or buffers are inconsistent.
    #[error("invalid convolution: {0}")]
    Invalid(String),
    /// Valid, but not handled by these kernels (e.g. 3-D): use a fallback.
    #[error("unsupported by the fast convolution path: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Gemm(#[from] GemmError),
}

/// The geometry of a 2-D convolution, in ONNX's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `M`.
    pub out_channels: usize,
    /// `G`: both channel counts are multiples of it.
    pub groups: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`, at least 1.
    pub strides: [usize; 2],
    /// `[DH, DW]`, at least 1.
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]` (ONNX's `pads` order for 2-D).
    pub pads: [usize; 4],
}

impl Conv2dParams {
    /// From ONNX-style per-axis lists (`pads` = begins then ends). One
    /// spatial axis becomes a height-1 2-D convolution; three or more are
    /// [`ConvError::Unsupported`].
    pub fn from_spatial(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        kernel: &[usize],
        strides: &[usize],
        dilations: &[usize],
        pads: &[usize],
    ) -> Result<Self, ConvError> {
        let r = kernel.len();
        if strides.len() != r || dilations.len() != r || pads.len() != 2 * r {
            return Err(ConvError::Invalid(format!(
                "kernel {kernel:?}, strides {strides:?}, dilations {dilations:?}, pads {pads:?} disagree on the spatial rank"
            )));
        }
        let (kernel, strides, dilations, pads) = match r {
            1 => (
                [1, kernel[0]],
                [1, strides[0]],
                [1, dilations[0]],
                [0, pads[0], 0, pads[1]],
            ),
            2 => (
                [kernel[0], kernel[1]],
                [strides[0], strides[1]],
                [dilations[0], dilations[1]],
                [pads[0], pads[1], pads[2], pads[3]],
            ),
            _ => {
                return Err(ConvError::Unsupported(format!(
                    "{r}-D convolution (1-D and 2-D only)"
                )))
            }
        };
        Ok(Conv2dParams {
            in_channels,
            out_channels,
            groups,
            kernel,
            strides,
            dilations,
            pads,
        })
    }

    fn check(&self) -> Result<(), ConvError> {
        let bad = |m: String| Err(ConvError::Invalid(m));
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return bad(format!(
                "{} groups do not divide {} input and {} output channels",
                self.groups, self.in_channels, self.out_channels
            ));
        }
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return bad(format!(
                "kernel {:?}, strides {:?} and dilations {:?} must be positive",
                self.kernel, self.strides, self.dilations
            ));
        }
        Ok(())
    }

    /// `[OH, OW]` for an `H × W` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<[usize; 2], ConvError> {
        let axis = |len: usize, ax: usize| -> Result<usize, ConvError> {
            let padded = len
                .checked_add(self.pads[ax])
                .and_then(|x| x.checked_add(self.pads[ax + 2]));
            let span = (self.kernel[ax] - 1)
                .checked_mul(self.dilations[ax])
                .and_then(|x| x.checked_add(1));
            match (padded, span) {
                (Some(p), Some(s)) if p >= s => Ok((p - s) / self.strides[ax] + 1),
                _ => Err(ConvError::Invalid(format!(
                    "input extent {len} (+ pads) is smaller than the dilated kernel on axis {ax}"
                ))),
            }
        };
        Ok([axis(h, 0)?, axis(w, 1)?])
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4]
    }

    fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels && self.groups > 1
    }

    /// `C/G · KH · KW`, the GEMM's K.
    fn k(&self) -> Option<usize> {
        (self.in_channels / self.groups)
            .checked_mul(self.kernel[0])?
            .checked_mul(self.kernel[1])
    }
}

enum Weights {
    /// One packed `M/G × C/G·KH·KW` matrix per group.
    Gemm(Vec<PackedA>),
    /// `C × KH·KW`, as given.
    Depthwise(Vec<f32>),
}

/// A convolution prepared for running: validated geometry, weights packed
/// for one [`Isa`], bias.
pub struct Conv2d {
    params: Conv2dParams,
    isa: Isa,
    weights: Weights,
    bias: Option<Vec<f32>>,
}

impl std::fmt::Debug for Conv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv2d")
            .field("params", &self.params)
            .field("isa", &self.isa)
            .field(
                "path",
                &match self.weights {
                    Weights::Gemm(_) if self.params.is_pointwise() => "pointwise gemm",
                    Weights::Gemm(_) => "implicit im2col gemm",
                    Weights::Depthwise(_) => "depthwise direct",
                },
            )
            .finish()
    }
}

impl Conv2d {
    /// Prepares a convolution. `weight` is `M × C/G × KH × KW` (ONNX
    /// layout), `bias` has `M` elements.
    pub fn new(
        isa: Isa,
        params: Conv2dParams,
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Self, ConvError> {
        params.check()?;
        let k = params
            .k()
            .ok_or_else(|| ConvError::Invalid("kernel size overflows".into()))?;
        let m = params.out_channels;
        let want = m
            .checked_mul(k)
            .ok_or_else(|| ConvError::Invalid("weight size overflows".into()))?;
        if weight.len() != want {
            return Err(ConvError::Invalid(format!(
                "weight has {} elements, {m}×{}×{}×{} needs {want}",
                weight.len(),
                params.in_channels / params.groups,
                params.kernel[0],
                params.kernel[1]
            )));
        }
        if let Some(b) = bias {
            if b.len() != m {
                return Err(ConvError::Invalid(format!(
                    "bias has {} elements for {m} output channels",
                    b.len()
                )));
            }
        }
        let weights = if params.is_depthwise() {
            Weights::Depthwise(weight.to_vec())
        } else {
            let mg = m / params.groups;
            let packed = (0..params.groups)
                .map(|g| {
                    let wg = &weight[g * mg * k..][..mg * k];
                    PackedA::new(isa, MatRef::row_major(wg, mg, k)?)
                })
                .collect::<Result<Vec<_>, GemmError>>()?;
            Weights::Gemm(packed)
        };
        Ok(Conv2d {
            params,
            isa,
            weights,
            bias: bias.map(<[f32]>::to_vec),
        })
    }

    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `[OH, OW]` for an `H × W` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<[usize; 2], ConvError> {
        self.params.output_size(h, w)
    }

    /// `y = conv(x) + bias`, then `epilogue` per finished output tile.
    /// `x` is `N × C × H × W` (`input = [N, H, W]`), `y` is
    /// `N × M × OH × OW`, both dense NCHW.
    pub fn run(
        &self,
        ctx: &Ctx<'_>,
        x: &[f32],
        [n, h, w]: [usize; 3],
        y: &mut [f32],
        epilogue: Option<&Epilogue<'_>>,
    ) -> Result<(), ConvError> {
        ctx.check()?;
        if ctx.isa() != self.isa {
            return Err(GemmError::IsaMismatch {
                what: "the convolution's weights",
                packed: self.isa,
                ctx: ctx.isa(),
            }
            .into());
        }
        let p = &self.params;
        let [oh, ow] = self.output_size(h, w)?;
        let size = |dims: &[usize]| dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let (xlen, ylen) = match (
            size(&[n, p.in_channels, h, w]),
            size(&[n, p.out_channels, oh, ow]),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(ConvError::Invalid("tensor size overflows".into())),
        };
        if x.len() != xlen || y.len() != ylen {
            return Err(ConvError::Invalid(format!(
                "input has {} elements (want {xlen} = {n}×{}×{h}×{w}), output {} (want {ylen} = {n}×{}×{oh}×{ow})",
                x.len(),
                p.in_channels,
                y.len(),
                p.out_channels
            )));
        }
        if ylen == 0 {
            return Ok(());
        }
        let geo = im2col::Geometry::new(p, h, w, oh, ow);
        match &self.weights {
            Weights::Depthwise(wt) => {
                depthwise::run(ctx, &geo, x, wt, self.bias.as_deref(), y, epilogue);
            }
            Weights::Gemm(packed) => self.run_gemm(ctx, &geo, packed, x, n, y, epilogue),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_gemm(
        &self,
        ctx: &Ctx<'_>,
        geo: &im2col::Geometry,
        packed: &[PackedA],
        x: &[f32],
        n: usize,
        y: &mut [f32],
        epilogue: Option<&Epilogue<'_>>,
    ) {
        let p = &self.params;
        let g = p.groups;
        let (mg, cg) = (p.out_channels / g, p.in_channels / g);
        let (hw, ohw) = (geo.h * geo.w, geo.oh * geo.ow);
        let k = p.k().expect("checked in new");
        let a_of = |batch: usize| packed[batch % g].panels();
        let c_offset = |batch: usize| batch * mg * ohw;
        let bias = self.bias.as_deref();
        // Bias, then the caller's epilogue, on each finished tile.
        let epi = |tile: EpilogueTile<'_>| {
            let (img, grp) = (tile.batch / g, tile.batch % g);
            let (row0, col0) = (grp * mg + tile.row0, tile.col0);
            let mut tile = tile.renamed(img, row0, col0);
            if let Some(b) = bias {
                let r0 = tile.row0;
                tile.for_each_row(|i, row| {
                    let bi = b[r0 + i];
                    row.iter_mut().for_each(|v| *v += bi);
                });
            }
            if let Some(e) = epilogue {
                e(tile);
            }
        };
        let pointwise;
        let gather;
        let source: &dyn crate::gemm::PanelSource = if p.is_pointwise() {
            pointwise = crate::gemm::RawB {
                view: MatRef::new(x, cg, hw, hw, 1).expect("sizes checked by run"),
                bstride: cg * hw,
            };
            &pointwise
        } else {
            gather = im2col::Im2col {
                geo,
                x,
                group_len: cg * hw,
                k,
            };
            &gather
        };
        let job = Job {
            isa: self.isa,
            m: mg,
            n: ohw,
            k,
            batches: n * g,
            a: &a_of,
            b: source,
            c: CPtr(y.as_mut_ptr()),
            c_len: y.len(),
            ldc: ohw,
            c_offset: &c_offset,
            accumulate: false,
            epilogue: if bias.is_some() || epilogue.is_some() {
                Some(&epi)
            } else {
                None
            },
        };
        debug_assert_eq!(params(self.isa).mr, params(packed[0].isa()).mr);
        run_job(ctx, &job);
    }
}

/// One-shot convolution: prepares `weight` for `ctx`'s ISA and runs it.
/// Prefer [`Conv2d`] when the weights are reused.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    ctx: &Ctx<'_>,
    params: Conv2dParams,
    x: &[f32],
    input: [usize; 3],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    epilogue: Option<&Epilogue<'_>>,
) -> Result<(), ConvError> {
    Conv2d::new(ctx.isa(), params, weight, bias)?.run(ctx, x, input, y, epilogue)
}

/// Runs `f(plane_index, plane)` over `y`'s `plane`-sized chunks, on `ctx`'s
/// pool when there is enough work.
pub(crate) fn for_each_plane(
    ctx: &Ctx<'_>,
    y: &mut [f32],
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let pool = ctx
        .pool()
        .filter(|p| p.current_num_threads() > 1 && work >= 1 << 16);
    match pool {
        Some(pool) => pool.install(|| {
            y.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(i, c)| f(i, c))
        }),
        None => y.chunks_mut(plane).enumerate().for_each(|(i, c)| f(i, c)),
    }
}

#[cfg(test)]
mod tests;
