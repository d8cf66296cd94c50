//! The 19 corruptions, their categories and reference names.

use std::fmt;
use std::str::FromStr;

use crate::CorruptionError;

/// The four groups of the benchmark corruptions (as the paper and DESIGN.md group them), plus
/// the held-out extras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// gaussian, shot and impulse noise.
    Noise,
    /// defocus, glass, motion and zoom blur.
    Blur,
    /// snow, frost, fog, brightness.
    Weather,
    /// contrast, elastic transform, pixelate, JPEG compression.
    Digital,
    /// speckle noise, gaussian blur, spatter, saturate (not part of mPC).
    Extra,
}

impl Category {
    /// The four benchmark categories, in the paper's table order.
    pub const BENCHMARK: [Category; 4] = [
        Category::Noise,
        Category::Blur,
        Category::Weather,
        Category::Digital,
    ];

    /// Lower-case name (`noise`, `blur`, `weather`, `digital`, `extra`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Noise => "noise",
            Category::Blur => "blur",
            Category::Weather => "weather",
            Category::Digital => "digital",
            Category::Extra => "extra",
        }
    }

    /// The corruptions of this category, in reference order.
    pub fn corruptions(self) -> impl Iterator<Item = Corruption> {
        Corruption::ALL
            .into_iter()
            .filter(move |c| c.category() == self)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One corruption. The order of [`Corruption::ALL`] is imagecorruptions' `corruption_tuple`
/// (so `ALL[i]` is `corruption_number = i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Corruption {
    GaussianNoise,
    ShotNoise,
    ImpulseNoise,
    DefocusBlur,
    GlassBlur,
    MotionBlur,
    ZoomBlur,
    Snow,
    Frost,
    Fog,
    Brightness,
    Contrast,
    ElasticTransform,
    Pixelate,
    JpegCompression,
    SpeckleNoise,
    GaussianBlur,
    Spatter,
    Saturate,
}

impl Corruption {
    /// All 19, in reference order.
    pub const ALL: [Corruption; 19] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::Spatter,
        Corruption::Saturate,
    ];

    /// The 15 benchmark corruptions (those averaged into mPC).
    pub const BENCHMARK: [Corruption; 15] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
    ];

    /// The 4 held-out extras.
    pub const EXTRA: [Corruption; 4] = [
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::Spatter,
        Corruption::Saturate,
    ];

    /// The reference name (`gaussian_noise`, …), as imagecorruptions and ImageNet-C spell it.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Spatter => "spatter",
            Corruption::Saturate => "saturate",
        }
    }

    /// The category the paper groups this corruption in.
    pub fn category(self) -> Category {
        use Corruption::*;
        match self {
            GaussianNoise | ShotNoise | ImpulseNoise => Category::Noise,
            DefocusBlur | GlassBlur | MotionBlur | ZoomBlur => Category::Blur,
            Snow | Frost | Fog | Brightness => Category::Weather,
            Contrast | ElasticTransform | Pixelate | JpegCompression => Category::Digital,
            SpeckleNoise | GaussianBlur | Spatter | Saturate => Category::Extra,
        }
    }

    /// Whether the reference draws random numbers for this corruption (and so whether the
    /// seed matters).
    pub fn is_stochastic(self) -> bool {
        use Corruption::*;
        !matches!(
            self,
            DefocusBlur
                | ZoomBlur
                | Brightness
                | Contrast
                | Pixelate
                | JpegCompression
                | GaussianBlur
                | Saturate
        )
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Corruption {
    type Err = CorruptionError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Corruption::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| CorruptionError::UnknownCorruption(name.to_string()))
    }
}

/// A severity level, 1 to 5. It cannot hold any other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Severity(u8);

impl Severity {
    /// All five levels, mildest first.
    pub const ALL: [Severity; 5] = [
        Severity(1),
        Severity(2),
        Severity(3),
        Severity(4),
        Severity(5),
    ];

    /// `Some` for 1..=5.
    pub const fn new(level: u8) -> Option<Severity> {
        if level >= 1 && level <= 5 {
            Some(Severity(level))
        } else {
            None
        }
    }

    /// The level, 1..=5.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The index into a five-entry parameter table.
    pub const fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl TryFrom<u8> for Severity {
    type Error = CorruptionError;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        Severity::new(level).ok_or(CorruptionError::InvalidSeverity(level.to_string()))
    }
}

impl FromStr for Severity {
    type Err = CorruptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .parse::<u8>()
            .ok()
            .and_then(Severity::new)
            .ok_or_else(|| CorruptionError::InvalidSeverity(text.to_string()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which reference a corruption follows: parameter tables and algorithm variants differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flavor {
    /// The imagecorruptions 1.1.2 package: any image size; what detection benchmarks apply to
    /// COCO (the default).
    #[default]
    ImageCorruptions,
    /// The ImageNet-C generation code (`make_imagenet_c.py`), written for 224×224 images.
    ImageNetC,
    /// The CIFAR-10-C generation code (`make_cifar_c.py`), written for 32×32 images.
    CifarC,
}

impl Flavor {
    /// All flavors.
    pub const ALL: [Flavor; 3] = [Flavor::ImageCorruptions, Flavor::ImageNetC, Flavor::CifarC];

    /// The command-line name: `imagecorruptions`, `imagenet-c`, `cifar-c`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::ImageCorruptions => "imagecorruptions",
            Flavor::ImageNetC => "imagenet-c",
            Flavor::CifarC => "cifar-c",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Flavor {
    type Err = CorruptionError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| CorruptionError::UnknownFlavor(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for c in Corruption::ALL {
            assert_eq!(c.name().parse::<Corruption>().unwrap(), c);
        }
        let mut names: Vec<_> = Corruption::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 19);
    }

    #[test]
    fn benchmark_and_extra_partition_all() {
        let mut both: Vec<_> = Corruption::BENCHMARK
            .iter()
            .chain(Corruption::EXTRA.iter())
            .copied()
            .collect();
        both.sort();
        let mut all = Corruption::ALL.to_vec();
        all.sort();
        assert_eq!(both, all);
        assert!(
            Corruption::EXTRA
                .iter()
                .all(|c| c.category() == Category::Extra)
        );
        assert_eq!(Category::Blur.corruptions().count(), 4);
        assert_eq!(Category::Noise.corruptions().count(), 3);
        assert_eq!(Category::Weather.corruptions().count(), 4);
        assert_eq!(Category::Digital.corruptions().count(), 4);
    }

    #[test]
    fn unknown_names_are_errors_listing_the_valid_ones() {
        let err = "gaussian".parse::<Corruption>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gaussian"), "{text}");
        assert!(text.contains("jpeg_compression"), "{text}");
        assert!("imagenet_c".parse::<Flavor>().is_err());
    }

    #[test]
    fn severity_holds_only_one_to_five() {
        assert!(Severity::new(0).is_none());
        assert!(Severity::new(6).is_none());
        assert_eq!(Severity::new(3).unwrap().index(), 2);
        assert!("6".parse::<Severity>().is_err());
        assert!("x".parse::<Severity>().is_err());
        assert_eq!("5".parse::<Severity>().unwrap().get(), 5);
        assert!(Severity::try_from(0u8).is_err());
    }
}
