//! The segmentation cell end to end on a tiny shapes-world ADE export with a tiny ResNet:
//! it learns, a resumed run equals an uninterrupted one bit for bit (CPU), `metrics.json`
//! holds every condition in all three tables, the task interface builds the same config, bad
//! input is an error naming the file with no metrics.json written, and an autocast step
//! follows the f32 one.

use std::path::Path;

use rtb_ade::{AdeConfig, AdeEvalConfig, TestConfig, TrainConfig, evaluate, train};
use rtb_corruption::Corruption;
use rtb_models::ArchConfig;
use rtb_results::{CellMetrics, Regime};
use rtb_segmentation::UperNetConfig;
use rtb_synth::{SynthConfig, write_ade};
use rtb_train::{
    Checkpointer, DecayConfig, EngineConfig, Event, NullObserver, OptimizerConfig, Recorder,
    RunDir, ScheduleConfig,
};

const CLASSES: usize = 3;

fn export(dir: &Path) {
    let mut cfg = SynthConfig::tiny().with_num_classes(CLASSES);
    cfg.ade.train = 8;
    cfg.ade.val = 3;
    write_ade(&cfg, dir).unwrap();
}

fn config(data: &Path, regime: Regime, epochs: usize) -> AdeConfig {
    let arch = ArchConfig::from_name("resnet_tiny").unwrap();
    let mut cfg = AdeConfig::new(arch, "tiny", None, regime, data.to_path_buf(), CLASSES);
    cfg.preset = "test".into();
    cfg.model = UperNetConfig::tiny().with_num_classes(CLASSES);
    cfg.train = TrainConfig {
        scale: (256, 64),
        crop_size: (64, 64),
        ..TrainConfig::default()
    };
    cfg.test = TestConfig { scale: (256, 64) };
    cfg.batch_size = 4;
    cfg.workers = 2;
    cfg.seed = 3;
    cfg.engine = EngineConfig {
        epochs,
        optimizer: OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
        },
        schedule: ScheduleConfig {
            decay: DecayConfig::Poly {
                power: 0.9,
                min_lr: 1e-4,
            },
            ..ScheduleConfig::default()
        },
        log_every: 1,
        ..EngineConfig::default()
    };
    cfg.engine.checkpoint.every_iters = Some(2);
    cfg.eval = AdeEvalConfig {
        corruptions: vec![Corruption::GaussianNoise, Corruption::Fog],
        severities: vec![1, 2, 3, 4, 5],
        seed: 0,
        images: Some(2),
        frost_dir: None,
        batch_size: 2,
        bootstrap: 8,
    };
    cfg
}

fn losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(step) => Some(step.loss),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fixed_feature_cell_learns_and_reports_every_condition() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ade");
    export(&data);
    let mut cfg = config(&data, Regime::Fixed, 24);
    cfg.train.photometric = None;
    // The loss averaged over labelled pixels: mmseg's average over all pixels moves with the
    // share of background (ignored) in each crop, which hides the trend at this size.
    cfg.model.avg_non_ignore = true;
    let run = dir.path().join("run");
    let mut recorder = Recorder::default();
    let summary = train(&cfg, &run, &mut recorder).unwrap();
    assert_eq!(summary.iterations, 48, "24 epochs of 2 batches");
    // Means over four epochs: single batches vary with their crops.
    let losses = losses(&recorder.events);
    let first: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let last: f64 = losses[losses.len() - 8..].iter().sum::<f64>() / 8.0;
    assert!(last < 0.8 * first, "the loss falls: {losses:?}");

    let metrics = evaluate(&run, None, &mut NullObserver).unwrap();
    let written = CellMetrics::read(&run.join("metrics.json")).unwrap();
    assert_eq!(written, metrics);
    assert_eq!(metrics.cell.task, rtb_results::Task::Ade20k);
    for table in std::iter::once(&metrics.primary).chain(metrics.secondary.values()) {
        assert!((0.0..=1.0).contains(&table.clean), "{}", table.clean);
        assert_eq!(table.corrupted.len(), 2);
        for row in table.corrupted.values() {
            assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
        }
    }
    let names: Vec<&str> = metrics.secondary.keys().map(String::as_str).collect();
    assert_eq!(names, ["aacc", "macc"]);
    assert_eq!(metrics.info["images"], 2);

    // Bootstrap replicates (8, over the 2 evaluated images) for every table and condition;
    // a resample that draws each image once is the evaluation itself.
    let resampler = rtb_results::Resampler::new(0, 2, 8);
    let whole: Vec<usize> = (0..8).filter(|&b| resampler.counts(b) == [1, 1]).collect();
    assert!(!whole.is_empty());
    for table in std::iter::once(&metrics.primary).chain(metrics.secondary.values()) {
        let replicates = table.replicates.as_ref().unwrap();
        assert_eq!((replicates.count(), replicates.images), (8, 2));
        assert_eq!(replicates.corrupted.len(), 2);
        for &b in &whole {
            assert_eq!(replicates.clean[b], table.clean);
            for (c, rows) in &replicates.corrupted {
                for (row, value) in rows.iter().zip(table.corrupted[c]) {
                    assert_eq!(row[b], value);
                }
            }
        }
    }
}

#[test]
fn a_resumed_full_network_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ade");
    export(&data);
    let cfg = config(&data, Regime::Full, 3);
    let whole = dir.path().join("whole");
    train(&cfg, &whole, &mut NullObserver).unwrap();

    let parts = dir.path().join("parts");
    let mut stopped = cfg.clone();
    stopped.engine.max_iters = Some(3);
    assert_eq!(
        train(&stopped, &parts, &mut NullObserver)
            .unwrap()
            .iterations,
        3
    );
    let resumed = train(&cfg, &parts, &mut NullObserver).unwrap();
    assert!(resumed.resumed_from.is_some());
    assert_eq!(resumed.iterations, 6);

    let newest = |run: &Path| {
        let record = RunDir::new(run).checkpointer().latest().unwrap().unwrap();
        Checkpointer::load(&record.path, &candle_core::Device::Cpu).unwrap()
    };
    let (a, b) = (newest(&whole), newest(&parts));
    assert_eq!(a.progress, b.progress);
    assert!(a.model.keys().any(|k| k.starts_with("backbone.")));
    assert_eq!(a.model.len(), b.model.len());
    for (name, tensor) in &a.model {
        let x: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b.model[name].flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} differs"
        );
    }
}

#[test]
fn bad_input_names_the_file_and_writes_no_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ade");
    export(&data);
    let mut cfg = config(&data, Regime::Fixed, 1);
    cfg.eval.corruptions = vec![Corruption::Fog];
    let run = dir.path().join("run");
    train(&cfg, &run, &mut NullObserver).unwrap();

    // A validation label with a value above the class count.
    let label = data.join("annotations/validation/ADE_val_00000002.png");
    let mut map = rtb_ade_eval::read_label_png(&label).unwrap();
    map.data_mut()[0] = 200;
    rtb_ade_eval::write_label_png(&label, &map).unwrap();
    let err = evaluate(&run, None, &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ADE_val_00000002.png"), "{err}");
    assert!(
        !run.join("metrics.json").exists(),
        "no partial metrics.json"
    );

    // A training image that does not decode.
    let image = data.join("images/training/ADE_train_00000003.jpg");
    std::fs::write(&image, b"not a jpeg").unwrap();
    let err = train(&cfg, &dir.path().join("run2"), &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ADE_train_00000003.jpg"), "{err}");
}

#[test]
fn the_task_interface_builds_the_cell_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ade");
    export(&data);
    let arch = ArchConfig::from_name("resnet_tiny").unwrap();
    let mut spec = rtb_train::CellSpec {
        preset: "test".into(),
        backbone: "tiny".into(),
        arch: serde_json::to_value(&arch).unwrap(),
        weights: None,
        regime: Regime::Fixed,
        data_dir: data.clone(),
        image_size: 64,
        batch_size: 4,
        seed: 1,
        engine: EngineConfig::default(),
        options: serde_json::json!({"channels": 16, "auxiliary_channels": 8, "photometric": false})
            .as_object()
            .cloned()
            .unwrap(),
        eval: rtb_train::CellEval {
            corruptions: vec![Corruption::Fog],
            severities: vec![1, 2, 3, 4, 5],
            seed: 0,
            bootstrap: 0,
            images: Some(2),
            frost_dir: None,
        },
        device: rtb_train::DeviceChoice::Cpu,
        precision: rtb_train::Precision::F32,
        workers: 1,
        run_dir: dir.path().join("run"),
    };
    let cfg = rtb_ade::config_from_cell(&spec).unwrap();
    assert_eq!(cfg.model.num_classes, CLASSES, "from classes.txt");
    assert_eq!(cfg.model.channels, 16);
    assert_eq!(cfg.train.crop_size, (64, 64));
    assert_eq!(cfg.train.scale, (256, 64));
    assert_eq!(cfg.test.scale, (256, 64));
    assert!(cfg.train.photometric.is_none());
    spec.options.insert("crop".into(), 3.into());
    let err = rtb_ade::config_from_cell(&spec).unwrap_err().to_string();
    assert!(
        err.contains("\"crop\"") && err.contains("ade20k takes"),
        "{err}"
    );
}

#[test]
fn the_constant_baseline_is_the_most_frequent_class_share_over_present_classes() {
    // Classes 0 and 2 present (3 and 1 pixels), class 1 absent: predicting class 0 everywhere
    // gives IoU 3/4 for class 0 and 0 for class 2.
    assert_eq!(rtb_ade::constant_baseline(&[3, 0, 1]), 0.375);
    assert!(rtb_ade::constant_baseline(&[0, 0]).is_nan());
}

/// A seeded batch of random images and labels (every class present).
fn random_batch(seed: u64) -> rtb_ade::AdeTrainBatch {
    use candle_core::{DType, Device, Tensor};
    let images = rtb_models::init::draw(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &(2, 3, 64, 64).into(),
        seed,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let labels: Vec<u8> = (0..2 * 64 * 64)
        .map(|i| ((i / 64 / 16 + i % 64 / 16) % CLASSES) as u8)
        .collect();
    rtb_ade::AdeTrainBatch {
        images,
        labels: Tensor::from_vec(labels, (2, 64, 64), &Device::Cpu).unwrap(),
    }
}

#[test]
fn an_autocast_step_follows_the_f32_step_with_f32_gradients() {
    // Half-precision activations over f32 weights (f16 here: candle's CPU backend has no bf16
    // matrix product; the GPU runs the same paths in bf16).
    use candle_core::{DType, Device};
    use rtb_train::{StepContext, TrainTask};
    let arch = ArchConfig::from_name("resnet_tiny").unwrap();
    let model = UperNetConfig::tiny().with_num_classes(CLASSES);
    let ctx = StepContext {
        iteration: 0,
        epoch: 0,
        batch_in_epoch: 0,
        seed: 11,
        learning_rate: 0.01,
    };
    let step = |dtype: DType| {
        let mut task =
            rtb_ade::AdeTask::build(&model, &arch, None, Regime::Full, 5, (dtype, &Device::Cpu))
                .unwrap();
        // Inference first (the training step moves the running statistics).
        let images = random_batch(6).images.to_dtype(dtype).unwrap();
        let logits = task.model().forward(&images).unwrap();
        assert_eq!(logits.dtype(), dtype);
        let classes: Vec<u8> = rtb_segmentation::argmax(&logits.to_dtype(DType::F32).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let out = task.train_step(random_batch(4), &ctx).unwrap();
        let grads = out.loss.backward().unwrap();
        let loss = out.loss.to_scalar::<f32>().unwrap();
        let vars = task.trainable_vars();
        assert!(vars.iter().all(|(_, var)| var.dtype() == DType::F32));
        let names: Vec<String> = vars.iter().map(|(name, _)| name.clone()).collect();
        let grads = rtb_nn::autocast::master_gradients(&vars, &grads).unwrap();
        (loss, (names, grads), classes)
    };
    let (loss32, grads32, classes32) = step(DType::F32);
    let (loss16, grads16, classes16) = step(DType::F16);
    let same = classes16
        .iter()
        .zip(&classes32)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same as f64 >= 0.95 * classes32.len() as f64,
        "{same} of {} pixels predicted alike",
        classes32.len()
    );
    assert!(
        (loss16 - loss32).abs() <= 1e-3 * loss32.abs(),
        "loss {loss16} under autocast, {loss32} in f32"
    );
    let (names, b) = grads32;
    let agreement = rtb_nn::autocast::agreement(&grads16.1, &b).unwrap();
    // Measured: 0.995 overall; the worst tensor is the 1×1 pooling branch's convolution
    // (0.67), whose BatchNorm sees two values per channel and so amplifies the rounding (as it
    // does in PyTorch: tests/autocast.rs of rtb-models).
    assert!(agreement.overall >= 0.98, "{agreement:?}");
    assert!(
        agreement.worst.0 >= 0.5,
        "{}: {agreement:?}",
        names[agreement.worst.1]
    );
}
