//! Anchor boxes over the FPN levels (no weights): torchvision's `AnchorGenerator` and
//! mmdetection 2.x's `AnchorGenerator`.
//!
//! Both place `len(ratios)·len(scales)` base anchors centred on the top-left corner of every
//! feature-map cell (centre offset 0) and lay the anchors of one level out as
//! `[H·W·A, 4]` boxes `[x1, y1, x2, y2]`: cells row by row (y outer, x inner), and within a
//! cell ratio-major (for each ratio `h/w`, each scale). The RPN head's outputs are flattened in
//! the same order, so anchor `i` of a level goes with prediction `i`.
//!
//! The flavors differ in three details, all reproduced in f32 as the references compute:
//! - **rounding**: torchvision rounds the base anchors to integers (`round()`, halves to
//!   even), mmdet keeps them unrounded;
//! - **size arithmetic**: torchvision's width is `w_ratio · size` with `size = stride · scale`
//!   (32, 64, …, 512 for Mask R-CNN), mmdet's is `(stride · w_ratio) · scale`;
//! - **strides**: mmdet uses the configured strides, torchvision derives each level's stride as
//!   `image_size // grid_size` of the padded batch (so a P6 of 13 rows over an 800-row image
//!   gets stride 61, not 64).

use candle_core::{Device, Tensor};

use crate::Flavor;
use crate::error::{Result, config, shape};

/// Anchor layout of every pyramid level.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    flavor: Flavor,
    strides: Vec<usize>,
    scales: Vec<f64>,
    ratios: Vec<f64>,
}

impl AnchorGenerator {
    /// An anchor generator over levels of the given `strides`, anchors of side
    /// `stride · scale` for each of `scales` and aspect ratio `h / w` for each of `ratios`.
    /// Strides, scales and ratios must be non-empty and positive.
    pub fn new(flavor: Flavor, strides: &[usize], scales: &[f64], ratios: &[f64]) -> Result<Self> {
        const OP: &str = "AnchorGenerator::new";
        if strides.is_empty() || strides.contains(&0) {
            return Err(config(
                OP,
                "strides",
                format!("must be positive, got {strides:?}"),
            ));
        }
        let positive = |v: &[f64]| !v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0);
        if !positive(scales) {
            return Err(config(
                OP,
                "scales",
                format!("must be positive, got {scales:?}"),
            ));
        }
        if !positive(ratios) {
            return Err(config(
                OP,
                "ratios",
                format!("must be positive, got {ratios:?}"),
            ));
        }
        Ok(Self {
            flavor,
            strides: strides.to_vec(),
            scales: scales.to_vec(),
            ratios: ratios.to_vec(),
        })
    }

    /// Mask R-CNN's anchors in the given flavor: strides 4..64 (P2–P6), scale 8 (sides 32 to
    /// 512), ratios 0.5, 1, 2.
    pub fn mask_rcnn(flavor: Flavor) -> Self {
        Self {
            flavor,
            strides: vec![4, 8, 16, 32, 64],
            scales: vec![8.0],
            ratios: vec![0.5, 1.0, 2.0],
        }
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Number of pyramid levels.
    pub fn num_levels(&self) -> usize {
        self.strides.len()
    }

    /// The configured strides.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Anchors per feature-map cell (`A = len(ratios)·len(scales)`, the same on every level).
    pub fn num_anchors_per_location(&self) -> usize {
        self.ratios.len() * self.scales.len()
    }

    /// The `A` base anchors `[x1, y1, x2, y2]` of `level`, centred on (0, 0), ratio-major.
    pub fn base_anchors(&self, level: usize) -> Result<Vec<[f32; 4]>> {
        let stride = *self.strides.get(level).ok_or_else(|| {
            shape(
                "AnchorGenerator::base_anchors",
                "level",
                format!("below {}", self.strides.len()),
                level,
            )
        })?;
        let mut anchors = Vec::with_capacity(self.num_anchors_per_location());
        for &ratio in &self.ratios {
            let h_ratio = (ratio as f32).sqrt();
            let w_ratio = 1.0 / h_ratio;
            for &scale in &self.scales {
                let anchor = match self.flavor {
                    Flavor::Torchvision => {
                        let size = (stride as f64 * scale) as f32;
                        let (ws, hs) = (w_ratio * size, h_ratio * size);
                        [-ws, -hs, ws, hs].map(|v| (v / 2.0).round_ties_even())
                    }
                    Flavor::Mmdet => {
                        let base = stride as f32;
                        let ws = base * w_ratio * scale as f32;
                        let hs = base * h_ratio * scale as f32;
                        [-(0.5 * ws), -(0.5 * hs), 0.5 * ws, 0.5 * hs]
                    }
                };
                anchors.push(anchor);
            }
        }
        Ok(anchors)
    }

    /// The stride `(along y, along x)` of `level` for a feature map of `grid` cells over a
    /// padded batch of `image_size`: the configured stride (mmdet), or
    /// `image_size // grid` per axis (torchvision).
    pub fn level_stride(
        &self,
        level: usize,
        grid: (usize, usize),
        image_size: (usize, usize),
    ) -> Result<(usize, usize)> {
        let stride = *self.strides.get(level).ok_or_else(|| {
            shape(
                "AnchorGenerator::level_stride",
                "level",
                format!("below {}", self.strides.len()),
                level,
            )
        })?;
        match self.flavor {
            Flavor::Mmdet => Ok((stride, stride)),
            Flavor::Torchvision => {
                if grid.0 == 0 || grid.1 == 0 {
                    return Err(shape(
                        "AnchorGenerator::level_stride",
                        "grid",
                        "non-empty (H, W)",
                        grid,
                    ));
                }
                Ok((image_size.0 / grid.0, image_size.1 / grid.1))
            }
        }
    }

    /// The anchors of one level, `[H·W·A, 4]` f32 on the host: cell (y, x) row-major, then
    /// the `A` base anchors shifted by `(x·stride_x, y·stride_y)`.
    pub fn level_anchors(
        &self,
        level: usize,
        grid: (usize, usize),
        image_size: (usize, usize),
    ) -> Result<Vec<[f32; 4]>> {
        let base = self.base_anchors(level)?;
        let (stride_y, stride_x) = self.level_stride(level, grid, image_size)?;
        let mut anchors = Vec::with_capacity(grid.0 * grid.1 * base.len());
        for y in 0..grid.0 {
            let sy = (y * stride_y) as f32;
            for x in 0..grid.1 {
                let sx = (x * stride_x) as f32;
                for b in &base {
                    anchors.push([b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy]);
                }
            }
        }
        Ok(anchors)
    }

    /// Anchors of every level as `[H_l·W_l·A, 4]` f32 tensors on `device`, given each level's
    /// feature-map size `(H_l, W_l)` and the padded batch size `(H, W)` (used by the
    /// torchvision flavor's strides). `grids` must have one entry per level.
    pub fn anchors(
        &self,
        grids: &[(usize, usize)],
        image_size: (usize, usize),
        device: &Device,
    ) -> Result<Vec<Tensor>> {
        if grids.len() != self.strides.len() {
            return Err(shape(
                "AnchorGenerator::anchors",
                "grids",
                format!("one (H, W) per level ({} levels)", self.strides.len()),
                grids.len(),
            ));
        }
        grids
            .iter()
            .enumerate()
            .map(|(level, &grid)| {
                let anchors = self.level_anchors(level, grid, image_size)?;
                let n = anchors.len();
                let flat: Vec<f32> = anchors.into_iter().flatten().collect();
                Ok(Tensor::from_vec(flat, (n, 4), device)?)
            })
            .collect()
    }
}
