//! DynamoDB global tables (version 2019.11.21).
//!
//! One canary item per agent and route, overwritten each round: `PutItem` in
//! the source region, `GetItem ConsistentRead=true` in each replica region.
//! The table's key schema is discovered with `DescribeTable`, never assumed:
//! the partition key gets `rpo-canary#<agent>#<target>`, a sort key (if any)
//! gets `rpo-canary` (or 0 when numeric). Items carry `ttl` = now + 1 day so
//! the canaries of agents that went away expire by themselves.
//!
//! One more item per target, `rpo-lag-hint#<target>`, keeps the lags last
//! measured (attribute `lags`, a map of replica region to µs), rewritten
//! every 10 minutes by whichever agent measures the target, read once at
//! start: a restarted agent or a new task searches its first canary around
//! that lag instead of from nothing.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;

use crate::aws::cloudwatch::AwsLagQuery;
use crate::aws::errors::from_sdk;
use crate::aws::metric_specs::DYNAMODB_REPLICATION_LATENCY;
use crate::aws::{AwsPlumbing, CountAttempts};
use crate::canary::{hint_key, item_key, unix_micros};
use crate::config::{Direction, Endpoint, TargetConfig};
use crate::probe::{Canary, Finding, Probe, ProbeError, StoredCanaries, StoredCanary, LEASE_LOST};
use crate::route::Route;
use crate::tracker::Observation;

const CANARY_TTL_SECONDS: u64 = 86_400;
/// At a takeover, a side whose region does not answer within this is taken
/// as unknown: the replicas' canaries must not wait for a dead source.
const STORED_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// A lag hint outlives its last writer by a week, then expires.
const HINT_TTL_SECONDS: u64 = 7 * 86_400;

/// A region, its (shared) client, and this target's request counter.
pub struct Side {
    pub region: String,
    pub client: Client,
    pub count: CountAttempts,
}

#[derive(Debug, Clone)]
struct Schema {
    partition_key: String,
    sort_key: Option<(String, AttributeValue)>,
}

/// The probe of one DynamoDB route.
pub struct DynamoProbe {
    table: String,
    item_key: String,
    hint_key: String,
    agent_id: String,
    source: Side,
    replicas: Vec<Side>,
    schema: RwLock<Option<Schema>>,
}

impl DynamoProbe {
    pub fn new(
        table: String,
        item_key: String,
        hint_key: String,
        agent_id: String,
        source: Side,
        replicas: Vec<Side>,
    ) -> Self {
        DynamoProbe {
            table,
            item_key,
            hint_key,
            agent_id,
            source,
            replicas,
            schema: RwLock::new(None),
        }
    }

    fn schema(&self) -> Result<Schema, ProbeError> {
        self.schema.read().unwrap().clone().ok_or_else(|| {
            ProbeError::transient(
                "DescribeTable",
                "not_prepared",
                "the table was not described yet",
            )
        })
    }

    /// `PutItem` of `item` in the source region (canaries and the lag hint).
    /// With `fence` (fleet mode) the item gets `lease` = the token, and the
    /// write is refused (`lease_lost`) when the item already carries a newer
    /// holder's token.
    async fn put_in_source(
        &self,
        mut item: HashMap<String, AttributeValue>,
        fence: Option<u64>,
    ) -> Result<(), ProbeError> {
        let mut put = self.source.client.put_item().table_name(&self.table);
        if let Some(token) = fence {
            item.insert("lease".into(), AttributeValue::N(token.to_string()));
            put = put
                .condition_expression("attribute_not_exists(#l) OR #l <= :l")
                .expression_attribute_names("#l", "lease")
                .expression_attribute_values(":l", AttributeValue::N(token.to_string()));
        }
        put.set_item(Some(item))
            .customize()
            .interceptor(self.source.count.clone())
            .send()
            .await
            .map_err(|e| {
                let err = from_sdk("PutItem", &e);
                if fence.is_some() && err.code == "ConditionalCheckFailedException" {
                    return ProbeError::transient(
                        "PutItem",
                        LEASE_LOST,
                        "the canary item carries a newer lease: another agent of the fleet writes this target now",
                    );
                }
                err
            })?;
        Ok(())
    }

    /// The canary item as one side holds it now (consistent read).
    async fn stored_at(
        (table, key, client, count): (
            String,
            HashMap<String, AttributeValue>,
            Client,
            CountAttempts,
        ),
    ) -> Result<Option<StoredCanary>, ProbeError> {
        let out = client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .customize()
            .interceptor(count)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &e))?;
        let n = |name: &str| {
            out.item()
                .and_then(|i| i.get(name))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok(n("seq")
            .zip(n("written_at_us"))
            .map(|(seq, written_at_us)| StoredCanary {
                seq,
                written_at_us,
                lease: n("lease"),
            }))
    }

    fn key(&self, s: &Schema) -> HashMap<String, AttributeValue> {
        Self::key_of(s, &self.item_key)
    }

    fn key_of(s: &Schema, partition: &str) -> HashMap<String, AttributeValue> {
        let mut key = HashMap::new();
        key.insert(
            s.partition_key.clone(),
            AttributeValue::S(partition.to_string()),
        );
        if let Some((name, value)) = &s.sort_key {
            key.insert(name.clone(), value.clone());
        }
        key
    }

    async fn describe(
        &self,
        side: &Side,
    ) -> Result<aws_sdk_dynamodb::types::TableDescription, ProbeError> {
        let out = side
            .client
            .describe_table()
            .table_name(&self.table)
            .customize()
            .interceptor(side.count.clone())
            .send()
            .await
            .map_err(|e| {
                let mut err = from_sdk("DescribeTable", &e);
                if err.code == "ResourceNotFoundException" {
                    err.message = format!(
                        "table `{}` does not exist in {}: create it, or add the region as a replica of the global table",
                        self.table, side.region
                    );
                }
                err
            })?;
        out.table.ok_or_else(|| {
            ProbeError::transient(
                "DescribeTable",
                "response",
                "DescribeTable returned no table",
            )
        })
    }
}

/// Reads the key schema, refusing key types a canary key cannot fill.
fn schema_of(
    table: &str,
    d: &aws_sdk_dynamodb::types::TableDescription,
) -> Result<Schema, ProbeError> {
    let type_of = |name: &str| {
        d.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().clone())
    };
    let mut partition_key = None;
    let mut sort_key = None;
    for k in d.key_schema() {
        let name = k.attribute_name().to_string();
        let ty = type_of(&name);
        match (k.key_type(), ty) {
            (KeyType::Hash, Some(ScalarAttributeType::S)) => partition_key = Some(name),
            (KeyType::Range, Some(ScalarAttributeType::S)) => {
                sort_key = Some((name, AttributeValue::S("rpo-canary".into())))
            }
            (KeyType::Range, Some(ScalarAttributeType::N)) => sort_key = Some((name, AttributeValue::N("0".into()))),
            (kt, ty) => {
                return Err(ProbeError::config(
                    "DescribeTable",
                    "unsupported_key_schema",
                    format!(
                        "table `{table}`: key `{name}` ({kt:?}) has type {ty:?}; the canary needs a string partition key and a string or number sort key — use a dedicated canary table"
                    ),
                ))
            }
        }
    }
    let partition_key = partition_key.ok_or_else(|| {
        ProbeError::config(
            "DescribeTable",
            "unsupported_key_schema",
            format!("table `{table}` has no partition key"),
        )
    })?;
    Ok(Schema {
        partition_key,
        sort_key,
    })
}

#[async_trait]
impl Probe for DynamoProbe {
    async fn aws_lag_queries(&self) -> Vec<AwsLagQuery> {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                AwsLagQuery::new(
                    i,
                    &DYNAMODB_REPLICATION_LATENCY,
                    vec![self.table.clone(), r.region.clone()],
                )
            })
            .collect()
    }

    async fn prepare(&self) -> Result<(), ProbeError> {
        let desc = self.describe(&self.source).await?;
        let schema = schema_of(&self.table, &desc)?;
        let listed: Vec<&str> = desc
            .replicas()
            .iter()
            .filter_map(|r| r.region_name())
            .collect();
        for r in &self.replicas {
            if !listed.contains(&r.region.as_str()) {
                return Err(ProbeError::config(
                    "DescribeTable",
                    "replica_not_in_global_table",
                    format!(
                        "table `{}` in {} does not list {} among its replicas (it lists {:?}): add the replica (UpdateTable ReplicaUpdates Create), or fix the target's replicas",
                        self.table, self.source.region, r.region, listed
                    ),
                ));
            }
            self.describe(r).await?;
        }
        *self.schema.write().unwrap() = Some(schema);
        Ok(())
    }

    async fn housekeeping(&self) -> Vec<Finding> {
        // The canary item carries `ttl` so the items of agents that are gone
        // expire; TTL settings are per region, so every region is checked.
        let mut out = Vec::new();
        for side in std::iter::once(&self.source).chain(&self.replicas) {
            let what = format!(
                "TTL on attribute `ttl` of table {} ({})",
                self.table, side.region
            );
            let res = side
                .client
                .describe_time_to_live()
                .table_name(&self.table)
                .customize()
                .interceptor(side.count.clone())
                .send()
                .await;
            out.push(match res {
                Err(e) => {
                    let err = from_sdk("DescribeTimeToLive", &e);
                    Finding::problem(
                        what,
                        format!(
                            "could not be read ({}: {}); grant dynamodb:DescribeTimeToLive on the table",
                            err.code, err.message
                        ),
                    )
                }
                Ok(out) => {
                    let ttl = out.time_to_live_description();
                    let status = ttl.and_then(|d| d.time_to_live_status()).map(|s| s.as_str());
                    let attr = ttl.and_then(|d| d.attribute_name());
                    match (status, attr) {
                        (Some("ENABLED" | "ENABLING"), Some("ttl")) => Finding::ok(what),
                        (Some("ENABLED" | "ENABLING"), Some(other)) => Finding::problem(
                            what,
                            format!("TTL is on attribute `{other}`, so canary items (which expire through `ttl`) of agents that are gone stay forever; only one TTL attribute is possible per table, so delete old canary items (keys rpo-canary#…) from time to time, or move TTL to `ttl`"),
                        ),
                        _ => Finding::problem(
                            what,
                            format!(
                                "TTL is off: canary items of agents that are gone stay forever; enable it: aws dynamodb update-time-to-live --region {} --table-name {} --time-to-live-specification Enabled=true,AttributeName=ttl",
                                side.region, self.table
                            ),
                        ),
                    }
                }
            });
        }
        out
    }

    async fn write(&self, canary: Canary) -> Result<(), ProbeError> {
        let s = self.schema()?;
        let ttl = canary.written_at_us / 1_000_000 + CANARY_TTL_SECONDS;
        let mut item = self.key(&s);
        item.insert("seq".into(), AttributeValue::N(canary.seq.to_string()));
        item.insert(
            "written_at_us".into(),
            AttributeValue::N(canary.written_at_us.to_string()),
        );
        item.insert("agent".into(), AttributeValue::S(self.agent_id.clone()));
        item.insert("ttl".into(), AttributeValue::N(ttl.to_string()));
        self.put_in_source(item, canary.lease).await
    }

    async fn read_lag_hint(&self) -> Result<Vec<Option<Duration>>, ProbeError> {
        let s = self.schema()?;
        let out = self
            .source
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key_of(&s, &self.hint_key)))
            .consistent_read(true)
            .customize()
            .interceptor(self.source.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &e))?;
        let lags = out
            .item()
            .and_then(|i| i.get("lags"))
            .and_then(|v| v.as_m().ok());
        Ok(self
            .replicas
            .iter()
            .map(|r| {
                let us = lags?.get(&r.region)?.as_n().ok()?.parse::<u64>().ok()?;
                Some(Duration::from_micros(us))
            })
            .collect())
    }

    async fn write_lag_hint(&self, lags: &[Duration]) -> Result<(), ProbeError> {
        let s = self.schema()?;
        let mut item = Self::key_of(&s, &self.hint_key);
        let by_region = self
            .replicas
            .iter()
            .zip(lags)
            .map(|(r, d)| {
                (
                    r.region.clone(),
                    AttributeValue::N(d.as_micros().to_string()),
                )
            })
            .collect();
        item.insert("lags".into(), AttributeValue::M(by_region));
        item.insert("agent".into(), AttributeValue::S(self.agent_id.clone()));
        let ttl = unix_micros() / 1_000_000 + HINT_TTL_SECONDS;
        item.insert("ttl".into(), AttributeValue::N(ttl.to_string()));
        self.put_in_source(item, None).await
    }

    /// Every side is read at once, and a side that does not answer (its
    /// region is down: the very case a takeover is for) is only `None`:
    /// the replicas' canaries still give the data at risk.
    async fn stored_canaries(&self) -> Result<StoredCanaries, ProbeError> {
        let s = self.schema()?;
        let mut sides = tokio::task::JoinSet::new();
        let read = |side: &Side, i: usize| {
            let probe = (
                self.table.clone(),
                self.key(&s),
                side.client.clone(),
                side.count.clone(),
            );
            async move {
                let read = tokio::time::timeout(STORED_READ_TIMEOUT, Self::stored_at(probe));
                let res = read.await.unwrap_or_else(|_| {
                    Err(ProbeError::transient(
                        "GetItem",
                        "timeout",
                        "no answer within 3 s",
                    ))
                });
                (i, res)
            }
        };
        sides.spawn(read(&self.source, 0));
        for (i, side) in self.replicas.iter().enumerate() {
            sides.spawn(read(side, i + 1));
        }
        let mut found = vec![None; self.replicas.len() + 1];
        while let Some(Ok((i, res))) = sides.join_next().await {
            match res {
                Ok(c) => {
                    tracing::debug!(side = i, canary = ?c, "canary state read");
                    found[i] = c
                }
                Err(e) => tracing::debug!(side = i, "canary state unknown: {e}"),
            }
        }
        let source = found.remove(0);
        Ok(StoredCanaries {
            source,
            replicas: found,
        })
    }

    async fn read(&self, replica: usize, _awaited: &[u64]) -> Result<Observation, ProbeError> {
        let s = self.schema()?;
        let side = &self.replicas[replica];
        let out = side
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(&s)))
            .consistent_read(true)
            .projection_expression("#s")
            .expression_attribute_names("#s", "seq")
            .customize()
            .interceptor(side.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &e))?;
        let seq = match out.item().and_then(|i| i.get("seq")) {
            None => None,
            Some(AttributeValue::N(n)) => Some(n.parse::<u64>().map_err(|_| {
                ProbeError::transient(
                    "GetItem",
                    "bad_canary",
                    format!("canary item has a non-integer seq `{n}`"),
                )
            })?),
            Some(_) => {
                return Err(ProbeError::transient(
                    "GetItem",
                    "bad_canary",
                    "canary item's seq is not a number",
                ))
            }
        };
        Ok(Observation::UpTo(seq))
    }
}

/// The routes of a DynamoDB target: source → replicas, and with
/// `direction = "both"` one reverse route per replica, which writes its own
/// canary item there and reads it back in the source region.
pub async fn routes(t: &TargetConfig, agent_id: &str, aws: &AwsPlumbing) -> Vec<Route> {
    let mut out = vec![route(t, agent_id, aws, &t.source, &t.replicas, None).await];
    if t.direction == Direction::Both {
        for r in &t.replicas {
            let back = std::slice::from_ref(&t.source);
            out.push(route(t, agent_id, aws, r, back, Some(&r.region)).await);
        }
    }
    out
}

async fn side(t: &TargetConfig, e: &Endpoint, aws: &AwsPlumbing) -> Side {
    Side {
        region: e.region.clone(),
        client: aws.dynamodb(&e.region, e.endpoint_url.as_deref()).await,
        count: aws.counter(&t.name, "dynamodb", &e.region),
    }
}

async fn route(
    t: &TargetConfig,
    agent_id: &str,
    aws: &AwsPlumbing,
    source: &Endpoint,
    replicas: &[Endpoint],
    written_in: Option<&str>,
) -> Route {
    let key = item_key(agent_id, &t.name, written_in);
    let src = side(t, source, aws).await;
    let mut reps = Vec::new();
    for r in replicas {
        reps.push(side(t, r, aws).await);
    }
    let table = t
        .table
        .clone()
        .expect("validated: dynamodb targets have a table");
    let probe = DynamoProbe::new(
        table,
        key.clone(),
        hint_key(&t.name, written_in),
        agent_id.to_string(),
        src,
        reps,
    );
    Route::new(t, source, replicas, key, std::sync::Arc::new(probe))
        .with_aws_reported(t, aws, source)
        .await
}
