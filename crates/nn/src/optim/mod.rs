//! Optimizers with PyTorch's update rules, parameter groups, and state that saves and loads.
//!
//! - [`Sgd`]: `torch.optim.SGD` (momentum, dampening, nesterov, coupled weight decay).
//! - [`AdamW`]: `torch.optim.AdamW` (decoupled weight decay, bias correction; no amsgrad).
//! - [`ParamGroup`]: variables sharing an lr multiplier and a weight-decay multiplier, as
//!   mmcv's `paramwise_cfg` produces them; [`ParamGroupsBuilder`] builds them from parameter
//!   names (no decay for norms, biases and position tables).
//! - The learning rate is set before each step ([`Optimizer::set_learning_rate`], usually from
//!   [`crate::schedule`]); group `g` uses `lr · g.lr_mult` and `weight_decay · g.decay_mult`.
//! - State: [`Optimizer::state_tensors`] / [`Optimizer::load_state_tensors`] give and take
//!   named tensors (keys `<param name>.<buffer>`), and [`save_state`] / [`load_state`] write
//!   them as one safetensors file; a resumed run continues bit for bit.
//!
//! ```
//! use candle_core::{Device, Var};
//! use rtb_nn::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};
//! let w = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
//! let cfg = SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() };
//! let mut sgd = Sgd::new(vec![ParamGroup::new(vec![("w".into(), w.clone())])], cfg).unwrap();
//! for _ in 0..3 {
//!     let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
//!     sgd.step(&loss.backward().unwrap()).unwrap();
//! }
//! let v: Vec<f64> = w.as_tensor().to_vec1().unwrap();
//! assert!(v[0].abs() < 1.0 && v[1].abs() < 2.0);
//! ```

mod adamw;
mod groups;
mod sgd;

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

pub use adamw::{AdamW, AdamWConfig};
pub use groups::{GroupRule, ParamGroupsBuilder, ParamRole};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{NnError, invalid};

/// Variables that share hyper-parameter multipliers.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// Named variables; names key the saved state and must be unique across groups.
    pub params: Vec<(String, Var)>,
    /// Multiplier of the optimizer's learning rate.
    pub lr_mult: f64,
    /// Multiplier of the optimizer's weight decay.
    pub decay_mult: f64,
}

impl ParamGroup {
    /// A group with both multipliers 1.
    pub fn new(params: Vec<(String, Var)>) -> Self {
        Self {
            params,
            lr_mult: 1.0,
            decay_mult: 1.0,
        }
    }

    /// Sets the learning-rate multiplier.
    pub fn with_lr_mult(mut self, lr_mult: f64) -> Self {
        self.lr_mult = lr_mult;
        self
    }

    /// Sets the weight-decay multiplier.
    pub fn with_decay_mult(mut self, decay_mult: f64) -> Self {
        self.decay_mult = decay_mult;
        self
    }
}

/// What the training loop needs from an optimizer.
pub trait Optimizer {
    /// Updates every variable that has a gradient in `grads` (others are skipped, and their
    /// state is untouched, as PyTorch skips parameters whose `.grad` is `None`).
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The base learning rate of the next step.
    fn learning_rate(&self) -> f64;
    /// Sets the base learning rate of the next steps.
    fn set_learning_rate(&mut self, lr: f64);
    /// The parameter groups.
    fn groups(&self) -> &[ParamGroup];
    /// The state as named tensors (`<param name>.<buffer>`).
    fn state_tensors(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores state produced by [`Optimizer::state_tensors`] of an optimizer with the same
    /// parameter names and shapes.
    fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// Writes the optimizer's state to a safetensors file.
pub fn save_state(optimizer: &dyn Optimizer, path: &Path) -> Result<()> {
    candle_core::safetensors::save(&optimizer.state_tensors()?, path)
}

/// Reads a safetensors file written by [`save_state`] into the optimizer (tensors are moved to
/// each parameter's device).
pub fn load_state(optimizer: &mut dyn Optimizer, path: &Path) -> Result<()> {
    let state = candle_core::safetensors::load(path, &Device::Cpu)?;
    optimizer.load_state_tensors(&state)
}

/// Checks that parameter names are unique and hyper-parameters finite.
fn validate_groups(groups: &[ParamGroup]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for group in groups {
        if !(group.lr_mult.is_finite() && group.decay_mult.is_finite()) {
            return Err(invalid(
                "optimizer",
                format!(
                    "group multipliers must be finite, got lr_mult {} decay_mult {}",
                    group.lr_mult, group.decay_mult
                ),
            ));
        }
        for (name, _) in &group.params {
            if !seen.insert(name.as_str()) {
                return Err(invalid(
                    "optimizer",
                    format!("parameter name {name:?} appears twice"),
                ));
            }
        }
    }
    Ok(())
}

/// Takes `<name>.<buffer>` from `state`, on the parameter's device and dtype, checking its
/// shape.
fn take_buffer(
    state: &HashMap<String, Tensor>,
    name: &str,
    buffer: &str,
    like: &Var,
) -> Result<Option<Tensor>> {
    let key = format!("{name}.{buffer}");
    match state.get(&key) {
        None => Ok(None),
        Some(t) if t.dims() != like.dims() => Err(NnError::State {
            message: format!(
                "{key} has shape {:?}, the parameter has {:?}",
                t.dims(),
                like.dims()
            ),
        }
        .into()),
        Some(t) => Ok(Some(t.to_device(like.device())?.to_dtype(like.dtype())?)),
    }
}

/// Rejects state keys that name no parameter of this optimizer (a sign of loading the wrong
/// file).
fn check_no_unknown_keys(state: &HashMap<String, Tensor>, groups: &[ParamGroup]) -> Result<()> {
    let names: std::collections::HashSet<&str> = groups
        .iter()
        .flat_map(|g| g.params.iter().map(|(n, _)| n.as_str()))
        .collect();
    for key in state.keys() {
        let known = key
            .rsplit_once('.')
            .is_some_and(|(name, _)| names.contains(name));
        if !known {
            return Err(NnError::State {
                message: format!("key {key:?} names no parameter of this optimizer"),
            }
            .into());
        }
    }
    Ok(())
}

/// What the optimizer tests share.
#[cfg(test)]
mod test_support {
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Var};

    /// A weight `w` and the gradients of `(w · exp(2v)).sum()` at each of `steps` steps, with
    /// `v` another variable: candle leaves `w`'s gradient attached to the forward graph (the
    /// trap an optimizer's state must not keep alive); each step's store goes to `step`.
    pub(super) fn graph_attached_steps(steps: usize, mut step: impl FnMut(&Var, &GradStore)) {
        let w = Var::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let v = Var::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        for _ in 0..steps {
            let x = (v.as_tensor() * 2.0).unwrap().exp().unwrap();
            let loss = (w.as_tensor() * &x).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            assert!(
                grads.get(w.as_tensor()).unwrap().track_op(),
                "the trap being tested"
            );
            step(&w, &grads);
        }
    }
}
