//! `torch.optim.SGD`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

use super::{Optimizer, ParamGroup, check_no_unknown_keys, take_buffer, validate_groups};
use crate::error::invalid;

/// Hyper-parameters of [`Sgd`], PyTorch's names and defaults (apart from `lr`, which PyTorch
/// requires).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// Coupled L2 weight decay: `g ← g + weight_decay · p`.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.SGD`: `g ← ∇ + wd·p`; `b ← μ·b + (1 − dampening)·g` (b = g at the first
/// step); `g ← g + μ·b` (nesterov) or `g ← b`; `p ← p − lr·g`.
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    cfg: SgdConfig,
    /// Momentum buffer per group and parameter; `None` until the parameter's first step.
    buffers: Vec<Vec<Option<Tensor>>>,
}

impl Sgd {
    /// An optimizer over `groups`; rejects nesterov without momentum or with dampening (as
    /// PyTorch does) and duplicate parameter names.
    pub fn new(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Self> {
        validate_groups(&groups)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(invalid(
                "Sgd",
                format!(
                    "nesterov needs momentum > 0 and dampening 0, got momentum {} dampening {}",
                    cfg.momentum, cfg.dampening
                ),
            ));
        }
        if !(cfg.lr >= 0.0 && cfg.momentum >= 0.0 && cfg.weight_decay >= 0.0) {
            return Err(invalid(
                "Sgd",
                format!(
                    "lr, momentum and weight_decay must be ≥ 0, got {}, {}, {}",
                    cfg.lr, cfg.momentum, cfg.weight_decay
                ),
            ));
        }
        let buffers = groups.iter().map(|g| vec![None; g.params.len()]).collect();
        Ok(Self {
            groups,
            cfg,
            buffers,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let cfg = self.cfg;
        for (group, buffers) in self.groups.iter().zip(self.buffers.iter_mut()) {
            let lr = cfg.lr * group.lr_mult;
            let weight_decay = cfg.weight_decay * group.decay_mult;
            for ((_, var), buffer) in group.params.iter().zip(buffers.iter_mut()) {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                // candle leaves a variable's gradient attached to the forward graph (only
                // intermediate gradients are detached): a momentum buffer built from it would
                // chain every step's activations together and memory would grow without bound.
                let grad = &grad.detach();
                let param = &var.as_tensor().detach();
                let mut direction = if weight_decay != 0.0 {
                    (grad + (param * weight_decay)?)?
                } else {
                    grad.clone()
                };
                if cfg.momentum != 0.0 {
                    let next = match buffer.take() {
                        None => direction.copy()?,
                        Some(b) => ((b * cfg.momentum)? + (&direction * (1.0 - cfg.dampening))?)?,
                    };
                    direction = if cfg.nesterov {
                        (direction + (&next * cfg.momentum)?)?
                    } else {
                        next.clone()
                    };
                    *buffer = Some(next);
                }
                var.set(&(param - (direction * lr)?)?)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::new();
        for (group, buffers) in self.groups.iter().zip(&self.buffers) {
            for ((name, _), buffer) in group.params.iter().zip(buffers) {
                if let Some(b) = buffer {
                    state.insert(format!("{name}.momentum_buffer"), b.copy()?);
                }
            }
        }
        Ok(state)
    }

    fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        check_no_unknown_keys(state, &self.groups)?;
        let mut loaded = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let mut buffers = Vec::with_capacity(group.params.len());
            for (name, var) in &group.params {
                buffers.push(take_buffer(state, name, "momentum_buffer", var)?);
            }
            loaded.push(buffers);
        }
        self.buffers = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::graph_attached_steps;
    use super::*;

    #[test]
    fn momentum_buffers_hold_no_graph_across_steps() {
        let cfg = SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-4,
            ..SgdConfig::default()
        };
        let mut sgd = None;
        graph_attached_steps(3, |w, grads| {
            let sgd = sgd.get_or_insert_with(|| {
                Sgd::new(vec![ParamGroup::new(vec![("w".into(), w.clone())])], cfg).unwrap()
            });
            sgd.step(grads).unwrap();
            let buffer: &Tensor = sgd.buffers[0][0].as_ref().unwrap();
            assert!(!buffer.track_op(), "momentum buffer keeps a graph");
        });
    }
}
