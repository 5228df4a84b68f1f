//! The S3 probe through a regional outage of the AWS stand-in (`aws kill` /
//! `aws start`). This binary owns its lab, because the fault hits every
//! bucket at once.

use std::time::Duration;

use rpo_integration_tests::{Agent, Lab};

#[test]
fn the_s3_probe_survives_the_endpoint_dying_and_recovers_when_it_returns() {
    let lab = Lab::start("aws");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(lab.create_replicated_buckets(
        "outage-tokyo",
        "ap-northeast-1",
        &[("outage-osaka", "ap-northeast-3")],
        "rpo-canary/",
        true,
    ));
    let cfg = "[agent]\nid = \"it\"\nlisten = \"127.0.0.1:0\"\n[[target]]\nname = \"outage\"\nkind = \"s3\"\nsource = { region = \"ap-northeast-1\", bucket = \"outage-tokyo\" }\nreplicas = [{ region = \"ap-northeast-3\", bucket = \"outage-osaka\" }]\ninterval = \"500ms\"\ntimeout = \"20s\"\n";
    let mut agent = Agent::start(cfg, &lab.env);
    let l = [("target", "outage")];
    assert_eq!(
        agent.wait_value("rpo_probe_up", &l, Duration::from_secs(15), |v| v == 1.0),
        Some(1.0)
    );

    lab.fault(&["aws", "kill"]);
    assert_eq!(
        agent.wait_value("rpo_probe_up", &l, Duration::from_secs(20), |v| v == 0.0),
        Some(0.0)
    );
    let want = [
        ("target", "outage"),
        ("op", "PutObject"),
        ("code", "connect"),
    ];
    let errors = agent.wait_value(
        "rpo_probe_errors_total",
        &want,
        Duration::from_secs(20),
        |v| v >= 2.0,
    );
    assert!(
        errors.is_some_and(|v| v >= 2.0),
        "connection errors counted: {errors:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.is_running(),
        "the agent must not exit on a backend fault"
    );

    // The journal brings buckets, versioning and rules back (not objects).
    lab.fault(&["aws", "start"]);
    assert_eq!(
        agent.wait_value("rpo_probe_up", &l, Duration::from_secs(30), |v| v == 1.0),
        Some(1.0)
    );
    let observed = agent.value("rpo_canaries_observed_total", &l).unwrap();
    let after = agent.wait_value(
        "rpo_canaries_observed_total",
        &l,
        Duration::from_secs(10),
        |v| v >= observed + 3.0,
    );
    assert!(
        after.is_some_and(|v| v >= observed + 3.0),
        "canaries flow again"
    );
    assert!(agent
        .wait_log(Duration::from_secs(1), |v| v["message"]
            == "probe recovered")
        .is_some());
    assert_eq!(agent.terminate(Duration::from_secs(15)), Some(0));
    lab.stop();
}
