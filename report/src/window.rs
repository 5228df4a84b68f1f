//! The report's window from the command line: `--last 30d`, or `--from` /
//! `--to` as RFC 3339 times, Unix seconds, `now` or `now-2h`. Both ends
//! are moved down to a whole minute, so the window is whole time slices.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gather::SLICE;
use super::model::Window;

/// Unix seconds of `s`, relative to `now` where it says so.
pub fn parse_time(flag: &str, s: &str, now: f64) -> Result<f64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d = humantime::parse_duration(ago)
            .map_err(|e| format!("{flag} {s:?}: {e} (write e.g. now-2h)"))?;
        return Ok(now - d.as_secs_f64());
    }
    if let Ok(unix) = s.parse::<f64>() {
        return Ok(unix);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!(
            "{flag} {s:?} is not a time: write RFC 3339 (2026-12-01T09:00:00Z), Unix seconds, now or now-2h"
        )
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64())
}

/// The window of `--last` or `--from`/`--to` (default: the last 30 days).
pub fn resolve(
    last: Option<Duration>,
    from: Option<&str>,
    to: Option<&str>,
    now: f64,
) -> Result<Window, String> {
    let floor = |t: f64| (t / SLICE).floor() * SLICE;
    let to_t = match to {
        Some(s) => parse_time("--to", s, now)?,
        None => now,
    };
    if to_t > now + SLICE {
        return Err(format!(
            "--to {} is in the future: the report covers what Prometheus already holds",
            fmt(to_t)
        ));
    }
    let from_t = match (last, from) {
        (Some(_), Some(_)) => return Err("give --last or --from, not both".into()),
        (Some(d), None) => to_t - d.as_secs_f64(),
        (None, Some(s)) => parse_time("--from", s, now)?,
        (None, None) => to_t - 30.0 * 86_400.0,
    };
    let w = Window {
        from: floor(from_t),
        to: floor(to_t.min(now)),
    };
    if w.to - w.from < SLICE {
        return Err(format!(
            "the window {} → {} is shorter than one time slice (1 minute): widen --from/--to or --last",
            fmt(from_t),
            fmt(to_t)
        ));
    }
    Ok(w)
}

fn fmt(t: f64) -> String {
    let st = UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0));
    humantime::format_rfc3339_seconds(st).to_string()
}

/// Now, as Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_780_000_000.0;

    #[test]
    fn last_ends_at_the_last_whole_minute() {
        let w = resolve(Some(Duration::from_secs(3600)), None, None, NOW + 17.0).unwrap();
        assert_eq!(w.to % 60.0, 0.0);
        assert_eq!(w.to - w.from, 3600.0);
    }

    #[test]
    fn times_parse_in_every_written_form() {
        assert_eq!(parse_time("--from", "now-1h", NOW).unwrap(), NOW - 3600.0);
        assert_eq!(parse_time("--from", "1780000000", NOW).unwrap(), NOW);
        let t = parse_time("--from", "2026-05-28T20:26:40Z", NOW).unwrap();
        assert_eq!(t, NOW);
        let e = parse_time("--from", "yesterday", NOW).unwrap_err();
        assert!(e.contains("--from") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn bad_windows_say_why() {
        assert!(
            resolve(Some(Duration::from_secs(60)), Some("now-1h"), None, NOW)
                .unwrap_err()
                .contains("not both")
        );
        assert!(resolve(None, Some("now-10s"), None, NOW)
            .unwrap_err()
            .contains("shorter"));
        assert!(resolve(None, None, Some("now-0s"), NOW).is_ok());
        let future = format!("{}", NOW + 3600.0);
        assert!(resolve(None, None, Some(&future), NOW)
            .unwrap_err()
            .contains("future"));
    }
}
