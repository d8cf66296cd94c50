//! `--dry-run`'s cost estimate: multiply-accumulates of each architecture at each input size
//! (from rtb-models' registry, through [`ArchCosts`]) and of each cell's task heads (the
//! task crate's count of UperNet's or Mask R-CNN's heads from the regime's options, also
//! through [`ArchCosts`]), images seen by training and evaluation (the synthetic world's
//! counts, or the datasets manifest's split sizes), corruption work, and throughput
//! assumptions from the preset's `[cost]` table (one rate, scaled per task by
//! `task_factor`, for the backbones' pretraining by `pretrain_factor`, and per architecture
//! by `arch_factor` on the backbone's multiply-accumulates).
//!
//! A training image costs 3 forward passes of what trains (forward, and the backward's two
//! products) and one of a frozen backbone; the heads always train. An estimate, not a
//! promise: the counts are of convolutions, linear layers and attention matmuls (norms,
//! activations, RoIAlign, NMS and memory traffic are not counted), the detector's RoI counts
//! are the configuration's upper bounds, and the throughput constants of the shipped presets
//! were calibrated on the runs reported in the preset files.

use std::cell::RefCell;
use std::collections::HashMap;

use rtb_results::Task;

use crate::StudyError;
use crate::plan::{Plan, Step};
use crate::preset::{DataSpec, DeviceKind};
use crate::weights::DatasetsManifest;

/// The forward cost of an architecture, which only rtb-models (through its registry) knows:
/// rtb-study links no model code. `cargo xtask reproduce` asks the `rtb` binary
/// (`rtb arch macs`); a program that links rtb-models can answer directly.
pub trait ArchCosts {
    /// Multiply-accumulates of one `size × size` image through `arch` (a preset's `arch`
    /// value: a registered name or a config table).
    fn forward_macs(&self, arch: &toml::Value, size: usize) -> Result<f64, StudyError>;

    /// Multiply-accumulates of one image through the task heads of a cell
    /// (`rtb arch macs --task`: the task crate counts them from the regime's options).
    fn head_macs(&self, query: &HeadQuery<'_>) -> Result<HeadCost, StudyError>;
}

/// What [`ArchCosts::head_macs`] is asked: one cell's model at its task's input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadQuery<'a> {
    /// The task.
    pub task: Task,
    /// The backbone (a preset's `arch` value).
    pub arch: &'a toml::Value,
    /// The task's input side.
    pub size: usize,
    /// The regime's `options` table.
    pub options: &'a toml::Table,
    /// The dataset's class count, if the preset knows it.
    pub num_classes: Option<usize>,
}

/// Multiply-accumulates of one image through a cell's task heads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadCost {
    /// In a training step's forward pass.
    pub train: f64,
    /// In an evaluation pass.
    pub eval: f64,
}

/// Remembers each answer of an [`ArchCosts`] (asking may start a process).
#[derive(Debug)]
pub struct CachedCosts<C> {
    inner: C,
    seen: RefCell<HashMap<(String, usize), f64>>,
    heads: RefCell<HashMap<String, HeadCost>>,
}

impl<C: ArchCosts> CachedCosts<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            seen: RefCell::new(HashMap::new()),
            heads: RefCell::new(HashMap::new()),
        }
    }
}

impl<C: ArchCosts> ArchCosts for CachedCosts<C> {
    fn forward_macs(&self, arch: &toml::Value, size: usize) -> Result<f64, StudyError> {
        let key = (arch.to_string(), size);
        if let Some(&macs) = self.seen.borrow().get(&key) {
            return Ok(macs);
        }
        let macs = self.inner.forward_macs(arch, size)?;
        self.seen.borrow_mut().insert(key, macs);
        Ok(macs)
    }

    fn head_macs(&self, query: &HeadQuery<'_>) -> Result<HeadCost, StudyError> {
        let key = format!(
            "{} {} {} {} {:?}",
            query.task, query.arch, query.size, query.options, query.num_classes
        );
        if let Some(&cost) = self.heads.borrow().get(&key) {
            return Ok(cost);
        }
        let cost = self.inner.head_macs(query)?;
        self.heads.borrow_mut().insert(key, cost);
        Ok(cost)
    }
}

/// The estimate of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCost {
    /// The step.
    pub step: Step,
    /// Estimated seconds.
    pub seconds: f64,
    /// Images through a training step.
    pub train_images: u64,
    /// Images through an evaluation forward pass.
    pub eval_images: u64,
}

/// Estimates every step of `plan` on `device`; `datasets` gives the split sizes of a preset
/// that downloads its data.
pub fn estimate(
    plan: &Plan,
    device: DeviceKind,
    costs: &dyn ArchCosts,
    datasets: &DatasetsManifest,
) -> Result<Vec<StepCost>, StudyError> {
    let preset = &plan.preset;
    let cost = &preset.cost;
    let rate = match device {
        DeviceKind::Cpu => cost.cpu_gmacs_per_second,
        DeviceKind::Cuda => cost.cuda_gmacs_per_second,
    } * 1e9;
    let conditions = (preset.corruptions().len() * preset.evaluation.severities.len()) as u64;
    let cap = |n: usize| preset.evaluation.images.map_or(n, |cap| cap.min(n)) as u64;
    let corrupt_seconds = |images: u64, side: usize| {
        images as f64 * conditions as f64 * cost.corrupt_ms_per_kilopixel * (side * side) as f64
            / 1024.0
            / 1e3
    };
    let synthetic = match &preset.data {
        DataSpec::Synthetic(s) => Some(s),
        DataSpec::Download { .. } => None,
    };
    let mut out = Vec::new();
    for step in &plan.steps {
        let (seconds, train_images, eval_images) = match step {
            Step::Data => match synthetic {
                Some(s) => {
                    let source_eval = cap(s.source_val);
                    let cifar_eval = cap(s.cifar_test);
                    let seconds = corrupt_seconds(source_eval, s.source_size)
                        + corrupt_seconds(cifar_eval, 32)
                        + (s.source_train
                            + s.cifar_train
                            + s.ade_train
                            + s.ade_val
                            + s.coco_train
                            + s.coco_val) as f64
                            * 2e-5;
                    (seconds, 0, 0)
                }
                None => (0.0, 0, 0),
            },
            Step::Backbone(name) => {
                let backbone = preset.backbone(name)?;
                match (&backbone.pretrain, synthetic) {
                    (Some(pretrain), Some(s)) => {
                        let macs = costs.forward_macs(&backbone.arch, s.source_size)?
                            * cost.arch_factor(&backbone.arch);
                        let augmix = pretrain.augment.get("kind").and_then(toml::Value::as_str)
                            == Some("augmix");
                        let jsd = augmix
                            && pretrain
                                .augment
                                .get("jsd")
                                .and_then(toml::Value::as_bool)
                                .unwrap_or(false);
                        let views = if jsd { 3.0 } else { 1.0 };
                        let train = (s.source_train * pretrain.epochs) as u64;
                        let eval = cap(s.source_val) * (1 + conditions);
                        let seconds = (3.0 * views * macs * train as f64 + macs * eval as f64)
                            / rate
                            * cost.pretrain_factor;
                        (seconds, train, eval)
                    }
                    // Download and import: dominated by the network, not estimated here.
                    _ => (0.0, 0, 0),
                }
            }
            Step::Cell(cell) => {
                let backbone = preset.backbone(&cell.backbone)?;
                let task = preset.task(cell.task)?;
                let spec =
                    task.regime(cell.regime, plan.schedule)
                        .ok_or_else(|| StudyError::Invalid {
                            what: format!("task {}", cell.task),
                            message: format!("no {} schedule for {}", plan.schedule, cell.regime),
                        })?;
                let macs = costs.forward_macs(&backbone.arch, task.image_size)?
                    * cost.arch_factor(&backbone.arch);
                let heads = costs.head_macs(&HeadQuery {
                    task: cell.task,
                    arch: &backbone.arch,
                    size: task.image_size,
                    options: &spec.options,
                    num_classes: synthetic.map(|s| s.num_classes),
                })?;
                let (train_split, test_split) = match (synthetic, cell.task) {
                    (Some(s), Task::Cifar10) => (s.cifar_train, s.cifar_test),
                    (Some(s), Task::Ade20k) => (s.ade_train, s.ade_val),
                    (Some(s), Task::Coco) => (s.coco_train, s.coco_val),
                    _ => {
                        let sizes =
                            datasets
                                .sizes_for(cell.task)
                                .ok_or_else(|| StudyError::Invalid {
                                    what: format!("datasets manifest, task {}", cell.task),
                                    message: "no dataset with `task` and `images` (split sizes) \
                                          for this task"
                                        .into(),
                                })?;
                        (sizes.train, sizes.test)
                    }
                };
                let train_split = spec
                    .train_images
                    .map_or(train_split, |n| n.min(train_split));
                let train = (train_split * spec.epochs) as u64;
                let eval = cap(test_split) * (1 + conditions);
                // Fixed features: the backbone's forward only (no backward through it); the
                // heads train in both regimes.
                let backbone_factor = match cell.regime {
                    rtb_results::Regime::Fixed => 1.0,
                    rtb_results::Regime::Full => 3.0,
                };
                let train_macs = backbone_factor * macs + 3.0 * heads.train;
                let eval_macs = macs + heads.eval;
                let mut seconds = (train_macs * train as f64 + eval_macs * eval as f64) / rate
                    * cost.factor(cell.task);
                if cell.task == Task::Ade20k {
                    // Segmentation corrupts its evaluation images in the cell (at full
                    // resolution, before the resize); CIFAR-10-C is made by the data step.
                    let side = synthetic.map_or(task.image_size, |s| s.ade_size);
                    seconds += corrupt_seconds(cap(test_split), side);
                }
                if cell.task == Task::Coco {
                    // Detection corrupts in the cell too; COCO 2017's images are about
                    // 640×480, close to a square of 554.
                    let side = synthetic.map_or(554, |s| s.coco_size);
                    seconds += corrupt_seconds(cap(test_split), side);
                }
                (seconds, train, eval)
            }
            Step::Report => (0.5, 0, 0),
        };
        out.push(StepCost {
            step: step.clone(),
            seconds: seconds + cost.process_overhead_seconds,
            train_images,
            eval_images,
        });
    }
    Ok(out)
}

/// Human-readable duration: `42 s`, `3.5 min`, `2.1 h`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(RefCell<usize>);

    impl ArchCosts for Counting {
        fn forward_macs(&self, arch: &toml::Value, size: usize) -> Result<f64, StudyError> {
            *self.0.borrow_mut() += 1;
            Ok(arch.to_string().len() as f64 * size as f64)
        }

        fn head_macs(&self, query: &HeadQuery<'_>) -> Result<HeadCost, StudyError> {
            *self.0.borrow_mut() += 1;
            let size = query.size as f64;
            Ok(HeadCost {
                train: size,
                eval: 2.0 * size,
            })
        }
    }

    #[test]
    fn cached_costs_ask_once_per_arch_and_size() {
        let costs = CachedCosts::new(Counting(RefCell::new(0)));
        let arch = toml::Value::String("resnet50".into());
        let first = costs.forward_macs(&arch, 224).unwrap();
        assert_eq!(costs.forward_macs(&arch, 224).unwrap(), first);
        costs.forward_macs(&arch, 32).unwrap();
        assert_eq!(*costs.inner.0.borrow(), 2);
        let options = toml::Table::new();
        let mut query = HeadQuery {
            task: Task::Coco,
            arch: &arch,
            size: 128,
            options: &options,
            num_classes: Some(4),
        };
        let heads = costs.head_macs(&query).unwrap();
        assert_eq!(costs.head_macs(&query).unwrap(), heads);
        assert_eq!(*costs.inner.0.borrow(), 3);
        query.task = Task::Ade20k;
        costs.head_macs(&query).unwrap();
        assert_eq!(*costs.inner.0.borrow(), 4);
    }

    /// Fixed costs: every backbone 1 MMAC, every cell's heads 2 MMACs in training and 3 in
    /// evaluation.
    struct Flat;

    impl ArchCosts for Flat {
        fn forward_macs(&self, _: &toml::Value, _: usize) -> Result<f64, StudyError> {
            Ok(1e6)
        }

        fn head_macs(&self, _: &HeadQuery<'_>) -> Result<HeadCost, StudyError> {
            Ok(HeadCost {
                train: 2e6,
                eval: 3e6,
            })
        }
    }

    /// A cell's compute is (backbone × 1 or 3 + heads' training forward × 3) per training
    /// image plus (backbone + heads' evaluation forward) per evaluation image over the rate,
    /// times the task's factor: doubling COCO's factor adds exactly that much to the COCO
    /// cells and nothing to the others; doubling `pretrain_factor` doubles the backbone
    /// steps' compute (3 MACs per training image, 1 per evaluation image) and nothing else.
    #[test]
    fn cells_count_heads_and_scale_by_their_task_and_arch_factors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../presets/tiny.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut preset = crate::Preset::from_toml(&text, path).unwrap();
        let plan = Plan::new(
            &preset,
            crate::Schedule::Paper,
            &crate::Filter::default(),
            None,
        )
        .unwrap();
        let datasets = DatasetsManifest { datasets: vec![] };
        let base = estimate(&plan, DeviceKind::Cpu, &Flat, &datasets).unwrap();
        preset.cost.task_factor.insert(Task::Coco, 2.0);
        let plan = Plan {
            preset: preset.clone(),
            ..plan
        };
        let doubled = estimate(&plan, DeviceKind::Cpu, &Flat, &datasets).unwrap();
        let rate = preset.cost.cpu_gmacs_per_second * 1e9;
        let mut coco_cells = 0;
        for (one, two) in base.iter().zip(&doubled) {
            let Step::Cell(cell) = &one.step else {
                assert_eq!(one.seconds, two.seconds, "{:?}", one.step);
                continue;
            };
            if cell.task != Task::Coco {
                assert_eq!(one.seconds, two.seconds, "{cell}");
                continue;
            }
            coco_cells += 1;
            let backbone = match cell.regime {
                rtb_results::Regime::Fixed => 1e6,
                rtb_results::Regime::Full => 3e6,
            };
            let compute = ((backbone + 3.0 * 2e6) * one.train_images as f64
                + (1e6 + 3e6) * one.eval_images as f64)
                / rate;
            assert!(compute > 0.0);
            assert!(
                ((two.seconds - one.seconds) / compute - 1.0).abs() < 1e-9,
                "{cell}: {} → {}, compute {compute}",
                one.seconds,
                two.seconds
            );
        }
        assert!(coco_cells > 0);

        preset.cost.task_factor.clear();
        preset.cost.pretrain_factor = 2.0;
        let plan = Plan {
            preset: preset.clone(),
            ..plan
        };
        let pretrain = estimate(&plan, DeviceKind::Cpu, &Flat, &datasets).unwrap();
        let mut backbones = 0;
        for (one, two) in base.iter().zip(&pretrain) {
            let Step::Backbone(name) = &one.step else {
                assert_eq!(one.seconds, two.seconds, "{:?}", one.step);
                continue;
            };
            backbones += 1;
            // The tiny preset's AugMix backbone trains on three views.
            let views = if name == "deepaug" { 3.0 } else { 1.0 };
            let compute =
                (3.0 * views * 1e6 * one.train_images as f64 + 1e6 * one.eval_images as f64) / rate;
            assert!(
                ((two.seconds - one.seconds) / compute - 1.0).abs() < 1e-9,
                "{name}: {} → {}, compute {compute}",
                one.seconds,
                two.seconds
            );
        }
        assert!(backbones > 0);

        // arch_factor 2 for the tiny Swin doubles its backbone's MACs: its pretraining step's
        // compute and the backbone share of its cells, not the heads, not the other rows.
        preset.cost.pretrain_factor = 1.0;
        preset.cost.arch_factor.insert("swin_tiny".into(), 2.0);
        let plan = Plan {
            preset: preset.clone(),
            ..plan
        };
        let swin_doubled = estimate(&plan, DeviceKind::Cpu, &Flat, &datasets).unwrap();
        let mut swin_steps = 0;
        for (one, two) in base.iter().zip(&swin_doubled) {
            let (backbone_macs_per_image, factor) = match &one.step {
                Step::Backbone(name) if name == "swin" => (3.0 * 1e6, 1.0),
                Step::Cell(cell) if cell.backbone == "swin" => (
                    match cell.regime {
                        rtb_results::Regime::Fixed => 1e6,
                        rtb_results::Regime::Full => 3e6,
                    },
                    preset.cost.factor(cell.task),
                ),
                _ => {
                    assert_eq!(one.seconds, two.seconds, "{:?}", one.step);
                    continue;
                }
            };
            swin_steps += 1;
            let added = (backbone_macs_per_image * one.train_images as f64
                + 1e6 * one.eval_images as f64)
                / rate
                * factor;
            assert!(
                ((two.seconds - one.seconds) / added - 1.0).abs() < 1e-9,
                "{:?}: {} → {}, added {added}",
                one.step,
                one.seconds,
                two.seconds
            );
        }
        assert!(swin_steps > 1);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(42.0), "42 s");
        assert_eq!(format_seconds(210.0), "3.5 min");
        assert_eq!(format_seconds(7560.0), "2.1 h");
    }
}
