//! Figure 1 as grouped bars, drawn once through a small painter interface into SVG and into a
//! PNG raster (with rtb's own bitmap font, so no system font is needed).

use std::fmt::Write;

use image::{Rgb, RgbImage};

use crate::font::{GLYPH_HEIGHT, GLYPH_WIDTH, glyph};
use crate::model::FigureSeries;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 480;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [220, 220, 220];
const MUTED: [u8; 3] = [150, 150, 150];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// What the chart needs from an output format. Coordinates in pixels, y downwards; text is
/// placed by its baseline.
trait Painter {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, color: [u8; 3]);
    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, color: [u8; 3], anchor: Anchor);
}

/// A round axis maximum (and minimum when values are negative) with a tick step.
fn axis(series: &[FigureSeries]) -> (f64, f64, f64) {
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1.0);
    let raw_step = span / 5.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw_step)
        .unwrap_or(10.0 * magnitude);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    (lo, hi.max(lo + step), step)
}

fn draw(painter: &mut dyn Painter, series: &[FigureSeries], labels: &[String; 5], title: &str) {
    let (w, h) = (WIDTH as f64, HEIGHT as f64);
    painter.rect(0.0, 0.0, w, h, [255, 255, 255]);
    painter.text(w / 2.0, 28.0, title, 16.0, INK, Anchor::Middle);
    let (lo, hi, step) = axis(series);
    let plot_w = w - LEFT - RIGHT;
    let plot_h = h - TOP - BOTTOM;
    let y_of = |v: f64| TOP + plot_h * (hi - v) / (hi - lo);

    let mut tick = lo;
    while tick <= hi + step * 1e-9 {
        let y = y_of(tick);
        painter.rect(LEFT, y, plot_w, 1.0, GRID);
        painter.text(
            LEFT - 8.0,
            y + 4.0,
            &format!("{tick:.0}"),
            11.0,
            INK,
            Anchor::End,
        );
        tick += step;
    }
    painter.text(16.0, TOP - 12.0, "%", 12.0, INK, Anchor::Start);
    let zero = y_of(0.0);
    painter.rect(LEFT, zero, plot_w, 1.0, INK);
    painter.rect(LEFT, TOP, 1.0, plot_h, INK);

    let groups = labels.len() as f64;
    let group_w = plot_w / groups;
    let n = series.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / n).max(1.0);
    for (g, label) in labels.iter().enumerate() {
        let x0 = LEFT + group_w * g as f64 + group_w * 0.1;
        for (i, s) in series.iter().enumerate() {
            let x = x0 + bar_w * i as f64;
            let color = PALETTE[i % PALETTE.len()];
            match s.values[g] {
                Some(v) => {
                    let (top, bottom) = if v >= 0.0 {
                        (y_of(v), zero)
                    } else {
                        (zero, y_of(v))
                    };
                    painter.rect(x, top, bar_w - 1.0, (bottom - top).max(1.0), color);
                }
                None => {
                    // A muted mark at the baseline, never a zero-height bar: not run, or ran
                    // with an undefined drop (clean metric 0, incomplete table).
                    painter.text(
                        x + bar_w / 2.0,
                        zero - 4.0,
                        if s.ran[g] { "n/a" } else { "n/r" },
                        10.0,
                        MUTED,
                        Anchor::Middle,
                    );
                }
            }
        }
        painter.text(
            LEFT + group_w * (g as f64 + 0.5),
            h - BOTTOM + 22.0,
            label,
            12.0,
            INK,
            Anchor::Middle,
        );
    }

    let legend_x = w - RIGHT + 20.0;
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 10.0 + 22.0 * i as f64;
        painter.rect(legend_x, y - 10.0, 14.0, 14.0, PALETTE[i % PALETTE.len()]);
        painter.text(
            legend_x + 22.0,
            y + 2.0,
            &s.backbone,
            12.0,
            INK,
            Anchor::Start,
        );
    }
    painter.text(
        w - RIGHT + 20.0,
        h - 16.0,
        "n/r = not run, n/a = undefined",
        11.0,
        MUTED,
        Anchor::Start,
    );
}

struct Svg(String);

fn hex(color: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", color[0], color[1], color[2])
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Painter for Svg {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, color: [u8; 3]) {
        let _ = writeln!(
            self.0,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/>"#,
            hex(color)
        );
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, color: [u8; 3], anchor: Anchor) {
        let anchor = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let _ = writeln!(
            self.0,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="sans-serif" font-size="{size}" fill="{}" text-anchor="{anchor}">{}</text>"#,
            hex(color),
            xml_escape(text)
        );
    }
}

/// Figure 1 as an SVG document.
pub(crate) fn svg(series: &[FigureSeries], labels: &[String; 5], title: &str) -> String {
    let mut painter = Svg(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">"#
    ));
    painter.0.push('\n');
    draw(&mut painter, series, labels, title);
    painter.0.push_str("</svg>\n");
    painter.0
}

struct Raster(RgbImage);

impl Painter for Raster {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, color: [u8; 3]) {
        let (width, height) = self.0.dimensions();
        let x0 = x.round().max(0.0) as u32;
        let y0 = y.round().max(0.0) as u32;
        let x1 = ((x + w).round().max(0.0) as u32).min(width);
        let y1 = ((y + h).round().max(0.0) as u32).min(height);
        for py in y0..y1.max(y0 + 1).min(height) {
            for px in x0..x1.max(x0 + 1).min(width) {
                self.0.put_pixel(px, py, Rgb(color));
            }
        }
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, color: [u8; 3], anchor: Anchor) {
        // Font pixels are squares of `scale` image pixels; one blank column between glyphs.
        let scale = ((size / 7.0).floor() as u32).max(1);
        let advance = (GLYPH_WIDTH as u32 + 1) * scale;
        let width = advance * text.chars().count() as u32;
        let left = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width as f64 / 2.0,
            Anchor::End => x - width as f64,
        }
        .round() as i64;
        let top = y.round() as i64 - (GLYPH_HEIGHT as u32 * scale) as i64;
        let (img_w, img_h) = self.0.dimensions();
        for (i, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_WIDTH {
                    if bits & (1 << (GLYPH_WIDTH - 1 - col)) == 0 {
                        continue;
                    }
                    for dy in 0..scale as i64 {
                        for dx in 0..scale as i64 {
                            let px =
                                left + (i as u32 * advance) as i64 + col as i64 * scale as i64 + dx;
                            let py = top + row as i64 * scale as i64 + dy;
                            if px >= 0 && py >= 0 && (px as u32) < img_w && (py as u32) < img_h {
                                self.0.put_pixel(px as u32, py as u32, Rgb(color));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Figure 1 as an RGB raster (encode with `image`'s PNG writer).
pub(crate) fn raster(series: &[FigureSeries], labels: &[String; 5], title: &str) -> RgbImage {
    let mut painter = Raster(RgbImage::new(WIDTH, HEIGHT));
    draw(&mut painter, series, labels, title);
    painter.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<FigureSeries> {
        vec![
            FigureSeries {
                backbone: "regular".into(),
                values: [Some(76.1), Some(40.0), None, Some(-3.0), Some(12.0)],
                ran: [true, true, false, true, true],
            },
            FigureSeries {
                backbone: "swin_t".into(),
                values: [Some(81.2), None, None, None, None],
                ran: [true, true, false, false, false],
            },
        ]
    }

    #[test]
    fn axis_covers_values_with_round_steps() {
        let (lo, hi, step) = axis(&series());
        assert!(lo <= -3.0 && hi >= 81.2, "{lo} {hi}");
        assert_eq!((hi - lo) % step, 0.0);
    }

    #[test]
    fn svg_has_one_bar_per_value_and_marks_missing_ones() {
        let svg = svg(
            &series(),
            &crate::model::FIGURE1_GROUPS.map(String::from),
            "Figure 1",
        );
        // Background + grid lines + axes + 5 bars + 2 legend swatches.
        let bars = svg.matches("fill=\"#1f77b4\"").count();
        assert_eq!(bars, 4 + 1, "regular: 4 bars and a legend swatch");
        assert_eq!(svg.matches(">n/r</text>").count(), 4, "four values not run");
        assert_eq!(svg.matches(">n/a</text>").count(), 1, "one value undefined");
        assert!(svg.contains("swin_t"));
    }

    #[test]
    fn raster_draws_bars_and_text() {
        let image = raster(
            &series(),
            &crate::model::FIGURE1_GROUPS.map(String::from),
            "Figure 1",
        );
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        let blue = image.pixels().filter(|p| p.0 == PALETTE[0]).count();
        assert!(blue > 1000, "bars are drawn ({blue} pixels)");
        let ink = image.pixels().filter(|p| p.0 == INK).count();
        assert!(ink > 500, "labels are drawn ({ink} pixels)");
    }
}
