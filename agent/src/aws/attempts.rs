//! Counts every request attempt the SDK sends, retries included: each one is
//! billed, so `rpo_api_requests_total` must see them all, not just the calls
//! the probe made.
//!
//! SDK clients are shared by every target (`plumbing.rs`), so the counter
//! rides on each call (`.customize().interceptor(counter.clone())`, see
//! `Counted`), not on the client: that is what keeps the count per target.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use rpo_exporter::Metrics;
use std::sync::Arc;

/// An interceptor for one (target, service, region); cloning is one `Arc`.
#[derive(Clone)]
pub struct CountAttempts(Arc<Labels>);

struct Labels {
    metrics: Metrics,
    target: String,
    service: &'static str,
    region: String,
}

impl CountAttempts {
    pub fn new(metrics: Metrics, target: &str, service: &'static str, region: &str) -> Self {
        CountAttempts(Arc::new(Labels {
            metrics,
            target: target.to_string(),
            service,
            region: region.to_string(),
        }))
    }
}

impl std::fmt::Debug for CountAttempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CountAttempts({}, {}, {})",
            self.0.target, self.0.service, self.0.region
        )
    }
}

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name())
            .unwrap_or("unknown");
        let l = &self.0;
        l.metrics.api_request(&l.target, l.service, op, &l.region);
        Ok(())
    }
}
