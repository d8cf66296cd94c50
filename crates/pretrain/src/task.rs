//! The pretraining task: a backbone with its own classifier trained from seeded random
//! weights on the source task, with cross-entropy and, for AugMix with `jsd`, the
//! Jensen–Shannon consistency term over the clean image and two mixtures.

use std::collections::{BTreeMap, HashMap};

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Backbone, Freeze, Mode};
use rtb_nn::loss::{CrossEntropyOptions, cross_entropy, log_softmax};
use rtb_train::{StepContext, TrainOutput, TrainTask};

use crate::data::Batch;
use crate::error::{PretrainError, Result};

/// A classification model under pretraining.
pub struct PretrainTask {
    model: Box<dyn Backbone>,
    device: Device,
    jsd_weight: Option<f64>,
    // Owns the variables the model was built from.
    _varmap: VarMap,
}

/// The Jensen–Shannon divergence of AugMix between the softmaxes of three logit tensors
/// `[N, C]`: the mean over the three of KL(p_i ‖ M) with M their mean clamped to [1e-7, 1]
/// (AugMix's `F.kl_div(log M, p_i, reduction='batchmean')`).
pub fn jensen_shannon(logits: [&Tensor; 3]) -> candle_core::Result<Tensor> {
    let n = logits[0].dim(0)? as f64;
    let log_p: Vec<Tensor> = logits
        .iter()
        .map(|l| log_softmax(l, 1))
        .collect::<candle_core::Result<_>>()?;
    let p: Vec<Tensor> = log_p
        .iter()
        .map(Tensor::exp)
        .collect::<candle_core::Result<_>>()?;
    let mixture = ((&p[0] + &p[1])? + &p[2])?.affine(1.0 / 3.0, 0.0)?;
    let log_mixture = mixture.clamp(1e-7, 1.0)?.log()?;
    let mut total: Option<Tensor> = None;
    for (p_i, log_p_i) in p.iter().zip(&log_p) {
        let kl = (p_i * (log_p_i - &log_mixture)?)?
            .sum_all()?
            .affine(1.0 / n, 0.0)?;
        total = Some(match total {
            Some(t) => (t + kl)?,
            None => kl,
        });
    }
    total.expect("three terms").affine(1.0 / 3.0, 0.0)
}

impl std::fmt::Debug for PretrainTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainTask")
            .field("model", &self.model)
            .field("device", &self.device)
            .field("jsd_weight", &self.jsd_weight)
            .finish()
    }
}

impl PretrainTask {
    /// `arch` with a classifier of `num_classes`, every weight drawn from `seed`, on
    /// `device`; `jsd_weight` adds the consistency loss (batches then carry three views).
    pub fn new(
        arch: &ArchConfig,
        num_classes: usize,
        seed: u64,
        jsd_weight: Option<f64>,
        device: &Device,
    ) -> Result<Self> {
        let arch = arch.with_num_classes(Some(num_classes))?;
        let varmap = VarMap::new();
        let vb = trainable_builder(&varmap, HashMap::new(), seed, DType::F32, device);
        let mut model = arch.build(&vb)?;
        model.set_freeze(Freeze::none());
        Ok(Self {
            model,
            device: device.clone(),
            jsd_weight,
            _varmap: varmap,
        })
    }

    /// The model.
    pub fn model(&self) -> &dyn Backbone {
        &*self.model
    }

    /// Every tensor of the model (parameters and BatchNorm statistics) by canonical name.
    pub fn weights(&self) -> BTreeMap<String, Tensor> {
        self.model
            .parameters()
            .into_iter()
            .map(|p| (p.name, p.tensor))
            .collect()
    }

    fn state_vars(&self) -> Vec<(String, Var)> {
        self.model
            .parameters()
            .into_iter()
            .filter(|p| p.tensor.is_variable())
            .filter_map(|p| Var::from_tensor(&p.tensor).ok().map(|v| (p.name, v)))
            .collect()
    }

    /// Inference logits of a normalised batch.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let out = self
            .model
            .forward(&images.to_device(&self.device)?, Mode::Inference)?;
        out.logits.ok_or_else(|| PretrainError::Config {
            field: "arch".into(),
            message: format!("{} returned no logits", self.model.arch_name()),
        })
    }

    fn loss(&self, batch: &Batch, ctx: &StepContext) -> Result<(Tensor, Vec<(String, f64)>)> {
        let images = batch.images.to_device(&self.device)?;
        let labels = batch.labels.to_device(&self.device)?;
        let out = self
            .model
            .forward(&images, Mode::Train { seed: ctx.seed })?;
        let logits = out.logits.ok_or_else(|| PretrainError::Config {
            field: "arch".into(),
            message: format!("{} returned no logits", self.model.arch_name()),
        })?;
        let n = labels.dim(0)?;
        let clean = logits.narrow(0, 0, n)?;
        let ce = cross_entropy(&clean, &labels, &CrossEntropyOptions::default())?;
        match (self.jsd_weight, batch.views) {
            (Some(weight), 3) => {
                let first = logits.narrow(0, n, n)?;
                let second = logits.narrow(0, 2 * n, n)?;
                let js = jensen_shannon([&clean, &first, &second])?;
                let parts = vec![
                    ("ce".to_string(), ce.to_scalar::<f32>()? as f64),
                    ("jsd".to_string(), js.to_scalar::<f32>()? as f64),
                ];
                Ok(((ce + js.affine(weight, 0.0)?)?, parts))
            }
            (None, 1) => Ok((ce, Vec::new())),
            (_, views) => Err(PretrainError::Config {
                field: "augment".into(),
                message: format!(
                    "batch has {views} views per image, the loss expects {}",
                    if self.jsd_weight.is_some() { 3 } else { 1 }
                ),
            }),
        }
    }
}

/// Index of the largest logit per row.
pub fn argmax(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}

impl TrainTask for PretrainTask {
    type Batch = Batch;

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.model.trainable_vars()
    }

    fn trainable_roles(&self) -> Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> {
        self.model
            .trainable_roles()
            .into_iter()
            .map(|(name, var, role)| (name, var, Some(role)))
            .collect()
    }

    fn state_tensors(&self) -> rtb_train::Result<BTreeMap<String, Tensor>> {
        self.state_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
            .collect()
    }

    fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> rtb_train::Result<()> {
        rtb_train::assign_vars(&self.state_vars(), state)
    }

    fn train_step(&mut self, batch: Batch, ctx: &StepContext) -> rtb_train::Result<TrainOutput> {
        let items = batch.labels.dim(0)?;
        let (loss, parts) = self.loss(&batch, ctx)?;
        Ok(TrainOutput { loss, items, parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jensen_shannon_is_zero_for_equal_inputs_and_matches_a_direct_sum() {
        let device = Device::Cpu;
        let a = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]], &device).unwrap();
        assert!(
            jensen_shannon([&a, &a, &a])
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .abs()
                < 1e-6
        );
        let b = Tensor::new(&[[0.0f32, 0.0, 0.0], [2.0, 1.0, 0.0]], &device).unwrap();
        let c = Tensor::new(&[[3.0f32, -2.0, 1.0], [0.5, 0.5, 0.5]], &device).unwrap();
        let got = jensen_shannon([&a, &b, &c])
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        // Direct evaluation in f64.
        let rows = |t: &Tensor| -> Vec<Vec<f64>> {
            t.to_vec2::<f32>()
                .unwrap()
                .iter()
                .map(|r| {
                    let m = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
                    let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.iter().map(|v| v / s).collect()
                })
                .collect()
        };
        let (pa, pb, pc) = (rows(&a), rows(&b), rows(&c));
        let mut expected = 0.0;
        for i in 0..2 {
            for j in 0..3 {
                let m = ((pa[i][j] + pb[i][j] + pc[i][j]) / 3.0).clamp(1e-7, 1.0);
                for p in [&pa, &pb, &pc] {
                    expected += p[i][j] * (p[i][j].ln() - m.ln());
                }
            }
        }
        expected /= 2.0 * 3.0;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn every_trainable_variable_gets_a_gradient_with_the_jsd_loss() {
        let device = Device::Cpu;
        let arch = ArchConfig::from_name("resnet_tiny").unwrap();
        let task = PretrainTask::new(&arch, 3, 0, Some(12.0), &device).unwrap();
        let images = Tensor::randn(0f32, 1.0, (6, 3, 32, 32), &device).unwrap();
        let batch = Batch {
            images,
            labels: Tensor::new(&[0u32, 2], &device).unwrap(),
            views: 3,
        };
        let ctx = StepContext {
            iteration: 0,
            epoch: 0,
            batch_in_epoch: 0,
            seed: 1,
            learning_rate: 0.1,
        };
        let (loss, parts) = task.loss(&batch, &ctx).unwrap();
        assert_eq!(parts.len(), 2);
        let grads = loss.backward().unwrap();
        for (name, var) in task.trainable_vars() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let norm = grad
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name}: zero gradient");
        }
        // One view per image with a JSD recipe is an error naming the mismatch.
        let wrong = Batch {
            images: Tensor::zeros((2, 3, 32, 32), DType::F32, &device).unwrap(),
            labels: Tensor::new(&[0u32, 2], &device).unwrap(),
            views: 1,
        };
        assert!(
            task.loss(&wrong, &ctx)
                .unwrap_err()
                .to_string()
                .contains("views")
        );
    }
}
