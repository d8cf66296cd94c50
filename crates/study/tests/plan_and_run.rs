//! Plans (filters, shards, validation) and the orchestrator's bookkeeping (skip finished
//! steps, block dependents of failures, `--no-resume`), with a shell script standing in for
//! `rtb` so that no model is involved.

use std::path::{Path, PathBuf};

use rtb_study::{
    DeviceKind, Filter, Invocation, Layout, Orchestrator, Outcome, Plan, Preset, Schedule, Shard,
    Step, StudyError, matrix,
};

const PRESET: &str = r#"
name = "demo"
description = "three backbones, one task"
source = { name = "shapes32", flavor = "imagecorruptions" }
evaluation = { images = 4 }

[data]
kind = "synthetic"
seed = 0
num_classes = 3
source_train = 8
source_val = 4
source_size = 32
cifar_train = 8
cifar_test = 4

[[backbone]]
name = "regular"
arch = "resnet_tiny"
pretrain = { epochs = 1, batch_size = 4, augment = { kind = "standard" } }

[[backbone]]
name = "ant"
arch = "resnet_tiny"
pretrain = { epochs = 1, batch_size = 4, augment = { kind = "noise" } }

[[backbone]]
name = "swin"
arch = "swin_tiny"
pretrain = { epochs = 1, batch_size = 4, augment = { kind = "standard" } }

[[task]]
task = "cifar10"
image_size = 32
flavor = "cifar-c"
paper.fixed = { epochs = 1, batch_size = 4 }
paper.full = { epochs = 3, batch_size = 4 }
short.full = { epochs = 1, batch_size = 4 }
"#;

fn preset() -> Preset {
    Preset::from_toml(PRESET, "demo.toml").unwrap()
}

fn labels(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(Step::label).collect()
}

#[test]
fn shards_partition_the_matrix_whatever_their_number() {
    let preset = preset();
    let all = matrix(&preset, Schedule::Paper);
    assert_eq!(all.len(), 6);
    for count in 1..=7 {
        let mut seen = Vec::new();
        for index in 1..=count {
            let shard = Shard { index, count };
            let plan =
                Plan::new(&preset, Schedule::Paper, &Filter::default(), Some(shard)).unwrap();
            seen.extend(plan.cells().cloned());
            // Every backbone a shard's cells need is in its plan, before its cells.
            for cell in plan.cells() {
                let backbone = plan
                    .steps
                    .iter()
                    .position(|s| *s == Step::Backbone(cell.backbone.clone()))
                    .unwrap();
                let position = plan
                    .steps
                    .iter()
                    .position(|s| *s == Step::Cell(cell.clone()))
                    .unwrap();
                assert!(backbone < position);
            }
        }
        seen.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(seen, expected, "{count} shards");
    }
    // A shard's cells do not move when --only narrows the plan.
    let shard = Some(Shard { index: 2, count: 3 });
    let full = Plan::new(&preset, Schedule::Paper, &Filter::default(), shard).unwrap();
    let only: Filter = "regime=full".parse().unwrap();
    let narrowed = Plan::new(&preset, Schedule::Paper, &only, shard).unwrap();
    let kept: Vec<_> = full.cells().filter(|c| only.keeps(c)).cloned().collect();
    assert_eq!(narrowed.cells().cloned().collect::<Vec<_>>(), kept);
}

#[test]
fn filters_and_schedules_shape_the_plan() {
    let preset = preset();
    let only: Filter = "backbone=ant|swin, regime=fixed".parse().unwrap();
    let plan = Plan::new(&preset, Schedule::Paper, &only, None).unwrap();
    assert_eq!(
        labels(&plan),
        [
            "data",
            "backbone ant",
            "backbone swin",
            "cell ant/cifar10/fixed",
            "cell swin/cifar10/fixed",
            "report"
        ]
    );
    // Short schedules fall back to the paper's for regimes they do not define.
    let spec = preset.task(rtb_results::Task::Cifar10).unwrap();
    assert_eq!(
        spec.regime(rtb_results::Regime::Full, Schedule::Short)
            .unwrap()
            .epochs,
        1
    );
    assert_eq!(
        spec.regime(rtb_results::Regime::Fixed, Schedule::Short)
            .unwrap()
            .epochs,
        1
    );
    assert_eq!(
        spec.regime(rtb_results::Regime::Full, Schedule::Paper)
            .unwrap()
            .epochs,
        3
    );
    // Bad filters and shards name the flag.
    for bad in ["backbone", "task=imagenet", "size=3"] {
        let err = bad.parse::<Filter>().unwrap_err().to_string();
        assert!(err.contains("--only"), "{bad}: {err}");
    }
    for bad in ["0/2", "3/2", "1/0", "x", "1-2"] {
        let err = bad.parse::<Shard>().unwrap_err().to_string();
        assert!(err.contains("--shard"), "{bad}: {err}");
    }
    let unknown: Filter = "backbone=vit".parse().unwrap();
    let err = Plan::new(&preset, Schedule::Paper, &unknown, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vit") && err.contains("regular"), "{err}");
}

#[test]
fn invalid_presets_name_the_key() {
    let cases = [
        (
            PRESET.replacen("name = \"ant\"", "name = \"regular\"", 1),
            "appears twice",
        ),
        (
            PRESET.replacen("name = \"ant\"", "name = \"data\"", 1),
            "reserved",
        ),
        (
            PRESET.replacen("flavor = \"cifar-c\"", "flavor = \"jpeg\"", 1),
            "task[0].flavor",
        ),
        (
            PRESET.replacen(
                "evaluation = { images = 4 }",
                "evaluation = { severities = [0, 6] }",
                1,
            ),
            "severities",
        ),
        (
            PRESET.replacen(
                "evaluation = { images = 4 }",
                "evaluation = { corruptions = [\"rain\"] }",
                1,
            ),
            "rain",
        ),
        (
            PRESET.replacen(
                "augment = { kind = \"noise\" }",
                "augment = { sigma = 1 }",
                1,
            ),
            "backbone[1].pretrain.augment",
        ),
        (
            PRESET.replacen("num_classes = 3", "num_classes = 11", 1),
            "num_classes",
        ),
        (
            PRESET.replacen("arch = \"swin_tiny\"", "arch = 3", 1),
            "backbone[2].arch",
        ),
        (format!("precision = \"f16\"\n{PRESET}"), "precision"),
    ];
    for (text, expected) in cases {
        let err = Preset::from_toml(&text, "demo.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected) && err.contains("demo.toml"),
            "{expected}: {err}"
        );
    }
    let err = Preset::from_toml("name = 3", "x.toml").unwrap_err();
    assert!(matches!(err, StudyError::Parse { .. }), "{err}");
}

#[test]
fn a_preset_selects_its_cuda_precision() {
    assert_eq!(preset().precision, rtb_study::CudaPrecision::F32);
    let bf16 = Preset::from_toml(&format!("precision = \"bf16\"\n{PRESET}"), "demo.toml").unwrap();
    assert_eq!(bf16.precision, rtb_study::CudaPrecision::Bf16);
}

/// A stand-in for `rtb`: succeeds by writing the step's marker file, except for the backbone
/// named in `FAIL_BACKBONE`; counts its invocations in `calls.txt`.
fn fake_rtb(dir: &Path) -> PathBuf {
    let script = dir.join("fake-rtb.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo "$@" >> "$CALLS"
sub="$1"; shift
runs=""; backbone=""; task=""; regime=""; preset=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift;;
    --backbone) backbone="$2"; shift;;
    --task) task="$2"; shift;;
    --regime) regime="$2"; shift;;
    --preset) preset="$2"; shift;;
  esac
  shift
done
case "$sub" in
  prepare) mkdir -p "$runs/demo/data" && echo '{}' > "$runs/demo/data/complete.json";;
  backbone)
    if [ "$backbone" = "$FAIL_BACKBONE" ]; then echo "pretraining $backbone failed" >&2; exit 3; fi
    mkdir -p "$runs/demo/$backbone" && echo '{}' > "$runs/demo/$backbone/backbone.json";;
  cell) mkdir -p "$runs/demo/$backbone/$task/$regime" && echo '{}' > "$runs/demo/$backbone/$task/$regime/metrics.json";;
  report) ;;
esac
"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

#[cfg(unix)]
#[test]
fn the_orchestrator_skips_finished_steps_and_blocks_dependents_of_failures() {
    let dir = tempfile::tempdir().unwrap();
    let preset = preset();
    let runs = dir.path().join("runs");
    let calls = dir.path().join("calls.txt");
    let mut orchestrator = Orchestrator {
        rtb: fake_rtb(dir.path()),
        invocation: Invocation {
            preset_file: dir.path().join("demo.toml"),
            layout: Layout::new(&runs, &preset, &dir.path().join("downloads")),
            report_dir: dir.path().join("report"),
            device: DeviceKind::Cpu,
            schedule: Schedule::Paper,
            allow_unverified: false,
            imagenet: None,
        },
        resume: true,
        env: vec![
            ("CALLS".into(), calls.display().to_string()),
            ("FAIL_BACKBONE".into(), "ant".into()),
        ],
        working_dir: None,
    };
    let plan = Plan::new(&preset, Schedule::Paper, &Filter::default(), None).unwrap();
    let mut events = 0;
    let first = orchestrator.run(&plan, &mut |_| events += 1).unwrap();
    assert!(events >= plan.steps.len());
    assert_eq!(first.failed(), 1);
    assert_eq!(first.blocked(), 2, "ant's two cells");
    assert!(!first.success());
    let failed = first
        .steps
        .iter()
        .find_map(|(step, outcome)| match outcome {
            Outcome::Failed { log, .. } => Some((step.clone(), log.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.0, Step::Backbone("ant".into()));
    assert!(
        std::fs::read_to_string(&failed.1)
            .unwrap()
            .contains("pretraining ant failed")
    );
    let report = first.steps.last().unwrap();
    assert!(
        matches!(report, (Step::Report, Outcome::Done { .. })),
        "the report always runs"
    );
    let calls_after_first = std::fs::read_to_string(&calls).unwrap().lines().count();
    // data + 3 backbones + 4 cells (ant's 2 blocked) + report
    assert_eq!(calls_after_first, 9);

    // Fixed: a second run runs only what is missing.
    orchestrator.env[1].1 = "none".into();
    let second = orchestrator.run(&plan, &mut |_| {}).unwrap();
    assert!(second.success());
    assert_eq!(
        second.skipped(),
        1 + 2 + 4,
        "data, two backbones, four cells"
    );
    assert_eq!(second.done(), 1 + 2 + 1, "ant, its two cells, the report");
    let lines = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert_eq!(lines, calls_after_first + 4);

    // --no-resume runs everything again.
    orchestrator.resume = false;
    let third = orchestrator.run(&plan, &mut |_| {}).unwrap();
    assert_eq!(third.done(), plan.steps.len());
    // The command line is what a person would type.
    let line = orchestrator.command_line(&Step::Cell(matrix(&preset, Schedule::Paper)[0].clone()));
    assert!(
        line.contains("cell --preset")
            && line.contains("--backbone regular --task cifar10 --regime fixed"),
        "{line}"
    );
}
