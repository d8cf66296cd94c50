//! The few floating-point operations the CPU kernels need beyond candle's `WithDType`, so that
//! one generic kernel runs in the input's own precision (as torchvision's templates do).

use candle_core::WithDType;

/// `f32` or `f64`.
pub(crate) trait Real: WithDType + std::ops::Neg<Output = Self> {
    fn ceil(self) -> Self;
    fn floor(self) -> Self;
    fn sqrt(self) -> Self;
    fn log2(self) -> Self;
    /// Truncation toward zero, as C's `(int) x`.
    fn trunc_i64(self) -> i64;
    fn is_finite(self) -> bool;
    fn max_of(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
    fn min_of(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn log2(self) -> Self {
                <$t>::log2(self)
            }
            fn trunc_i64(self) -> i64 {
                self as i64
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}

impl_real!(f32);
impl_real!(f64);
