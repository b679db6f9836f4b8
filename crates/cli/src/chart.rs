//! The planner's two charts, each as SVG and PNG (plotters): the recommended configuration's
//! demand, target and pool depth over the trace, and every candidate's warm-hit rate against
//! its monthly cost with the frontier marked.
//!
//! PNG text needs a font, and a clean CI machine may have none installed: the DejaVu Sans
//! the `dejavu` crate embeds (a registry package, pinned in Cargo.lock) is registered with
//! plotters' own rasteriser (`ab_glyph`), so the PNGs never depend on the system's fonts. The
//! SVGs name the same family and leave the rendering to the viewer.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;
use warmpool_simulation::plan::Plan;
use warmpool_simulation::plan::time::format_instant;

const SIZE: (u32, u32) = (1_200, 640);
const FONT: &str = "sans-serif";
const DEMAND: RGBColor = RGBColor(120, 120, 120);
const TARGET: RGBColor = RGBColor(214, 39, 40);
const DEPTH: RGBColor = RGBColor(31, 119, 180);
const FRONTIER: RGBColor = RGBColor(44, 160, 44);

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct ChartError {
    pub path: String,
    pub reason: String,
}

fn font_once() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Only fails on bytes that are no font; the embedded one is.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// The four files `--chart PATH.svg` writes: PATH.svg and PATH.png (over time), and
/// PATH-frontier.svg and PATH-frontier.png (hit rate against cost).
pub fn paths(svg: &Path) -> [PathBuf; 4] {
    let stem = svg.with_extension("");
    let named = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
    [
        named(".svg"),
        named(".png"),
        named("-frontier.svg"),
        named("-frontier.png"),
    ]
}

/// Draws both charts of `plan` into the files of [`paths`]; returns them.
pub fn write(plan: &Plan, svg: &Path) -> Result<[PathBuf; 4], ChartError> {
    font_once();
    let files = paths(svg);
    let [time_svg, time_png, frontier_svg, frontier_png] = &files;
    draw(plan, time_svg, Chart::OverTime, false)?;
    draw(plan, time_png, Chart::OverTime, true)?;
    draw(plan, frontier_svg, Chart::Frontier, false)?;
    draw(plan, frontier_png, Chart::Frontier, true)?;
    Ok(files)
}

#[derive(Clone, Copy)]
enum Chart {
    OverTime,
    Frontier,
}

type Drawn = Result<(), String>;

fn on<DB: DrawingBackend>(plan: &Plan, chart: Chart, area: &DrawingArea<DB, Shift>) -> Drawn {
    match chart {
        Chart::OverTime => over_time(plan, area),
        Chart::Frontier => frontier(plan, area),
    }
}

fn draw(plan: &Plan, path: &Path, chart: Chart, png: bool) -> Result<(), ChartError> {
    let failed = |reason: String| ChartError {
        path: path.display().to_string(),
        reason,
    };
    if png {
        let area = BitMapBackend::new(path, SIZE).into_drawing_area();
        on(plan, chart, &area).map_err(failed)?;
        area.present().map_err(|e| failed(e.to_string()))
    } else {
        let area = SVGBackend::new(path, SIZE).into_drawing_area();
        on(plan, chart, &area).map_err(failed)?;
        area.present().map_err(|e| failed(e.to_string()))
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Hours since the trace's start, the charts' time axis.
fn hours(plan_start_ms: u64, at: u64) -> f64 {
    at.saturating_sub(plan_start_ms) as f64 / 3_600_000.0
}

fn over_time<DB: DrawingBackend>(plan: &Plan, area: &DrawingArea<DB, Shift>) -> Drawn {
    area.fill(&WHITE).map_err(text)?;
    let line = &plan.timeline;
    let start = line.demand.first().map_or(0, |d| d.0);
    let span = line.demand.last().map_or(1.0, |d| hours(start, d.0)).max(1.0 / 60.0);
    let sessions_max = line
        .target
        .iter()
        .map(|t| f64::from(t.1))
        .chain(line.depth.iter().map(|d| d.1 as f64))
        .fold(1.0, f64::max);
    let demand_max = line.demand.iter().map(|d| d.1).fold(0.1, f64::max);
    let name = plan
        .recommendation
        .as_ref()
        .map_or("no recommendation", |r| r.name.as_str());
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}: recommended \"{name}\"", plan.trace), (FONT, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0.0..span, 0.0..sessions_max * 1.1)
        .map_err(text)?
        .set_secondary_coord(0.0..span, 0.0..demand_max * 1.1);
    chart
        .configure_mesh()
        .x_desc(format!("hours since {} (UTC)", format_instant(start)))
        .y_desc("sessions (target, pool depth)")
        .label_style((FONT, 14))
        .draw()
        .map_err(text)?;
    chart
        .configure_secondary_axes()
        .y_desc("demand (requests per second)")
        .label_style((FONT, 14))
        .draw()
        .map_err(text)?;
    chart
        .draw_secondary_series(LineSeries::new(
            line.demand.iter().map(|(t, r)| (hours(start, *t), *r)),
            DEMAND.stroke_width(1),
        ))
        .map_err(text)?
        .label("demand, requests/s (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DEMAND.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            line.target.iter().map(|(t, v)| (hours(start, *t), f64::from(*v))),
            TARGET.stroke_width(2),
        ))
        .map_err(text)?
        .label("pool target, sessions")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TARGET.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            line.depth.iter().map(|(t, v)| (hours(start, *t), *v as f64)),
            DEPTH.stroke_width(2),
        ))
        .map_err(text)?
        .label("pool depth (visible), sessions")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DEPTH.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text)
}

fn frontier<DB: DrawingBackend>(plan: &Plan, area: &DrawingArea<DB, Shift>) -> Drawn {
    area.fill(&WHITE).map_err(text)?;
    let points: Vec<(f64, f64, bool, &str)> = plan
        .candidates
        .iter()
        .map(|c| {
            (
                c.cost_per_month_usd,
                c.warm_hit_rate * 100.0,
                c.on_frontier,
                c.candidate.name.as_str(),
            )
        })
        .collect();
    // A log scale: candidates an order of magnitude apart stay apart, close ones readable.
    let cost_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let cost_min = points.iter().map(|p| p.0).filter(|c| *c > 0.0).fold(cost_max, f64::min) * 0.7;
    let hit_min = points.iter().map(|p| p.1).fold(100.0, f64::min).min(99.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: warm-hit rate against monthly cost, per candidate", plan.trace),
            (FONT, 22),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d((cost_min..cost_max).log_scale(), (hit_min - 0.5).max(0.0)..100.2)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("idle pool cost (USD per month, log scale)")
        .y_desc("warm-hit rate (%)")
        .label_style((FONT, 14))
        .draw()
        .map_err(text)?;
    let mut on: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.2)
        .map(|p| (p.0.max(cost_min), p.1))
        .collect();
    on.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(on, FRONTIER.stroke_width(2)))
        .map_err(text)?
        .label("frontier (nothing cheaper hits more)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], FRONTIER.stroke_width(2)));
    chart
        .draw_series(points.iter().enumerate().map(|(i, (cost, hit, front, name))| {
            let color = if *front { FRONTIER } else { DEPTH };
            // Labels alternate above and below their point, so neighbours do not overprint.
            let dy = if i % 2 == 0 { -18 } else { 6 };
            EmptyElement::at((cost.max(cost_min), *hit))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(name.to_string(), (8, dy), (FONT, 13))
        }))
        .map_err(text)?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, DEPTH.filled()));
    if let Some(goal) = plan.recommendation.as_ref().map(|r| r.goal * 100.0) {
        chart
            .draw_series(LineSeries::new(
                [(cost_min, goal), (cost_max, goal)],
                TARGET.stroke_width(1),
            ))
            .map_err(text)?
            .label(format!("goal {goal:.1}%"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TARGET.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text)
}
