//! The rule's value around the incident as an SVG chart: the value per
//! window, the thresholds as horizontal lines, and the first breach, trigger,
//! acknowledgement and resolve as vertical markers.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

use super::breach::RuleView;

/// A vertical marker: when, and what to call it.
pub(super) type Marker = (DateTime<Utc>, &'static str);

const WIDTH: u32 = 960;
const HEIGHT: u32 = 400;

/// The chart, or `None` when the rule returned no value for the instance.
pub(super) fn draw(view: &RuleView, markers: &[Marker]) -> Result<Option<String>, String> {
    let values: Vec<(i64, f64)> = view
        .values
        .iter()
        .filter_map(|(t, v)| Some((t.timestamp_millis(), (*v)?)))
        // A rate over zero requests is infinite or NaN: not drawable.
        .filter(|(_, v)| v.is_finite())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let levels: Vec<(f64, &str, RGBColor)> = view
        .thresholds
        .iter()
        .flat_map(|t| {
            [
                t.warning.map(|w| (w, "warning", RGBColor(230, 150, 0))),
                t.critical.map(|c| (c, "critical", RGBColor(200, 30, 30))),
            ]
        })
        .flatten()
        .collect();
    let x0 = view.values.first().map_or(0, |(t, _)| t.timestamp_millis());
    let x1 = view
        .values
        .last()
        .map_or(x0 + 1, |(t, _)| t.timestamp_millis())
        .max(x0 + 1);
    let ys = values
        .iter()
        .map(|(_, v)| *v)
        .chain(levels.iter().map(|(l, _, _)| *l));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
    let (y0, y1) = (lo - pad, hi + pad);

    // Seconds on the axis when the chart spans less than a quarter hour.
    let format = if x1 - x0 < 15 * 60 * 1000 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{} (window {})",
                    view.rule,
                    humantime::format_duration(view.window)
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .light_line_style(WHITE.mix(0.0))
            .x_label_formatter(&|ms| {
                DateTime::from_timestamp_millis(*ms)
                    .map(|t| t.format(format).to_string())
                    .unwrap_or_default()
            })
            .x_desc("UTC")
            .y_desc("value")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(values, BLUE.stroke_width(2)))
            .map_err(err)?
            .label("value")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        for (level, name, color) in &levels {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x0, *level), (x1, *level)],
                    color.stroke_width(1),
                )))
                .map_err(err)?
                .label(format!("{name} {level}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], *color));
        }
        // Labels step down the chart so markers close in time stay legible.
        for (i, (at, name)) in markers.iter().enumerate() {
            let x = at.timestamp_millis();
            let label_y = y1 - (y1 - y0) * 0.07 * (i % 4) as f64;
            if x < x0 || x > x1 {
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, y0), (x, y1)],
                    BLACK.mix(0.6).stroke_width(1),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {name}"),
                    (x, label_y),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}
