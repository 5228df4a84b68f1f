//! `rpo-agent once`: one canary per route, read until seen, printed as a
//! table. For DR drills and smoke tests; exit status 1 if any target failed.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::canary::{unix_micros, SeqSource};
use crate::poll::LagModel;
use crate::probe::Canary;
use crate::route::Route;
use crate::tracker::{Event, ReadSpan, Tracker};

/// The outcome of one (route, replica) pair.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: String,
    pub kind: &'static str,
    pub direction: String,
    pub lag: Option<Duration>,
    pub uncertainty: Option<Duration>,
    pub reads: u32,
    pub result: String,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// Runs one round on every route, waiting at most `wait` per route.
pub async fn run(routes: &[Route], wait: Duration) -> Vec<Row> {
    let mut rows = Vec::new();
    for route in routes {
        rows.extend(one_route(route, wait).await);
    }
    rows
}

async fn one_route(route: &Route, wait: Duration) -> Vec<Row> {
    let row = |i: usize, result: String| Row {
        target: route.target.clone(),
        kind: route.kind.as_str(),
        direction: format!("{} → {}", route.source_region, route.replica_regions[i]),
        lag: None,
        uncertainty: None,
        reads: 0,
        result,
    };
    let all = |msg: String| {
        (0..route.replica_regions.len())
            .map(|i| row(i, msg.clone()))
            .collect()
    };
    if let Err(e) = route.probe.prepare().await {
        return all(format!("error: {e}"));
    }
    let seq = SeqSource::default().next();
    let sent = Instant::now();
    if let Err(e) = route
        .probe
        .write(Canary {
            seq,
            written_at_us: unix_micros(),
            lease: None,
        })
        .await
    {
        return all(format!("error: {e}"));
    }
    let acked = Instant::now();
    let deadline = acked + wait;
    let mut rows = Vec::new();
    for i in 0..route.replica_regions.len() {
        let mut r = row(i, String::new());
        let mut tracker = Tracker::new(wait, 1);
        tracker.written(seq, sent, acked);
        let model = LagModel::default();
        r.result = loop {
            let Some(p) = tracker.awaited().next().cloned() else {
                break "lost".into();
            };
            let at = model.next_read(&p, Duration::from_secs(1));
            if at > deadline {
                break format!("not seen within {}", humantime::format_duration(wait));
            }
            sleep_until(at).await;
            let read_sent = Instant::now();
            match route.probe.read(i, &[seq]).await {
                Err(e) => break format!("error: {e}"),
                Ok(obs) => {
                    let span = ReadSpan {
                        sent: read_sent,
                        received: Instant::now(),
                    };
                    r.reads += 1;
                    match tracker.observe(span, &obs).first() {
                        Some(Event::Observed {
                            lag, uncertainty, ..
                        }) => {
                            r.lag = Some(*lag);
                            r.uncertainty = Some(*uncertainty);
                            break "ok".into();
                        }
                        Some(Event::Failed { .. }) => break "replication FAILED".into(),
                        _ => {}
                    }
                }
            }
        };
        rows.push(r);
    }
    rows
}

/// Renders rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let secs =
        |d: Option<Duration>| d.map_or("—".to_string(), |d| format!("{:.3} s", d.as_secs_f64()));
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.target.clone(),
                r.kind.to_string(),
                r.direction.clone(),
                secs(r.lag),
                secs(r.uncertainty),
                r.reads.to_string(),
                r.result.clone(),
            ]
        })
        .collect();
    let head = ["TARGET", "KIND", "DIRECTION", "LAG", "±", "READS", "RESULT"].map(String::from);
    let mut width = [0usize; 7];
    for c in std::iter::once(&head).chain(&cells) {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    for c in std::iter::once(&head).chain(&cells) {
        let line: Vec<String> = c
            .iter()
            .zip(width)
            .map(|(s, w)| format!("{s:<w$}", w = w))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
