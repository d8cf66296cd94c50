//! `rtb-corruption`: the 15 ImageNet-C benchmark corruptions and the 4 extras, at 5 severities,
//! equal to the references that the field trusts — and much faster.
//!
//! Three [`Flavor`]s follow three references, each with its own parameter tables and
//! algorithm variants: [`Flavor::ImageCorruptions`] (the imagecorruptions 1.1.2 package; any
//! image size; what detection benchmarks apply to COCO), [`Flavor::ImageNetC`] (the ImageNet-C
//! generation code at 224×224) and [`Flavor::CifarC`] (the CIFAR-10-C code at 32×32).
//!
//! Main types:
//! - [`Corruption`] (the 19, with [`Corruption::ALL`], [`Corruption::BENCHMARK`],
//!   [`Corruption::EXTRA`], [`Corruption::category`], [`Corruption::name`], `FromStr`),
//!   [`Category`], [`Severity`] (cannot hold 0 or 6);
//! - [`RandomState`]: numpy's legacy generator, bit for bit, so that for a seed `s` the output
//!   equals `np.random.seed(s)` followed by the reference call;
//! - [`Corruptor`]: a flavor plus the frost textures; [`corrupt`] is the one-call entry point;
//! - [`FrostTextures`]: the six sha256-pinned texture files of a directory, decoded once;
//! - [`image_seed`]: the documented per-image seed for corrupting datasets.
//!
//! Everything is `Send + Sync`: corrupt a dataset from many threads, one `RandomState` per
//! image. This crate knows no tensors, models or datasets and must not depend on candle or any
//! other rtb crate; it reads no files except the frost textures from a directory it is given.
//!
//! # Exactness
//!
//! For the same seed, every corruption returns the reference's bytes (the golden tests check
//! every severity and flavor on several sizes), with these stated exceptions:
//! - `impulse_noise` follows scikit-image ≤ 0.18, whose `random_noise` drew its salt-and-pepper
//!   masks from numpy's global state (`choice([True, False])` for the flip mask over all
//!   values, then for the salt mask); scikit-image ≥ 0.19 draws from fresh OS entropy and
//!   cannot be seeded, so against it only the statistics can (and do) agree;
//! - `frost` in the imagecorruptions flavor rescales the texture in float64, where
//!   opencv-python uses Intel IPP's float32 cubic resize: a few values per million differ by
//!   one grey level.
//!
//! # Input and output
//!
//! [`Corruptor::corrupt`] takes 8-bit RGB; [`Corruptor::corrupt_dynamic`] accepts any decoded
//! image and converts it with `to_rgb8` (grey is repeated into three channels, as
//! imagecorruptions stacks a 2-D array; alpha is dropped). The output is 8-bit RGB of the same
//! size, truncated (not rounded) from the float result as `np.uint8` does.
//!
//! # Sizes
//!
//! Every corruption accepts every size from 1×1 (an empty image is an error). The references
//! refuse images under 32 pixels (`imagecorruptions.corrupt`) or assume 224 / 32 pixels (the
//! ImageNet-C / CIFAR-10-C code). Below 32 pixels rtb equals imagecorruptions' own corruption
//! functions called directly, wherever those run; where they cannot, rtb does the natural
//! thing: pixelate keeps at least one pixel of its shrunk image (Pillow refuses a 0-pixel
//! size), glass blur's loops are empty when the image is no larger than twice the shift,
//! motion blur stops adding shifted copies once a shift reaches the image size, spatter on a
//! water layer with no surviving pixel returns the image unchanged (the reference divides 0 by
//! 0).
//!
//! The ImageNet-C and CIFAR-10-C flavors at other sizes keep their parameter tables and use the
//! image's own size wherever the code hard-codes 224 or 32 (pixelate's target size, glass
//! blur's loops, zoom and snow's crops, the reshapes); fog draws a map of at least the
//! reference's size (256 or 32) and more for larger images; frost crops from the raw texture
//! (ImageNet-C) or the 0.2-shrunk one (CIFAR-10-C) and, for an image larger than that texture,
//! first rescales it as imagecorruptions does; elastic_transform applies the tables unchanged.
//! Per-pixel corruptions (noise, brightness, contrast, saturate, JPEG) have no size in them.
//!
//! ```
//! use image::RgbImage;
//! use rtb_corruption::{corrupt, Corruption, Flavor, RandomState, Severity};
//! let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
//! let mut rng = RandomState::new(0);
//! let severity = Severity::new(3).unwrap();
//! let out = corrupt(&image, Corruption::Contrast, severity, Flavor::ImageCorruptions, &mut rng)
//!     .unwrap();
//! assert_eq!(out.dimensions(), (64, 48));
//! ```
#![deny(missing_docs)]

mod array;
mod blur;
mod color;
mod corruption;
mod cv;
mod elastic;
mod error;
mod filters;
mod fog;
mod frost;
mod jpeg;
mod noise;
mod pixelate;
pub mod rng;
mod seed;
mod snow;
mod spatter;

pub use corruption::{Category, Corruption, Flavor, Severity};
pub use error::CorruptionError;
pub use frost::{FROST_FILES, FrostTextures};
pub use rng::RandomState;
pub use seed::image_seed;

use image::{DynamicImage, RgbImage};

/// Applies corruptions of one flavor; holds the frost textures when frost is needed.
#[derive(Debug, Clone, Default)]
pub struct Corruptor {
    flavor: Flavor,
    frost: Option<FrostTextures>,
}

impl Corruptor {
    /// A corruptor for `flavor`, without frost textures (frost then returns
    /// [`CorruptionError::FrostTexturesNotConfigured`]).
    pub fn new(flavor: Flavor) -> Self {
        Self {
            flavor,
            frost: None,
        }
    }

    /// The same corruptor, reading frost textures from `textures` (cheap to clone and shared
    /// between threads; each file is decoded once).
    pub fn with_frost_textures(mut self, textures: FrostTextures) -> Self {
        self.frost = Some(textures);
        self
    }

    /// The flavor this corruptor follows.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The frost textures, if configured.
    pub fn frost_textures(&self) -> Option<&FrostTextures> {
        self.frost.as_ref()
    }

    /// [`Corruptor::corrupt`] for any decoded image: grey, grey+alpha, RGBA and 16-bit images
    /// are converted with `to_rgb8` first (grey is repeated into the three channels, as
    /// imagecorruptions stacks a 2-D array; alpha is dropped; 16-bit samples are scaled to 8
    /// bits). The result is always 8-bit RGB.
    pub fn corrupt_dynamic(
        &self,
        image: &DynamicImage,
        corruption: Corruption,
        severity: Severity,
        rng: &mut RandomState,
    ) -> Result<RgbImage, CorruptionError> {
        match image {
            DynamicImage::ImageRgb8(rgb) => self.corrupt(rgb, corruption, severity, rng),
            other => self.corrupt(&other.to_rgb8(), corruption, severity, rng),
        }
    }

    /// Corrupts `image` (8-bit RGB; convert grey or RGBA input with
    /// `DynamicImage::to_rgb8`, as imagecorruptions stacks grey into RGB). The output has the
    /// same size; its bytes equal the reference's `np.uint8` result for the same random draws.
    pub fn corrupt(
        &self,
        image: &RgbImage,
        corruption: Corruption,
        severity: Severity,
        rng: &mut RandomState,
    ) -> Result<RgbImage, CorruptionError> {
        if image.width() == 0 || image.height() == 0 {
            return Err(CorruptionError::EmptyImage {
                width: image.width(),
                height: image.height(),
            });
        }
        let flavor = self.flavor;
        match corruption {
            Corruption::GaussianNoise => Ok(noise::apply_gaussian(image, severity, flavor, rng)),
            Corruption::ShotNoise => Ok(noise::apply_shot(image, severity, flavor, rng)),
            Corruption::ImpulseNoise => Ok(noise::apply_impulse(image, severity, flavor, rng)),
            Corruption::SpeckleNoise => Ok(noise::apply_speckle(image, severity, flavor, rng)),
            Corruption::Brightness => Ok(color::apply_brightness(image, severity, flavor)),
            Corruption::Saturate => Ok(color::apply_saturate(image, severity, flavor)),
            Corruption::Contrast => Ok(color::apply_contrast(image, severity, flavor)),
            Corruption::Pixelate => Ok(pixelate::apply(image, severity, flavor)),
            Corruption::JpegCompression => Ok(jpeg::apply(image, severity, flavor)),
            Corruption::Fog => Ok(fog::fog(image, severity, flavor, rng)),
            Corruption::Snow => Ok(snow::snow(image, severity, flavor, rng)),
            Corruption::Spatter => Ok(spatter::spatter(image, severity, flavor, rng)),
            Corruption::DefocusBlur => Ok(blur::defocus_blur(image, severity, flavor)),
            Corruption::GlassBlur => Ok(blur::glass_blur(image, severity, flavor, rng)),
            Corruption::MotionBlur => Ok(blur::motion_blur(image, severity, flavor, rng)),
            Corruption::ZoomBlur => Ok(blur::zoom_blur(image, severity, flavor)),
            Corruption::GaussianBlur => Ok(blur::gaussian_blur(image, severity, flavor)),
            Corruption::ElasticTransform => {
                Ok(elastic::elastic_transform(image, severity, flavor, rng))
            }
            Corruption::Frost => {
                let textures = self
                    .frost
                    .as_ref()
                    .ok_or(CorruptionError::FrostTexturesNotConfigured)?;
                frost::apply(image, severity, flavor, textures, rng)
            }
        }
    }
}

/// Corrupts one image with a fresh [`Corruptor`] of `flavor` (frost needs textures: use
/// [`Corruptor`] for it).
pub fn corrupt(
    image: &RgbImage,
    corruption: Corruption,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> Result<RgbImage, CorruptionError> {
    Corruptor::new(flavor).corrupt(image, corruption, severity, rng)
}

/// Saves `image` as JPEG at `quality` and decodes it again, as
/// `Image.open(buf)` after `Image.fromarray(rgb).save(buf, 'JPEG', quality=quality)` does with
/// Pillow's libjpeg-turbo (4:2:0, ISLOW DCT, standard tables, fancy up-sampling), bit for bit:
/// the back end of `jpeg_compression`. Pillow's `optimize=True` changes only the Huffman
/// tables, so it reads back the same pixels. Qualities are clamped to 1..=100 as libjpeg's
/// `jpeg_quality_scaling` does; an empty image comes back empty.
pub fn jpeg_round_trip(image: &RgbImage, quality: u8) -> RgbImage {
    if image.width() == 0 || image.height() == 0 {
        return image.clone();
    }
    let quality = u32::from(quality.clamp(1, 100));
    let (width, height) = (image.width() as usize, image.height() as usize);
    let out = jpeg::round_trip(image.as_raw(), height, width, quality);
    RgbImage::from_raw(image.width(), image.height(), out).expect("JPEG keeps the size")
}

/// Decodes a JPEG file's bytes as libjpeg-turbo does with its defaults (ISLOW IDCT, fancy
/// up-sampling, its YCbCr → RGB tables): the pixels of Pillow's `Image.open(f).convert('RGB')`
/// and of `cv2.imread`, bit for bit. Only three-component baseline or progressive files with
/// 4:4:4 or 4:2:0 sampling are decoded (the decoder that reads the frost textures); any other
/// file (grey, CMYK, 4:2:2, …) is an error whose message says why, so callers can fall back
/// to another decoder.
pub fn decode_jpeg_exact(data: &[u8]) -> Result<RgbImage, String> {
    let (height, width, pixels) = jpeg::file::decode_rgb(data).map_err(|e| e.0)?;
    RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| "the decoded size does not match its pixels".to_string())
}

/// Decodes an image file's bytes (format from the content, not the name) to 8-bit RGB with
/// the pixels Pillow's `.convert('RGB')` and `cv2.imread` give: three-component 4:4:4 / 4:2:0
/// JPEGs without an Adobe colour-transform segment through [`decode_jpeg_exact`] (bit for bit);
/// anything else (grey, CMYK, 4:2:2 JPEGs, PNG, …) through the image crate, whose JPEG decoder
/// can differ from libjpeg-turbo by a grey level here and there. Grey is repeated into three
/// channels and alpha dropped.
pub fn decode_rgb(data: &[u8]) -> Result<RgbImage, String> {
    if data.starts_with(&[0xFF, 0xD8])
        && !has_adobe_segment(data)
        && let Ok(image) = decode_jpeg_exact(data)
    {
        return Ok(image);
    }
    image::load_from_memory(data)
        .map(|image| image.into_rgb8())
        .map_err(|e| e.to_string())
}

/// Whether a JPEG header has an Adobe APP14 segment (its transform flag can mean RGB or CMYK
/// data, which the exact decoder does not read).
fn has_adobe_segment(bytes: &[u8]) -> bool {
    let mut pos = 2;
    while pos + 4 <= bytes.len() && bytes[pos] == 0xFF {
        let marker = bytes[pos + 1];
        if marker == 0xDA || marker == 0xD9 {
            return false;
        }
        let length = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        if marker == 0xEE && bytes[pos + 4..].starts_with(b"Adobe") {
            return true;
        }
        pos += 2 + length;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Corruptor>();
        assert_send_sync::<RandomState>();
        assert_send_sync::<CorruptionError>();
    }

    #[test]
    fn jpeg_round_trip_is_the_jpeg_compression_back_end() {
        // Severity 1 of jpeg_compression is quality 25 in the ImageNet-C flavor.
        let image = RgbImage::from_fn(37, 29, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 90]));
        let corrupted = corrupt(
            &image,
            Corruption::JpegCompression,
            Severity::ALL[0],
            Flavor::ImageNetC,
            &mut RandomState::new(0),
        )
        .unwrap();
        assert_eq!(jpeg_round_trip(&image, 25), corrupted);
        // Qualities clamp as libjpeg's do; an empty image comes back empty.
        assert_eq!(jpeg_round_trip(&image, 0), jpeg_round_trip(&image, 1));
        assert_eq!(jpeg_round_trip(&image, 255), jpeg_round_trip(&image, 100));
        assert_eq!(
            jpeg_round_trip(&RgbImage::new(0, 3), 85).dimensions(),
            (0, 3)
        );
        // The exact decoder refuses what is not a JPEG instead of guessing.
        assert!(decode_jpeg_exact(b"not a jpeg").is_err());
    }

    #[test]
    fn empty_images_are_errors() {
        let image = RgbImage::new(0, 5);
        let err = corrupt(
            &image,
            Corruption::Contrast,
            Severity::ALL[0],
            Flavor::ImageCorruptions,
            &mut RandomState::new(0),
        )
        .unwrap_err();
        assert!(matches!(err, CorruptionError::EmptyImage { .. }));
    }
}
