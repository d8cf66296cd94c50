//! `rtb corrupt`: the 19 corruptions on one image, or on a whole folder in the ImageNet-C
//! layout.
//!
//! - `rtb corrupt --corruption NAME --severity S [--flavor F] [--seed N] INPUT OUTPUT`:
//!   `--seed N` means exactly `np.random.seed(N)` before the reference call (default 0).
//! - `rtb corrupt dataset --input DIR --output DIR [--corruptions …] [--severities …]`: every
//!   image under DIR (recursively: .png, .jpg, .jpeg, any case) to
//!   `OUTPUT/<corruption>/<severity>/<relative path>`, in parallel on `--jobs` threads. Image
//!   `p` gets the seed `rtb_corruption::image_seed(seed, p, corruption, severity)` (a SHA-256 of
//!   those four, documented there), so the output does not depend on the thread count or on
//!   which files were already done. A finished file is never rewritten: each output is written
//!   to `.<name>.partial` beside it and renamed, so a file that exists is complete, and a rerun
//!   resumes. Inputs that cannot be read are skipped, listed at the end, and make the exit
//!   status 1.
//!
//! PNG outputs are lossless. A JPEG output path (the dataset keeps each input's extension
//! unless `--png`) is re-encoded at `--jpeg-quality` (default 85, what the ImageNet-C code
//! saved with) by the `image` crate's encoder — that second compression is not part of the
//! corruption; pass `--png` to keep the corrupted pixels exactly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use image::{DynamicImage, ImageFormat, RgbImage};
use rayon::prelude::*;
use rtb_corruption::{
    Corruption, CorruptionError, Corruptor, Flavor, FrostTextures, RandomState, Severity,
    image_seed,
};

/// Arguments of `rtb corrupt`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    #[command(flatten)]
    single: SingleArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Corrupt every image of a folder into OUTPUT/<corruption>/<severity>/<relative path>.
    Dataset(DatasetArgs),
}

/// Options shared by both forms.
#[derive(Debug, Clone, clap::Args)]
struct CommonArgs {
    /// Which reference to follow: imagecorruptions (any size), imagenet-c (the ImageNet-C
    /// code's tables and variants), cifar-c (the CIFAR-10-C code's).
    #[arg(long, default_value = "imagecorruptions", value_parser = parse_flavor)]
    flavor: Flavor,
    /// Directory with the six frost textures (default: where `cargo xtask assets` puts them:
    /// $RTB_FROST_DIR, else <cache>/assets/frost).
    #[arg(long, value_name = "DIR")]
    frost_dir: Option<PathBuf>,
    /// JPEG quality for outputs whose extension is .jpg/.jpeg.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
}

#[derive(Debug, clap::Args)]
struct SingleArgs {
    /// Corruption name (gaussian_noise, …, saturate).
    #[arg(long, value_parser = parse_corruption, required = true)]
    corruption: Option<Corruption>,
    /// Severity 1..5.
    #[arg(long, value_parser = parse_severity, required = true)]
    severity: Option<Severity>,
    /// numpy seed: the output equals `np.random.seed(SEED)` followed by the reference call.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    #[command(flatten)]
    common: CommonArgs,
    /// Image to corrupt (PNG or JPEG; grey and RGBA are converted to RGB).
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Where to write the result (format from the extension; PNG is lossless).
    #[arg(required = true)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct DatasetArgs {
    /// Folder of images (searched recursively for .png, .jpg, .jpeg).
    #[arg(long)]
    input: PathBuf,
    /// Output root: OUTPUT/<corruption>/<severity>/<relative path>.
    #[arg(long)]
    output: PathBuf,
    /// all (19), benchmark (15), extra (4), or a comma-separated list of names.
    #[arg(long, default_value = "benchmark")]
    corruptions: String,
    /// Severities: a range `1-5`, a list `1,3,5`, or one level.
    #[arg(long, default_value = "1-5")]
    severities: String,
    /// Run seed; each image gets `image_seed(seed, relative path, corruption, severity)`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Write PNG (lossless) instead of keeping each input's extension.
    #[arg(long)]
    png: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn parse_flavor(text: &str) -> Result<Flavor, String> {
    text.parse().map_err(|e: CorruptionError| e.to_string())
}

fn parse_corruption(text: &str) -> Result<Corruption, String> {
    text.parse().map_err(|e: CorruptionError| e.to_string())
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse().map_err(|e: CorruptionError| e.to_string())
}

/// `all`, `benchmark`, `extra` or `a,b,c`.
fn parse_corruptions(text: &str) -> anyhow::Result<Vec<Corruption>> {
    let list = match text.trim() {
        "all" => Corruption::ALL.to_vec(),
        "benchmark" => Corruption::BENCHMARK.to_vec(),
        "extra" => Corruption::EXTRA.to_vec(),
        names => names
            .split(',')
            .map(|name| name.trim().parse::<Corruption>())
            .collect::<Result<Vec<_>, _>>()?,
    };
    if list.is_empty() {
        bail!("--corruptions selects nothing");
    }
    Ok(list)
}

/// `1-5`, `1,3,5` or `2`.
fn parse_severities(text: &str) -> anyhow::Result<Vec<Severity>> {
    let mut levels = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if let Some((low, high)) = part.split_once('-') {
            let low: Severity = low.parse()?;
            let high: Severity = high.parse()?;
            if low > high {
                bail!("severity range {part:?} is empty");
            }
            levels.extend(
                Severity::ALL
                    .into_iter()
                    .filter(|s| *s >= low && *s <= high),
            );
        } else {
            levels.push(part.parse()?);
        }
    }
    levels.sort();
    levels.dedup();
    Ok(levels)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Subcommand::Dataset(dataset)) => run_dataset(&dataset),
        None => run_single(args.single),
    }
}

fn corruptor(common: &CommonArgs, needs_frost: bool) -> anyhow::Result<Corruptor> {
    let corruptor = Corruptor::new(common.flavor);
    if !needs_frost {
        return Ok(corruptor);
    }
    let dir = common
        .frost_dir
        .clone()
        .or_else(rtb_fetch::frost_dir)
        .ok_or(CorruptionError::FrostTexturesNotConfigured)?;
    let textures = FrostTextures::new(dir);
    textures.verify()?;
    Ok(corruptor.with_frost_textures(textures))
}

fn read_image(path: &Path) -> anyhow::Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .decode()
        .with_context(|| format!("cannot decode {}", path.display()))
}

/// Encodes `image` by the extension of `path` into `.<name>.partial` beside it, then renames.
fn write_atomically(image: &RgbImage, path: &Path, jpeg_quality: u8) -> anyhow::Result<()> {
    let format = ImageFormat::from_path(path)
        .with_context(|| format!("unknown image format for {}", path.display()))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    let result = (|| -> anyhow::Result<()> {
        let file = std::fs::File::create(&partial)?;
        let mut writer = std::io::BufWriter::new(file);
        match format {
            ImageFormat::Jpeg => {
                let encoder =
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, jpeg_quality);
                image.write_with_encoder(encoder)?;
            }
            other => image.write_to(&mut writer, other)?,
        }
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(err.context(format!("cannot write {}", path.display())));
    }
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} to {}", partial.display(), path.display()))
}

fn run_single(args: SingleArgs) -> anyhow::Result<ExitCode> {
    let (Some(corruption), Some(severity), Some(input), Some(output)) =
        (args.corruption, args.severity, args.input, args.output)
    else {
        bail!("rtb corrupt needs --corruption, --severity, INPUT and OUTPUT");
    };
    let corruptor = corruptor(&args.common, corruption == Corruption::Frost)?;
    let image = read_image(&input)?;
    let mut rng = RandomState::new(args.seed);
    let out = corruptor.corrupt_dynamic(&image, corruption, severity, &mut rng)?;
    write_atomically(&out, &output, args.common.jpeg_quality)?;
    tracing::info!(
        "{corruption} severity {severity} ({}) → {}",
        args.common.flavor,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Image files under `root` (sorted relative paths).
fn find_images(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let file_type = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if is_image_name(&path) {
                found.push(
                    path.strip_prefix(root)
                        .expect("under the root")
                        .to_path_buf(),
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_image_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    !hidden && matches!(extension.as_deref(), Some("png" | "jpg" | "jpeg"))
}

fn run_dataset(args: &DatasetArgs) -> anyhow::Result<ExitCode> {
    let corruptions = parse_corruptions(&args.corruptions)?;
    let severities = parse_severities(&args.severities)?;
    let corruptor = corruptor(&args.common, corruptions.contains(&Corruption::Frost))?;
    let images = find_images(&args.input)?;
    if images.is_empty() {
        bail!("no .png/.jpg/.jpeg images under {}", args.input.display());
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .context("cannot start the worker threads")?;
    let total = (images.len() * corruptions.len() * severities.len()) as u64;
    tracing::info!(
        "{} images × {} corruptions × {} severities ({}) on {jobs} threads → {}",
        images.len(),
        corruptions.len(),
        severities.len(),
        args.common.flavor,
        args.output.display()
    );
    let bar = crate::progress::bar(total, "corrupt");
    let written = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let unreadable: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let failed: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    pool.install(|| {
        images.par_iter().for_each(|relative| {
            let outputs: Vec<(Corruption, Severity, PathBuf)> = corruptions
                .iter()
                .flat_map(|&c| severities.iter().map(move |&s| (c, s)))
                .map(|(c, s)| {
                    let mut path = args
                        .output
                        .join(c.name())
                        .join(s.to_string())
                        .join(relative);
                    if args.png {
                        path.set_extension("png");
                    }
                    (c, s, path)
                })
                .collect();
            let todo: Vec<_> = outputs.iter().filter(|(_, _, p)| !p.exists()).collect();
            let done = (outputs.len() - todo.len()) as u64;
            skipped.fetch_add(done, Ordering::Relaxed);
            bar.inc(done);
            if todo.is_empty() {
                return;
            }
            let image = match read_image(&args.input.join(relative)) {
                Ok(image) => image.to_rgb8(),
                Err(err) => {
                    unreadable
                        .lock()
                        .expect("no thread panics while holding it")
                        .push((relative.clone(), format!("{err:#}")));
                    bar.inc(todo.len() as u64);
                    return;
                }
            };
            for (corruption, severity, path) in todo {
                let seed = image_seed(args.seed, relative, *corruption, *severity);
                let result = corruptor
                    .corrupt(&image, *corruption, *severity, &mut RandomState::new(seed))
                    .map_err(anyhow::Error::from)
                    .and_then(|out| write_atomically(&out, path, args.common.jpeg_quality));
                match result {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => failed
                        .lock()
                        .expect("no thread panics while holding it")
                        .push((path.clone(), format!("{err:#}"))),
                }
                bar.inc(1);
            }
        });
    });
    bar.finish_and_clear();
    let unreadable = unreadable.into_inner().expect("workers are done");
    let failed = failed.into_inner().expect("workers are done");
    tracing::info!(
        "wrote {} images, {} already done",
        written.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed)
    );
    if unreadable.is_empty() && failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !unreadable.is_empty() {
        eprintln!("{} unreadable input(s) were skipped:", unreadable.len());
        for (path, err) in &unreadable {
            eprintln!("  {}: {err}", path.display());
        }
    }
    if !failed.is_empty() {
        eprintln!("{} output(s) could not be written:", failed.len());
        for (path, err) in &failed {
            eprintln!("  {}: {err}", path.display());
        }
    }
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_lists_parse() {
        assert_eq!(parse_corruptions("all").unwrap().len(), 19);
        assert_eq!(parse_corruptions("benchmark").unwrap().len(), 15);
        assert_eq!(parse_corruptions("extra").unwrap().len(), 4);
        assert_eq!(
            parse_corruptions("fog, contrast").unwrap(),
            vec![Corruption::Fog, Corruption::Contrast]
        );
        assert!(parse_corruptions("fog,haze").is_err());
    }

    #[test]
    fn severity_lists_parse() {
        let levels = |t: &str| -> Vec<u8> {
            parse_severities(t)
                .unwrap()
                .into_iter()
                .map(|s| s.get())
                .collect()
        };
        assert_eq!(levels("1-5"), vec![1, 2, 3, 4, 5]);
        assert_eq!(levels("2-3"), vec![2, 3]);
        assert_eq!(levels("5,1,3,3"), vec![1, 3, 5]);
        assert_eq!(levels("4"), vec![4]);
        assert!(parse_severities("0-5").is_err());
        assert!(parse_severities("4-2").is_err());
        assert!(parse_severities("6").is_err());
    }

    #[test]
    fn only_visible_png_and_jpeg_files_are_images() {
        assert!(is_image_name(Path::new("a/b.JPEG")));
        assert!(is_image_name(Path::new("b.png")));
        assert!(!is_image_name(Path::new("b.txt")));
        assert!(!is_image_name(Path::new("a/.b.png.partial")));
        assert!(!is_image_name(Path::new("a/.hidden.png")));
    }
}
