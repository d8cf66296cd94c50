//! The `rtb` binary as a user runs it.

use std::process::Command;

fn rtb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

#[test]
fn help_lists_the_command_tree() {
    let out = rtb(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Usage: rtb"), "{text}");
    assert!(text.contains("env"), "{text}");
}

#[test]
fn version_is_the_crate_version() {
    let out = rtb(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("rtb {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_subcommand_is_an_error_not_a_panic() {
    let out = rtb(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("no-such-command"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn env_reports_cache_directories_from_the_environment() {
    let dir = std::env::temp_dir().join("rtb-env-test-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .arg("env")
        .env("RTB_CACHE_DIR", &dir)
        .env_remove("RTB_FROST_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(
        text.contains(&dir.join("assets").join("frost").display().to_string()),
        "{text}"
    );
}

/// The registry is the only list of architectures: `rtb arch list` shows every family and
/// preset it holds, and every architecture of every shipped preset and of the weights
/// manifest is known and costed (the estimate asks `rtb arch macs` for it).
#[test]
fn every_listing_of_architectures_is_the_registry() {
    let out = rtb(&["arch", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let families: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["family"].as_str().unwrap())
        .collect();
    assert_eq!(families, rtb_models::registry::families());
    let presets: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["presets"].as_array().unwrap().iter())
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(presets, rtb_models::registry::preset_names());

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let mut archs: Vec<(String, usize)> = Vec::new();
    for name in ["tiny", "mini", "paper"] {
        let preset =
            rtb_study::Preset::load(&root.join("presets").join(format!("{name}.toml"))).unwrap();
        for backbone in &preset.backbones {
            let arch = match &backbone.arch {
                toml::Value::String(name) => name.clone(),
                table => serde_json::to_string(table).unwrap(),
            };
            for task in &preset.tasks {
                archs.push((arch.clone(), task.image_size));
            }
        }
    }
    let manifest =
        rtb_study::weights::WeightsManifest::load(&root.join("weights/backbones.toml")).unwrap();
    for entry in &manifest.backbones {
        archs.push((entry.arch.clone(), 224));
        let layouts: Vec<String> = rtb_models::registry::layouts()
            .into_iter()
            .map(|(_, l)| l.name.to_string())
            .collect();
        assert!(
            layouts.contains(&entry.import.layout),
            "{}: layout {} is not registered ({layouts:?})",
            entry.name,
            entry.import.layout
        );
    }
    archs.sort();
    archs.dedup();
    for (arch, size) in archs {
        let out = rtb(&[
            "arch",
            "macs",
            "--json",
            "--size",
            &size.to_string(),
            "--arch",
            &arch,
        ]);
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(value["macs"].as_f64().unwrap() > 0.0, "{arch}");
    }
    let out = rtb(&["arch", "macs", "--size", "32", "--arch", "vgg16"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("vgg16") && text.contains("convnext_t"),
        "{text}"
    );
}

/// Every cell of every shipped preset has its heads costed (`rtb arch macs --task`, which
/// the estimate asks): the dense heads cost something, and for the mini preset's slim heads
/// the same order as its small backbones or more (they were left out of the estimate before).
#[test]
fn every_shipped_cell_costs_its_heads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let mut queries = Vec::new();
    for name in ["tiny", "mini", "paper"] {
        let preset =
            rtb_study::Preset::load(&root.join("presets").join(format!("{name}.toml"))).unwrap();
        let classes = match &preset.data {
            rtb_study::DataSpec::Synthetic(s) => Some(s.num_classes),
            rtb_study::DataSpec::Download { .. } => None,
        };
        for backbone in &preset.backbones {
            let arch = match &backbone.arch {
                toml::Value::String(name) => name.clone(),
                table => serde_json::to_string(table).unwrap(),
            };
            for task in &preset.tasks {
                for regime in task.paper.values().chain(task.short.values()) {
                    let options = rtb_study::table_to_json(&regime.options).to_string();
                    queries.push((arch.clone(), task.task, task.image_size, options, classes));
                }
            }
        }
    }
    queries.sort_by_key(|q| format!("{q:?}"));
    queries.dedup();
    for (arch, task, size, options, classes) in queries {
        let size = size.to_string();
        let mut args = vec![
            "arch",
            "macs",
            "--json",
            "--size",
            &size,
            "--arch",
            &arch,
            "--task",
            task.name(),
            "--options",
            &options,
        ];
        let classes = classes.map(|c| c.to_string());
        if let Some(classes) = &classes {
            args.extend(["--classes", classes]);
        }
        let out = rtb(&args);
        let what = format!("{arch} {task} {size} {options}");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let backbone = value["macs"].as_f64().unwrap();
        let train = value["head_train_macs"].as_f64().unwrap();
        let eval = value["head_eval_macs"].as_f64().unwrap();
        assert!(train > 0.0 && eval > 0.0, "{what}: {value}");
        if task != rtb_results::Task::Cifar10 {
            assert!(eval > 0.1 * backbone, "{what}: {value}");
        }
    }
}

/// Regression: `rtb … 2>log` wrote ANSI colour escapes into the log file.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("out.safetensors");
    // `weights import` logs an info line on success; stderr is a pipe here.
    let out = rtb(&[
        "weights",
        "import",
        "--arch",
        "resnet_tiny",
        "--from",
        root.join("crates/models/tests/golden/resnet_tiny.safetensors")
            .to_str()
            .unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("INFO") && stderr.contains("layout"),
        "{stderr:?}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
