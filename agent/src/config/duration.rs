//! Human durations ("5s", "250ms", "15m") with the error text users need.

use std::time::Duration;

/// Parses a human duration; the error says what a valid one looks like.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "`{text}` is not a duration ({e}); write it like \"500ms\", \"5s\", \"15m\" or \"1h\""
        )
    })
}
