//! CIFAR-10-C: the test set under the 19 corruptions at 5 severities, either the released
//! files or generated here with rtb-corruption's `cifar-c` flavor and cached on disk.
//!
//! Both use the released layout, so one reader serves both: a folder with `labels.npy`
//! (`[5·N]`, the test labels once per severity) and one `<corruption>.npy` per corruption
//! (`uint8 [5·N, 32, 32, 3]`, severity 1's N images first, then severity 2's, …).
//!
//! A generated folder also has `rtb-cifar-c.json`, written after each corruption's file:
//! `{"format": "rtb-cifar-c-v1", "flavor": "cifar-c", "seed": S, "images": N,
//! "test_sha256": "<sha256 of the test labels and pixels>", "corruptions": ["fog", …]}`. A
//! corruption listed there is complete (its file was renamed into place before the manifest
//! was rewritten); generation skips it. A manifest with another seed or test set starts over.
//!
//! Seeds: image `i` under corruption `c` at severity `s` is corrupted after
//! `np.random.seed(image_seed(seed, "test/<i:05>", c, s))` (see
//! [`rtb_corruption::image_seed`]), so every image is reproducible on its own, in any order
//! and on any number of threads. (The released CIFAR-10-C was drawn from one sequential
//! global RandomState; its exact bytes cannot be regenerated.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, Severity};
use rtb_train::{
    Corrupted, CorruptibleSample, CorruptionSpec, DataLoader, Dataset, Event, LoaderConfig,
    Observer,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::binary::{CifarImages, IMAGE_BYTES, SIDE};
use crate::error::{CifarError, Result};
use crate::npy::{read_npy, write_npy_u8};

/// The labels file of a CIFAR-10-C folder.
pub const LABELS_FILE: &str = "labels.npy";
/// The manifest of a generated folder.
pub const MANIFEST_FILE: &str = "rtb-cifar-c.json";
const FORMAT: &str = "rtb-cifar-c-v1";

/// The file of one corruption.
pub fn corruption_file(dir: &Path, corruption: Corruption) -> PathBuf {
    dir.join(format!("{}.npy", corruption.name()))
}

/// The key whose seed corrupts test image `index`.
pub fn image_key(index: usize) -> PathBuf {
    PathBuf::from(format!("test/{index:05}"))
}

/// A CIFAR-10-C folder (released or generated).
#[derive(Debug, Clone)]
pub struct CifarC {
    dir: PathBuf,
    labels: Vec<u8>,
}

impl CifarC {
    /// Opens a folder: reads and checks `labels.npy` (`[5·N]`).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(LABELS_FILE);
        let array = read_npy(&path)?;
        if array.shape.len() != 1 || array.shape[0] == 0 || array.shape[0] % 5 != 0 {
            return Err(CifarError::Format {
                path,
                message: format!(
                    "shape {:?}: expected [5·N] (the test labels once per severity)",
                    array.shape
                ),
            });
        }
        let labels = array.into_labels(&path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            labels,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Images per severity.
    pub fn images_per_severity(&self) -> usize {
        self.labels.len() / 5
    }

    /// Whether `<corruption>.npy` exists.
    pub fn has(&self, corruption: Corruption) -> bool {
        corruption_file(&self.dir, corruption).is_file()
    }

    /// The five severities of one corruption (index `s − 1` is severity `s`).
    pub fn load(&self, corruption: Corruption) -> Result<[CifarImages; 5]> {
        let path = corruption_file(&self.dir, corruption);
        let array = read_npy(&path)?;
        let n = self.images_per_severity();
        if array.shape != [5 * n, SIDE, SIDE, 3] {
            return Err(CifarError::Format {
                path,
                message: format!(
                    "shape {:?}: expected [{}, 32, 32, 3] to match {LABELS_FILE}",
                    array.shape,
                    5 * n
                ),
            });
        }
        let pixels = array.into_u8(&path)?;
        Ok(std::array::from_fn(|s| CifarImages {
            pixels: pixels[s * n * IMAGE_BYTES..(s + 1) * n * IMAGE_BYTES].to_vec(),
            labels: self.labels[s * n..(s + 1) * n].to_vec(),
        }))
    }
}

/// The manifest of a generated folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    flavor: String,
    seed: u64,
    images: usize,
    test_sha256: String,
    corruptions: BTreeSet<String>,
}

/// The sha256 of a set's labels and pixels (identifies the test set a cache was made from).
pub fn images_sha256(images: &CifarImages) -> String {
    let mut hasher = Sha256::new();
    hasher.update((images.len() as u64).to_le_bytes());
    hasher.update(&images.labels);
    hasher.update(&images.pixels);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How to generate CIFAR-10-C.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The corruptions to generate (each at severities 1..5).
    pub corruptions: Vec<Corruption>,
    /// The evaluation seed of the per-image seeds.
    pub seed: u64,
    /// The frost textures' folder (needed only for frost).
    pub frost_dir: Option<PathBuf>,
    /// Worker threads.
    pub workers: usize,
}

/// One test image with its index, as the loader's workers corrupt it.
#[derive(Debug, Clone)]
pub struct KeyedImage {
    /// Index in the test set.
    pub index: usize,
    /// The image.
    pub image: RgbImage,
    /// Its label.
    pub label: u8,
}

impl CorruptibleSample for KeyedImage {
    fn image_mut(&mut self) -> &mut RgbImage {
        &mut self.image
    }
    fn seed_key(&self) -> PathBuf {
        image_key(self.index)
    }
}

/// The test images as a dataset of [`KeyedImage`]s (what gets corrupted).
#[derive(Debug, Clone)]
pub struct TestImages(pub Arc<CifarImages>);

impl Dataset for TestImages {
    type Sample = KeyedImage;
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<KeyedImage> {
        Ok(KeyedImage {
            index,
            image: self.0.image(index),
            label: self.0.labels[index],
        })
    }
}

/// The corruptor of the `cifar-c` flavor, with frost textures when `frost_dir` is given (their
/// presence and checksums are verified here, before any work).
pub fn cifar_corruptor(frost_dir: Option<&Path>, needs_frost: bool) -> Result<Corruptor> {
    let corruptor = Corruptor::new(Flavor::CifarC);
    match frost_dir {
        Some(dir) if needs_frost => {
            let textures = FrostTextures::new(dir);
            textures.verify()?;
            Ok(corruptor.with_frost_textures(textures))
        }
        None if needs_frost => {
            Err(rtb_corruption::CorruptionError::FrostTexturesNotConfigured.into())
        }
        _ => Ok(corruptor),
    }
}

/// Corrupts `test` with one corruption at one severity, in test order, on `workers` threads.
pub fn corrupt_set(
    test: &Arc<CifarImages>,
    spec: CorruptionSpec,
    workers: usize,
) -> Result<CifarImages> {
    let loader = DataLoader::new(
        Corrupted::new(TestImages(test.clone()), spec),
        |samples: Vec<KeyedImage>| -> rtb_train::Result<Vec<KeyedImage>> { Ok(samples) },
        LoaderConfig {
            batch_size: 250,
            shuffle: false,
            drop_last: false,
            workers,
            prefetch: 2,
            seed: 0,
        },
    )?;
    let mut out = CifarImages {
        pixels: Vec::with_capacity(test.pixels.len()),
        labels: Vec::with_capacity(test.len()),
    };
    for batch in loader.epoch(0) {
        for sample in batch? {
            out.pixels.extend_from_slice(sample.image.as_raw());
            out.labels.push(sample.label);
        }
    }
    Ok(out)
}

/// Generates (or completes) a CIFAR-10-C folder from `test`; corruptions already complete in
/// the manifest are skipped. Reports one [`Event::Phase`] per corruption and severity.
pub fn generate(
    test: &CifarImages,
    dir: &Path,
    opts: &GenerateOptions,
    observer: &mut dyn Observer,
) -> Result<CifarC> {
    let test_sha256 = images_sha256(test);
    let manifest_path = dir.join(MANIFEST_FILE);
    let fresh = Manifest {
        format: FORMAT.into(),
        flavor: Flavor::CifarC.name().into(),
        seed: opts.seed,
        images: test.len(),
        test_sha256: test_sha256.clone(),
        corruptions: BTreeSet::new(),
    };
    let mut manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => match serde_json::from_str::<Manifest>(&text) {
            Ok(found)
                if found.format == FORMAT
                    && found.seed == opts.seed
                    && found.images == test.len()
                    && found.test_sha256 == test_sha256 =>
            {
                found
            }
            _ => {
                tracing::warn!(
                    "{} was made from another test set or seed: regenerating",
                    manifest_path.display()
                );
                fresh
            }
        },
        Err(_) => fresh,
    };
    let missing: Vec<Corruption> = opts
        .corruptions
        .iter()
        .copied()
        .filter(|c| {
            !(manifest.corruptions.contains(c.name()) && corruption_file(dir, *c).is_file())
        })
        .collect();
    let labels_ok = CifarC::open(dir)
        .map(|c| c.labels.len() == 5 * test.len())
        .unwrap_or(false);
    if !missing.is_empty() || !labels_ok {
        std::fs::create_dir_all(dir).map_err(crate::error::io_err(dir))?;
        let labels: Vec<u8> = (0..5).flat_map(|_| test.labels.iter().copied()).collect();
        write_npy_u8(&dir.join(LABELS_FILE), &[labels.len()], &labels)?;
    }
    if missing.is_empty() {
        return CifarC::open(dir);
    }
    let corruptor = cifar_corruptor(
        opts.frost_dir.as_deref(),
        missing.contains(&Corruption::Frost),
    )?;
    let test = Arc::new(test.clone());
    let total = missing.len() * 5;
    for (position, &corruption) in missing.iter().enumerate() {
        let mut pixels = Vec::with_capacity(5 * test.pixels.len());
        for severity in Severity::ALL {
            let spec = CorruptionSpec {
                corruptor: corruptor.clone(),
                corruption,
                severity,
                seed: opts.seed,
            };
            pixels.extend(corrupt_set(&test, spec, opts.workers)?.pixels);
            observer.on_event(&Event::Phase {
                name: format!("CIFAR-10-C {corruption}"),
                done: position * 5 + severity.index() + 1,
                total,
            });
        }
        write_npy_u8(
            &corruption_file(dir, corruption),
            &[5 * test.len(), SIDE, SIDE, 3],
            &pixels,
        )?;
        manifest.corruptions.insert(corruption.name().to_string());
        let text = serde_json::to_string_pretty(&manifest).expect("the manifest serialises");
        rtb_train::write_atomically(&manifest_path, text.as_bytes())?;
    }
    CifarC::open(dir)
}
