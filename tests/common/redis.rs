//! Helpers for the Redis tests: target snippets for the lab's TLS pair, the
//! relay's ground truth, one lock for the pair.

use std::sync::{Mutex, MutexGuard};

use super::sql::{DST, SRC};
use super::Lab;

/// A `[[target]]` of kind `redis` between two URLs.
pub fn redis_target(name: &str, src: &str, dst: &str, interval: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"redis\"\nsource = {{ region = \"{SRC}\", url = \"{src}\" }}\nreplicas = [{{ region = \"{DST}\", url = \"{dst}\" }}]\ninterval = \"{interval}\"\ntimeout = \"2m\"\n{extra}\n"
    )
}

/// The lab's pair over TLS (verified with the lab's CA), AUTH from the
/// environment (`REDIS_PASSWORD`, in lab.env).
pub fn lab_redis_target(lab: &Lab, name: &str, interval: &str, extra: &str) -> String {
    redis_target(
        name,
        lab.get("REDIS_PRIMARY_URL"),
        lab.get("REDIS_REPLICA_URL"),
        interval,
        &format!(
            "ca_bundle = \"{}\"\nauth = {{ password_env = \"REDIS_PASSWORD\" }}\n{extra}",
            lab.get("REDIS_CA")
        ),
    )
}

/// The relay's ground truth for canary `key` of `truth_key`'s file: seq →
/// how long the relay held it (forwarded − received: the primary sends a
/// write to its replica as it executes it, so this is the true lag, give or
/// take the replica's apply, well under a millisecond).
pub fn relay_truth(lab: &Lab, file_key: &str, key_prefix: &str) -> Vec<(u64, String, f64)> {
    let text = std::fs::read_to_string(lab.get(file_key)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let key = v["key"].as_str()?;
            if !key.starts_with(key_prefix) {
                return None;
            }
            let seq = v["value"].as_str()?.split(':').next()?.parse().ok()?;
            let held = v["forwarded_at"].as_f64()? - v["received_at"].as_f64()?;
            Some((seq, key.to_string(), held))
        })
        .collect()
}

/// Faults on the pair disturb every test using it: one at a time.
pub fn pair_lock() -> MutexGuard<'static, ()> {
    static PAIR: Mutex<()> = Mutex::new(());
    PAIR.lock().unwrap_or_else(|e| e.into_inner())
}
