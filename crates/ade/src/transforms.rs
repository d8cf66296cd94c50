//! mmseg 1.x's ADE20K pipelines (`configs/_base_/datasets/ade20k.py`) on decoded 8-bit RGB
//! images and reduced label maps.
//!
//! Train: `RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)` (cv2
//! bilinear for the image, nearest for the labels), `RandomCrop(crop_size=(512, 512),
//! cat_max_ratio=0.75)`, `RandomFlip(prob=0.5)`, `PhotoMetricDistortion`, then
//! `SegDataPreProcessor`'s normalisation (RGB mean 123.675, 116.28, 103.53; std 58.395, 57.12,
//! 57.375) and padding on the right and bottom to 512 × 512 with 0 (image, after
//! normalisation) and 255 (labels).
//!
//! Test: `Resize(scale=(2048, 512), keep_ratio=True)` of the image (cv2 bilinear) and
//! normalisation; the label map keeps its original size (mmseg evaluates against it).
//!
//! Randomness: every draw of one sample comes from one [`SplitMix64`] seeded with the sample's
//! seed (rtb-train's per-sample seed), in mmseg's order: the resize ratio, the crop offsets
//! (all eleven candidates are drawn up front), the flip, the photometric parameters. The
//! drawn values are a plain struct, [`TrainDraws`], so each step can be replayed against the
//! reference with the same parameters. (numpy's stream is not reproduced: mmseg draws from
//! the global `np.random` state of each worker, which no per-sample seed can match.)

use image::RgbImage;
use rtb_ade_eval::LabelMap;
use rtb_train::seed::SplitMix64;

use crate::AdeTaskError;
use crate::photometric::{PhotometricConfig, PhotometricDraws, photometric_distortion};
use rtb_image::{rescale_size, resize_linear, resize_nearest};

/// mmseg's ADE20K normalisation mean, RGB order (`SegDataPreProcessor`).
pub const ADE_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// mmseg's ADE20K normalisation standard deviation, RGB order.
pub const ADE_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// The label value no loss or metric counts.
pub const IGNORE_INDEX: u8 = 255;

/// The train pipeline's settings; [`TrainConfig::default`] is mmseg's ADE20K 512 × 512 config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The base scale `(long, short)` that RandomResize multiplies by its ratio. (2048, 512).
    pub scale: (u32, u32),
    /// The ratio range, drawn uniformly. (0.5, 2.0).
    pub ratio_range: (f64, f64),
    /// The crop `(height, width)`, also the padded size. (512, 512).
    pub crop_size: (u32, u32),
    /// The largest share one class may take of a crop's non-ignored pixels (1.0: no check).
    /// 0.75.
    pub cat_max_ratio: f64,
    /// Probability of a horizontal flip. 0.5.
    pub flip_prob: f64,
    /// The photometric distortion; `None` leaves colours alone.
    pub photometric: Option<PhotometricConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            scale: (2048, 512),
            ratio_range: (0.5, 2.0),
            crop_size: (512, 512),
            cat_max_ratio: 0.75,
            flip_prob: 0.5,
            photometric: Some(PhotometricConfig::default()),
        }
    }
}

/// Everything one training sample draws. [`TrainConfig::draw`] makes it from a seed; tests
/// build it by hand to replay the reference's draws.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainDraws {
    /// The RandomResize ratio (in `ratio_range`).
    pub ratio: f64,
    /// Crop offsets `(y, x)` in the resized image, in the order drawn. mmseg checks the first
    /// candidates against `cat_max_ratio` (up to ten) and takes the first that passes, else
    /// the last one unchecked.
    pub crop_candidates: Vec<(u32, u32)>,
    /// Whether the crop is flipped horizontally.
    pub flip: bool,
    /// The photometric distortion's draws (ignored when the config has none).
    pub photometric: PhotometricDraws,
}

/// An augmented training crop before normalisation.
#[derive(Debug, Clone)]
pub struct TrainCrop {
    /// The crop, 8-bit RGB, at most `crop_size`.
    pub image: RgbImage,
    /// Its labels (reduced), same size.
    pub label: LabelMap,
    /// The size the image was resized to before cropping, `(width, height)`.
    pub resized: (u32, u32),
    /// The crop offset `(y, x)` that was used.
    pub offset: (u32, u32),
}

impl TrainConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), AdeTaskError> {
        let (lo, hi) = self.ratio_range;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(AdeTaskError::config(
                "train.ratio_range",
                format!("({lo}, {hi}) must satisfy 0 < min ≤ max"),
            ));
        }
        if self.scale.0 == 0 || self.scale.1 == 0 {
            return Err(AdeTaskError::config(
                "train.scale",
                "sides must be positive",
            ));
        }
        if self.crop_size.0 == 0 || self.crop_size.1 == 0 {
            return Err(AdeTaskError::config(
                "train.crop_size",
                "sides must be positive",
            ));
        }
        if !(0.0..=1.0).contains(&self.flip_prob) {
            return Err(AdeTaskError::config(
                "train.flip_prob",
                format!("{} is not a probability", self.flip_prob),
            ));
        }
        Ok(())
    }

    /// The size `(width, height)` an image of `width × height` is resized to for `ratio`
    /// (mmcv's `RandomResize._random_sample_ratio`, then `rescale_size`).
    pub fn resized_size(
        &self,
        width: u32,
        height: u32,
        ratio: f64,
    ) -> Result<(u32, u32), AdeTaskError> {
        // Python's int() of a positive float truncates.
        let scale = (
            (f64::from(self.scale.0) * ratio) as u32,
            (f64::from(self.scale.1) * ratio) as u32,
        );
        Ok(rescale_size(width, height, scale)?.0)
    }

    /// Draws one sample's parameters for an image of `width × height` from `rng`.
    pub fn draw(
        &self,
        rng: &mut SplitMix64,
        width: u32,
        height: u32,
    ) -> Result<TrainDraws, AdeTaskError> {
        let (lo, hi) = self.ratio_range;
        let ratio = rng.uniform() * (hi - lo) + lo;
        let (rw, rh) = self.resized_size(width, height, ratio)?;
        let margin_y = rh.saturating_sub(self.crop_size.0);
        let margin_x = rw.saturating_sub(self.crop_size.1);
        let tries = if self.cat_max_ratio < 1.0 { 11 } else { 1 };
        let crop_candidates = (0..tries)
            .map(|_| {
                let y = rng.below(u64::from(margin_y) + 1) as u32;
                let x = rng.below(u64::from(margin_x) + 1) as u32;
                (y, x)
            })
            .collect();
        let flip = rng.uniform() < self.flip_prob;
        let photometric = match &self.photometric {
            Some(cfg) => cfg.draw(rng),
            None => PhotometricDraws::default(),
        };
        Ok(TrainDraws {
            ratio,
            crop_candidates,
            flip,
            photometric,
        })
    }

    /// Resize, crop, flip and distort one image and its (reduced) labels with `draws`.
    pub fn augment(
        &self,
        image: &RgbImage,
        label: &LabelMap,
        draws: &TrainDraws,
    ) -> Result<TrainCrop, AdeTaskError> {
        if image.dimensions() != label.size() {
            return Err(AdeTaskError::config(
                "augment",
                format!(
                    "image {}×{} and label map {}×{} differ in size",
                    image.width(),
                    image.height(),
                    label.width(),
                    label.height()
                ),
            ));
        }
        let (rw, rh) = self.resized_size(image.width(), image.height(), draws.ratio)?;
        let resized = resize_image(image, rw, rh)?;
        let resized_label = resize_label(label, rw, rh)?;
        let offset = self.choose_crop(&resized_label, &draws.crop_candidates)?;
        let (ch, cw) = self.crop_size;
        let mut crop = crop_image(&resized, offset, (ch, cw));
        let mut crop_label = crop_labels(&resized_label, offset, (ch, cw))?;
        if draws.flip {
            image::imageops::flip_horizontal_in_place(&mut crop);
            flip_labels(&mut crop_label);
        }
        if self.photometric.is_some() {
            let width = crop.width() as usize;
            photometric_distortion(&mut crop, width, &draws.photometric);
        }
        Ok(TrainCrop {
            image: crop,
            label: crop_label,
            resized: (rw, rh),
            offset,
        })
    }

    /// mmseg's `RandomCrop.crop_bbox`: the first candidate (of up to ten) whose crop has more
    /// than one class and no class above `cat_max_ratio` of the non-ignored pixels, else the
    /// next candidate unchecked.
    pub fn choose_crop(
        &self,
        label: &LabelMap,
        candidates: &[(u32, u32)],
    ) -> Result<(u32, u32), AdeTaskError> {
        let Some(&first) = candidates.first() else {
            return Err(AdeTaskError::config(
                "crop_candidates",
                "no crop offset drawn",
            ));
        };
        let (ch, cw) = self.crop_size;
        for &(y, x) in candidates {
            let max_y = label.height().saturating_sub(ch);
            let max_x = label.width().saturating_sub(cw);
            if y > max_y || x > max_x {
                return Err(AdeTaskError::config(
                    "crop_candidates",
                    format!(
                        "offset (y {y}, x {x}) lies outside the margins (y ≤ {max_y}, x ≤ {max_x})"
                    ),
                ));
            }
        }
        if self.cat_max_ratio >= 1.0 {
            return Ok(first);
        }
        let checked = candidates.len().min(10);
        for (i, &offset) in candidates.iter().enumerate() {
            if i >= checked || i + 1 == candidates.len() {
                return Ok(offset);
            }
            if crop_is_mixed(label, offset, (ch, cw), self.cat_max_ratio) {
                return Ok(offset);
            }
        }
        Ok(first)
    }
}

/// Whether the crop at `offset` has more than one non-ignored class and none above
/// `cat_max_ratio` of them (`np.max(cnt) / np.sum(cnt) < cat_max_ratio`).
fn crop_is_mixed(
    label: &LabelMap,
    offset: (u32, u32),
    size: (u32, u32),
    cat_max_ratio: f64,
) -> bool {
    let mut counts = [0u64; 256];
    let (y0, x0) = (offset.0 as usize, offset.1 as usize);
    let width = label.width() as usize;
    let y1 = (y0 + size.0 as usize).min(label.height() as usize);
    let x1 = (x0 + size.1 as usize).min(width);
    for y in y0..y1 {
        for &v in &label.data()[y * width + x0..y * width + x1] {
            counts[usize::from(v)] += 1;
        }
    }
    counts[usize::from(IGNORE_INDEX)] = 0;
    let present = counts.iter().filter(|&&c| c > 0).count();
    let total: u64 = counts.iter().sum();
    let max = counts.iter().copied().max().unwrap_or(0);
    present > 1 && (max as f64) / (total as f64) < cat_max_ratio
}

/// `mmcv.imresize(image, (width, height))` with cv2's bilinear interpolation.
pub fn resize_image(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, AdeTaskError> {
    let data = resize_linear(
        image.as_raw(),
        image.width() as usize,
        image.height() as usize,
        3,
        width as usize,
        height as usize,
    )?;
    RgbImage::from_raw(width, height, data)
        .ok_or_else(|| AdeTaskError::config("resize", "output buffer size"))
}

/// `mmcv.imresize(labels, (width, height), interpolation='nearest')`.
pub fn resize_label(label: &LabelMap, width: u32, height: u32) -> Result<LabelMap, AdeTaskError> {
    let data = resize_nearest(
        label.data(),
        label.width() as usize,
        label.height() as usize,
        1,
        width as usize,
        height as usize,
    )?;
    Ok(LabelMap::new(width, height, data)?)
}

/// `image[y : y + h, x : x + w]` with numpy's clipping at the far edges.
fn crop_image(image: &RgbImage, offset: (u32, u32), size: (u32, u32)) -> RgbImage {
    let (y, x) = offset;
    let h = size.0.min(image.height() - y);
    let w = size.1.min(image.width() - x);
    image::imageops::crop_imm(image, x, y, w, h).to_image()
}

fn crop_labels(
    label: &LabelMap,
    offset: (u32, u32),
    size: (u32, u32),
) -> Result<LabelMap, AdeTaskError> {
    let (y, x) = (offset.0 as usize, offset.1 as usize);
    let width = label.width() as usize;
    let h = (size.0 as usize).min(label.height() as usize - y);
    let w = (size.1 as usize).min(width - x);
    let mut data = Vec::with_capacity(h * w);
    for row in y..y + h {
        data.extend_from_slice(&label.data()[row * width + x..row * width + x + w]);
    }
    Ok(LabelMap::new(w as u32, h as u32, data)?)
}

fn flip_labels(label: &mut LabelMap) {
    let width = label.width() as usize;
    for row in label.data_mut().chunks_exact_mut(width) {
        row.reverse();
    }
}

/// Normalises an 8-bit RGB image into CHW float32: `(x − mean) / std` per channel, as
/// mmseg's `SegDataPreProcessor` computes it after its BGR → RGB swap.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    let size = (image.height() as usize, image.width() as usize);
    normalize_padded(image, size)
}

/// [`normalize`] into a `(height, width)` canvas at least the image's size, the rest 0
/// (normalisation, then mmseg's `stack_batch` padding on the right and bottom).
pub fn normalize_padded(image: &RgbImage, to: (usize, usize)) -> Vec<f32> {
    // Each 8-bit value has one normalised value per channel: a table computes the same f32.
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = (v as f32 - ADE_MEAN[c]) / ADE_STD[c];
        }
    }
    let (h, w) = (image.height() as usize, image.width() as usize);
    let (th, tw) = (to.0.max(h), to.1.max(w));
    let plane = th * tw;
    let mut out = vec![0f32; 3 * plane];
    for (y, row) in image.as_raw().chunks_exact(3 * w).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * tw + x;
            out[at] = table[0][usize::from(px[0])];
            out[plane + at] = table[1][usize::from(px[1])];
            out[2 * plane + at] = table[2][usize::from(px[2])];
        }
    }
    out
}

/// Pads a CHW float image of `(height, width)` on the right and bottom to `(to_h, to_w)` with
/// `value` (mmseg's `stack_batch`).
pub fn pad_chw(
    values: &[f32],
    channels: usize,
    size: (usize, usize),
    to: (usize, usize),
    value: f32,
) -> Vec<f32> {
    let (h, w) = size;
    let (th, tw) = to;
    let mut out = vec![value; channels * th * tw];
    for c in 0..channels {
        for y in 0..h.min(th) {
            let src = &values[c * h * w + y * w..c * h * w + y * w + w.min(tw)];
            out[c * th * tw + y * tw..c * th * tw + y * tw + src.len()].copy_from_slice(src);
        }
    }
    out
}

/// Pads a label map on the right and bottom to `(to_h, to_w)` with 255.
pub fn pad_labels(label: &LabelMap, to: (usize, usize)) -> Vec<u8> {
    let (h, w) = (label.height() as usize, label.width() as usize);
    let (th, tw) = to;
    let mut out = vec![IGNORE_INDEX; th * tw];
    for y in 0..h.min(th) {
        let n = w.min(tw);
        out[y * tw..y * tw + n].copy_from_slice(&label.data()[y * w..y * w + n]);
    }
    out
}

/// The test pipeline's settings; [`TestConfig::default`] is mmseg's ADE20K `Resize(scale=(2048,
/// 512), keep_ratio=True)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestConfig {
    /// The `(long, short)` scale the image is fitted into.
    pub scale: (u32, u32),
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig { scale: (2048, 512) }
    }
}

impl TestConfig {
    /// The keep-ratio resize of the test pipeline (cv2 bilinear).
    pub fn resize(&self, image: &RgbImage) -> Result<RgbImage, AdeTaskError> {
        let ((w, h), _) = rescale_size(image.width(), image.height(), self.scale)?;
        resize_image(image, w, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> LabelMap {
        let data = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        LabelMap::new(width, height, data).unwrap()
    }

    #[test]
    fn crop_takes_the_first_mixed_candidate_else_the_last() {
        let cfg = TrainConfig {
            crop_size: (2, 2),
            ..TrainConfig::default()
        };
        // Left half class 0, right half class 1; column 2 is ignored.
        let map = label(6, 2, |x, _| {
            if x < 2 {
                0
            } else if x == 2 {
                255
            } else {
                1
            }
        });
        // Every 2×2 crop holds one class besides the ignored column: all are rejected, so
        // the last candidate is taken unchecked.
        let pure = [(0, 0), (0, 3), (0, 4)];
        assert_eq!(cfg.choose_crop(&map, &pure).unwrap(), (0, 4));
        let map = label(4, 2, |x, _| if x < 2 { 0 } else { 1 });
        assert_eq!(
            cfg.choose_crop(&map, &[(0, 0), (0, 1), (0, 2)]).unwrap(),
            (0, 1)
        );
        // Eleven candidates: only the first ten are checked; the eleventh is taken unchecked.
        let mut many = vec![(0, 0); 10];
        many.push((0, 2));
        assert_eq!(cfg.choose_crop(&map, &many).unwrap(), (0, 2));
        assert!(cfg.choose_crop(&map, &[(0, 3)]).is_err());
        assert!(cfg.choose_crop(&map, &[]).is_err());
    }

    #[test]
    fn same_seed_same_draws() {
        let cfg = TrainConfig::default();
        let a = cfg.draw(&mut SplitMix64::new(9), 683, 512).unwrap();
        let b = cfg.draw(&mut SplitMix64::new(9), 683, 512).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.crop_candidates.len(), 11);
        assert!((0.5..2.0).contains(&a.ratio));
    }

    #[test]
    fn padding_keeps_the_image_top_left() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            pad_chw(&values, 1, (2, 2), (3, 3), 0.0),
            [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
        );
        let map = label(1, 2, |_, y| y as u8);
        assert_eq!(pad_labels(&map, (2, 2)), [0, 255, 1, 255]);
    }
}
