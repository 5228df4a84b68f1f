//! Shared AWS plumbing: one HTTP client, credential cache and SDK client per
//! (service, region, endpoint) for the whole process (`plumbing.rs`), error
//! codes, the interceptor that counts every billable request per target, and
//! the batched CloudWatch reader and the AWS lag metrics it reads.

pub mod attempts;
pub mod bounded;
pub mod cloudwatch;
pub mod errors;
pub mod metric_specs;
pub mod plumbing;
pub mod presign;

pub use attempts::CountAttempts;
pub use plumbing::AwsPlumbing;
