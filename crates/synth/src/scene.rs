//! Scenes: a textured background and shape instances, rendered into RGB pixels and an
//! instance map that tells which instance is visible at each pixel (later instances occlude
//! earlier ones).

use crate::rng::{Rng, mix64};
use crate::shapes::{ShapeKind, fill_polygon};

/// One shape placed in a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Class label (index into [`ShapeKind::ALL`]).
    pub class: usize,
    /// Centre in pixels (x, y).
    pub center: (f64, f64),
    /// Radius of the shape's unit disc, in pixels.
    pub radius: f64,
    /// Rotation in radians.
    pub rotation: f64,
    /// Fill colour.
    pub color: [u8; 3],
    /// Instances sharing a crowd id are annotated together as one COCO `iscrowd` region.
    pub crowd: Option<u32>,
}

impl Instance {
    /// The outline in image coordinates.
    pub fn outline(&self) -> Vec<Vec<(f64, f64)>> {
        let (sin, cos) = self.rotation.sin_cos();
        ShapeKind::from_label(self.class)
            .outline()
            .into_iter()
            .map(|ring| {
                ring.into_iter()
                    .map(|(u, v)| {
                        (
                            self.center.0 + self.radius * (cos * u - sin * v),
                            self.center.1 + self.radius * (sin * u + cos * v),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

/// The background texture: two colours blended by smooth value noise, with optional stripes.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    colors: [[u8; 3]; 2],
    /// Noise grid cells across the image.
    cells: usize,
    noise_seed: u64,
    /// Stripe period in pixels and direction, or none.
    stripes: Option<(f64, f64)>,
}

impl Background {
    /// A random texture.
    pub fn random(rng: &mut Rng) -> Self {
        Background {
            colors: [random_color(rng, 0.1), random_color(rng, 0.1)],
            cells: 2 + rng.below(5),
            noise_seed: rng.next_u64(),
            stripes: rng.chance(0.35).then(|| {
                (
                    rng.uniform(3.0, 9.0),
                    rng.uniform(0.0, std::f64::consts::PI),
                )
            }),
        }
    }
}

/// A scene: size, background and instances in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The texture behind the shapes.
    pub background: Background,
    /// Instances, first drawn first (so later ones occlude earlier ones).
    pub instances: Vec<Instance>,
    /// Seed of the per-pixel shading noise.
    pub pixel_seed: u64,
}

/// A rendered scene.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Interleaved RGB, row-major.
    pub rgb: Vec<u8>,
    /// 0 for background, `i + 1` where instance `i` is visible.
    pub instance_map: Vec<u16>,
    /// Visible pixels per instance.
    pub visible: Vec<u64>,
    /// Pixels per instance as if nothing occluded it (inside the image).
    pub full: Vec<u64>,
}

impl Scene {
    /// Draws the scene.
    pub fn render(&self) -> Rendered {
        let (w, h) = (self.width, self.height);
        let mut instance_map = vec![0u16; w * h];
        let mut full = Vec::with_capacity(self.instances.len());
        let mut scratch = vec![false; w * h];
        for (index, instance) in self.instances.iter().enumerate() {
            let outline = instance.outline();
            let count = fill_polygon(&outline, w, h, &mut instance_map, index as u16 + 1);
            // The unoccluded area, for the occlusion filter.
            scratch.fill(false);
            let alone = fill_polygon(&outline, w, h, &mut scratch, true);
            debug_assert_eq!(count, alone);
            full.push(alone);
        }
        let mut visible = vec![0u64; self.instances.len()];
        let mut rgb = vec![0u8; w * h * 3];
        let bg = &self.background;
        let cell_w = w as f64 / bg.cells as f64;
        let cell_h = h as f64 / bg.cells as f64;
        let stripes = bg.stripes.map(|(period, angle)| (period, angle.sin_cos()));
        let noise_grid = NoiseGrid::new(bg.noise_seed, bg.cells + 2);
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                let noise = mix64(self.pixel_seed ^ (p as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let jitter = (noise & 0x1F) as i32 - 16;
                let color = match instance_map[p] {
                    0 => {
                        let t = noise_grid.at(x as f64 / cell_w, y as f64 / cell_h);
                        let mut blend = blend_colors(bg.colors[0], bg.colors[1], t);
                        if let Some((period, (sin, cos))) = stripes {
                            let phase = (x as f64 * cos + y as f64 * sin) / period;
                            if phase.rem_euclid(1.0) < 0.5 {
                                blend = blend.map(|c| (f64::from(c) * 0.8) as u8);
                            }
                        }
                        blend
                    }
                    id => {
                        let instance = &self.instances[usize::from(id) - 1];
                        visible[usize::from(id) - 1] += 1;
                        // Soft radial shading so shapes are not flat.
                        let dx = (x as f64 + 0.5 - instance.center.0) / instance.radius;
                        let dy = (y as f64 + 0.5 - instance.center.1) / instance.radius;
                        let shade = 1.0 - 0.25 * (dx * dx + dy * dy).min(1.0);
                        instance.color.map(|c| (f64::from(c) * shade) as u8)
                    }
                };
                for (channel, value) in color.iter().enumerate() {
                    rgb[p * 3 + channel] = (i32::from(*value) + jitter / 2).clamp(0, 255) as u8;
                }
            }
        }
        Rendered {
            rgb,
            instance_map,
            visible,
            full,
        }
    }
}

/// A random colour with at least `min_saturation` (in HSV terms).
pub fn random_color(rng: &mut Rng, min_saturation: f64) -> [u8; 3] {
    let hue = rng.uniform(0.0, 6.0);
    let saturation = rng.uniform(min_saturation, 1.0);
    let value = rng.uniform(0.35, 1.0);
    let chroma = value * saturation;
    let second = chroma * (1.0 - (hue % 2.0 - 1.0).abs());
    let (r, g, b) = match hue as u32 {
        0 => (chroma, second, 0.0),
        1 => (second, chroma, 0.0),
        2 => (0.0, chroma, second),
        3 => (0.0, second, chroma),
        4 => (second, 0.0, chroma),
        _ => (chroma, 0.0, second),
    };
    let base = value - chroma;
    [r, g, b].map(|c| ((c + base) * 255.0).round().clamp(0.0, 255.0) as u8)
}

fn blend_colors(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let mut out = [0u8; 3];
    for i in 0..3 {
        out[i] = (f64::from(a[i]) * (1.0 - t) + f64::from(b[i]) * t).round() as u8;
    }
    out
}

/// Smooth value noise in [0, 1]: random values on an integer grid (hashed from the seed),
/// smoothstep-interpolated.
struct NoiseGrid {
    side: usize,
    values: Vec<f64>,
}

impl NoiseGrid {
    fn new(seed: u64, side: usize) -> Self {
        let values = (0..side * side)
            .map(|k| {
                let (i, j) = ((k % side) as u64, (k / side) as u64);
                let key = i.wrapping_mul(0x9E37_79B9) ^ j.wrapping_mul(0x85EB_CA6B);
                (mix64(seed ^ key) >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        NoiseGrid { side, values }
    }

    /// The noise at (x, y) in grid units, 0 ≤ x, y < side − 1.
    fn at(&self, x: f64, y: f64) -> f64 {
        let (x0, y0) = (x.floor(), y.floor());
        let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
        let (sx, sy) = (smooth(x - x0), smooth(y - y0));
        let (i, j) = (x0 as usize, y0 as usize);
        let corner = |di: usize, dj: usize| self.values[(j + dj) * self.side + i + di];
        let top = corner(0, 0) * (1.0 - sx) + corner(1, 0) * sx;
        let bottom = corner(0, 1) * (1.0 - sx) + corner(1, 1) * sx;
        top * (1.0 - sy) + bottom * sy
    }
}

/// How scenes with several instances are laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneLayout {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Fewest instances (before the occlusion filter).
    pub min_instances: usize,
    /// Most instances.
    pub max_instances: usize,
    /// Instance radius range, as fractions of the shorter image side.
    pub radius: (f64, f64),
    /// Probability that a scene holds one crowd: a cluster of small shapes of one class.
    pub crowd_probability: f64,
    /// Instances whose visible part is below this fraction of their full area are dropped.
    pub min_visible_fraction: f64,
}

/// Lays out a multi-instance scene and renders it, dropping instances that end up mostly
/// hidden. Same generator state, same scene.
pub fn compose_scene(rng: &mut Rng, layout: &SceneLayout, num_classes: usize) -> (Scene, Rendered) {
    let (w, h) = (layout.width as f64, layout.height as f64);
    let side = w.min(h);
    let background = Background::random(rng);
    let count = layout.min_instances + rng.below(layout.max_instances - layout.min_instances + 1);
    let mut instances = Vec::new();
    if rng.chance(layout.crowd_probability) {
        let class = rng.below(num_classes);
        let center = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h);
        let members = 3 + rng.below(4);
        let color = random_color(rng, 0.4);
        for _ in 0..members {
            instances.push(Instance {
                class,
                center: (
                    center.0 + rng.uniform(-0.12, 0.12) * side,
                    center.1 + rng.uniform(-0.12, 0.12) * side,
                ),
                radius: rng.uniform(0.035, 0.06) * side,
                rotation: rng.uniform(0.0, std::f64::consts::TAU),
                color,
                crowd: Some(0),
            });
        }
    }
    for _ in 0..count {
        let radius = rng.uniform(layout.radius.0, layout.radius.1) * side;
        instances.push(Instance {
            class: rng.below(num_classes),
            center: (rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h),
            radius,
            rotation: rng.uniform(0.0, std::f64::consts::TAU),
            color: random_color(rng, 0.35),
            crowd: None,
        });
    }
    let mut scene = Scene {
        width: layout.width,
        height: layout.height,
        background,
        instances,
        pixel_seed: rng.next_u64(),
    };
    let mut rendered = scene.render();
    // Drop mostly hidden (or off-image) instances; crowds are kept whole.
    let keep: Vec<bool> = (0..scene.instances.len())
        .map(|i| {
            scene.instances[i].crowd.is_some()
                || (rendered.visible[i] >= 6
                    && rendered.visible[i] as f64
                        >= layout.min_visible_fraction * rendered.full[i] as f64)
        })
        .collect();
    if keep.iter().any(|k| !k) {
        let mut index = 0;
        scene.instances.retain(|_| {
            index += 1;
            keep[index - 1]
        });
        rendered = scene.render();
    }
    (scene, rendered)
}

/// One dominant shape of class `class`, centred with jitter, optionally with small
/// distractors of other classes (some in front, occluding it a little).
pub fn dominant_scene(
    rng: &mut Rng,
    size: usize,
    class: usize,
    num_classes: usize,
    distractors: usize,
) -> (Scene, Rendered) {
    let side = size as f64;
    let background = Background::random(rng);
    let main = Instance {
        class,
        center: (
            side * (0.5 + rng.uniform(-0.1, 0.1)),
            side * (0.5 + rng.uniform(-0.1, 0.1)),
        ),
        radius: side * rng.uniform(0.28, 0.44),
        rotation: rng.uniform(0.0, std::f64::consts::TAU),
        color: random_color(rng, 0.35),
        crowd: None,
    };
    let mut instances = vec![main];
    let extra = if distractors == 0 {
        0
    } else {
        rng.below(distractors + 1)
    };
    for _ in 0..extra {
        let other = if num_classes > 1 {
            (class + 1 + rng.below(num_classes - 1)) % num_classes
        } else {
            class
        };
        let distractor = Instance {
            class: other,
            center: (rng.uniform(0.0, 1.0) * side, rng.uniform(0.0, 1.0) * side),
            radius: side * rng.uniform(0.08, 0.15),
            rotation: rng.uniform(0.0, std::f64::consts::TAU),
            color: random_color(rng, 0.35),
            crowd: None,
        };
        if rng.chance(0.5) {
            instances.push(distractor);
        } else {
            instances.insert(0, distractor);
        }
    }
    let scene = Scene {
        width: size,
        height: size,
        background,
        instances,
        pixel_seed: rng.next_u64(),
    };
    let rendered = scene.render();
    (scene, rendered)
}
