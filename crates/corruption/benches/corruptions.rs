//! Every corruption at 224×224 and 640×480 (the golden inputs 224x224.png and 480x640.png), one
//! iteration = the five severities, imagecorruptions flavor, one thread. The Python peer is
//! `benches/reference_timing.py`; `benches/ratios.py` joins both into BENCHMARKS.md's table.
//!
//!     cargo bench -p rtb-corruption --bench corruptions
//!
//! frost needs the textures (`cargo xtask assets` or RTB_FROST_DIR); without them it is left out.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};

fn input(name: &str) -> image::RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/inputs")
        .join(format!("{name}.png"));
    image::open(path).expect("golden input").to_rgb8()
}

fn corruptions(c: &mut Criterion) {
    let textures = rtb_fetch::frost_dir()
        .filter(|dir| dir.join("frost1.png").is_file())
        .map(FrostTextures::new);
    let mut corruptor = Corruptor::new(Flavor::ImageCorruptions);
    if let Some(textures) = &textures {
        textures.verify().expect("frost textures");
        corruptor = corruptor.with_frost_textures(textures.clone());
    }
    for (label, name) in [("224x224", "224x224"), ("640x480", "480x640")] {
        let image = input(name);
        let mut group = c.benchmark_group(label);
        group.sample_size(10);
        group.warm_up_time(std::time::Duration::from_millis(500));
        group.measurement_time(std::time::Duration::from_secs(2));
        for corruption in Corruption::ALL {
            if corruption == Corruption::Frost && textures.is_none() {
                continue;
            }
            group.bench_function(corruption.name(), |b| {
                b.iter(|| {
                    for severity in Severity::ALL {
                        let mut rng = RandomState::new(severity.get() as u32);
                        let out = corruptor
                            .corrupt(black_box(&image), corruption, severity, &mut rng)
                            .expect("corrupts");
                        black_box(out);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, corruptions);
criterion_main!(benches);
