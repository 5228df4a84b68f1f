//! The report as Markdown (CommonMark + GFM tables): for tickets and audit
//! evidence. Tables only, no charts; every figure of the HTML report is
//! here too. Formatting helpers are shared with `html`.

use std::fmt::Write;

use super::html::{fmt_duration, fmt_pct, fmt_time};
use super::model::*;

/// A table cell: pipes and line breaks would end the cell.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn secs(v: Option<f64>) -> String {
    v.map(fmt_duration).unwrap_or_else(|| "—".into())
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, names: &[&str]) {
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        names.iter().map(|_| " --- |").collect::<String>()
    );
}

fn attainment_line(a: &Attainment, slice: f64) -> String {
    format!(
        "{} met, {} breached, {} without data, of {} slices of {}",
        a.met,
        a.breached,
        a.no_data,
        a.slices,
        fmt_duration(slice)
    )
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# RPO report\n");
    let _ = writeln!(
        o,
        "- Window: {} → {} ({})",
        fmt_time(r.window.from),
        fmt_time(r.window.to),
        fmt_duration(r.window.seconds())
    );
    let _ = writeln!(o, "- Generated: {}", fmt_time(r.generated_at));
    let _ = writeln!(o, "- Prometheus: `{}`", r.prometheus.replace('`', "'"));
    let _ = writeln!(o, "- Computed with: {}", cell(&r.path_note));
    let _ = writeln!(
        o,
        "- Attainment: the share of {} time slices with data in which RPO stayed within the objective (judged on the highest RPO in the slice); slices without data are counted apart, never as met.\n",
        fmt_duration(r.slice_seconds)
    );

    let _ = writeln!(o, "## Summary\n");
    header(
        &mut o,
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
    );
    for t in &r.targets {
        let worst = t
            .worst_episode()
            .map(|e| {
                format!(
                    "peak {} for {}",
                    fmt_duration(e.peak_rpo_seconds),
                    fmt_duration(e.duration_seconds)
                )
            })
            .unwrap_or_else(|| "none".into());
        row(
            &mut o,
            &[
                cell(&t.target),
                cell(&t.kind),
                fmt_duration(t.objective_seconds),
                fmt_pct(t.attainment.ratio()),
                fmt_pct(Some(t.attainment.coverage())),
                t.attainment.no_data.to_string(),
                worst,
                format!("**{}**", t.verdict.as_str()),
            ],
        );
    }
    row(
        &mut o,
        &[
            "**all targets**".into(),
            String::new(),
            String::new(),
            fmt_pct(r.fleet.ratio()),
            fmt_pct(Some(r.fleet.coverage())),
            r.fleet.no_data.to_string(),
            String::new(),
            format!("**{}**", r.fleet.verdict().as_str()),
        ],
    );
    o.push('\n');

    for t in &r.targets {
        target(&mut o, t, r.slice_seconds);
    }
    if let Some(d) = &r.drill {
        drill(&mut o, d);
    }
    o
}

fn target(o: &mut String, t: &TargetReport, slice: f64) {
    let _ = writeln!(o, "## {} ({})\n", cell(&t.target), cell(&t.kind));
    let _ = writeln!(
        o,
        "Objective {}. Attainment {} ({}).\n",
        fmt_duration(t.objective_seconds),
        fmt_pct(t.attainment.ratio()),
        attainment_line(&t.attainment, slice)
    );
    let _ = writeln!(o, "### Episodes above objective\n");
    if t.episodes.is_empty() {
        let _ = writeln!(o, "None.\n");
    } else {
        header(
            o,
            &[
                "Start",
                "End",
                "Duration",
                "Peak RPO",
                "Pair",
                "What the metrics say",
            ],
        );
        for e in &t.episodes {
            let causes = e
                .causes
                .iter()
                .map(|c| format!("{} ×{}", c.what, c.count))
                .collect::<Vec<_>>()
                .join("; ");
            row(
                o,
                &[
                    fmt_time(e.start),
                    if e.open {
                        format!("{} (still above)", fmt_time(e.end))
                    } else {
                        fmt_time(e.end)
                    },
                    fmt_duration(e.duration_seconds),
                    fmt_duration(e.peak_rpo_seconds),
                    cell(&format!("{} → {}", e.source_region, e.replica_region)),
                    cell(&causes),
                ],
            );
        }
        if t.episodes_total > t.episodes.len() {
            let _ = writeln!(
                o,
                "\n{} more episodes are not listed.",
                t.episodes_total - t.episodes.len()
            );
        }
        o.push('\n');
    }
    let _ = writeln!(o, "### Failovers (direction changes)\n");
    if t.failovers.is_empty() {
        let _ = writeln!(o, "None.\n");
    } else {
        header(o, &["Time", "Source before → after", "RPO at that moment"]);
        for f in &t.failovers {
            row(
                o,
                &[
                    fmt_time(f.at),
                    cell(&format!(
                        "{} → {}",
                        f.from_source.as_deref().unwrap_or("?"),
                        f.to_source.as_deref().unwrap_or("?")
                    )),
                    secs(f.rpo_seconds),
                ],
            );
        }
        o.push('\n');
    }
    let _ = writeln!(o, "### Per pair\n");
    header(
        o,
        &[
            "Pair",
            "Attainment",
            "Lag p50",
            "Lag p99",
            "Lag max",
            "Canaries written / observed / lost / failed",
            "Reads per canary",
            "Probe down",
        ],
    );
    for p in &t.pairs {
        row(
            o,
            &[
                cell(&format!("{} → {}", p.source_region, p.replica_region)),
                fmt_pct(p.attainment.ratio()),
                secs(p.lag_p50_seconds),
                secs(p.lag_p99_seconds),
                p.lag_max_seconds
                    .map(|m| format!("≤ {}", fmt_duration(m)))
                    .unwrap_or_else(|| "—".into()),
                format!(
                    "{} / {} / {} / {}",
                    p.canaries.written, p.canaries.observed, p.canaries.lost, p.canaries.failed
                ),
                p.reads_per_canary
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "—".into()),
                fmt_duration(p.probe_down_seconds),
            ],
        );
    }
    o.push('\n');
    let aws: Vec<_> = t
        .pairs
        .iter()
        .flat_map(|p| p.aws.iter().map(move |a| (p, a)))
        .collect();
    if !aws.is_empty() {
        let _ = writeln!(o, "AWS's own figure beside ours (AWS minus agent RPO):\n");
        header(
            o,
            &["Pair", "AWS metric", "Mean difference", "Max difference"],
        );
        for (p, a) in aws {
            row(
                o,
                &[
                    cell(&format!("{} → {}", p.source_region, p.replica_region)),
                    cell(&a.metric),
                    format!("{:+.2} s", a.mean_difference_seconds),
                    format!("{:+.2} s", a.max_difference_seconds),
                ],
            );
        }
        o.push('\n');
    }
}

fn drill(o: &mut String, d: &Drill) {
    let _ = writeln!(o, "## Drill record\n");
    let _ = writeln!(o, "### Timeline\n");
    if d.timeline.is_empty() {
        let _ = writeln!(
            o,
            "Nothing happened in the window: no episode, no direction change.\n"
        );
    } else {
        header(o, &["Time", "Target", "Event"]);
        for e in &d.timeline {
            row(o, &[fmt_time(e.at), cell(&e.target), cell(&e.what)]);
        }
        o.push('\n');
    }
    let _ = writeln!(o, "### Switches\n");
    if d.switches.is_empty() {
        let _ = writeln!(o, "No target changed direction in the window.\n");
        return;
    }
    header(
        o,
        &[
            "Target",
            "Switched at",
            "RPO at the switch",
            "Time to detect",
            "First canary of the new direction",
            "Back within objective after",
            "Canaries lost",
        ],
    );
    for s in &d.switches {
        row(
            o,
            &[
                cell(&s.target),
                fmt_time(s.switched_at),
                secs(s.rpo_at_switch_seconds),
                secs(s.time_to_detect_seconds),
                s.first_canary_new_direction_at
                    .map(fmt_time)
                    .unwrap_or_else(|| "—".into()),
                secs(s.time_back_within_objective_seconds),
                format!("{}", s.canaries_lost),
            ],
        );
    }
    o.push('\n');
}
