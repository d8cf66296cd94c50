//! frost: a crop of one of the ImageNet-C frost textures blended over the image,
//! `np.uint8(clip(a · x + b · texture, 0, 255))`.
//!
//! The texture index is `np.random.randint(5)`, so of the six upstream files the sixth is never
//! drawn (frost2 and frost3 also hold the same pixels); the crop corner is two more `randint`
//! draws, rows first. What each flavor crops from:
//!
//! - imagecorruptions: the texture rescaled with `cv2.resize(INTER_CUBIC)` by
//!   `max(1, H / fh, W / fw) · 1.1` (the factor rules of imagecorruptions 1.1.2, including its
//!   case analysis and `ceil` of the new size), so it differs from ImageNet-C even at 224.
//! - imagenet-c: the raw texture (the reference crops 224×224 from it). When an image is larger
//!   than the texture in either direction — which the reference never meets — the texture is
//!   first rescaled exactly as imagecorruptions does.
//! - cifar-c: the texture shrunk by `cv2.resize(fx=0.2, fy=0.2)` (INTER_LINEAR, which at a
//!   factor of exactly 5 samples pixel (5i + 2, 5j + 2)); larger images rescale that as above.
//!
//! Textures are decoded as `cv2.imread` does: PNGs (RGBA with alpha 255) lose their alpha, JPEGs
//! go through [`crate::jpeg::file`] (libjpeg's ISLOW IDCT and fancy up-sampling, equal to
//! OpenCV's bundled libjpeg-turbo). The cubic rescale runs in float64 with OpenCV's coordinate
//! mapping and kernel (a = −0.75, replicated borders); opencv-python computes it with Intel IPP,
//! whose float32 arithmetic rounds a few values lying within 1e-5 of a half differently, so a
//! rescaled texture can differ from `cv2.resize` by one level in a handful of pixels per
//! million (the golden tests bound it). Only the crop that is used is ever resampled.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::array::truncate_u8;
use crate::rng::RandomState;
use crate::{CorruptionError, Flavor, Severity};

/// The six upstream files with their sha256 digests (the pinned contents of the ImageNet-C
/// `create_c` directory and of the imagecorruptions 1.1.2 distribution).
pub const FROST_FILES: [(&str, &str); 6] = [
    (
        "frost1.png",
        "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    ),
    (
        "frost2.png",
        "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    ),
    (
        "frost3.png",
        "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    ),
    (
        "frost4.jpg",
        "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    ),
    (
        "frost5.jpg",
        "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    ),
    (
        "frost6.jpg",
        "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
    ),
];

/// An RGB texture, `height × width × 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Texture {
    pub height: usize,
    pub width: usize,
    pub rgb: Vec<u8>,
}

/// The frost textures in one directory, verified by sha256 and decoded on first use (each file
/// once, shared by every clone and thread).
///
/// ```no_run
/// use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};
/// let textures = FrostTextures::new("/path/to/frost");
/// textures.verify()?; // optional: fail early when a file is missing or wrong
/// let corruptor = Corruptor::new(Flavor::ImageCorruptions).with_frost_textures(textures);
/// let image = image::RgbImage::new(64, 48);
/// let out = corruptor.corrupt(&image, Corruption::Frost, Severity::ALL[2], &mut RandomState::new(0))?;
/// # Ok::<(), rtb_corruption::CorruptionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrostTextures {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    raw: [OnceLock<Texture>; 6],
    cifar: [OnceLock<Texture>; 6],
}

impl FrostTextures {
    /// Textures read from `dir` (which must hold the six upstream files). Nothing is read until
    /// a texture is needed; see [`FrostTextures::verify`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.into(),
                raw: Default::default(),
                cifar: Default::default(),
            }),
        }
    }

    /// The directory the textures are read from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Reads, checks and decodes all six files now: the first error names the file.
    pub fn verify(&self) -> Result<(), CorruptionError> {
        for index in 0..FROST_FILES.len() {
            self.raw(index)?;
        }
        Ok(())
    }

    /// Texture `index` (0..6, in [`FROST_FILES`] order) decoded as `cv2.imread` decodes it,
    /// in RGB order.
    pub fn texture(&self, index: usize) -> Result<RgbImage, CorruptionError> {
        if index >= FROST_FILES.len() {
            return Err(CorruptionError::FrostTextureIndex(index));
        }
        let texture = self.raw(index)?;
        Ok(RgbImage::from_raw(
            texture.width as u32,
            texture.height as u32,
            texture.rgb.clone(),
        )
        .expect("a decoded texture has height × width × 3 bytes"))
    }

    /// The texture as `cv2.imread` returns it (in RGB order).
    pub(crate) fn raw(&self, index: usize) -> Result<&Texture, CorruptionError> {
        let cell = &self.inner.raw[index];
        if let Some(texture) = cell.get() {
            return Ok(texture);
        }
        let texture = load_texture(
            &self.inner.dir.join(FROST_FILES[index].0),
            FROST_FILES[index].1,
        )?;
        // Another thread may have won the race; both decoded the same bytes.
        let _ = cell.set(texture);
        Ok(cell.get().expect("just set"))
    }

    /// The texture after make_cifar_c.py's `cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`.
    pub(crate) fn cifar(&self, index: usize) -> Result<&Texture, CorruptionError> {
        let cell = &self.inner.cifar[index];
        if let Some(texture) = cell.get() {
            return Ok(texture);
        }
        let texture = shrink_by_five(self.raw(index)?);
        let _ = cell.set(texture);
        Ok(cell.get().expect("just set"))
    }
}

/// Reads one texture file, checks its digest and decodes it to RGB.
fn load_texture(path: &Path, sha256: &'static str) -> Result<Texture, CorruptionError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CorruptionError::MissingFrostTexture {
                path: path.to_path_buf(),
            }
        } else {
            CorruptionError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let actual = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    if actual != sha256 {
        return Err(CorruptionError::FrostTextureChecksum {
            path: path.to_path_buf(),
            expected: sha256,
            actual,
        });
    }
    decode_texture(path, &bytes)
}

/// Decodes PNG or JPEG bytes as `cv2.imread(path)` would (colour, alpha dropped), in RGB order.
pub(crate) fn decode_texture(path: &Path, bytes: &[u8]) -> Result<Texture, CorruptionError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let (height, width, rgb) = crate::jpeg::file::decode_rgb(bytes).map_err(|e| {
            CorruptionError::FrostTextureDecode {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        return Ok(Texture { height, width, rgb });
    }
    let decoded = image::load_from_memory(bytes).map_err(|source| CorruptionError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    let rgb = decoded.to_rgb8();
    Ok(Texture {
        height: rgb.height() as usize,
        width: rgb.width() as usize,
        rgb: rgb.into_raw(),
    })
}

/// OpenCV's INTER_LINEAR resize by exactly 0.2: `saturate_cast<int>` (round half to even) of
/// the scaled size, and since `(d + 0.5) · 5 − 0.5 = 5d + 2` has no fraction, every output is
/// the source pixel `(5i + 2, 5j + 2)`.
fn shrink_by_five(texture: &Texture) -> Texture {
    let height = (texture.height as f64 * 0.2).round_ties_even() as usize;
    let width = (texture.width as f64 * 0.2).round_ties_even() as usize;
    let mut rgb = Vec::with_capacity(height * width * 3);
    for i in 0..height {
        let sy = (5 * i + 2).min(texture.height - 1);
        for j in 0..width {
            let sx = (5 * j + 2).min(texture.width - 1);
            let at = (sy * texture.width + sx) * 3;
            rgb.extend_from_slice(&texture.rgb[at..at + 3]);
        }
    }
    Texture { height, width, rgb }
}

/// imagecorruptions' rescale factor (before its `ceil`): 1 when the texture covers the image,
/// else the larger of the ratios, times 1.1.
fn rescale_factor(texture: &Texture, height: usize, width: usize) -> f64 {
    let (fh, fw) = (texture.height, texture.width);
    let factor = if fh >= height && fw >= width {
        1.0
    } else if fh < height && fw >= width {
        height as f64 / fh as f64
    } else if fh >= height && fw < width {
        width as f64 / fw as f64
    } else {
        (height as f64 / fh as f64).max(width as f64 / fw as f64)
    };
    factor * 1.1
}

/// Cubic weights of OpenCV's kernel (a = −0.75) for the four taps around a fraction `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |d: f64| ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0;
    let far = |d: f64| ((A * d - 5.0 * A) * d + 8.0 * A) * d - 4.0 * A;
    let weight = |d: f64| if d <= 1.0 { near(d) } else { far(d) };
    [weight(t + 1.0), weight(t), weight(1.0 - t), weight(2.0 - t)]
}

/// Source index and weights of output position `i` for a resize from `n_in` to `n_out`.
fn cubic_tap(i: usize, n_in: usize, n_out: usize) -> ([usize; 4], [f64; 4]) {
    let scale = n_in as f64 / n_out as f64;
    let coordinate = (i as f64 + 0.5) * scale - 0.5;
    let base = coordinate.floor();
    let weights = cubic_weights(coordinate - base);
    let base = base as i64;
    let last = n_in as i64 - 1;
    let index = |k: i64| (base + k - 1).clamp(0, last) as usize;
    ([index(0), index(1), index(2), index(3)], weights)
}

/// The `height × width` window at (`top`, `left`) of the texture cubically resized to
/// `new_height × new_width` (see the module docs for how it relates to `cv2.resize`).
fn cubic_resize_window(
    texture: &Texture,
    new_height: usize,
    new_width: usize,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
) -> Vec<u8> {
    let columns: Vec<([usize; 4], [f64; 4])> = (left..left + width)
        .map(|x| cubic_tap(x, texture.width, new_width))
        .collect();
    let rows: Vec<([usize; 4], [f64; 4])> = (top..top + height)
        .map(|y| cubic_tap(y, texture.height, new_height))
        .collect();
    // Horizontal pass first, over the source rows the window needs.
    let first = rows.iter().map(|r| r.0[0]).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.0[3]).max().unwrap_or(0);
    let mut horizontal = vec![0.0f64; (last + 1 - first) * width * 3];
    for sy in first..=last {
        let src = &texture.rgb[sy * texture.width * 3..(sy + 1) * texture.width * 3];
        let dst = &mut horizontal[(sy - first) * width * 3..(sy - first + 1) * width * 3];
        for (x, (index, weights)) in columns.iter().enumerate() {
            for c in 0..3 {
                let mut sum = 0.0;
                for k in 0..4 {
                    sum += weights[k] * src[index[k] * 3 + c] as f64;
                }
                dst[x * 3 + c] = sum;
            }
        }
    }
    let mut out = vec![0u8; height * width * 3];
    for (y, (index, weights)) in rows.iter().enumerate() {
        let dst = &mut out[y * width * 3..(y + 1) * width * 3];
        for (i, d) in dst.iter_mut().enumerate() {
            let mut sum = 0.0;
            for k in 0..4 {
                sum += weights[k] * horizontal[(index[k] - first) * width * 3 + i];
            }
            *d = sum.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A plain crop.
fn crop(texture: &Texture, top: usize, left: usize, height: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(height * width * 3);
    for y in top..top + height {
        let start = (y * texture.width + left) * 3;
        out.extend_from_slice(&texture.rgb[start..start + width * 3]);
    }
    out
}

/// imagecorruptions' rescale then random crop (draws the two corner offsets).
fn rescaled_crop(texture: &Texture, height: usize, width: usize, rng: &mut RandomState) -> Vec<u8> {
    let factor = rescale_factor(texture, height, width);
    let new_width = (texture.width as f64 * factor).ceil() as usize;
    let new_height = (texture.height as f64 * factor).ceil() as usize;
    let top = rng.randint(0, new_height as i64 - height as i64) as usize;
    let left = rng.randint(0, new_width as i64 - width as i64) as usize;
    cubic_resize_window(texture, new_height, new_width, top, left, height, width)
}

/// The ImageNet-C / CIFAR-10-C crop: straight from `texture` when the image fits, else from the
/// imagecorruptions rescale. A texture exactly as large as the image gives offset 0 (numpy's
/// `randint(0, 0)` would raise; `randint(0, 1)` draws nothing and returns 0).
fn plain_crop(texture: &Texture, height: usize, width: usize, rng: &mut RandomState) -> Vec<u8> {
    if texture.height < height || texture.width < width {
        return rescaled_crop(texture, height, width, rng);
    }
    let top = rng.randint(0, (texture.height - height).max(1) as i64) as usize;
    let left = rng.randint(0, (texture.width - width).max(1) as i64) as usize;
    crop(texture, top, left, height, width)
}

/// frost's core: `np.uint8(clip(image_weight · x + frost_weight · texture, 0, 255))` with
/// `texture` the chosen crop (RGB, same size as `pixels`).
pub(crate) fn blend(
    pixels: &[u8],
    texture: &[u8],
    image_weight: f64,
    frost_weight: f64,
) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), texture.len());
    pixels
        .iter()
        .zip(texture)
        .map(|(&x, &t)| {
            truncate_u8((image_weight * x as f64 + frost_weight * t as f64).clamp(0.0, 255.0))
        })
        .collect()
}

/// (image weight, frost weight) per flavor and severity.
fn weights(flavor: Flavor, severity: Severity) -> (f64, f64) {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => {
            [(1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]
        }
        Flavor::CifarC => [
            (1.0, 0.2),
            (1.0, 0.3),
            (0.9, 0.4),
            (0.85, 0.4),
            (0.75, 0.45),
        ],
    };
    table[severity.index()]
}

/// The frost corruption.
pub(crate) fn apply(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    textures: &FrostTextures,
    rng: &mut RandomState,
) -> Result<RgbImage, CorruptionError> {
    let (height, width) = (image.height() as usize, image.width() as usize);
    let index = rng.randint(0, 5) as usize;
    let texture = match flavor {
        Flavor::ImageCorruptions => rescaled_crop(textures.raw(index)?, height, width, rng),
        Flavor::ImageNetC => plain_crop(textures.raw(index)?, height, width, rng),
        Flavor::CifarC => plain_crop(textures.cifar(index)?, height, width, rng),
    };
    let (image_weight, frost_weight) = weights(flavor, severity);
    let out = blend(image.as_raw(), &texture, image_weight, frost_weight);
    Ok(RgbImage::from_raw(image.width(), image.height(), out).expect("frost keeps the size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texture(height: usize, width: usize) -> Texture {
        Texture {
            height,
            width,
            rgb: (0..height * width * 3)
                .map(|i| (i * 7 % 256) as u8)
                .collect(),
        }
    }

    #[test]
    fn blend_weights_clips_and_truncates() {
        // 1.0·200 + 0.4·100 = 240; 0.6·255 + 0.75·255 clips to 255; 0.7·1 + 0.7·0 = 0.7 → 0.
        assert_eq!(blend(&[200, 255, 1], &[100, 255, 0], 1.0, 0.4)[0], 240);
        assert_eq!(blend(&[255], &[255], 0.6, 0.75), vec![255]);
        assert_eq!(blend(&[1], &[0], 0.7, 0.7), vec![0]);
    }

    #[test]
    fn rescale_factor_follows_imagecorruptions_cases() {
        let t = texture(315, 560);
        assert_eq!(rescale_factor(&t, 224, 224), 1.1);
        assert_eq!(rescale_factor(&t, 480, 100), 480.0 / 315.0 * 1.1);
        assert_eq!(rescale_factor(&t, 100, 640), 640.0 / 560.0 * 1.1);
        assert_eq!(
            rescale_factor(&t, 480, 640),
            (480.0f64 / 315.0).max(640.0 / 560.0) * 1.1
        );
        // 900 · 1.1 is 990.0000000000001 in float64, so imagecorruptions makes it 991 wide.
        assert_eq!((900.0f64 * 1.1).ceil(), 991.0);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate_at_integers() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        // Resizing to the same size is the identity.
        let t = texture(9, 13);
        assert_eq!(cubic_resize_window(&t, 9, 13, 0, 0, 9, 13), t.rgb);
    }

    #[test]
    fn shrink_by_five_samples_the_centre_pixels() {
        let t = texture(12, 11);
        let small = shrink_by_five(&t);
        assert_eq!((small.height, small.width), (2, 2));
        assert_eq!(
            &small.rgb[0..3],
            &t.rgb[(2 * 11 + 2) * 3..(2 * 11 + 2) * 3 + 3]
        );
        assert_eq!(
            &small.rgb[9..12],
            &t.rgb[(7 * 11 + 7) * 3..(7 * 11 + 7) * 3 + 3]
        );
    }

    #[test]
    fn plain_crop_fits_or_rescales() {
        let t = texture(40, 50);
        let mut rng = RandomState::new(1);
        assert_eq!(plain_crop(&t, 40, 50, &mut rng), t.rgb);
        assert_eq!(plain_crop(&t, 60, 20, &mut rng).len(), 60 * 20 * 3);
    }

    #[test]
    fn missing_directory_names_the_file_and_the_command() {
        let textures = FrostTextures::new("/nonexistent/rtb/frost");
        let err = textures.verify().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CorruptionError::MissingFrostTexture { .. }));
        assert!(
            text.contains("frost1.png") && text.contains("cargo xtask assets"),
            "{text}"
        );
        assert!(matches!(
            textures.texture(6),
            Err(CorruptionError::FrostTextureIndex(6))
        ));
    }
}
