//! Numerical primitives shared by the corruptions: exact ports of the library routines the
//! references call, so that a corruption built from them equals its reference bit for bit.
//!
//! - [`npmath`]: numpy's `exp` (the SVML kernel numpy uses on AVX-512 machines), pairwise
//!   `sum`, float `arange`, Python `round`.
//! - [`ndimage`]: `scipy.ndimage` 1.13 `correlate1d`, `gaussian_filter` (as scikit-image 0.20's
//!   `gaussian` calls it), `zoom` and `map_coordinates` at order 1, and the two references'
//!   `clipped_zoom`.
//! - [`opencv`]: OpenCV 4.10's `getGaussianKernel`, `GaussianBlur` on small float32 images
//!   (the defocus disk), `filter2D` (`BORDER_REFLECT_101`), `getAffineTransform` and
//!   `warpAffine` (bilinear, fixed-point coordinates).
//! - [`motion`]: imagecorruptions' numpy motion blur and ImageMagick 6's `MotionBlurImage`.
//!
//! Arrays are [`Array3`](crate::array::Array3) in H×W×C order; a 2-D plane is an array with
//! one channel. Generic routines take `f32` or `f64` elements through [`Real`], computing in
//! double and storing in the element type where the reference does.

pub(crate) mod motion;
pub(crate) mod ndimage;
pub(crate) mod npmath;
pub(crate) mod opencv;

/// A float element type of the arrays the references filter (`float32` or `float64`).
pub(crate) trait Real: Copy + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// Exact widening to double.
    fn to_f64(self) -> f64;
    /// Narrowing from double with IEEE round-to-nearest (numpy's and C's casts).
    fn from_f64(value: f64) -> Self;
    /// A double rounded to this type and widened back (what storing it in an array of this
    /// dtype does).
    fn round_trip(value: f64) -> f64 {
        Self::from_f64(value).to_f64()
    }
    /// The values as doubles, borrowed when they already are.
    fn widen(values: &[Self]) -> std::borrow::Cow<'_, [f64]>;
}

impl Real for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    fn widen(values: &[Self]) -> std::borrow::Cow<'_, [f64]> {
        std::borrow::Cow::Owned(values.iter().map(|&v| v as f64).collect())
    }
}

impl Real for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(value: f64) -> Self {
        value
    }
    fn widen(values: &[Self]) -> std::borrow::Cow<'_, [f64]> {
        std::borrow::Cow::Borrowed(values)
    }
}

#[cfg(test)]
mod golden;
