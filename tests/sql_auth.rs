//! SQL credentials from AWS Secrets Manager against the lab (moto serves
//! Secrets Manager, MariaDB the database): the agent connects with the
//! secret's password, counts `GetSecretValue` as a billable AWS call, never
//! prints the password, and follows a rotation by itself: when the old
//! password stops working it reads the secret again.

use std::time::Duration;

use rpo_integration_tests::sql::{mariadb_root, run_init, sql_config, sql_target, SRC};
use rpo_integration_tests::{rt, Agent, Lab};

fn lab() -> &'static Lab {
    Lab::shared("aws,sql")
}

async fn secrets() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&lab().sdk(SRC).await)
}

/// Creates secret `name` holding `password` for `user`; returns its ARN.
fn create_secret(name: &str, user: &str, password: &str) -> String {
    rt().block_on(async {
        secrets()
            .await
            .create_secret()
            .name(name)
            .secret_string(format!(
                "{{\"username\":\"{user}\",\"password\":\"{password}\"}}"
            ))
            .send()
            .await
            .expect("create the secret")
            .arn()
            .expect("an ARN")
            .to_string()
    })
}

fn rotate_secret(arn: &str, user: &str, password: &str) {
    rt().block_on(async {
        secrets()
            .await
            .put_secret_value()
            .secret_id(arn)
            .secret_string(format!(
                "{{\"username\":\"{user}\",\"password\":\"{password}\"}}"
            ))
            .send()
            .await
            .expect("rotate the secret");
    });
}

/// The user's open sessions on `role`, killed: a pool must log in again.
fn kill_sessions(role: &str, user: &str) {
    let ids = mariadb_root(
        lab(),
        role,
        &format!("SELECT id FROM information_schema.processlist WHERE user = '{user}'"),
    );
    for id in ids.split_whitespace() {
        // A session may end on its own in between.
        let _ = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-S"])
            .arg(lab().dir().join("mysql/run").join(format!("{role}.sock")))
            .args(["-e", &format!("KILL {id}")])
            .output();
    }
}

fn l(t: &str) -> Vec<(&'static str, &str)> {
    vec![("target", t)]
}

fn secret_calls(agent: &Agent, t: &str) -> f64 {
    agent
        .value(
            "rpo_api_requests_total",
            &[
                ("target", t),
                ("service", "secretsmanager"),
                ("op", "GetSecretValue"),
            ],
        )
        .unwrap_or(0.0)
}

fn wait_observed(agent: &Agent, t: &str, at_least: f64, secs: u64) -> f64 {
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(secs),
            |v| v >= at_least,
        )
        .unwrap_or(0.0)
}

#[test]
fn passwords_come_from_secrets_manager_and_a_rotation_is_followed() {
    let lab = lab();
    let (primary, replica) = (lab.get("MYSQL_PRIMARY_URL"), lab.get("MYSQL_REPLICA_URL"));
    let (ok, out) = run_init(&sql_config(&[sql_target(
        "init", "mysql", primary, replica, "1s", "",
    )]));
    assert!(ok, "init: {out}");
    // A user of its own, so that rotating its password disturbs nothing
    // else; created on the primary, it reaches the replica by replication.
    let (user, first, second) = ("rpo_rot", "first-Pa55", "second-Pa55");
    mariadb_root(
        lab,
        "primary",
        &format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{first}'; \
             GRANT SELECT, INSERT, UPDATE ON app.rpo_canary TO '{user}'@'%';"
        ),
    );
    let arn = create_secret("rpo-agent/billing-db", user, first);
    let url = |u: &str| u.replace("rpo:rpo-lab-secret@", &format!("{user}@"));
    let t = "secret-db";
    let config = sql_config(&[sql_target(
        t,
        "mysql",
        &url(primary),
        &url(replica),
        "1s",
        &format!("auth = {{ secret_arn = \"{arn}\" }}"),
    )]);
    let agent = Agent::start(&config, &lab.env);
    assert!(
        wait_observed(&agent, t, 3.0, 30) >= 3.0,
        "no canaries with the secret's password: {:?}",
        agent.logs()
    );
    let calls = secret_calls(&agent, t);
    assert!(calls >= 1.0, "GetSecretValue not counted");

    // Rotation: the secret and the user's password change, and the open
    // sessions end (as a pool's connections do, sooner or later).
    rotate_secret(&arn, user, second);
    mariadb_root(
        lab,
        "primary",
        &format!("ALTER USER '{user}'@'%' IDENTIFIED BY '{second}';"),
    );
    std::thread::sleep(Duration::from_millis(500));
    kill_sessions("primary", user);
    kill_sessions("replica", user);
    let killed = std::time::Instant::now();
    let observed = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();
    assert!(
        wait_observed(&agent, t, observed + 3.0, 30) >= observed + 3.0,
        "not back after the rotation: {:?}",
        agent.logs()
    );
    println!(
        "rotation: 3 more canaries seen {:?} after the sessions were killed; GetSecretValue calls {calls} → {}",
        killed.elapsed(),
        secret_calls(&agent, t)
    );
    assert!(
        secret_calls(&agent, t) > calls,
        "the secret was not read again after the rotation"
    );
    // The old password did stop working (so the test tested something).
    let denied = agent
        .value(
            "rpo_probe_errors_total",
            &[("target", t), ("code", "28000")],
        )
        .unwrap_or(0.0);
    assert!(denied >= 1.0, "no access-denied error: {:?}", agent.logs());
    let logs = agent.logs();
    let metrics = agent.get("/metrics").unwrap().1;
    let status = agent.get("/").unwrap().1;
    for secret in [first, second] {
        assert!(
            !logs.iter().any(|v| v.to_string().contains(secret)),
            "password in the logs"
        );
        assert!(!metrics.contains(secret), "password in the metrics");
        assert!(!status.contains(secret), "password on the status page");
    }
}

#[test]
fn a_missing_secret_is_a_configuration_problem_that_names_it() {
    let lab = lab();
    let arn = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:nowhere-AbCdEf";
    let t = "no-secret";
    let config = sql_config(&[sql_target(
        t,
        "mysql",
        &lab.get("MYSQL_PRIMARY_URL")
            .replace("rpo:rpo-lab-secret@", "rpo@"),
        &lab.get("MYSQL_REPLICA_URL")
            .replace("rpo:rpo-lab-secret@", "rpo@"),
        "1s",
        &format!("auth = {{ secret_arn = \"{arn}\" }}"),
    )]);
    let agent = Agent::start(&config, &lab.env);
    let line = agent
        .wait_log(Duration::from_secs(20), |v| {
            v["target"] == t && v["op"] == "GetSecretValue"
        })
        .unwrap_or_else(|| panic!("no GetSecretValue error: {:?}", agent.logs()));
    let msg = line["message"].as_str().unwrap();
    assert!(
        msg.starts_with("configuration problem, not lag") && msg.contains(arn),
        "{msg}"
    );
    assert_eq!(agent.value("rpo_probe_up", &l(t)), Some(0.0));
    assert_eq!(agent.value("rpo_canaries_written_total", &l(t)), Some(0.0));
}
