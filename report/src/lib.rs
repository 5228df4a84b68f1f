//! `rpo-agent report`: RPO attainment, episodes, failovers and lag figures
//! for DR drills and audits, read from a real Prometheus that scraped the
//! agent. Nothing here talks to a store or to AWS: `prom` is the only
//! network code (Prometheus's HTTP API), `gather` turns queries into the
//! `model`, and `markdown` / `html` (with `chart`) only format it.

pub mod analysis;
pub mod chart;
pub mod gather;
pub mod html;
pub mod markdown;
pub mod model;
pub mod prom;
pub mod window;

pub use gather::{gather, Request};
pub use model::Report;
pub use prom::{Prom, PromAuth, PromError};

use html::fmt_time;
use model::Window;

/// Why a report could not be made. Each message names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Prom(#[from] PromError),

    #[error("Prometheus at {prometheus} has no rpo-agent series between {} and {}: is it scraping the agent's /metrics (see `up` in Prometheus), and does the window cover a time it did?", fmt_time(window.from), fmt_time(window.to))]
    NoData { prometheus: String, window: Window },

    #[error("no target named {name:?} has data in the window; targets that do: {}", known.join(", "))]
    UnknownTarget { name: String, known: Vec<String> },
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

/// The report written out in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            s.push('\n');
            s
        }
    }
}
