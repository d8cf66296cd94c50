//! Generated CIFAR-10-C: per-image seeds (equal to corrupting one image by hand), the same
//! bytes on the fly and from the cache, a complete cache is not regenerated, and a cache made
//! with another seed is.

mod common;

use std::sync::Arc;

use rtb_cifar::CifarC;
use rtb_cifar::cifar_c::{self, GenerateOptions, MANIFEST_FILE, corrupt_set, image_key};
use rtb_corruption::{Corruption, Flavor, RandomState, Severity, corrupt, image_seed};
use rtb_train::{CorruptionSpec, NullObserver, Recorder};

#[test]
fn generation_is_seeded_per_image_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let test = common::synthetic_images(12, 3);
    let cache = dir.path().join("cifar-c");
    let opts = GenerateOptions {
        corruptions: vec![Corruption::GaussianNoise, Corruption::Contrast],
        seed: 9,
        frost_dir: None,
        workers: 2,
    };
    let mut events = Recorder::default();
    let folder = cifar_c::generate(&test, &cache, &opts, &mut events).unwrap();
    assert_eq!(folder.images_per_severity(), 12);
    assert_eq!(
        events.events.len(),
        10,
        "one phase event per corruption × severity"
    );
    let noise = folder.load(Corruption::GaussianNoise).unwrap();
    assert_eq!(noise[0].labels, test.labels);

    // Image 5 at severity 3 equals corrupting it alone with its own seed.
    let severity = Severity::new(3).unwrap();
    let mut rng = RandomState::new(image_seed(
        9,
        &image_key(5),
        Corruption::GaussianNoise,
        severity,
    ));
    let alone = corrupt(
        &test.image(5),
        Corruption::GaussianNoise,
        severity,
        Flavor::CifarC,
        &mut rng,
    )
    .unwrap();
    assert_eq!(noise[2].image_bytes(5), alone.as_raw().as_slice());
    assert_ne!(noise[2].image_bytes(5), test.image_bytes(5));

    // On the fly (any worker count) gives the same bytes as the cache.
    for workers in [0, 3] {
        let spec = CorruptionSpec {
            corruptor: cifar_c::cifar_corruptor(None, false).unwrap(),
            corruption: Corruption::GaussianNoise,
            severity,
            seed: 9,
        };
        let on_the_fly = corrupt_set(&Arc::new(test.clone()), spec, workers).unwrap();
        assert_eq!(on_the_fly, noise[2]);
    }

    // A complete cache is reused: nothing is rewritten.
    let file = cifar_c::corruption_file(&cache, Corruption::Contrast);
    let stamp = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cifar_c::generate(&test, &cache, &opts, &mut NullObserver).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), stamp);

    // Asking for one more corruption generates only that one.
    let mut more = opts.clone();
    more.corruptions.push(Corruption::Brightness);
    let mut events = Recorder::default();
    cifar_c::generate(&test, &cache, &more, &mut events).unwrap();
    assert_eq!(events.events.len(), 5);
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), stamp);
    let manifest = std::fs::read_to_string(cache.join(MANIFEST_FILE)).unwrap();
    assert!(
        manifest.contains("brightness") && manifest.contains("\"seed\": 9"),
        "{manifest}"
    );

    // Another seed regenerates (different bytes for a stochastic corruption).
    let mut reseeded = opts.clone();
    reseeded.seed = 10;
    let folder = cifar_c::generate(&test, &cache, &reseeded, &mut NullObserver).unwrap();
    assert_ne!(folder.load(Corruption::GaussianNoise).unwrap()[2], noise[2]);
    // Reading back through the released-layout reader works the same.
    assert_eq!(CifarC::open(&cache).unwrap().images_per_severity(), 12);
}

#[test]
fn frost_without_textures_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let test = common::synthetic_images(2, 3);
    let opts = GenerateOptions {
        corruptions: vec![Corruption::Frost],
        seed: 0,
        frost_dir: None,
        workers: 1,
    };
    let err = cifar_c::generate(&test, dir.path(), &opts, &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frost"), "{err}");
    let opts = GenerateOptions {
        frost_dir: Some(dir.path().join("no-textures")),
        ..opts
    };
    let err = cifar_c::generate(&test, dir.path(), &opts, &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-textures"), "{err}");
}
