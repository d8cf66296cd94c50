//! A bounds-checked, safe front for the `gemm` crate (the kernels behind candle's CPU matmul),
//! so the convolution can accumulate products into slices it owns without going through
//! tensors. This is the crate's only `unsafe` code.
#![allow(unsafe_code)]

use candle_core::Result;

/// Element types the GEMM kernels support here.
pub(crate) trait GemmScalar: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// A strided read-only matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix at the start of `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), `dst` row-major
/// `lhs.rows × rhs.cols` at the start of `dst`, over rayon's threads when `threaded`, else on
/// the calling thread alone (for callers that already split their work across threads).
pub(crate) fn gemm_threaded<T: GemmScalar>(
    dst: &mut [T],
    accumulate: bool,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    threaded: bool,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.len() < m * n || !lhs.in_bounds() || !rhs.in_bounds() {
        candle_core::bail!(
            "gemm: {}×{} · {}×{} into {} elements (or a view out of bounds)",
            lhs.rows,
            lhs.cols,
            rhs.rows,
            rhs.cols,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return Ok(());
    }
    let threads = if threaded {
        rayon::current_num_threads()
    } else {
        1
    };
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element the kernel reads is in bounds (`in_bounds` checked the largest
    // offset of each view, strides are non-negative), the destination is a row-major m×n
    // block inside `dst` (length checked) whose elements are distinct addresses, and `dst` is
    // an exclusive borrow, so it cannot alias `lhs` or `rhs`. `T` is f32 or f64, both of which
    // the kernel supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Vec<f64> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    out[i * b.cols + j] += a.data[i * a.row_stride + p * a.col_stride]
                        * b.data[p * b.row_stride + j * b.col_stride];
                }
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_product_with_transposed_views_and_accumulation() {
        let a: Vec<f64> = (0..35).map(|v| (v as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..42).map(|v| (v as f64 * 0.11).cos()).collect();
        let lhs = MatRef::row_major(&a, 5, 7);
        let rhs = MatRef::row_major(&b, 6, 7).t();
        let expected = naive(lhs, rhs);
        let mut dst = vec![0.0; 30];
        gemm_threaded(&mut dst, false, lhs, rhs, true).unwrap();
        for (x, y) in dst.iter().zip(&expected) {
            assert!((x - y).abs() < 1e-12);
        }
        gemm_threaded(&mut dst, true, lhs, rhs, true).unwrap();
        for (x, y) in dst.iter().zip(&expected) {
            assert!((x - 2.0 * y).abs() < 1e-12);
        }
    }

    #[test]
    fn rejects_views_out_of_bounds_and_mismatched_shapes() {
        let a = vec![1.0f32; 6];
        let mut dst = vec![0.0f32; 4];
        let too_big = MatRef {
            data: &a,
            rows: 3,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        assert!(
            gemm_threaded(&mut dst, false, too_big, MatRef::row_major(&a, 3, 2), true).is_err()
        );
        let lhs = MatRef::row_major(&a, 2, 3);
        assert!(gemm_threaded(&mut dst, false, lhs, MatRef::row_major(&a, 2, 3), true).is_err());
        let mut small = vec![0.0f32; 3];
        assert!(gemm_threaded(&mut small, false, lhs, MatRef::row_major(&a, 3, 2), true).is_err());
        assert!(gemm_threaded(&mut dst, false, lhs, MatRef::row_major(&a, 3, 2), true).is_ok());
        assert_eq!(dst, vec![3.0; 4]);
    }
}
