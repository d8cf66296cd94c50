//! A dense H×W×C array in numpy's C order: the layout of `np.array(pil_image)`, so that ports
//! of the reference code index exactly as the Python does.

use image::RgbImage;

/// H×W×C values, row-major with channels innermost.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Array3<T> {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<T>,
}

impl<T: Copy> Array3<T> {
    /// An array filled with `value`.
    pub fn filled(height: usize, width: usize, channels: usize, value: T) -> Self {
        Self {
            height,
            width,
            channels,
            data: vec![value; height * width * channels],
        }
    }

    /// Flat index of (row, column, channel).
    #[inline]
    pub fn offset(&self, row: usize, col: usize, channel: usize) -> usize {
        (row * self.width + col) * self.channels + channel
    }

    #[inline]
    pub fn get(&self, row: usize, col: usize, channel: usize) -> T {
        self.data[self.offset(row, col, channel)]
    }

    #[inline]
    pub fn set(&mut self, row: usize, col: usize, channel: usize, value: T) {
        let offset = self.offset(row, col, channel);
        self.data[offset] = value;
    }

    /// Applies `f` to every element.
    pub fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Array3<U> {
        Array3 {
            height: self.height,
            width: self.width,
            channels: self.channels,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
}

impl Array3<u8> {
    /// The pixels of an RGB image.
    pub fn from_rgb(image: &RgbImage) -> Self {
        Self {
            height: image.height() as usize,
            width: image.width() as usize,
            channels: 3,
            data: image.as_raw().clone(),
        }
    }

    /// Back to an RGB image (the array must have 3 channels).
    pub fn into_rgb(self) -> RgbImage {
        debug_assert_eq!(self.channels, 3);
        RgbImage::from_raw(self.width as u32, self.height as u32, self.data)
            .expect("an H×W×3 array has exactly the bytes of an RGB image")
    }
}

/// `np.array(x) / 255.` in float64 (used by tests' reference computations).
#[cfg(test)]
pub(crate) fn to_unit_f64(image: &RgbImage) -> Array3<f64> {
    Array3::from_rgb(image).map(|v| v as f64 / 255.0)
}

/// `np.array(x, dtype=np.float32) / 255.`
pub(crate) fn to_unit_f32(image: &RgbImage) -> Array3<f32> {
    Array3::from_rgb(image).map(|v| v as f32 / 255.0)
}

/// `np.uint8(np.clip(x, 0, 1) * 255)` in float64: clip, scale, truncate.
pub(crate) fn unit_f64_to_rgb(x: &Array3<f64>) -> RgbImage {
    x.map(|v| truncate_u8(v.clamp(0.0, 1.0) * 255.0)).into_rgb()
}

/// `np.uint8(np.clip(x, 0, 1) * 255)` where x is float32 (the product is float32 too).
pub(crate) fn unit_f32_to_rgb(x: &Array3<f32>) -> RgbImage {
    x.map(|v| truncate_u8((v.clamp(0.0, 1.0) * 255.0) as f64))
        .into_rgb()
}

/// `np.uint8(v)` for a float already in [0, 255]: truncation toward zero. NaN maps to 0.
#[inline]
pub(crate) fn truncate_u8(v: f64) -> u8 {
    // `as` truncates toward zero and saturates, which equals numpy's cast on [0, 255].
    v as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_is_numpy_c_order() {
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let a = Array3::from_rgb(&image);
        assert_eq!((a.height, a.width, a.channels), (2, 3, 3));
        assert_eq!(a.get(1, 2, 0), 2);
        assert_eq!(a.get(1, 2, 1), 1);
        assert_eq!(a.get(0, 1, 2), 9);
        assert_eq!(a.clone().into_rgb(), image);
    }

    #[test]
    fn conversion_truncates_like_numpy() {
        let x = Array3 {
            height: 1,
            width: 2,
            channels: 3,
            data: vec![0.999_999, 1.5, -0.2, 0.5, 0.1, 1.0],
        };
        let rgb = unit_f64_to_rgb(&x);
        // 0.999999 * 255 = 254.99974… truncates to 254; 0.5 * 255 = 127.5 → 127.
        assert_eq!(rgb.as_raw(), &vec![254, 255, 0, 127, 25, 255]);
    }
}
