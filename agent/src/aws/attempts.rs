//! Counts every request attempt the SDK sends, retries included: each one is
//! billed, so `rpo_api_requests_total` must see them all, not just the calls
//! the probe made.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use rpo_exporter::Metrics;

/// An interceptor bound to one client (target, service, region).
#[derive(Clone)]
pub struct CountAttempts {
    pub metrics: Metrics,
    pub target: String,
    pub service: &'static str,
    pub region: String,
}

impl std::fmt::Debug for CountAttempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CountAttempts({}, {}, {})",
            self.target, self.service, self.region
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
        self.metrics
            .api_request(&self.target, self.service, op, &self.region);
        Ok(())
    }
}
