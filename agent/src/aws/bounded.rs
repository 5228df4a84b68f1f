//! A cap on AWS requests in flight for the whole process.
//!
//! Why: every request in flight holds a connection and its buffers (tens of
//! KiB). With 1000 targets whose stores slow down (a stall of the API, a
//! saturated endpoint), requests pile up, each attempt waits for its timeout,
//! and memory grows with the number of targets; the retries then make the
//! overload worse. With the cap, requests beyond it wait for a permit
//! (inside their attempt timeout, so a long queue ends as a `timeout` error
//! rather than as memory), and memory stays bounded by the cap.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::Semaphore;

/// Wraps an HTTP client so that at most `limit` requests are in flight.
#[derive(Debug, Clone)]
pub struct Bounded {
    inner: SharedHttpClient,
    permits: Arc<Semaphore>,
}

impl Bounded {
    pub fn new(inner: SharedHttpClient, limit: usize) -> SharedHttpClient {
        SharedHttpClient::new(Bounded {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
        })
    }
}

impl HttpClient for Bounded {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BoundedConnector {
            inner: self.inner.http_connector(settings, components),
            permits: self.permits.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct BoundedConnector {
    inner: SharedHttpConnector,
    permits: Arc<Semaphore>,
}

impl HttpConnector for BoundedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let permits = self.permits.clone();
        HttpConnectorFuture::new(async move {
            // Held until the response head arrives (bodies here are small).
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            inner.call(request).await
        })
    }
}
