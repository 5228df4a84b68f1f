//! `Gate`: what the fleet's lease manager tells one target's writers —
//! write (and with which fencing token) or stand by — and what the writers
//! give back (their lag estimates, kept in the lease for a successor).
//!
//! The holder's own deadline is judged here, on this process's monotonic
//! clock: a renewal sent at `t` makes the lease ours until `t + lease`, and a
//! contender waits a whole lease after *seeing* that renewal, so a holder
//! that was frozen (SIGSTOP, a long GC pause of the host) stops writing
//! before anyone else may start, even before the manager runs again.

use std::time::Duration;

use std::sync::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a target's writer should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Write canaries, stamped with `token` (None: the lease table is
    /// unreachable and every agent measures on its own).
    Lead { token: Option<u64> },
    /// Another agent writes (`holder`, when known).
    Standby { holder: Option<String> },
}

impl Role {
    pub fn is_lead(&self) -> bool {
        matches!(self, Role::Lead { .. })
    }
}

#[derive(Debug, Default)]
struct State {
    /// Our token and until when the lease is surely ours.
    held: Option<(u64, Instant)>,
    holder: Option<String>,
    degraded: bool,
    /// The writers' latest lag estimates, by replica region.
    lags: Vec<(String, Duration)>,
    /// The lags a grant found in the lease (the last holder's), once.
    inherited: Option<Vec<(String, Duration)>>,
}

/// One target's lease, as this agent sees it.
pub struct Gate {
    pub target: String,
    pub kind: &'static str,
    state: Mutex<State>,
    /// Bumped on every change of role, to wake the writers.
    changed: watch::Sender<u64>,
}

impl Gate {
    pub fn new(target: &str, kind: &'static str) -> Self {
        Gate {
            target: target.to_string(),
            kind,
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        }
    }

    /// The role at `now`.
    pub fn role_at(&self, now: Instant) -> Role {
        let s = self.state.lock().unwrap();
        if s.degraded {
            return Role::Lead { token: None };
        }
        match s.held {
            Some((token, until)) if now < until => Role::Lead { token: Some(token) },
            _ => Role::Standby {
                holder: s.holder.clone(),
            },
        }
    }

    pub fn role(&self) -> Role {
        self.role_at(Instant::now())
    }

    /// A receiver that sees every change of role.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Our token, if the manager thinks we hold the lease (deadline aside).
    pub(super) fn token(&self) -> Option<u64> {
        self.state.lock().unwrap().held.map(|(t, _)| t)
    }

    /// We were granted the lease with `token` until `until`; `inherited`
    /// are the lags the last holder kept in it.
    pub(super) fn granted(
        &self,
        token: u64,
        until: Instant,
        me: &str,
        inherited: Vec<(String, Duration)>,
    ) {
        {
            let mut s = self.state.lock().unwrap();
            s.held = Some((token, until));
            s.holder = Some(me.to_string());
            s.inherited = (!inherited.is_empty()).then_some(inherited);
        }
        self.bump();
    }

    /// A renewal sent before `until - lease` succeeded.
    pub(super) fn renewed(&self, until: Instant) {
        if let Some((_, u)) = &mut self.state.lock().unwrap().held {
            *u = until;
        }
    }

    /// Somebody else holds it (or nobody, `holder` None); we do not.
    pub(super) fn stand_by(&self, holder: Option<&str>) {
        let changed = {
            let mut s = self.state.lock().unwrap();
            let changed = s.held.is_some() || s.holder.as_deref() != holder;
            s.held = None;
            s.holder = holder.map(str::to_string);
            changed
        };
        if changed {
            self.bump();
        }
    }

    pub(super) fn set_degraded(&self, degraded: bool) {
        let changed = {
            let mut s = self.state.lock().unwrap();
            std::mem::replace(&mut s.degraded, degraded) != degraded
        };
        if changed {
            self.bump();
        }
    }

    /// The lags to keep in the lease at the next renewal.
    pub(super) fn lags(&self) -> Vec<(String, Duration)> {
        self.state.lock().unwrap().lags.clone()
    }

    /// The writers' lag estimate for `region` (kept with the lease).
    pub fn keep_lag(&self, region: &str, lag: Duration) {
        let mut s = self.state.lock().unwrap();
        match s.lags.iter_mut().find(|(r, _)| r == region) {
            Some((_, l)) => *l = lag,
            None => s.lags.push((region.to_string(), lag)),
        }
    }

    /// The last holder's lag for `region`, found in the lease at our grant.
    pub fn inherited_lag(&self, region: &str) -> Option<Duration> {
        let s = self.state.lock().unwrap();
        s.inherited
            .as_ref()?
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, l)| *l)
    }

    /// The store refused a canary stamped with `token`: a newer holder
    /// exists. Stand by until the manager learns who.
    pub fn fenced(&self, token: u64) {
        let stale = matches!(self.state.lock().unwrap().held, Some((t, _)) if t == token);
        if stale {
            self.stand_by(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_ends_at_its_deadline_even_before_the_manager_says_so() {
        let g = Gate::new("t", "dynamodb");
        let t0 = Instant::now();
        assert_eq!(g.role_at(t0), Role::Standby { holder: None });
        g.granted(3, t0 + Duration::from_secs(20), "me", vec![]);
        assert_eq!(
            g.role_at(t0 + Duration::from_secs(19)),
            Role::Lead { token: Some(3) }
        );
        assert!(!g.role_at(t0 + Duration::from_secs(20)).is_lead());
        g.renewed(t0 + Duration::from_secs(25));
        assert!(g.role_at(t0 + Duration::from_secs(24)).is_lead());
        g.fenced(2); // an older token: not ours any more anyway
        assert!(g.role_at(t0).is_lead());
        g.fenced(3);
        assert!(!g.role_at(t0).is_lead());
        g.set_degraded(true);
        assert_eq!(g.role_at(t0), Role::Lead { token: None });
    }

    #[tokio::test]
    async fn writers_are_woken_by_a_change_of_role_only() {
        let g = Gate::new("t", "dynamodb");
        let mut rx = g.subscribe();
        g.stand_by(None);
        assert!(!rx.has_changed().unwrap(), "no change: no wake-up");
        g.granted(
            1,
            Instant::now() + Duration::from_secs(5),
            "me",
            vec![("r".into(), Duration::from_secs(2))],
        );
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert_eq!(g.inherited_lag("r"), Some(Duration::from_secs(2)));
        g.stand_by(Some("other"));
        assert!(rx.has_changed().unwrap());
    }
}
