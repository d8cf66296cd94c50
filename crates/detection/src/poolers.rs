//! Multi-level RoI pooling for the box (7×7) and mask (14×14) branches: torchvision's
//! `MultiScaleRoIAlign` and mmdetection's `SingleRoIExtractor(RoIAlign)`, on top of rtb-nn's
//! [`MultiScaleRoiAlign`].
//!
//! Each RoI is pooled from the pyramid level its size maps to (P2..P5; P6 is never pooled
//! from). The two references differ as follows:
//!
//! | | mmdet `SingleRoIExtractor` | torchvision `MultiScaleRoIAlign` |
//! |---|---|---|
//! | level | `⌊log2(√(w·h) / 56 + 1e-6)⌋` | `⌊4 + log2(√(w·h) / 224) + 1e-6⌋ − 2` |
//! | sampling ratio | 0 (adaptive: `⌈roi / output⌉`) | 2 |
//! | `aligned` | `true` (half-pixel shift) | `false` (torchvision's default) |
//! | strides | from the config (4, 8, 16, 32) | `2^round(log2(feature / image))` |
//!
//! Both level rules clamp to the available levels and agree except within 1e-6 of a level
//! boundary. Note that torchvision's Mask R-CNN pools **without** the half-pixel alignment,
//! unlike mmdet: the two poolers give different values on the same boxes.

use candle_core::{DType, Tensor};
use rtb_nn::roi_align::{LevelMapper, MultiScaleRoiAlign, RoiAlignConfig};

use crate::Flavor;
use crate::error::{Result, config, shape};

/// Multi-level RoIAlign of one flavor and output size.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooler {
    inner: MultiScaleRoiAlign,
}

impl Pooler {
    /// A pooler of `flavor` with `output × output` bins over levels of `strides` (finest
    /// first, each a power of two).
    pub fn new(flavor: Flavor, output: usize, strides: &[usize]) -> Result<Self> {
        if output == 0 {
            return Err(config("Pooler::new", "output", "must be positive, got 0"));
        }
        if strides.is_empty() || strides.iter().any(|s| !s.is_power_of_two()) {
            return Err(config(
                "Pooler::new",
                "strides",
                format!("must be non-empty powers of two, got {strides:?}"),
            ));
        }
        Ok(Self::from_parts(flavor, output, strides))
    }

    fn from_parts(flavor: Flavor, output: usize, strides: &[usize]) -> Self {
        let (sampling_ratio, aligned, mapper) = match flavor {
            Flavor::Mmdet => (0, true, LevelMapper::Mmdet { finest_scale: 56.0 }),
            Flavor::Torchvision => (
                2,
                false,
                LevelMapper::Torchvision {
                    canonical_level: 4.0,
                    canonical_scale: 224.0,
                },
            ),
        };
        Self {
            inner: MultiScaleRoiAlign {
                roi_align: RoiAlignConfig::new(output, output)
                    .with_sampling_ratio(sampling_ratio)
                    .with_aligned(aligned),
                strides: strides.iter().map(|&s| s as f64).collect(),
                mapper,
            },
        }
    }

    /// Mask R-CNN's box pooler of `flavor`: 7×7 over strides 4, 8, 16, 32.
    pub fn box_pooler(flavor: Flavor) -> Self {
        Self::standard(flavor, 7)
    }

    /// Mask R-CNN's mask pooler of `flavor`: 14×14 over strides 4, 8, 16, 32.
    pub fn mask_pooler(flavor: Flavor) -> Self {
        Self::standard(flavor, 14)
    }

    fn standard(flavor: Flavor, output: usize) -> Self {
        Self::from_parts(flavor, output, &[4, 8, 16, 32])
    }

    /// The same pooler over levels of other `strides` (e.g. as inferred by [`infer_strides`]).
    pub fn with_strides(mut self, strides: &[usize]) -> Result<Self> {
        if strides.is_empty() || strides.iter().any(|s| !s.is_power_of_two()) {
            return Err(config(
                "Pooler::with_strides",
                "strides",
                format!("must be non-empty powers of two, got {strides:?}"),
            ));
        }
        self.inner.strides = strides.iter().map(|&s| s as f64).collect();
        Ok(self)
    }

    /// The underlying rtb-nn pooler (RoIAlign settings, strides, level rule).
    pub fn inner(&self) -> &MultiScaleRoiAlign {
        &self.inner
    }

    /// Output side (7 for boxes, 14 for masks).
    pub fn output_size(&self) -> usize {
        self.inner.roi_align.output_size.0
    }

    /// Number of pyramid levels pooled from.
    pub fn num_levels(&self) -> usize {
        self.inner.strides.len()
    }

    /// The level (0 = finest) of each box of each image, concatenated in image order.
    pub fn levels(&self, boxes: &[Tensor]) -> Result<Vec<usize>> {
        let rois = boxes_to_rois(boxes)?;
        Ok(self.inner.levels(&rois)?)
    }

    /// Pools the boxes of each image (`boxes[i]` `[K_i, 4]`, `[x1, y1, x2, y2]` in input
    /// pixels) from `features` (`[N, C, H_l, W_l]` per level, finest first; levels beyond the
    /// pooler's, such as P6, are ignored as both references do) into `[ΣK_i, C, S, S]`, in
    /// image order; differentiable with respect to the features.
    pub fn forward(&self, features: &[Tensor], boxes: &[Tensor]) -> Result<Tensor> {
        let rois = boxes_to_rois(boxes)?;
        self.forward_rois(features, &rois)
    }

    /// Pools `rois` `[K, 5]` (`batch_index, x1, y1, x2, y2`) into `[K, C, S, S]`.
    pub fn forward_rois(&self, features: &[Tensor], rois: &Tensor) -> Result<Tensor> {
        let levels = self.num_levels();
        if features.len() < levels {
            return Err(shape(
                "Pooler::forward",
                "features",
                format!("at least {levels} maps (one per stride)"),
                features.len(),
            ));
        }
        if let Some(first) = features.first()
            && boxes_dim0(rois) > 0
        {
            let n = first.dims().first().copied().unwrap_or(0);
            let max_index = rois
                .narrow(1, 0, 1)?
                .to_dtype(DType::F64)?
                .max_all()?
                .to_scalar::<f64>()?;
            if max_index >= n as f64 {
                return Err(shape(
                    "Pooler::forward",
                    "boxes",
                    format!("one list per image of the {n}-image batch"),
                    max_index as usize + 1,
                ));
            }
        }
        Ok(self.inner.forward(&features[..levels], rois)?)
    }
}

fn boxes_dim0(t: &Tensor) -> usize {
    t.dims().first().copied().unwrap_or(0)
}

/// Concatenates per-image boxes `[K_i, 4]` into RoIs `[ΣK_i, 5]` whose first column is the
/// image index (torchvision's `convert_to_roi_format`, mmdet's `bbox2roi`).
pub fn boxes_to_rois(boxes: &[Tensor]) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        let k = match b.dims() {
            [k, 4] => *k,
            dims => {
                return Err(shape(
                    "boxes_to_rois",
                    "boxes",
                    format!("[K, 4] (x1, y1, x2, y2) for image {i}"),
                    dims,
                ));
            }
        };
        let index = Tensor::full(i as f64, (k, 1), b.device())?.to_dtype(b.dtype())?;
        rows.push(Tensor::cat(&[&index, b], 1)?);
    }
    if rows.is_empty() {
        return Err(shape(
            "boxes_to_rois",
            "boxes",
            "one [K, 4] tensor per image",
            0usize,
        ));
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// torchvision's `_setup_scales`: the stride of each feature map, `2^round(log2(S / F))` with
/// `F` a map's height and `S` the largest image height of the batch (`image_sizes` as
/// `(h, w)` before padding). Equals the FPN strides whenever the padded batch is at most one
/// stride larger than its largest image.
pub fn infer_strides(features: &[Tensor], image_sizes: &[(usize, usize)]) -> Result<Vec<usize>> {
    let max_h = image_sizes.iter().map(|s| s.0).max().unwrap_or(0);
    if max_h == 0 {
        return Err(shape(
            "infer_strides",
            "image_sizes",
            "at least one image of positive height",
            image_sizes,
        ));
    }
    features
        .iter()
        .map(|f| match f.dims() {
            [_, _, h, _] if *h > 0 => {
                let approx = *h as f64 / max_h as f64;
                let exponent = -(approx.log2().round());
                Ok(2f64.powf(exponent).max(1.0) as usize)
            }
            dims => Err(shape("infer_strides", "features", "[N, C, H, W]", dims)),
        })
        .collect()
}
