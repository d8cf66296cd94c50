//! Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
//! Shifted Windows", ICCV 2021), equal to timm ≥ 0.9's `swin_tiny_patch4_window7_224`.
//!
//! Keys are timm ≥ 0.9's: `patch_embed.{proj,norm}`, `layers.{i}.downsample.{norm,reduction}`
//! (patch merging at the *start* of stages 1..3), `layers.{i}.blocks.{j}.{norm1, attn.qkv,
//! attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head.fc`;
//! the dense-task output norms are `norm0`..`norm3` (mmdetection's names). Other layouts are
//! converted by [`crate::weights`].
//!
//! Activations flow as `[B, H, W, C]` like timm. Two window rules:
//! - [`WindowRule::Timm`] (classification, `rtb forward`): per axis, a feature map that fits
//!   in one window shrinks the window to the map and drops the shift; the map is rolled, then
//!   padded to a multiple of the window, and the shift mask is built on the padded grid.
//! - [`WindowRule::Padded`] (mmdetection / mmsegmentation Swin, dense tasks): the window and
//!   the shift never change; the map is padded first, then rolled, the mask built on the
//!   padded grid. Padded positions are attended to, as in mmdetection. This equals
//!   transformers' Swin wherever no stage fits in one window.
//!
//! A window smaller than the configured one (Timm rule on small maps) reads its relative
//! position biases from the configured table at the same offsets; timm would instead build
//! (and resample) a smaller table. At 224² with window 7 no window shrinks.

use std::cell::OnceCell;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_nn::conv::Conv2dConfig;
use rtb_nn::ops::activation::gelu;
use rtb_nn::ops::attention::window_attention;
use rtb_nn::ops::drop_path::DropPath;
use rtb_nn::ops::gather::{RowMap, gather_rows};

use crate::backbone::{
    Backbone, BackboneOutput, Features, Freeze, FreezeGroup, Mode, ParamKind, Parameter, PartCtx,
};
use crate::error::{ModelError, Result, config_error};
use crate::layers::{Conv, Linear, LinearInit, Ln};

const LN_EPS: f64 = 1e-5;

/// How shifted windows treat feature maps that are not multiples of the window or that fit
/// in one window (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowRule {
    /// timm / the original classification Swin: shrink the window and drop the shift where a
    /// map fits in one window; roll, then pad.
    Timm,
    /// mmdetection / mmsegmentation Swin: fixed window and shift; pad, then roll.
    Padded,
}

/// The shape of a Swin Transformer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Side of the square patches of the patch embedding.
    pub patch_size: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Channels of stage 1 (doubled by each patch merging).
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Attention heads per stage.
    pub num_heads: [usize; 4],
    /// Side of the attention windows.
    pub window_size: usize,
    /// Hidden width of the MLPs over the stage width.
    pub mlp_ratio: f64,
    /// Whether the qkv projection has a bias.
    pub qkv_bias: bool,
    /// Stochastic depth, rising linearly from 0 to this over all blocks.
    pub drop_path_rate: f64,
    /// Window rule (see [`WindowRule`]).
    pub window_rule: WindowRule,
    /// The final LayerNorm (`norm`) of the classification model, before pooling.
    pub final_norm: bool,
    /// LayerNorms `norm0`..`norm3` on C2..C5 (mmdetection's dense-task outputs).
    pub out_norms: bool,
    /// Classes of the `head.fc` classifier (needs `final_norm`); `None`: no classifier.
    pub num_classes: Option<usize>,
    /// The patch embedding. `None`: timm's, one `patch_size`² convolution of stride
    /// `patch_size`. `Some(channels)`: an overlapping convolutional stem (Xiao et al., "Early
    /// Convolutions Help Transformers See Better", 2021) of log2(`patch_size`) 3×3 stride-2
    /// convolutions with GELU between them, `channels` wide but the last (`patch_embed.proj`,
    /// to `embed_dim`); the earlier ones are `patch_embed.stem.{i}`. Same strides; it lets a
    /// small Swin learn from tiny images in far fewer steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_channels: Option<usize>,
}

impl SwinConfig {
    /// Swin-T for classification, as timm's `swin_tiny_patch4_window7_224`.
    pub fn swin_t() -> Self {
        Self {
            patch_size: 4,
            in_channels: 3,
            embed_dim: 96,
            depths: [2, 2, 6, 2],
            num_heads: [3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            window_rule: WindowRule::Timm,
            final_norm: true,
            out_norms: false,
            num_classes: Some(1000),
            stem_channels: None,
        }
    }

    /// Swin-T as mmdetection's Mask R-CNN backbone: padded windows, output norms, no final
    /// norm or classifier, drop path 0.2.
    pub fn swin_t_dense() -> Self {
        Self::swin_t().into_dense(0.2)
    }

    /// A tiny Swin for tests: width 8, window 3, two blocks per stage (so every stage has a
    /// shifted block), 5 classes.
    pub fn tiny() -> Self {
        Self {
            patch_size: 4,
            in_channels: 3,
            embed_dim: 8,
            depths: [2, 2, 2, 2],
            num_heads: [1, 2, 2, 4],
            window_size: 3,
            mlp_ratio: 2.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            window_rule: WindowRule::Timm,
            final_norm: true,
            out_norms: false,
            num_classes: Some(5),
            stem_channels: None,
        }
    }

    /// A small Swin the mini preset can pretrain on a CPU (width 32, window 4, 10 classes)
    /// behind a convolutional stem (3→16→32 channels, two 3×3 stride-2 convolutions): on 32-px
    /// images it learns in 12 epochs what timm's patch embedding did not in 24.
    pub fn mini() -> Self {
        Self {
            patch_size: 4,
            in_channels: 3,
            embed_dim: 32,
            depths: [1, 1, 2, 1],
            num_heads: [1, 2, 4, 8],
            window_size: 4,
            mlp_ratio: 2.0,
            qkv_bias: true,
            drop_path_rate: 0.1,
            window_rule: WindowRule::Timm,
            final_norm: true,
            out_norms: false,
            num_classes: Some(10),
            stem_channels: Some(16),
        }
    }

    /// The same backbone set up for dense tasks: padded windows, output norms, no final norm
    /// or classifier, the given drop-path rate.
    pub fn into_dense(mut self, drop_path_rate: f64) -> Self {
        self.window_rule = WindowRule::Padded;
        self.final_norm = false;
        self.out_norms = true;
        self.num_classes = None;
        self.drop_path_rate = drop_path_rate;
        self
    }

    /// Channels of stage `i`.
    pub fn stage_dim(&self, stage: usize) -> usize {
        self.embed_dim << stage
    }

    /// Channels of C2..C5.
    pub fn out_channels(&self) -> [usize; 4] {
        [0, 1, 2, 3].map(|i| self.stage_dim(i))
    }

    fn validate(&self) -> Result<()> {
        const MODEL: &str = "Swin";
        if self.patch_size == 0 || self.embed_dim == 0 || self.window_size == 0 {
            return Err(config_error(
                MODEL,
                "patch_size/embed_dim/window_size",
                "must be positive",
            ));
        }
        if self.depths.contains(&0) {
            return Err(config_error(
                MODEL,
                "depths",
                format!("every stage needs a block, got {:?}", self.depths),
            ));
        }
        for (stage, &heads) in self.num_heads.iter().enumerate() {
            if heads == 0 || !self.stage_dim(stage).is_multiple_of(heads) {
                return Err(config_error(
                    MODEL,
                    "num_heads",
                    format!(
                        "stage {stage} width {} is not divisible by {heads} heads",
                        self.stage_dim(stage)
                    ),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(config_error(
                MODEL,
                "drop_path_rate",
                format!("must be in [0, 1), got {}", self.drop_path_rate),
            ));
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return Err(config_error(MODEL, "mlp_ratio", "must be positive"));
        }
        if self.num_classes.is_some() && !self.final_norm {
            return Err(config_error(
                MODEL,
                "num_classes",
                "a classifier needs final_norm",
            ));
        }
        if let Some(channels) = self.stem_channels {
            if channels == 0 {
                return Err(config_error(MODEL, "stem_channels", "must be positive"));
            }
            if self.patch_size < 2 || !self.patch_size.is_power_of_two() {
                return Err(config_error(
                    MODEL,
                    "stem_channels",
                    format!(
                        "a convolutional stem halves the image per convolution: patch_size must \
                         be a power of two ≥ 2, got {}",
                        self.patch_size
                    ),
                ));
            }
        }
        if self.num_classes == Some(0) {
            return Err(config_error(
                MODEL,
                "num_classes",
                "a classifier needs at least one class",
            ));
        }
        Ok(())
    }
}

/// Window and shift of one stage's blocks at one feature-map size, per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowGeometry {
    window: (usize, usize),
    /// Shift of the shifted (odd) blocks; (0, 0) means no shift.
    shift: (usize, usize),
}

impl WindowGeometry {
    fn new(rule: WindowRule, window: usize, (h, w): (usize, usize)) -> Self {
        let shift = window / 2;
        match rule {
            WindowRule::Padded => Self {
                window: (window, window),
                shift: (shift, shift),
            },
            WindowRule::Timm => {
                let axis = |r: usize| if r <= window { (r, 0) } else { (window, shift) };
                let (wh, sh) = axis(h);
                let (ww, sw) = axis(w);
                Self {
                    window: (wh, ww),
                    shift: (sh, sw),
                }
            }
        }
    }

    fn padded(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (
            h.div_ceil(self.window.0) * self.window.0,
            w.div_ceil(self.window.1) * self.window.1,
        )
    }
}

/// The shifted-window attention mask `[nW, N, N]` (0 or −100) on a padded `hp × wp` grid,
/// as timm and mmdetection build it.
fn attention_mask(
    geometry: &WindowGeometry,
    (hp, wp): (usize, usize),
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let (wh, ww) = geometry.window;
    let (sh, sw) = geometry.shift;
    // Region label of each row / column: [0, hp−wh), [hp−wh, hp−sh), [hp−sh, hp).
    let region = |i: usize, len: usize, win: usize, shift: usize| -> usize {
        if i < len - win {
            0
        } else if i < len - shift {
            1
        } else {
            2
        }
    };
    let labels: Vec<usize> = (0..hp)
        .flat_map(|y| (0..wp).map(move |x| (y, x)))
        .map(|(y, x)| region(y, hp, wh, sh) * 3 + region(x, wp, ww, sw))
        .collect();
    let (nh, nw) = (hp / wh, wp / ww);
    let n = wh * ww;
    let mut mask = Vec::with_capacity(nh * nw * n * n);
    for by in 0..nh {
        for bx in 0..nw {
            let window: Vec<usize> = (0..n)
                .map(|i| labels[(by * wh + i / ww) * wp + bx * ww + i % ww])
                .collect();
            for &a in &window {
                for &b in &window {
                    mask.push(if a == b { 0f32 } else { -100.0 });
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (nh * nw, n, n), device)?.to_dtype(dtype)?)
}

/// Indices into a `(2·th−1)(2·tw−1)` relative-position table for a `wh × ww` window
/// (`wh ≤ th`, `ww ≤ tw`), row-major over (query, key).
fn relative_position_index((wh, ww): (usize, usize), (th, tw): (usize, usize)) -> Vec<u32> {
    let n = wh * ww;
    let mut index = Vec::with_capacity(n * n);
    for q in 0..n {
        let (qy, qx) = (q / ww, q % ww);
        for k in 0..n {
            let (ky, kx) = (k / ww, k % ww);
            let dy = qy + th - 1 - ky;
            let dx = qx + tw - 1 - kx;
            index.push((dy * (2 * tw - 1) + dx) as u32);
        }
    }
    index
}

/// `[B, Hp, Wp, C]` → `[B·nW, wh·ww, C]`.
fn window_partition(xs: &Tensor, (wh, ww): (usize, usize)) -> Result<Tensor> {
    let (b, h, w, c) = xs.dims4()?;
    Ok(xs
        .reshape(vec![b, h / wh, wh, w / ww, ww, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b * (h / wh) * (w / ww), wh * ww, c))?)
}

/// Rolls `[B, H, W, C]` by `(dy, dx)` along H and W (torch.roll's direction).
fn roll2(xs: &Tensor, (dy, dx): (i32, i32)) -> Result<Tensor> {
    Ok(xs.roll(dy, 1)?.roll(dx, 2)?)
}

/// Zero-pads `[B, H, W, C]` at the bottom and right to `(hp, wp)`.
fn pad_to(xs: &Tensor, (hp, wp): (usize, usize)) -> Result<Tensor> {
    let (_, h, w, _) = xs.dims4()?;
    let xs = if hp > h {
        xs.pad_with_zeros(1, 0, hp - h)?
    } else {
        xs.clone()
    };
    Ok(if wp > w {
        xs.pad_with_zeros(2, 0, wp - w)?
    } else {
        xs
    })
}

/// Window multi-head self-attention with a relative position bias (`attn.*`).
#[derive(Debug, Clone)]
struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    table_prefix: String,
    relative_position_bias_table: Tensor,
    num_heads: usize,
    window_size: usize,
}

impl WindowAttention {
    fn new(
        dim: usize,
        num_heads: usize,
        window_size: usize,
        qkv_bias: bool,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let table_len = (2 * window_size - 1) * (2 * window_size - 1);
        let relative_position_bias_table = vb.get_with_hints(
            (table_len, num_heads),
            "relative_position_bias_table",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        Ok(Self {
            qkv: Linear::new(
                dim,
                3 * dim,
                qkv_bias,
                LinearInit::Transformer,
                &vb.pp("qkv"),
            )?,
            proj: Linear::new(dim, dim, true, LinearInit::Transformer, &vb.pp("proj"))?,
            table_prefix: vb.prefix(),
            relative_position_bias_table,
            num_heads,
            window_size,
        })
    }

    /// The bias `[heads, N, N]` of a `window` (≤ the configured window).
    fn bias(&self, window: (usize, usize)) -> Result<Tensor> {
        let index = relative_position_index(window, (self.window_size, self.window_size));
        let n = window.0 * window.1;
        let index = Tensor::from_vec(index, n * n, self.relative_position_bias_table.device())?;
        Ok(self
            .relative_position_bias_table
            .index_select(&index, 0)?
            .reshape((n, n, self.num_heads))?
            .permute((2, 0, 1))?
            .contiguous()?)
    }

    /// `windows` `[B·nW, N, C]`, `mask` `[nW, N, N]`.
    fn forward(
        &self,
        windows: &Tensor,
        window: (usize, usize),
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = windows.dim(2)?;
        let scale = ((c / self.num_heads) as f64).powf(-0.5);
        let ys = window_attention(
            &self.qkv.forward(windows)?,
            &self.bias(window)?,
            mask,
            self.num_heads,
            scale,
        )?;
        self.proj.forward(&ys)
    }

    fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        self.qkv.params(group, out);
        out.push(Parameter {
            name: format!("{}.relative_position_bias_table", self.table_prefix),
            tensor: self.relative_position_bias_table.clone(),
            kind: ParamKind::PositionTable,
            group,
        });
        self.proj.params(group, out);
    }
}

/// One Swin block: (shifted) window attention and an MLP, each pre-norm and residual.
#[derive(Debug, Clone)]
struct SwinBlock {
    norm1: Ln,
    attn: WindowAttention,
    norm2: Ln,
    fc1: Linear,
    fc2: Linear,
    drop_path: DropPath,
    shifted: bool,
    /// Index of the block over the whole network (seeds its DropPath draws).
    unit: u64,
}

/// What a stage's blocks share at one input size.
struct StageGeometry {
    rule: WindowRule,
    size: (usize, usize),
    regular: WindowGeometry,
    shifted_mask: Option<Tensor>,
    /// Window maps of the regular and the shifted blocks (see [`StageGeometry::maps`]).
    maps: [OnceCell<WindowMaps>; 2],
}

/// A block's window partition as one row gather each way: `[B, H·W, C]` tokens to
/// `[B, nW·N, C]` window slots (padding slots zero) and back (padding dropped).
struct WindowMaps {
    partition: RowMap,
    reverse: RowMap,
}

impl StageGeometry {
    fn new(
        rule: WindowRule,
        size: (usize, usize),
        regular: WindowGeometry,
        shifted_mask: Option<Tensor>,
    ) -> Self {
        Self {
            rule,
            size,
            regular,
            shifted_mask,
            maps: Default::default(),
        }
    }

    /// The window partition of the regular (`false`) or shifted (`true`) blocks, built once
    /// per stage and forward pass.
    fn maps(&self, shifted: bool) -> Result<&WindowMaps> {
        let cell = &self.maps[usize::from(shifted)];
        if let Some(maps) = cell.get() {
            return Ok(maps);
        }
        let maps = self.build_maps(shifted)?;
        Ok(cell.get_or_init(|| maps))
    }

    /// Runs the partition (roll, pad and window split in the rule's order) on a grid of token
    /// numbers and reads the map off the result: the rearrangement is the composition's by
    /// construction.
    fn build_maps(&self, shifted: bool) -> Result<WindowMaps> {
        let g = &self.regular;
        let (h, w) = self.size;
        let padded = g.padded(self.size);
        let shift = if shifted { g.shift } else { (0, 0) };
        let back = (-(shift.0 as i32), -(shift.1 as i32));
        // Token t is numbered t + 1 so that padding (0) stays distinguishable; f64 is exact.
        let numbers: Vec<f64> = (1..=h * w).map(|t| t as f64).collect();
        let grid = Tensor::from_vec(numbers, (1, h, w, 1), &Device::Cpu)?;
        let grid = match self.rule {
            WindowRule::Timm => pad_to(&roll2(&grid, back)?, padded)?,
            WindowRule::Padded => roll2(&pad_to(&grid, padded)?, back)?,
        };
        let slots: Vec<Option<usize>> = window_partition(&grid, g.window)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|number| (number > 0.0).then(|| number as usize - 1))
            .collect();
        let partition = RowMap::new(&slots, h * w)?;
        Ok(WindowMaps {
            reverse: partition.inverse(),
            partition,
        })
    }
}

impl SwinBlock {
    fn window_attention(&self, xs: &Tensor, geo: &StageGeometry) -> Result<Tensor> {
        let g = &geo.regular;
        let shifted = self.shifted && g.shift != (0, 0);
        let mask = if shifted {
            geo.shifted_mask.as_ref()
        } else {
            None
        };
        let maps = geo.maps(shifted)?;
        let (b, h, w, c) = xs.dims4()?;
        let n = g.window.0 * g.window.1;
        let slots = maps.partition.rows();
        let windows = gather_rows(&xs.reshape((b, h * w, c))?, &maps.partition)?.reshape((
            b * slots / n,
            n,
            c,
        ))?;
        let ys = self.attn.forward(&windows, g.window, mask)?;
        Ok(gather_rows(&ys.reshape((b, slots, c))?, &maps.reverse)?.reshape((b, h, w, c))?)
    }

    fn drop(&self, xs: &Tensor, ctx: PartCtx, mode: Mode, branch: u64) -> Result<Tensor> {
        if ctx.drop_path {
            Ok(self
                .drop_path
                .forward_train(xs, mode.unit_seed(self.unit * 2 + branch))?)
        } else {
            Ok(xs.clone())
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        geo: &StageGeometry,
        ctx: PartCtx,
        mode: Mode,
    ) -> Result<Tensor> {
        let attn = self.window_attention(&self.norm1.forward(xs)?, geo)?;
        let xs = (xs + self.drop(&attn, ctx, mode, 0)?)?;
        let mlp = self
            .fc2
            .forward(&gelu(&self.fc1.forward(&self.norm2.forward(&xs)?)?)?)?;
        let xs = (&xs + self.drop(&mlp, ctx, mode, 1)?)?;
        Ok(ctx.finish(xs))
    }

    fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        self.norm1.params(group, out);
        self.attn.params(group, out);
        self.norm2.params(group, out);
        self.fc1.params(group, out);
        self.fc2.params(group, out);
    }
}

/// Patch merging: 2×2 neighbours concatenated (x[0::2,0::2], x[1::2,0::2], x[0::2,1::2],
/// x[1::2,1::2]), LayerNorm(4C), Linear(4C → 2C) without bias.
#[derive(Debug, Clone)]
struct PatchMerging {
    norm: Ln,
    reduction: Linear,
}

impl PatchMerging {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = xs.dims4()?;
        let ys = xs
            .reshape(vec![b, h / 2, 2, w / 2, 2, c])?
            .permute(vec![0, 1, 3, 4, 2, 5])?
            .contiguous()?
            .reshape((b, h / 2, w / 2, 4 * c))?;
        self.reduction.forward(&self.norm.forward(&ys)?)
    }
}

#[derive(Debug, Clone)]
struct Stage {
    downsample: Option<PatchMerging>,
    blocks: Vec<SwinBlock>,
}

/// A Swin Transformer built from a `VarBuilder` whose paths are timm ≥ 0.9's keys.
#[derive(Debug, Clone)]
pub struct Swin {
    cfg: SwinConfig,
    /// The convolutional stem's convolutions before `patch_proj` (empty for timm's embedding).
    stem_convs: Vec<Conv>,
    patch_proj: Conv,
    patch_norm: Ln,
    stages: Vec<Stage>,
    out_norms: Option<Vec<Ln>>,
    norm: Option<Ln>,
    head: Option<Linear>,
    freeze: Freeze,
}

impl Swin {
    /// Builds the network; `vb` supplies (or, from a `VarMap`, creates) every tensor.
    pub fn new(cfg: &SwinConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        let vb_embed = vb.pp("patch_embed");
        let (stem_convs, patch_proj) = match cfg.stem_channels {
            None => (
                Vec::new(),
                Conv::new(
                    cfg.in_channels,
                    cfg.embed_dim,
                    cfg.patch_size,
                    Conv2dConfig::default().with_stride(cfg.patch_size),
                    true,
                    &vb_embed.pp("proj"),
                )?,
            ),
            Some(channels) => {
                let halvings = cfg.patch_size.trailing_zeros() as usize;
                let step = Conv2dConfig::default().with_stride(2).with_padding(1);
                let mut convs = Vec::with_capacity(halvings - 1);
                let mut in_channels = cfg.in_channels;
                for i in 0..halvings - 1 {
                    convs.push(Conv::new(
                        in_channels,
                        channels,
                        3,
                        step,
                        true,
                        &vb_embed.pp("stem").pp(i),
                    )?);
                    in_channels = channels;
                }
                let proj = Conv::new(
                    in_channels,
                    cfg.embed_dim,
                    3,
                    step,
                    true,
                    &vb_embed.pp("proj"),
                )?;
                (convs, proj)
            }
        };
        let patch_norm = Ln::new(cfg.embed_dim, LN_EPS, &vb_embed.pp("norm"))?;
        let total_blocks: usize = cfg.depths.iter().sum();
        let mut unit = 0usize;
        let mut stages = Vec::with_capacity(4);
        for stage in 0..4 {
            let dim = cfg.stage_dim(stage);
            let vb_stage = vb.pp("layers").pp(stage);
            let downsample = if stage > 0 {
                let vb_ds = vb_stage.pp("downsample");
                Some(PatchMerging {
                    norm: Ln::new(2 * dim, LN_EPS, &vb_ds.pp("norm"))?,
                    reduction: Linear::new(
                        2 * dim,
                        dim,
                        false,
                        LinearInit::Transformer,
                        &vb_ds.pp("reduction"),
                    )?,
                })
            } else {
                None
            };
            let mut blocks = Vec::with_capacity(cfg.depths[stage]);
            for j in 0..cfg.depths[stage] {
                let vb_block = vb_stage.pp("blocks").pp(j);
                // timm: torch.linspace(0, rate, total) over all blocks.
                let rate = if total_blocks > 1 {
                    cfg.drop_path_rate * unit as f64 / (total_blocks - 1) as f64
                } else {
                    0.0
                };
                let hidden = (dim as f64 * cfg.mlp_ratio) as usize;
                blocks.push(SwinBlock {
                    norm1: Ln::new(dim, LN_EPS, &vb_block.pp("norm1"))?,
                    attn: WindowAttention::new(
                        dim,
                        cfg.num_heads[stage],
                        cfg.window_size,
                        cfg.qkv_bias,
                        &vb_block.pp("attn"),
                    )?,
                    norm2: Ln::new(dim, LN_EPS, &vb_block.pp("norm2"))?,
                    fc1: Linear::new(
                        dim,
                        hidden,
                        true,
                        LinearInit::Transformer,
                        &vb_block.pp("mlp").pp("fc1"),
                    )?,
                    fc2: Linear::new(
                        hidden,
                        dim,
                        true,
                        LinearInit::Transformer,
                        &vb_block.pp("mlp").pp("fc2"),
                    )?,
                    drop_path: DropPath::new(rate)?,
                    shifted: j % 2 == 1,
                    unit: unit as u64,
                });
                unit += 1;
            }
            stages.push(Stage { downsample, blocks });
        }
        let out_norms = if cfg.out_norms {
            Some(
                (0..4)
                    .map(|i| Ln::new(cfg.stage_dim(i), LN_EPS, &vb.pp(format!("norm{i}"))))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let last_dim = cfg.stage_dim(3);
        let norm = if cfg.final_norm {
            Some(Ln::new(last_dim, LN_EPS, &vb.pp("norm"))?)
        } else {
            None
        };
        let head = match cfg.num_classes {
            Some(classes) => Some(Linear::new(
                last_dim,
                classes,
                true,
                LinearInit::Transformer,
                &vb.pp("head").pp("fc"),
            )?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            stem_convs,
            patch_proj,
            patch_norm,
            stages,
            out_norms,
            norm,
            head,
            freeze: Freeze::none(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SwinConfig {
        &self.cfg
    }

    fn check_input(&self, xs: &Tensor) -> Result<(usize, usize)> {
        let divisor = self.size_divisor();
        let bad = |message: String| ModelError::Input {
            model: "Swin",
            shape: xs.dims().to_vec(),
            message,
        };
        match xs.dims() {
            &[_, c, h, w] => {
                if c != self.cfg.in_channels {
                    return Err(bad(format!("expected {} channels", self.cfg.in_channels)));
                }
                if h == 0 || w == 0 || h % divisor != 0 || w % divisor != 0 {
                    return Err(bad(format!(
                        "height and width must be positive multiples of {divisor} (pad the batch)"
                    )));
                }
                Ok((h, w))
            }
            _ => Err(bad("expected [N, C, H, W]".into())),
        }
    }
}

/// `[B, H, W, C]` → `[B, C, H, W]`.
fn to_nchw(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.permute((0, 3, 1, 2))?.contiguous()?)
}

impl Backbone for Swin {
    fn arch_name(&self) -> String {
        let c = &self.cfg;
        if c.embed_dim == 96
            && c.depths == [2, 2, 6, 2]
            && c.window_size == 7
            && c.patch_size == 4
            && c.stem_channels.is_none()
        {
            "swin_t".into()
        } else {
            "swin".into()
        }
    }

    fn out_channels(&self) -> [usize; 4] {
        self.cfg.out_channels()
    }

    fn strides(&self) -> [usize; 4] {
        let p = self.cfg.patch_size;
        [p, 2 * p, 4 * p, 8 * p]
    }

    fn size_divisor(&self) -> usize {
        self.cfg.patch_size * 8
    }

    fn num_features(&self) -> Option<usize> {
        self.norm.as_ref().map(|_| self.cfg.stage_dim(3))
    }

    fn num_classes(&self) -> Option<usize> {
        self.cfg.num_classes
    }

    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<BackboneOutput> {
        self.check_input(xs)?;
        let freeze = self.freeze;
        let stem = PartCtx::resolve(mode, &freeze, freeze.stem_frozen());
        let mut ys = xs.clone();
        for conv in &self.stem_convs {
            ys = gelu(&conv.forward(&ys)?)?;
        }
        let ys = to_nhwc(&self.patch_proj.forward(&ys)?)?;
        let mut ys = stem.finish(self.patch_norm.forward(&ys)?);
        let mut raw = Vec::with_capacity(4);
        let mut levels = Vec::with_capacity(4);
        for (i, stage) in self.stages.iter().enumerate() {
            // mmdetection freezes a stage together with the patch merging after it.
            if let Some(ds) = &stage.downsample {
                let ctx = PartCtx::resolve(mode, &freeze, freeze.stage_frozen(i - 1));
                ys = ctx.finish(ds.forward(&ys)?);
            }
            let ctx = PartCtx::resolve(mode, &freeze, freeze.stage_frozen(i));
            let (_, h, w, _) = ys.dims4()?;
            let regular = WindowGeometry::new(self.cfg.window_rule, self.cfg.window_size, (h, w));
            let shifted_mask = if regular.shift != (0, 0) && stage.blocks.len() > 1 {
                Some(attention_mask(
                    &regular,
                    regular.padded((h, w)),
                    ys.dtype(),
                    ys.device(),
                )?)
            } else {
                None
            };
            let geo = StageGeometry::new(self.cfg.window_rule, (h, w), regular, shifted_mask);
            for block in &stage.blocks {
                ys = block.forward(&ys, &geo, ctx, mode)?;
            }
            let level = match &self.out_norms {
                Some(norms) => ctx.finish(norms[i].forward(&ys)?),
                None => ys.clone(),
            };
            levels.push(to_nchw(&level)?);
            raw.push(ys.clone());
        }
        let levels: [Tensor; 4] = levels
            .try_into()
            .map_err(|_| candle_core::Error::Msg("Swin: four stages".into()))?;
        let head_ctx = PartCtx::resolve(mode, &freeze, freeze.freeze_head);
        let (pooled, logits) = match &self.norm {
            Some(norm) => {
                let pooled = head_ctx.finish(norm.forward(&raw[3])?.mean((1, 2))?);
                let logits = match &self.head {
                    Some(head) => Some(head_ctx.finish(head.forward(&pooled)?)),
                    None => None,
                };
                (Some(pooled), logits)
            }
            None => (None, None),
        };
        Ok(BackboneOutput {
            features: Features { levels },
            pooled,
            logits,
        })
    }

    fn parameters(&self) -> Vec<Parameter> {
        let mut out = Vec::new();
        for conv in &self.stem_convs {
            conv.params(FreezeGroup::Stem, &mut out);
        }
        self.patch_proj.params(FreezeGroup::Stem, &mut out);
        self.patch_norm.params(FreezeGroup::Stem, &mut out);
        for (i, stage) in self.stages.iter().enumerate() {
            if let Some(ds) = &stage.downsample {
                ds.norm.params(FreezeGroup::Stage(i - 1), &mut out);
                ds.reduction.params(FreezeGroup::Stage(i - 1), &mut out);
            }
            for block in &stage.blocks {
                block.params(FreezeGroup::Stage(i), &mut out);
            }
        }
        if let Some(norms) = &self.out_norms {
            for (i, norm) in norms.iter().enumerate() {
                norm.params(FreezeGroup::Stage(i), &mut out);
            }
        }
        if let Some(norm) = &self.norm {
            norm.params(FreezeGroup::Head, &mut out);
        }
        if let Some(head) = &self.head {
            head.params(FreezeGroup::Head, &mut out);
        }
        out
    }

    fn freeze(&self) -> Freeze {
        self.freeze
    }

    fn set_freeze(&mut self, freeze: Freeze) {
        self.freeze = freeze;
    }
}

/// `[B, C, H, W]` → `[B, H, W, C]`.
fn to_nhwc(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.permute((0, 2, 3, 1))?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_index_matches_timm_formula_for_the_full_window() {
        // timm: (dy + wh − 1)·(2ww − 1) + (dx + ww − 1).
        let index = relative_position_index((2, 3), (2, 3));
        assert_eq!(index.len(), 36);
        // query (0,0), key (1,2): dy = −1, dx = −2 → (0)·5 + 0 = 0.
        assert_eq!(index[5], 0);
        // query (1,2), key (0,0): dy = 1, dx = 2 → 2·5 + 4 = 14 (the last entry of 3·5).
        assert_eq!(index[5 * 6], 14);
        // Diagonal: dy = dx = 0 → 1·5 + 2 = 7.
        assert!((0..6).all(|i| index[i * 6 + i] == 7));
    }

    #[test]
    fn timm_rule_shrinks_per_axis_and_drops_the_shift() {
        let g = WindowGeometry::new(WindowRule::Timm, 7, (7, 14));
        assert_eq!(g.window, (7, 7));
        assert_eq!(g.shift, (0, 3));
        let g = WindowGeometry::new(WindowRule::Timm, 7, (5, 9));
        assert_eq!(g.window, (5, 7));
        assert_eq!(g.shift, (0, 3));
        let g = WindowGeometry::new(WindowRule::Padded, 7, (5, 9));
        assert_eq!(g.window, (7, 7));
        assert_eq!(g.shift, (3, 3));
        assert_eq!(g.padded((5, 9)), (7, 14));
    }

    #[test]
    fn mask_separates_the_wrapped_regions() {
        let g = WindowGeometry::new(WindowRule::Padded, 2, (4, 4));
        let mask = attention_mask(&g, (4, 4), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(mask.dims(), &[4, 4, 4]);
        let m: Vec<Vec<Vec<f32>>> = mask.to_vec3().unwrap();
        // The first window lies in one region: nothing masked.
        assert!(m[0].iter().flatten().all(|&v| v == 0.0));
        // The last window mixes 4 regions (one pixel each): only the diagonal is open.
        for (i, row) in m[3].iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, if i == j { 0.0 } else { -100.0 });
            }
        }
    }
}

impl SwinConfig {
    /// Multiply-accumulates of one `height × width` forward pass: patch embedding, patch
    /// merging, the qkv / projection / MLP products and the two attention products over each
    /// window (no classifier).
    pub fn forward_macs(&self, height: usize, width: usize) -> f64 {
        let patch = self.patch_size.max(1);
        let (mut h, mut w) = (
            height.div_ceil(patch).max(1) as f64,
            width.div_ceil(patch).max(1) as f64,
        );
        let mut macs = match self.stem_channels {
            None => (patch * patch * self.in_channels * self.embed_dim) as f64 * h * w,
            Some(channels) => {
                // 3×3 stride-2 convolutions, each output map a quarter of its input.
                let halvings = patch.trailing_zeros() as i32;
                let mut stem = 0.0;
                let mut in_channels = self.in_channels;
                for i in 1..=halvings {
                    let out = if i == halvings {
                        self.embed_dim
                    } else {
                        channels
                    };
                    let scale = 2f64.powi(halvings - i);
                    stem += (9 * in_channels * out) as f64 * h * w * scale * scale;
                    in_channels = out;
                }
                stem
            }
        };
        let mut dim = self.embed_dim as f64;
        for (stage, depth) in self.depths.iter().enumerate() {
            if stage > 0 {
                (h, w) = ((h / 2.0).ceil(), (w / 2.0).ceil());
                // Patch merging: 4C → 2C on the merged tokens.
                macs += h * w * 4.0 * (dim / 2.0) * dim;
            }
            let tokens = h * w;
            let window = (self.window_size as f64).min(h) * (self.window_size as f64).min(w);
            let block = tokens * (4.0 * dim * dim + 2.0 * window * dim)
                + tokens * 2.0 * self.mlp_ratio * dim * dim;
            macs += block * *depth as f64;
            dim *= 2.0;
        }
        macs
    }
}

/// The Swin family in the [registry](crate::registry): presets `swin_t`, `swin_t_dense`,
/// `swin_mini`, `swin_tiny`; timm ≥ 0.9 keys, Microsoft's release and transformers imported.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwinArch;

impl crate::registry::Architecture for SwinArch {
    type Config = SwinConfig;

    fn family(&self) -> &'static str {
        "swin"
    }

    fn description(&self) -> &'static str {
        "Swin Transformer (timm >= 0.9), timm's or mmdetection's window rule"
    }

    fn presets(&self) -> Vec<(&'static str, SwinConfig)> {
        vec![
            ("swin_t", SwinConfig::swin_t()),
            ("swin_t_dense", SwinConfig::swin_t_dense()),
            ("swin_mini", SwinConfig::mini()),
            ("swin_tiny", SwinConfig::tiny()),
        ]
    }

    fn build(&self, cfg: &SwinConfig, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Swin::new(cfg, vb)?))
    }

    fn num_classes(&self, cfg: &SwinConfig) -> Option<usize> {
        cfg.num_classes
    }

    fn with_num_classes(&self, cfg: &SwinConfig, num_classes: Option<usize>) -> SwinConfig {
        let mut out = cfg.clone();
        out.num_classes = num_classes;
        // timm's classifier reads the final norm's output.
        if num_classes.is_some() {
            out.final_norm = true;
        }
        out
    }

    fn classifier_key(&self) -> &'static str {
        "head.fc.weight"
    }

    fn layouts(&self) -> Vec<crate::registry::WeightLayout> {
        use crate::registry::{WeightLayout, identity};
        use crate::weights;
        vec![
            WeightLayout {
                name: "timm_swin",
                description: "Swin, timm >= 0.9 names",
                detect: weights::is_timm_swin,
                convert: identity,
            },
            WeightLayout {
                name: "microsoft_swin",
                description: "Swin, original Microsoft checkpoint (timm < 0.9) names",
                detect: weights::is_microsoft_swin,
                convert: weights::microsoft_swin_to_timm,
            },
            WeightLayout {
                name: "openmmlab_swin",
                description: "Swin, mmsegmentation / mmdetection names",
                detect: weights::is_openmmlab_swin,
                convert: weights::openmmlab_swin_to_timm,
            },
            WeightLayout {
                name: "transformers_swin",
                description: "Swin, Hugging Face transformers names",
                detect: weights::is_transformers_swin,
                convert: weights::transformers_to_timm,
            },
        ]
    }

    fn forward_macs(&self, cfg: &SwinConfig, height: usize, width: usize) -> f64 {
        cfg.forward_macs(height, width)
    }
}
