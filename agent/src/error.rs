//! The one error type of every store call (probes, the AWS plumbing, the
//! CloudWatch reader): it lives below `probe/` and `aws/` so that neither
//! imports the other for it.

/// The outcome class of a failed call: it decides how the agent reacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection loss: retry on the next round.
    Transient,
    /// The store is set up wrongly (missing table, no replica, versioning
    /// off…): report it as a configuration problem, not as lag.
    Config,
}

/// A failed probe call. `code` is a bounded label value; `message` is free of
/// secrets (probes never put credentials or passwords in it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed ({code}): {message}")]
pub struct ProbeError {
    pub op: &'static str,
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

impl ProbeError {
    pub fn transient(
        op: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ProbeError {
            op,
            code: code.into(),
            message: message.into(),
            class: ErrorClass::Transient,
        }
    }

    pub fn config(op: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        ProbeError {
            op,
            code: code.into(),
            message: message.into(),
            class: ErrorClass::Config,
        }
    }
}
