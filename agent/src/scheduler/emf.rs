//! The EMF task: every `[emf] every`, on the wall clock's multiples of it,
//! closes every pair's window and writes one document per pair.
//!
//! Why on the wall clock: CloudWatch files a datapoint under the period its
//! timestamp falls in. Periods aligned to multiples of `every` (a minute
//! starting at :00) put each document in exactly one CloudWatch period, so
//! a 60 s alarm sees one RPO maximum per minute, not two halves.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rpo_exporter::emf::{Destination, Settings};
use rpo_exporter::emf_sink::Sink;
use rpo_exporter::Metrics;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::RouteRun;

/// What `[emf]` asks of the scheduler.
#[derive(Debug, Clone)]
pub struct EmfPlan {
    pub settings: Settings,
    pub to: Destination,
    pub every: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The start (ms since the epoch) of the period `now_ms` falls in.
fn period_start(now_ms: u64, every_ms: u64) -> u64 {
    now_ms - now_ms % every_ms
}

/// Writes a document per pair at the end of every period, and a last one
/// for the period in progress when `flush` fires (after the readers have
/// drained at shutdown).
pub async fn run(
    runs: Vec<Arc<RouteRun>>,
    plan: EmfPlan,
    metrics: Metrics,
    mut flush: oneshot::Receiver<()>,
) {
    let every_ms = plan.every.as_millis().max(1) as u64;
    let mut sink = Sink::new(plan.to.clone());
    metrics.emf_documents(0, 0);
    let mut start = period_start(now_ms(), every_ms);
    loop {
        let end = start + every_ms;
        let wait = Duration::from_millis(end.saturating_sub(now_ms()));
        let last = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = &mut flush => true,
        };
        // A late wake-up (a suspended host) closes the period it began in.
        write(&runs, &plan.settings, start, &mut sink, &metrics).await;
        if last {
            return;
        }
        start = period_start(now_ms(), every_ms).max(end);
    }
}

async fn write(
    runs: &[Arc<RouteRun>],
    settings: &Settings,
    start_ms: u64,
    sink: &mut Sink,
    metrics: &Metrics,
) {
    let mut lines = Vec::new();
    let mut too_large = 0;
    for run in runs {
        for p in &run.pairs {
            match p
                .lock()
                .unwrap()
                .take_emf(settings, start_ms, Instant::now())
            {
                Some(Ok(line)) => lines.push(line),
                Some(Err(())) => too_large += 1,
                None => {}
            }
        }
    }
    if lines.is_empty() && too_large == 0 {
        return;
    }
    let o = sink.write(lines).await;
    metrics.emf_documents(o.written, o.dropped + too_large);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_multiples_of_every() {
        assert_eq!(period_start(1_700_000_059_999, 60_000), 1_700_000_040_000);
        assert_eq!(period_start(1_700_000_100_000, 60_000), 1_700_000_100_000);
        assert_eq!(period_start(1_700_000_040_000, 60_000), 1_700_000_040_000);
        assert_eq!(period_start(1_234, 1_000), 1_000);
    }
}
