//! The reader of one replica: sleeps until the poll planner's next read time
//! (or until the writer announces a new canary), reads, and feeds the result
//! to the pair's tracker. On shutdown it keeps reading until nothing is
//! awaited or the grace period ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};

use super::RouteRun;
use crate::shutdown::Shutdown;
use crate::tracker::ReadSpan;

/// First pause after a failed read; it doubles up to the interval so a dead
/// replica is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(250);

pub async fn run(run: Arc<RouteRun>, replica: usize, mut shutdown: Shutdown, grace: Duration) {
    let interval = run.route.interval;
    let pair = &run.pairs[replica];
    let wake = &run.wake_readers[replica];
    let mut drain_until: Option<Instant> = None;
    let mut backoff = ERROR_BACKOFF;
    loop {
        let next = pair.lock().unwrap().next_read(interval);
        if let Some(deadline) = drain_until {
            if next.is_none() || Instant::now() >= deadline {
                return;
            }
        }
        let stopping = drain_until.is_some();
        tokio::select! {
            _ = async { sleep_until(next.expect("guarded")).await }, if next.is_some() => {}
            _ = wake.notified() => continue,
            _ = shutdown.recv(), if !stopping => {
                drain_until = Some(Instant::now() + grace);
                continue;
            }
            _ = sleep_until(drain_until.unwrap_or_else(Instant::now)), if stopping => continue,
        }
        let permit = run.calls.acquire().await;
        let awaited = pair.lock().unwrap().due(Instant::now(), interval);
        if awaited.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let res = run.route.probe.read(replica, &awaited).await;
        let received = Instant::now();
        drop(permit);
        match res {
            Ok(obs) => {
                backoff = ERROR_BACKOFF;
                pair.lock()
                    .unwrap()
                    .on_read(ReadSpan { sent, received }, &obs);
            }
            Err(e) => {
                pair.lock().unwrap().on_error(&e, true);
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = shutdown.recv(), if !stopping => drain_until = Some(Instant::now() + grace),
                }
                backoff = (backoff * 2).min(interval);
            }
        }
    }
}
