//! The study's published numbers (Yamada & Otani, "Transferability of ImageNet Robustness to
//! Downstream Tasks"), placed beside rtb's in every report. Columns follow the paper's tables:
//! Noise, Blur, Digital, Weather; values are the accuracy drop 1 − rPC in percent.

use rtb_corruption::Category;

/// The paper's column order.
pub(crate) const COLUMNS: [Category; 4] = [
    Category::Noise,
    Category::Blur,
    Category::Digital,
    Category::Weather,
];

/// The paper's backbone rows, in its order.
pub(crate) const ROWS: [&str; 4] = ["Regular", "ANT", "DeepAug+", "Swin-T"];

/// One of the paper's tables.
#[derive(Debug)]
pub(crate) struct PaperTable {
    /// Where it comes from, printed with the numbers.
    pub source: &'static str,
    pub rows: [(&'static str, [f64; 4]); 4],
}

impl PaperTable {
    pub fn row(&self, name: &str) -> Option<&[f64; 4]> {
        self.rows
            .iter()
            .find(|(row, _)| *row == name)
            .map(|(_, v)| v)
    }
}

/// Table 1: fixed-feature transfer to COCO detection (box AP).
pub(crate) const TABLE1: PaperTable = PaperTable {
    source: "Yamada & Otani, Table 1",
    rows: [
        ("Regular", [36.09, 44.00, 17.36, 17.59]),
        ("ANT", [21.90, 39.25, 14.43, 16.22]),
        ("DeepAug+", [16.39, 29.25, 12.64, 11.27]),
        ("Swin-T", [18.01, 38.18, 14.66, 10.12]),
    ],
};

/// Table 2: fixed-feature transfer to ADE20K segmentation (mIoU).
pub(crate) const TABLE2: PaperTable = PaperTable {
    source: "Yamada & Otani, Table 2",
    rows: [
        ("Regular", [48.98, 29.42, 14.01, 25.68]),
        ("ANT", [17.78, 23.41, 10.67, 25.62]),
        ("DeepAug+", [20.07, 19.47, 10.70, 19.12]),
        ("Swin-T", [13.57, 23.50, 13.48, 14.28]),
    ],
};

/// Figure 1 is published as bars without printed values; its findings, as stated.
pub(crate) const FIGURE1_FINDINGS: &str = "Published finding (Yamada & Otani, Figure 1): \
    Swin-T has the lowest COCO and ADE20K drops under full-network transfer; on CIFAR-10 the \
    Regular ResNet-50 is the most robust; Swin-T's ImageNet-C drop is slightly below ANT's.";
