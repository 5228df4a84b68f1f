//! One AWS plumbing for the whole process: one HTTP client (TLS roots,
//! connection pool), one credential chain and identity cache, and one SDK
//! client per (service, region, `endpoint_url`), shared by every target.
//!
//! Why: building an SDK configuration per target and region loaded the
//! system's TLS roots into a new HTTP client each time, opened a pool per
//! client and fetched credentials once per client (on ECS, one call to the
//! container credentials endpoint each): about 0.6 MiB per target, so a
//! sidecar with 64 MiB fitted ~75 targets. Now a target costs only what is
//! truly its own (probe, tracker, planner, metric handles), and
//! `rpo_api_requests_total` stays exact per target because each call carries
//! its target's `CountAttempts` (see `attempts.rs`), not the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rpo_exporter::Metrics;
use tokio::sync::OnceCell;

use super::attempts::CountAttempts;
use super::bounded::Bounded;

/// Idle keep-alive connections kept per host (one host per service and
/// region on AWS). Each costs tens of KiB of buffers; hyper's default keeps
/// every connection a burst ever opened (up to its 90 s idle timeout), so
/// memory grew with the number of targets that happened to call at once.
const POOL_IDLE_PER_HOST: usize = 16;

/// AWS requests in flight at once, for the whole process (`bounded.rs`).
/// 1000 targets at a 30 s interval need about 2 on AWS (≈ 130 requests/s
/// at ≈ 10 ms each); the cap only bites when a store slows down.
pub const MAX_IN_FLIGHT: usize = 64;

/// (region, endpoint_url): what tells two SDK configurations apart.
type Key = (String, Option<String>);

/// The process's AWS plumbing; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AwsPlumbing {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Metrics,
    http: SharedHttpClient,
    /// Loaded once, lazily (the credential chain and region settings).
    base: OnceCell<SdkConfig>,
    configs: Mutex<HashMap<Key, SdkConfig>>,
    dynamodb: Mutex<HashMap<Key, aws_sdk_dynamodb::Client>>,
    s3: Mutex<HashMap<Key, aws_sdk_s3::Client>>,
    cloudwatch: Mutex<HashMap<Key, aws_sdk_cloudwatch::Client>>,
    secretsmanager: Mutex<HashMap<Key, aws_sdk_secretsmanager::Client>>,
    elasticache: Mutex<HashMap<Key, aws_sdk_elasticache::Client>>,
}

/// The one HTTPS client: rustls with aws-lc as the SDK's default client, and
/// proxies from the environment as it honours them. The SDK keeps one
/// connector (and pool) per distinct timeout setting inside it, so every
/// service and region shares it.
fn https_client() -> SharedHttpClient {
    Builder::new()
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .build_with_connector_fn(|settings, components| {
            let mut b = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            b.set_connector_settings(settings.cloned());
            if let Some(c) = components {
                b.set_sleep_impl(c.sleep_impl());
            }
            b.set_proxy_config(Some(ProxyConfig::from_env()));
            b.build()
        })
}

/// Looks `key` up in `map`, or builds and remembers it. The lock is never
/// held across an `.await`: `make` is synchronous.
fn cached<C: Clone>(map: &Mutex<HashMap<Key, C>>, key: Key, make: impl FnOnce() -> C) -> C {
    let mut m = map.lock().unwrap();
    m.entry(key).or_insert_with(make).clone()
}

impl AwsPlumbing {
    /// No network: credentials are fetched on the first call that needs them.
    pub fn new(metrics: Metrics) -> Self {
        AwsPlumbing {
            inner: Arc::new(Inner {
                metrics,
                http: Bounded::new(https_client(), MAX_IN_FLIGHT),
                base: OnceCell::new(),
                configs: Mutex::default(),
                dynamodb: Mutex::default(),
                s3: Mutex::default(),
                cloudwatch: Mutex::default(),
                secretsmanager: Mutex::default(),
                elasticache: Mutex::default(),
            }),
        }
    }

    /// The standard credential chain and settings, loaded once. Retries are
    /// few and fast: the scheduler retries on its own rhythm, and a long SDK
    /// back-off would blur the timing of reads. `region` only spares the
    /// loader a region lookup (every client sets its own).
    async fn base(&self, region: &str) -> &SdkConfig {
        self.inner
            .base
            .get_or_init(|| async {
                aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.to_string()))
                    .http_client(self.inner.http.clone())
                    .retry_config(RetryConfig::standard().with_max_attempts(2))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(5))
                            .operation_timeout(Duration::from_secs(12))
                            .build(),
                    )
                    .load()
                    .await
            })
            .await
    }

    /// The SDK configuration for `region` (and an optional custom endpoint):
    /// the base one with the region and endpoint set, so every region shares
    /// the credential cache and the HTTP client.
    pub async fn sdk_config(&self, region: &str, endpoint_url: Option<&str>) -> SdkConfig {
        let key = key(region, endpoint_url);
        if let Some(c) = self.inner.configs.lock().unwrap().get(&key) {
            return c.clone();
        }
        let base = self.base(region).await;
        let mut b = base.to_builder().region(Region::new(region.to_string()));
        if let Some(url) = endpoint_url {
            b = b.endpoint_url(url);
        }
        cached(&self.inner.configs, key, || b.build())
    }

    pub async fn dynamodb(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_dynamodb::Client {
        let sdk = self.sdk_config(region, endpoint_url).await;
        cached(&self.inner.dynamodb, key(region, endpoint_url), || {
            aws_sdk_dynamodb::Client::new(&sdk)
        })
    }

    pub async fn s3(&self, region: &str, endpoint_url: Option<&str>) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config(region, endpoint_url).await;
        // A custom endpoint (the lab, an IP) cannot serve `bucket.host`
        // names; real AWS (and VPC endpoints by DNS name) use
        // virtual-hosted style.
        let custom = endpoint_url.is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        cached(&self.inner.s3, key(region, endpoint_url), || {
            let conf = aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(custom)
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        })
    }

    pub async fn cloudwatch(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_cloudwatch::Client {
        let sdk = self.sdk_config(region, endpoint_url).await;
        cached(&self.inner.cloudwatch, key(region, endpoint_url), || {
            aws_sdk_cloudwatch::Client::new(&sdk)
        })
    }

    pub async fn elasticache(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_elasticache::Client {
        let sdk = self.sdk_config(region, endpoint_url).await;
        cached(&self.inner.elasticache, key(region, endpoint_url), || {
            aws_sdk_elasticache::Client::new(&sdk)
        })
    }

    pub async fn secretsmanager(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
    ) -> aws_sdk_secretsmanager::Client {
        let sdk = self.sdk_config(region, endpoint_url).await;
        cached(
            &self.inner.secretsmanager,
            key(region, endpoint_url),
            || aws_sdk_secretsmanager::Client::new(&sdk),
        )
    }

    /// The request counter that a target's calls to `service` in `region`
    /// carry (`rpo_api_requests_total{target,service,op,region}`); an empty
    /// `target` for calls that serve every target (batched CloudWatch reads).
    pub fn counter(&self, target: &str, service: &'static str, region: &str) -> CountAttempts {
        CountAttempts::new(self.inner.metrics.clone(), target, service, region)
    }

    /// The metrics, for the few plumbing-level figures (what a batched
    /// CloudWatch read requested per target).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

fn key(region: &str, endpoint_url: Option<&str>) -> Key {
    (region.to_string(), endpoint_url.map(str::to_string))
}
