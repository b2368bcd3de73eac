//! The charts, drawn with plotters as SVG: one panel per experiment, a
//! row per server, the same colour for a server in every panel.
//!
//! - `throughput.svg`: answers per second, a bar per server, each panel on
//!   its own scale (the experiments differ by a factor of a thousand);
//!   where an experiment's lesson is another figure (C10K: memory per idle
//!   connection; work stealing: the light connections' p90), its panel
//!   draws that one.
//! - `latency.svg`: p50, p99 and p99.9 per server on a log scale, joined by
//!   a line: where the marks sit is the typical wait, how far they spread
//!   is the tail.

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::compare::format::{duration_label, group_digits, per_second};
use crate::compare::model::{ExperimentResult, Results, RunResult};

/// Panels per row of a figure.
const COLUMNS: usize = 3;
/// One panel's size in pixels: room for eight rows and their labels.
const PANEL: (u32, u32) = (640, 330);
/// A panel's height less its plotting area: caption, axis, margins.
const PANEL_CHROME: u32 = 95;
/// The thickest a bar is drawn, in pixels.
const BAR: u32 = 26;
/// The band above the panels: title and legend.
/// Room for the title, the subtitle and two rows of legend.
const HEADER: u32 = 112;
/// Room for the server names left of each panel.
const NAMES: u32 = 215;
const FONT: &str = "sans-serif";

/// Every contender's colour (Tableau 10), by id; redis in grey.
/// The `--offload` rows take the light shade of their server's colour.
const COLOURS: [(&str, RGBColor); 11] = [
    ("srv-single", RGBColor(214, 39, 40)),
    ("srv-threaded-pool", RGBColor(255, 127, 14)),
    ("srv-threaded-per-conn", RGBColor(140, 86, 75)),
    ("srv-poll", RGBColor(31, 119, 180)),
    ("srv-poll-offload", RGBColor(174, 199, 232)),
    ("srv-async", RGBColor(44, 160, 44)),
    ("srv-async-offload", RGBColor(152, 223, 138)),
    ("srv-hybrid-ws", RGBColor(148, 103, 189)),
    ("srv-hybrid-per-core", RGBColor(227, 119, 194)),
    ("srv-uring", RGBColor(23, 190, 207)),
    ("redis-server", RGBColor(110, 110, 110)),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Outcome = Result<(), Box<dyn std::error::Error>>;

/// The charts of `results`, as `(file name, SVG)`; none if nothing was
/// measured. A chart that cannot be drawn is left out with a warning:
/// the tables and the JSON matter more.
pub(crate) fn draw(results: &Results) -> Vec<(String, String)> {
    let panels: Vec<&ExperimentResult> = results
        .experiments
        .iter()
        .filter(|experiment| experiment.runs.iter().any(|run| run.measured().is_some()))
        .collect();
    if panels.is_empty() {
        return Vec::new();
    }
    let subtitle = format!(
        "{}, {} cores, Linux {}; {} s per run, load generator on the same machine",
        results.machine.date,
        results.machine.cores,
        results.machine.kernel,
        results.settings.duration_seconds
    );
    let mut charts = Vec::new();
    for (name, figure) in [
        ("throughput.svg", Figure::Throughput),
        ("latency.svg", Figure::Latency),
    ] {
        match render(&panels, figure, &subtitle) {
            Ok(svg) => charts.push((name.to_owned(), svg)),
            Err(error) => {
                zen_utils::log_line!("client compare: warning: cannot draw {name}: {error}")
            }
        }
    }
    charts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    Throughput,
    Latency,
}

fn render(
    panels: &[&ExperimentResult],
    figure: Figure,
    subtitle: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    // Always three panels wide, so that the legend fits however few
    // experiments were run.
    let columns = COLUMNS;
    let rows = panels.len().div_ceil(COLUMNS);
    let size = (PANEL.0 * columns as u32, HEADER + PANEL.1 * rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        let title = match figure {
            Figure::Throughput => {
                "Throughput: answers per second, higher is better (a panel whose lesson is \
                 another figure draws that one, as its axis says)"
            }
            Figure::Latency => {
                "Latency: p50, p99, p99.9 and max per server (log scale), lower is better"
            }
        };
        draw_header(&header, title, subtitle, panels, figure)?;
        let areas = body.split_evenly((rows, COLUMNS));
        for (panel, area) in panels.iter().zip(&areas) {
            match figure {
                Figure::Throughput => throughput_panel(area, panel)?,
                Figure::Latency => latency_panel(area, panel)?,
            }
        }
        root.present()?;
    }
    Ok(svg)
}

/// Title, subtitle, and the legend: a colour per server (and for
/// latency, a mark per percentile).
fn draw_header(
    area: &Area<'_>,
    title: &str,
    subtitle: &str,
    panels: &[&ExperimentResult],
    figure: Figure,
) -> Outcome {
    area.draw(&Text::new(
        title,
        (16, 10),
        (FONT, 22).into_font().style(FontStyle::Bold),
    ))?;
    area.draw(&Text::new(
        subtitle,
        (16, 38),
        (FONT, 14).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for run in panels.iter().flat_map(|panel| &panel.runs) {
        if !seen.iter().any(|(id, _)| *id == run.server) {
            seen.push((&run.server, &run.label));
        }
    }
    let (mut x, mut y) = (16, 66);
    // A legend wider than the figure goes on in a second row.
    let width = i32::try_from(area.dim_in_pixel().0).unwrap_or(i32::MAX) - 16;
    let room_for = |x: &mut i32, y: &mut i32, needed: i32| {
        if *x + needed > width && *x > 16 {
            (*x, *y) = (16, *y + 22);
        }
    };
    let label = (FONT, 14).into_font();
    for (id, name) in seen {
        room_for(&mut x, &mut y, 19 + text_width(name, 14));
        area.draw(&Rectangle::new(
            [(x, y), (x + 14, y + 14)],
            colour(id).filled(),
        ))?;
        area.draw(&Text::new(name.to_owned(), (x + 19, y), label.clone()))?;
        x += 19 + text_width(name, 14) + 22;
    }
    if figure == Figure::Latency {
        let black = BLACK.filled();
        x += 10;
        for (mark, name) in [
            (Mark::P50, "p50"),
            (Mark::P99, "p99"),
            (Mark::P999, "p99.9"),
            (Mark::Max, "max"),
        ] {
            room_for(&mut x, &mut y, 17 + text_width(name, 14));
            mark.draw_at(area, (x + 7, y + 7), black)?;
            area.draw(&Text::new(name, (x + 17, y), label.clone()))?;
            x += 17 + text_width(name, 14) + 18;
        }
    }
    Ok(())
}

/// Rough width of `text` at `size` px, as plotters estimates it for SVG.
fn text_width(text: &str, size: u32) -> i32 {
    (f64::from(size) * 0.6 * text.chars().count() as f64).round() as i32
}

fn colour(id: &str) -> RGBColor {
    COLOURS
        .iter()
        .find(|(known, _)| *known == id)
        .map_or(RGBColor(0, 0, 0), |(_, colour)| *colour)
}

/// The rows of a panel, top to bottom.
fn rows(panel: &ExperimentResult) -> Vec<&RunResult> {
    panel.runs.iter().collect()
}

/// A row's name in a chart: short enough for the label column.
fn row_label(run: &RunResult) -> String {
    run.label.trim_end_matches(" (reference)").to_owned()
}

/// What a panel of the throughput figure draws: answers per second, but
/// where an experiment's lesson is another figure, that one (C10K's is
/// the memory an idle connection costs; work stealing's the light
/// connections' p90, while the answers per second are alike).
struct Bars {
    /// The axis' name.
    desc: &'static str,
    /// A row's value, if it was measured.
    value: fn(&RunResult) -> Option<f64>,
    /// A value as the axis says it.
    format: fn(f64) -> String,
    /// A value as the end of its bar says it.
    label: fn(f64) -> String,
}

impl Bars {
    fn of(panel: &ExperimentResult) -> Self {
        match panel.key.as_str() {
            "c10k" => Self {
                desc: "resident memory per idle connection (lower is better)",
                value: |run| {
                    run.server_usage
                        .as_ref()?
                        .idle
                        .as_ref()?
                        .bytes_per_connection
                },
                format: |bytes| format!("{} B", group_digits(bytes)),
                label: |bytes| format!("{} B", group_digits(bytes)),
            },
            "work-stealing" => Self {
                desc: "p90 latency of the light connections (lower is better)",
                value: |run| {
                    run.measured()
                        .filter(|load| load.requests > 0)
                        .map(|load| load.latency_us.p90)
                },
                format: crate::compare::format::micros,
                label: crate::compare::format::micros,
            },
            _ => Self {
                desc: "answers per second",
                value: |run| run.measured().map(|load| load.rps),
                format: per_second,
                label: group_digits,
            },
        }
    }
}

fn throughput_panel(area: &Area<'_>, panel: &ExperimentResult) -> Outcome {
    let runs = rows(panel);
    let n = runs.len() as i32;
    let bars = Bars::of(panel);
    let top = runs
        .iter()
        .filter_map(|run| (bars.value)(run))
        .fold(0.0, f64::max)
        .max(1.0);
    let mut chart = bars_chart(area, panel)
        // Room right of the longest bar for its number.
        .build_cartesian_2d(0.0..top * 1.3, segments(n))?;
    let names: Vec<String> = runs.iter().map(|run| row_label(run)).collect();
    let name_of = |value: &SegmentValue<i32>| row_name(&names, value);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(runs.len())
        .y_label_formatter(&name_of)
        .x_labels(5)
        .x_label_formatter(&|value| (bars.format)(*value))
        .x_desc(bars.desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    // Bars at most BAR pixels thick, however few the rows.
    let row_px = (PANEL.1 - PANEL_CHROME) / runs.len().max(1) as u32;
    let bar_margin = (row_px.saturating_sub(BAR) / 2).max(4);
    for (row, run) in runs.iter().enumerate() {
        let y = n - 1 - row as i32;
        let value_style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        match (bars.value)(run) {
            Some(value) => {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (value, SegmentValue::Exact(y + 1)),
                    ],
                    colour(&run.server).filled(),
                );
                bar.set_margin(bar_margin, bar_margin, 0, 0);
                chart.draw_series([bar])?;
                chart.draw_series([EmptyElement::at((value, SegmentValue::CenterOf(y)))
                    + Text::new((bars.label)(value), (5, 0), value_style.clone())])?;
            }
            None => {
                let why = match run.status {
                    crate::compare::model::Status::Skipped => "not run",
                    _ if run.measured().is_some() => "not measured",
                    _ => "failed",
                };
                chart.draw_series([EmptyElement::at((0.0, SegmentValue::CenterOf(y)))
                    + Text::new(why, (5, 0), value_style.color(&RGBColor(120, 120, 120)))])?;
            }
        }
    }
    Ok(())
}

fn latency_panel(area: &Area<'_>, panel: &ExperimentResult) -> Outcome {
    let runs = rows(panel);
    let n = runs.len() as i32;
    let answered: Vec<_> = runs
        .iter()
        .filter_map(|run| run.measured())
        .filter(|load| load.requests > 0)
        .collect();
    let low = answered
        .iter()
        .map(|load| load.latency_us.p50)
        .fold(f64::INFINITY, f64::min);
    let high = answered
        .iter()
        .map(|load| load.latency_us.max)
        .fold(0.0, f64::max);
    let (low, high) = if answered.is_empty() {
        (1.0, 1e6)
    } else {
        (
            decade_below(low.max(1.0)),
            decade_above(high.max(low * 10.0)),
        )
    };
    let mut chart =
        bars_chart(area, panel).build_cartesian_2d((low..high).log_scale(), segments(n))?;
    let names: Vec<String> = runs.iter().map(|run| row_label(run)).collect();
    let name_of = |value: &SegmentValue<i32>| row_name(&names, value);
    chart
        .configure_mesh()
        .y_labels(runs.len())
        .y_label_formatter(&name_of)
        .x_label_formatter(&|value| {
            // Over more than four decades, every other one is labelled, or
            // the labels run into each other.
            let decades = (high / low).log10().round() as i64;
            let step = (value / low).log10().round() as i64;
            if decades > 4 && step % 2 != 0 {
                String::new()
            } else {
                duration_label(*value)
            }
        })
        .x_desc("latency (log scale)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    let note = TextStyle::from((FONT, 13).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center))
        .color(&RGBColor(120, 120, 120));
    for (row, run) in runs.iter().enumerate() {
        let row = n - 1 - row as i32;
        let y = || SegmentValue::CenterOf(row);
        let Some(load) = run.measured().filter(|load| load.requests > 0) else {
            let why = match run.measured() {
                Some(_) => "no answers",
                None if run.status == crate::compare::model::Status::Skipped => "not run",
                None => "failed",
            };
            chart.draw_series([
                EmptyElement::at((low, y())) + Text::new(why, (5, 0), note.clone())
            ])?;
            continue;
        };
        let colour = colour(&run.server);
        let p = &load.latency_us;
        let clamp = |value: f64| value.clamp(low, high);
        chart.draw_series([PathElement::new(
            vec![(clamp(p.p50), y()), (clamp(p.p999), y())],
            colour.stroke_width(2),
        )])?;
        let style = colour.filled();
        chart
            .draw_series([EmptyElement::at((clamp(p.p50), y())) + Circle::new((0, 0), 5, style)])?;
        chart.draw_series([
            EmptyElement::at((clamp(p.p99), y())) + TriangleMarker::new((0, 0), 6, style)
        ])?;
        chart.draw_series([
            EmptyElement::at((clamp(p.p999), y())) + Rectangle::new([(-4, -4), (4, 4)], style)
        ])?;
        chart
            .draw_series([EmptyElement::at((clamp(p.max), y()))
                + Cross::new((0, 0), 4, colour.stroke_width(2))])?;
    }
    Ok(())
}

/// A panel of one bar (or marks) per server: its experiment as the caption,
/// the servers' names on the left, the figure along the bottom.
fn bars_chart<'a, 'b>(
    area: &'a Area<'b>,
    panel: &ExperimentResult,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(
            format!("{}. {}", panel.number, panel.title),
            (FONT, 17).into_font().style(FontStyle::Bold),
        )
        .margin(10)
        .margin_right(24)
        .x_label_area_size(42)
        .y_label_area_size(NAMES);
    chart
}

/// The name of the row a segment of the bars' axis stands for: rows are
/// drawn from the bottom up, so the first run is the top segment.
fn row_name(names: &[String], value: &SegmentValue<i32>) -> String {
    match value {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            let n = i32::try_from(names.len()).unwrap_or(i32::MAX);
            usize::try_from(n - 1 - i)
                .ok()
                .and_then(|row| names.get(row).cloned())
                .unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// One band per row: plotters' integer ranges include their end, so
/// `0..n - 1` is `n` rows.
fn segments(n: i32) -> SegmentedCoord<RangedCoordi32> {
    (0..(n - 1).max(1)).into_segmented()
}

/// How each percentile is marked.
#[derive(Debug, Clone, Copy)]
enum Mark {
    P50,
    P99,
    P999,
    /// The slowest answer, off the line: one answer may be an accident,
    /// but in slow clients it is the wait for a freed thread.
    Max,
}

impl Mark {
    fn draw_at(self, area: &Area<'_>, (x, y): (i32, i32), style: ShapeStyle) -> Outcome {
        match self {
            Self::P50 => area.draw(&Circle::new((x, y), 5, style))?,
            Self::P99 => area.draw(&TriangleMarker::new((x, y), 6, style))?,
            Self::P999 => area.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], style))?,
            Self::Max => area.draw(&Cross::new((x, y), 4, style.stroke_width(2)))?,
        }
        Ok(())
    }
}

/// The power of ten at or below `value`.
fn decade_below(value: f64) -> f64 {
    10f64.powf(value.log10().floor())
}

/// The power of ten above `value`.
fn decade_above(value: f64) -> f64 {
    10f64.powf(value.log10().floor() + 1.0)
}

/// Where experiment 11's chart goes in the report directory.
pub(crate) const DEAD_SERVER_CHART: &str = "dead-server.svg";

/// The charts of the experiments run apart, as `(file name, SVG)`: one
/// that cannot be drawn is left out with a warning.
pub(crate) fn apart(results: &Results) -> Vec<(String, String)> {
    let mut charts = Vec::new();
    if let Some(dead) = &results.dead_server {
        match dead_server(dead) {
            Ok(svg) => charts.push((DEAD_SERVER_CHART.to_owned(), svg)),
            Err(error) => {
                zen_utils::log_line!("client compare: warning: no {DEAD_SERVER_CHART}: {error}")
            }
        }
    }
    charts
}

/// Experiment 11's chart: answers per 100 ms over a run, a panel per
/// failure kind, a line per way in each (the registry's stuck pair without
/// its health probe dashed), the failure and the recovery marked. The dip
/// after the failure, and how soon each line climbs back, is the lesson.
fn dead_server(result: &crate::compare::model::DeadServerResult) -> Result<String, String> {
    use crate::compare::model::{Kind, Way};
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 900)).into_drawing_area();
        let drawn: Outcome = (|| {
            root.fill(&WHITE)?;
            let root = root.titled(
                &format!(
                    "{}. {}: {} ×3, answers per {} ms",
                    result.number, result.title, result.model, result.interval_ms
                ),
                (FONT, 20),
            )?;
            let interval = result.interval_ms as f64 / 1000.0;
            let top = result
                .pairs
                .iter()
                .flat_map(|pair| pair.series.iter().copied())
                .max()
                .unwrap_or(1)
                .max(1) as f64;
            let panels = root.split_evenly((Kind::ALL.len(), 1));
            for (kind, panel) in Kind::ALL.into_iter().zip(&panels) {
                let (failed, recovered) = kind.how();
                let mut chart = ChartBuilder::on(panel)
                    .caption(format!("backend 2 {failed}"), (FONT, 16))
                    .margin(10)
                    .x_label_area_size(36)
                    .y_label_area_size(60)
                    .build_cartesian_2d(0.0..result.seconds, 0.0..top * 1.6)?;
                chart
                    .configure_mesh()
                    .x_desc("seconds into the run")
                    .y_desc("answers")
                    .y_label_formatter(&|v| format!("{v:.0}"))
                    .disable_x_mesh()
                    .draw()?;
                // The failure's label right of its mark, the recovery's
                // left of its own: the legend takes the top right corner.
                let gap = 0.01 * result.seconds;
                for (at, what, right) in [
                    (result.fail_at_seconds, "fails", true),
                    (result.recover_at_seconds, recovered, false),
                ] {
                    chart.draw_series([PathElement::new(
                        vec![(at, 0.0), (at, top * 1.6)],
                        BLACK.mix(0.5).stroke_width(2),
                    )])?;
                    let (x, side) = if right {
                        (at + gap, HPos::Left)
                    } else {
                        (at - gap, HPos::Right)
                    };
                    let style =
                        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(side, VPos::Top));
                    chart.draw_series([Text::new(what.to_owned(), (x, top * 1.55), style)])?;
                }
                let colour = |way: Way| match way {
                    Way::Servers => RGBColor(31, 119, 180),
                    Way::Haproxy => RGBColor(255, 127, 14),
                    Way::Registry => RGBColor(44, 160, 44),
                };
                for pair in result.pairs.iter().filter(|pair| pair.kind == kind) {
                    if pair.not_run.is_some() || pair.series.is_empty() {
                        continue;
                    }
                    let points: Vec<(f64, f64)> = pair
                        .series
                        .iter()
                        .enumerate()
                        .map(|(i, n)| ((i as f64 + 0.5) * interval, *n as f64))
                        .collect();
                    let style = if pair.health_probe {
                        colour(pair.way).stroke_width(2)
                    } else {
                        colour(pair.way).mix(0.6).stroke_width(1)
                    };
                    let label = if pair.health_probe {
                        pair.label()
                    } else {
                        format!("{}, probe off (thin)", pair.way.label())
                    };
                    chart
                        .draw_series([PathElement::new(points, style)])?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK.mix(0.3))
                    .label_font((FONT, 13))
                    .draw()?;
            }
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|error| error.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_decades() {
        assert_eq!(decade_below(47.0), 10.0);
        assert_eq!(decade_above(47.0), 100.0);
    }
}
