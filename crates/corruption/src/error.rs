//! Errors of the corruption crate. Each names the value, file or corruption involved.

use std::path::PathBuf;

/// Everything that can go wrong when corrupting an image.
#[derive(Debug, thiserror::Error)]
pub enum CorruptionError {
    /// A corruption name that is not one of the 19.
    #[error(
        "unknown corruption {0:?}; valid names: gaussian_noise, shot_noise, impulse_noise, \
         defocus_blur, glass_blur, motion_blur, zoom_blur, snow, frost, fog, brightness, \
         contrast, elastic_transform, pixelate, jpeg_compression, speckle_noise, gaussian_blur, \
         spatter, saturate"
    )]
    UnknownCorruption(String),
    /// A flavor name that is not one of the three.
    #[error("unknown flavor {0:?}; valid flavors: imagecorruptions, imagenet-c, cifar-c")]
    UnknownFlavor(String),
    /// A severity outside 1..=5.
    #[error("invalid severity {0:?}: severities are the integers 1 to 5")]
    InvalidSeverity(String),
    /// The image has no pixels.
    #[error("cannot corrupt an empty image ({width}×{height})")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// frost was asked for but no texture directory was given.
    #[error(
        "frost needs the six frost textures of the ImageNet-C code: run `cargo xtask assets` \
         and point rtb at their directory (`--frost-dir` or RTB_FROST_DIR)"
    )]
    FrostTexturesNotConfigured,
    /// A frost texture file is missing.
    #[error("frost texture {path} is missing: run `cargo xtask assets` to fetch it")]
    MissingFrostTexture {
        /// The expected path.
        path: PathBuf,
    },
    /// A frost texture file has the wrong contents.
    #[error(
        "frost texture {path} has sha256 {actual}, expected {expected}: delete it and run \
         `cargo xtask assets`"
    )]
    FrostTextureChecksum {
        /// The file.
        path: PathBuf,
        /// The pinned checksum.
        expected: &'static str,
        /// The checksum found.
        actual: String,
    },
    /// A frost texture index outside 0..6.
    #[error("there are six frost textures (0..=5); {0} is not one of them")]
    FrostTextureIndex(usize),
    /// A frost texture has the right digest but could not be decoded.
    #[error("frost texture {path} could not be decoded: {message}")]
    FrostTextureDecode {
        /// The file.
        path: PathBuf,
        /// What the decoder found.
        message: String,
    },
    /// An image file could not be read, decoded, encoded or written.
    #[error("{path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder's or encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
