//! The table of cell runners: one line per task crate. `rtb cell` resolves a preset into an
//! rtb-train `CellSpec` and hands it to the runner of its task; nothing else in the CLI knows
//! what a task does with it. A task without a line here has no task crate in this build.

use std::path::{Path, PathBuf};

use rtb_results::Task;
use rtb_study::DataSpec;
use rtb_train::CellTask;

/// The runner of `task`, if this build has its task crate.
pub fn runner(task: Task) -> Option<&'static dyn CellTask> {
    match task {
        Task::Cifar10 => Some(&rtb_cifar::CifarCell),
        Task::Ade20k => Some(&rtb_ade::AdeCell),
        Task::Coco => Some(&rtb_coco::CocoCell),
    }
}

/// The task's data folder under a preset's data directory: the synthetic export's folder, or
/// the downloaded dataset's unpacked root.
pub fn data_dir(task: Task, data: &DataSpec, root: &Path) -> PathBuf {
    let synthetic = matches!(data, DataSpec::Synthetic(_));
    match task {
        Task::Cifar10 if synthetic => crate::study::synthetic_cifar_dir(root),
        Task::Cifar10 => root.join("cifar10").join(rtb_cifar::ARCHIVE_FOLDER),
        Task::Coco if synthetic => root.join("coco"),
        Task::Coco => root.join("coco2017"),
        Task::Ade20k if synthetic => root.join("ade"),
        // ADEChallengeData2016.zip unpacked by `rtb prepare` (its one top-level folder).
        Task::Ade20k => root
            .join("ade20k")
            .join("ADEChallengeData2016")
            .join("ADEChallengeData2016"),
    }
}
