//! Window multi-head self-attention (Swin's `WindowAttention` core) as one differentiable op:
//! from the qkv projection's output to the heads' concatenated outputs, with a relative
//! position bias per head and an optional additive mask per window.
//!
//! Composed from candle ops it is a dozen nodes (split of q, k, v by reshape, permute and
//! select; scale; two batched products; bias and mask additions; softmax; transpose back),
//! each costing the backward pass a zero-filled buffer and an addition besides its own work,
//! and candle's batched product runs on `CANDLE_NUM_THREADS` (1 in the binaries). On the CPU
//! (f32, f64) [`window_attention`] is one kernel parallel over windows, whose backward
//! recomputes the attention weights (windows are small) instead of storing them; elsewhere it
//! is [`window_attention_composed`].

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::activation::softmax;
use crate::ops::bias::bias_add;
use crate::ops::{float_slices, shape_error, sum_in_order, with_wide_simd};

const OP: &str = "window_attention";

/// `softmax(q·kᵀ·scale + bias + mask)·v` per window and head.
///
/// - `qkv` `[B, N, 3·C]`: per token q, k and v, each `[heads, C / heads]` (timm's layout);
/// - `bias` `[heads, N, N]` (gets a gradient);
/// - `mask` `[nW, N, N]` with `B` a multiple of `nW`, window `b` using mask `b mod nW`
///   (constant: no gradient);
/// - `scale` multiplies q before the product (timm: `head_dim^-0.5`).
///
/// Returns `[B, N, C]`, each token's heads side by side.
pub fn window_attention(
    qkv: &Tensor,
    bias: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let geometry = Geometry::check(qkv, bias, mask, heads)?;
    let dtype = qkv.dtype();
    if !qkv.device().is_cpu()
        || !matches!(dtype, DType::F32 | DType::F64)
        || bias.dtype() != dtype
        || qkv.elem_count() == 0
    {
        return window_attention_composed(qkv, bias, mask, heads, scale);
    }
    let mask = match mask {
        Some(mask) => Some(Arc::<[f64]>::from(
            mask.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        )),
        None => None,
    };
    qkv.contiguous()?.apply_op2(
        &bias.contiguous()?,
        WindowAttention {
            geometry,
            scale,
            mask,
        },
    )
}

/// [`window_attention`] from candle ops (any device; candle derives the backward).
pub fn window_attention_composed(
    qkv: &Tensor,
    bias: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let Geometry {
        windows: b,
        tokens: n,
        head_dim,
        ..
    } = Geometry::check(qkv, bias, mask, heads)?;
    let qkv = qkv
        .reshape((b, n, 3, heads, head_dim))?
        .permute((2, 0, 3, 1, 4))?;
    let q = (qkv.get(0)? * scale)?.contiguous()?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let attn = q.matmul(&k.t()?)?;
    let attn = bias_add(&attn.reshape((b, heads * n * n))?, &bias.flatten_all()?)?
        .reshape((b, heads, n, n))?;
    let attn = match mask {
        Some(mask) => {
            let masks = mask.dim(0)?;
            let mask = crate::autocast::to_compute(mask, &attn)?;
            attn.reshape((b / masks, masks, heads, n, n))?
                .broadcast_add(&mask.unsqueeze(1)?.unsqueeze(0)?)?
                .reshape((b, heads, n, n))?
        }
        None => attn,
    };
    // Under autocast the softmax runs in f32 (as PyTorch's autocast runs it) and its
    // probabilities return to the activations' type for the product with the values.
    let attn = softmax(&crate::autocast::widen(&attn)?, 3)?.to_dtype(v.dtype())?;
    attn.matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, n, heads * head_dim))
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    windows: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
    masks: usize,
}

impl Geometry {
    fn check(qkv: &Tensor, bias: &Tensor, mask: Option<&Tensor>, heads: usize) -> Result<Self> {
        let fail = |why: String| Err(shape_error(OP, why));
        let &[windows, tokens, width] = qkv.dims() else {
            return fail(format!("qkv must be [B, N, 3·C], got {:?}", qkv.dims()));
        };
        if heads == 0 || width % (3 * heads) != 0 {
            return fail(format!(
                "qkv {:?}: the last dimension is not 3 × {heads} heads × head size",
                qkv.dims()
            ));
        }
        if bias.dims() != [heads, tokens, tokens] {
            return fail(format!(
                "bias {:?} must be [{heads}, {tokens}, {tokens}] for qkv {:?}",
                bias.dims(),
                qkv.dims()
            ));
        }
        let masks = match mask {
            None => 0,
            Some(mask) => match mask.dims() {
                &[m, a, b] if m > 0 && a == tokens && b == tokens && windows % m == 0 => m,
                dims => {
                    return fail(format!(
                        "mask {dims:?} must be [nW, {tokens}, {tokens}] with nW dividing {windows}"
                    ));
                }
            },
        };
        Ok(Self {
            windows,
            tokens,
            heads,
            head_dim: width / (3 * heads),
            masks,
        })
    }
}

impl Geometry {
    /// Elements per token of the qkv input (`3 · heads · head_dim`).
    fn qkv_width(&self) -> usize {
        3 * self.heads * self.head_dim
    }

    /// Elements per token of the output (`heads · head_dim`).
    fn channels(&self) -> usize {
        self.heads * self.head_dim
    }
}

#[derive(Debug, Clone)]
struct WindowAttention {
    geometry: Geometry,
    scale: f64,
    mask: Option<Arc<[f64]>>,
}

/// Per-head buffers of one window: scaled q, the attention weights, one row of scores.
struct Scratch<T> {
    q: Vec<T>,
    weights: Vec<T>,
    row: Vec<f64>,
}

impl<T: WithDType> Scratch<T> {
    fn new(n: usize, d: usize) -> Self {
        Scratch {
            q: vec![T::zero(); n * d],
            weights: vec![T::zero(); n * n],
            row: vec![0f64; n],
        }
    }
}

/// `e^x` for `x ≤ 0` (a softmax's shifted scores): for f32 the vectorisable kernel the GELU
/// uses (within 1e-7 relative), else libm's f64 exponential.
#[inline(always)]
fn exp_nonpositive<T: WithDType>(x: f64) -> f64 {
    if T::DTYPE == DType::F32 {
        f64::from(crate::ops::activation::exp_nonpositive_f32(x as f32))
    } else {
        x.exp()
    }
}

/// One window of the forward (every head), as one unit of work compiled for the CPU's widest
/// vectors ([`with_wide_simd`]).
struct ForwardWindow<'a, T> {
    op: &'a WindowAttention,
    b: usize,
    out: &'a mut [T],
    qkv: &'a [T],
    bias: &'a [T],
    s: &'a mut Scratch<T>,
}

impl<T: WithDType> pulp::WithSimd for ForwardWindow<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let ForwardWindow {
            op,
            b,
            out,
            qkv,
            bias,
            s,
        } = self;
        let Geometry {
            tokens: n,
            heads,
            head_dim: d,
            ..
        } = op.geometry;
        let (width, channels) = (op.geometry.qkv_width(), op.geometry.channels());
        let window = &qkv[b * n * width..(b + 1) * n * width];
        for h in 0..heads {
            op.weights(b, h, qkv, bias, s);
            for i in 0..n {
                let o = &mut out[i * channels + h * d..i * channels + h * d + d];
                for j in 0..n {
                    let p = s.weights[i * n + j];
                    let v = &window[j * width + (2 * heads + h) * d..][..d];
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
            }
        }
    }
}

/// The windows of one task of the backward (every head), as one unit of work compiled for
/// the CPU's widest vectors ([`with_wide_simd`]); returns the task's bias-gradient sums.
struct BackwardWindows<'a, T> {
    op: &'a WindowAttention,
    task: usize,
    per_task: usize,
    dqkv: &'a mut [T],
    qkv: &'a [T],
    bias: &'a [T],
    grad: &'a [T],
}

impl<T: WithDType> pulp::WithSimd for BackwardWindows<'_, T> {
    type Output = Vec<f64>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<f64> {
        let BackwardWindows {
            op,
            task,
            per_task,
            dqkv,
            qkv,
            bias,
            grad,
        } = self;
        let Geometry {
            tokens: n,
            heads,
            head_dim: d,
            ..
        } = op.geometry;
        let (width, channels) = (op.geometry.qkv_width(), op.geometry.channels());
        let scale = T::from_f64(op.scale);
        let mut dbias = vec![0f64; heads * n * n];
        let mut s = Scratch::new(n, d);
        let mut dscores = vec![T::zero(); n * n];
        for (local, dwindow) in dqkv.chunks_exact_mut(n * width).enumerate() {
            let b = task * per_task + local;
            let window = &qkv[b * n * width..(b + 1) * n * width];
            let gwindow = &grad[b * n * channels..(b + 1) * n * channels];
            for h in 0..heads {
                op.weights(b, h, qkv, bias, &mut s);
                let (q_at, k_at, v_at) = (h * d, (heads + h) * d, (2 * heads + h) * d);
                for i in 0..n {
                    let go = &gwindow[i * channels + h * d..][..d];
                    // dP_ij = dO_i · V_j, then dS = P ⊙ (dP − Σ_k P_ik dP_ik).
                    let mut dot = 0f64;
                    for j in 0..n {
                        let v = &window[j * width + v_at..][..d];
                        let mut dp = T::zero();
                        for (&g, &v) in go.iter().zip(v) {
                            dp += g * v;
                        }
                        dscores[i * n + j] = dp;
                        dot += s.weights[i * n + j].to_f64() * dp.to_f64();
                    }
                    for j in 0..n {
                        let p = s.weights[i * n + j].to_f64();
                        let ds = p * (dscores[i * n + j].to_f64() - dot);
                        dscores[i * n + j] = T::from_f64(ds);
                        dbias[h * n * n + i * n + j] += ds;
                    }
                }
                // dQ_i = scale · Σ_j dS_ij K_j (j ascending).
                for i in 0..n {
                    let dq = &mut dwindow[i * width + q_at..][..d];
                    for j in 0..n {
                        let ds = dscores[i * n + j];
                        let k = &window[j * width + k_at..][..d];
                        for (a, &b) in dq.iter_mut().zip(k) {
                            *a += ds * b;
                        }
                    }
                    for a in dq.iter_mut() {
                        *a *= scale;
                    }
                }
                // dV_j = Σ_i P_ij dO_i and dK_j = Σ_i dS_ij Q_i (i ascending).
                for j in 0..n {
                    let dv = &mut dwindow[j * width + v_at..][..d];
                    for i in 0..n {
                        let p = s.weights[i * n + j];
                        let go = &gwindow[i * channels + h * d..][..d];
                        for (a, &b) in dv.iter_mut().zip(go) {
                            *a += p * b;
                        }
                    }
                    let dk = &mut dwindow[j * width + k_at..][..d];
                    for i in 0..n {
                        let ds = dscores[i * n + j];
                        for (a, &b) in dk.iter_mut().zip(&s.q[i * d..(i + 1) * d]) {
                            *a += ds * b;
                        }
                    }
                }
            }
        }
        dbias
    }
}

impl WindowAttention {
    /// The attention weights `P` `[N, N]` of window `b`, head `h`, and its scaled queries.
    #[inline(always)]
    fn weights<T: WithDType>(&self, b: usize, h: usize, qkv: &[T], bias: &[T], s: &mut Scratch<T>) {
        let Geometry {
            tokens: n,
            heads,
            head_dim: d,
            masks,
            ..
        } = self.geometry;
        let width = self.geometry.qkv_width();
        let scale = T::from_f64(self.scale);
        let window = &qkv[b * n * width..(b + 1) * n * width];
        for i in 0..n {
            let q = &window[i * width + h * d..i * width + h * d + d];
            for (dst, &v) in s.q[i * d..(i + 1) * d].iter_mut().zip(q) {
                *dst = v * scale;
            }
        }
        let bias = &bias[h * n * n..(h + 1) * n * n];
        let mask = self
            .mask
            .as_ref()
            .map(|m| &m[(b % masks.max(1)) * n * n..(b % masks.max(1) + 1) * n * n]);
        let row = &mut s.row;
        for i in 0..n {
            let q = &s.q[i * d..(i + 1) * d];
            for (j, r) in row.iter_mut().enumerate() {
                let k = &window[j * width + (heads + h) * d..j * width + (heads + h) * d + d];
                let mut dot = T::zero();
                for (&a, &b) in q.iter().zip(k) {
                    dot += a * b;
                }
                // Each addition rounds in T, as the composed ops do.
                let mut value = dot + bias[i * n + j];
                if let Some(mask) = mask {
                    value += T::from_f64(mask[i * n + j]);
                }
                *r = value.to_f64();
            }
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for r in row.iter_mut() {
                *r = exp_nonpositive::<T>(*r - max);
            }
            let sum: f64 = row.iter().sum();
            for (dst, r) in s.weights[i * n..(i + 1) * n].iter_mut().zip(row.iter()) {
                *dst = T::from_f64(r / sum);
            }
        }
    }

    fn forward<T: WithDType>(&self, qkv: &[T], bias: &[T]) -> Vec<T> {
        let Geometry {
            tokens: n,
            head_dim: d,
            ..
        } = self.geometry;
        let channels = self.geometry.channels();
        let mut out = vec![T::zero(); self.geometry.windows * n * channels];
        out.par_chunks_mut((n * channels).max(1))
            .enumerate()
            .for_each(|(b, out)| {
                let mut s = Scratch::new(n, d);
                with_wide_simd(ForwardWindow {
                    op: self,
                    b,
                    out,
                    qkv,
                    bias,
                    s: &mut s,
                });
            });
        out
    }

    /// `[dqkv (B·N·3C), dbias (heads·N·N)]`.
    fn backward<T: WithDType>(&self, qkv: &[T], bias: &[T], grad: &[T]) -> Vec<T> {
        let Geometry {
            windows,
            tokens: n,
            heads,
            ..
        } = self.geometry;
        let width = self.geometry.qkv_width();
        let mut out = vec![T::zero(); windows * n * width + heads * n * n];
        let (dqkv, dbias) = out.split_at_mut(windows * n * width);
        // Windows per task: the bias gradient is summed per task, then in task order.
        let per_task = (16_384 / (n * width).max(1)).max(1);
        let partials: Vec<Vec<f64>> = dqkv
            .par_chunks_mut((per_task * n * width).max(1))
            .enumerate()
            .map(|(task, dqkv)| {
                with_wide_simd(BackwardWindows {
                    op: self,
                    task,
                    per_task,
                    dqkv,
                    qkv,
                    bias,
                    grad,
                })
            })
            .collect();
        let totals = sum_in_order(&partials, heads * n * n);
        for (dst, t) in dbias.iter_mut().zip(totals) {
            *dst = T::from_f64(t);
        }
        out
    }
}

impl CustomOp2 for WindowAttention {
    fn name(&self) -> &'static str {
        OP
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry;
        let out = float_slices!(OP, (s1, l1), (s2, l2); |qkv, bias| self.forward(qkv, bias));
        Ok((
            out,
            Shape::from((g.windows, g.tokens, g.heads * g.head_dim)),
        ))
    }
    fn bwd(
        &self,
        qkv: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = qkv.apply_op3_no_bwd(
            bias,
            &grad.contiguous()?,
            &WindowAttentionBackward(self.clone()),
        )?;
        let count = qkv.elem_count();
        let dqkv = packed.narrow(0, 0, count)?.reshape(qkv.shape())?;
        let dbias = packed
            .narrow(0, count, bias.elem_count())?
            .reshape(bias.shape())?;
        Ok((Some(dqkv), Some(dbias)))
    }
}

#[derive(Debug, Clone)]
struct WindowAttentionBackward(WindowAttention);

impl candle_core::CustomOp3 for WindowAttentionBackward {
    fn name(&self) -> &'static str {
        "window_attention_backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0.geometry;
        let out = float_slices!(OP, (s1, l1), (s2, l2), (s3, l3);
            |qkv, bias, grad| self.0.backward(qkv, bias, grad));
        let len = g.windows * g.tokens * 3 * g.heads * g.head_dim + g.heads * g.tokens * g.tokens;
        Ok((out, Shape::from(len)))
    }
}
