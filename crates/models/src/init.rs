//! Building trainable models: a `VarBuilder` whose variables live in a `VarMap`, take their
//! values from a state dict where it has them and are otherwise drawn from an explicit seed.
//!
//! candle's own `VarMap` initialises from an unseeded generator; here each variable's draw
//! depends only on the seed and the variable's key, so the same seed gives the same bytes
//! whatever order the model asks for its variables.

use std::collections::HashMap;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// The `SimpleBackend` behind [`trainable_builder`].
struct SeededVarMap {
    varmap: VarMap,
    source: HashMap<String, Tensor>,
    seed: u64,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the key, mixed with the seed.
fn key_seed(seed: u64, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut state = hash ^ seed.rotate_left(17);
    splitmix64(&mut state)
}

/// Uniform in [0, 1) with 53 random bits.
fn uniform(state: &mut u64) -> f64 {
    (splitmix64(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// Standard normal by Box–Muller.
fn normal(state: &mut u64) -> f64 {
    let u1 = 1.0 - uniform(state); // (0, 1]: ln is finite
    let u2 = uniform(state);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Draws a tensor of `shape` from `init` with a generator seeded by `seed`.
pub fn draw(
    init: Init,
    shape: &Shape,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let count = shape.elem_count();
    let mut state = seed;
    let values: Vec<f64> = match init {
        Init::Const(value) => vec![value; count],
        Init::Randn { mean, stdev } => (0..count)
            .map(|_| mean + stdev * normal(&mut state))
            .collect(),
        Init::Uniform { lo, up } => (0..count)
            .map(|_| lo + (up - lo) * uniform(&mut state))
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape) as f64;
            let std = non_linearity.gain() / fan.max(1.0).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..count).map(|_| std * normal(&mut state)).collect(),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..count)
                        .map(|_| bound * (2.0 * uniform(&mut state) - 1.0))
                        .collect()
                }
            }
        }
    };
    Tensor::from_vec(values, shape.clone(), device)?.to_dtype(dtype)
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable {name}: requested shape {shape:?}, the map holds {:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let value = match self.source.get(name) {
            Some(tensor) => {
                if tensor.shape() != &shape {
                    candle_core::bail!(
                        "weight {name}: the model expects shape {shape:?}, the weights have {:?}",
                        tensor.shape()
                    );
                }
                tensor.to_dtype(dtype)?.to_device(device)?.copy()?
            }
            None => draw(init, &shape, key_seed(self.seed, name), dtype, device)?,
        };
        let var = Var::from_tensor(&value)?;
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(device),
            None => match self.source.get(name) {
                Some(tensor) => tensor.to_dtype(dtype)?.to_device(device),
                None => candle_core::bail!("no variable or weight named {name}"),
            },
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.source.contains_key(name)
            || self
                .varmap
                .data()
                .lock()
                .map(|data| data.contains_key(name))
                .unwrap_or(false)
    }
}

/// A `VarBuilder` for a model that trains: every tensor the model asks for becomes a `Var` in
/// `varmap` (so `VarMap::save` writes the whole model, BatchNorm running statistics
/// included), copied from `weights` when it has that key (shape-checked) and otherwise drawn
/// from the model's init hint with a generator seeded by `seed` and the key.
///
/// Check that `weights` fits the model first ([`crate::weights::check_keys`]): keys the model
/// never asks for are not reported here.
pub fn trainable_builder(
    varmap: &VarMap,
    weights: HashMap<String, Tensor>,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            source: weights,
            seed,
        }),
        dtype,
        device.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_whatever_the_order() {
        let device = Device::Cpu;
        let build = |order: &[&str]| {
            let varmap = VarMap::new();
            let vb = trainable_builder(&varmap, HashMap::new(), 7, DType::F32, &device);
            for name in order {
                vb.get_with_hints(
                    (3, 4),
                    name,
                    Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )
                .unwrap();
            }
            let data = varmap.data().lock().unwrap();
            let a: Vec<Vec<f32>> = data["a"].as_tensor().to_vec2().unwrap();
            let b: Vec<Vec<f32>> = data["b"].as_tensor().to_vec2().unwrap();
            (a, b)
        };
        assert_eq!(build(&["a", "b"]), build(&["b", "a"]));
        let (a, b) = build(&["a", "b"]);
        assert_ne!(a, b, "different keys draw different values");
    }

    #[test]
    fn draws_have_the_requested_moments() {
        let t = draw(
            Init::Randn {
                mean: 1.0,
                stdev: 2.0,
            },
            &Shape::from(20_000),
            3,
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        let v: Vec<f64> = t.to_vec1().unwrap();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn weights_are_copied_and_shape_checked() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let mut weights = HashMap::new();
        weights.insert(
            "w".to_string(),
            Tensor::new(&[1f32, 2., 3.], &device).unwrap(),
        );
        let vb = trainable_builder(&varmap, weights, 0, DType::F32, &device);
        let w = vb.get_with_hints(3, "w", Init::Const(0.0)).unwrap();
        assert!(w.is_variable());
        assert_eq!(w.to_vec1::<f32>().unwrap(), [1., 2., 3.]);
        let err = vb.get_with_hints(4, "w2", Init::Const(0.0)).map(|_| ());
        assert!(err.is_ok());
        let varmap = VarMap::new();
        let mut weights = HashMap::new();
        weights.insert(
            "w".to_string(),
            Tensor::zeros(2, DType::F32, &device).unwrap(),
        );
        let vb = trainable_builder(&varmap, weights, 0, DType::F32, &device);
        let err = vb.get_with_hints(3, "w", Init::Const(0.0)).unwrap_err();
        assert!(err.to_string().contains("weight w"), "{err}");
    }
}
