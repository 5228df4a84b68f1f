//! The lease table: one DynamoDB item per (fleet, target) saying which agent
//! writes the target's canaries, and one roster item per fleet where every
//! live agent beats. Only conditional writes change a lease, so two agents
//! never both get it.
//!
//! A lease item (`pk` = `rpo-lease#<fleet>#<target>`): `owner` (absent once
//! released), `counter` (grows by one on every grant: the fencing token the
//! holder stamps on its canaries), `beat` (grows on every renewal, so
//! contenders see the holder alive) and `lags` (the holder's recent lag
//! estimates, region → µs, so a successor does not start cold).
//! The roster (`pk` = `rpo-fleet#<fleet>`): `members`, agent id → beat.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;

use crate::aws::errors::from_sdk;
use crate::aws::CountAttempts;
use crate::error::ProbeError;

/// BatchGetItem reads at most 100 keys a call.
const BATCH: usize = 100;

/// The error code of a conditional write that lost a race.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// The key of a target's lease.
pub fn lease_key(fleet: &str, target: &str) -> String {
    format!("rpo-lease#{fleet}#{target}")
}

/// The key of a fleet's roster.
pub fn roster_key(fleet: &str) -> String {
    format!("rpo-fleet#{fleet}")
}

/// One lease as read from the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    pub owner: Option<String>,
    pub counter: u64,
    pub beat: u64,
    /// The holder's lag estimates: replica region → lag.
    pub lags: Vec<(String, Duration)>,
}

impl Lease {
    /// What a contender watches: unchanged for a whole lease means the
    /// holder is gone.
    pub fn version(&self) -> (Option<&str>, u64, u64) {
        (self.owner.as_deref(), self.counter, self.beat)
    }
}

/// What one read of the table found.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Leases by key; a key without an item has no entry.
    pub leases: HashMap<String, Lease>,
    /// Roster members and their beats.
    pub members: HashMap<String, u64>,
}

/// The lease table of one fleet.
pub struct LeaseTable {
    pub client: Client,
    pub table: String,
    pub count: CountAttempts,
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn parse_lease(item: &HashMap<String, AttributeValue>) -> Lease {
    let lags = item
        .get("lags")
        .and_then(|v| v.as_m().ok())
        .map(|m| {
            let mut v: Vec<(String, Duration)> = m
                .iter()
                .filter_map(|(region, us)| {
                    let us: u64 = us.as_n().ok()?.parse().ok()?;
                    Some((region.clone(), Duration::from_micros(us)))
                })
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    Lease {
        owner: item
            .get("owner")
            .and_then(|v| v.as_s().ok())
            .filter(|o| !o.is_empty())
            .cloned(),
        counter: num(item, "counter"),
        beat: num(item, "beat"),
        lags,
    }
}

fn lags_value(lags: &[(String, Duration)]) -> AttributeValue {
    AttributeValue::M(
        lags.iter()
            .map(|(r, d)| (r.clone(), n(d.as_micros() as u64)))
            .collect(),
    )
}

impl LeaseTable {
    /// Creates the table (partition key `pk`, on-demand); an existing table
    /// is fine. Returns whether it was created now.
    pub async fn create(&self) -> Result<bool, ProbeError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            ProbeError::config("CreateTable", "construction", e.to_string())
        };
        let res = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("CreateTable", &e));
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code == "ResourceInUseException" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks that the table exists with partition key `pk` (a string) and
    /// no sort key: `None` when fine, else the problem and its fix.
    pub async fn problem(&self) -> Result<Option<String>, ProbeError> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| {
                let mut err = from_sdk("DescribeTable", &e);
                if err.code == "ResourceNotFoundException" {
                    err.message = format!(
                        "the fleet's lease table `{}` does not exist: run `rpo-agent init` (or `check --fix`), or create it with partition key `pk` (string)",
                        self.table
                    );
                }
                err
            })?;
        let t = out.table();
        let keys = t.map(|t| t.key_schema()).unwrap_or_default();
        let pk_is_s = t
            .map(|t| t.attribute_definitions())
            .unwrap_or_default()
            .iter()
            .any(|a| a.attribute_name() == "pk" && a.attribute_type().as_str() == "S");
        let ok = keys.len() == 1 && keys[0].attribute_name() == "pk" && pk_is_s;
        Ok((!ok).then(|| {
            format!(
                "the lease table `{}` must have exactly one key, partition key `pk` of type string: create another table (`rpo-agent init` does) and name it in [fleet] table",
                self.table
            )
        }))
    }

    fn key(pk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_string(), s(pk))])
    }

    /// Reads the roster and every lease of `keys` (consistent reads,
    /// BatchGetItem in calls of 100 keys).
    pub async fn read(&self, roster: &str, keys: &[String]) -> Result<Snapshot, ProbeError> {
        let mut all: Vec<&str> = vec![roster];
        all.extend(keys.iter().map(String::as_str));
        let mut snap = Snapshot::default();
        for chunk in all.chunks(BATCH) {
            let mut want = KeysAndAttributes::builder()
                .consistent_read(true)
                .set_keys(Some(chunk.iter().map(|k| Self::key(k)).collect()))
                .build()
                .map_err(|e| {
                    ProbeError::transient("BatchGetItem", "construction", e.to_string())
                })?;
            // Unprocessed keys (throttling) are asked again, a few times.
            for _ in 0..4 {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, want.clone())
                    .customize()
                    .interceptor(self.count.clone())
                    .send()
                    .await
                    .map_err(|e| from_sdk("BatchGetItem", &e))?;
                for item in out
                    .responses
                    .as_ref()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) else {
                        continue;
                    };
                    if pk == roster {
                        if let Some(m) = item.get("members").and_then(|v| v.as_m().ok()) {
                            for (agent, beat) in m {
                                let beat = beat.as_n().ok().and_then(|b| b.parse().ok());
                                snap.members.insert(agent.clone(), beat.unwrap_or(0));
                            }
                        }
                    } else {
                        snap.leases.insert(pk.clone(), parse_lease(item));
                    }
                }
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys.is_empty() => want = rest,
                    _ => break,
                }
            }
        }
        Ok(snap)
    }

    /// Sets this agent's beat in the roster (creating the roster first).
    pub async fn beat(&self, roster: &str, me: &str, beat: u64) -> Result<(), ProbeError> {
        for attempt in 0..2 {
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(roster)))
                .update_expression("SET members.#me = :b")
                .condition_expression("attribute_exists(members)")
                .expression_attribute_names("#me", me)
                .expression_attribute_values(":b", n(beat))
                .customize()
                .interceptor(self.count.clone())
                .send()
                .await
                .map_err(|e| from_sdk("UpdateItem", &e));
            match res {
                Ok(_) => return Ok(()),
                Err(e) if e.code == CONDITION_FAILED && attempt == 0 => {
                    // No roster yet: create it (another agent may win; fine).
                    let created = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .item("pk", s(roster))
                        .item("members", AttributeValue::M(HashMap::new()))
                        .condition_expression("attribute_not_exists(pk)")
                        .customize()
                        .interceptor(self.count.clone())
                        .send()
                        .await
                        .map_err(|e| from_sdk("PutItem", &e));
                    match created {
                        Ok(_) => {}
                        Err(e) if e.code == CONDITION_FAILED => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes a member that stopped beating (only if its beat is still `beat`).
    pub async fn drop_member(
        &self,
        roster: &str,
        agent: &str,
        beat: u64,
    ) -> Result<(), ProbeError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(roster)))
            .update_expression("REMOVE members.#a")
            .condition_expression("members.#a = :b")
            .expression_attribute_names("#a", agent)
            .expression_attribute_values(":b", n(beat))
            .customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("UpdateItem", &e));
        match res {
            Err(e) if e.code != CONDITION_FAILED => Err(e),
            _ => Ok(()),
        }
    }

    /// Takes lease `pk` for `me`, if it is still as `seen` (None: no item).
    /// Returns the new counter (the fencing token).
    pub async fn grant(&self, pk: &str, me: &str, seen: Option<&Lease>) -> Result<u64, ProbeError> {
        let counter = seen.map_or(0, |l| l.counter) + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("owner", s(me))
            .item("counter", n(counter))
            .item("beat", n(0));
        put = match seen {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(l) => {
                if !l.lags.is_empty() {
                    put = put.item("lags", lags_value(&l.lags));
                }
                let p = put
                    .expression_attribute_names("#c", "counter")
                    .expression_attribute_names("#b", "beat")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_values(":c", n(l.counter))
                    .expression_attribute_values(":b", n(l.beat));
                match &l.owner {
                    Some(o) => p
                        .condition_expression("#c = :c AND #b = :b AND #o = :o")
                        .expression_attribute_values(":o", s(o)),
                    None => {
                        p.condition_expression("#c = :c AND #b = :b AND attribute_not_exists(#o)")
                    }
                }
            }
        };
        put.customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("PutItem", &e))?;
        Ok(counter)
    }

    /// Renews `pk`, held by `me` with token `counter`, keeping `lags` in it.
    pub async fn renew(
        &self,
        pk: &str,
        me: &str,
        counter: u64,
        lags: &[(String, Duration)],
    ) -> Result<(), ProbeError> {
        let mut up = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk)))
            .condition_expression("#o = :o AND #c = :c")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#b", "beat")
            .expression_attribute_values(":o", s(me))
            .expression_attribute_values(":c", n(counter))
            .expression_attribute_values(":one", n(1));
        up = if lags.is_empty() {
            up.update_expression("SET #b = #b + :one")
        } else {
            up.update_expression("SET #b = #b + :one, lags = :l")
                .expression_attribute_values(":l", lags_value(lags))
        };
        up.customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("UpdateItem", &e))?;
        Ok(())
    }

    /// Gives up `pk` (held by `me` with token `counter`): a contender may
    /// take it at once, without waiting for a lease to run out.
    pub async fn release(&self, pk: &str, me: &str, counter: u64) -> Result<(), ProbeError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk)))
            .update_expression("REMOVE #o SET #b = #b + :one")
            .condition_expression("#o = :o AND #c = :c")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#b", "beat")
            .expression_attribute_values(":o", s(me))
            .expression_attribute_values(":c", n(counter))
            .expression_attribute_values(":one", n(1))
            .customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| from_sdk("UpdateItem", &e));
        match res {
            // Someone else holds it already: nothing to give up.
            Err(e) if e.code != CONDITION_FAILED => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_item_parses_with_its_lags_and_a_released_one_has_no_owner() {
        let item = HashMap::from([
            ("pk".to_string(), s("rpo-lease#f#t")),
            ("owner".to_string(), s("a1")),
            ("counter".to_string(), n(7)),
            ("beat".to_string(), n(42)),
            (
                "lags".to_string(),
                AttributeValue::M(HashMap::from([(
                    "ap-northeast-3".to_string(),
                    n(2_600_000),
                )])),
            ),
        ]);
        let l = parse_lease(&item);
        assert_eq!(l.owner.as_deref(), Some("a1"));
        assert_eq!((l.counter, l.beat), (7, 42));
        assert_eq!(
            l.lags,
            vec![("ap-northeast-3".to_string(), Duration::from_millis(2600))]
        );
        let mut released = item.clone();
        released.remove("owner");
        assert_eq!(parse_lease(&released).owner, None);
        assert_eq!(parse_lease(&released).version(), (None, 7, 42));
        assert_eq!(lease_key("f", "t"), "rpo-lease#f#t");
        assert_eq!(roster_key("f"), "rpo-fleet#f");
    }
}
