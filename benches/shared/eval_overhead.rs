//! What the corrupted-evaluation benches of the dense tasks share: rtb-ade's and rtb-coco's
//! `benches/eval_overhead.rs` include this file (`#[path]`), so both time the same work the
//! same way: a timer, a decoded full-resolution test image of fixed patterns, and its
//! corruption by each of the 15 benchmark corruptions at severity 3 (imagecorruptions
//! flavor, seeded), averaged.
//!
//! Frost needs the textures (`cargo xtask assets`); without them the mean is over the other
//! 14 corruptions, and [`CorruptionCost::note`] says so.

use std::time::Instant;

use image::RgbImage;
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};

/// `f`'s result and the wall-clock seconds it took.
pub fn seconds<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// A `width × height` RGB image of fixed smooth-and-sharp patterns (not flat, so that the
/// corruptions and codecs do real work).
pub fn test_image(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = |k: u32| ((x * k + y * (k + 3)) % 251) as u8;
        image::Rgb([v(3), v(5), v(7)])
    })
}

/// The mean time of one corruption of an image.
#[derive(Debug, Clone, Copy)]
pub struct CorruptionCost {
    /// Mean seconds over the corruptions that ran.
    pub mean: f64,
    /// How many ran (15, or 14 without the frost textures).
    pub counted: usize,
    /// Whether the frost textures were found.
    pub frost: bool,
}

impl CorruptionCost {
    /// `mean of 15` or `mean of 14, no frost textures`.
    pub fn note(&self) -> String {
        if self.frost {
            format!("mean of {}", self.counted)
        } else {
            format!("mean of {}, no frost textures", self.counted)
        }
    }
}

/// Corrupts `image` with each benchmark corruption at severity 3 (seed 7), printing each
/// one's time, and returns the mean.
pub fn corruption_cost(image: &RgbImage) -> CorruptionCost {
    let mut corruptor = Corruptor::new(Flavor::ImageCorruptions);
    let frost = rtb_fetch::frost_dir().filter(|dir| dir.join("frost1.png").exists());
    if let Some(dir) = &frost {
        corruptor = corruptor.with_frost_textures(FrostTextures::new(dir));
    }
    let severity = Severity::new(3).expect("severity");
    let mut total = 0.0;
    let mut counted = 0usize;
    for corruption in Corruption::BENCHMARK {
        let mut rng = RandomState::new(7);
        match seconds(|| corruptor.corrupt(image, corruption, severity, &mut rng)) {
            (Ok(_), s) => {
                total += s;
                counted += 1;
                println!("  corrupt {:<18} {:>8.1} ms", corruption.name(), s * 1e3);
            }
            (Err(err), _) => println!("  corrupt {:<18} skipped: {err}", corruption.name()),
        }
    }
    CorruptionCost {
        mean: total / counted.max(1) as f64,
        counted,
        frost: frost.is_some(),
    }
}
