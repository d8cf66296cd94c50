//! Figure 1 as grouped bars with 95 % error bars, drawn once with plotters into SVG and into
//! a PNG raster. The raster's text uses DejaVu Sans, embedded by the `dejavu` crate, so no
//! system font is needed; the SVG names the font family and lets the viewer draw the text.

use std::sync::OnceLock;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor;

use crate::model::FigureSeries;

pub(crate) const WIDTH: u32 = 960;
pub(crate) const HEIGHT: u32 = 480;
/// Pixels right of the plot for the legend.
const LEGEND_WIDTH: u32 = 190;
/// The family the raster's text is drawn with (registered from the embedded DejaVu Sans).
const FONT: &str = "sans-serif";

pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
pub(crate) const INK: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);
const MUTED: RGBColor = RGBColor(150, 150, 150);

/// An error drawing the figure (plotters' message).
#[derive(Debug, thiserror::Error)]
#[error("drawing Figure 1: {0}")]
pub struct FigureError(String);

fn plot_error(err: impl std::fmt::Display) -> FigureError {
    FigureError(err.to_string())
}

/// Registers the embedded font with plotters once per process.
fn font() -> Result<(), FigureError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(FigureError(
            "the embedded DejaVu Sans font did not load".into(),
        ))
    }
}

/// A round axis range covering every bar and error bar, with 0 inside.
fn axis(series: &[FigureSeries]) -> (f64, f64) {
    let values = series.iter().flat_map(|s| {
        s.values
            .iter()
            .zip(&s.errors)
            .filter_map(|(v, e)| v.map(|v| (v, *e)))
            .flat_map(|(v, e)| {
                let (lo, hi) = e.map_or((v, v), |e| (e.low.min(v), e.high.max(v)));
                [lo, hi]
            })
    });
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
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
    (lo, hi.max(lo + step))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[FigureSeries],
    labels: &[String; 5],
    title: &str,
) -> Result<(), FigureError> {
    font()?;
    root.fill(&WHITE).map_err(plot_error)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (lo, hi) = axis(series);
    let groups = labels.len();
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 22).into_font().color(&INK))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..groups as f64, lo..hi)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .y_desc("%")
        .y_label_style((FONT, 16).into_font().color(&INK))
        .axis_desc_style((FONT, 17).into_font().color(&INK))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    // The zero line and the group labels under the plot.
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (groups as f64, 0.0)],
            INK,
        )))
        .map_err(plot_error)?;
    let label_style = (FONT, 16)
        .into_font()
        .color(&INK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ));
    for (g, label) in labels.iter().enumerate() {
        let (x, _) = chart.backend_coord(&(g as f64 + 0.5, lo));
        let (_, y) = chart.backend_coord(&(0.0, lo));
        plot.draw(&Text::new(label.clone(), (x, y + 8), label_style.clone()))
            .map_err(plot_error)?;
    }

    let n = series.len().max(1) as f64;
    let bar = 0.8 / n;
    let missing_style = (FONT, 14)
        .into_font()
        .color(&MUTED)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Bottom,
        ));
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for g in 0..groups {
            let x0 = g as f64 + 0.1 + bar * i as f64;
            let x1 = x0 + bar * 0.92;
            match s.values[g] {
                Some(v) => {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x0, 0.0), (x1, v)],
                            color.filled(),
                        )))
                        .map_err(plot_error)?;
                    if let Some(e) = s.errors[g].filter(|e| e.low.is_finite() && e.high.is_finite())
                    {
                        // A whisker from the interval's low to its high bound, with caps.
                        let (mid, cap) = ((x0 + x1) / 2.0, (x1 - x0) * 0.2);
                        let ink = INK.stroke_width(1);
                        chart
                            .draw_series([
                                PathElement::new(vec![(mid, e.low), (mid, e.high)], ink),
                                PathElement::new(vec![(mid - cap, e.low), (mid + cap, e.low)], ink),
                                PathElement::new(
                                    vec![(mid - cap, e.high), (mid + cap, e.high)],
                                    ink,
                                ),
                            ])
                            .map_err(plot_error)?;
                    }
                }
                None => {
                    // A muted mark at the baseline, never a zero-height bar: not run, or ran
                    // with an undefined value (clean metric 0, incomplete table).
                    let (x, y) = chart.backend_coord(&((x0 + x1) / 2.0, 0.0));
                    plot.draw(&Text::new(
                        if s.ran[g] { "n/a" } else { "n/r" },
                        (x, y - 3),
                        missing_style.clone(),
                    ))
                    .map_err(plot_error)?;
                }
            }
        }
    }

    let text = (FONT, 17).into_font().color(&INK);
    for (i, s) in series.iter().enumerate() {
        let y = 60 + 24 * i as i32;
        let color = PALETTE[i % PALETTE.len()];
        legend
            .draw(&Rectangle::new([(10, y), (24, y + 14)], color.filled()))
            .map_err(plot_error)?;
        legend
            .draw(&Text::new(s.backbone.clone(), (32, y), text.clone()))
            .map_err(plot_error)?;
    }
    let note = (FONT, 15).into_font().color(&MUTED);
    let bottom = HEIGHT as i32 - 84;
    for (k, line) in [
        "error bars: 95 % bootstrap",
        "intervals over the images",
        "n/r = not run",
        "n/a = undefined",
    ]
    .into_iter()
    .enumerate()
    {
        legend
            .draw(&Text::new(line, (10, bottom + 17 * k as i32), note.clone()))
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}

/// Figure 1 as an SVG document.
pub(crate) fn svg(
    series: &[FigureSeries],
    labels: &[String; 5],
    title: &str,
) -> Result<String, FigureError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, series, labels, title)?;
    }
    out.push('\n');
    Ok(out)
}

/// Figure 1 as an RGB raster (encode with `image`'s PNG writer).
pub(crate) fn raster(
    series: &[FigureSeries],
    labels: &[String; 5],
    title: &str,
) -> Result<RgbImage, FigureError> {
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, series, labels, title)?;
    }
    RgbImage::from_raw(WIDTH, HEIGHT, pixels)
        .ok_or_else(|| FigureError("the raster buffer has the wrong size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_results::Interval;

    fn series() -> Vec<FigureSeries> {
        vec![
            FigureSeries {
                backbone: "regular".into(),
                values: [Some(76.1), Some(40.0), None, Some(-3.0), Some(12.0)],
                errors: [
                    Some(Interval {
                        low: 74.0,
                        high: 78.5,
                    }),
                    None,
                    None,
                    Some(Interval {
                        low: -5.0,
                        high: -1.0,
                    }),
                    None,
                ],
                ran: [true, true, false, true, true],
            },
            FigureSeries {
                backbone: "swin_t".into(),
                values: [Some(81.2), None, None, None, None],
                errors: [None; 5],
                ran: [true, true, false, false, false],
            },
        ]
    }

    #[test]
    fn axis_covers_values_and_error_bars_with_round_steps() {
        let mut s = series();
        s[0].errors[4] = Some(Interval {
            low: 10.0,
            high: 95.0,
        });
        let (lo, hi) = axis(&s);
        assert!(lo <= -5.0 && hi >= 95.0, "{lo} {hi}");
    }

    #[test]
    fn svg_has_one_bar_per_value_error_bars_and_marks_missing_ones() {
        let svg = svg(
            &series(),
            &crate::model::FIGURE1_GROUPS.map(String::from),
            "Figure 1",
        )
        .unwrap();
        // regular: 4 bars and a legend swatch.
        let blue = svg.matches("fill=\"#1F77B4\"").count();
        assert_eq!(blue, 4 + 1, "{svg}");
        // plotters writes each text on a line of its own.
        let lines = |text: &str| svg.lines().filter(|l| *l == text).count();
        assert_eq!(lines("n/r"), 4, "four values not run");
        assert_eq!(lines("n/a"), 1, "one value undefined");
        assert_eq!(lines("swin_t"), 1);
        assert_eq!(lines("source top-1"), 1);
        // Two error bars of three strokes each (whisker, two caps) in the ink colour, besides
        // the zero line.
        let ink = svg.matches("stroke=\"#1E1E1E\"").count();
        assert!(ink >= 6, "{ink} ink strokes");
    }

    #[test]
    fn raster_draws_bars_and_real_text() {
        let image = raster(
            &series(),
            &crate::model::FIGURE1_GROUPS.map(String::from),
            "Figure 1",
        )
        .unwrap();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        let [r, g, b] = [PALETTE[0].0, PALETTE[0].1, PALETTE[0].2];
        let blue = image.pixels().filter(|p| p.0 == [r, g, b]).count();
        assert!(blue > 1000, "bars are drawn ({blue} pixels)");
        // Anti-aliased glyphs leave grey levels between ink and white.
        let grey = image
            .pixels()
            .filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0] > 40 && p.0[0] < 215)
            .count();
        assert!(
            grey > 300,
            "text is drawn with an anti-aliased font ({grey} pixels)"
        );
    }
}
