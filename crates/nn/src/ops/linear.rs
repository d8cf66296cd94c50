//! A linear layer `xs · Wᵀ + b` over the last dimension, PyTorch's `F.linear`, as one node.
//!
//! Composed in candle it is five nodes (flatten, transpose, matmul, bias, unflatten), and each
//! node costs the backward pass a zero-filled gradient buffer and an addition (candle's
//! `GradStore`) besides its own work: in a small Swin the views around its linear layers cost
//! as much as their products. On the CPU (f32, f64) [`linear`] is one op whose forward is one
//! matrix product into bias-filled rows and whose backward is two products and a row sum;
//! elsewhere it is [`linear_composed`].

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use crate::ops::bias::row_sum;
use crate::ops::gemm::{GemmScalar, MatRef, gemm_threaded};
use crate::ops::{float_slices, shape_error};

const OP: &str = "linear";

/// `xs · weightᵀ + bias` for `xs` `[..., in]`, `weight` `[out, in]`, `bias` `[out]`:
/// `[..., out]`, with gradients for all three.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (weight, bias) = (
        crate::autocast::to_compute(weight, xs)?,
        crate::autocast::to_compute_opt(bias, xs)?,
    );
    let (weight, bias) = (&weight, bias.as_ref());
    let (rows, in_features, out_features) = check(xs, weight, bias)?;
    let dtype = xs.dtype();
    if !xs.device().is_cpu()
        || !matches!(dtype, DType::F32 | DType::F64)
        || weight.dtype() != dtype
        || bias.is_some_and(|b| b.dtype() != dtype)
    {
        return linear_composed(xs, weight, bias);
    }
    let mut out_dims = xs.dims().to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = out_features;
    }
    let op = LinearOp {
        rows,
        in_features,
        out_features,
        out_shape: Shape::from(out_dims),
    };
    let (xs, weight) = (xs.contiguous()?, weight.contiguous()?);
    match bias {
        Some(bias) => xs.apply_op3(&weight, &bias.contiguous()?, op),
        None => xs.apply_op2(&weight, op),
    }
}

/// [`linear`] from candle's matmul and broadcast add (any device; candle derives the backward).
pub fn linear_composed(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (rows, in_features, out_features) = check(xs, weight, bias)?;
    let ys = xs.reshape((rows, in_features))?.matmul(&weight.t()?)?;
    let ys = match bias {
        Some(bias) => ys.broadcast_add(bias)?,
        None => ys,
    };
    let mut out_dims = xs.dims().to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = out_features;
    }
    ys.reshape(out_dims)
}

/// `(rows, in, out)`, or an error naming the shapes.
fn check(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<(usize, usize, usize)> {
    let in_features = xs.dims().last().copied().unwrap_or(0);
    let (out_features, weight_in) = match weight.dims() {
        &[o, i] => (o, i),
        _ => (0, usize::MAX),
    };
    let bias_ok = bias.is_none_or(|b| b.dims() == [out_features]);
    if xs.rank() == 0 || weight_in != in_features || !bias_ok {
        return Err(shape_error(
            OP,
            format!(
                "input {:?}, weight {:?} and bias {:?} do not fit [..., in], [out, in], [out]",
                xs.dims(),
                weight.dims(),
                bias.map(|b| b.dims().to_vec())
            ),
        ));
    }
    Ok((
        xs.elem_count() / in_features.max(1),
        in_features,
        out_features,
    ))
}

#[derive(Debug, Clone)]
struct LinearOp {
    rows: usize,
    in_features: usize,
    out_features: usize,
    out_shape: Shape,
}

impl LinearOp {
    fn run<T: GemmScalar + candle_core::WithDType>(
        &self,
        xs: &[T],
        weight: &[T],
        bias: Option<&[T]>,
    ) -> Result<Vec<T>> {
        let (rows, out) = (self.rows, self.out_features);
        let mut dst = vec![T::ZERO; rows * out];
        if let Some(bias) = bias {
            for row in dst.chunks_exact_mut(out.max(1)) {
                row.copy_from_slice(bias);
            }
        }
        gemm_threaded(
            &mut dst,
            bias.is_some(),
            MatRef::row_major(xs, rows, self.in_features),
            MatRef::row_major(weight, out, self.in_features).t(),
            true,
        )?;
        Ok(dst)
    }

    fn forward(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match bias {
            None => float_slices!(OP, (s1, l1), (s2, l2); |x, w| self.run(x, w, None)?),
            Some((s3, l3)) => {
                float_slices!(OP, (s1, l1), (s2, l2), (s3, l3); |x, w, b| self.run(x, w, Some(b))?)
            }
        };
        Ok((out, self.out_shape.clone()))
    }

    /// Gradients of the input and the weight, and the output's gradient as `[rows, out]`.
    fn backward(&self, xs: &Tensor, weight: &Tensor, grad: &Tensor) -> Result<[Tensor; 3]> {
        let grad = grad.contiguous()?.reshape((self.rows, self.out_features))?;
        let packed = xs.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad,
            &LinearBackward(self.clone()),
        )?;
        let count = xs.elem_count();
        let gx = packed.narrow(0, 0, count)?.reshape(xs.shape())?;
        let gw = packed
            .narrow(0, count, self.out_features * self.in_features)?
            .reshape((self.out_features, self.in_features))?;
        Ok([gx, gw, grad])
    }
}

/// The products of [`LinearOp`]'s backward, `[dx (rows·in), dw (out·in)]` in one vector, on
/// the compute pool's threads (candle's matmul would use `CANDLE_NUM_THREADS`, which the
/// binaries set to 1).
#[derive(Debug, Clone)]
struct LinearBackward(LinearOp);

impl LinearBackward {
    fn run<T: GemmScalar>(&self, xs: &[T], weight: &[T], grad: &[T]) -> Result<Vec<T>> {
        let LinearOp {
            rows,
            in_features,
            out_features,
            ..
        } = self.0;
        let mut out = vec![T::ZERO; rows * in_features + out_features * in_features];
        let (gx, gw) = out.split_at_mut(rows * in_features);
        let grad = MatRef::row_major(grad, rows, out_features);
        gemm_threaded(
            gx,
            false,
            grad,
            MatRef::row_major(weight, out_features, in_features),
            true,
        )?;
        gemm_threaded(
            gw,
            false,
            grad.t(),
            MatRef::row_major(xs, rows, in_features),
            true,
        )?;
        Ok(out)
    }
}

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "linear_backward"
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
        let out = float_slices!("linear_backward", (s1, l1), (s2, l2), (s3, l3);
            |x, w, g| self.run(x, w, g)?);
        let op = &self.0;
        let len = (op.rows + op.out_features) * op.in_features;
        Ok((out, Shape::from(len)))
    }
}

impl CustomOp2 for LinearOp {
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
        self.forward((s1, l1), (s2, l2), None)
    }
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [gx, gw, _] = self.backward(xs, weight, grad)?;
        Ok((Some(gx), Some(gw)))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        OP
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
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [gx, gw, grad] = self.backward(xs, weight, grad)?;
        let gb = row_sum(&grad)?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}
