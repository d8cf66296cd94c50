//! The registry is the only list of architectures: every registered preset builds, costs,
//! serialises and is recognised by its own family's canonical layout. (An architecture
//! registered from outside is tested in `registry_external.rs`, its own process, so that it
//! does not join this file's listing.)

use rtb_models::ArchConfig;
use rtb_models::registry;
use rtb_models::weights::detect_layout;

#[test]
fn every_preset_builds_costs_and_round_trips() {
    let summaries = registry::summaries();
    let families: Vec<&str> = summaries.iter().map(|s| s.family.as_str()).collect();
    for builtin in ["resnet", "swin", "convnext"] {
        assert!(families.contains(&builtin), "{families:?}");
    }
    for summary in &summaries {
        assert!(
            !summary.presets.is_empty(),
            "{} has no preset",
            summary.family
        );
        assert!(
            !summary.layouts.is_empty(),
            "{} has no layout",
            summary.family
        );
        for name in &summary.presets {
            let arch = ArchConfig::from_name(name).unwrap();
            assert_eq!(arch.family(), summary.family);
            // JSON round trip through the flat `{"family": …, fields}` form.
            let json = serde_json::to_string(&arch).unwrap();
            assert!(json.contains(&format!("\"family\":\"{}\"", summary.family)));
            let back: ArchConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, arch);
            assert_eq!(
                ArchConfig::resolve(&json).unwrap(),
                arch,
                "{name}: inline JSON"
            );
            back.check().unwrap();
            // The estimate's cost.
            let macs = arch.forward_macs(64, 96).unwrap();
            assert!(macs > 0.0 && macs.is_finite(), "{name}: {macs}");
            assert!(arch.forward_macs(128, 192).unwrap() > 3.0 * macs, "{name}");
            // Its keys are recognised as its family's canonical layout.
            let keys = arch.expected_keys().unwrap();
            let layout = detect_layout(keys.iter().map(|(k, _)| k.as_str()))
                .unwrap_or_else(|| panic!("{name}: own keys not recognised"));
            assert_eq!(layout.family, summary.family, "{name}");
            assert_eq!(layout.name, summary.layouts[0].0, "{name}");
            // With and without a classifier.
            let headless = arch.with_num_classes(None).unwrap();
            assert_eq!(headless.num_classes(), None);
            let with = arch.with_num_classes(Some(7)).unwrap();
            assert_eq!(with.num_classes(), Some(7));
            let key = with.classifier_key().unwrap();
            assert!(with.expected_keys().unwrap().iter().any(|(k, _)| k == key));
        }
    }
}

#[test]
fn known_costs_match_the_published_counts() {
    // torchvision's ResNet-50 is 4.1 GMACs at 224² (the fc adds 2 M); ResNet-18 1.8; Swin-T
    // 4.5 GFLOPs (multiply-adds) in its paper's table.
    let gmacs = |name: &str| {
        ArchConfig::from_name(name)
            .unwrap()
            .forward_macs(224, 224)
            .unwrap()
            / 1e9
    };
    assert!(
        (gmacs("resnet50") - 4.1).abs() < 0.15,
        "{}",
        gmacs("resnet50")
    );
    assert!(
        (gmacs("resnet18") - 1.8).abs() < 0.1,
        "{}",
        gmacs("resnet18")
    );
    assert!((gmacs("swin_t") - 4.5).abs() < 0.3, "{}", gmacs("swin_t"));
    // ConvNeXt-T: 4.5 GFLOPs (multiply-adds) in its paper's table, 4.47 in timm's.
    assert!(
        (gmacs("convnext_t") - 4.47).abs() < 0.1,
        "{}",
        gmacs("convnext_t")
    );
}

#[test]
fn bad_configs_and_names_are_errors_naming_them() {
    let err = ArchConfig::resolve("vgg16").unwrap_err().to_string();
    assert!(err.contains("vgg16") && err.contains("resnet50"), "{err}");
    let unknown: ArchConfig = serde_json::from_str(r#"{"family": "vgg", "depth": 16}"#).unwrap();
    let err = unknown.check().unwrap_err().to_string();
    assert!(err.contains("vgg") && err.contains("resnet"), "{err}");
    let partial: ArchConfig = serde_json::from_str(r#"{"family": "resnet"}"#).unwrap();
    let err = partial.check().unwrap_err().to_string();
    assert!(err.contains("resnet") && err.contains("block"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arch.json");
    std::fs::write(&file, "{not json").unwrap();
    let err = ArchConfig::resolve(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("arch.json"), "{err}");
}

/// A config read from JSON is checked against its family, and the shape-only backbone (built
/// without the classifier) has the preset's channels and strides.
#[test]
fn json_configs_are_checked_and_build_for_shapes() {
    let preset = ArchConfig::from_name("resnet_tiny").unwrap();
    let value = serde_json::to_value(&preset).unwrap();
    let config = ArchConfig::from_json(value.clone()).unwrap();
    assert_eq!(config, preset);
    let backbone = config.build_for_shapes().unwrap();
    let full = preset
        .build(&candle_nn::VarBuilder::zeros(
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        ))
        .unwrap();
    assert_eq!(backbone.out_channels(), full.out_channels());
    assert_eq!(backbone.strides(), full.strides());
    assert!(config.num_classes().is_some());
    let mut bad = value.clone();
    bad["depths"] = serde_json::json!("four");
    assert!(ArchConfig::from_json(bad).is_err());
    let mut unknown = value;
    unknown["family"] = serde_json::json!("no-such-family");
    assert!(ArchConfig::from_json(unknown).is_err());
}
