//! A batch of images of different sizes padded into one tensor (torchvision's `ImageList`):
//! the padded `[N, 3, H, W]` tensor, each image's size inside it, and each image's original
//! size (before any resizing) to which detections are mapped back.

use candle_core::Tensor;

use crate::error::{Result, config, shape};

/// Images zero-padded at the bottom and right into one tensor.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// The padded batch `[N, C, H, W]` (already normalised).
    pub tensor: Tensor,
    /// `(h, w)` of each image inside the padded tensor.
    pub image_sizes: Vec<(usize, usize)>,
    /// `(h, w)` of each image before resizing; detections are rescaled to it.
    pub original_sizes: Vec<(usize, usize)>,
}

impl ImageBatch {
    /// Pads `images` (`[C, h_i, w_i]` each, one dtype and device) with zeros to the largest
    /// height and width rounded up to a multiple of `size_divisor` (32 for Mask R-CNN).
    /// Original sizes equal the images' sizes ([`Self::with_original_sizes`] changes them).
    pub fn from_images(images: &[Tensor], size_divisor: usize) -> Result<Self> {
        const OP: &str = "ImageBatch::from_images";
        if images.is_empty() {
            return Err(shape(OP, "images", "at least one image", 0));
        }
        if size_divisor == 0 {
            return Err(config(OP, "size_divisor", "must be positive, got 0"));
        }
        let mut sizes = Vec::with_capacity(images.len());
        let mut channels = None;
        for image in images {
            let (c, h, w) = match image.dims() {
                [c, h, w] if *h > 0 && *w > 0 => (*c, *h, *w),
                dims => return Err(shape(OP, "images", "[C, h, w] each, h, w > 0", dims)),
            };
            if *channels.get_or_insert(c) != c {
                return Err(shape(
                    OP,
                    "images",
                    format!("{} channels each", channels.unwrap_or(c)),
                    c,
                ));
            }
            sizes.push((h, w));
        }
        let round = |v: usize| v.div_ceil(size_divisor) * size_divisor;
        let ph = round(sizes.iter().map(|s| s.0).max().unwrap_or(0));
        let pw = round(sizes.iter().map(|s| s.1).max().unwrap_or(0));
        let padded = images
            .iter()
            .zip(&sizes)
            .map(|(image, &(h, w))| {
                image
                    .pad_with_zeros(1, 0, ph - h)?
                    .pad_with_zeros(2, 0, pw - w)?
                    .unsqueeze(0)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            tensor: Tensor::cat(&padded, 0)?,
            original_sizes: sizes.clone(),
            image_sizes: sizes,
        })
    }

    /// Sets the sizes detections are mapped back to (one per image).
    pub fn with_original_sizes(mut self, sizes: Vec<(usize, usize)>) -> Result<Self> {
        if sizes.len() != self.image_sizes.len() || sizes.iter().any(|s| s.0 == 0 || s.1 == 0) {
            return Err(shape(
                "ImageBatch::with_original_sizes",
                "sizes",
                format!("{} positive (h, w) pairs", self.image_sizes.len()),
                sizes,
            ));
        }
        self.original_sizes = sizes;
        Ok(self)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.image_sizes.len()
    }

    /// Whether there are no images (never, for a batch built by [`Self::from_images`]).
    pub fn is_empty(&self) -> bool {
        self.image_sizes.is_empty()
    }

    /// `(H, W)` of the padded tensor.
    pub fn padded_size(&self) -> Result<(usize, usize)> {
        let (_, _, h, w) = self.tensor.dims4()?;
        Ok((h, w))
    }
}
