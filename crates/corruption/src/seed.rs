//! Per-image seeds for corrupting datasets: one `np.random.seed` value per (run seed, image,
//! corruption, severity), stable across machines, runs, thread counts and Rust versions.

use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use crate::{Corruption, Severity};

/// The seed for one image of a dataset: the first four bytes (little-endian) of
///
/// ```text
/// SHA-256("rtb-corruption-seed-v1\n{seed}\n{relative path}\n{corruption}\n{severity}")
/// ```
///
/// where the relative path has its components joined by `/` whatever the platform (non-UTF-8
/// bytes replaced as by `to_string_lossy`), `{seed}` is the decimal run seed, `{corruption}` is
/// the reference name (`gaussian_noise`) and `{severity}` is 1..5. The result is a valid numpy
/// seed (< 2³²): `RandomState::new(image_seed(..))` is `np.random.seed(image_seed(..))`.
///
/// ```
/// use rtb_corruption::{image_seed, Corruption, Severity};
/// let a = image_seed(0, "n01440764/ILSVRC2012_val_00000293.JPEG".as_ref(), Corruption::Fog, Severity::ALL[0]);
/// let b = image_seed(0, "n01440764/ILSVRC2012_val_00000293.JPEG".as_ref(), Corruption::Fog, Severity::ALL[1]);
/// assert_ne!(a, b);
/// ```
pub fn image_seed(
    seed: u64,
    relative_path: &Path,
    corruption: Corruption,
    severity: Severity,
) -> u32 {
    let path = relative_path
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/");
    let message = format!(
        "rtb-corruption-seed-v1\n{seed}\n{path}\n{}\n{}",
        corruption.name(),
        severity.get()
    );
    let digest = Sha256::digest(message.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_pinned_values() {
        // Regression values: changing the derivation silently changes every dataset.
        // (Python: int.from_bytes(sha256(b"rtb-corruption-seed-v1\n0\na/b.png\n
        // gaussian_noise\n1").digest()[:4], "little").)
        let seed = image_seed(
            0,
            Path::new("a/b.png"),
            Corruption::GaussianNoise,
            Severity::ALL[0],
        );
        assert_eq!(seed, 1_111_593_364);
    }

    #[test]
    fn every_input_changes_the_seed() {
        let base = image_seed(7, Path::new("x/y.jpg"), Corruption::Snow, Severity::ALL[2]);
        assert_ne!(
            base,
            image_seed(8, Path::new("x/y.jpg"), Corruption::Snow, Severity::ALL[2])
        );
        assert_ne!(
            base,
            image_seed(7, Path::new("x/z.jpg"), Corruption::Snow, Severity::ALL[2])
        );
        assert_ne!(
            base,
            image_seed(7, Path::new("x/y.jpg"), Corruption::Fog, Severity::ALL[2])
        );
        assert_ne!(
            base,
            image_seed(7, Path::new("x/y.jpg"), Corruption::Snow, Severity::ALL[3])
        );
        // Separators and `.` components do not matter.
        assert_eq!(
            base,
            image_seed(
                7,
                Path::new("./x//y.jpg"),
                Corruption::Snow,
                Severity::ALL[2]
            )
        );
    }
}
