//! The 1000 ILSVRC-2012 classes as WordNet IDs, in the standard sorted order that gives
//! every class index (torchvision's `ImageFolder` on the full `val/` folder, timm, and the
//! `val.txt` labels files all use it).
//!
//! The list is `timm/data/_info/imagenet_synsets.txt` from the timm 1.0.31 wheel on PyPI
//! (Apache-2.0): 1000 lines, one wnid each, sorted.

use std::sync::OnceLock;

/// The text of the embedded list (one wnid per line).
pub const SYNSETS_TXT: &str = include_str!("imagenet_synsets.txt");

/// Number of ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// The 1000 wnids in class-index order (`wnids()[0] == "n01440764"`, tench).
pub fn wnids() -> &'static [&'static str] {
    static LIST: OnceLock<Vec<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        SYNSETS_TXT
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect()
    })
}

/// The class index of a wnid, or `None` for a name that is not an ImageNet-1k class.
pub fn class_index(wnid: &str) -> Option<usize> {
    wnids().binary_search(&wnid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_1000_sorted_unique_wnids() {
        let list = wnids();
        assert_eq!(list.len(), NUM_CLASSES);
        assert!(
            list.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, unique"
        );
        assert!(list.iter().all(|w| {
            w.len() == 9 && w.starts_with('n') && w[1..].bytes().all(|b| b.is_ascii_digit())
        }));
        assert_eq!(list[0], "n01440764");
        assert_eq!(list[999], "n15075141");
    }

    #[test]
    fn indices_follow_the_sorted_order() {
        assert_eq!(class_index("n01440764"), Some(0));
        assert_eq!(class_index("n01443537"), Some(1));
        assert_eq!(class_index("n15075141"), Some(999));
        assert_eq!(class_index("n00000000"), None);
        assert_eq!(class_index("cat"), None);
    }
}
