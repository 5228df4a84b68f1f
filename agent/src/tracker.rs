//! The RPO tracker of one (target, replica) pair: exactly DESIGN.md's semantics.
//!
//! All times are on the agent's monotonic clock (`tokio::time::Instant`), so no
//! clock skew between hosts enters a figure; the tracker never reads the clock
//! itself (callers pass every `Instant`), so its tests use synthetic times.
//!
//! * lag of a canary = first read that showed it − the source's write ack;
//! * uncertainty = that read's end − the start of the last read that missed it
//!   (or the ack, when no read missed): the true arrival lies inside;
//! * RPO now = max(lag of the newest observed canary, age of the oldest canary
//!   written but not yet seen);
//! * upper bound = now − send time of the newest canary seen;
//! * a canary unseen after `timeout` is lost; it keeps counting towards "oldest
//!   pending" until a newer canary is seen.
//!
//! Memory per pair is bounded whatever the replica does: at most `max_pending`
//! canaries awaited (`written` evicts the oldest) and `max_pending` lost ones
//! (`thin_lost`); `observe`, `expire` and `written` return their events and
//! keep none.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// One canary written but not yet seen in this replica.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: u64,
    /// When the write request was sent.
    pub sent: Instant,
    /// When the source acknowledged the write.
    pub acked: Instant,
    /// Start of the most recent read that did not show it.
    pub last_miss: Option<Instant>,
    /// Reads of the replica made while it was pending.
    pub reads: u32,
    /// Declared lost (timeout passed), kept only for "oldest pending".
    pub lost: bool,
}

/// What one replica read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The replica shows this seq (`None`: no canary there yet). Stores that
    /// replicate in order imply every smaller seq has arrived too.
    UpTo(Option<u64>),
    /// Per-canary answers, for stores without ordering (S3 objects).
    Each(Vec<(u64, Sighting)>),
}

/// One canary's state in the replica, as a per-object read reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    Missing,
    Present,
    /// The store reported that replication of this canary failed.
    Failed,
}

/// When a read ran: from sending the request to receiving the answer.
#[derive(Debug, Clone, Copy)]
pub struct ReadSpan {
    pub sent: Instant,
    pub received: Instant,
}

impl ReadSpan {
    /// Best estimate of the instant the replica was looked at.
    pub fn at(&self) -> Instant {
        self.sent + (self.received - self.sent) / 2
    }
}

/// What changed in the life of canaries.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Observed {
        seq: u64,
        /// When the source acknowledged the canary (`acked + lag` is when
        /// it was seen).
        acked: Instant,
        lag: Duration,
        uncertainty: Duration,
        reads: u32,
    },
    Lost {
        seq: u64,
        age: Duration,
    },
    Failed {
        seq: u64,
    },
    /// Seen after it was declared lost: logged, not counted twice.
    LateArrival {
        seq: u64,
        lag: Duration,
    },
    /// Given up because more than `max_pending` canaries were in flight.
    Evicted {
        seq: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Newest {
    seq: u64,
    sent: Instant,
    lag: Duration,
    uncertainty: Duration,
}

/// The tracker of one (target, replica) pair.
#[derive(Debug)]
pub struct Tracker {
    pending: VecDeque<Pending>,
    newest: Option<Newest>,
    timeout: Duration,
    max_pending: usize,
    /// Least ack-time gap between two lost canaries kept (see `thin_lost`);
    /// zero keeps them all.
    lost_spacing: Duration,
    /// Fleet takeover: what the last holder left unresolved (`inherit`).
    inherited: Option<Inherited>,
}

/// The state a new lease holder found in the store: the replica lacks the
/// source's newest canaries since `since`. It keeps RPO rising from when
/// the stall began under the old holder, not from the takeover; no lag is
/// measured from it (its write time is the old holder's, on another host).
#[derive(Debug, Clone, Copy)]
struct Inherited {
    /// The first seq the replica lacks; a read showing it (or a newer one
    /// of ours) resolves it.
    awaited: Option<u64>,
    /// When the oldest canary the replica lacks was written (earliest).
    since: Option<Instant>,
    /// When the newest canary the replica has was written.
    seen_sent: Option<Instant>,
}

impl Tracker {
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Tracker {
            pending: VecDeque::new(),
            newest: None,
            timeout,
            max_pending: max_pending.max(1),
            inherited: None,
            lost_spacing: Duration::ZERO,
        }
    }

    /// A canary was acknowledged by the source.
    pub fn written(&mut self, seq: u64, sent: Instant, acked: Instant) -> Vec<Event> {
        self.pending.push_back(Pending {
            seq,
            sent,
            acked,
            last_miss: None,
            reads: 0,
            lost: false,
        });
        let mut events = Vec::new();
        while self.pending_count() > self.max_pending {
            let i = self
                .pending
                .iter()
                .position(|p| !p.lost)
                .expect("count > 0");
            let p = self.pending.remove(i).expect("index valid");
            events.push(Event::Evicted { seq: p.seq });
        }
        events
    }

    /// Fleet takeover: the replica's newest canary was written at
    /// `seen_sent` and it lacks those from `awaited` on, the oldest written at
    /// `since` (None when it has everything). Both instants come from the
    /// old holder's wall clock, mapped onto ours.
    pub fn inherit(
        &mut self,
        awaited: Option<u64>,
        since: Option<Instant>,
        seen_sent: Option<Instant>,
    ) {
        self.inherited = Some(Inherited {
            awaited: awaited.filter(|_| since.is_some()),
            since: since.filter(|_| awaited.is_some()),
            seen_sent,
        });
    }

    /// Applies one replica read.
    pub fn observe(&mut self, read: ReadSpan, obs: &Observation) -> Vec<Event> {
        if let (Some(i), Observation::UpTo(Some(s))) = (&mut self.inherited, obs) {
            if i.awaited.is_some_and(|a| *s >= a) {
                i.awaited = None;
                i.since = None;
                // What the replica has now was written after `seen_sent`.
                i.seen_sent = None;
            }
        }
        let mut events = Vec::new();
        let mut seen_max: Option<u64> = None;
        let mut keep = VecDeque::with_capacity(self.pending.len());
        for mut p in self.pending.drain(..) {
            // A read sent before the write was acknowledged says nothing about
            // the canary when it misses.
            let concerned = p.acked <= read.sent;
            let sighting = match obs {
                Observation::UpTo(Some(s)) if p.seq <= *s => Some(Sighting::Present),
                Observation::UpTo(_) => concerned.then_some(Sighting::Missing),
                Observation::Each(list) => list.iter().find(|(s, _)| *s == p.seq).map(|(_, x)| *x),
            };
            match sighting {
                None => keep.push_back(p),
                Some(Sighting::Missing) => {
                    p.reads += 1;
                    p.last_miss = Some(read.sent);
                    keep.push_back(p);
                }
                Some(Sighting::Present) => {
                    p.reads += 1;
                    let at = read.at().max(p.acked);
                    let lag = at - p.acked;
                    let lower = p.last_miss.unwrap_or(p.acked).max(p.acked);
                    let uncertainty = read.received.saturating_duration_since(lower);
                    seen_max = Some(seen_max.map_or(p.seq, |m| m.max(p.seq)));
                    if p.lost {
                        events.push(Event::LateArrival { seq: p.seq, lag });
                    } else {
                        events.push(Event::Observed {
                            seq: p.seq,
                            acked: p.acked,
                            lag,
                            uncertainty,
                            reads: p.reads,
                        });
                    }
                    if self.newest.is_none_or(|n| p.seq > n.seq) {
                        self.newest = Some(Newest {
                            seq: p.seq,
                            sent: p.sent,
                            lag,
                            uncertainty,
                        });
                    }
                }
                Some(Sighting::Failed) => {
                    p.reads += 1;
                    events.push(Event::Failed { seq: p.seq });
                }
            }
        }
        // Lost canaries stop counting once a newer one has been seen.
        if let Some(m) = seen_max {
            keep.retain(|p| !(p.lost && p.seq < m));
            if !keep.iter().any(|p| p.lost) {
                // The next stall thins its lost canaries from scratch.
                self.lost_spacing = Duration::ZERO;
            }
        }
        self.pending = keep;
        events
    }

    /// Declares lost every canary older than the timeout.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for p in self.pending.iter_mut().filter(|p| !p.lost) {
            let age = now.saturating_duration_since(p.acked);
            if age > self.timeout {
                p.lost = true;
                events.push(Event::Lost { seq: p.seq, age });
            }
        }
        if !events.is_empty() {
            self.thin_lost();
        }
        events
    }

    /// Bounds the lost canaries kept to `max_pending`. `max_pending` bounds
    /// only the awaited ones, and a lost one leaves only when it or a newer
    /// canary is seen: through a stall that outlasts the timeout, or with a
    /// replica that never answers, one more would be kept every interval,
    /// forever. So the lost ones kept are thinned to at least
    /// `lost_spacing` apart (by ack), the oldest always kept (`rpo` reports
    /// it): RPO keeps rising through the stall, and each canary is still
    /// counted lost exactly once. Past `max_pending` the spacing doubles, so
    /// it stays under about 2 × stall / `max_pending`: when an ordered store
    /// catches up with no newer canary seen yet, the oldest one kept is at
    /// most that much younger than the oldest one still unseen.
    fn thin_lost(&mut self) {
        loop {
            let spacing = self.lost_spacing;
            let mut last: Option<Instant> = None;
            self.pending.retain(|p| {
                if !p.lost {
                    return true;
                }
                if last.is_some_and(|l| p.acked < l + spacing) {
                    return false;
                }
                last = Some(p.acked);
                true
            });
            if self.pending.iter().filter(|p| p.lost).count() <= self.max_pending {
                return;
            }
            self.lost_spacing = (spacing * 2).max(Duration::from_millis(1));
        }
    }

    /// RPO now; `None` until something was written.
    pub fn rpo(&self, now: Instant) -> Option<Duration> {
        let newest = self.newest.map(|n| n.lag);
        let oldest = self
            .pending
            .front()
            .map(|p| now.saturating_duration_since(p.acked));
        let inherited = self
            .inherited
            .and_then(|i| i.since)
            .map(|t| now.saturating_duration_since(t));
        [newest, oldest, inherited].into_iter().flatten().max()
    }

    /// Now − send time of the newest canary seen; `None` before the first.
    /// After a takeover, until one of ours is seen: the last holder's newest
    /// canary that the replica has.
    pub fn upper_bound(&self, now: Instant) -> Option<Duration> {
        self.newest
            .map(|n| n.sent)
            .or(self.inherited.and_then(|i| i.seen_sent))
            .map(|t| now.saturating_duration_since(t))
    }

    /// Lag and uncertainty of the newest observed canary.
    pub fn newest_lag(&self) -> Option<(Duration, Duration)> {
        self.newest.map(|n| (n.lag, n.uncertainty))
    }

    /// Canaries still awaited (not lost).
    pub fn pending_count(&self) -> usize {
        self.pending.iter().filter(|p| !p.lost).count()
    }

    /// Canaries still awaited, oldest first.
    pub fn awaited(&self) -> impl Iterator<Item = &Pending> {
        self.pending.iter().filter(|p| !p.lost)
    }

    /// For the memory-bound tests: canaries kept (awaited and lost), and
    /// the capacity they occupy.
    #[cfg(test)]
    pub(crate) fn retained_for_bound(&self) -> (usize, usize) {
        (self.pending.len(), self.pending.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn span(t0: Instant, sent: u64, received: u64) -> ReadSpan {
        ReadSpan {
            sent: t0 + ms(sent),
            received: t0 + ms(received),
        }
    }

    #[test]
    fn a_stall_inherited_at_a_takeover_keeps_rpo_rising_from_when_it_began_until_it_clears() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(60_000), 10);
        // The replica has seq 5 (written at t0); it lacks 6 on, written from
        // t0 + 1 s. We take over at t0 + 10 s.
        t.inherit(Some(6), Some(t0 + ms(1000)), Some(t0));
        let now = t0 + ms(10_000);
        assert_eq!(t.rpo(now), Some(ms(9000)));
        assert_eq!(t.upper_bound(now), Some(ms(10_000)));
        // Our first canary, while the stall goes on: RPO still the stall's.
        t.written(20, now, now + ms(5));
        assert!(t
            .observe(span(t0, 10_500, 10_502), &Observation::UpTo(Some(5)))
            .is_empty());
        assert_eq!(t.rpo(t0 + ms(12_000)), Some(ms(11_000)));
        // The backlog drains, ours included: the stall is over, no lag is
        // recorded for the old holder's canaries, ours is measured.
        let ev = t.observe(span(t0, 13_000, 13_002), &Observation::UpTo(Some(20)));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(matches!(ev[0], Event::Observed { seq: 20, .. }));
        let after = t0 + ms(13_100);
        assert!(t.rpo(after).unwrap() < ms(3100), "{:?}", t.rpo(after));
        assert!(t.upper_bound(after).unwrap() < ms(3200));
        // A healthy replica at takeover: nothing awaited, only the bound.
        let mut h = Tracker::new(ms(60_000), 10);
        h.inherit(None, None, Some(t0));
        assert_eq!(h.rpo(t0 + ms(500)), None);
        assert_eq!(h.upper_bound(t0 + ms(500)), Some(ms(500)));
    }

    #[test]
    fn lag_is_first_hit_minus_ack_and_uncertainty_is_the_miss_to_hit_window() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(10_000), 10);
        t.written(1, t0, t0 + ms(2));
        assert!(t
            .observe(span(t0, 290, 292), &Observation::UpTo(None))
            .is_empty());
        let ev = t.observe(span(t0, 310, 312), &Observation::UpTo(Some(1)));
        assert_eq!(
            ev,
            vec![Event::Observed {
                seq: 1,
                acked: t0 + ms(2),
                lag: ms(309),
                uncertainty: ms(22),
                reads: 2
            }]
        );
        assert_eq!(
            t.rpo(t0 + ms(5000)),
            Some(ms(309)),
            "healthy and idle: RPO stays at the lag"
        );
        assert_eq!(t.upper_bound(t0 + ms(5000)), Some(ms(5000)));
        assert_eq!(t.pending_count(), 0);
    }

    #[test]
    fn rpo_grows_with_the_oldest_pending_canary_while_stalled() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(600_000), 10);
        t.written(1, t0, t0);
        t.observe(span(t0, 100, 100), &Observation::UpTo(Some(1)));
        t.written(2, t0 + ms(1000), t0 + ms(1000));
        t.written(3, t0 + ms(2000), t0 + ms(2000));
        assert_eq!(t.rpo(t0 + ms(11_000)), Some(ms(10_000)));
        assert_eq!(t.rpo(t0 + ms(21_000)), Some(ms(20_000)));
        // Resume: one read resolves both canaries, counted once each.
        let ev = t.observe(span(t0, 21_000, 21_000), &Observation::UpTo(Some(3)));
        assert_eq!(ev.len(), 2);
        assert_eq!(t.rpo(t0 + ms(21_000)), Some(ms(19_000)));
        assert_eq!(
            t.observe(span(t0, 21_100, 21_100), &Observation::UpTo(Some(3))),
            vec![]
        );
    }

    #[test]
    fn a_read_sent_before_the_ack_does_not_count_as_a_miss() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(10_000), 10);
        t.written(1, t0, t0 + ms(50));
        t.observe(span(t0, 10, 60), &Observation::UpTo(None));
        assert_eq!(t.awaited().next().unwrap().reads, 0);
    }

    #[test]
    fn lost_canaries_count_towards_rpo_until_a_newer_one_is_seen() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(1000), 10);
        t.written(1, t0, t0);
        assert_eq!(
            t.expire(t0 + ms(1500)),
            vec![Event::Lost {
                seq: 1,
                age: ms(1500)
            }]
        );
        assert_eq!(t.expire(t0 + ms(1600)), vec![], "lost once");
        assert_eq!(t.pending_count(), 0);
        assert_eq!(t.rpo(t0 + ms(2000)), Some(ms(2000)));
        t.written(2, t0 + ms(2000), t0 + ms(2000));
        let ev = t.observe(
            span(t0, 2100, 2100),
            &Observation::Each(vec![(2, Sighting::Present), (1, Sighting::Missing)]),
        );
        assert!(matches!(ev[..], [Event::Observed { seq: 2, .. }]));
        assert_eq!(t.rpo(t0 + ms(3000)), Some(ms(100)));
    }

    #[test]
    fn a_late_arrival_is_not_counted_twice() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(1000), 10);
        t.written(1, t0, t0);
        t.expire(t0 + ms(1001));
        let ev = t.observe(span(t0, 1200, 1200), &Observation::UpTo(Some(1)));
        assert_eq!(
            ev,
            vec![Event::LateArrival {
                seq: 1,
                lag: ms(1200)
            }]
        );
    }

    #[test]
    fn failed_replication_is_reported_and_not_lost() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(1000), 10);
        t.written(7, t0, t0);
        let ev = t.observe(
            span(t0, 10, 10),
            &Observation::Each(vec![(7, Sighting::Failed)]),
        );
        assert_eq!(ev, vec![Event::Failed { seq: 7 }]);
        assert_eq!(t.expire(t0 + ms(5000)), vec![]);
        assert_eq!(t.pending_count(), 0);
    }

    #[test]
    fn lost_canaries_kept_are_bounded_and_the_oldest_stays() {
        // 10^4 s of stall at a 1 s interval: each canary is lost 5 s after
        // its ack and none is seen.
        let t0 = Instant::now();
        let s = |n: u64| ms(n * 1000);
        let mut t = Tracker::new(s(5), 8);
        let mut lost = Vec::new();
        for k in 0..10_000u64 {
            let at = t0 + s(k);
            assert_eq!(t.written(k + 1, at, at), vec![], "none evicted");
            for e in t.expire(at) {
                let Event::Lost { seq, .. } = e else {
                    panic!("{e:?}")
                };
                lost.push(seq);
            }
            // 6 awaited (up to 5 s old) and at most 8 lost.
            assert!(
                t.retained_for_bound().0 <= 6 + 8,
                "{:?}",
                t.retained_for_bound()
            );
            assert_eq!(t.rpo(at), Some(at - t0), "the oldest lost one is kept");
        }
        assert_eq!(
            lost,
            (1..=10_000 - 6).collect::<Vec<_>>(),
            "each lost once, in order"
        );
        // The oldest arrives late alone (an ordered store catching up): the
        // next one kept is at most 2 × 10^4 s / 8 (+ one interval) younger
        // than canary 2, the oldest one still unseen.
        let end = t0 + s(10_000);
        let ev = t.observe(
            ReadSpan {
                sent: end,
                received: end,
            },
            &Observation::UpTo(Some(1)),
        );
        assert_eq!(
            ev,
            vec![Event::LateArrival {
                seq: 1,
                lag: s(10_000)
            }]
        );
        let later = end + s(10_000);
        let exact = later - (t0 + s(1));
        let rpo = t.rpo(later).unwrap();
        assert!(
            rpo <= exact && rpo + s(2501) >= exact,
            "{rpo:?}, exactly {exact:?}"
        );
        // The resume: every canary kept is seen, and nothing stays.
        let ev = t.observe(
            ReadSpan {
                sent: end,
                received: end,
            },
            &Observation::UpTo(Some(10_000)),
        );
        let observed = ev
            .iter()
            .filter(|e| matches!(e, Event::Observed { .. }))
            .count();
        assert_eq!(observed, 6, "{ev:?}");
        assert_eq!(t.retained_for_bound().0, 0);
    }

    #[test]
    fn pending_canaries_are_bounded() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(100_000), 2);
        t.written(1, t0, t0);
        t.written(2, t0, t0);
        assert_eq!(t.written(3, t0, t0), vec![Event::Evicted { seq: 1 }]);
        assert_eq!(t.pending_count(), 2);
    }
}
