//! Canary identity: the sequence numbers and the keys canaries are stored under.
//!
//! `seq` is derived from wall-clock microseconds so that it keeps increasing
//! across agent restarts without any state on disk; it is clamped so that two
//! canaries never share a value even when the clock steps back.

use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out strictly increasing sequence numbers.
#[derive(Debug, Default)]
pub struct SeqSource {
    last: u64,
}

impl SeqSource {
    /// The next seq: now in µs since the epoch, or last + 1 if the clock lags.
    pub fn next(&mut self) -> u64 {
        self.next_at(unix_micros())
    }

    fn next_at(&mut self, now_us: u64) -> u64 {
        self.last = now_us.max(self.last + 1);
        self.last
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, as a float (for timestamps in metrics).
pub fn unix_seconds() -> f64 {
    unix_micros() as f64 / 1e6
}

/// The key of the single canary item/row of an agent on a target:
/// `rpo-canary#<agent_id>#<target>`, plus `@<region>` for the canaries an
/// agent writes in a replica region when measuring both directions.
pub fn item_key(agent_id: &str, target: &str, written_in: Option<&str>) -> String {
    match written_in {
        None => format!("rpo-canary#{agent_id}#{target}"),
        Some(r) => format!("rpo-canary#{agent_id}#{target}@{r}"),
    }
}

/// The key of a target's lag hint (`Probe::write_lag_hint`):
/// `rpo-lag-hint#<target>[@<region>]`. One per target, whichever agent
/// wrote it last, so a new task (new agent id) finds it too.
pub fn hint_key(target: &str, written_in: Option<&str>) -> String {
    match written_in {
        None => format!("rpo-lag-hint#{target}"),
        Some(r) => format!("rpo-lag-hint#{target}@{r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_strictly_increasing_even_when_the_clock_steps_back() {
        let mut s = SeqSource::default();
        assert_eq!(s.next_at(1000), 1000);
        assert_eq!(s.next_at(1000), 1001);
        assert_eq!(s.next_at(900), 1002);
        assert_eq!(s.next_at(5000), 5000);
    }

    #[test]
    fn seq_follows_the_wall_clock() {
        let mut s = SeqSource::default();
        let a = s.next();
        assert!(a > 1_700_000_000_000_000, "{a}");
        assert!(s.next() > a);
    }

    #[test]
    fn keys_name_agent_target_and_writing_region() {
        assert_eq!(item_key("a1", "orders", None), "rpo-canary#a1#orders");
        assert_eq!(
            item_key("a1", "orders", Some("ap-northeast-3")),
            "rpo-canary#a1#orders@ap-northeast-3"
        );
    }
}
