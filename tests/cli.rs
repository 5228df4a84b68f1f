//! The binary's edge: bad configuration exits 2 with the key and the fix,
//! `healthcheck` fails clearly when no agent answers. No lab needed.

use std::process::Command;
use std::time::{Duration, Instant};

use rpo_integration_tests::agent_bin;

fn run(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.args(args).env_remove("RPO_AGENT_CONFIG");
    if let Some(c) = config {
        std::fs::write(f.path(), c).unwrap();
        cmd.arg("--config").arg(f.path());
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const OK: &str = "[[target]]\nname = \"orders\"\nkind = \"dynamodb\"\ntable = \"orders\"\nsource = { region = \"ap-northeast-1\" }\nreplicas = [{ region = \"ap-northeast-3\" }]\n";

#[test]
fn bad_configurations_exit_2_naming_file_line_key_and_fix() {
    let cases = [
        (OK.replace("table =", "tabel ="), "`tabel`", ":4:"),
        (
            OK.replace("kind = \"dynamodb\"", "kind = \"dynamo\""),
            "target[orders].kind",
            ":3:",
        ),
        (
            format!("{OK}interval = \"10ms\""),
            "target[orders].interval",
            ":7:",
        ),
        (
            format!("{OK}objective = \"0s\""),
            "target[orders].objective",
            ":7:",
        ),
        (
            OK.replace("ap-northeast-3", "ap-northeast-1"),
            "target[orders].replicas",
            ":6:",
        ),
        (format!("{OK}\n{OK}"), "target.name", ":9:"),
        ("[agent]\nlisten = 9464\n".to_string(), "listen", ":2:"),
    ];
    for (cfg, key, line) in cases {
        for cmd in ["run", "once", "check", "validate"] {
            let (code, out) = run(&[cmd], Some(&cfg), &[]);
            assert_eq!(code, Some(2), "{cmd} {key}: {out}");
            assert!(
                out.contains(key) && out.contains(line) && out.contains("fix:"),
                "{cmd} {key}: {out}"
            );
        }
    }
}

#[test]
fn the_whole_config_may_come_from_the_environment() {
    let (code, out) = run(&["validate"], None, &[("RPO_AGENT_CONFIG", OK)]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(
        &["validate"],
        None,
        &[("RPO_AGENT_CONFIG", "[agent]\nbogus = 1")],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("$RPO_AGENT_CONFIG:2:") && out.contains("bogus"),
        "{out}"
    );
    let (code, out) = run(&["validate"], None, &[]);
    assert_eq!(code, Some(2));
    assert!(out.contains("RPO_AGENT_CONFIG"), "{out}");
}

#[test]
fn a_missing_file_is_named() {
    let (code, out) = run(
        &["validate", "--config", "/nonexistent/rpo.toml"],
        None,
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(out.contains("/nonexistent/rpo.toml"), "{out}");
}

#[test]
fn healthcheck_fails_clearly_without_an_agent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = run(
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/healthz"),
        ],
        None,
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no agent answers"), "{out}");
}

#[test]
fn a_listen_address_in_use_is_explained() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let cfg = format!("[agent]\nlisten = \"{addr}\"\n{OK}");
    let (code, out) = run(
        &["run"],
        Some(&cfg),
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&addr.to_string()) && out.contains("listen"),
        "{out}"
    );
}

#[test]
fn sigterm_stops_the_agent_promptly_while_a_store_hangs() {
    // A listener that accepts TCP connections (the kernel does) and never
    // answers: every AWS call hangs until its timeout.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hang.local_addr().unwrap());
    let env: std::collections::HashMap<String, String> = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut agent = rpo_integration_tests::Agent::start(
        &format!("[agent]\nid = \"hang\"\nlisten = \"127.0.0.1:0\"\n\n{OK}"),
        &env,
    );
    // Let the writer get stuck in its first set-up call.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
    let took = asked.elapsed();
    println!("exit {took:?} after SIGTERM with a hanging store");
    // Without abandoning the set-up call, shutdown waits for the SDK's
    // operation timeout first.
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    drop(hang);
}
