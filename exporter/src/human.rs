//! Durations as people read them ("1.23 s", "4 m 05 s", "—").
//!
//! Metrics stay in base units (seconds); only what a person reads — the status
//! page, and the agent's `once` table — goes through here. Precision shrinks
//! as the value grows: nobody cares about milliseconds of a 2-hour stall, but
//! they do for a 120 ms lag.

/// Shown where a value is not known yet (no canary written, nothing seen).
pub const UNKNOWN: &str = "—";

/// Formats seconds for a person; `None`, NaN, infinite or negative → "—".
///
/// ```
/// use rpo_exporter::human::duration;
/// assert_eq!(duration(Some(0.1234)), "123 ms");
/// assert_eq!(duration(Some(1.234)), "1.23 s");
/// assert_eq!(duration(Some(245.0)), "4 m 05 s");
/// assert_eq!(duration(None), "—");
/// ```
pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => format_seconds(s),
        _ => UNKNOWN.to_string(),
    }
}

fn format_seconds(s: f64) -> String {
    if s < 0.001 && s > 0.0 {
        // Below a millisecond the measurement itself is not that precise;
        // "0 ms" would wrongly read as "exactly nothing".
        return "< 1 ms".to_string();
    }
    if s < 1.0 {
        let ms = (s * 1000.0).round();
        // 0.9996 s rounds to 1000 ms: say "1.00 s" instead.
        if ms < 1000.0 {
            return format!("{ms:.0} ms");
        }
    }
    if s < 10.0 {
        let r = (s * 100.0).round() / 100.0;
        if r < 10.0 {
            return format!("{r:.2} s");
        }
    }
    if s < 60.0 {
        let r = (s * 10.0).round() / 10.0;
        if r < 60.0 {
            return format!("{r:.1} s");
        }
    }
    // From a minute on, whole seconds; split into the two largest units.
    let total = s.round() as u64;
    let (d, h, m, sec) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    // A zero lower unit is dropped: objectives are round ("15 m", not "15 m 00 s").
    match (d, h, m, sec) {
        (0, 0, m, 0) => format!("{m} m"),
        (0, 0, m, sec) => format!("{m} m {sec:02} s"),
        (0, h, 0, _) => format!("{h} h"),
        (0, h, m, _) => format!("{h} h {m:02} m"),
        (d, 0, _, _) => format!("{d} d"),
        (d, h, _, _) => format!("{d} d {h:02} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn picks_a_unit_by_size() {
        let cases = [
            (0.0, "0 ms"),
            (0.0004, "< 1 ms"),
            (0.012, "12 ms"),
            (0.9996, "1.00 s"),
            (1.234, "1.23 s"),
            (9.999, "10.0 s"),
            (12.34, "12.3 s"),
            (59.96, "1 m"),
            (245.0, "4 m 05 s"),
            (900.0, "15 m"),
            (3600.0, "1 h"),
            (3659.0, "1 h"),
            (7380.0, "2 h 03 m"),
            (86_400.0, "1 d"),
            (90_000.0, "1 d 01 h"),
        ];
        for (s, want) in cases {
            assert_eq!(duration(Some(s)), want, "{s}");
        }
    }

    #[test]
    fn unknown_values_are_a_dash() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(f64::NAN)), "—");
        assert_eq!(duration(Some(-1.0)), "—");
        assert_eq!(duration(Some(f64::INFINITY)), "—");
    }
}
