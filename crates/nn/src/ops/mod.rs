//! Differentiable tensor ops that candle 0.11 lacks or gets wrong, one file per family.
//!
//! Every op takes and returns candle tensors and records a backward pass that was checked
//! against central differences ([`crate::gradcheck`]) and against PyTorch on golden fixtures.
//! Ops whose composition from candle primitives is slow have a CPU fast path (a `CustomOp`
//! with its own backward); on other devices the same op is composed from candle tensor ops
//! that have correct gradients (matmul, narrow, index_select, gather, arithmetic), so it runs
//! on CUDA unchanged. The composed form of each op is public (`*_composed`) so tests can hold
//! both paths to the same expectation on the CPU.

pub mod activation;
pub mod attention;
pub mod bias;
pub mod drop_path;
pub mod gather;
pub(crate) mod gemm;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod resize;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

/// A shape that an op cannot accept; the message names the op and the offending shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct ShapeError {
    /// The op that rejected its input.
    pub op: &'static str,
    /// What is wrong, with the shapes involved.
    pub message: String,
}

/// Wraps a [`ShapeError`] into candle's error type so ops compose with `?`.
/// Runs `op` compiled for the widest vector instructions this CPU has. The workspace builds
/// for baseline x86-64 (SSE2, four f32 lanes); pulp's dispatch compiles `op`'s `with_simd`
/// (which must be `#[inline(always)]` and hold the loop itself, not a closure call, or LLVM
/// keeps the loop out of line in SSE2) again with AVX2 and FMA enabled, and picks that copy at
/// run time when the CPU has them, without `unsafe` here. The arithmetic is the same IEEE
/// operations either way (Rust never fuses a multiply and an add by itself), so the results
/// are the same bytes.
#[inline(always)]
pub(crate) fn with_wide_simd<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    pulp::Arch::new().dispatch(op)
}

pub(crate) fn shape_error(op: &'static str, message: impl Into<String>) -> candle_core::Error {
    candle_core::Error::wrap(ShapeError {
        op,
        message: message.into(),
    })
}

/// Unpacks a rank-4 `[N, C, H, W]` tensor or says which shape it got.
pub(crate) fn dims4(op: &'static str, xs: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match xs.dims() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        dims => Err(shape_error(
            op,
            format!("expected an [N, C, H, W] tensor, got shape {dims:?}"),
        )),
    }
}

/// The contiguous slice of a CPU storage, or an error naming the op.
pub(crate) fn contiguous_slice<'a, T: WithDType>(
    op: &'static str,
    data: &'a [T],
    layout: &Layout,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: internal error, input is not contiguous"),
    }
}

/// The element-wise sum of per-task partial sums, added in task order (not in rayon's
/// reduction order), so a kernel's result does not depend on how its tasks were scheduled.
pub(crate) fn sum_in_order(partials: &[Vec<f64>], len: usize) -> Vec<f64> {
    let mut totals = vec![0f64; len];
    for partial in partials {
        for (t, p) in totals.iter_mut().zip(partial) {
            *t += p;
        }
    }
    totals
}

/// Runs a generic CPU kernel on the float variants of a storage.
pub(crate) trait CpuKernel1 {
    /// Name used in errors.
    const OP: &'static str;
    /// The kernel on a contiguous slice.
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)>;

    fn dispatch(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        match storage {
            CpuStorage::F32(data) => {
                let (out, shape) = self.run(contiguous_slice(Self::OP, data, layout)?)?;
                Ok((CpuStorage::F32(out), shape))
            }
            CpuStorage::F64(data) => {
                let (out, shape) = self.run(contiguous_slice(Self::OP, data, layout)?)?;
                Ok((CpuStorage::F64(out), shape))
            }
            CpuStorage::F16(data) => {
                let (out, shape) = self.run(contiguous_slice(Self::OP, data, layout)?)?;
                Ok((CpuStorage::F16(out), shape))
            }
            CpuStorage::BF16(data) => {
                let (out, shape) = self.run(contiguous_slice(Self::OP, data, layout)?)?;
                Ok((CpuStorage::BF16(out), shape))
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", Self::OP, other.dtype()),
        }
    }
}

/// Like [`CpuKernel1`] for two inputs of the same dtype.
pub(crate) trait CpuKernel2 {
    /// Name used in errors.
    const OP: &'static str;
    /// The kernel on two contiguous slices.
    fn run<T: WithDType>(&self, a: &[T], b: &[T]) -> Result<(Vec<T>, Shape)>;

    fn dispatch(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        macro_rules! go {
            ($variant:ident, $a:expr, $b:expr) => {{
                let (out, shape) = self.run(
                    contiguous_slice(Self::OP, $a, l1)?,
                    contiguous_slice(Self::OP, $b, l2)?,
                )?;
                Ok((CpuStorage::$variant(out), shape))
            }};
        }
        match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => go!(F32, a, b),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => go!(F64, a, b),
            (CpuStorage::F16(a), CpuStorage::F16(b)) => go!(F16, a, b),
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => go!(BF16, a, b),
            (a, b) => candle_core::bail!(
                "{}: unsupported dtypes {:?} and {:?}",
                Self::OP,
                a.dtype(),
                b.dtype()
            ),
        }
    }
}

/// Like [`CpuKernel1`] for three inputs of the same float dtype (f32 or f64: the kernels
/// that use it accumulate in f64 and are only chosen for those two).
pub(crate) trait CpuKernel3 {
    /// Name used in errors.
    const OP: &'static str;
    /// The kernel on three contiguous slices; the output has [`Self::out_shape`].
    fn run<T: WithDType>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;

    /// The output's shape given the first input's (the same by default).
    fn out_shape(&self, first: &Shape) -> Shape {
        first.clone()
    }

    fn dispatch(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        macro_rules! go {
            ($variant:ident, $a:expr, $b:expr, $c:expr) => {
                CpuStorage::$variant(self.run(
                    contiguous_slice(Self::OP, $a, l1)?,
                    contiguous_slice(Self::OP, $b, l2)?,
                    contiguous_slice(Self::OP, $c, l3)?,
                ))
            };
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => go!(F32, a, b, c),
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => go!(F64, a, b, c),
            _ => candle_core::bail!("{}: needs f32 or f64 throughout", Self::OP),
        };
        Ok((out, self.out_shape(l1.shape())))
    }
}

/// Implements candle's `CustomOp1`/`2`/`3` for a [`CpuKernel1`]/`2`/`3`: the op's name is the
/// kernel's `OP` and its CPU forward the kernel's `dispatch`; what follows in braces (a `bwd`)
/// goes into the impl as written. One place for what every kernel's impl would repeat.
macro_rules! kernel_op {
    (1, $ty:ty $({ $($rest:tt)* })?) => {
        impl candle_core::CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                <Self as $crate::ops::CpuKernel1>::OP
            }
            fn cpu_fwd(
                &self,
                storage: &candle_core::CpuStorage,
                layout: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                <Self as $crate::ops::CpuKernel1>::dispatch(self, storage, layout)
            }
            $($($rest)*)?
        }
    };
    (2, $ty:ty $({ $($rest:tt)* })?) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                <Self as $crate::ops::CpuKernel2>::OP
            }
            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                <Self as $crate::ops::CpuKernel2>::dispatch(self, s1, l1, s2, l2)
            }
            $($($rest)*)?
        }
    };
    (3, $ty:ty $({ $($rest:tt)* })?) => {
        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                <Self as $crate::ops::CpuKernel3>::OP
            }
            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                <Self as $crate::ops::CpuKernel3>::dispatch(self, (s1, l1), (s2, l2), (s3, l3))
            }
            $($($rest)*)?
        }
    };
}
pub(crate) use kernel_op;

/// Takes `count` elements of `dim` starting at `start` with step `step`, through narrow and
/// reshape only (so the backward is candle's, on any device). Zero-pads the end of `dim` when
/// the last step would run past it; the padded values are never selected.
pub(crate) fn strided_narrow(
    xs: &Tensor,
    dim: usize,
    start: usize,
    count: usize,
    step: usize,
) -> Result<Tensor> {
    if step == 1 {
        return xs.narrow(dim, start, count);
    }
    let size = xs.dim(dim)?;
    let needed = start + count * step;
    let xs = if needed > size {
        xs.pad_with_zeros(dim, 0, needed - size)?
    } else {
        xs.clone()
    };
    let taken = xs.narrow(dim, start, count * step)?;
    let mut split: Vec<usize> = taken.dims().to_vec();
    split[dim] = count;
    split.insert(dim + 1, step);
    taken
        .reshape(split)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)
}

/// Runs `$body` on the f32 (or f64) contiguous slices of one to three CPU storages of the same
/// dtype, wrapping the `Vec` it returns back into a storage.
macro_rules! float_slices {
    ($op:expr, $(($s:expr, $l:expr)),+ ; |$($v:ident),+| $body:expr) => {
        match ($($s,)+) {
            ($(candle_core::CpuStorage::F32($v),)+) => {
                $(let $v = $crate::ops::contiguous_slice($op, $v, $l)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($v),)+) => {
                $(let $v = $crate::ops::contiguous_slice($op, $v, $l)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: needs f32 or f64 throughout", $op),
        }
    };
}
pub(crate) use float_slices;
