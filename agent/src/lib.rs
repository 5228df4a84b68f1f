//! rpo-agent: measures how much data a region failure would lose right now.
//!
//! Probes × targets → a tracker per (target, replica) → metrics and status.
//! `config` parses and validates; `routes` turns targets into probes;
//! `scheduler` owns all timing and runs one writer and one reader per replica
//! for each route; `probe` holds one module per backend, each implementing a
//! single write and a single read; `tracker` and `poll` are pure logic on the
//! monotonic clock.

pub mod agent_id;
pub mod alarms;
pub mod aws;
pub mod canary;
pub mod check;
pub mod config;
pub mod error;
pub mod fleet;
pub mod once;
pub mod poll;
pub mod probe;
pub mod route;
pub mod routes;
pub mod scheduler;
pub mod shutdown;
pub mod tracker;
