//! `torch.optim.AdamW` (the single-tensor path PyTorch takes on the CPU).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor};

use super::{Optimizer, ParamGroup, check_no_unknown_keys, take_buffer, validate_groups};
use crate::error::{NnError, invalid};

/// Hyper-parameters of [`AdamW`], PyTorch's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Coefficients of the running averages of the gradient and its square.
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: `p ← p·(1 − lr·weight_decay)` before the Adam update.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

#[derive(Debug, Clone)]
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// `torch.optim.AdamW`: `p ← p·(1 − lr·wd)`; `m ← lerp(m, g, 1 − β₁)`;
/// `v ← β₂·v + (1 − β₂)·g²`; `p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`, with a step
/// count `t` per parameter.
#[derive(Debug)]
pub struct AdamW {
    groups: Vec<ParamGroup>,
    cfg: AdamWConfig,
    moments: Vec<Vec<Option<Moments>>>,
}

impl AdamW {
    /// An optimizer over `groups`; rejects betas outside [0, 1), negative lr/eps/decay and
    /// duplicate parameter names.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamWConfig) -> Result<Self> {
        validate_groups(&groups)?;
        let (b1, b2) = cfg.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(invalid(
                "AdamW",
                format!("betas must be in [0, 1), got ({b1}, {b2})"),
            ));
        }
        if !(cfg.lr >= 0.0 && cfg.eps >= 0.0 && cfg.weight_decay >= 0.0) {
            return Err(invalid(
                "AdamW",
                format!(
                    "lr, eps and weight_decay must be ≥ 0, got {}, {}, {}",
                    cfg.lr, cfg.eps, cfg.weight_decay
                ),
            ));
        }
        let moments = groups.iter().map(|g| vec![None; g.params.len()]).collect();
        Ok(Self {
            groups,
            cfg,
            moments,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let cfg = self.cfg;
        let (beta1, beta2) = cfg.betas;
        for (group, moments) in self.groups.iter().zip(self.moments.iter_mut()) {
            let lr = cfg.lr * group.lr_mult;
            let weight_decay = cfg.weight_decay * group.decay_mult;
            for ((_, var), slot) in group.params.iter().zip(moments.iter_mut()) {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                // Detached for the reason given in `Sgd::step`: the moments outlive the step.
                let grad = &grad.detach();
                let state = match slot.take() {
                    Some(state) => state,
                    None => Moments {
                        step: 0,
                        exp_avg: grad.zeros_like()?,
                        exp_avg_sq: grad.zeros_like()?,
                    },
                };
                let step = state.step + 1;
                let param = (var.as_tensor().detach() * (1.0 - lr * weight_decay))?;
                // PyTorch's `lerp_(g, w)` with w = 1 − β₁ < 0.5 computes m + w·(g − m).
                let exp_avg = (&state.exp_avg + ((grad - &state.exp_avg)? * (1.0 - beta1))?)?;
                let exp_avg_sq = ((&state.exp_avg_sq * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                let bias_correction1 = 1.0 - beta1.powi(step as i32);
                let bias_correction2 = 1.0 - beta2.powi(step as i32);
                let step_size = lr / bias_correction1;
                let denom = ((exp_avg_sq.sqrt()? / bias_correction2.sqrt())? + cfg.eps)?;
                let update = ((&exp_avg / denom)? * step_size)?;
                var.set(&(param - update)?)?;
                *slot = Some(Moments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                });
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
        for (group, moments) in self.groups.iter().zip(&self.moments) {
            for ((name, _), slot) in group.params.iter().zip(moments) {
                if let Some(m) = slot {
                    state.insert(format!("{name}.exp_avg"), m.exp_avg.copy()?);
                    state.insert(format!("{name}.exp_avg_sq"), m.exp_avg_sq.copy()?);
                    // i64 keeps step counts exact.
                    state.insert(
                        format!("{name}.step"),
                        Tensor::new(&[m.step as i64], &Device::Cpu)?,
                    );
                }
            }
        }
        Ok(state)
    }

    fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        check_no_unknown_keys(state, &self.groups)?;
        let mut loaded = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let mut moments = Vec::with_capacity(group.params.len());
            for (name, var) in &group.params {
                let exp_avg = take_buffer(state, name, "exp_avg", var)?;
                let exp_avg_sq = take_buffer(state, name, "exp_avg_sq", var)?;
                let step = state.get(&format!("{name}.step"));
                moments.push(match (exp_avg, exp_avg_sq, step) {
                    (None, None, None) => None,
                    (Some(exp_avg), Some(exp_avg_sq), Some(step)) => {
                        let step = step.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
                        match step.as_slice() {
                            [s] if *s >= 0 => Some(Moments {
                                step: *s as u64,
                                exp_avg,
                                exp_avg_sq,
                            }),
                            other => {
                                return Err(NnError::State {
                                    message: format!(
                                        "{name}.step must hold one count ≥ 0, got {other:?}"
                                    ),
                                }
                                .into());
                            }
                        }
                    }
                    _ => {
                        return Err(NnError::State {
                            message: format!(
                                "{name}: exp_avg, exp_avg_sq and step must be saved together"
                            ),
                        }
                        .into());
                    }
                });
            }
            loaded.push(moments);
        }
        self.moments = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::graph_attached_steps;
    use super::*;

    #[test]
    fn moments_hold_no_graph_across_steps() {
        let mut adamw = None;
        graph_attached_steps(3, |w, grads| {
            let adamw = adamw.get_or_insert_with(|| {
                let group = ParamGroup::new(vec![("w".into(), w.clone())]);
                AdamW::new(vec![group], AdamWConfig::default()).unwrap()
            });
            adamw.step(grads).unwrap();
            let moments = adamw.moments[0][0].as_ref().unwrap();
            assert!(!moments.exp_avg.track_op(), "exp_avg keeps a graph");
            assert!(!moments.exp_avg_sq.track_op(), "exp_avg_sq keeps a graph");
        });
    }
}
