//! Forward parity with timm 1.0.31, transformers 5.23 and mmdetection 3.3 (fixtures from
//! `tests/golden/make_golden*.py`): C2..C5 and logits within 1e-4 of the reference's scale.
//!
//! The full-size check (ResNet-50 and Swin-T at 224², ResNet-50 at 192×256) runs when
//! `RTB_FULL_PARITY_DIR` names a folder written by `make_golden.py --full`.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, golden, load};
use rtb_models::{ArchConfig, Backbone, Mode, ResNetConfig, SwinConfig, load_backbone};

const TOL: f64 = 1e-4;

fn check(
    model: &dyn Backbone,
    gold: &std::collections::HashMap<String, Tensor>,
    prefix: &str,
    with_logits: bool,
) {
    let input = &gold[&format!("{prefix}.input")];
    let out = model.forward(input, Mode::Inference).unwrap();
    for (i, level) in out.features.levels.iter().enumerate() {
        let name = format!("{prefix}.c{}", i + 2);
        assert_close(&name, level, &gold[&name], TOL);
    }
    if with_logits {
        let name = format!("{prefix}.logits");
        assert_close(
            &name,
            out.logits.as_ref().expect("logits"),
            &gold[&name],
            TOL,
        );
    }
}

fn resnet_tiny() -> ArchConfig {
    ArchConfig::from(ResNetConfig::tiny())
}

fn swin_tiny() -> ArchConfig {
    ArchConfig::from(SwinConfig::tiny())
}

#[test]
fn resnet_matches_timm_square_and_nonsquare() {
    let model = load_backbone(
        &resnet_tiny(),
        &golden("resnet_tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("resnet_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "square", true);
    check(model.as_ref(), &gold, "nonsquare", true);
}

#[test]
fn resnet_eval_mode_with_graph_equals_inference() {
    let model = load_backbone(
        &resnet_tiny(),
        &golden("resnet_tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("resnet_tiny_golden.safetensors");
    let input = &gold["nonsquare.input"];
    let a = model.forward(input, Mode::Eval).unwrap();
    let b = model.forward(input, Mode::Inference).unwrap();
    assert_close(
        "logits",
        a.logits.as_ref().unwrap(),
        b.logits.as_ref().unwrap(),
        0.0,
    );
}

#[test]
fn swin_matches_timm_square_and_nonsquare() {
    // 96²: the last stage fits in one window (shift dropped); 96×128: the timm rule per axis,
    // with padding in every stage.
    let model = load_backbone(
        &swin_tiny(),
        &golden("swin_tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "square", true);
    check(model.as_ref(), &gold, "nonsquare", true);
}

/// The convolutional stem (`stem_channels`) equals timm's Swin with its patch projection
/// swapped for the same 3×3 stride-2 convolutions and GELU (`make_golden_swin_stem.py`).
#[test]
fn swin_conv_stem_matches_timm_with_the_same_stem() {
    let arch = ArchConfig::from(SwinConfig {
        stem_channels: Some(4),
        ..SwinConfig::tiny()
    });
    let model = load_backbone(
        &arch,
        &golden("swin_stem_tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_stem_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "square", true);
    check(model.as_ref(), &gold, "nonsquare", true);
}

#[test]
fn swin_from_transformers_layout_equals_timm() {
    let model = load_backbone(
        &swin_tiny(),
        &golden("swin_tiny_transformers.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "square", true);
}

#[test]
fn swin_from_microsoft_checkpoint_equals_timm() {
    let model = load_backbone(
        &swin_tiny(),
        &golden("swin_tiny_microsoft.pth"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "square", true);
}

#[test]
fn swin_dense_rule_matches_transformers_backbone() {
    // transformers' SwinBackbone keeps the shift and the window at every size (pad, then
    // roll), as mmdetection's Swin does; its stage norms are our output norms. 128×160 pads
    // every stage; 96×224's last stage (3×7) fits in one window along H.
    let arch = ArchConfig::from(SwinConfig::tiny().into_dense(0.0));
    let model = load_backbone(
        &arch,
        &golden("swin_tiny_backbone_transformers.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_tiny_golden.safetensors");
    check(model.as_ref(), &gold, "dense", false);
    check(model.as_ref(), &gold, "dense_fit", false);
    let out = model
        .forward(&gold["dense.input"], Mode::Inference)
        .unwrap();
    assert!(out.pooled.is_none() && out.logits.is_none());
}

#[test]
fn swin_from_openmmlab_layout_matches_mmdet() {
    // mmdetection 3.3's SwinTransformer (mmseg 1.x's is the same code): its keys, its
    // patch-merging channel order (nn.Unfold's), padded windows and output norms.
    let arch = ArchConfig::from(SwinConfig::tiny().into_dense(0.0));
    let model = load_backbone(
        &arch,
        &golden("swin_tiny_openmmlab.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = load("swin_tiny_openmmlab_golden.safetensors");
    check(model.as_ref(), &gold, "dense", false);
    check(model.as_ref(), &gold, "dense_fit", false);
}

#[test]
fn swin_rejects_sizes_that_are_not_multiples_of_32() {
    let model = load_backbone(
        &swin_tiny(),
        &golden("swin_tiny.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let xs = Tensor::zeros((1, 3, 96, 100), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&xs, Mode::Inference).unwrap_err().to_string();
    assert!(
        err.contains("multiples of 32") && err.contains("100"),
        "{err}"
    );
}

fn full_check(dir: &Path, name: &str, arch: &ArchConfig, prefixes: &[&str]) {
    let model = load_backbone(
        arch,
        &dir.join(format!("{name}.safetensors")),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let gold = candle_core::safetensors::load(
        dir.join(format!("{name}_golden.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    for prefix in prefixes {
        check(model.as_ref(), &gold, prefix, true);
    }
}

#[test]
fn full_size_resnet50_and_swin_t_match_timm_when_requested() {
    let Some(dir) = std::env::var_os("RTB_FULL_PARITY_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    full_check(
        dir,
        "resnet50",
        &ArchConfig::from_name("resnet50").unwrap(),
        &["square", "nonsquare"],
    );
    full_check(
        dir,
        "swin_t",
        &ArchConfig::from_name("swin_t").unwrap(),
        &["square"],
    );
}
