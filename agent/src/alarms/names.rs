//! Alarm names and CloudFormation logical ids. They must be valid, unique
//! and stable: a logical id that changes replaces the deployed alarm, so both
//! depend only on the target and region they name, through a hash that never
//! changes between builds or platforms.

use super::{AlarmKind, MAX_ALARM_NAME};

/// FNV-1a, 32 bits: a hash that never changes between builds or platforms,
/// so logical ids and shortened names stay the same.
fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `core-db` → `CoreDb`, `ap-northeast-3` → `ApNortheast3`.
fn camel(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            let first = cs.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(cs).collect::<String>()
        })
        .collect()
}

/// A CloudFormation logical id: letters and digits only, starting with a
/// letter, at most 255 characters. The readable part may collide after the
/// punctuation is dropped (`orders-1` and `orders1`), so a hash of the exact
/// target name and region follows it. It depends on nothing else: adding or
/// removing other targets never renames (and so never replaces) an alarm.
pub fn logical_id(kind: AlarmKind, target: &str, replica_region: &str) -> String {
    let mut t = camel(target);
    t.truncate(150);
    format!(
        "{}{}{}{:08X}",
        kind.what(),
        t,
        camel(replica_region),
        fnv32(&format!("{target}\u{0}{replica_region}"))
    )
}

/// The alarm's name: `<namespace>-<target>-to-<region>-<what>`, unique per
/// account and region as long as two deployments use different namespaces.
/// A name over CloudWatch's 255 characters keeps its start and ends with a
/// hash of the whole name, so it stays unique.
pub fn alarm_name(namespace: &str, kind: AlarmKind, target: &str, replica_region: &str) -> String {
    let full = format!("{namespace}-{target}-to-{replica_region}-{}", kind.what());
    fit(&full, MAX_ALARM_NAME)
}

pub(super) fn fit(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    // Names are ASCII (validated target names, regions and namespaces).
    let keep: String = s.chars().take(max - 9).collect();
    format!("{keep}-{:08x}", fnv32(s))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{alarms_of, resources, two_targets, EMF};
    use super::super::{template, Node, MAX_LOGICAL_ID};
    use super::*;

    #[test]
    fn logical_ids_and_alarm_names_are_valid_unique_and_stable() {
        let c = two_targets(EMF);
        let t = template(&c).unwrap();
        let ids: Vec<&str> = resources(&t).iter().map(|(k, _)| k.as_str()).collect();
        let names: Vec<&str> = alarms_of(&t)
            .iter()
            .map(|(_, a)| a.get("AlarmName").and_then(Node::as_str).unwrap())
            .collect();
        for id in &ids {
            assert!(
                id.len() <= MAX_LOGICAL_ID
                    && id.chars().all(|c| c.is_ascii_alphanumeric())
                    && id.starts_with(|c: char| c.is_ascii_alphabetic()),
                "{id}"
            );
        }
        for n in &names {
            assert!(
                n.len() <= MAX_ALARM_NAME && n.is_ascii() && !n.contains(' '),
                "{n}"
            );
        }
        let mut u = ids.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), ids.len());
        let mut u = names.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), names.len());
        // Punctuation dropped would collide; the hash keeps them apart.
        assert_ne!(
            logical_id(AlarmKind::Rpo, "orders-1", "us-east-1"),
            logical_id(AlarmKind::Rpo, "orders1", "us-east-1")
        );
        // Stable: a pinned value (changing it replaces deployed alarms).
        assert_eq!(
            logical_id(AlarmKind::Rpo, "orders", "ap-northeast-3"),
            format!(
                "RPOAboveObjectiveOrdersApNortheast3{:08X}",
                fnv32("orders\u{0}ap-northeast-3")
            )
        );
        assert_eq!(fnv32("a"), 0xe40c292c);
        // Long names are cut to the limits, still distinct.
        let long = "t".repeat(300);
        let a = alarm_name("RPOAgent", AlarmKind::Rpo, &long, "us-east-1");
        let b = alarm_name("RPOAgent", AlarmKind::ProbeUp, &long, "us-east-1");
        assert!(a.len() <= MAX_ALARM_NAME && b.len() <= MAX_ALARM_NAME && a != b);
        let id = logical_id(AlarmKind::CanariesLost, &long, "us-east-1");
        assert!(id.len() <= MAX_LOGICAL_ID && id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
