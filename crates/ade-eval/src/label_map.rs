//! 8-bit label maps in memory and as PNG files.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use crate::AdeError;
use crate::error::io_error;

/// A row-major map of one byte per pixel: class indices, or stored ADE20K values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl LabelMap {
    /// A map of `width × height` values; errors if the buffer length does not match.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, AdeError> {
        let expected = width as usize * height as usize;
        if data.len() != expected {
            return Err(AdeError::BufferLength {
                what: "label",
                len: data.len(),
                width,
                height,
                expected,
            });
        }
        Ok(LabelMap {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The values, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The values, row-major, by value.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// Reads an 8-bit single-channel PNG (grayscale, or palette whose raw indices are the values,
/// as PIL's "P" mode gives them) into a [`LabelMap`]. Any other PNG kind is an error naming
/// the file.
pub fn read_label_png(path: &Path) -> Result<LabelMap, AdeError> {
    let file = File::open(path).map_err(io_error(path))?;
    let png_error = |err: png::DecodingError| AdeError::Png {
        path: path.to_path_buf(),
        message: err.to_string(),
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // Palette images keep their indices: no expansion to RGB.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    check_eight_bit(path, info.color_type, info.bit_depth)?;
    let mut data = vec![0u8; width as usize * height as usize];
    let frame = reader.next_frame(&mut data).map_err(png_error)?;
    debug_assert_eq!(frame.buffer_size(), data.len());
    LabelMap::new(width, height, data)
}

/// The `(width, height)` of a label-map PNG, from its header only; errors like
/// [`read_label_png`] if it is not an 8-bit single-channel PNG.
pub fn png_size(path: &Path) -> Result<(u32, u32), AdeError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    let info = decoder.read_header_info().map_err(|err| AdeError::Png {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    check_eight_bit(path, info.color_type, info.bit_depth)?;
    Ok((info.width, info.height))
}

fn check_eight_bit(
    path: &Path,
    color: png::ColorType,
    depth: png::BitDepth,
) -> Result<(), AdeError> {
    let single_channel = matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed);
    if !single_channel || depth != png::BitDepth::Eight {
        return Err(AdeError::NotEightBit {
            path: path.to_path_buf(),
            color: format!("{color:?}"),
            bits: depth as u8,
        });
    }
    Ok(())
}

/// The `(width, height)` of any image the `image` crate knows (JPEG, PNG), from its header.
pub fn image_size(path: &Path) -> Result<(u32, u32), AdeError> {
    image::image_dimensions(path).map_err(|err| match err {
        image::ImageError::IoError(source) => AdeError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => AdeError::ImageHeader {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

/// Writes a map as an 8-bit grayscale PNG (the format of ADE20K annotations and of the
/// predictions `rtb ade-eval` reads).
pub fn write_label_png(path: &Path, map: &LabelMap) -> Result<(), AdeError> {
    let file = File::create(path).map_err(io_error(path))?;
    let png_error = |err: png::EncodingError| AdeError::Png {
        path: path.to_path_buf(),
        message: err.to_string(),
    };
    let mut encoder = png::Encoder::new(BufWriter::new(file), map.width, map.height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&map.data).map_err(png_error)?;
    writer.finish().map_err(png_error)
}
