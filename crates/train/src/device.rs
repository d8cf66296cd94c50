//! Device and precision selection: CPU by default, CUDA when the crate is built with the `cuda`
//! feature, f32 everywhere and bf16 as an option on CUDA.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Where a run computes: `cpu` or `cuda[:ordinal]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The CPU (candle's CPU backend; GEMMs and rtb-nn's kernels use every core).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceChoice {
    /// The candle device; an error naming the device when this build has no CUDA support or
    /// the GPU cannot be opened. One device per process: every call for the same GPU returns
    /// the same candle device (two `Device::new_cuda(0)` are different devices whose tensors
    /// cannot meet).
    pub fn device(&self) -> Result<Device> {
        static OPENED: std::sync::Mutex<Vec<(usize, Device)>> = std::sync::Mutex::new(Vec::new());
        match *self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(ordinal) => {
                let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((_, device)) = opened.iter().find(|(o, _)| *o == ordinal) {
                    return Ok(device.clone());
                }
                if !cfg!(feature = "cuda") {
                    return Err(TrainError::Device {
                        device: self.to_string(),
                        message: "this build has no CUDA support: rebuild with `--features cuda` \
                                  (needs nvcc)"
                            .into(),
                    });
                }
                let device = Device::new_cuda(ordinal).map_err(|err| TrainError::Device {
                    device: self.to_string(),
                    message: err.to_string(),
                })?;
                opened.push((ordinal, device.clone()));
                Ok(device)
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(0) => f.write_str("cuda"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = TrainError;

    fn from_str(value: &str) -> Result<Self> {
        let bad = || {
            TrainError::config(
                "device",
                format!("{value:?} is not a device: use cpu, cuda or cuda:N"),
            )
        };
        match value {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = TrainError;
    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(value: DeviceChoice) -> Self {
        value.to_string()
    }
}

/// The floating-point type of the activations. The weights, the gradients, the optimizer state
/// and the checkpoints are f32 in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default, and the only choice on the CPU).
    #[default]
    F32,
    /// bf16 autocast on CUDA: activations in bfloat16, each op casting the f32 weights it
    /// reads to bf16 (`rtb_nn::autocast`), norms reducing in f32, losses and box geometry in
    /// f32. bf16 has f32's exponent range, so no loss scaling is needed.
    Bf16,
}

impl Precision {
    /// The candle dtype of the activations.
    pub fn compute_dtype(&self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// Checks that this precision is supported on `device` (bf16 only on CUDA).
    pub fn check(&self, device: &Device) -> Result<()> {
        if *self == Precision::Bf16 && !device.is_cuda() {
            return Err(TrainError::config(
                "precision",
                "bf16 autocast is supported on CUDA only (candle's CPU backend has no bf16 \
                 matrix product); use f32 on the CPU",
            ));
        }
        Ok(())
    }
}

impl FromStr for Precision {
    type Err = TrainError;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(TrainError::config(
                "precision",
                format!("{other:?} is not a precision: use f32 or bf16"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for text in ["cpu", "cuda", "cuda:3"] {
            let choice: DeviceChoice = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!(
            "cuda:0".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("cuda:N"), "{err}");
        let json = serde_json::to_string(&DeviceChoice::Cuda(1)).unwrap();
        assert_eq!(json, "\"cuda:1\"");
        assert_eq!(
            serde_json::from_str::<DeviceChoice>(&json).unwrap(),
            DeviceChoice::Cuda(1)
        );
    }

    #[test]
    fn cpu_is_f32_only_and_cuda_needs_the_feature() {
        assert!(Precision::F32.check(&Device::Cpu).is_ok());
        let err = Precision::Bf16.check(&Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("CUDA only"), "{err}");
        if !cfg!(feature = "cuda") {
            let err = DeviceChoice::Cuda(0).device().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        assert!(DeviceChoice::Cpu.device().unwrap().is_cpu());
    }
}
