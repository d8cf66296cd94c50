//! Every corruption, severity and flavor on sizes from 1×1 up to 2000×7 (1×N and N×1 included):
//! never a panic, always an image of the input's size. The references refuse images under
//! 32 pixels; rtb's behaviour there is documented in the crate docs.
//!
//! Frost is included when the textures are present (RTB_REQUIRE_ASSETS=1 makes them required).

use image::RgbImage;
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};

/// A small deterministic generator for sizes and pixels (no dependency, same on every run).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sizes() -> Vec<(u32, u32)> {
    let mut sizes = vec![
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (1, 37),
        (37, 1),
        (3, 5),
        (5, 3),
        (4, 4),
        (7, 7),
        (9, 16),
        (1, 300),
        (300, 1),
        (2000, 7),
        (7, 2000),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..12 {
        // Mostly small: widths and heights 1..=48, skewed towards the smallest.
        let w = 1 + rng.below(48).min(rng.below(48)) as u32;
        let h = 1 + rng.below(48).min(rng.below(48)) as u32;
        sizes.push((w, h));
    }
    sizes
}

fn image(width: u32, height: u32, rng: &mut XorShift) -> RgbImage {
    let kind = rng.below(3);
    RgbImage::from_fn(width, height, |x, y| match kind {
        0 => image::Rgb([rng.next() as u8, rng.next() as u8, rng.next() as u8]),
        1 => image::Rgb([(x * 9 % 256) as u8, (y * 5 % 256) as u8, 128]),
        _ => image::Rgb([255, 255, 255]),
    })
}

#[allow(clippy::print_stderr)]
fn frost_textures() -> Option<FrostTextures> {
    let dir = rtb_fetch::frost_dir()?;
    if dir.join("frost1.png").is_file() {
        return Some(FrostTextures::new(dir));
    }
    assert!(
        std::env::var("RTB_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "RTB_REQUIRE_ASSETS=1 but the frost textures are not in {dir:?}"
    );
    eprintln!("note: frost textures not found in {dir:?}; frost is left out");
    None
}

#[test]
fn every_corruption_severity_and_flavor_handles_every_size() {
    let textures = frost_textures();
    let mut rng = XorShift(42);
    for (width, height) in sizes() {
        let input = image(width, height, &mut rng);
        for flavor in Flavor::ALL {
            let mut corruptor = Corruptor::new(flavor);
            if let Some(textures) = &textures {
                corruptor = corruptor.with_frost_textures(textures.clone());
            }
            for corruption in Corruption::ALL {
                if corruption == Corruption::Frost && textures.is_none() {
                    continue;
                }
                for severity in Severity::ALL {
                    let seed = rng.next() as u32;
                    let out = corruptor
                        .corrupt(&input, corruption, severity, &mut RandomState::new(seed))
                        .unwrap_or_else(|e| {
                            panic!("{corruption} {severity} {flavor} {width}×{height}: {e}")
                        });
                    assert_eq!(
                        out.dimensions(),
                        (width, height),
                        "{corruption} {severity} {flavor}"
                    );
                }
            }
        }
    }
}

#[test]
fn frost_without_textures_is_an_error_not_a_panic() {
    let input = RgbImage::new(8, 8);
    let err = Corruptor::new(Flavor::ImageCorruptions)
        .corrupt(
            &input,
            Corruption::Frost,
            Severity::ALL[0],
            &mut RandomState::new(0),
        )
        .unwrap_err();
    assert!(err.to_string().contains("cargo xtask assets"), "{err}");
}
