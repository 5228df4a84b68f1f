//! Cluster mode: which slots each shard serves (`CLUSTER SLOTS`), and one
//! canary key per shard, made to land there by a hash tag. One key per shard
//! is what lets a lagging shard be seen: a cluster's shards replicate
//! independently, and the target's RPO is its worst shard's.

use redis::Value;

/// Redis Cluster's number of hash slots.
pub const SLOTS: u16 = 16384;

/// The hash slot of `key` (CRC16/XMODEM of the key, or of its `{tag}`).
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let hashed = match b.iter().position(|&c| c == b'{') {
        Some(open) => match b[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &b[open + 1..open + 1 + len],
            _ => b,
        },
        None => b,
    };
    crc16(hashed) % SLOTS
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One shard as `CLUSTER SLOTS` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Inclusive slot ranges.
    pub ranges: Vec<(u16, u16)>,
    /// (host, port) of the master, then of each replica.
    pub master: (String, u16),
    pub replicas: Vec<(String, u16)>,
}

impl Shard {
    pub fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Parses a `CLUSTER SLOTS` reply into shards (ranges of one master merged).
/// A node's hostname (metadata, Redis 7) is preferred to its IP, so TLS
/// can verify it.
pub fn parse_slots(v: &Value) -> Result<Vec<Shard>, String> {
    let Value::Array(ranges) = v else {
        return Err("CLUSTER SLOTS did not answer an array".into());
    };
    let mut shards: Vec<Shard> = Vec::new();
    for r in ranges {
        let Value::Array(parts) = r else {
            return Err("a CLUSTER SLOTS entry is not an array".into());
        };
        if parts.len() < 3 {
            return Err("a CLUSTER SLOTS entry has no master".into());
        }
        let (Some(a), Some(b)) = (int(&parts[0]), int(&parts[1])) else {
            return Err("a CLUSTER SLOTS range is not numeric".into());
        };
        let range = (a as u16, b as u16);
        let mut nodes = Vec::new();
        for n in &parts[2..] {
            nodes.push(node(n)?);
        }
        let master = nodes.remove(0);
        match shards.iter_mut().find(|s| s.master == master) {
            Some(s) => s.ranges.push(range),
            None => shards.push(Shard {
                ranges: vec![range],
                master,
                replicas: nodes,
            }),
        }
    }
    if shards.is_empty() {
        return Err(
            "CLUSTER SLOTS lists no shard (cluster mode disabled? then set cluster = false)".into(),
        );
    }
    shards.sort_by_key(|s| s.ranges.iter().map(|r| r.0).min());
    Ok(shards)
}

fn node(v: &Value) -> Result<(String, u16), String> {
    let Value::Array(f) = v else {
        return Err("a CLUSTER SLOTS node is not an array".into());
    };
    let ip = f.first().and_then(text).unwrap_or_default();
    let port = f
        .get(1)
        .and_then(int)
        .ok_or("a CLUSTER SLOTS node has no port")?;
    // Redis 7: a map (flat in RESP2) of metadata, e.g. hostname.
    let hostname = f.get(3).and_then(|m| match m {
        Value::Array(kv) => kv
            .chunks(2)
            .find(|p| p.first().and_then(text).as_deref() == Some("hostname"))
            .and_then(|p| p.get(1).and_then(text)),
        Value::Map(kv) => kv
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("hostname"))
            .and_then(|(_, v)| text(v)),
        _ => None,
    });
    let host = hostname.filter(|h| !h.is_empty()).unwrap_or(ip);
    Ok((host, port as u16))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The canary key of each shard: `<base>:{rpo<n>}` with the smallest n whose
/// tag hashes into the shard's slots (the tag is what Redis hashes).
pub fn shard_keys(base: &str, shards: &[Shard]) -> Vec<String> {
    shards
        .iter()
        .map(|s| {
            (0u32..)
                .map(|n| format!("{base}:{{rpo{n}}}"))
                .find(|k| s.serves(slot(k)))
                .expect("every slot is reachable by some tag")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        // Known values (redis-cli CLUSTER KEYSLOT).
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn each_shard_gets_a_key_in_its_own_slots() {
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(6379), bulk("id0")]),
                Value::Array(vec![bulk("10.0.0.2"), Value::Int(6379), bulk("id1")]),
            ]),
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                Value::Array(vec![
                    bulk("10.0.0.3"),
                    Value::Int(6380),
                    bulk("id2"),
                    Value::Array(vec![bulk("hostname"), bulk("m1.example")]),
                ]),
            ]),
        ]);
        let shards = parse_slots(&v).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].replicas, vec![("10.0.0.2".to_string(), 6379)]);
        assert_eq!(shards[1].master, ("m1.example".to_string(), 6380));
        let keys = shard_keys("rpo-canary:a:t", &shards);
        assert!(shards[0].serves(slot(&keys[0])), "{keys:?}");
        assert!(shards[1].serves(slot(&keys[1])), "{keys:?}");
        assert!(keys[0].starts_with("rpo-canary:a:t:{rpo"));
        assert!(parse_slots(&Value::Array(vec![])).is_err());
    }
}
