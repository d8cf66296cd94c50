//! `--dry-run`'s cost estimate: multiply-accumulates of each architecture at each input size
//! (from rtb-models' registry, through [`ArchCosts`]), images seen by training and
//! evaluation (the synthetic world's counts, or the datasets manifest's split sizes),
//! corruption work, and throughput assumptions from the preset's `[cost]` table.
//!
//! An estimate, not a promise: the registry counts convolutions, linear layers and attention
//! matmuls and ignores norms, activations and memory traffic; the throughput constants of the
//! shipped presets were calibrated on the runs reported in the preset files.

use std::cell::RefCell;
use std::collections::HashMap;

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
}

/// Remembers each answer of an [`ArchCosts`] (asking may start a process).
#[derive(Debug)]
pub struct CachedCosts<C> {
    inner: C,
    seen: RefCell<HashMap<(String, usize), f64>>,
}

impl<C: ArchCosts> CachedCosts<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            seen: RefCell::new(HashMap::new()),
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
                        let macs = costs.forward_macs(&backbone.arch, s.source_size)?;
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
                        let seconds =
                            (3.0 * views * macs * train as f64 + macs * eval as f64) / rate;
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
                let macs = costs.forward_macs(&backbone.arch, task.image_size)?;
                let (train_split, test_split) = match (synthetic, cell.task) {
                    (Some(s), rtb_results::Task::Cifar10) => (s.cifar_train, s.cifar_test),
                    (Some(s), rtb_results::Task::Ade20k) => (s.ade_train, s.ade_val),
                    (Some(s), rtb_results::Task::Coco) => (s.coco_train, s.coco_val),
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
                // Fixed features: the backbone's forward only (no backward through it).
                let train_factor = match cell.regime {
                    rtb_results::Regime::Fixed => 1.0,
                    rtb_results::Regime::Full => 3.0,
                };
                let mut seconds = (train_factor * macs * train as f64 + macs * eval as f64) / rate;
                if cell.task == rtb_results::Task::Ade20k {
                    // Segmentation corrupts its evaluation images in the cell (at full
                    // resolution, before the resize); CIFAR-10-C is made by the data step.
                    let side = synthetic.map_or(task.image_size, |s| s.ade_size);
                    seconds += corrupt_seconds(cap(test_split), side);
                }
                if cell.task == rtb_results::Task::Coco {
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
    }

    #[test]
    fn cached_costs_ask_once_per_arch_and_size() {
        let costs = CachedCosts::new(Counting(RefCell::new(0)));
        let arch = toml::Value::String("resnet50".into());
        let first = costs.forward_macs(&arch, 224).unwrap();
        assert_eq!(costs.forward_macs(&arch, 224).unwrap(), first);
        costs.forward_macs(&arch, 32).unwrap();
        assert_eq!(*costs.inner.0.borrow(), 2);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(42.0), "42 s");
        assert_eq!(format_seconds(210.0), "3.5 min");
        assert_eq!(format_seconds(7560.0), "2.1 h");
    }
}
