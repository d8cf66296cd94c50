//! Parity with transformers' `UperNetForSemanticSegmentation` (tiny Swin backbone, seeded
//! random weights, non-trivial BatchNorm statistics) and with mmseg's loss and sliding-window
//! inference written out in torch (`tests/golden/make_golden.py`).

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{assert_close, golden, load, swin_arch, tiny_no_dropout};
use rtb_models::Mode;
use rtb_models::init::trainable_builder;
use rtb_segmentation::weights::{from_weights, split_upernet};
use rtb_segmentation::{HeadLayout, Regime, SlideConfig, UperNet, UperNetConfig, load_upernet};

const WEIGHTS: &str = "upernet_swin_tiny.safetensors";
const GOLDEN: &str = "upernet_golden.safetensors";

fn eval_model(cfg: &UperNetConfig) -> UperNet {
    let arch = swin_arch();
    let mut weights = load_upernet(&golden(WEIGHTS)).unwrap();
    assert_eq!(weights.layout, HeadLayout::Transformers);
    weights.fit(&arch).unwrap();
    from_weights(cfg, &arch, WEIGHTS, &weights, (DType::F32, &Device::Cpu)).unwrap()
}

fn trainable_model(cfg: &UperNetConfig) -> (UperNet, VarMap) {
    let arch = swin_arch();
    let mut weights = load_upernet(&golden(WEIGHTS)).unwrap();
    weights.fit(&arch).unwrap();
    let state: HashMap<String, Tensor> = weights.state_dict().into_iter().collect();
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, state, 0, DType::F32, &Device::Cpu);
    let mut model = UperNet::build(cfg, &arch, &vb).unwrap();
    model.set_regime(Regime::FullNetwork);
    (model, varmap)
}

#[test]
fn heads_match_transformers_on_given_features() {
    let model = eval_model(&UperNetConfig::tiny());
    let gold = load(GOLDEN);
    let feats: Vec<Tensor> = (2..6)
        .map(|i| gold[&format!("head.c{i}")].clone())
        .collect();
    let decode = model
        .decode_head()
        .forward(&feats, Mode::Inference, 0)
        .unwrap();
    assert_close("decode head", &decode, &gold["head.decode"], 1e-4);
    let aux = model
        .auxiliary_head()
        .unwrap()
        .forward(&feats[2], Mode::Inference, 0)
        .unwrap();
    assert_close("auxiliary head", &aux, &gold["head.aux"], 1e-4);
    // Eval mode (graph kept) gives the same numbers.
    let decode_eval = model.decode_head().forward(&feats, Mode::Eval, 0).unwrap();
    assert_close(
        "decode head, eval",
        &decode_eval,
        &gold["head.decode"],
        1e-4,
    );
}

#[test]
fn whole_model_with_swin_matches_transformers() {
    let model = eval_model(&UperNetConfig::tiny());
    let gold = load(GOLDEN);
    let logits = model.forward(&gold["whole.input"]).unwrap();
    assert_close("whole model", &logits, &gold["whole.logits"], 1e-4);
}

#[test]
fn sizes_off_the_divisor_are_padded_and_cropped_back() {
    let model = eval_model(&UperNetConfig::tiny());
    let gold = load(GOLDEN);
    let logits = model.forward(&gold["padded.input"]).unwrap();
    assert_eq!(logits.dims(), &[1, 5, 40, 56]);
    assert_close("padded 40×56", &logits, &gold["padded.logits"], 1e-4);
}

#[test]
fn slide_inference_matches_mmseg() {
    let model = eval_model(&UperNetConfig::tiny());
    let gold = load(GOLDEN);
    let cfg = SlideConfig {
        crop: (32, 32),
        stride: (21, 21),
    };
    let logits = model.slide_inference(&gold["slide.input"], &cfg).unwrap();
    assert_eq!(logits.dims(), &[1, 5, 48, 80]);
    assert_close("slide 48×80", &logits, &gold["slide.logits"], 1e-4);
}

/// The torch names of the gradients saved by make_golden.py, with rtb's.
fn rtb_name(torch_name: &str) -> String {
    match torch_name {
        "backbone.swin.embeddings.patch_embeddings.projection.weight" => {
            "backbone.patch_embed.proj.weight".to_string()
        }
        "backbone.hidden_states_norms.stage4.weight" => "backbone.norm3.weight".to_string(),
        other => other.to_string(),
    }
}

#[test]
fn training_losses_gradients_and_statistics_match_mmseg() {
    let gold = load(GOLDEN);
    let (model, _varmap) = trainable_model(&tiny_no_dropout());
    let losses = model
        .forward_train(&gold["whole.input"], &gold["train.labels"], 11)
        .unwrap();
    let scalar = |t: &Tensor| t.reshape(1).unwrap();
    assert_close(
        "decode loss",
        &scalar(&losses.decode),
        &gold["train.decode"],
        1e-5,
    );
    let aux = losses.auxiliary.as_ref().unwrap();
    assert_close(
        "auxiliary loss (× 0.4)",
        &scalar(aux),
        &gold["train.aux"],
        1e-5,
    );
    assert_close(
        "total loss",
        &scalar(&losses.total),
        &gold["train.total"],
        1e-5,
    );

    let grads = losses.total.backward().unwrap();
    let vars: HashMap<String, _> = model.trainable_vars().into_iter().collect();
    let mut checked = 0;
    for (key, expected) in gold.iter().filter(|(k, _)| k.starts_with("grad.")) {
        let name = rtb_name(&key["grad.".len()..]);
        let var = vars.get(&name).unwrap_or_else(|| {
            let known: Vec<&String> = vars.keys().filter(|k| k.contains("norm")).collect();
            panic!("no variable {name} among {known:?}")
        });
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("gradient of {name}"), grad, expected, 1e-4);
        checked += 1;
    }
    assert_eq!(checked, 10);

    // Running statistics after one train-mode forward (momentum 0.1, unbiased variance).
    let params: HashMap<String, Tensor> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.tensor))
        .collect();
    for (key, expected) in gold.iter().filter(|(k, _)| k.starts_with("stat.")) {
        let name = &key["stat.".len()..];
        assert_close(&format!("statistic {name}"), &params[name], expected, 1e-5);
    }
}

#[test]
fn loss_over_valid_pixels_matches_avg_non_ignore() {
    let gold = load(GOLDEN);
    let mut cfg = tiny_no_dropout();
    cfg.avg_non_ignore = true;
    let (model, _varmap) = trainable_model(&cfg);
    let losses = model
        .forward_train(&gold["whole.input"], &gold["train.labels"], 11)
        .unwrap();
    let scalar = |t: &Tensor| t.reshape(1).unwrap();
    assert_close(
        "decode loss, valid pixels",
        &scalar(&losses.decode),
        &gold["train.decode_valid"],
        1e-5,
    );
    assert_close(
        "auxiliary loss, valid pixels",
        &scalar(losses.auxiliary.as_ref().unwrap()),
        &gold["train.aux_valid"],
        1e-5,
    );
}

#[test]
fn mmseg_head_names_load_the_same_heads() {
    // The transformers fixture renamed to mmseg's head names (conv_seg, bn) splits into the
    // same head tensors.
    let file = rtb_models::weights::read_weights(&golden(WEIGHTS), None).unwrap();
    let renamed: Vec<(String, Tensor)> = file
        .tensors
        .iter()
        .map(|(k, t)| {
            let k = if k.starts_with("backbone.") {
                k.clone()
            } else {
                k.replace(".classifier.", ".conv_seg.")
                    .replace(".batch_norm.", ".bn.")
            };
            (k, t.clone())
        })
        .collect();
    let mmseg = split_upernet("renamed", renamed).unwrap();
    assert_eq!(mmseg.layout, HeadLayout::Mmseg);
    let hf = load_upernet(&golden(WEIGHTS)).unwrap();
    assert_eq!(
        mmseg.heads.keys().collect::<Vec<_>>(),
        hf.heads.keys().collect::<Vec<_>>()
    );
    assert!(
        mmseg
            .dropped
            .iter()
            .any(|k| k.ends_with("num_batches_tracked"))
    );
}
