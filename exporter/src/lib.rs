//! rpo-exporter: everything the agent shows to the outside world.
//!
//! The agent measures; this crate only presents. It owns the metric families
//! (`metrics`), the shared per-target status that the status page and
//! `/readyz` read (`status`), and the HTTP side (`server`, `healthcheck`).
//! Nothing here talks to AWS or to a database.

pub mod metrics;
pub mod status;

pub use metrics::{Metrics, ReplicaLabels, ReplicaMetrics};
pub use status::{ReplicaStatus, StatusBoard};
