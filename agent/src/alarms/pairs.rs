//! What the alarms watch: the (target, replica region) series of the EMF
//! metrics (`Pair`), the three alarms of each (`AlarmKind`), and the alarms'
//! periods (`Timing`), all derived from the `Config` alone.

use std::time::Duration;

use crate::config::{Config, Direction, EmfConfig, Kind};

/// One (target, replica region) series of the EMF metrics: what one set of
/// alarms watches. Two routes that end in the same region (the reverse
/// routes of `direction = "both"` with several replicas) share the series,
/// because `Target` and `ReplicaRegion` are its only dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub target: String,
    pub kind: Kind,
    pub replica_region: String,
    /// The regions whose canaries this series measures (one, except for the
    /// shared reverse series above).
    pub source_regions: Vec<String>,
    pub objective: Duration,
    /// Index of the target in `Config::targets`.
    pub target_index: usize,
}

impl Pair {
    /// `orders ap-northeast-1→ap-northeast-3`, for labels.
    pub fn label(&self) -> String {
        format!(
            "{} {}→{}",
            self.target,
            self.source_regions.join("+"),
            self.replica_region
        )
    }
}

/// Every (target, replica region) of the configuration, in config order:
/// the forward pairs of a target first, then its reverse pairs.
pub fn pairs(cfg: &Config) -> Vec<Pair> {
    let mut out: Vec<Pair> = Vec::new();
    for (i, t) in cfg.targets.iter().enumerate() {
        let mut routes: Vec<(&str, &str)> = t
            .replicas
            .iter()
            .map(|r| (t.source.region.as_str(), r.region.as_str()))
            .collect();
        // The reverse routes exist for DynamoDB only (dynamodb::routes), but
        // validation already refuses "both" for the other kinds.
        if t.direction == Direction::Both {
            routes.extend(
                t.replicas
                    .iter()
                    .map(|r| (r.region.as_str(), t.source.region.as_str())),
            );
        }
        for (from, to) in routes {
            match out
                .iter_mut()
                .find(|p| p.target == t.name && p.replica_region == to)
            {
                Some(p) => {
                    if !p.source_regions.iter().any(|s| s == from) {
                        p.source_regions.push(from.to_string());
                    }
                }
                None => out.push(Pair {
                    target: t.name.clone(),
                    kind: t.kind,
                    replica_region: to.to_string(),
                    source_regions: vec![from.to_string()],
                    objective: t.objective,
                    target_index: i,
                }),
            }
        }
    }
    out
}

/// The alarms' timing, derived from `[emf]`.
///
/// * `period`: the shortest alarm period that holds at least one document
///   per pair: `every` rounded up to what CloudWatch allows. 10 s and 30 s
///   exist only for high-resolution metrics (`storage_resolution = 1`);
///   standard metrics have one datapoint a minute, so their alarms use
///   multiples of 60 s. A period shorter than `every` would see empty
///   periods between documents, and empty periods breach (below).
/// * `rpo_periods`: 2 consecutive breaching periods. `RPO` already
///   integrates time (it exceeds the objective only after the replica has
///   missed data for that long, it keeps rising during a stall, and it is the
///   period's maximum, so a short breach is not averaged away): the second
///   period adds at most one period on top of the objective. One period
///   would page at every agent start: the partial period the agent starts
///   in has no `RPO` yet (nothing measured), and missing is breaching (seen
///   on the lab: the first document of a run carries no `RPO`). It also
///   keeps one document delivered late (awslogs batches for seconds,
///   extraction adds a few) from paging, as the Prometheus rule's `for: 5s`
///   (two evaluations) does.
/// * `probe_periods`: `ProbeUp` is 0 when the probe was down at any moment
///   of the period, and a start shows 0 in up to two periods (the partial
///   one it starts in, and the one in which the probes are prepared: seen
///   on the lab). So at least 3 consecutive periods, and at least 60 s, as
///   the Prometheus rule's `for: 1m` does: a restart or a credential
///   refresh does not page.
/// * `lost_periods`: 1. A lost canary is a discrete event the agent has
///   already confirmed (unseen for the target's whole timeout).
///
/// Every alarm treats missing data as breaching: no datapoint means the
/// agent is silent (stopped, its logs not shipped) or measures nothing,
/// which for an RPO monitor is a failure, not an absence of news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub period: u64,
    pub rpo_periods: u64,
    pub probe_periods: u64,
    pub lost_periods: u64,
    pub high_resolution: bool,
}

pub fn timing(emf: &EmfConfig) -> Timing {
    let every = emf.every.as_secs().max(1);
    let high = emf.storage_resolution == 1;
    let period = if high && every <= 10 {
        10
    } else if high && every <= 30 {
        30
    } else {
        every.div_ceil(60) * 60
    };
    let rpo_periods = 2;
    let probe_periods = 60u64.div_ceil(period).max(3);
    Timing {
        period,
        rpo_periods,
        probe_periods,
        lost_periods: 1,
        high_resolution: period < 60,
    }
}

/// The three alarms of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    Rpo,
    ProbeUp,
    CanariesLost,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 3] = [AlarmKind::Rpo, AlarmKind::ProbeUp, AlarmKind::CanariesLost];

    pub fn metric(self) -> &'static str {
        match self {
            AlarmKind::Rpo => "RPO",
            AlarmKind::ProbeUp => "ProbeUp",
            AlarmKind::CanariesLost => "CanariesLost",
        }
    }

    /// The last part of the alarm name and of the logical id.
    pub(super) fn what(self) -> &'static str {
        match self {
            AlarmKind::Rpo => "RPOAboveObjective",
            AlarmKind::ProbeUp => "ProbeDown",
            AlarmKind::CanariesLost => "CanariesLost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{two_targets, EMF};
    use super::*;

    #[test]
    fn one_way_pairs_are_one_per_replica_region() {
        let c = two_targets(EMF);
        let p: Vec<(String, String, Vec<String>)> = pairs(&c)
            .into_iter()
            .filter(|p| p.target == "invoices")
            .map(|p| (p.target, p.replica_region, p.source_regions))
            .collect();
        assert_eq!(
            p,
            vec![(
                "invoices".into(),
                "ap-northeast-3".into(),
                vec!["ap-northeast-1".to_string()]
            )]
        );
    }

    #[test]
    fn both_directions_add_the_reverse_pairs_which_share_the_source_region() {
        let c = two_targets(EMF);
        let p: Vec<(String, Vec<String>)> = pairs(&c)
            .into_iter()
            .filter(|p| p.target == "orders")
            .map(|p| (p.replica_region, p.source_regions))
            .collect();
        assert_eq!(
            p,
            vec![
                (
                    "ap-northeast-3".to_string(),
                    vec!["ap-northeast-1".to_string()]
                ),
                ("us-west-2".to_string(), vec!["ap-northeast-1".to_string()]),
                // Both reverse routes end in the source region: one series.
                (
                    "ap-northeast-1".to_string(),
                    vec!["ap-northeast-3".to_string(), "us-west-2".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn periods_fit_every_and_the_storage_resolution() {
        let t = |every: &str, res: u32| {
            let c = two_targets(&format!(
                "[emf]\nevery = \"{every}\"\nstorage_resolution = {res}\n"
            ));
            timing(c.emf.as_ref().unwrap())
        };
        let std = t("60s", 60);
        assert_eq!(
            (
                std.period,
                std.rpo_periods,
                std.probe_periods,
                std.lost_periods
            ),
            (60, 2, 3, 1)
        );
        assert!(!std.high_resolution);
        // Standard metrics never get a high-resolution alarm.
        assert_eq!(t("10s", 60).period, 60);
        assert_eq!(t("90s", 60).period, 120);
        assert_eq!(t("5m", 1).period, 300);
        let hi = t("5s", 1);
        assert_eq!((hi.period, hi.rpo_periods, hi.probe_periods), (10, 2, 6));
        assert!(hi.high_resolution);
        let hi = t("20s", 1);
        assert_eq!((hi.period, hi.rpo_periods, hi.probe_periods), (30, 2, 3));
        assert_eq!(t("45s", 1).period, 60);
    }
}
