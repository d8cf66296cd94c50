//! Every corruption at 224×224 and 640×480 (the golden inputs 224x224.png and 480x640.png), one
//! iteration = the five severities, imagecorruptions flavor, one thread. The Python peer is
//! `benches/reference_timing.py`; `benches/ratios.py` joins both into BENCHMARKS.md's table.
//!
//!     cargo bench -p rtb-corruption --bench corruptions
//!
//! Times are process CPU time (`CLOCK_PROCESS_CPUTIME_ID`), not wall time, on both sides: the
//! machines these run on are shared, and CPU time is what a corruption costs whatever else runs.
//! frost needs the textures (`cargo xtask assets` or RTB_FROST_DIR); without them it is left out.

use std::hint::black_box;
use std::path::Path;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};

/// Process CPU time in nanoseconds.
#[allow(unsafe_code)]
fn cpu_time_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec and the clock id is a constant the kernel
    // supports; clock_gettime writes only into `now`.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// criterion measurement: CPU time of the process.
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        cpu_time_ns()
    }

    fn end(&self, start: u64) -> u64 {
        cpu_time_ns() - start
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosecondFormatter
    }
}

struct NanosecondFormatter;

impl ValueFormatter for NanosecondFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                *n as f64
            }
        };
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v);
        "elem/s (CPU)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn input(name: &str) -> image::RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/inputs")
        .join(format!("{name}.png"));
    image::open(path).expect("golden input").to_rgb8()
}

fn corruptions(c: &mut Criterion<CpuTime>) {
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

fn cpu_time_criterion() -> Criterion<CpuTime> {
    Criterion::default().with_measurement(CpuTime)
}

criterion_group! {
    name = benches;
    config = cpu_time_criterion();
    targets = corruptions
}
criterion_main!(benches);
