//! Turns AWS SDK errors into `ProbeError`s with a bounded `code` label.
//!
//! Service errors keep AWS's own error code (a finite set per service);
//! transport failures map to a handful of agent codes (`timeout`, `connect`,
//! `dispatch`, `response`, `construction`), never to free text.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{ErrorClass, ProbeError};

/// AWS error codes that mean the set-up is wrong rather than the store busy.
const CONFIG_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "NoSuchBucket",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ValidationException",
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
];

/// Classifies an SDK error of operation `op`.
pub fn from_sdk<E>(op: &'static str, err: &SdkError<E, HttpResponse>) -> ProbeError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = chain(err);
    let (code, class) = match err {
        SdkError::ServiceError(s) => {
            let code = match s.err().code() {
                Some(c) => c.to_string(),
                None => format!("http_{}", s.raw().status().as_u16()),
            };
            let class = if CONFIG_CODES.contains(&code.as_str()) {
                ErrorClass::Config
            } else {
                ErrorClass::Transient
            };
            (code, class)
        }
        SdkError::TimeoutError(_) => ("timeout".to_string(), ErrorClass::Transient),
        SdkError::DispatchFailure(_) if message.contains("credentials") => {
            return ProbeError {
                op,
                code: "credentials".into(),
                message: format!("no usable AWS credentials: {message} (give the task an IAM role, or set AWS_PROFILE / AWS_ACCESS_KEY_ID)"),
                class: ErrorClass::Config,
            };
        }
        SdkError::DispatchFailure(d) => {
            let code = if d.is_timeout() {
                "timeout"
            } else if d.is_io() {
                "connect"
            } else {
                "dispatch"
            };
            (code.to_string(), ErrorClass::Transient)
        }
        SdkError::ResponseError(_) => ("response".to_string(), ErrorClass::Transient),
        _ => ("construction".to_string(), ErrorClass::Config),
    };
    ProbeError {
        op,
        code,
        message,
        class,
    }
}

/// The error and its sources, joined with ": " (no Debug dumps in logs).
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
