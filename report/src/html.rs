//! The report as one self-contained HTML file, for DR audits: it is mailed,
//! archived and printed, often far from the network it describes, so it
//! requests nothing (no script, no stylesheet, font or image from anywhere;
//! charts are inline SVG) and prints on A4 in black and white without
//! losing meaning (verdicts are words, colour only repeats them).
//!
//! The formatting helpers (`fmt_time`, `fmt_duration`, `fmt_pct`, ...) are
//! shared with `markdown`, so both formats show the same figures the same way.

use std::fmt::Write;

use super::chart;
use super::model::*;

/// Text for HTML (element content and quoted attribute values): every
/// string from the model goes through here, since target names, regions
/// and notes are whatever the configuration or Prometheus said.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Last second humantime can write (9999-12-31T23:59:59Z); beyond it, and
/// before 1970, its formatter fails.
const MAX_TIME: f64 = 253_402_300_799.0;

/// A Unix-seconds time as RFC 3339 UTC to the second
/// ("2024-05-01T12:00:00Z"); "—" for a time that cannot be one.
pub fn fmt_time(t: f64) -> String {
    if !(t.is_finite() && (0.0..=MAX_TIME).contains(&t)) {
        return "—".into();
    }
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.floor() as u64);
    humantime::format_rfc3339_seconds(st).to_string()
}

/// A duration for people, two units at most: "850 ms", "12.3 s", "30 s",
/// "4 min 10 s", "2 h 5 min", "3 d 4 h", "30 d". Rounded to the smaller
/// unit shown; "—" when not a number.
pub fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "—".into();
    }
    if seconds < 0.0 {
        return format!("−{}", fmt_duration(-seconds));
    }
    if seconds == 0.0 {
        return "0 s".into();
    }
    let ms = (seconds * 1000.0).round();
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let tenths = (seconds * 10.0).round() / 10.0;
    if tenths < 60.0 {
        // Whole seconds read as such ("30 s", not "30.0 s").
        return if tenths.fract() == 0.0 {
            format!("{tenths:.0} s")
        } else {
            format!("{tenths:.1} s")
        };
    }
    let secs = seconds.round() as u64;
    if secs < 3_600 {
        return two_units(secs / 60, "min", secs % 60, "s");
    }
    let mins = (seconds / 60.0).round() as u64;
    if mins < 24 * 60 {
        return two_units(mins / 60, "h", mins % 60, "min");
    }
    let hours = (seconds / 3_600.0).round() as u64;
    two_units(hours / 24, "d", hours % 24, "h")
}

fn two_units(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

/// `fmt_duration` of a figure that may be missing ("—").
pub fn fmt_opt_duration(seconds: Option<f64>) -> String {
    seconds.map(fmt_duration).unwrap_or_else(|| "—".into())
}

/// A signed difference in seconds: "+850 ms", "−3.1 s", "0 s".
pub fn fmt_signed_duration(seconds: f64) -> String {
    if seconds > 0.0 {
        format!("+{}", fmt_duration(seconds))
    } else {
        fmt_duration(seconds)
    }
}

/// A ratio as a percentage with 3 decimals ("99.987%"), "—" when `None`.
/// Rounded *down*: an audit must never read 100.000% for a window that
/// had a breach (0.9999996 shows as 99.999%).
pub fn fmt_pct(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r.is_finite() => {
            // The tiny nudge keeps exact values (0.5, 0.999) from losing a
            // digit to binary rounding before the floor.
            let thousandths = if r >= 1.0 {
                r * 100_000.0
            } else {
                (r * 100_000.0 + 1e-6).floor()
            };
            format!("{:.3}%", thousandths / 1_000.0)
        }
        _ => "—".into(),
    }
}

/// A count from Prometheus's `increase()`, which extrapolates and so can be
/// fractional: whole numbers as such, others to one decimal.
pub fn fmt_count(n: f64) -> String {
    if !n.is_finite() {
        "—".into()
    } else if (n - n.round()).abs() < 0.05 {
        format!("{:.0}", n.round())
    } else {
        format!("{n:.1}")
    }
}

/// A table cell of text (escaped here).
fn td(text: &str) -> String {
    format!("<td>{}</td>", escape(text))
}

/// A right-aligned figure (escaped here).
fn td_num(text: &str) -> String {
    format!("<td class=\"num\">{}</td>", escape(text))
}

/// A time; kept on one line (a wrapped RFC 3339 time is hard to read).
fn td_time(t: f64) -> String {
    format!("<td class=\"time\">{}</td>", escape(&fmt_time(t)))
}

fn td_verdict(v: Verdict) -> String {
    let class = match v {
        Verdict::Met => "v-met",
        Verdict::Breached => "v-breached",
        Verdict::NoData => "v-nodata",
    };
    format!("<td class=\"verdict {class}\">{}</td>", escape(v.as_str()))
}

/// A whole table; `rows` hold cells made by `td*`. Heads are escaped here.
fn table(out: &mut String, class: &str, heads: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table class=\"{class}\">\n<thead><tr>");
    for h in heads {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        let _ = writeln!(out, "<tr>{}</tr>", r.concat());
    }
    out.push_str("</tbody>\n</table>\n");
}

fn pair_name(source: &str, replica: &str) -> String {
    format!("{source} → {replica}")
}

fn attainment_line(a: &Attainment, slice_seconds: f64) -> String {
    format!(
        "{} met, {} breached, {} without data, of {} slices of {}",
        a.met,
        a.breached,
        a.no_data,
        a.slices,
        fmt_duration(slice_seconds)
    )
}

/// The whole report as one HTML5 document.
pub fn render(report: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    o.push_str("<title>RPO report</title>\n<style>\n");
    o.push_str(CSS);
    o.push_str("</style>\n</head>\n<body>\n");
    header(&mut o, report);
    summary(&mut o, report);
    for (i, t) in report.targets.iter().enumerate() {
        target(&mut o, t, i, report);
    }
    if let Some(d) = &report.drill {
        drill(&mut o, d);
    }
    o.push_str("</body>\n</html>\n");
    o
}

fn header(o: &mut String, r: &Report) {
    o.push_str("<header>\n<h1>RPO report</h1>\n<dl class=\"meta\">\n");
    let window = format!(
        "{} → {} ({})",
        fmt_time(r.window.from),
        fmt_time(r.window.to),
        fmt_duration(r.window.seconds())
    );
    let _ = writeln!(o, "<dt>Window (UTC)</dt><dd>{}</dd>", escape(&window));
    let _ = writeln!(
        o,
        "<dt>Generated</dt><dd>{}</dd>",
        escape(&fmt_time(r.generated_at))
    );
    // Text, not a link: the file must not point anywhere, and the reader
    // of a printed audit copy needs the address itself.
    let _ = writeln!(
        o,
        "<dt>Prometheus</dt><dd><code>{}</code></dd>",
        escape(&r.prometheus)
    );
    let _ = writeln!(
        o,
        "<dt>Computed with</dt><dd>{}</dd>",
        // The note starts with the path's name ("recording rules (…)",
        // "raw queries: …").
        escape(&r.path_note)
    );
    o.push_str("</dl>\n");
    let _ = writeln!(
        o,
        "<p class=\"note\">Attainment is the share of {} time slices with data in which RPO stayed within the objective \
         (judged on the highest RPO in the slice). Slices without data are counted apart, never as met.</p>",
        escape(&fmt_duration(r.slice_seconds))
    );
    o.push_str("</header>\n");
}

fn worst_episode(t: &TargetReport) -> String {
    t.worst_episode()
        .map(|e| {
            format!(
                "peak {} for {}",
                fmt_duration(e.peak_rpo_seconds),
                fmt_duration(e.duration_seconds)
            )
        })
        .unwrap_or_else(|| "none".into())
}

fn summary(o: &mut String, r: &Report) {
    o.push_str("<section class=\"summary\" id=\"summary\">\n<h2>Summary</h2>\n");
    let mut rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            vec![
                td(&t.target),
                td(&t.kind),
                td_num(&fmt_duration(t.objective_seconds)),
                td_num(&fmt_pct(t.attainment.ratio())),
                td_num(&fmt_pct(Some(t.attainment.coverage()))),
                td_num(&t.attainment.no_data.to_string()),
                td(&worst_episode(t)),
                td_verdict(t.verdict),
            ]
        })
        .collect();
    let f = &r.fleet;
    // Last row, set apart by the CSS (`table.summary tr:last-child`).
    rows.push(vec![
        "<td>All targets</td>".to_string(),
        "<td></td>".into(),
        "<td></td>".into(),
        td_num(&fmt_pct(f.ratio())),
        td_num(&fmt_pct(Some(f.coverage()))),
        td_num(&f.no_data.to_string()),
        "<td></td>".into(),
        td_verdict(f.verdict()),
    ]);
    table(
        o,
        "summary",
        &[
            "Target",
            "Kind",
            "Objective",
            "Attainment",
            "Coverage",
            "No-data slices",
            "Worst episode",
            "Verdict",
        ],
        &rows,
    );
    o.push_str("</section>\n");
}

fn target(o: &mut String, t: &TargetReport, index: usize, r: &Report) {
    let _ = writeln!(o, "<section class=\"target\" id=\"target-{index}\">");
    let _ = writeln!(
        o,
        "<h2>{} <span class=\"kind\">({})</span></h2>",
        escape(&t.target),
        escape(&t.kind)
    );
    let _ = writeln!(
        o,
        "<p>Objective <b>{}</b>. Attainment <b>{}</b>: {}. Verdict: <span class=\"verdict {}\">{}</span>.</p>",
        escape(&fmt_duration(t.objective_seconds)),
        escape(&fmt_pct(t.attainment.ratio())),
        escape(&attainment_line(&t.attainment, r.slice_seconds)),
        verdict_class(t.verdict),
        escape(t.verdict.as_str())
    );
    figure(o, t, &r.window);
    episodes(o, t);
    failovers(o, t);
    pairs(o, t);
    o.push_str("</section>\n");
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "v-met",
        Verdict::Breached => "v-breached",
        Verdict::NoData => "v-nodata",
    }
}

/// The chart, inlined. HTML5 puts `<svg>` in the SVG namespace by itself,
/// so the `xmlns` attribute goes: the file then holds no address other
/// than the Prometheus one it displays.
fn figure(o: &mut String, t: &TargetReport, w: &Window) {
    let svg = chart::rpo_svg(&t.chart, w, &t.target);
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    o.push_str("<figure>\n");
    o.push_str(&svg);
    let _ = writeln!(
        o,
        "<figcaption>RPO of {} over the window: the highest value per {} step. Dashed red: the objective ({}); \
         red area: above the objective; grey: no data.</figcaption>",
        escape(&t.target),
        escape(&fmt_duration(t.chart.step_seconds)),
        escape(&fmt_duration(t.chart.objective_seconds))
    );
    o.push_str("</figure>\n");
}

fn causes(e: &Episode) -> String {
    e.causes
        .iter()
        .map(|c| format!("{} ×{}", c.what, fmt_count(c.count)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn episodes(o: &mut String, t: &TargetReport) {
    o.push_str("<h3>Episodes above objective</h3>\n");
    if t.episodes.is_empty() {
        o.push_str("<p>None.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = t
        .episodes
        .iter()
        .map(|e| {
            let end = if e.open {
                format!(
                    "<td><span class=\"time\">{}</span> <b>open</b>: still above the objective</td>",
                    escape(&fmt_time(e.end))
                )
            } else {
                td_time(e.end)
            };
            vec![
                td_time(e.start),
                end,
                td_num(&fmt_duration(e.duration_seconds)),
                td_num(&fmt_duration(e.peak_rpo_seconds)),
                td(&pair_name(&e.source_region, &e.replica_region)),
                td(&causes(e)),
            ]
        })
        .collect();
    table(
        o,
        "episodes",
        &[
            "Start",
            "End",
            "Duration",
            "Peak RPO",
            "Replica",
            "What the metrics say",
        ],
        &rows,
    );
    if t.episodes_total > t.episodes.len() {
        let _ = writeln!(
            o,
            "<p class=\"note\">{} more episodes (of {}) are not listed.</p>",
            t.episodes_total - t.episodes.len(),
            t.episodes_total
        );
    }
}

fn failovers(o: &mut String, t: &TargetReport) {
    o.push_str("<h3>Failovers (direction changes)</h3>\n");
    if t.failovers.is_empty() {
        o.push_str("<p>None.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = t
        .failovers
        .iter()
        .map(|f| {
            let from = f.from_source.as_deref().unwrap_or("?");
            let to = f.to_source.as_deref().unwrap_or("?");
            vec![
                td_time(f.at),
                td(&pair_name(from, to)),
                td_num(&fmt_opt_duration(f.rpo_seconds)),
            ]
        })
        .collect();
    table(
        o,
        "failovers",
        &["Time", "Source before → after", "RPO at that moment"],
        &rows,
    );
}

/// AWS's figures beside ours, one line per CloudWatch metric.
fn aws_cell(p: &PairReport) -> String {
    if p.aws.is_empty() {
        return "<td>—</td>".into();
    }
    let lines: Vec<String> = p
        .aws
        .iter()
        .map(|a| {
            escape(&format!(
                "{}: mean {}, max {}",
                a.metric,
                fmt_signed_duration(a.mean_difference_seconds),
                fmt_signed_duration(a.max_difference_seconds)
            ))
        })
        .collect();
    format!("<td>{}</td>", lines.join("<br>"))
}

fn pairs(o: &mut String, t: &TargetReport) {
    o.push_str("<h3>Per pair</h3>\n");
    if t.pairs.is_empty() {
        o.push_str("<p>No pair had data in the window.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = t
        .pairs
        .iter()
        .map(|p| {
            let c = &p.canaries;
            vec![
                td(&pair_name(&p.source_region, &p.replica_region)),
                td_num(&fmt_pct(p.attainment.ratio())),
                td_num(&fmt_opt_duration(p.lag_p50_seconds)),
                td_num(&fmt_opt_duration(p.lag_p99_seconds)),
                // The histogram only bounds the maximum from above.
                td_num(
                    &p.lag_max_seconds
                        .map(|m| format!("≤ {}", fmt_duration(m)))
                        .unwrap_or_else(|| "—".into()),
                ),
                td_num(&format!(
                    "{} / {} / {} / {}",
                    fmt_count(c.written),
                    fmt_count(c.observed),
                    fmt_count(c.lost),
                    fmt_count(c.failed)
                )),
                td_num(
                    &p.reads_per_canary
                        .map(|r| format!("{r:.2}"))
                        .unwrap_or_else(|| "—".into()),
                ),
                td_num(&fmt_duration(p.probe_down_seconds)),
                aws_cell(p),
            ]
        })
        .collect();
    table(
        o,
        "pairs",
        &[
            "Pair",
            "Attainment",
            "Lag p50",
            "Lag p99",
            "Lag max",
            "Canaries written / observed / lost / failed",
            "Reads per canary",
            "Probe down",
            "AWS's figure minus ours",
        ],
        &rows,
    );
}

fn drill(o: &mut String, d: &Drill) {
    o.push_str(
        "<section class=\"drill\" id=\"drill\">\n<h2>Drill record</h2>\n<h3>Timeline</h3>\n",
    );
    if d.timeline.is_empty() {
        o.push_str("<p>Nothing happened in the window: no episode, no direction change.</p>\n");
    } else {
        let rows: Vec<Vec<String>> = d
            .timeline
            .iter()
            .map(|e| vec![td_time(e.at), td(&e.target), td(&e.what)])
            .collect();
        table(o, "timeline", &["Time", "Target", "Event"], &rows);
    }
    o.push_str("<h3>Switches</h3>\n");
    if d.switches.is_empty() {
        o.push_str("<p>No target changed direction in the window.</p>\n");
    } else {
        let rows: Vec<Vec<String>> = d
            .switches
            .iter()
            .map(|s| {
                vec![
                    td(&s.target),
                    td_time(s.switched_at),
                    td_num(&fmt_opt_duration(s.rpo_at_switch_seconds)),
                    td_num(&fmt_opt_duration(s.time_to_detect_seconds)),
                    s.first_canary_new_direction_at
                        .map(td_time)
                        .unwrap_or_else(|| td("—")),
                    td_num(&fmt_opt_duration(s.time_back_within_objective_seconds)),
                    td_num(&fmt_count(s.canaries_lost)),
                ]
            })
            .collect();
        table(
            o,
            "switches",
            &[
                "Target",
                "Switched at",
                "RPO at the switch",
                "Time to detect",
                "First canary of the new direction",
                "Back within objective after",
                "Canaries lost",
            ],
            &rows,
        );
    }
    o.push_str("</section>\n");
}

/// Dark on white, A4, no external anything. Fonts are the reader's own
/// (generic families only); colour is a second cue, never the only one.
const CSS: &str = r#"@page { size: A4; margin: 14mm; }
html { background: #fff; color: #111; }
body { font: 10.5pt/1.4 Helvetica, Arial, sans-serif; max-width: 190mm; margin: 0 auto; padding: 8px; }
h1 { font-size: 18pt; margin: 0 0 4pt; }
h2 { font-size: 13pt; margin: 16pt 0 4pt; padding-bottom: 2pt; border-bottom: 1px solid #888; }
h3 { font-size: 10.5pt; margin: 10pt 0 3pt; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
h2 .kind { font-weight: normal; color: #444; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 1pt 10pt; margin: 4pt 0; }
dl.meta dt { font-weight: bold; }
dl.meta dd { margin: 0; }
code { font-family: Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.95em; word-break: break-all; }
p { margin: 3pt 0 6pt; }
p.note { font-size: 9pt; color: #333; }
table { border-collapse: collapse; width: 100%; margin: 3pt 0 8pt; font-size: 9pt; break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
th, td { border: 1px solid #bbb; padding: 2pt 4pt; text-align: left; vertical-align: top; }
th { background: #eee; font-weight: bold; }
td.time, span.time { white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.summary tr:last-child td { border-top: 2px solid #555; font-weight: bold; }
.verdict { font-weight: bold; padding: 0 3pt; }
.v-met { background: #e2f3e2; color: #0f4d0f; }
.v-breached { background: #fadcdc; color: #8a0f0f; text-transform: uppercase; }
.v-nodata { background: #ececec; color: #444; font-style: italic; }
figure { margin: 6pt 0 8pt; break-inside: avoid; page-break-inside: avoid; }
figure svg { display: block; width: 100%; height: auto; max-width: 760px; }
figcaption { font-size: 8.5pt; color: #444; margin-top: 2pt; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section.target, section.drill { break-before: auto; }
  h2 { margin-top: 12pt; }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_714_521_600.0; // 2024-05-01T00:00:00Z
    const PROM: &str = "https://prom.example.net:9090/prometheus";
    const ODD: &str = "a<b&\"c";

    fn att(met: u64, breached: u64, no_data: u64) -> Attainment {
        Attainment {
            slices: met + breached + no_data,
            met,
            breached,
            no_data,
        }
    }

    fn pair(a: Attainment) -> PairReport {
        PairReport {
            source_region: "eu-west-1".into(),
            replica_region: "eu-central-1".into(),
            attainment: a,
            lag_p50_seconds: Some(0.85),
            lag_p99_seconds: Some(4.2),
            lag_max_seconds: Some(10.0),
            canaries: Canaries {
                written: 1440.0,
                observed: 1438.0,
                lost: 2.0,
                failed: 0.0,
            },
            reads_per_canary: Some(1.25),
            probe_down_seconds: 0.0,
            aws: vec![AwsBeside {
                metric: "ReplicationLatency".into(),
                mean_difference_seconds: 0.4,
                max_difference_seconds: -2.5,
            }],
        }
    }

    fn report() -> Report {
        let points: Vec<(f64, Option<f64>)> = (1..=60)
            .map(|i| {
                let v = match i {
                    20..=24 => Some(95.0),
                    40..=42 => None,
                    _ => Some(3.0),
                };
                (T0 + 60.0 * i as f64, v)
            })
            .collect();
        let main = TargetReport {
            target: "orders-db".into(),
            kind: "postgres".into(),
            objective_seconds: 30.0,
            attainment: att(52, 5, 3),
            verdict: Verdict::Breached,
            episodes: vec![Episode {
                source_region: "eu-west-1".into(),
                replica_region: "eu-central-1".into(),
                start: T0 + 1_140.0,
                end: T0 + 1_440.0,
                duration_seconds: 300.0,
                peak_rpo_seconds: 95.0,
                open: false,
                causes: vec![Cause {
                    what: "probe errors: read ThrottlingException".into(),
                    count: 12.0,
                }],
            }],
            episodes_total: 3,
            failovers: vec![Failover {
                at: T0 + 1_500.0,
                from_source: Some("eu-west-1".into()),
                to_source: Some("eu-central-1".into()),
                rpo_seconds: Some(12.5),
            }],
            pairs: vec![pair(att(52, 5, 3))],
            chart: Chart {
                step_seconds: 60.0,
                objective_seconds: 30.0,
                points,
            },
        };
        let odd = TargetReport {
            target: ODD.into(),
            kind: "s3".into(),
            objective_seconds: 900.0,
            attainment: att(0, 0, 60),
            verdict: Verdict::NoData,
            episodes: vec![],
            episodes_total: 0,
            failovers: vec![],
            pairs: vec![],
            chart: Chart {
                step_seconds: 60.0,
                objective_seconds: 900.0,
                points: vec![],
            },
        };
        let mut fleet = main.attainment;
        fleet.add(&odd.attainment);
        Report {
            generated_at: T0 + 3_700.0,
            prometheus: PROM.into(),
            window: Window {
                from: T0,
                to: T0 + 3_600.0,
            },
            slice_seconds: 60.0,
            path: QueryPath::RecordingRules,
            path_note: "rpo:*:1m recording rules cover the window".into(),
            fleet,
            targets: vec![main, odd],
            drill: Some(Drill {
                timeline: vec![DrillEvent {
                    at: T0 + 1_140.0,
                    target: ODD.into(),
                    what: "RPO above objective".into(),
                }],
                switches: vec![DrillSwitch {
                    target: "orders-db".into(),
                    switched_at: T0 + 1_500.0,
                    rpo_at_switch_seconds: Some(12.5),
                    time_to_detect_seconds: Some(45.0),
                    first_canary_new_direction_at: Some(T0 + 1_520.0),
                    time_back_within_objective_seconds: None,
                    canaries_lost: 2.0,
                }],
            }),
        }
    }

    #[test]
    fn requests_nothing() {
        let html = render(&report());
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script", "@import", "url(", "src=", "href=", "<link", "<img", "<iframe", "<object",
        ] {
            assert!(!lower.contains(bad), "contains {bad}");
        }
        // The one address allowed is the displayed Prometheus URL (as text).
        assert!(html.contains(&format!("<code>{}</code>", escape(PROM))));
        let without = html.replace(&escape(PROM), "");
        assert!(!without.contains("http://") && !without.contains("https://"));
    }

    #[test]
    fn is_one_html5_document_for_a4() {
        let html = render(&report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains("@page { size: A4; margin: 14mm; }"));
        assert!(html.contains("@media print"));
        assert_eq!(html.matches("<figure>").count(), 2);
        assert_eq!(html.matches("<svg").count(), 2);
    }

    #[test]
    fn escapes_model_strings() {
        let html = render(&report());
        assert!(html.contains("a&lt;b&amp;&quot;c"));
        assert!(!html.contains(ODD));
    }

    #[test]
    fn content_is_in_order() {
        let html = render(&report());
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("missing {s}"));
        assert!(at("<h1>RPO report</h1>") < at("Summary"));
        assert!(at("id=\"summary\"") < at("id=\"target-0\""));
        assert!(at("id=\"target-0\"") < at("id=\"target-1\""));
        assert!(at("id=\"target-1\"") < at("Drill record"));
        assert!(html.contains("2024-05-01T00:00:00Z → 2024-05-01T01:00:00Z (1 h)"));
        assert!(html.contains("rpo:*:1m recording rules cover the window"));
    }

    #[test]
    fn shows_the_figures() {
        let html = render(&report());
        // Summary: attainment 52/57, verdict in words.
        assert!(html.contains(&fmt_pct(Some(52.0 / 57.0))));
        assert!(html.contains("peak 1 min 35 s for 5 min"));
        assert!(html.contains("<td class=\"verdict v-breached\">breached</td>"));
        assert!(html.contains("<td class=\"verdict v-nodata\">no data</td>"));
        assert!(html.contains("All targets"));
        // Target sections.
        assert!(html.contains("52 met, 5 breached, 3 without data, of 60 slices of 1 min"));
        assert!(html.contains("probe errors: read ThrottlingException ×12"));
        assert!(html.contains("2 more episodes (of 3) are not listed."));
        assert!(html.contains("eu-west-1 → eu-central-1"));
        assert!(html.contains("12.5 s"));
        assert!(html.contains("1440 / 1438 / 2 / 0"));
        assert!(html.contains("ReplicationLatency: mean +400 ms, max −2.5 s"));
        // Drill.
        assert!(html.contains("<td>45 s</td>") || html.contains(">45 s</td>"));
        assert!(html.contains("2024-05-01T00:25:20Z"));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(fmt_duration(0.85), "850 ms");
        assert_eq!(fmt_duration(12.34), "12.3 s");
        assert_eq!(fmt_duration(30.0), "30 s");
        assert_eq!(fmt_duration(250.0), "4 min 10 s");
        assert_eq!(fmt_duration(360.0), "6 min");
        assert_eq!(fmt_duration(7_500.0), "2 h 5 min");
        assert_eq!(fmt_duration(3.0 * 86_400.0 + 4.0 * 3_600.0), "3 d 4 h");
        assert_eq!(fmt_duration(30.0 * 86_400.0), "30 d");
        assert_eq!(fmt_duration(0.0), "0 s");
        assert_eq!(fmt_duration(59.97), "1 min");
        assert_eq!(fmt_duration(0.9996), "1 s");
        assert_eq!(fmt_duration(3_599.6), "1 h");
        assert_eq!(fmt_duration(86_399.0), "1 d");
        assert_eq!(fmt_duration(-3.1), "−3.1 s");
        assert_eq!(fmt_duration(f64::NAN), "—");
    }

    #[test]
    fn percentages_never_round_up_to_perfect() {
        assert_eq!(fmt_pct(Some(1.0)), "100.000%");
        assert_eq!(fmt_pct(Some(0.5)), "50.000%");
        assert_eq!(fmt_pct(Some(0.999)), "99.900%");
        assert_eq!(fmt_pct(Some(0.9999996)), "99.999%");
        assert_eq!(fmt_pct(Some(0.0)), "0.000%");
        assert_eq!(fmt_pct(None), "—");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(fmt_time(T0), "2024-05-01T00:00:00Z");
        assert_eq!(fmt_time(T0 + 0.9), "2024-05-01T00:00:00Z");
        assert_eq!(fmt_time(-1.0), "—");
        assert_eq!(fmt_time(f64::INFINITY), "—");
        assert_eq!(fmt_time(1e15), "—");
    }
}
