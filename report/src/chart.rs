//! One target's RPO over time, as an SVG to inline in the HTML report.
//!
//! Tables say *that* a target breached its objective; an auditor also wants
//! to see *when*, for how long, how it recovered and where nothing was
//! measured at all. The chart is vector SVG (plotters' SVG backend, text as
//! `<text>`, so no font files and no bitmap) and stays small enough to print
//! on A4: a month at the chart step is downsampled to the lowest and highest
//! value per pixel column, which is all a pixel can show anyway.
//!
//! Drawing never panics on odd data: a drawing error yields an SVG that says
//! the chart could not be drawn, and the report goes on.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::html::{escape, fmt_time};
use super::model::{Chart, Window};

/// About the width of an A4 portrait text column at 96 dpi (the HTML scales
/// it down to fit the page; the viewBox keeps it sharp).
const WIDTH: u32 = 760;
const HEIGHT: u32 = 240;

/// Headroom above the highest of peak and objective, so neither touches the frame.
const HEADROOM: f64 = 1.15;

const LINE: RGBColor = RGBColor(31, 78, 140);
const OBJECTIVE: RGBColor = RGBColor(200, 30, 30);
const BREACH: RGBColor = RGBColor(230, 60, 60);
const NO_DATA: RGBColor = RGBColor(140, 140, 140);
const GRID: RGBColor = RGBColor(228, 228, 228);
const FONT: &str = "sans-serif";

/// A chart point: (time, RPO), `None` when there was no data.
type Pt = (f64, Option<f64>);
/// A drawable point (time, RPO) and a run of them.
type Xy = (f64, f64);
type Line = Vec<Xy>;

/// The SVG of `chart` over `window`, titled `title` (plain text; escaped
/// here). No XML prolog, so it can be inlined in HTML as is.
pub fn rpo_svg(chart: &Chart, window: &Window, title: &str) -> String {
    let mut buf = String::new();
    // plotters asserts on a few internal invariants; a bug there must cost
    // one chart, not the whole report.
    let drawn = catch_unwind(AssertUnwindSafe(|| draw(&mut buf, chart, window, title)));
    match drawn {
        Ok(Ok(())) => buf,
        Ok(Err(e)) => failed_svg(title, &e.to_string()),
        Err(_) => failed_svg(title, "internal error in the chart library"),
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(buf: &mut String, chart: &Chart, window: &Window, title: &str) -> DrawResult {
    let x = time_range(window, &chart.points);
    let pts = clean_points(&chart.points, &x);
    let objective = Some(chart.objective_seconds).filter(|o| o.is_finite() && *o > 0.0);
    let peak = pts.iter().filter_map(|p| p.1).fold(0.0, f64::max);
    let y_top = y_top(peak, objective);
    let (ticks, tick_fmt) = time_ticks(&x);

    let root = SVGBackend::with_string(buf, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, (FONT, 15))
        .margin(10)
        // Room for the last tick label, centred on the right edge.
        .margin_right(24)
        .x_label_area_size(34)
        .y_label_area_size(46)
        .build_cartesian_2d(
            TimeAxis {
                range: x.clone(),
                ticks,
                fmt: tick_fmt,
            },
            0.0..y_top,
        )?;

    let y_label = |v: &f64| axis_number(*v, y_top);
    ch.configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .y_label_formatter(&y_label)
        .y_labels(6)
        .x_desc("time (UTC)")
        .y_desc("RPO (s)")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 11))
        .draw()?;

    // Pixel columns of the plot: the resolution worth keeping.
    let cols = ch.plotting_area().dim_in_pixel().0.max(1) as usize;
    let px_seconds = (x.end - x.start) / cols as f64;

    let gaps = no_data_bands(&pts, chart.step_seconds, &x, px_seconds);
    ch.draw_series(
        gaps.iter()
            .map(|b| Rectangle::new([(b.start, 0.0), (b.end, y_top)], NO_DATA.mix(0.22).filled())),
    )?;

    let shown = downsample(&pts, &x, cols);
    if let Some(obj) = objective {
        let polys = breach_polygons(&shown, obj);
        ch.draw_series(
            polys
                .into_iter()
                .map(|p| Polygon::new(p, BREACH.mix(0.3).filled())),
        )?;
    }

    let (lines, dots) = segments(&shown);
    ch.draw_series(
        lines
            .into_iter()
            .map(|l| PathElement::new(l, LINE.stroke_width(1))),
    )?;
    // A point with no neighbour would be invisible as a line.
    ch.draw_series(dots.into_iter().map(|d| Circle::new(d, 2, LINE.filled())))?;

    if let Some(obj) = objective {
        ch.draw_series(DashedLineSeries::new(
            [(x.start, obj), (x.end, obj)],
            6,
            4,
            OBJECTIVE.stroke_width(1),
        ))?;
        let style = TextStyle::from((FONT, 11).into_font())
            .color(&OBJECTIVE)
            .pos(Pos::new(HPos::Right, VPos::Bottom));
        let label = format!("objective {} s", short_number(obj));
        ch.draw_series(std::iter::once(
            EmptyElement::at((x.end, obj)) + Text::new(label, (-4, -3), style),
        ))?;
    }

    if pts.iter().all(|p| p.1.is_none()) {
        let style = TextStyle::from((FONT, 16).into_font())
            .color(&NO_DATA)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let mid = ((x.start + x.end) / 2.0, y_top / 2.0);
        ch.draw_series(std::iter::once(Text::new("no data", mid, style)))?;
    }

    root.present()?;
    Ok(())
}

/// The chart that says it could not be drawn (same size, so the layout holds).
fn failed_svg(title: &str, why: &str) -> String {
    format!(
        concat!(
            r##"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">"##,
            r##"<rect x="0.5" y="0.5" width="{w1}" height="{h1}" fill="white" stroke="#999"/>"##,
            r##"<text x="{cx}" y="{ty}" text-anchor="middle" font-family="sans-serif" font-size="13">{title}</text>"##,
            r##"<text x="{cx}" y="{cy}" text-anchor="middle" font-family="sans-serif" font-size="13" fill="#a00">the chart could not be drawn: {why}</text>"##,
            "</svg>\n"
        ),
        w = WIDTH,
        h = HEIGHT,
        w1 = WIDTH - 1,
        h1 = HEIGHT - 1,
        cx = WIDTH / 2,
        ty = HEIGHT / 2 - 14,
        cy = HEIGHT / 2 + 10,
        title = escape(title),
        why = escape(why),
    )
}

/// The x range: the window, or (if the window is unusable) the points' own
/// span; never empty, since plotters cannot map an empty range.
fn time_range(w: &Window, points: &[Pt]) -> Range<f64> {
    if w.from.is_finite() && w.to.is_finite() && w.to > w.from {
        return w.from..w.to;
    }
    let times = points.iter().map(|p| p.0).filter(|t| t.is_finite());
    let (lo, hi) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if lo.is_finite() && hi > lo {
        lo..hi
    } else if lo.is_finite() {
        lo - 60.0..lo + 60.0
    } else {
        0.0..60.0
    }
}

/// Points inside the range, oldest first; unusable values become "no data"
/// (a negative or NaN RPO is a measuring fault, not a figure to draw).
fn clean_points(points: &[Pt], x: &Range<f64>) -> Vec<Pt> {
    let mut pts: Vec<Pt> = points
        .iter()
        .filter(|(t, _)| t.is_finite() && *t >= x.start && *t <= x.end)
        .map(|&(t, v)| (t, v.filter(|v| v.is_finite() && *v >= 0.0)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn y_top(peak: f64, objective: Option<f64>) -> f64 {
    let top = peak.max(objective.unwrap_or(0.0)) * HEADROOM;
    if top.is_finite() && top > 0.0 {
        top
    } else {
        1.0
    }
}

/// The x axis: Unix seconds, linear, with ticks on round UTC times that
/// are labelled as times (plotters' own f64 axis would put ticks on round
/// *numbers* of seconds and print them as such).
struct TimeAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
    fmt: TickFmt,
}

impl Ranged for TimeAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let frac = (v - self.range.start) / (self.range.end - self.range.start);
        // `as` saturates: a stray value lands on the edge, it cannot panic.
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Bold grid lines at the ticks; no light lines in between.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for TimeAxis {
    fn format_ext(&self, t: &f64) -> String {
        tick_label(*t, self.fmt)
    }
}

/// How tick labels read: time of day for short windows, date beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickFmt {
    HourMinute,
    MonthDay,
}

const MAX_TICKS: f64 = 8.0;
const TWO_DAYS: f64 = 2.0 * 86_400.0;

/// Tick positions on round UTC times (whole minutes, hours or days), at
/// most about eight, so labels never overlap at this width.
fn time_ticks(x: &Range<f64>) -> (Vec<f64>, TickFmt) {
    const MIN: f64 = 60.0;
    const HOUR: f64 = 3_600.0;
    const DAY: f64 = 86_400.0;
    let span = x.end - x.start;
    let (steps, fmt): (&[f64], _) = if span <= TWO_DAYS {
        (
            &[
                MIN,
                2.0 * MIN,
                5.0 * MIN,
                10.0 * MIN,
                15.0 * MIN,
                30.0 * MIN,
                HOUR,
                2.0 * HOUR,
                3.0 * HOUR,
                6.0 * HOUR,
                12.0 * HOUR,
                DAY,
            ],
            TickFmt::HourMinute,
        )
    } else {
        (
            &[
                DAY,
                2.0 * DAY,
                7.0 * DAY,
                14.0 * DAY,
                30.0 * DAY,
                60.0 * DAY,
                90.0 * DAY,
                180.0 * DAY,
                365.0 * DAY,
            ],
            TickFmt::MonthDay,
        )
    };
    let step = steps
        .iter()
        .copied()
        .find(|s| span / s <= MAX_TICKS)
        .unwrap_or_else(|| (span / MAX_TICKS / DAY).ceil() * DAY);
    // Weeks start on Monday (the epoch was a Thursday; 1970-01-05 a Monday).
    let origin = if step % (7.0 * DAY) == 0.0 {
        4.0 * DAY
    } else {
        0.0
    };
    let mut ticks = Vec::new();
    let mut t = ((x.start - origin) / step).ceil() * step + origin;
    while t <= x.end && ticks.len() < 64 {
        ticks.push(t);
        t += step;
    }
    (ticks, fmt)
}

fn tick_label(t: f64, fmt: TickFmt) -> String {
    // RFC 3339: "YYYY-MM-DDTHH:MM:SSZ".
    let s = fmt_time(t);
    let part = match fmt {
        TickFmt::HourMinute => s.get(11..16),
        TickFmt::MonthDay => s.get(5..10),
    };
    part.unwrap_or_default().to_string()
}

/// Axis numbers with as many decimals as the scale needs.
fn axis_number(v: f64, top: f64) -> String {
    if top >= 20.0 {
        format!("{v:.0}")
    } else if top >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "30", "0.5", "2.25": an objective as configured, without trailing zeros.
fn short_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Stretches without data, as time ranges. A `None` at `t` means nothing
/// was measured in the step ending at `t`. Stretches closer than a pixel
/// are merged: the SVG stays small and the picture is the same.
fn no_data_bands(pts: &[Pt], step: f64, x: &Range<f64>, px_seconds: f64) -> Vec<Range<f64>> {
    let step = if step.is_finite() && step > 0.0 {
        step
    } else {
        0.0
    };
    let mut bands: Vec<Range<f64>> = Vec::new();
    for &(t, v) in pts {
        if v.is_some() {
            continue;
        }
        let start = (t - step).max(x.start);
        // At least a pixel wide, or a one-step gap would not show.
        let end = t.max(start + px_seconds).min(x.end);
        match bands.last_mut() {
            Some(last) if start <= last.end + px_seconds => last.end = last.end.max(end),
            _ => bands.push(start..end),
        }
    }
    bands
}

/// A stretch of consecutive data points within one pixel column: its lowest
/// and highest point.
#[derive(Debug, Clone, Copy)]
struct Run {
    lo: (f64, f64),
    hi: (f64, f64),
}

impl Run {
    fn new(t: f64, v: f64) -> Self {
        Run {
            lo: (t, v),
            hi: (t, v),
        }
    }

    fn add(&mut self, t: f64, v: f64) {
        if v < self.lo.1 {
            self.lo = (t, v);
        }
        if v > self.hi.1 {
            self.hi = (t, v);
        }
    }

    fn merge(&mut self, o: &Run) {
        self.add(o.lo.0, o.lo.1);
        self.add(o.hi.0, o.hi.1);
    }

    /// The one or two points, in time order, so the line keeps its shape.
    fn push_points(&self, out: &mut Vec<Pt>) {
        let (a, b) = if self.lo.0 <= self.hi.0 {
            (self.lo, self.hi)
        } else {
            (self.hi, self.lo)
        };
        out.push((a.0, Some(a.1)));
        if b != a {
            out.push((b.0, Some(b.1)));
        }
    }
}

/// What one pixel column holds, in time order.
#[derive(Debug, Clone, Copy)]
enum Tok {
    Data(Run),
    /// No data from this time on (until the next data).
    Gap(f64),
}

/// At most a few points per pixel column: the lowest and highest of each
/// run of data, and the breaks between runs (so gaps stay gaps). Short
/// series are returned as they are.
fn downsample(pts: &[Pt], x: &Range<f64>, cols: usize) -> Vec<Pt> {
    if pts.len() <= 2 * cols {
        return pts.to_vec();
    }
    let span = x.end - x.start;
    let col_of =
        |t: f64| (((t - x.start) / span * cols as f64).floor().max(0.0) as usize).min(cols - 1);
    let mut out = Vec::with_capacity(4 * cols);
    let mut column: Vec<Tok> = Vec::new();
    let mut current = usize::MAX;
    for &(t, v) in pts {
        let c = col_of(t);
        if c != current {
            flush_column(&mut column, &mut out);
            current = c;
        }
        push_token(&mut column, t, v);
    }
    flush_column(&mut column, &mut out);
    out
}

fn push_token(column: &mut Vec<Tok>, t: f64, v: Option<f64>) {
    match (column.last_mut(), v) {
        (Some(Tok::Data(run)), Some(v)) => run.add(t, v),
        (_, Some(v)) => column.push(Tok::Data(Run::new(t, v))),
        (Some(Tok::Gap(_)), None) => {}
        (_, None) => column.push(Tok::Gap(t)),
    }
}

/// Emit a column's points. A column that flickers between data and no data
/// keeps its first and last runs and folds the ones between into one, so
/// no column costs more than about eight points.
fn flush_column(column: &mut Vec<Tok>, out: &mut Vec<Pt>) {
    let data: Vec<usize> = column
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t, Tok::Data(_)))
        .map(|(i, _)| i)
        .collect();
    if data.len() > 3 {
        let (first, last) = (data[0], data[data.len() - 1]);
        let mut middle: Option<Run> = None;
        for tok in &column[first + 1..last] {
            if let Tok::Data(r) = tok {
                match middle.as_mut() {
                    Some(m) => m.merge(r),
                    None => middle = Some(*r),
                }
            }
        }
        let mut folded: Vec<Tok> = column[..=first].to_vec();
        folded.push(column[first + 1]);
        if let Some(m) = middle {
            folded.push(Tok::Data(m));
        }
        folded.push(column[last - 1]);
        folded.extend_from_slice(&column[last..]);
        *column = folded;
    }
    for tok in column.iter() {
        match tok {
            Tok::Data(run) => run.push_points(out),
            Tok::Gap(t) => out.push((*t, None)),
        }
    }
    column.clear();
}

/// The drawable line: connected stretches of two or more points, and the
/// isolated points that have no neighbour to connect to.
fn segments(pts: &[Pt]) -> (Vec<Line>, Vec<Xy>) {
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    let mut cur: Line = Vec::new();
    let mut finish = |cur: &mut Line| match cur.len() {
        0 => {}
        1 => dots.push(cur[0]),
        _ => lines.push(std::mem::take(cur)),
    };
    for &(t, v) in pts {
        match v {
            Some(v) => cur.push((t, v)),
            None => {
                finish(&mut cur);
                cur.clear();
            }
        }
    }
    finish(&mut cur);
    (lines, dots)
}

/// The areas between the objective and the line where the line is above
/// it: one polygon per stretch above, closed on the objective at the
/// (interpolated) crossings, or straight down where data starts or stops.
fn breach_polygons(pts: &[Pt], obj: f64) -> Vec<Line> {
    let mut polys = Vec::new();
    let mut cur: Line = Vec::new();
    let mut prev: Option<Xy> = None;
    let close = |cur: &mut Line, polys: &mut Vec<Line>, at: f64| {
        if !cur.is_empty() {
            cur.push((at, obj));
            polys.push(std::mem::take(cur));
        }
    };
    for &(t, v) in pts {
        let Some(v) = v else {
            if let Some((pt, _)) = prev {
                close(&mut cur, &mut polys, pt);
            }
            prev = None;
            continue;
        };
        let above = v > obj;
        match prev {
            Some((pt, pv)) if (pv > obj) != above => {
                // The line crosses the objective between the two points.
                let tc = pt + (t - pt) * (obj - pv) / (v - pv);
                if above {
                    cur.push((tc, obj));
                } else {
                    close(&mut cur, &mut polys, tc);
                }
            }
            None if above => cur.push((t, obj)),
            _ => {}
        }
        if above {
            cur.push((t, v));
        }
        prev = Some((t, v));
    }
    if let Some((pt, _)) = prev {
        close(&mut cur, &mut polys, pt);
    }
    polys
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_714_521_600.0; // 2024-05-01T00:00:00Z

    fn chart(points: Vec<Pt>) -> Chart {
        Chart {
            step_seconds: 60.0,
            objective_seconds: 30.0,
            points,
        }
    }

    fn window(seconds: f64) -> Window {
        Window {
            from: T0,
            to: T0 + seconds,
        }
    }

    fn assert_svg(s: &str) {
        assert!(
            s.starts_with("<svg"),
            "starts with: {:?}",
            &s[..s.len().min(80)]
        );
        assert!(
            s.trim_end().ends_with("</svg>"),
            "ends with: {:?}",
            &s[s.len().saturating_sub(80)..]
        );
        assert!(!s.contains("<?xml"), "no prolog when inlined");
        assert!(!s.contains("<image"), "vector only");
        assert!(!s.contains("could not be drawn"), "{s}");
    }

    #[test]
    fn draws_a_line_the_objective_and_the_breach() {
        let pts = (0..120)
            .map(|i| {
                let v = if (40..50).contains(&i) {
                    90.0
                } else {
                    5.0 + (i % 7) as f64
                };
                (T0 + 60.0 * (i + 1) as f64, Some(v))
            })
            .collect();
        let s = rpo_svg(&chart(pts), &window(7_200.0), "db <main> & co");
        assert_svg(&s);
        assert!(s.contains("<polyline"), "RPO line as a polyline");
        assert!(s.contains("<polygon"), "breach shaded");
        assert!(s.contains("objective 30 s"));
        assert!(s.contains("db &lt;main&gt; &amp; co"), "title escaped");
        assert!(s.contains(">\n00:"), "HH:MM ticks for a short window");
        assert!(!s.contains("no data"));
    }

    #[test]
    fn no_points_draw_an_empty_frame_that_says_so() {
        let s = rpo_svg(&chart(vec![]), &window(3_600.0), "empty");
        assert_svg(&s);
        assert!(s.contains("no data"));
        assert!(s.contains("objective 30 s"));
    }

    #[test]
    fn all_missing_is_no_data_and_shaded() {
        let pts = (1..=60).map(|i| (T0 + 60.0 * i as f64, None)).collect();
        let s = rpo_svg(&chart(pts), &window(3_600.0), "down");
        assert_svg(&s);
        assert!(s.contains("no data"));
        assert!(s.contains("<rect"), "grey band");
    }

    #[test]
    fn one_point_is_a_dot() {
        let s = rpo_svg(&chart(vec![(T0 + 60.0, Some(12.0))]), &window(60.0), "one");
        assert_svg(&s);
        assert!(s.contains("<circle"));
    }

    #[test]
    fn gaps_break_the_line() {
        let pts = (1..=30)
            .map(|i| {
                (
                    T0 + 60.0 * i as f64,
                    if (10..15).contains(&i) {
                        None
                    } else {
                        Some(3.0)
                    },
                )
            })
            .collect();
        let s = rpo_svg(&chart(pts), &window(1_800.0), "gap");
        assert_svg(&s);
        assert_eq!(rpo_lines(&s), 2, "two stretches of data");
    }

    /// Polylines in the RPO line's colour (the objective's dashes are polylines too).
    fn rpo_lines(s: &str) -> usize {
        s.split("<polyline")
            .skip(1)
            .filter(|p| p.split("/>").next().is_some_and(|a| a.contains("#1F4E8C")))
            .count()
    }

    #[test]
    fn fifty_thousand_points_stay_small() {
        let pts: Vec<Pt> = (0..50_000)
            .map(|i| {
                let t = T0 + 60.0 * (i + 1) as f64;
                let v = match i % 1_000 {
                    0..=9 => None,
                    500..=520 => Some(45.0 + (i % 13) as f64),
                    _ => Some(2.0 + ((i * 7919) % 97) as f64 / 10.0),
                };
                (t, v)
            })
            .collect();
        let w = window(50_000.0 * 60.0);
        let s = rpo_svg(&chart(pts), &w, "big");
        assert_svg(&s);
        assert!(s.len() < 300_000, "{} bytes", s.len());
        assert!(s.contains("<polyline") && s.contains("<polygon") && s.contains("<rect"));
        eprintln!("50 000 points: {} bytes", s.len());
    }

    #[test]
    fn long_windows_label_dates() {
        let (ticks, fmt) = time_ticks(&(T0..T0 + 30.0 * 86_400.0));
        assert_eq!(fmt, TickFmt::MonthDay);
        assert!(ticks.len() <= 8 && !ticks.is_empty());
        assert_eq!(
            tick_label(ticks[0], fmt),
            "05-06",
            "weekly ticks on Mondays"
        );
        assert_eq!(ticks[1] - ticks[0], 7.0 * 86_400.0);
        let (ticks, _) = time_ticks(&(T0..T0 + 5.0 * 86_400.0));
        assert_eq!(tick_label(ticks[0], fmt), "05-01");
        let (ticks, fmt) = time_ticks(&(T0 + 30.0..T0 + 6.0 * 3_600.0));
        assert_eq!(fmt, TickFmt::HourMinute);
        assert_eq!(tick_label(ticks[0], fmt), "01:00");
    }

    #[test]
    fn odd_input_does_not_panic() {
        let pts = vec![
            (f64::NAN, Some(1.0)),
            (T0 + 10.0, Some(f64::INFINITY)),
            (T0 + 20.0, Some(-3.0)),
        ];
        let c = Chart {
            step_seconds: f64::NAN,
            objective_seconds: f64::NAN,
            points: pts,
        };
        let s = rpo_svg(&c, &Window { from: T0, to: T0 }, "odd");
        assert_svg(&s);
    }

    #[test]
    fn downsampling_keeps_peaks_and_gaps() {
        let mut pts: Vec<Pt> = (0..10_000).map(|i| (i as f64, Some(1.0))).collect();
        pts[5_000].1 = Some(99.0);
        pts[7_000].1 = None;
        let d = downsample(&pts, &(0.0..10_000.0), 100);
        assert!(d.len() < 400);
        assert!(d.contains(&(5_000.0, Some(99.0))));
        assert!(d.iter().any(|p| p.1.is_none()));
    }

    #[test]
    fn breach_polygon_closes_on_the_objective() {
        let pts = [(0.0, Some(0.0)), (10.0, Some(20.0)), (20.0, Some(0.0))];
        let p = breach_polygons(&pts, 10.0);
        assert_eq!(p, vec![vec![(5.0, 10.0), (10.0, 20.0), (15.0, 10.0)]]);
    }
}
