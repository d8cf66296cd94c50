//! The classifier: any rtb-models backbone (built without its ImageNet classifier) and a new
//! linear head on its pooled features, in one of the two transfer regimes.
//!
//! - Fixed-feature: the backbone is built from plain tensors (never `Var`s), frozen and run in
//!   [`Mode::Inference`] (eval-mode BatchNorm, every block's output detached), so no gradient
//!   graph is kept through it and nothing can update it; only the head trains.
//! - Full-network: every backbone tensor is a `Var` in a `VarMap`, initialised from the
//!   weights, run in [`Mode::Train`] with the step's seed (batch statistics, DropPath), and
//!   trained along with the head.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarMap};
use rtb_models::init::{draw, trainable_builder};
use rtb_models::{ArchConfig, Backbone, Freeze, Mode};
use rtb_nn::optim::ParamRole;
use rtb_results::Regime;
use rtb_train::seed::{Stream, derive_seed};

use crate::error::{CifarError, Result};

/// Prefix of the backbone's names in optimizer state and checkpoints.
pub const BACKBONE_PREFIX: &str = "backbone.";
/// Name of the head's weight `[classes, features]`.
pub const HEAD_WEIGHT: &str = "head.weight";
/// Name of the head's bias `[classes]`.
pub const HEAD_BIAS: &str = "head.bias";

/// A backbone and a linear head.
#[derive(Debug)]
pub struct Classifier {
    backbone: Box<dyn Backbone>,
    head_weight: Var,
    head_bias: Var,
    regime: Regime,
}

/// Reads `path` in any layout rtb-models knows, drops the classifier, and checks that the rest
/// fits `arch` (without classifier) exactly.
fn backbone_weights(arch: &ArchConfig, path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let canonical = rtb_models::read_canonical(arch, path, None)?;
    let mut tensors = canonical.tensors;
    let weight_key = arch.classifier_key()?;
    let bias_key = weight_key.replace("weight", "bias");
    tensors.remove(weight_key);
    tensors.remove(&bias_key);
    rtb_models::check_state_dict(arch, &path.display().to_string(), &tensors)?;
    Ok(tensors)
}

impl Classifier {
    /// Builds the backbone of `arch` (its classifier, if any, is dropped) from `weights` (or
    /// from `seed` when there are none), and a head of `num_classes` initialised like
    /// PyTorch's `nn.Linear` from `seed`.
    pub fn build(
        arch: &ArchConfig,
        weights: Option<&Path>,
        regime: Regime,
        num_classes: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let arch = arch.with_num_classes(None)?;
        let tensors = match weights {
            Some(path) => Some(backbone_weights(&arch, path)?),
            None => None,
        };
        // The backbone's tensors hold its variables; the VarMap is only how they are made.
        let mut backbone = match (regime, tensors) {
            (Regime::Fixed, Some(tensors)) => {
                let source = weights.map(|p| p.display().to_string()).unwrap_or_default();
                rtb_models::from_state_dict(&arch, &source, tensors, dtype, device)?
            }
            (_, tensors) => {
                let varmap = VarMap::new();
                let map: HashMap<String, Tensor> =
                    tensors.unwrap_or_default().into_iter().collect();
                let vb = trainable_builder(
                    &varmap,
                    map,
                    derive_seed(seed, Stream::Init, &[0]),
                    dtype,
                    device,
                );
                arch.build(&vb)?
            }
        };
        backbone.set_freeze(match regime {
            Regime::Fixed => Freeze::all(),
            Regime::Full => Freeze::none(),
        });
        let features = backbone.num_features().ok_or_else(|| {
            CifarError::config(
                "backbone",
                format!(
                    "{} has no pooled features to classify",
                    backbone.arch_name()
                ),
            )
        })?;
        // nn.Linear: U(−1/√in, 1/√in) for weight and bias.
        let bound = 1.0 / (features as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let head_weight = Var::from_tensor(&draw(
            init,
            &(num_classes, features).into(),
            derive_seed(seed, Stream::Init, &[1]),
            dtype,
            device,
        )?)?;
        let head_bias = Var::from_tensor(&draw(
            init,
            &num_classes.into(),
            derive_seed(seed, Stream::Init, &[2]),
            dtype,
            device,
        )?)?;
        Ok(Self {
            backbone,
            head_weight,
            head_bias,
            regime,
        })
    }

    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        &*self.backbone
    }

    /// The regime.
    pub fn regime(&self) -> Regime {
        self.regime
    }

    /// Width of the pooled features.
    pub fn num_features(&self) -> usize {
        self.head_weight.dim(1).unwrap_or(0)
    }

    /// Pooled features of a normalised batch `[N, 3, H, W]` → `[N, F]` under `mode`.
    pub fn pooled(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.backbone.forward(xs, mode)?;
        out.pooled.ok_or_else(|| {
            CifarError::config(
                "backbone",
                format!("{} returned no pooled features", self.backbone.arch_name()),
            )
        })
    }

    /// The head on pooled features `[N, F]` → logits `[N, classes]`.
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        let cast = |t: &Var| rtb_nn::autocast::to_compute(t.as_tensor(), features);
        Ok(features
            .matmul(&cast(&self.head_weight)?.t()?)?
            .broadcast_add(&cast(&self.head_bias)?)?)
    }

    /// Training logits: the backbone in the regime's mode (`Mode::Train { seed }` for the full
    /// network, `Mode::Inference` for fixed features), then the head.
    pub fn forward_train(&self, xs: &Tensor, step_seed: u64) -> Result<Tensor> {
        let mode = match self.regime {
            Regime::Fixed => Mode::Inference,
            Regime::Full => Mode::Train { seed: step_seed },
        };
        self.head(&self.pooled(xs, mode)?)
    }

    /// Evaluation logits (inference mode, detached).
    pub fn forward_eval(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.head(&self.pooled(xs, Mode::Inference)?)?.detach())
    }

    /// The head's variables.
    pub fn head_vars(&self) -> Vec<(String, Var)> {
        vec![
            (HEAD_WEIGHT.into(), self.head_weight.clone()),
            (HEAD_BIAS.into(), self.head_bias.clone()),
        ]
    }

    /// What the optimizer trains: the head (fixed) or the backbone's trainable variables and
    /// the head (full).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.trainable_roles()
            .into_iter()
            .map(|(name, var, _)| (name, var))
            .collect()
    }

    /// [`trainable_vars`](Self::trainable_vars) with each one's optimizer role (the
    /// backbone's parameter kinds; the head is a weight and a bias).
    pub fn trainable_roles(&self) -> Vec<(String, Var, Option<ParamRole>)> {
        let mut vars: Vec<(String, Var, Option<ParamRole>)> = match self.regime {
            Regime::Fixed => Vec::new(),
            Regime::Full => self
                .backbone
                .trainable_roles()
                .into_iter()
                .map(|(name, var, role)| (format!("{BACKBONE_PREFIX}{name}"), var, Some(role)))
                .collect(),
        };
        vars.push((
            HEAD_WEIGHT.into(),
            self.head_weight.clone(),
            Some(ParamRole::Weight),
        ));
        vars.push((
            HEAD_BIAS.into(),
            self.head_bias.clone(),
            Some(ParamRole::Bias),
        ));
        vars
    }

    /// Every backbone tensor that is a variable (parameters and BatchNorm statistics), named
    /// with [`BACKBONE_PREFIX`]; empty in the fixed-feature regime with given weights.
    fn backbone_state_vars(&self) -> Vec<(String, Var)> {
        self.backbone
            .parameters()
            .into_iter()
            .filter(|p| p.tensor.is_variable())
            .filter_map(|p| {
                Var::from_tensor(&p.tensor)
                    .ok()
                    .map(|v| (format!("{BACKBONE_PREFIX}{}", p.name), v))
            })
            .collect()
    }

    /// The model's state for checkpoints: the head, plus every backbone tensor in the
    /// full-network regime (the fixed backbone is rebuilt from its weights file).
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut state = BTreeMap::new();
        let mut vars = self.head_vars();
        if self.regime == Regime::Full {
            vars.extend(self.backbone_state_vars());
        }
        for (name, var) in vars {
            state.insert(name, var.as_tensor().copy()?);
        }
        Ok(state)
    }

    /// Restores [`Classifier::state_tensors`].
    pub fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut vars = self.head_vars();
        if self.regime == Regime::Full {
            vars.extend(self.backbone_state_vars());
        }
        rtb_train::assign_vars(&vars, state)?;
        Ok(())
    }
}
