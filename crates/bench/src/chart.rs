//! SVG charts for the report (plotters, SVG backend only: no fonts or C needed).

use std::path::Path;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A line chart of one or more series of (x, y) points, x on a log₂ scale.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_max, y_max) = extent(series);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max * 1.2).log_scale(), 0.0..y_max)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
    draw_lines(&mut chart, series)?;
    root.present()?;
    Ok(())
}

/// A line chart with x on a linear scale from 0 (sizes over time, say).
pub fn linear_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_max, y_max) = extent(series);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
    draw_lines(&mut chart, series)?;
    root.present()?;
    Ok(())
}

/// The largest x, and the y axis top (15 % above the largest y).
fn extent(series: &[(&str, Vec<(f64, f64)>)]) -> (f64, f64) {
    let x_max = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)).fold(1.0, f64::max);
    let y_max = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.15;
    (x_max, y_max.max(1.0))
}

/// Each series as a line with dots, and a legend.
fn draw_lines<'a, X, DB>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
{
    let colors = [BLUE, RED, GREEN, MAGENTA];
    for (i, (name, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}
