//! `rtb train ade`, `rtb eval ade` and `rtb segment` on a tiny shapes-world ADE export: a run
//! trains from a config file and evaluates into metrics.json; an UperNet checkpoint segments
//! a folder into label PNGs that `rtb ade-eval` reads; a missing folder is an error naming it.

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use rtb_ade::{AdeConfig, AdeEvalConfig, TestConfig, TrainConfig};
use rtb_corruption::Corruption;
use rtb_models::ArchConfig;
use rtb_models::init::trainable_builder;
use rtb_results::Regime;
use rtb_segmentation::{UperNet, UperNetConfig};

fn rtb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn export(dir: &Path) {
    let mut cfg = rtb_synth::SynthConfig::tiny().with_num_classes(3);
    cfg.ade.train = 4;
    cfg.ade.val = 2;
    rtb_synth::write_ade(&cfg, dir).unwrap();
}

#[test]
fn train_eval_and_segment_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ade");
    export(&data);
    let arch = ArchConfig::from_name("resnet_tiny").unwrap();
    let mut cfg = AdeConfig::new(arch.clone(), "tiny", None, Regime::Fixed, data.clone(), 3);
    cfg.model = UperNetConfig::tiny().with_num_classes(3);
    cfg.train = TrainConfig {
        scale: (256, 64),
        crop_size: (64, 64),
        ..TrainConfig::default()
    };
    cfg.test = TestConfig { scale: (256, 64) };
    cfg.batch_size = 2;
    cfg.workers = 1;
    cfg.eval = AdeEvalConfig {
        corruptions: vec![Corruption::Fog],
        ..AdeEvalConfig::default()
    };
    let config = dir.path().join("ade.json");
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = dir.path().join("run");
    let text = run(rtb()
        .args(["train", "ade", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--max-iters", "2"]));
    assert!(text.contains("trained 2 iterations"), "{text}");
    let text = run(rtb().args(["eval", "ade", "--run"]).arg(&out));
    assert!(text.contains("clean") && text.contains("fog"), "{text}");
    assert!(out.join("metrics.json").is_file());

    // An UperNet checkpoint (transformers' key names) of seeded random weights.
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, Default::default(), 5, DType::F32, &Device::Cpu);
    let bare = arch.with_num_classes(None).unwrap();
    let model = UperNet::build(&UperNetConfig::tiny().with_num_classes(3), &bare, &vb).unwrap();
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.tensor))
        .collect();
    let weights = dir.path().join("upernet.safetensors");
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let preds = dir.path().join("preds");
    run(rtb()
        .args(["segment", "--arch", "resnet_tiny", "--weights"])
        .arg(&weights)
        .arg(data.join("images/validation"))
        .arg("--output")
        .arg(&preds)
        .args(["--scale", "256,64"]));
    for name in ["ADE_val_00000001.png", "ADE_val_00000002.png"] {
        assert!(preds.join(name).is_file(), "{name}");
    }
    let text = run(rtb()
        .args(["ade-eval", "--gt"])
        .arg(data.join("annotations/validation"))
        .arg("--pred")
        .arg(&preds)
        .args(["--reduce-zero-label", "--num-classes", "3"]));
    assert!(text.contains("mIoU"), "{text}");

    let missing = dir.path().join("nowhere");
    let out = rtb()
        .args(["segment", "--arch", "resnet_tiny", "--weights"])
        .arg(&weights)
        .arg(&missing)
        .arg("--output")
        .arg(&preds)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}
