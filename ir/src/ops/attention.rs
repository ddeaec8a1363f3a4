//! Attention-family ops: `attention` (scaled dot-product attention with
//! grouped KV heads, causal/window masks, soft-capping and per-batch KV
//! lengths) and `rotary_embedding`.
//!
//! `attention` works on 4-D tensors `q [B, Hq, S, D]`, `k [B, Hkv, T, D]`,
//! `v [B, Hkv, T, Dv]`; the ONNX converter reshapes 3-D inputs and concatenates
//! a KV cache before it. Its meaning follows ONNX Attention (opset 23-25): the
//! additive bias of query `i` and key `j` is the float mask (or `-inf` where a
//! bool mask is false, or past the mask's last dimension), plus `-inf` where
//! the causal rule `j <= i + offset`, the window, or the KV length excludes the
//! key. A query row with no key left gets zero probabilities (so `Y = 0`).
//! Intermediate values are rounded to the input dtype at the points ONNX's
//! function body materialises them (scaled Q and K, the logits, the biased
//! logits, the probabilities), so f16/bf16 results match ONNX's to the ulp.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{
    attr_err, dtype_err, expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError,
    OpResult,
};
use crate::ops::require_float;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Round `x` to the precision of `dt` (identity for f64 and non-floats).
pub(crate) fn round_to(dt: DType, x: f64) -> f64 {
    match dt {
        DType::F32 => x as f32 as f64,
        DType::F16 => half::f16::from_f64(x).to_f64(),
        DType::BF16 => half::bf16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// The sum of `xs` as ONNX's reference computes a softmax denominator: bf16
/// accumulates in bf16, in order, rounding after every addition; the other
/// float types accumulate wide and round once.
pub(crate) fn accumulate(dt: DType, xs: &[f64]) -> f64 {
    if dt == DType::BF16 {
        xs.iter().fold(0.0, |a, &x| round_to(dt, a + x))
    } else {
        round_to(dt, xs.iter().sum())
    }
}

/// What the optional second output of `attention` holds (ONNX
/// `qk_matmul_output_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QkOutput {
    /// The scaled `Q K^T` (after soft-capping, as ONNX's reference computes it).
    Logits,
    /// The same as `Logits` (ONNX mode 1: after soft-capping, before the bias).
    Capped,
    /// Logits plus the mask bias.
    Biased,
    /// The probabilities (fully masked rows are zero).
    Probs,
}

impl QkOutput {
    pub fn from_mode(m: i64) -> Option<QkOutput> {
        match m {
            0 => Some(QkOutput::Logits),
            1 => Some(QkOutput::Capped),
            2 => Some(QkOutput::Biased),
            3 => Some(QkOutput::Probs),
            _ => None,
        }
    }
    pub fn mode(self) -> i64 {
        match self {
            QkOutput::Logits => 0,
            QkOutput::Capped => 1,
            QkOutput::Biased => 2,
            QkOutput::Probs => 3,
        }
    }
}

/// Scaled dot-product attention. Inputs `q, k, v`, then optionally a mask
/// (bool, or float like `q`; broadcast to `[B, Hq, S, *]`, its last dimension
/// at most `T`) and optionally the valid KV lengths (an integer `[B]` vector,
/// told apart from the mask by its integer dtype). Outputs `y [B, Hq, S, Dv]`
/// and, with `qk_output`, the chosen intermediate `[B, Hq, S, T]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attention {
    /// Multiplies `Q K^T`; `None` means `1 / sqrt(D)`.
    pub scale: Option<F64>,
    /// `softcap * tanh(logits / softcap)` before the bias when > 0.
    pub softcap: F64,
    pub causal: bool,
    /// Keys visible to the left / right of the query's absolute position; -1 = unbounded.
    pub window_left: i64,
    pub window_right: i64,
    /// Absolute position of query 0 (the past length of a KV cache) for the
    /// causal and window rules; with KV lengths it is `len[b] - S` instead.
    pub offset: i64,
    /// The dtype softmax runs in (ONNX `softmax_precision`); `None` = the input's.
    pub softmax_dtype: Option<DType>,
    pub qk_output: Option<QkOutput>,
}

impl Default for Attention {
    fn default() -> Attention {
        Attention {
            scale: None,
            softcap: F64(0.0),
            causal: false,
            window_left: -1,
            window_right: -1,
            offset: 0,
            softmax_dtype: None,
            qk_output: None,
        }
    }
}

impl Attention {
    fn check(&self) -> Result<(), AttrError> {
        let bad = |attr: &str, msg: String| {
            Err(AttrError {
                attr: attr.into(),
                msg,
            })
        };
        if let Some(s) = self.scale {
            if !s.0.is_finite() || s.0 < 0.0 {
                return bad("scale", format!("must be finite and >= 0, found {}", s.0));
            }
        }
        if !self.softcap.0.is_finite() || self.softcap.0 < 0.0 {
            return bad(
                "softcap",
                format!("must be finite and >= 0, found {}", self.softcap.0),
            );
        }
        for (n, w) in [
            ("window_left", self.window_left),
            ("window_right", self.window_right),
        ] {
            if w < -1 {
                return bad(n, format!("must be -1 or >= 0, found {w}"));
            }
        }
        if let Some(d) = self.softmax_dtype {
            if !d.is_float() {
                return bad("softmax_dtype", format!("must be a float type, found {d}"));
            }
        }
        Ok(())
    }
    /// The mask and KV-length inputs, told apart by dtype.
    fn extras<'a, T>(
        &self,
        inputs: &'a [T],
        is_int: impl Fn(&T) -> bool,
    ) -> (Option<&'a T>, Option<&'a T>) {
        let rest = &inputs[3.min(inputs.len())..];
        match rest {
            [a, b] => (Some(a), Some(b)),
            [a] if is_int(a) => (None, Some(a)),
            [a] => (Some(a), None),
            _ => (None, None),
        }
    }
}

fn known(d: &Dim) -> Option<usize> {
    d.known()
}

impl OpDef for Attention {
    const SPELLINGS: &'static [&'static str] = &["attention"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let softmax_dtype = match attrs.opt_str("softmax_dtype")? {
            None => None,
            Some(s) => Some(DType::from_name(&s).ok_or_else(|| AttrError {
                attr: "softmax_dtype".into(),
                msg: format!("unknown dtype {s:?}"),
            })?),
        };
        let qk_output = match attrs.opt_int("qk_output")? {
            None => None,
            Some(m) => Some(QkOutput::from_mode(m).ok_or_else(|| AttrError {
                attr: "qk_output".into(),
                msg: format!("must be 0, 1, 2 or 3, found {m}"),
            })?),
        };
        let op = Attention {
            scale: attrs.opt_float("scale")?.map(F64),
            softcap: F64(attrs.float("softcap", 0.0)?),
            causal: attrs.int("causal", 0)? != 0,
            window_left: attrs.int("window_left", -1)?,
            window_right: attrs.int("window_right", -1)?,
            offset: attrs.int("offset", 0)?,
            softmax_dtype,
            qk_output,
        };
        op.check()?;
        Ok(op)
    }
    fn spelling(&self) -> &'static str {
        "attention"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        if let Some(s) = self.scale {
            w.float("scale", s.0);
        }
        w.float("softcap", self.softcap.0);
        w.int("causal", i64::from(self.causal));
        w.int("window_left", self.window_left);
        w.int("window_right", self.window_right);
        w.int("offset", self.offset);
        if let Some(d) = self.softmax_dtype {
            w.str("softmax_dtype", d.base_name());
        }
        if let Some(m) = self.qk_output {
            w.int("qk_output", m.mode());
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 3, 5)?;
        self.check()?;
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        require_float(q, "attention query")?;
        for (n, t) in [("key", k), ("value", v)] {
            if t.dtype != q.dtype {
                return dtype_err(format!(
                    "attention {n} must be {} like the query, found {}",
                    q.dtype, t.dtype
                ));
            }
            if t.rank() != 4 {
                return shape_err(format!("attention {n} must be 4-D, found {}", t.shape));
            }
        }
        if q.rank() != 4 {
            return shape_err(format!("attention query must be 4-D, found {}", q.shape));
        }
        let (qd, kd, vd) = (q.shape.dims(), k.shape.dims(), v.shape.dims());
        if kd[0] != qd[0] || vd[0] != qd[0] || vd[1] != kd[1] || vd[2] != kd[2] || kd[3] != qd[3] {
            return shape_err(format!(
                "attention shapes do not agree: q {}, k {}, v {} (want [B,Hq,S,D], [B,Hkv,T,D], [B,Hkv,T,Dv])",
                q.shape, k.shape, v.shape
            ));
        }
        if let (Some(hq), Some(hkv)) = (known(&qd[1]), known(&kd[1])) {
            if hkv == 0 || hq % hkv != 0 {
                return shape_err(format!(
                    "attention query heads {hq} must be a multiple of the KV heads {hkv}"
                ));
            }
        }
        if inputs.len() == 5 && !inputs[4].dtype.is_int() {
            return dtype_err("attention KV lengths (input 4) must be integers".to_string());
        }
        let (mask, lens) = self.extras(inputs, |t| t.dtype.is_int());
        if let Some(m) = mask {
            if m.dtype != DType::Bool && m.dtype != q.dtype {
                return dtype_err(format!(
                    "attention mask must be bool or {}, found {}",
                    q.dtype, m.dtype
                ));
            }
            if m.rank() == 0 || m.rank() > 4 {
                return shape_err(format!(
                    "attention mask must have rank 1 to 4, found {}",
                    m.shape
                ));
            }
            let md = m.shape.dims();
            let target = [&qd[0], &qd[1], &qd[2]];
            for (i, d) in md[..md.len() - 1].iter().rev().enumerate() {
                let want = target[2 - i];
                if d != want && *d != Dim::Known(1) {
                    return shape_err(format!(
                        "attention mask {} does not broadcast to [B, Hq, S, T] = [{}, {}, {}, {}]",
                        m.shape, qd[0], qd[1], qd[2], kd[2]
                    ));
                }
            }
            if let (Some(mt), Some(t)) = (known(&md[md.len() - 1]), known(&kd[2])) {
                if mt > t {
                    return shape_err(format!(
                        "attention mask's last dimension {mt} exceeds the KV length {t}"
                    ));
                }
            }
        }
        if let Some(l) = lens {
            if !l.dtype.is_int() || l.rank() != 1 || l.shape.dims()[0] != qd[0] {
                return shape_err(format!(
                    "attention KV lengths must be an integer [{}] vector, found {l}",
                    qd[0]
                ));
            }
        }
        let y = TensorType::new(
            q.dtype,
            Shape(vec![qd[0].clone(), qd[1].clone(), qd[2].clone(), vd[3].clone()].into()),
        );
        let mut out = vec![y];
        if self.qk_output.is_some() {
            out.push(TensorType::new(
                q.dtype,
                Shape(vec![qd[0].clone(), qd[1].clone(), qd[2].clone(), kd[2].clone()].into()),
            ));
        }
        Ok(out)
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 3, 5)?;
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
            return Err(OpError::Eval("attention needs 4-D q, k, v".into()));
        }
        let (b, hq, s, d) = (qs[0], qs[1], qs[2], qs[3]);
        let (hkv, t, dv) = (ks[1], ks[2], vs[3]);
        if ks[0] != b
            || vs[0] != b
            || vs[1] != hkv
            || vs[2] != t
            || ks[3] != d
            || hkv == 0
            || hq % hkv != 0
        {
            return Err(OpError::Eval(format!(
                "attention shapes do not agree: {qs:?}, {ks:?}, {vs:?}"
            )));
        }
        let group = hq / hkv;
        let dt = q.dtype();
        let sdt = self.softmax_dtype.unwrap_or(dt);
        let r = |x: f64| round_to(dt, x);
        let rs = |x: f64| round_to(sdt, x);
        let (mask, lens) = self.extras(inputs, |t| t.dtype().is_int());

        // The mask as an additive bias [mb, mh, ms, tm] with broadcast strides.
        let mask = match mask {
            None => None,
            Some(m) => {
                let md = m.shape();
                if md.is_empty() || md.len() > 4 {
                    return Err(OpError::Eval("attention mask must have rank 1 to 4".into()));
                }
                let mut dims4 = vec![1usize; 4 - md.len()];
                dims4.extend_from_slice(md);
                let tm = dims4[3];
                for (i, want) in [b, hq, s].into_iter().enumerate() {
                    if dims4[i] != 1 && dims4[i] != want {
                        return Err(OpError::Eval(format!(
                            "attention mask {md:?} does not broadcast to [{b}, {hq}, {s}, {t}]"
                        )));
                    }
                }
                if tm > t {
                    return Err(OpError::Eval(format!(
                        "attention mask's last dimension {tm} exceeds the KV length {t}"
                    )));
                }
                let vals: Vec<f64> = match m {
                    Tensor::Bool(a) => a
                        .iter()
                        .map(|&x| if x { 0.0 } else { f64::NEG_INFINITY })
                        .collect(),
                    _ => m.to_f64().iter().copied().collect(),
                };
                Some((dims4, vals))
            }
        };
        let lens: Option<Vec<i64>> = match lens {
            None => None,
            Some(l) => {
                if l.shape() != [b] {
                    return Err(OpError::Eval(format!(
                        "attention KV lengths must have shape [{b}], found {:?}",
                        l.shape()
                    )));
                }
                Some(l.to_i64().iter().copied().collect())
            }
        };

        let scale = self.scale.map_or(1.0 / (d as f64).sqrt(), |s| s.0);
        let sq = r(scale.sqrt());
        let qa: Vec<f64> = q.to_f64().iter().map(|&x| r(x * sq)).collect();
        let ka: Vec<f64> = k.to_f64().iter().map(|&x| r(x * sq)).collect();
        let va: Vec<f64> = v.to_f64().iter().copied().collect();
        let cap = self.softcap.0;

        let mut y = vec![0.0; b * hq * s * dv];
        let mut qk_out = self.qk_output.map(|_| vec![0.0; b * hq * s * t]);
        let mut bias = vec![0.0; t];
        let mut logits = vec![0.0; t];
        let mut probs = vec![0.0; t];
        for bi in 0..b {
            let offset = match &lens {
                Some(l) => l[bi] - s as i64,
                None => self.offset,
            };
            for h in 0..hq {
                let kh = h / group;
                for i in 0..s {
                    // The additive bias of this query row.
                    let pos = i as i64 + offset;
                    for (j, bj) in bias.iter_mut().enumerate() {
                        let mut x = 0.0;
                        if let Some((md, mv)) = &mask {
                            x = if j < md[3] {
                                let idx = (((if md[0] == 1 { 0 } else { bi }) * md[1]
                                    + if md[1] == 1 { 0 } else { h })
                                    * md[2]
                                    + if md[2] == 1 { 0 } else { i })
                                    * md[3]
                                    + j;
                                mv[idx]
                            } else {
                                f64::NEG_INFINITY
                            };
                        }
                        let jj = j as i64;
                        let diff = pos - jj;
                        let blocked = (self.causal && jj > pos)
                            || (self.window_left >= 0 && diff > self.window_left)
                            || (self.window_right >= 0 && -diff > self.window_right)
                            || lens.as_ref().is_some_and(|l| jj >= l[bi]);
                        if blocked {
                            x = f64::NEG_INFINITY;
                        }
                        *bj = x;
                    }
                    let qrow = &qa[((bi * hq + h) * s + i) * d..][..d];
                    for (j, lj) in logits.iter_mut().enumerate() {
                        let krow = &ka[((bi * hkv + kh) * t + j) * d..][..d];
                        let mut x = r(qrow.iter().zip(krow).map(|(a, c)| a * c).sum());
                        if cap > 0.0 {
                            x = r(r(r(x / cap).tanh()) * cap);
                        }
                        *lj = x;
                    }
                    let row_off = ((bi * hq + h) * s + i) * t;
                    if let (Some(o), Some(QkOutput::Logits | QkOutput::Capped)) =
                        (qk_out.as_mut(), self.qk_output)
                    {
                        o[row_off..row_off + t].copy_from_slice(&logits);
                    }
                    for (l, bj) in logits.iter_mut().zip(&bias) {
                        *l = r(*l + bj);
                    }
                    if let (Some(o), Some(QkOutput::Biased)) = (qk_out.as_mut(), self.qk_output) {
                        o[row_off..row_off + t].copy_from_slice(&logits);
                    }
                    // Softmax in the softmax dtype; a row whose bias is all -inf
                    // has no key to attend and gets zero probabilities.
                    let all_masked = bias.iter().all(|&x| x == f64::NEG_INFINITY);
                    if all_masked {
                        probs.iter_mut().for_each(|p| *p = 0.0);
                    } else {
                        let m = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(rs(x)));
                        let m = if m == f64::NEG_INFINITY { 0.0 } else { m };
                        for (p, &l) in probs.iter_mut().zip(&logits) {
                            *p = rs(rs(rs(l) - m).exp());
                        }
                        let mut sum = accumulate(sdt, &probs);
                        if sum == 0.0 {
                            sum = 1.0;
                        }
                        for p in probs.iter_mut() {
                            *p = r(rs(*p / sum));
                        }
                    }
                    if let (Some(o), Some(QkOutput::Probs)) = (qk_out.as_mut(), self.qk_output) {
                        o[row_off..row_off + t].copy_from_slice(&probs);
                    }
                    let yrow = &mut y[((bi * hq + h) * s + i) * dv..][..dv];
                    for (c, yc) in yrow.iter_mut().enumerate() {
                        let acc: f64 = probs
                            .iter()
                            .enumerate()
                            .map(|(j, p)| p * va[((bi * hkv + kh) * t + j) * dv + c])
                            .sum();
                        *yc = acc;
                    }
                }
            }
        }
        let err = |e: ndarray::ShapeError| OpError::Eval(e.to_string());
        let mut out = vec![Tensor::from_f64(
            dt,
            ArrayD::from_shape_vec(IxDyn(&[b, hq, s, dv]), y).map_err(err)?,
        )];
        if let Some(o) = qk_out {
            out.push(Tensor::from_f64(
                dt,
                ArrayD::from_shape_vec(IxDyn(&[b, hq, s, t]), o).map_err(err)?,
            ));
        }
        Ok(out)
    }
}

/// Rotary position embedding (ONNX RotaryEmbedding) of `x [B, H, S, D]` with
/// `cos`, `sin` of shape `[B, S, R/2]`, where `R = rotary_dim` (0 = D) leading
/// features of each head are rotated and the rest pass through. Pairs are
/// `(x[k], x[k + R/2])`, or adjacent `(x[2k], x[2k+1])` when `interleaved`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RotaryEmbedding {
    pub interleaved: bool,
    pub rotary_dim: i64,
}

impl OpDef for RotaryEmbedding {
    const SPELLINGS: &'static [&'static str] = &["rotary_embedding"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(RotaryEmbedding {
            interleaved: attrs.int("interleaved", 0)? != 0,
            rotary_dim: attrs.int("rotary_dim", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "rotary_embedding"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("interleaved", i64::from(self.interleaved));
        w.int("rotary_dim", self.rotary_dim);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 3)?;
        let (x, c, sn) = (inputs[0], inputs[1], inputs[2]);
        require_float(x, "rotary_embedding input")?;
        if c.dtype != x.dtype || sn.dtype != x.dtype {
            return dtype_err(format!(
                "rotary_embedding cos/sin must be {} like the input",
                x.dtype
            ));
        }
        if x.rank() != 4 {
            return shape_err(format!(
                "rotary_embedding input must be [B, H, S, D], found {}",
                x.shape
            ));
        }
        let xd = x.shape.dims();
        if let Some(dd) = known(&xd[3]) {
            let r = if self.rotary_dim == 0 {
                dd as i64
            } else {
                self.rotary_dim
            };
            if r < 0 || r as usize > dd || r % 2 != 0 {
                return attr_err(
                    "rotary_dim",
                    format!("must be even and within the head size {dd}, found {r}"),
                );
            }
            let want = Shape(vec![xd[0].clone(), xd[2].clone(), Dim::Known(r as usize / 2)].into());
            for (n, t) in [("cos", c), ("sin", sn)] {
                if t.shape != want {
                    return shape_err(format!(
                        "rotary_embedding {n} must have shape {want}, found {}",
                        t.shape
                    ));
                }
            }
        }
        Ok(vec![x.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 3)?;
        let x = inputs[0];
        let xs = x.shape();
        if xs.len() != 4 {
            return Err(OpError::Eval("rotary_embedding input must be 4-D".into()));
        }
        let (b, h, s, d) = (xs[0], xs[1], xs[2], xs[3]);
        let r = if self.rotary_dim == 0 {
            d
        } else {
            self.rotary_dim as usize
        };
        let half = r / 2;
        if r > d
            || r % 2 != 0
            || inputs[1].shape() != [b, s, half]
            || inputs[2].shape() != [b, s, half]
        {
            return Err(OpError::Eval(format!(
                "rotary_embedding shapes do not agree: x {xs:?}, cos {:?}, rotary_dim {r}",
                inputs[1].shape()
            )));
        }
        let cos: Vec<f64> = inputs[1].to_f64().iter().copied().collect();
        let sin: Vec<f64> = inputs[2].to_f64().iter().copied().collect();
        let mut a: Vec<f64> = x.to_f64().iter().copied().collect();
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    let row = &mut a[((bi * h + hi) * s + si) * d..][..d];
                    let cs = &cos[(bi * s + si) * half..][..half];
                    let sn = &sin[(bi * s + si) * half..][..half];
                    for kk in 0..half {
                        let (i1, i2) = if self.interleaved {
                            (2 * kk, 2 * kk + 1)
                        } else {
                            (kk, kk + half)
                        };
                        let (x1, x2) = (row[i1], row[i2]);
                        row[i1] = cs[kk] * x1 - sn[kk] * x2;
                        row[i2] = sn[kk] * x1 + cs[kk] * x2;
                    }
                }
            }
        }
        let arr = ArrayD::from_shape_vec(IxDyn(xs), a).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(x.dtype(), arr)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;
    use crate::tensor::allclose;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Vec<Tensor> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap();
        for (o, t) in out.iter().zip(&ty) {
            assert_eq!(&o.ty(), t, "eval agrees with infer");
        }
        out
    }

    #[test]
    fn attention_by_hand() {
        // One head, D = 1, two keys. q = 1, k = [0, ln 3], scale 1:
        // probabilities [1/4, 3/4]; v = [4, 8] → y = 7.
        let q = f64t(&[1, 1, 1, 1], &[1.]);
        let k = f64t(&[1, 1, 2, 1], &[0., 3f64.ln()]);
        let v = f64t(&[1, 1, 2, 1], &[4., 8.]);
        let op = Attention {
            scale: Some(F64(1.0)),
            qk_output: Some(QkOutput::Probs),
            ..Attention::default()
        };
        let out = run(&op, &[&q, &k, &v]);
        allclose(&out[0], &f64t(&[1, 1, 1, 1], &[7.]), 0.0, 1e-12).unwrap();
        allclose(&out[1], &f64t(&[1, 1, 1, 2], &[0.25, 0.75]), 0.0, 1e-12).unwrap();
        // A bool mask hiding key 1 leaves y = v[0].
        let m = Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap());
        let out = run(&op, &[&q, &k, &v, &m]);
        allclose(&out[0], &f64t(&[1, 1, 1, 1], &[4.]), 0.0, 1e-12).unwrap();
        // A float mask adds to the logits: + ln 3 on key 0 → [1/2, 1/2] → 6.
        let m = f64t(&[1, 2], &[3f64.ln(), 0.]);
        let out = run(&op, &[&q, &k, &v, &m]);
        allclose(&out[0], &f64t(&[1, 1, 1, 1], &[6.]), 0.0, 1e-12).unwrap();
        // KV length 1 hides key 1 too; length 0 masks the whole row → 0.
        let l = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1]), vec![1]).unwrap());
        let out = run(&op, &[&q, &k, &v, &l]);
        allclose(&out[0], &f64t(&[1, 1, 1, 1], &[4.]), 0.0, 1e-12).unwrap();
        let l0 = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1]), vec![0]).unwrap());
        let out = run(&op, &[&q, &k, &v, &l0]);
        allclose(&out[0], &f64t(&[1, 1, 1, 1], &[0.]), 0.0, 1e-12).unwrap();
        allclose(&out[1], &f64t(&[1, 1, 1, 2], &[0., 0.]), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn attention_causal_and_gqa() {
        // Two queries, two keys, causal: query 0 sees only key 0.
        // Two query heads share one KV head.
        let q = f64t(&[1, 2, 2, 1], &[1., 1., 1., 1.]);
        let k = f64t(&[1, 1, 2, 1], &[0., 0.]);
        let v = f64t(&[1, 1, 2, 1], &[2., 4.]);
        let op = Attention {
            causal: true,
            ..Attention::default()
        };
        let out = run(&op, &[&q, &k, &v]);
        allclose(&out[0], &f64t(&[1, 2, 2, 1], &[2., 3., 2., 3.]), 0.0, 1e-12).unwrap();
        // With offset 1 (one cached key before the block) both queries see both keys.
        let op = Attention {
            causal: true,
            offset: 1,
            ..Attention::default()
        };
        let out = run(&op, &[&q, &k, &v]);
        allclose(&out[0], &f64t(&[1, 2, 2, 1], &[3., 3., 3., 3.]), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn attention_infer_errors() {
        let q = TensorType::concrete(DType::F32, &[1, 3, 2, 4]);
        let k = TensorType::concrete(DType::F32, &[1, 2, 5, 4]);
        let v = TensorType::concrete(DType::F32, &[1, 2, 5, 6]);
        assert!(matches!(
            Attention::default().infer(&[&q, &k, &v]),
            Err(OpError::Shape(_))
        ));
        let q = TensorType::concrete(DType::F32, &[1, 4, 2, 4]);
        let y = Attention::default().infer(&[&q, &k, &v]).unwrap();
        assert_eq!(y[0], TensorType::concrete(DType::F32, &[1, 4, 2, 6]));
        let long = TensorType::concrete(DType::Bool, &[6]);
        assert!(matches!(
            Attention::default().infer(&[&q, &k, &v, &long]),
            Err(OpError::Shape(_))
        ));
        let kd = TensorType::concrete(DType::F64, &[1, 2, 5, 4]);
        assert!(matches!(
            Attention::default().infer(&[&q, &kd, &v]),
            Err(OpError::DType(_))
        ));
        let op = Attention {
            window_left: -2,
            ..Attention::default()
        };
        assert!(matches!(op.infer(&[&q, &k, &v]), Err(OpError::Attr(_))));
    }

    #[test]
    fn rotary_by_hand() {
        // One pair rotated by 90 degrees: (1, 2) → (-2, 1); the rest passes.
        let x = f64t(&[1, 1, 1, 4], &[1., 5., 2., 7.]);
        let c = f64t(&[1, 1, 1], &[0.]);
        let s = f64t(&[1, 1, 1], &[1.]);
        let op = RotaryEmbedding {
            interleaved: false,
            rotary_dim: 2,
        };
        let out = run(&op, &[&x, &c, &s]);
        allclose(
            &out[0],
            &f64t(&[1, 1, 1, 4], &[-5., 1., 2., 7.]),
            0.0,
            1e-12,
        )
        .unwrap();
        let op = RotaryEmbedding {
            interleaved: true,
            rotary_dim: 2,
        };
        let out = run(&op, &[&x, &c, &s]);
        allclose(
            &out[0],
            &f64t(&[1, 1, 1, 4], &[-5., 1., 2., 7.]),
            0.0,
            1e-12,
        )
        .unwrap();
        let bad = RotaryEmbedding {
            interleaved: false,
            rotary_dim: 3,
        };
        let tys: Vec<TensorType> = [&x, &c, &s].iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        assert!(matches!(bad.infer(&refs), Err(OpError::Attr(_))));
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&Attention::default());
        roundtrip(&Attention {
            scale: Some(F64(0.5)),
            softcap: F64(2.0),
            causal: true,
            window_left: 3,
            window_right: 0,
            offset: 2,
            softmax_dtype: Some(DType::F32),
            qk_output: Some(QkOutput::Biased),
        });
        roundtrip(&RotaryEmbedding {
            interleaved: true,
            rotary_dim: 8,
        });
    }
}
