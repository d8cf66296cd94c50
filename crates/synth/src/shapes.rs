//! The shape classes: outlines in a unit frame, filled by the even–odd rule.

use std::f64::consts::{PI, TAU};

/// The shape classes, in label order. Colour, size, rotation and texture never identify a
/// class; only the outline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShapeKind {
    /// A disc.
    Circle,
    /// A square.
    Square,
    /// An equilateral triangle.
    Triangle,
    /// A five-pointed star.
    Star,
    /// An annulus (a disc with a hole).
    Ring,
    /// A plus sign.
    Cross,
    /// A regular hexagon.
    Hexagon,
    /// An ellipse with axes 2:1.
    Ellipse,
    /// A crescent moon.
    Crescent,
    /// A heart.
    Heart,
}

impl ShapeKind {
    /// Every class, in label order; `K` classes use the first `K`.
    pub const ALL: [ShapeKind; 10] = [
        ShapeKind::Circle,
        ShapeKind::Square,
        ShapeKind::Triangle,
        ShapeKind::Star,
        ShapeKind::Ring,
        ShapeKind::Cross,
        ShapeKind::Hexagon,
        ShapeKind::Ellipse,
        ShapeKind::Crescent,
        ShapeKind::Heart,
    ];

    /// The class with label `label` (< 10).
    pub fn from_label(label: usize) -> ShapeKind {
        ShapeKind::ALL[label]
    }

    /// The lowercase class name.
    pub fn name(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circle",
            ShapeKind::Square => "square",
            ShapeKind::Triangle => "triangle",
            ShapeKind::Star => "star",
            ShapeKind::Ring => "ring",
            ShapeKind::Cross => "cross",
            ShapeKind::Hexagon => "hexagon",
            ShapeKind::Ellipse => "ellipse",
            ShapeKind::Crescent => "crescent",
            ShapeKind::Heart => "heart",
        }
    }

    /// Whether the outline is one simple polygon (no hole), so that a COCO polygon describes
    /// it exactly.
    pub fn is_simple(self) -> bool {
        self != ShapeKind::Ring
    }

    /// The outline as closed rings of points in a frame where the shape fits the unit disc
    /// (y pointing down, as in images). Filled by the even–odd rule.
    pub fn outline(self) -> Vec<Vec<(f64, f64)>> {
        let circle = |radius: f64, cx: f64, points: usize| -> Vec<(f64, f64)> {
            (0..points)
                .map(|i| {
                    let t = TAU * i as f64 / points as f64;
                    (cx + radius * t.cos(), radius * t.sin())
                })
                .collect()
        };
        let regular = |corners: usize, radius: f64, start: f64| -> Vec<(f64, f64)> {
            (0..corners)
                .map(|i| {
                    let t = start + TAU * i as f64 / corners as f64;
                    (radius * t.cos(), radius * t.sin())
                })
                .collect()
        };
        match self {
            ShapeKind::Circle => vec![circle(1.0, 0.0, 48)],
            ShapeKind::Square => vec![vec![(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]],
            ShapeKind::Triangle => vec![regular(3, 1.0, -PI / 2.0)],
            ShapeKind::Star => vec![
                (0..10)
                    .map(|i| {
                        let t = -PI / 2.0 + TAU * i as f64 / 10.0;
                        let r = if i % 2 == 0 { 1.0 } else { 0.45 };
                        (r * t.cos(), r * t.sin())
                    })
                    .collect(),
            ],
            ShapeKind::Ring => vec![circle(1.0, 0.0, 48), circle(0.55, 0.0, 40)],
            ShapeKind::Cross => {
                let (a, b) = (0.3, 0.9);
                vec![vec![
                    (-a, -b),
                    (a, -b),
                    (a, -a),
                    (b, -a),
                    (b, a),
                    (a, a),
                    (a, b),
                    (-a, b),
                    (-a, a),
                    (-b, a),
                    (-b, -a),
                    (-a, -a),
                ]]
            }
            ShapeKind::Hexagon => vec![regular(6, 1.0, 0.0)],
            ShapeKind::Ellipse => vec![
                (0..48)
                    .map(|i| {
                        let t = TAU * i as f64 / 48.0;
                        (t.cos(), 0.5 * t.sin())
                    })
                    .collect(),
            ],
            ShapeKind::Crescent => {
                // The unit disc minus a disc of radius 0.8 centred at (0.45, 0); the circles
                // cross at x = 0.625.
                let (cx, r) = (0.45, 0.8);
                let cross_y = (1.0f64 - 0.625 * 0.625).sqrt();
                let outer_start = cross_y.atan2(0.625);
                let inner_start = cross_y.atan2(0.625 - cx);
                let mut points = Vec::new();
                for i in 0..=32 {
                    let t = outer_start + (TAU - 2.0 * outer_start) * i as f64 / 32.0;
                    points.push((t.cos(), t.sin()));
                }
                for i in 1..32 {
                    let t = TAU - inner_start - (TAU - 2.0 * inner_start) * i as f64 / 32.0;
                    points.push((cx + r * t.cos(), r * t.sin()));
                }
                vec![points]
            }
            ShapeKind::Heart => vec![
                (0..48)
                    .map(|i| {
                        let t = TAU * i as f64 / 48.0;
                        let x = 16.0 * t.sin().powi(3);
                        let y = 13.0 * t.cos()
                            - 5.0 * (2.0 * t).cos()
                            - 2.0 * (3.0 * t).cos()
                            - (4.0 * t).cos();
                        // Centre the curve's vertical extent (−17..12) and flip it upright.
                        (x / 17.0, -(y + 2.5) / 15.5)
                    })
                    .collect(),
            ],
        }
    }
}

/// Fills the outline `rings` (image coordinates) into `out` (row-major, `width` wide): every
/// pixel whose centre lies inside by the even–odd rule gets `value`. Returns the number of
/// pixels written.
pub fn fill_polygon<T: Copy>(
    rings: &[Vec<(f64, f64)>],
    width: usize,
    height: usize,
    out: &mut [T],
    value: T,
) -> u64 {
    let (mut min_y, mut max_y) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, y) in rings.iter().flatten() {
        min_y = min_y.min(y);
        max_y = max_y.max(y);
    }
    if !min_y.is_finite() {
        return 0;
    }
    let first_row = (min_y - 0.5).ceil().max(0.0) as usize;
    let last_row = ((max_y - 0.5).floor().min(height as f64 - 1.0)).max(-1.0);
    let mut crossings: Vec<f64> = Vec::with_capacity(16);
    let mut written = 0;
    let mut row = first_row;
    while (row as f64) <= last_row {
        let yc = row as f64 + 0.5;
        crossings.clear();
        for ring in rings {
            for (i, &(x0, y0)) in ring.iter().enumerate() {
                let (x1, y1) = ring[(i + 1) % ring.len()];
                // Half-open rule so a vertex on the scanline counts once.
                if (y0 <= yc) != (y1 <= yc) {
                    crossings.push(x0 + (yc - y0) * (x1 - x0) / (y1 - y0));
                }
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            // Pixels whose centre x + 0.5 lies in [pair[0], pair[1]).
            let start = (pair[0] - 0.5).ceil().max(0.0);
            let end = (pair[1] - 0.5).ceil().min(width as f64);
            if end > start {
                let (start, end) = (start as usize, end as usize);
                out[row * width + start..row * width + end].fill(value);
                written += (end - start) as u64;
            }
        }
        row += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_areas_approach_the_outline_areas() {
        // A large raster of each shape covers about the polygon's own area.
        for kind in ShapeKind::ALL {
            let rings: Vec<Vec<(f64, f64)>> = kind
                .outline()
                .into_iter()
                .map(|ring| {
                    ring.into_iter()
                        .map(|(x, y)| (200.0 + 180.0 * x, 200.0 + 180.0 * y))
                        .collect()
                })
                .collect();
            let area: f64 = rings
                .iter()
                .map(|ring| {
                    let twice: f64 = (0..ring.len())
                        .map(|i| {
                            let (x0, y0) = ring[i];
                            let (x1, y1) = ring[(i + 1) % ring.len()];
                            x0 * y1 - x1 * y0
                        })
                        .sum();
                    twice.abs() / 2.0
                })
                .enumerate()
                .map(|(i, a)| if i == 0 { a } else { -a })
                .sum();
            let mut raster = vec![0u8; 400 * 400];
            let filled = fill_polygon(&rings, 400, 400, &mut raster, 1);
            assert_eq!(filled, raster.iter().map(|&v| u64::from(v)).sum::<u64>());
            let error = (filled as f64 - area).abs() / area;
            assert!(error < 0.01, "{kind:?}: filled {filled}, area {area}");
        }
    }

    #[test]
    fn clipping_keeps_writes_inside_the_image() {
        let rings = ShapeKind::Square.outline();
        let moved: Vec<Vec<(f64, f64)>> = rings
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&(x, y)| (x * 20.0 - 3.0, y * 20.0 + 9.0))
                    .collect()
            })
            .collect();
        let mut raster = vec![0u8; 10 * 10];
        let filled = fill_polygon(&moved, 10, 10, &mut raster, 1);
        assert!(filled > 0 && filled <= 100);
    }
}
