//! An architecture registered from outside the crate (as a user's program would) shows up in
//! every listing: presets, layouts, weight import, costs.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rtb_models::backbone::{BackboneOutput, Features, FreezeGroup, ParamKind, Parameter};
use rtb_models::registry::{self, Architecture, WeightLayout};
use rtb_models::weights::canonicalize;
use rtb_models::{ArchConfig, Backbone, Freeze, Mode, ModelError, init::trainable_builder};

/// A backbone defined outside the crate: four strided 1×1 "stages" over a patchify stem.
#[derive(Debug)]
struct Toy {
    cfg: ToyConfig,
    weights: Vec<Tensor>,
    freeze: Freeze,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ToyConfig {
    width: usize,
}

struct ToyArch;

fn is_toy(keys: &[&str]) -> bool {
    keys.iter().any(|k| k.starts_with("toy_stage0."))
}

fn is_legacy_toy(keys: &[&str]) -> bool {
    keys.iter().any(|k| k.starts_with("old.stage0."))
}

fn legacy_to_toy(
    _: &str,
    tensors: Vec<(String, Tensor)>,
) -> rtb_models::Result<Vec<(String, Tensor)>> {
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (k.replace("old.stage", "toy_stage"), t))
        .collect())
}

impl Architecture for ToyArch {
    type Config = ToyConfig;

    fn family(&self) -> &'static str {
        "toy"
    }
    fn description(&self) -> &'static str {
        "a test backbone"
    }
    fn presets(&self) -> Vec<(&'static str, ToyConfig)> {
        vec![("toy_small", ToyConfig { width: 2 })]
    }
    fn build(&self, cfg: &ToyConfig, vb: &VarBuilder<'_>) -> rtb_models::Result<Box<dyn Backbone>> {
        let weights = (0..4)
            .map(|i| {
                let cin = if i == 0 { 3 } else { cfg.width };
                vb.get((cfg.width, cin), &format!("toy_stage{i}.weight"))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Box::new(Toy {
            cfg: cfg.clone(),
            weights,
            freeze: Freeze::none(),
        }))
    }
    fn num_classes(&self, _: &ToyConfig) -> Option<usize> {
        None
    }
    fn with_num_classes(&self, cfg: &ToyConfig, _: Option<usize>) -> ToyConfig {
        cfg.clone()
    }
    fn classifier_key(&self) -> &'static str {
        "toy_head.weight"
    }
    fn layouts(&self) -> Vec<WeightLayout> {
        vec![
            WeightLayout {
                name: "toy",
                description: "toy names",
                detect: is_toy,
                convert: registry::identity,
            },
            WeightLayout {
                name: "legacy_toy",
                description: "old toy names",
                detect: is_legacy_toy,
                convert: legacy_to_toy,
            },
        ]
    }
    fn forward_macs(&self, cfg: &ToyConfig, height: usize, width: usize) -> f64 {
        (3 * cfg.width * height * width / 16) as f64
    }
}

impl Backbone for Toy {
    fn arch_name(&self) -> String {
        "toy".into()
    }
    fn out_channels(&self) -> [usize; 4] {
        [self.cfg.width; 4]
    }
    fn num_features(&self) -> Option<usize> {
        None
    }
    fn num_classes(&self) -> Option<usize> {
        None
    }
    fn forward(&self, xs: &Tensor, _: Mode) -> rtb_models::Result<BackboneOutput> {
        let mut levels = Vec::new();
        let mut xs = xs.clone();
        for (i, w) in self.weights.iter().enumerate() {
            let factor = if i == 0 { 4 } else { 2 };
            let (n, c, h, wd) = xs.dims4()?;
            xs = xs.reshape((n, c, h / factor, factor, wd / factor, factor))?;
            xs = xs.mean(5)?.mean(3)?;
            let flat = xs.permute((0, 2, 3, 1))?.reshape(((), c))?;
            let out = flat.matmul(&w.t()?)?;
            xs = out
                .reshape((n, h / factor, wd / factor, self.cfg.width))?
                .permute((0, 3, 1, 2))?
                .contiguous()?;
            levels.push(xs.clone());
        }
        let levels: [Tensor; 4] = levels.try_into().expect("four stages");
        Ok(BackboneOutput {
            features: Features { levels },
            pooled: None,
            logits: None,
        })
    }
    fn parameters(&self) -> Vec<Parameter> {
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| Parameter {
                name: format!("toy_stage{i}.weight"),
                tensor: w.clone(),
                kind: ParamKind::Weight,
                group: if i == 0 {
                    FreezeGroup::Stem
                } else {
                    FreezeGroup::Stage(i)
                },
            })
            .collect()
    }
    fn freeze(&self) -> Freeze {
        self.freeze
    }
    fn set_freeze(&mut self, freeze: Freeze) {
        self.freeze = freeze;
    }
}

#[test]
fn an_architecture_registered_from_outside_is_listed_everywhere() {
    registry::register(ToyArch).unwrap();
    // Registering twice, or a taken preset name, is refused.
    let err = registry::register(ToyArch).unwrap_err().to_string();
    assert!(err.contains("toy") && err.contains("already"), "{err}");
    assert!(registry::families().contains(&"toy".to_string()));
    assert!(registry::preset_names().contains(&"toy_small".to_string()));
    let arch = ArchConfig::from_name("toy_small").unwrap();
    assert_eq!(arch.family(), "toy");
    assert_eq!(arch.forward_macs(32, 32).unwrap(), (3 * 2 * 64) as f64);
    assert_eq!(arch.typed(&ToyArch).unwrap().width, 2);
    let json = serde_json::to_string(&arch).unwrap();
    assert_eq!(json, r#"{"family":"toy","width":2}"#);

    // Built with seeded variables; C2..C5 at strides 4..32.
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 0, DType::F32, &Device::Cpu);
    let model = arch.build(&vb).unwrap();
    let xs = Tensor::ones((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let out = model.forward(&xs, Mode::Inference).unwrap();
    assert_eq!(out.features.c5().dims(), &[1, 2, 2, 2]);
    assert_eq!(model.trainable_vars().len(), 4);

    // Weights in its legacy layout are recognised and converted.
    let legacy: Vec<(String, Tensor)> = (0..4)
        .map(|i| {
            let cin = if i == 0 { 3 } else { 2 };
            (
                format!("module.old.stage{i}.weight"),
                Tensor::zeros((2, cin), DType::F32, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let canonical = canonicalize("legacy.pth", legacy).unwrap();
    assert_eq!(canonical.layout.family, "toy");
    assert_eq!(canonical.layout.name, "legacy_toy");
    let tensors: BTreeMap<String, Tensor> = canonical.tensors;
    rtb_models::check_state_dict(&arch, "legacy.pth", &tensors).unwrap();
    let model = rtb_models::from_state_dict(&arch, "legacy.pth", tensors, DType::F32, &Device::Cpu)
        .unwrap();
    assert!(
        model.trainable_vars().is_empty(),
        "plain tensors do not train"
    );
    // A config of another family is not a toy config.
    let err = ArchConfig::from_name("resnet_tiny")
        .unwrap()
        .typed(&ToyArch)
        .unwrap_err();
    assert!(matches!(err, ModelError::Arch { .. }), "{err}");
}
