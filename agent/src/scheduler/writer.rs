//! The writer of one route: prepares the probe, then writes a canary every
//! interval (with a little jitter so a fleet of agents does not write in
//! lock-step) and tells each replica's reader about it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::{sleep_until, Instant};
use tracing::info;

use super::{Readiness, RouteRun};
use crate::canary::{unix_micros, SeqSource};
use crate::probe::{Canary, ErrorClass};
use crate::shutdown::Shutdown;

/// Each tick moves by up to ±5 % of the interval.
fn jittered(interval: Duration) -> Duration {
    let f = rand::rng().random_range(0.95..1.05);
    interval.mul_f64(f)
}

pub async fn run(run: Arc<RouteRun>, mut shutdown: Shutdown, readiness: Readiness) {
    let route = &run.route;
    let mut seqs = SeqSource::default();
    let mut prepared = false;
    // Readiness counts a route once, however often it re-prepares.
    let mut announced = false;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shutdown.recv() => break,
        }
        next += jittered(route.interval);
        let now = Instant::now();
        if next < now {
            next = now + route.interval;
        }
        if !prepared {
            match route.probe.prepare().await {
                Ok(()) => {
                    info!(target = %route.target, source_region = %route.source_region,
                        replicas = ?route.replica_regions, key = %route.canary_key, "target ready");
                    prepared = true;
                    if !announced {
                        announced = true;
                        readiness.route_prepared();
                    }
                }
                Err(e) => {
                    for p in &run.pairs {
                        p.lock().unwrap().on_error(&e, false);
                    }
                    continue;
                }
            }
        }
        let canary = Canary {
            seq: seqs.next(),
            written_at_us: unix_micros(),
        };
        let sent = Instant::now();
        let res = route.probe.write(canary).await;
        let acked = Instant::now();
        match res {
            Ok(()) => {
                for (p, wake) in run.pairs.iter().zip(&run.wake_readers) {
                    p.lock().unwrap().on_write(canary.seq, sent, acked);
                    wake.notify_one();
                }
            }
            Err(e) => {
                for p in &run.pairs {
                    p.lock().unwrap().on_error(&e, false);
                }
                if e.class == ErrorClass::Config {
                    prepared = false;
                }
            }
        }
    }
}
