//! The lease manager's decisions, as a pure function of what one read of
//! the lease table showed and what this agent watched before: which leases
//! to renew, give up, try to take, and which were lost. No I/O, no clock
//! of its own (`now` is passed in), so every rule is tested with made-up
//! instants.
//!
//! Expiry is judged on this agent's monotonic clock only: a lease (or a
//! roster member) is dead once its version has looked the same for a whole
//! lease, counted from when *this* agent first saw that version. Wall
//! clocks of different hosts are never compared.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::lease::{Lease, Snapshot};

/// What a contender remembers of a version it watches.
#[derive(Debug, Clone, PartialEq)]
struct Seen<V> {
    version: V,
    since: Instant,
}

/// Versions watched across ticks: of leases held by others, and of roster
/// members' beats.
#[derive(Debug, Default)]
pub struct Watch {
    leases: HashMap<String, Seen<(Option<String>, u64, u64)>>,
    members: HashMap<String, Seen<u64>>,
}

impl Watch {
    /// How long `key`'s lease has shown its current version.
    fn lease_unchanged(&mut self, key: &str, l: &Lease, now: Instant) -> Duration {
        let v = (l.owner.clone(), l.counter, l.beat);
        let seen = self.leases.entry(key.to_string()).or_insert(Seen {
            version: v.clone(),
            since: now,
        });
        if seen.version != v {
            *seen = Seen {
                version: v,
                since: now,
            };
        }
        now - seen.since
    }

    fn member_unchanged(&mut self, agent: &str, beat: u64, now: Instant) -> Duration {
        let seen = self.members.entry(agent.to_string()).or_insert(Seen {
            version: beat,
            since: now,
        });
        if seen.version != beat {
            *seen = Seen {
                version: beat,
                since: now,
            };
        }
        now - seen.since
    }
}

/// Why a lease may be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Free {
    /// No item yet: the target's first lease.
    New,
    /// Released by its holder (SIGTERM, or shedding load).
    Released,
    /// Its holder stopped renewing a whole lease ago.
    Expired,
    /// Ours from an earlier run of this agent (same id).
    Orphaned,
}

/// What to do after one read of the table.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub renew: Vec<String>,
    pub release: Vec<String>,
    /// Leases to try to take, in order, and why they are free.
    pub take: Vec<(String, Free)>,
    /// Leases we thought ours that someone else holds now (holder).
    pub lost: Vec<(String, Option<String>)>,
    /// Roster members dead for two leases (agent, beat), to remove.
    pub dead_members: Vec<(String, u64)>,
    /// Live agents, this one included.
    pub live: usize,
    /// The most leases this agent should hold.
    pub share: usize,
    /// When the first lease watched now will have looked the same for a
    /// whole lease: the manager reads again right then, so a takeover does
    /// not wait for its next regular tick.
    pub next_expiry: Option<Instant>,
}

/// Decides from `snap`. `held` maps lease keys to the tokens this agent
/// holds; `keys` are every target's lease key, in the order to try them.
pub fn decide(
    snap: &Snapshot,
    me: &str,
    keys: &[String],
    held: &HashMap<String, u64>,
    lease: Duration,
    watch: &mut Watch,
    now: Instant,
) -> Decision {
    let mut d = Decision::default();
    let mut live = 1;
    let mut members: Vec<(&String, &u64)> = snap.members.iter().collect();
    members.sort();
    for (agent, beat) in members {
        if agent == me {
            continue;
        }
        let quiet = watch.member_unchanged(agent, *beat, now);
        if quiet < lease {
            live += 1;
        } else if quiet >= 2 * lease {
            d.dead_members.push((agent.clone(), *beat));
        }
    }
    watch.members.retain(|a, _| snap.members.contains_key(a));
    d.live = live;
    d.share = keys.len().div_ceil(live);
    let mut candidates = Vec::new();
    for key in keys {
        let lease_item = snap.leases.get(key);
        match (held.get(key), lease_item) {
            (Some(token), Some(l)) if l.owner.as_deref() == Some(me) && l.counter == *token => {
                d.renew.push(key.clone());
                watch.leases.remove(key);
                continue;
            }
            (Some(_), l) => d.lost.push((key.clone(), l.and_then(|l| l.owner.clone()))),
            (None, _) => {}
        }
        match lease_item {
            None => candidates.push((key.clone(), Free::New)),
            Some(l) if l.owner.is_none() => candidates.push((key.clone(), Free::Released)),
            Some(l) if l.owner.as_deref() == Some(me) => {
                candidates.push((key.clone(), Free::Orphaned))
            }
            Some(l) => {
                let quiet = watch.lease_unchanged(key, l, now);
                if quiet >= lease {
                    candidates.push((key.clone(), Free::Expired));
                } else {
                    let at = now + (lease - quiet);
                    d.next_expiry = Some(d.next_expiry.map_or(at, |e| e.min(at)));
                }
            }
        }
    }
    watch.leases.retain(|k, _| snap.leases.contains_key(k));
    if d.renew.len() > d.share {
        let excess = d.renew.len() - d.share;
        let keep = d.renew.len() - excess;
        d.release = d.renew.split_off(keep);
    } else {
        let room = d.share - d.renew.len();
        // Leases nobody is measuring first; then released ones.
        candidates.sort_by_key(|(_, why)| match why {
            Free::Expired | Free::Orphaned => 0,
            Free::New => 1,
            Free::Released => 2,
        });
        candidates.truncate(room);
        d.take = candidates;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(20);

    fn lease(owner: Option<&str>, counter: u64, beat: u64) -> Lease {
        Lease {
            owner: owner.map(str::to_string),
            counter,
            beat,
            lags: vec![],
        }
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i}")).collect()
    }

    fn snap(leases: &[(&str, Lease)], members: &[(&str, u64)]) -> Snapshot {
        Snapshot {
            leases: leases
                .iter()
                .map(|(k, l)| (k.to_string(), l.clone()))
                .collect(),
            members: members.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_agent_takes_every_new_lease() {
        let mut w = Watch::default();
        let d = decide(
            &snap(&[], &[("me", 1)]),
            "me",
            &keys(3),
            &HashMap::new(),
            LEASE,
            &mut w,
            Instant::now(),
        );
        assert_eq!(d.take.len(), 3);
        assert!(d.take.iter().all(|(_, why)| *why == Free::New));
        assert_eq!((d.live, d.share), (1, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_taken_only_after_it_looked_the_same_for_a_whole_lease() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let held = HashMap::new();
        let k = keys(1);
        let s = snap(&[("k0", lease(Some("a"), 4, 10))], &[("a", 5), ("me", 1)]);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let d = decide(&s, "me", &k, &held, LEASE, &mut w, at(0));
        assert!(d.take.is_empty());
        assert_eq!(
            d.next_expiry,
            Some(at(20)),
            "read again when it would expire"
        );
        assert!(decide(&s, "me", &k, &held, LEASE, &mut w, at(19))
            .take
            .is_empty());
        // A renewal restarts the watch.
        let renewed = snap(&[("k0", lease(Some("a"), 4, 11))], &[("a", 5), ("me", 1)]);
        assert!(decide(&renewed, "me", &k, &held, LEASE, &mut w, at(19))
            .take
            .is_empty());
        assert!(decide(&renewed, "me", &k, &held, LEASE, &mut w, at(38))
            .take
            .is_empty());
        let d = decide(&renewed, "me", &k, &held, LEASE, &mut w, at(39));
        assert_eq!(d.take, vec![("k0".to_string(), Free::Expired)]);
        // `a` stopped beating in the roster too: no longer live after a lease.
        assert_eq!(d.live, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once_and_ours_is_renewed() {
        let mut w = Watch::default();
        let leases = [("k0", lease(None, 4, 12)), ("k1", lease(Some("me"), 2, 3))];
        let held = HashMap::from([("k1".to_string(), 2)]);
        let d = decide(
            &snap(&leases, &[("me", 1)]),
            "me",
            &keys(2),
            &held,
            LEASE,
            &mut w,
            Instant::now(),
        );
        assert_eq!(d.renew, vec!["k1".to_string()]);
        assert_eq!(d.take, vec![("k0".to_string(), Free::Released)]);
        // With another live agent, one target each: the released one is
        // left to it.
        let d = decide(
            &snap(&leases, &[("a", 5), ("me", 1)]),
            "me",
            &keys(2),
            &held,
            LEASE,
            &mut w,
            Instant::now(),
        );
        assert_eq!(d.share, 1, "two live agents, two targets");
        assert_eq!(d.renew, vec!["k1".to_string()]);
        assert!(d.take.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_whose_counter_moved_on_is_lost() {
        let mut w = Watch::default();
        let s = snap(&[("k0", lease(Some("b"), 5, 0))], &[("b", 1), ("me", 1)]);
        let held = HashMap::from([("k0".to_string(), 4)]);
        let d = decide(&s, "me", &keys(1), &held, LEASE, &mut w, Instant::now());
        assert_eq!(d.lost, vec![("k0".to_string(), Some("b".to_string()))]);
        assert!(d.renew.is_empty() && d.take.is_empty());
        // Our own id with a token we do not hold: an earlier run of ours.
        let s = snap(&[("k0", lease(Some("me"), 5, 0))], &[("me", 1)]);
        let d = decide(
            &s,
            "me",
            &keys(1),
            &HashMap::new(),
            LEASE,
            &mut w,
            Instant::now(),
        );
        assert_eq!(d.take, vec![("k0".to_string(), Free::Orphaned)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_with_more_than_its_share_releases_the_excess() {
        let mut w = Watch::default();
        let ks = keys(10);
        let leases: Vec<(&str, Lease)> = ks
            .iter()
            .map(|k| (k.as_str(), lease(Some("me"), 1, 0)))
            .collect();
        let held: HashMap<String, u64> = ks.iter().map(|k| (k.clone(), 1)).collect();
        let s = snap(&leases, &[("me", 1), ("a", 1), ("b", 1)]);
        let d = decide(&s, "me", &ks, &held, LEASE, &mut w, Instant::now());
        assert_eq!((d.live, d.share), (3, 4));
        assert_eq!(d.renew.len(), 4);
        assert_eq!(d.release.len(), 6);
        assert!(d.take.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn members_silent_for_two_leases_are_dropped_from_the_roster() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let s = snap(&[], &[("me", 1), ("gone", 7)]);
        let k = keys(2);
        let held = HashMap::new();
        assert_eq!(decide(&s, "me", &k, &held, LEASE, &mut w, t0).live, 2);
        let d = decide(&s, "me", &k, &held, LEASE, &mut w, t0 + LEASE);
        assert_eq!((d.live, d.share), (1, 2));
        assert!(d.dead_members.is_empty());
        let d = decide(&s, "me", &k, &held, LEASE, &mut w, t0 + 2 * LEASE);
        assert_eq!(d.dead_members, vec![("gone".to_string(), 7)]);
    }
}
