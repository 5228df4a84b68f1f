//! rpo-exporter: everything the agent shows to the outside world.
//!
//! The agent measures; this crate only presents. It owns the metric families
//! (`metrics`), the shared per-target status that the status page and
//! `/readyz` read (`status`), and the HTTP side (`server`, `healthcheck`).
//! Nothing here talks to AWS or to a database.

pub mod basic_auth;
pub mod emf;
pub mod emf_sink;
pub mod healthcheck;
pub mod human;
pub mod metrics;
pub mod page;
pub mod pairs;
mod routes;
pub mod server;
pub mod status;
pub mod web_config;

pub use healthcheck::HealthcheckError;
pub use metrics::{Chunks, Exposition, Metrics, ReplicaLabels, ReplicaMetrics};
pub use routes::METRICS_CONTENT_TYPE;
pub use server::{bind, serve, serve_with, ServerError};
pub use status::{FleetSeat, ReplicaStatus, StatusBoard};
pub use web_config::{WebConfig, WebConfigError};
