//! fog: a diamond-square plasma fractal added to the image, then a contrast squeeze.
//!
//! The plasma is drawn exactly as the references draw it (`plasma_fractal` in
//! imagecorruptions and the ImageNet-C / CIFAR-10-C code): a square map of side `map_size` (a
//! power of two), corner (0, 0) = 0, `wibble` = 100; per level, first the square centres then
//! the two diamond sub-grids, each a whole `np.random.uniform(-wibble, wibble, shape)` array in
//! C order, the value being `sum / 4 + wibble * draw`, the sums wrapping around the map (numpy's
//! `np.roll`); `wibble /= wibble_decay` per level; finally `(map - min) / max(map - min)`.
//!
//! Then, with `x = image / 255` in float64 and `max_val = max(x)`:
//! `out = uint8(clip((x + strength * plasma[:H, :W]) * max_val / (max_val + strength), 0, 1) * 255)`.
//!
//! Map size per flavor:
//! - imagecorruptions: the next power of two of `max(H, W, 3)` (numpy's `np.max(shape)`
//!   includes the channel axis, so a 1×1 image gets a 4×4 map);
//! - ImageNet-C: 256, as the reference draws at 224×224; images with a side above 256 (which the
//!   reference cannot corrupt) get the next power of two of their longer side;
//! - CIFAR-10-C: 32, as the reference draws at 32×32; larger images likewise get the next power
//!   of two of their longer side.
//!
//! Every size from 1×1 works. Below 32 pixels, where `imagecorruptions.corrupt` refuses the
//! image, the output equals imagecorruptions' own `fog` function called directly (checked on
//! random sizes down to 1×1). An all-black image stays black (`max_val = 0`), as in the
//! references.

use image::RgbImage;

use crate::array::truncate_u8;
use crate::{Flavor, RandomState, Severity};

/// (strength, wibble_decay) per severity.
fn parameters(flavor: Flavor, severity: Severity) -> (f64, f64) {
    const IMAGENET: [(f64, f64); 5] = [(1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)];
    const CIFAR: [(f64, f64); 5] = [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// The side of the plasma map a flavor draws for an image of `height × width`.
pub(crate) fn map_size(flavor: Flavor, height: usize, width: usize) -> usize {
    let longer = height.max(width);
    match flavor {
        Flavor::ImageCorruptions => longer.max(3).next_power_of_two(),
        Flavor::ImageNetC => longer.next_power_of_two().max(256),
        Flavor::CifarC => longer.next_power_of_two().max(32),
    }
}

/// A square plasma map in [0, 1], row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plasma {
    pub size: usize,
    pub values: Vec<f64>,
}

/// `plasma_fractal(mapsize=map_size, wibbledecay=wibble_decay)` with the reference's draws.
/// `map_size` must be a power of two (the reference asserts it).
pub(crate) fn plasma_fractal(map_size: usize, wibble_decay: f64, rng: &mut RandomState) -> Plasma {
    debug_assert!(map_size.is_power_of_two());
    let n = map_size;
    let mut map = vec![0f64; n * n];
    let mut step = n;
    let mut wibble = 100.0f64;
    // Within each fill the cells written are never read, so computing each sum right before
    // its draw equals numpy's whole-array sums followed by one whole-array draw.
    while step >= 2 {
        let half = step / 2;
        let cells = n / step;
        // Row/column offsets of grid line i and of its wrapped neighbours (np.roll).
        let line = |i: usize| i * step;
        let next = |i: usize| if i + 1 == cells { 0 } else { (i + 1) * step };
        let prev = |i: usize| {
            if i == 0 {
                (cells - 1) * step
            } else {
                (i - 1) * step
            }
        };

        // Square centres: (corner + corner below) + (corner right + corner below-right), the
        // order of numpy's two rolls.
        for i in 0..cells {
            let (top, bottom) = (line(i) * n, next(i) * n);
            for j in 0..cells {
                let (left, right) = (line(j), next(j));
                let sum = (map[top + left] + map[bottom + left])
                    + (map[top + right] + map[bottom + right]);
                map[top + half * n + left + half] = wibbled_mean(sum, wibble, rng);
            }
        }

        // Diamonds on the squares' top edges (row i·step, column j·step + half):
        // (centre + centre above) + (corner + corner right).
        for i in 0..cells {
            let (row, centre_row, centre_above) =
                (line(i) * n, (line(i) + half) * n, (prev(i) + half) * n);
            for j in 0..cells {
                let col = line(j);
                let centres = map[centre_row + col + half] + map[centre_above + col + half];
                let corners = map[row + col] + map[row + next(j)];
                map[row + col + half] = wibbled_mean(centres + corners, wibble, rng);
            }
        }

        // Diamonds on the squares' left edges (row i·step + half, column j·step):
        // (centre + centre left) + (corner + corner below).
        for i in 0..cells {
            let (row, centre_row, below) = (line(i) * n, (line(i) + half) * n, next(i) * n);
            for j in 0..cells {
                let col = line(j);
                let centres = map[centre_row + col + half] + map[centre_row + prev(j) + half];
                let corners = map[row + col] + map[below + col];
                map[centre_row + col] = wibbled_mean(centres + corners, wibble, rng);
            }
        }

        step /= 2;
        wibble /= wibble_decay;
    }
    let min = map.iter().copied().fold(f64::INFINITY, f64::min);
    let mut max = f64::NEG_INFINITY;
    for v in &mut map {
        *v -= min;
        max = max.max(*v);
    }
    for v in &mut map {
        *v /= max;
    }
    Plasma {
        size: n,
        values: map,
    }
}

/// `array / 4 + wibble * np.random.uniform(-wibble, wibble)` for one element.
#[inline]
fn wibbled_mean(sum: f64, wibble: f64, rng: &mut RandomState) -> f64 {
    sum / 4.0 + wibble * rng.uniform(-wibble, wibble)
}

/// fog with the reference's draws.
pub(crate) fn fog(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let (height, width) = (image.height() as usize, image.width() as usize);
    let (_, wibble_decay) = parameters(flavor, severity);
    let plasma = plasma_fractal(map_size(flavor, height, width), wibble_decay, rng);
    fog_with_plasma(image, severity, flavor, &plasma)
}

/// The deterministic part of fog: adds `plasma` (at least as large as the image) and squeezes.
pub(crate) fn fog_with_plasma(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    plasma: &Plasma,
) -> RgbImage {
    let (strength, _) = parameters(flavor, severity);
    // x = image / 255 through a table (the same doubles as the division).
    let unit: [f64; 256] = std::array::from_fn(|v| v as f64 / 255.0);
    let (height, width) = (image.height() as usize, image.width() as usize);
    debug_assert!(plasma.size >= height && plasma.size >= width);
    let max_val = unit[image.as_raw().iter().copied().max().unwrap_or(0) as usize];
    let denominator = max_val + strength;
    let mut out = RgbImage::new(image.width(), image.height());
    for (row, (src, dst)) in image
        .as_raw()
        .chunks_exact(3 * width)
        .zip(out.chunks_exact_mut(3 * width))
        .enumerate()
    {
        let plasma_row = &plasma.values[row * plasma.size..][..width];
        for ((src, dst), &p) in src
            .chunks_exact(3)
            .zip(dst.chunks_exact_mut(3))
            .zip(plasma_row)
        {
            let added = strength * p;
            for (s, d) in src.iter().zip(dst) {
                let v = (unit[*s as usize] + added) * max_val / denominator;
                *d = truncate_u8(v.clamp(0.0, 1.0) * 255.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_sizes_follow_each_reference() {
        assert_eq!(map_size(Flavor::ImageCorruptions, 224, 224), 256);
        assert_eq!(map_size(Flavor::ImageCorruptions, 480, 640), 1024);
        assert_eq!(map_size(Flavor::ImageCorruptions, 37, 53), 64);
        assert_eq!(map_size(Flavor::ImageCorruptions, 32, 32), 32);
        assert_eq!(map_size(Flavor::ImageCorruptions, 1, 1), 4);
        assert_eq!(map_size(Flavor::ImageNetC, 224, 224), 256);
        assert_eq!(map_size(Flavor::ImageNetC, 1, 1), 256);
        assert_eq!(map_size(Flavor::ImageNetC, 300, 20), 512);
        assert_eq!(map_size(Flavor::CifarC, 32, 32), 32);
        assert_eq!(map_size(Flavor::CifarC, 33, 2), 64);
    }

    #[test]
    fn plasma_spans_zero_to_one_and_starts_at_the_drawn_corner() {
        let plasma = plasma_fractal(16, 2.0, &mut RandomState::new(3));
        assert_eq!(plasma.values.len(), 256);
        let min = plasma.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = plasma
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((min, max), (0.0, 1.0));
    }

    /// A 2×2 map is one level: centre, top diamond, left diamond, three draws; worked by hand.
    #[test]
    fn smallest_plasma_by_hand() {
        let mut rng = RandomState::new(7);
        let mut draws = RandomState::new(7);
        let plasma = plasma_fractal(2, 2.0, &mut rng);
        let centre = 0.0 / 4.0 + 100.0 * draws.uniform(-100.0, 100.0);
        // The 1×1 grids wrap onto themselves: sums are (centre + centre) + (corner + corner).
        let top = (centre + centre) / 4.0 + 100.0 * draws.uniform(-100.0, 100.0);
        let left = (centre + centre) / 4.0 + 100.0 * draws.uniform(-100.0, 100.0);
        let raw = [0.0, top, left, centre];
        let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
        let max = raw
            .iter()
            .map(|v| v - min)
            .fold(f64::NEG_INFINITY, f64::max);
        let expected: Vec<f64> = raw.iter().map(|v| (v - min) / max).collect();
        assert_eq!(plasma.values, expected);
    }

    #[test]
    fn core_adds_the_plasma_and_squeezes() {
        let image = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255, 100, 0]));
        let plasma = Plasma {
            size: 2,
            values: vec![0.5, 1.0, 0.0, 0.25],
        };
        let severity = Severity::new(1).unwrap();
        let out = fog_with_plasma(&image, severity, Flavor::ImageCorruptions, &plasma);
        let expect = |v: f64, p: f64| ((v / 255.0 + 1.5 * p) * 1.0 / 2.5).clamp(0.0, 1.0) * 255.0;
        assert_eq!(
            out.get_pixel(0, 0).0,
            [
                expect(0.0, 0.5) as u8,
                expect(100.0, 0.5) as u8,
                expect(0.0, 0.5) as u8
            ]
        );
        assert_eq!(out.get_pixel(1, 0).0[0], expect(255.0, 1.0) as u8);
    }

    #[test]
    fn black_stays_black_and_tiny_images_work() {
        let mut rng = RandomState::new(0);
        for flavor in Flavor::ALL {
            for severity in Severity::ALL {
                let black = RgbImage::new(3, 2);
                assert_eq!(fog(&black, severity, flavor, &mut rng), black);
                let one = RgbImage::from_pixel(1, 1, image::Rgb([9, 200, 255]));
                assert_eq!(fog(&one, severity, flavor, &mut rng).dimensions(), (1, 1));
            }
        }
    }
}
