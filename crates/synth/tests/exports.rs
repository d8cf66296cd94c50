//! Every export in the format its real reader expects, and the same bytes from the same seed.

use std::collections::BTreeMap;
use std::path::Path;

use rtb_ade_eval::{AdeDataset, EvalConfig, Split, evaluate_dirs, read_label_png};
use rtb_synth::{
    SynthConfig, read_source, rle_counts, write_ade, write_cifar, write_coco, write_source,
};

fn write_all(config: &SynthConfig, root: &Path) {
    write_cifar(config, &root.join("cifar")).unwrap();
    write_coco(config, &root.join("coco")).unwrap();
    write_ade(config, &root.join("ade")).unwrap();
    write_source(config, &root.join("source")).unwrap();
}

/// Every file under `root`, by relative path, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let config = SynthConfig::tiny().with_seed(3);
    let (first, second, third) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write_all(&config, first.path());
    write_all(&config, second.path());
    write_all(&config.clone().with_seed(4), third.path());
    let (a, b, c) = (
        snapshot(first.path()),
        snapshot(second.path()),
        snapshot(third.path()),
    );
    assert!(a.len() > 100, "{} files", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(
            bytes == &b[name],
            "{name} differs between two runs with one seed"
        );
    }
    assert_eq!(a.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
    let differing = a.iter().filter(|(name, bytes)| *bytes != &c[*name]).count();
    assert!(
        differing > a.len() / 2,
        "only {differing} files changed with the seed"
    );
}

#[test]
fn cifar_export_is_the_cifar10_binary_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SynthConfig::tiny().with_num_classes(7);
    config.cifar.train = 103;
    config.cifar.test = 21;
    let summary = write_cifar(&config, dir.path()).unwrap();
    assert_eq!(summary.train_batches.iter().sum::<usize>(), 103);
    let mut counts = [0usize; 7];
    for (index, &records) in summary.train_batches.iter().enumerate() {
        let bytes =
            std::fs::read(dir.path().join(format!("data_batch_{}.bin", index + 1))).unwrap();
        assert_eq!(bytes.len(), records * 3073);
        for record in bytes.chunks_exact(3073) {
            counts[usize::from(record[0])] += 1;
            // Not a flat image: the shape stands out from the background.
            let red = &record[1..1025];
            assert!(red.iter().max().unwrap() - red.iter().min().unwrap() > 20);
        }
    }
    // Balanced: 103 = 7 × 14 + 5.
    assert!(counts.iter().all(|&c| c == 14 || c == 15), "{counts:?}");
    assert_eq!(
        std::fs::read(dir.path().join("test_batch.bin"))
            .unwrap()
            .len(),
        21 * 3073
    );
    let meta = std::fs::read_to_string(dir.path().join("batches.meta.txt")).unwrap();
    let names: Vec<&str> = meta.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        names,
        [
            "circle", "square", "triangle", "star", "ring", "cross", "hexagon"
        ]
    );
}

#[test]
fn ade_export_loads_in_rtb_ade_eval() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig::tiny().with_num_classes(5);
    write_ade(&config, dir.path()).unwrap();
    for (split, count) in [
        (Split::Training, config.ade.train),
        (Split::Validation, config.ade.val),
    ] {
        let dataset = AdeDataset::open(dir.path(), split).unwrap();
        assert_eq!(dataset.len(), count);
        dataset.check().unwrap();
        let mut seen = [false; 6];
        for sample in dataset.samples() {
            let map = read_label_png(&sample.annotation).unwrap();
            assert_eq!(
                map.size(),
                (config.ade.width as u32, config.ade.height as u32)
            );
            for &value in map.data() {
                seen[usize::from(value)] = true;
            }
        }
        assert!(seen[0], "background present");
        assert!(seen[1..].iter().filter(|&&s| s).count() >= 3, "{seen:?}");
        // Predictions equal to the labels (as class indices) score mIoU 1 through mmseg's
        // reduce_zero_label, with every class present.
        let annotations = dir.path().join("annotations").join(split.dir_name());
        let predictions = dir.path().join(format!("pred-{}", split.dir_name()));
        std::fs::create_dir_all(&predictions).unwrap();
        for sample in dataset.samples() {
            let mut map = read_label_png(&sample.annotation).unwrap();
            for value in map.data_mut() {
                *value = value.saturating_sub(1);
            }
            let name = sample.annotation.file_name().unwrap();
            rtb_ade_eval::write_label_png(&predictions.join(name), &map).unwrap();
        }
        let config = EvalConfig::new(5).with_reduce_zero_label(true);
        let metrics = evaluate_dirs(&annotations, &predictions, config, &|| {})
            .unwrap()
            .accumulator
            .metrics();
        assert_eq!(metrics.m_iou, 1.0);
        assert!(
            metrics.iou.iter().all(|&iou| iou == 1.0),
            "{:?}",
            metrics.iou
        );
    }
}

#[test]
fn coco_export_has_boxes_masks_and_crowds() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig::tiny();
    let summary = write_coco(&config, dir.path()).unwrap();
    assert!(
        summary.crowds.0 > 0,
        "tiny train split should hold a crowd: {summary:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.train_json).unwrap()).unwrap();
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), config.coco.train);
    for image in images {
        let file = dir
            .path()
            .join("train2017")
            .join(image["file_name"].as_str().unwrap());
        let (w, h) = rtb_ade_eval::image_size(&file).unwrap();
        assert_eq!(
            (w as u64, h as u64),
            (
                image["width"].as_u64().unwrap(),
                image["height"].as_u64().unwrap()
            )
        );
    }
    let (mut polygons, mut rles) = (0, 0);
    let mut ids = std::collections::HashSet::new();
    for annotation in json["annotations"].as_array().unwrap() {
        assert!(ids.insert(annotation["id"].as_u64().unwrap()));
        let bbox: Vec<f64> = annotation["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (w, h) = (config.coco.width as f64, config.coco.height as f64);
        assert!(
            bbox[0] >= 0.0 && bbox[1] >= 0.0 && bbox[0] + bbox[2] <= w && bbox[1] + bbox[3] <= h
        );
        let area = annotation["area"].as_f64().unwrap();
        assert!(area > 0.0 && area <= bbox[2] * bbox[3]);
        let category = annotation["category_id"].as_u64().unwrap();
        assert!((1..=10).contains(&category));
        let segmentation = &annotation["segmentation"];
        if let Some(counts) = segmentation.get("counts") {
            rles += 1;
            let counts: Vec<u64> = counts
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(
                counts.iter().sum::<u64>(),
                (config.coco.width * config.coco.height) as u64
            );
            // Runs alternate starting with background: the odd runs are the mask.
            let ones: u64 = counts.iter().skip(1).step_by(2).sum();
            assert_eq!(ones as f64, area);
        } else {
            polygons += 1;
            assert_eq!(annotation["iscrowd"], 0);
            let polygon = segmentation[0].as_array().unwrap();
            assert!(polygon.len() >= 6 && polygon.len() % 2 == 0);
        }
    }
    assert!(polygons > 0 && rles > 0, "polygons {polygons}, rles {rles}");
    let names: Vec<&str> = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 10);
    assert_eq!(names[4], "ring");
}

#[test]
fn rle_counts_are_column_major_and_start_with_zeros() {
    // 3 wide, 2 high:
    //   1 0 0
    //   1 1 0
    let mask = [true, false, false, true, true, false];
    assert_eq!(rle_counts(&mask, 3, 2), vec![0, 2, 1, 1, 2]);
    assert_eq!(rle_counts(&[false; 4], 2, 2), vec![4]);
}

#[test]
fn source_split_round_trips_and_bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SynthConfig::tiny().with_num_classes(4);
    config.source.train = 40;
    config.source.val = 8;
    let written = write_source(&config, dir.path()).unwrap();
    let train = read_source(&written.train).unwrap();
    assert_eq!((train.width, train.height, train.num_classes), (64, 64, 4));
    assert_eq!(train.labels.len(), 40);
    assert_eq!(train.pixels.len(), 40 * 3 * 64 * 64);
    assert_eq!(read_source(&written.val).unwrap().labels.len(), 8);
    let classes = std::fs::read_to_string(dir.path().join("classes.txt")).unwrap();
    assert_eq!(classes, "circle\nsquare\ntriangle\nstar\n");

    let bytes = std::fs::read(&written.train).unwrap();
    let truncated = dir.path().join("truncated.bin");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();
    let err = read_source(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("truncated.bin") && err.contains("needs"),
        "{err}"
    );
    let cifar_like = dir.path().join("data_batch_1.bin");
    std::fs::write(&cifar_like, vec![0u8; 3073]).unwrap();
    let err = read_source(&cifar_like).unwrap_err().to_string();
    assert!(err.contains("RTBSHAPE"), "{err}");
}

#[test]
fn bad_configurations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        SynthConfig::tiny().with_num_classes(0),
        SynthConfig::tiny().with_num_classes(11),
        {
            let mut c = SynthConfig::tiny();
            c.coco.width = 4;
            c
        },
    ] {
        let err = write_coco(&config, dir.path()).unwrap_err();
        assert!(matches!(err, rtb_synth::SynthError::Config { .. }), "{err}");
    }
}
