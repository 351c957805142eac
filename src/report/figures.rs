//! Figures as SVG text (plotters, no system fonts: the browser renders the text): a heatmap with
//! a colour bar, lines with confidence bands, bars with error bars, and a sequence logo. Each
//! function takes a plain description of the figure and returns the SVG; the caller writes it
//! (atomically) and embeds it in report.html. Empty or non-finite data is an error naming the
//! figure, never a blank picture.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{GenolensError, Result};

const FONT: &str = "sans-serif";
/// Colour-blind-safe series colours (Okabe-Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// The `index`-th series colour.
pub fn series_colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

fn figure_error(figure: &str, error: impl std::fmt::Display) -> GenolensError {
    GenolensError::Figure {
        figure: figure.to_string(),
        message: error.to_string(),
    }
}

/// Smallest and largest finite value; an error when there is none or any value is not finite.
fn finite_range(figure: &str, values: impl IntoIterator<Item = f64>) -> Result<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for value in values {
        if !value.is_finite() {
            return Err(figure_error(figure, format!("non-finite value {value}")));
        }
        range = Some(match range {
            None => (value, value),
            Some((low, high)) => (low.min(value), high.max(value)),
        });
    }
    range.ok_or_else(|| figure_error(figure, "no data"))
}

/// Widens a degenerate range and pads it by 5 % on each side.
fn padded(low: f64, high: f64) -> (f64, f64) {
    let span = if high > low {
        high - low
    } else {
        low.abs().max(1.0)
    };
    (low - 0.05 * span, high + 0.05 * span)
}

/// An axis tick: `format_number`, with a tick within rounding of zero (e.g. 5.55e-17 between
/// −0.1 and 0.1) written as 0.
fn axis_number(value: f64, low: f64, high: f64) -> String {
    let scale = (high - low).abs().max(f64::MIN_POSITIVE);
    format_number(if value.abs() < scale * 1e-9 {
        0.0
    } else {
        value
    })
}

/// Short numeric labels (3 significant digits).
pub fn format_number(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs();
    if !(1e-3..1e4).contains(&magnitude) {
        return format!("{value:.2e}");
    }
    let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn draw<F>(figure: &str, size: (u32, u32), paint: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| figure_error(figure, e))?;
        paint(&root).map_err(|e| figure_error(figure, e))?;
        root.present().map_err(|e| figure_error(figure, e))?;
    }
    Ok(svg)
}

/// A matrix of values, one coloured cell per (row, column), with a colour bar.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// File name of the figure (for errors), e.g. `cls_entropy_heatmap.svg`.
    pub name: String,
    /// Title above the plot.
    pub title: String,
    /// Label of the column axis.
    pub x_label: String,
    /// Label of the row axis.
    pub y_label: String,
    /// Column names, left to right.
    pub columns: Vec<String>,
    /// Row names, top to bottom.
    pub rows: Vec<String>,
    /// Values `[row][column]`; `NaN` marks a missing cell (drawn grey).
    pub values: Vec<Vec<f64>>,
    /// What the colour means, with its unit.
    pub value_label: String,
}

/// Draws a heatmap (viridis; rows top to bottom as given).
pub fn heatmap(spec: &Heatmap) -> Result<String> {
    draw_heatmap(spec, Palette::Viridis)
}

/// Draws a heatmap of signed values (effect sizes, z-scores) on a blue–white–red scale
/// symmetric around 0: white = 0, red = positive, blue = negative.
pub fn signed_heatmap(spec: &Heatmap) -> Result<String> {
    draw_heatmap(spec, Palette::Diverging)
}

#[derive(Debug, Clone, Copy)]
enum Palette {
    Viridis,
    Diverging,
}

impl Palette {
    fn colour(self, value: f64, low: f64, high: f64) -> RGBColor {
        match self {
            Palette::Viridis => ViridisRGB::get_color_normalized(value, low, high),
            Palette::Diverging => {
                // low = −high: t in [−1, 1].
                let t = (value / high.abs().max(f64::MIN_POSITIVE)).clamp(-1.0, 1.0);
                let (end, s) = if t >= 0.0 {
                    ((178.0, 24.0, 43.0), t)
                } else {
                    ((33.0, 102.0, 172.0), -t)
                };
                let mix = |e: f64| (247.0 + (e - 247.0) * s).round() as u8;
                RGBColor(mix(end.0), mix(end.1), mix(end.2))
            }
        }
    }
}

fn draw_heatmap(spec: &Heatmap, palette: Palette) -> Result<String> {
    let rows = spec.rows.len();
    let columns = spec.columns.len();
    if rows == 0 || columns == 0 || spec.values.len() != rows {
        return Err(figure_error(
            &spec.name,
            format!(
                "{} value rows for {rows} row names and {columns} columns",
                spec.values.len()
            ),
        ));
    }
    if let Some(bad) = spec.values.iter().position(|r| r.len() != columns) {
        return Err(figure_error(
            &spec.name,
            format!(
                "row {bad} has {} values, expected {columns}",
                spec.values[bad].len()
            ),
        ));
    }
    let (low, high) = finite_range(
        &spec.name,
        spec.values
            .iter()
            .flatten()
            .copied()
            .filter(|v| !v.is_nan()),
    )?;
    let (low, high) = match palette {
        Palette::Viridis => (low, if high > low { high } else { low + 1e-12 }),
        Palette::Diverging => {
            let m = low.abs().max(high.abs()).max(1e-12);
            (-m, m)
        }
    };
    // Wide enough that every column label fits (about 8 px a character at 13 px).
    let widest = spec
        .columns
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(1) as u32;
    let cell_width = (8 * widest + 10).clamp(48, 110);
    let width = (140 + cell_width * columns as u32).clamp(420, 1400);
    let height = (120 + 36 * rows as u32).clamp(300, 1200);
    draw(&spec.name, (width + 110, height), |root| {
        let (main, bar) = root.split_horizontally(width);
        let mut chart = ChartBuilder::on(&main)
            .caption(&spec.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..columns as f64, 0f64..rows as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc(&spec.x_label)
            .y_desc(&spec.y_label)
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        // Category labels at the cell centres (row 0 at the top, as a table reads); with many
        // cells, every k-th so that labels do not overlap.
        let label_style = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
        let every = |count: usize, room: f64, size: f64| {
            ((count as f64 * size / room).ceil() as usize).max(1)
        };
        // A column label needs its text width (about 8 px a character at 13 px) plus a gap.
        let widest = spec
            .columns
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(1);
        let x_every = every(columns, f64::from(width) - 100.0, 8.0 * widest as f64 + 8.0);
        for (column, name) in spec.columns.iter().enumerate().step_by(x_every) {
            let (x, y) = chart.backend_coord(&(column as f64 + 0.5, 0.0));
            main.draw(&Text::new(
                name.clone(),
                (x, y + 6),
                label_style.pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(|e| e.to_string())?;
        }
        let y_every = every(rows, f64::from(height) - 100.0, 14.0);
        for (row, name) in spec.rows.iter().enumerate().step_by(y_every) {
            let (x, y) = chart.backend_coord(&(0.0, (rows - row) as f64 - 0.5));
            main.draw(&Text::new(
                name.clone(),
                (x - 6, y),
                label_style.pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(|e| e.to_string())?;
        }
        let cells = spec.values.iter().enumerate().flat_map(|(row, values)| {
            values.iter().enumerate().map(move |(column, &value)| {
                let colour = if value.is_nan() {
                    RGBColor(200, 200, 200)
                } else {
                    palette.colour(value, low, high)
                };
                let y = (rows - 1 - row) as f64;
                let x = column as f64;
                Rectangle::new([(x, y), (x + 1.0, y + 1.0)], colour.filled())
            })
        });
        chart.draw_series(cells).map_err(|e| e.to_string())?;
        colour_bar(&bar, low, high, &spec.value_label, palette)
    })
}

fn colour_bar(
    area: &DrawingArea<SVGBackend, Shift>,
    low: f64,
    high: f64,
    label: &str,
    palette: Palette,
) -> std::result::Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(48)
        .margin_bottom(60)
        .margin_right(8)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1f64, low..high)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&|v| axis_number(*v, low, high))
        .y_desc(label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    let steps = 64;
    let step = (high - low) / steps as f64;
    chart
        .draw_series((0..steps).map(|i| {
            let from = low + i as f64 * step;
            Rectangle::new(
                [(0.0, from), (1.0, from + step)],
                palette.colour(from + step / 2.0, low, high).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// One line with an optional confidence band.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// x values, increasing.
    pub x: Vec<f64>,
    /// y values.
    pub y: Vec<f64>,
    /// Lower and upper band (e.g. a bootstrap 95 % CI), same length as `y`.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
}

impl Series {
    /// An empty line with a band, filled point by point with [`Series::push_banded`].
    pub fn banded(name: impl Into<String>) -> Self {
        Series {
            name: name.into(),
            x: Vec::new(),
            y: Vec::new(),
            band: Some((Vec::new(), Vec::new())),
        }
    }

    /// Appends the point (x, y) with its band [low, high] (the band is started if absent).
    pub fn push_banded(&mut self, x: f64, y: f64, low: f64, high: f64) {
        self.x.push(x);
        self.y.push(y);
        let (lows, highs) = self.band.get_or_insert_with(Default::default);
        lows.push(low);
        highs.push(high);
    }
}

/// Lines with confidence bands over a shared numeric x axis.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// File name of the figure (for errors).
    pub name: String,
    /// Title above the plot.
    pub title: String,
    /// x axis label.
    pub x_label: String,
    /// y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Draws lines with shaded bands and point markers; a legend when there is more than one line.
pub fn line_plot(spec: &LinePlot) -> Result<String> {
    for series in &spec.series {
        let band_lengths = series.band.as_ref().map(|(l, h)| (l.len(), h.len()));
        if series.x.len() != series.y.len()
            || band_lengths.is_some_and(|(l, h)| l != series.y.len() || h != series.y.len())
        {
            return Err(figure_error(
                &spec.name,
                format!("series {:?}: x, y and band lengths differ", series.name),
            ));
        }
    }
    let (x_low, x_high) = finite_range(
        &spec.name,
        spec.series.iter().flat_map(|s| s.x.iter().copied()),
    )?;
    let (y_low, y_high) = finite_range(
        &spec.name,
        spec.series.iter().flat_map(|s| {
            s.y.iter().copied().chain(
                s.band
                    .iter()
                    .flat_map(|(l, h)| l.iter().chain(h.iter()).copied()),
            )
        }),
    )?;
    let integer_x = spec
        .series
        .iter()
        .all(|series| series.x.iter().all(|x| (x - x.round()).abs() < 1e-9));
    let (x_low, x_high) = padded(x_low, x_high);
    let (y_low, y_high) = padded(y_low, y_high);
    // Many lines: a wider figure whose right part is left empty for the legend, so it does not
    // cover them.
    let crowded = spec.series.len() > 4;
    let (x_high, size) = if crowded {
        (x_high + (x_high - x_low) * 0.5, (1000, 520))
    } else {
        (x_high, (760, 460))
    };
    draw(&spec.name, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&spec.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_low..x_high, y_low..y_high)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc(&spec.x_label)
            .y_desc(&spec.y_label)
            .x_label_formatter(&|v| {
                // Integer x (layers, percentages): no ticks between them.
                if integer_x && (v - v.round()).abs() > 1e-9 {
                    String::new()
                } else {
                    format_number(*v)
                }
            })
            .y_label_formatter(&|v| axis_number(*v, y_low, y_high))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (index, series) in spec.series.iter().enumerate() {
            let colour = series_colour(index);
            if let Some((low, high)) = &series.band {
                let outline: Vec<(f64, f64)> = series
                    .x
                    .iter()
                    .zip(high)
                    .map(|(&x, &y)| (x, y))
                    .chain(series.x.iter().zip(low).rev().map(|(&x, &y)| (x, y)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        outline,
                        colour.mix(0.18).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            let points: Vec<(f64, f64)> = series
                .x
                .iter()
                .copied()
                .zip(series.y.iter().copied())
                .collect();
            // Past the palette's colours, lines are dashed (a colour then names two lines, told
            // apart by the dash).
            let dashed = index >= PALETTE.len();
            let annotation = if dashed {
                chart.draw_series(DashedLineSeries::new(
                    points.clone(),
                    7,
                    4,
                    colour.stroke_width(2),
                ))
            } else {
                chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            }
            .map_err(|e| e.to_string())?;
            // The legend's sample: one 18-px stroke, or two dashes.
            let (first, second) = if dashed {
                ((0, 7), (11, 18))
            } else {
                ((0, 9), (9, 18))
            };
            annotation.label(&series.name).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(first.0, 0), (first.1, 0)], colour.stroke_width(2))
                    + PathElement::new(vec![(second.0, 0), (second.1, 0)], colour.stroke_width(2))
            });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&point| Circle::new(point, 3, colour.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        if spec.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 13))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// One bar per category, with optional error bars.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// File name of the figure (for errors).
    pub name: String,
    /// Title above the plot.
    pub title: String,
    /// Category axis label.
    pub x_label: String,
    /// Value axis label.
    pub y_label: String,
    /// Category names, left to right.
    pub categories: Vec<String>,
    /// Bar heights.
    pub values: Vec<f64>,
    /// Lower and upper ends of each error bar.
    pub errors: Option<(Vec<f64>, Vec<f64>)>,
}

/// Draws a bar chart (bars from 0, so signs read at a glance).
pub fn bar_chart(spec: &BarChart) -> Result<String> {
    let count = spec.categories.len();
    if count == 0 || spec.values.len() != count {
        return Err(figure_error(
            &spec.name,
            format!("{} values for {count} categories", spec.values.len()),
        ));
    }
    if let Some((low, high)) = &spec.errors {
        if low.len() != count || high.len() != count {
            return Err(figure_error(
                &spec.name,
                "error bars and values differ in length",
            ));
        }
    }
    let (low, high) = finite_range(
        &spec.name,
        spec.values
            .iter()
            .copied()
            .chain(std::iter::once(0.0))
            .chain(
                spec.errors
                    .iter()
                    .flat_map(|(l, h)| l.iter().chain(h.iter()).copied()),
            ),
    )?;
    let (low, high) = padded(low, high);
    let width = (160 + 40 * count as u32).clamp(480, 1400);
    draw(&spec.name, (width, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&spec.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(60)
            .y_label_area_size(64)
            .build_cartesian_2d((0..count).into_segmented(), low..high)
            .map_err(|e| e.to_string())?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => spec.categories.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(count)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| axis_number(*v, low, high))
            .x_desc(&spec.x_label)
            .y_desc(&spec.y_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        let colour = series_colour(0);
        chart
            .draw_series(spec.values.iter().enumerate().map(|(i, &value)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), value),
                    ],
                    colour.mix(0.8).filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(|e| e.to_string())?;
        if let Some((lows, highs)) = &spec.errors {
            chart
                .draw_series((0..count).map(|i| {
                    PathElement::new(
                        vec![
                            (SegmentValue::CenterOf(i), lows[i]),
                            (SegmentValue::CenterOf(i), highs[i]),
                        ],
                        BLACK.stroke_width(2),
                    )
                }))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// One box per category: the distribution of its values.
#[derive(Debug, Clone)]
pub struct BoxPlot {
    /// File name of the figure (for errors).
    pub name: String,
    /// Title above the plot.
    pub title: String,
    /// Category axis label.
    pub x_label: String,
    /// Value axis label.
    pub y_label: String,
    /// Category names, left to right.
    pub categories: Vec<String>,
    /// Values per category (non-finite values are left out).
    pub values: Vec<Vec<f64>>,
}

/// Linear-interpolation quantile (numpy's default) of sorted values.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lower, upper) = (position.floor() as usize, position.ceil() as usize);
    sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower as f64)
}

/// Draws box plots: box from the first to the third quartile, a line at the median, whiskers to
/// the 5th and 95th percentiles, the mean as a dot; the count under each category name.
pub fn box_plot(spec: &BoxPlot) -> Result<String> {
    let count = spec.categories.len();
    if count == 0 || spec.values.len() != count {
        return Err(figure_error(
            &spec.name,
            format!("{} value lists for {count} categories", spec.values.len()),
        ));
    }
    let sorted: Vec<Vec<f64>> = spec
        .values
        .iter()
        .map(|v| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        })
        .collect();
    let (low, high) = finite_range(&spec.name, sorted.iter().flatten().copied())?;
    let (low, high) = padded(low, high);
    let labels: Vec<String> = spec
        .categories
        .iter()
        .zip(&sorted)
        .map(|(c, v)| format!("{c} (n={})", v.len()))
        .collect();
    let width = (160 + 110 * count as u32).clamp(520, 1800);
    draw(&spec.name, (width, 460), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&spec.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(60)
            .y_label_area_size(64)
            .build_cartesian_2d((0..count).into_segmented(), low..high)
            .map_err(|e| e.to_string())?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(count)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| axis_number(*v, low, high))
            .x_desc(&spec.x_label)
            .y_desc(&spec.y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        let colour = series_colour(0);
        for (i, v) in sorted.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let q = |p: f64| quantile_sorted(v, p);
            let (q1, median, q3) = (q(0.25), q(0.5), q(0.75));
            let mut body = Rectangle::new(
                [
                    (SegmentValue::Exact(i), q1),
                    (SegmentValue::Exact(i + 1), q3),
                ],
                colour.mix(0.35).filled(),
            );
            body.set_margin(0, 0, 14, 14);
            chart
                .draw_series(std::iter::once(body))
                .map_err(|e| e.to_string())?;
            let centre = || SegmentValue::CenterOf(i);
            let whiskers = [(q(0.05), q1), (q3, q(0.95))];
            chart
                .draw_series(whiskers.iter().map(|&(a, b)| {
                    PathElement::new(vec![(centre(), a), (centre(), b)], BLACK.stroke_width(1))
                }))
                .map_err(|e| e.to_string())?;
            let mut line = Rectangle::new(
                [
                    (SegmentValue::Exact(i), median),
                    (SegmentValue::Exact(i + 1), median),
                ],
                BLACK.stroke_width(3),
            );
            line.set_margin(0, 0, 14, 14);
            chart
                .draw_series(std::iter::once(line))
                .map_err(|e| e.to_string())?;
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (centre(), mean),
                    4,
                    BLACK.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// A sequence logo: at each position, the four bases stacked by height (tallest on top).
#[derive(Debug, Clone)]
pub struct SequenceLogo {
    /// File name of the figure (for errors).
    pub name: String,
    /// Title above the plot.
    pub title: String,
    /// What the heights mean (bits of information, attribution, ...).
    pub y_label: String,
    /// Heights per position for A, C, G, T. Negative heights are drawn below zero (attribution
    /// logos), stacked the same way.
    pub heights: Vec<[f64; 4]>,
    /// Position of the first column on the x axis (e.g. −30 for a TATA window).
    pub first_position: i64,
}

const BASES: [char; 4] = ['A', 'C', 'G', 'T'];
const BASE_COLOURS: [RGBColor; 4] = [
    RGBColor(0, 150, 0),
    RGBColor(0, 90, 200),
    RGBColor(240, 160, 0),
    RGBColor(210, 0, 0),
];

/// A block glyph of `base` in the unit square, as polygons (x right, y up).
fn glyph(base: char) -> Vec<Vec<(f64, f64)>> {
    let arc = |from: f64, to: f64, steps: usize, radius: f64| -> Vec<(f64, f64)> {
        (0..=steps)
            .map(|i| {
                let angle = (from + (to - from) * i as f64 / steps as f64).to_radians();
                (0.5 + radius * angle.cos(), 0.5 + radius * angle.sin())
            })
            .collect()
    };
    let ring = |from: f64, to: f64| -> Vec<(f64, f64)> {
        let mut outline = arc(from, to, 24, 0.5);
        outline.extend(arc(to, from, 24, 0.3));
        outline
    };
    match base {
        'A' => vec![vec![
            (0.0, 0.0),
            (0.4, 1.0),
            (0.6, 1.0),
            (1.0, 0.0),
            (0.78, 0.0),
            (0.68, 0.28),
            (0.32, 0.28),
            (0.22, 0.0),
        ]],
        'C' => vec![ring(45.0, 315.0)],
        'G' => vec![
            ring(45.0, 360.0),
            vec![(0.55, 0.42), (1.0, 0.42), (1.0, 0.56), (0.55, 0.56)],
        ],
        _ => vec![
            vec![(0.0, 0.82), (1.0, 0.82), (1.0, 1.0), (0.0, 1.0)],
            vec![(0.4, 0.0), (0.6, 0.0), (0.6, 0.82), (0.4, 0.82)],
        ],
    }
}

/// The value range a logo's stacked letters need (positive stack up, negative down).
fn logo_range(spec: &SequenceLogo) -> Result<(f64, f64)> {
    if spec.heights.is_empty() {
        return Err(figure_error(&spec.name, "no positions"));
    }
    let mut low = 0f64;
    let mut high = 0f64;
    for column in &spec.heights {
        finite_range(&spec.name, column.iter().copied())?;
        high = high.max(column.iter().filter(|&&h| h > 0.0).sum());
        low = low.min(column.iter().filter(|&&h| h < 0.0).sum());
    }
    if high == low {
        high = 1.0;
    }
    Ok((low, high))
}

/// One logo chart on `area`.
fn draw_logo(
    area: &DrawingArea<SVGBackend, Shift>,
    spec: &SequenceLogo,
    (low, high): (f64, f64),
) -> std::result::Result<(), String> {
    let positions = spec.heights.len();
    let first = spec.first_position as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.title, (FONT, 16))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(first - 0.5..first + positions as f64 - 0.5, low..high)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|v| format!("{}", v.round() as i64))
        .y_label_formatter(&|v| axis_number(*v, low, high))
        .x_desc("position")
        .y_desc(&spec.y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    let mut letters = Vec::new();
    for (index, column) in spec.heights.iter().enumerate() {
        let left = first + index as f64 - 0.45;
        for sign in [1.0, -1.0] {
            // Smallest nearest the axis, tallest outermost.
            let mut order: Vec<usize> = (0..4).filter(|&b| column[b] * sign > 0.0).collect();
            order.sort_by(|&a, &b| (column[a] * sign).total_cmp(&(column[b] * sign)));
            let mut base_line = 0.0;
            for base in order {
                let height = column[base];
                for polygon in glyph(BASES[base]) {
                    let points: Vec<(f64, f64)> = polygon
                        .iter()
                        .map(|&(x, y)| (left + 0.9 * x, base_line + height * y))
                        .collect();
                    letters.push(Polygon::new(points, BASE_COLOURS[base].filled()));
                }
                base_line += height;
            }
        }
    }
    chart.draw_series(letters).map_err(|e| e.to_string())?;
    Ok(())
}

fn logo_width(positions: usize) -> u32 {
    (120 + 22 * positions as u32).clamp(480, 1600)
}

/// Draws a sequence logo with stretched block glyphs (A green, C blue, G orange, T red).
pub fn sequence_logo(spec: &SequenceLogo) -> Result<String> {
    let range = logo_range(spec)?;
    draw(&spec.name, (logo_width(spec.heights.len()), 320), |root| {
        draw_logo(root, spec, range)
    })
}

/// Several logos over the same positions, one panel each, stacked top to bottom in one figure
/// `name` (each panel on its own scale).
pub fn stacked_logos(name: &str, panels: &[SequenceLogo]) -> Result<String> {
    if panels.is_empty() {
        return Err(figure_error(name, "no panels"));
    }
    let ranges = panels.iter().map(logo_range).collect::<Result<Vec<_>>>()?;
    let width = logo_width(panels[0].heights.len());
    draw(name, (width, 190 * panels.len() as u32), |root| {
        for ((area, spec), range) in root
            .split_evenly((panels.len(), 1))
            .iter()
            .zip(panels)
            .zip(ranges)
        {
            draw_logo(area, spec, range)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heatmap_spec(values: Vec<Vec<f64>>) -> Heatmap {
        Heatmap {
            name: "test.svg".into(),
            title: "mean [CLS] entropy".into(),
            x_label: "head".into(),
            y_label: "layer".into(),
            columns: (0..values[0].len()).map(|c| c.to_string()).collect(),
            rows: (0..values.len()).map(|r| r.to_string()).collect(),
            values,
            value_label: "nats".into(),
        }
    }

    #[test]
    fn a_heatmap_has_one_cell_per_value_and_its_labels() {
        let svg = heatmap(&heatmap_spec(vec![
            vec![0.1, 0.2, 0.3],
            vec![0.4, f64::NAN, 0.6],
        ]))
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("mean [CLS] entropy") || svg.contains("mean [CLS] entropy"));
        assert!(svg.contains("\nlayer\n") && svg.contains("\nhead\n"));
        // 6 cells + 64 colour-bar steps (+ background rectangles).
        assert!(
            svg.matches("<rect").count() >= 70,
            "{}",
            svg.matches("<rect").count()
        );
    }

    #[test]
    fn bad_data_is_an_error_naming_the_figure() {
        let error = heatmap(&heatmap_spec(vec![vec![f64::INFINITY]])).unwrap_err();
        assert!(error.to_string().contains("test.svg"), "{error}");
        let ragged = Heatmap {
            values: vec![vec![1.0, 2.0], vec![1.0]],
            ..heatmap_spec(vec![vec![1.0, 2.0], vec![1.0, 2.0]])
        };
        assert!(heatmap(&ragged).unwrap_err().to_string().contains("row 1"));
        let empty = LinePlot {
            name: "empty.svg".into(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![],
        };
        assert!(line_plot(&empty)
            .unwrap_err()
            .to_string()
            .contains("no data"));
    }

    #[test]
    fn lines_bars_and_logos_draw() {
        let lines = line_plot(&LinePlot {
            name: "lines.svg".into(),
            title: "fraction restored".into(),
            x_label: "layer".into(),
            y_label: "fraction".into(),
            series: vec![Series {
                name: "resid_pre".into(),
                x: vec![0.0, 1.0, 2.0],
                y: vec![1.0, 0.6, 0.1],
                band: Some((vec![0.9, 0.5, 0.0], vec![1.0, 0.7, 0.2])),
            }],
        })
        .unwrap();
        assert!(lines.contains("<polygon") && lines.contains("<polyline"));
        let bars = bar_chart(&BarChart {
            name: "bars.svg".into(),
            title: "importance".into(),
            x_label: "head".into(),
            y_label: "Δ AUROC".into(),
            categories: vec!["L0H0".into(), "L0H1".into()],
            values: vec![0.1, -0.05],
            errors: Some((vec![0.05, -0.1], vec![0.15, 0.0])),
        })
        .unwrap();
        assert!(bars.contains("L0H1"));
        let boxes = box_plot(&BoxPlot {
            name: "boxes.svg".into(),
            title: "CJ".into(),
            x_label: "pair".into(),
            y_label: "continuous Jaccard".into(),
            categories: vec!["a vs b".into(), "a vs c".into()],
            values: vec![vec![0.1, 0.2, 0.3, f64::NAN], vec![-0.2, 0.0]],
        })
        .unwrap();
        assert!(boxes.contains("a vs b (n=3)") && boxes.contains("<circle"));
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        let logo = sequence_logo(&SequenceLogo {
            name: "logo.svg".into(),
            title: "TATA".into(),
            y_label: "bits".into(),
            heights: vec![
                [0.0, 0.0, 0.0, 2.0],
                [1.8, 0.0, 0.0, 0.0],
                [0.2, -0.3, 0.1, 0.5],
            ],
            first_position: -31,
        })
        .unwrap();
        assert!(logo.matches("<polygon").count() >= 6);
        let mut second = SequenceLogo {
            name: "logo.svg".into(),
            title: "ISM".into(),
            y_label: "Δ".into(),
            heights: vec![[0.0, -0.5, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.0; 4]],
            first_position: -31,
        };
        let stacked = stacked_logos(
            "stacked.svg",
            &[
                SequenceLogo {
                    title: "AttnLRP".into(),
                    ..second.clone()
                },
                second.clone(),
            ],
        )
        .unwrap();
        assert!(stacked.contains("AttnLRP") && stacked.contains("ISM"));
        second.heights[0][0] = f64::NAN;
        assert!(stacked_logos("stacked.svg", &[second]).is_err());
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(format_number(0.123456), "0.123");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(1e-6), "1.00e-6");
    }
}
