//! The [`Backbone`] trait that task heads and the training engine program against, and the
//! small types around it: [`Mode`], [`Freeze`], [`Features`], [`BackboneOutput`] and
//! [`Parameter`].
//!
//! A backbone maps a normalised `[N, 3, H, W]` batch to four feature maps C2..C5 (strides 4,
//! 8, 16, 32, NCHW) and, when its configuration has them, pooled features and class logits.
//! Freezing follows mmdetection: `frozen_stages = k` puts the stem and the first `k` stages in
//! eval mode and takes their parameters out of training; `norm_eval` keeps every BatchNorm in
//! eval mode (running statistics frozen, affine parameters of unfrozen stages still train).

use candle_core::{Tensor, Var};
use rtb_nn::optim::ParamRole;

use crate::error::Result;

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: BatchNorm uses batch statistics and updates its running statistics (except
    /// where [`Freeze`] says eval), DropPath drops residual branches with draws derived from
    /// `seed` (same seed, same masks), and a gradient graph is recorded for every part that
    /// trains. Frozen parts never record a graph.
    Train {
        /// Seed of this step's random draws (DropPath); vary it per step.
        seed: u64,
    },
    /// Evaluation (running statistics, no DropPath) that records the whole gradient graph,
    /// frozen parts included, for gradients with respect to inputs or parameters.
    Eval,
    /// Evaluation without a gradient graph: every block's output is detached, so activations
    /// are freed as soon as the next block has used them. Use it for validation, testing,
    /// feature extraction and the fixed-feature regime.
    Inference,
}

impl Mode {
    /// Whether this is [`Mode::Train`].
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// Whether a gradient graph may be recorded.
    pub fn records_graph(&self) -> bool {
        !matches!(self, Mode::Inference)
    }

    /// The seed of a random draw of unit `unit` (a block index) under this mode.
    pub(crate) fn unit_seed(&self, unit: u64) -> u64 {
        match self {
            Mode::Train { seed } => mix_seed(*seed, unit),
            Mode::Eval | Mode::Inference => 0,
        }
    }
}

/// A well-mixed combination of a step seed and a unit index (splitmix64 finaliser), so that
/// different blocks of one step draw independent masks.
fn mix_seed(seed: u64, unit: u64) -> u64 {
    let mut z = seed ^ unit.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which parts of a backbone are frozen, with mmdetection's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Freeze {
    /// `None`: nothing frozen (mmdet's `-1`); `Some(0)`: the stem; `Some(k)`: the stem and
    /// stages 1..=k. Frozen parts run in eval mode, record no graph and do not train.
    pub frozen_stages: Option<usize>,
    /// Also freeze the classification head (the final norm and the classifier).
    pub freeze_head: bool,
    /// Keep every BatchNorm in eval mode (running statistics are never updated). Affine
    /// parameters outside frozen stages still train.
    pub norm_eval: bool,
}

impl Freeze {
    /// Nothing frozen, BatchNorm in train mode (full-network fine-tuning on classification).
    pub fn none() -> Self {
        Self::default()
    }

    /// mmdetection's ResNet default for Mask R-CNN: stem and stage 1 frozen, `norm_eval`.
    pub fn mmdet_resnet() -> Self {
        Self {
            frozen_stages: Some(1),
            freeze_head: false,
            norm_eval: true,
        }
    }

    /// Everything frozen, the head included: the fixed-feature regime. No graph is recorded.
    pub fn all() -> Self {
        Self {
            frozen_stages: Some(usize::MAX),
            freeze_head: true,
            norm_eval: true,
        }
    }

    /// Whether the stem is frozen.
    pub fn stem_frozen(&self) -> bool {
        self.frozen_stages.is_some()
    }

    /// Whether stage `stage` (0-based: 0 is C2's stage) is frozen.
    pub fn stage_frozen(&self, stage: usize) -> bool {
        self.frozen_stages.is_some_and(|k| stage < k)
    }

    /// Whether a parameter of `group` is frozen.
    pub fn group_frozen(&self, group: FreezeGroup) -> bool {
        match group {
            FreezeGroup::Stem => self.stem_frozen(),
            FreezeGroup::Stage(stage) => self.stage_frozen(stage),
            FreezeGroup::Head => self.freeze_head,
        }
    }
}

/// The unit of freezing a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreezeGroup {
    /// The stem (ResNet's conv1/bn1, Swin's patch embedding).
    Stem,
    /// Stage `i` (0-based), with what mmdetection freezes along with it (Swin: the patch
    /// merging that follows the stage, and the stage's output norm).
    Stage(usize),
    /// The classification head (Swin's final norm, the classifier).
    Head,
}

/// What a named tensor of a backbone is, so optimizers can group it (no weight decay for
/// norms, biases, position tables and layer scales) and the engine can skip buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A convolution or linear weight.
    Weight,
    /// A convolution or linear bias.
    Bias,
    /// A norm layer's scale.
    NormWeight,
    /// A norm layer's shift.
    NormBias,
    /// A relative position bias table (Swin).
    PositionTable,
    /// A per-channel layer-scale factor (ConvNeXt's `gamma`): trains, but like norms and
    /// biases it takes no weight decay (timm and the ConvNeXt release exclude 1-D tensors).
    LayerScale,
    /// A BatchNorm running mean: a buffer, never trained by gradients.
    RunningMean,
    /// A BatchNorm running variance: a buffer, never trained by gradients.
    RunningVar,
}

impl ParamKind {
    /// Whether gradients train this kind of tensor (false for running statistics).
    pub fn is_trainable(&self) -> bool {
        !matches!(self, ParamKind::RunningMean | ParamKind::RunningVar)
    }

    /// How optimizers group it (`None` for buffers, which they never see).
    pub fn role(&self) -> Option<ParamRole> {
        Some(match self {
            ParamKind::Weight => ParamRole::Weight,
            ParamKind::Bias => ParamRole::Bias,
            ParamKind::NormWeight | ParamKind::NormBias => ParamRole::Norm,
            ParamKind::PositionTable | ParamKind::LayerScale => ParamRole::Table,
            ParamKind::RunningMean | ParamKind::RunningVar => return None,
        })
    }
}

/// One named tensor of a backbone.
#[derive(Debug, Clone)]
pub struct Parameter {
    /// Canonical checkpoint key (timm ≥ 0.9 names).
    pub name: String,
    /// The tensor; a `Var` when the model was built from a `VarMap`.
    pub tensor: Tensor,
    /// What it is.
    pub kind: ParamKind,
    /// The freezing unit it belongs to.
    pub group: FreezeGroup,
}

/// The four feature maps C2..C5, NCHW, strides 4, 8, 16, 32.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[C2, C3, C4, C5]`.
    pub levels: [Tensor; 4],
}

impl Features {
    /// Stride-4 features.
    pub fn c2(&self) -> &Tensor {
        &self.levels[0]
    }
    /// Stride-8 features.
    pub fn c3(&self) -> &Tensor {
        &self.levels[1]
    }
    /// Stride-16 features.
    pub fn c4(&self) -> &Tensor {
        &self.levels[2]
    }
    /// Stride-32 features.
    pub fn c5(&self) -> &Tensor {
        &self.levels[3]
    }
}

/// Everything one forward pass produces.
#[derive(Debug, Clone)]
pub struct BackboneOutput {
    /// C2..C5. For a Swin with dense-task output norms, after those norms.
    pub features: Features,
    /// Globally pooled features `[N, num_features]` (after Swin's final norm), when the
    /// configuration has a pooling path.
    pub pooled: Option<Tensor>,
    /// Class logits `[N, num_classes]`, when the configuration has a classifier.
    pub logits: Option<Tensor>,
}

/// A vision backbone usable by every task head and by the training engine.
///
/// Implement it for your own model to run it through the benchmark: heads only need
/// [`forward`](Backbone::forward) and [`out_channels`](Backbone::out_channels); the engine
/// needs [`parameters`](Backbone::parameters) (named tensors, a `Var` for each that trains)
/// and [`set_freeze`](Backbone::set_freeze).
pub trait Backbone: std::fmt::Debug + Send + Sync {
    /// A short name of the architecture (`resnet50`, `swin_t`, a custom name).
    fn arch_name(&self) -> String;

    /// Channels of C2..C5.
    fn out_channels(&self) -> [usize; 4];

    /// Strides of C2..C5 relative to the input.
    fn strides(&self) -> [usize; 4] {
        [4, 8, 16, 32]
    }

    /// Inputs' height and width must be multiples of this.
    fn size_divisor(&self) -> usize {
        32
    }

    /// Width of the pooled features, when there is a pooling path.
    fn num_features(&self) -> Option<usize>;

    /// Number of classes of the classifier, when there is one.
    fn num_classes(&self) -> Option<usize>;

    /// Runs the backbone on a normalised `[N, 3, H, W]` batch.
    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<BackboneOutput>;

    /// Every named tensor (parameters and buffers) with its kind and freezing unit.
    fn parameters(&self) -> Vec<Parameter>;

    /// The current freezing.
    fn freeze(&self) -> Freeze;

    /// Changes the freezing (takes effect at the next forward).
    fn set_freeze(&mut self, freeze: Freeze);

    /// The variables an optimizer should train under the current freezing, named by their
    /// canonical keys: trainable kinds outside frozen groups that are `Var`s (a model built
    /// from plain tensors has none).
    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.trainable_roles()
            .into_iter()
            .map(|(name, var, _)| (name, var))
            .collect()
    }

    /// [`trainable_vars`](Backbone::trainable_vars) with each one's optimizer role (from its
    /// [`ParamKind`], so parameter groups never guess norms from names).
    fn trainable_roles(&self) -> Vec<(String, Var, ParamRole)> {
        let freeze = self.freeze();
        self.parameters()
            .into_iter()
            .filter(|p| p.kind.is_trainable() && !freeze.group_frozen(p.group))
            .filter(|p| p.tensor.is_variable())
            .filter_map(|p| {
                let role = p.kind.role()?;
                Var::from_tensor(&p.tensor).ok().map(|v| (p.name, v, role))
            })
            .collect()
    }
}

/// Per-part behaviour of one forward pass, resolved from [`Mode`] and [`Freeze`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartCtx {
    /// BatchNorm with batch statistics (and running-statistic updates).
    pub batch_stats: bool,
    /// DropPath active.
    pub drop_path: bool,
    /// Record a gradient graph (otherwise block outputs are detached).
    pub record: bool,
}

impl PartCtx {
    pub(crate) fn resolve(mode: Mode, freeze: &Freeze, frozen: bool) -> Self {
        let train = mode.is_train() && !frozen;
        Self {
            batch_stats: train && !freeze.norm_eval,
            drop_path: train,
            // Eval keeps the whole graph (input gradients of a frozen model); training skips
            // the graph of frozen parts, whose gradients nobody reads.
            record: match mode {
                Mode::Train { .. } => !frozen,
                Mode::Eval => true,
                Mode::Inference => false,
            },
        }
    }

    /// Detaches `xs` unless this part records a graph.
    pub(crate) fn finish(&self, xs: Tensor) -> Tensor {
        if self.record { xs } else { xs.detach() }
    }
}
