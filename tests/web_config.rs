//! `[agent] web_config`: TLS and basic auth on the agent's endpoints, end to end.
//!
//! One lab ("monitoring" only: no store is needed to serve HTTP; the one
//! target points at a closed port). The lab makes the agent's certificate
//! from its CA, a scrape password and a web_config with its bcrypt hash
//! (`AGENT_WEB_CONFIG`); its Prometheus has the job `rpo-agent-tls` (https,
//! `tls_config.ca_file`, `basic_auth`), pointed at the agent with
//! `lab fault monitoring scrape-tls ADDR`.
//!
//! Run: cargo build -p rpo-agent && cargo test -p rpo-integration-tests --test web_config

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rpo_integration_tests::monitoring::Monitoring;
use rpo_integration_tests::{agent_bin, https, run_command, Agent, Lab};

fn lab() -> &'static Lab {
    Lab::shared("monitoring")
}

/// One DynamoDB target on a closed port: the agent serves HTTP all the same.
fn config(web_config: &Path) -> String {
    format!(
        "[agent]\nid = \"tls\"\nlisten = \"127.0.0.1:0\"\nweb_config = \"{}\"\n\n\
         [[target]]\nname = \"orders\"\nkind = \"dynamodb\"\ntable = \"orders\"\n\
         source = {{ region = \"ap-northeast-1\", endpoint_url = \"http://127.0.0.1:1\" }}\n\
         replicas = [{{ region = \"ap-northeast-3\" }}]\ninterval = \"5s\"\n",
        web_config.display()
    )
}

fn env() -> HashMap<String, String> {
    [
        ("AWS_ACCESS_KEY_ID", "lab"),
        ("AWS_SECRET_ACCESS_KEY", "lab"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn healthcheck(url: &str, ca: &Path) -> (Option<i32>, String) {
    let out = Command::new(agent_bin())
        .args(["healthcheck", "--url", url, "--ca-file"])
        .arg(ca)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CA that did not sign the agent's certificate.
fn other_ca(dir: &Path) -> PathBuf {
    let (key, crt) = (dir.join("other-ca.key"), dir.join("other-ca.crt"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the lab CA",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    crt
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_the_rest_is_refused() {
    let lab = lab();
    let ca = PathBuf::from(lab.get("AGENT_TLS_CA"));
    let user = lab.get("AGENT_SCRAPE_USER");
    let password = std::fs::read_to_string(lab.get("AGENT_SCRAPE_PASSWORD_FILE")).unwrap();
    let agent = Agent::start(&config(Path::new(lab.get("AGENT_WEB_CONFIG"))), &env());
    let addr = agent.addr.clone();

    // Plain HTTP gets nothing: the port speaks TLS only.
    assert!(agent.get("/healthz").map(|(s, _)| s != 200).unwrap_or(true));

    // /healthz is open; everything else needs the password.
    let a = https::get(&addr, "/healthz", &ca, None).unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, "ok\n"), "{a:?}");
    for path in ["/metrics", "/status.json", "/readyz", "/", "/nope"] {
        for auth in [
            None,
            Some((user, "wrong")),
            Some(("nobody", password.as_str())),
        ] {
            let a = https::get(&addr, path, &ca, auth).unwrap();
            assert_eq!(a.status, 401, "{path} {auth:?}: {a:?}");
            assert_eq!(
                a.header("www-authenticate"),
                Some("Basic realm=\"rpo-agent\""),
                "{a:?}"
            );
        }
    }
    let a = https::get(&addr, "/metrics", &ca, Some((user, &password))).unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("rpo_agent_build_info"), "{}", a.body);
    // Second time from the cache: the same answer.
    let t = Instant::now();
    let a = https::get(&addr, "/status.json", &ca, Some((user, &password))).unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    eprintln!(
        "cached basic auth + TLS handshake + /status.json: {:?}",
        t.elapsed()
    );

    // The lab's real Prometheus scrapes it: https, tls_config.ca_file, basic_auth.
    lab.fault(&["monitoring", "scrape-tls", &addr]);
    let mon = Monitoring::of(lab);
    let end = Instant::now() + Duration::from_secs(30);
    let up = loop {
        let up = mon.query_value("up{job=\"rpo-agent-tls\"}");
        if up == Some(1.0) || Instant::now() > end {
            break up;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let targets = mon.api("targets?state=active").unwrap_or_default();
    assert_eq!(up, Some(1.0), "Prometheus targets: {targets:#}");
    let scraped = mon.query_value("rpo_agent_build_info{job=\"rpo-agent-tls\"}");
    assert_eq!(scraped, Some(1.0), "the scrape carried the agent's series");

    // The agent's own health check over https: the lab CA passes, another fails clearly.
    let url = format!("https://{addr}");
    let (code, err) = healthcheck(&url, &ca);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = healthcheck(
        &format!("https://localhost:{}", addr.rsplit_once(':').unwrap().1),
        &ca,
    );
    assert_eq!(code, Some(0), "by host name too: {err}");
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = healthcheck(&url, &other_ca(tmp.path()));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS with") && err.contains("UnknownIssuer") && err.contains("--ca-file"),
        "{err}"
    );
    let (code, err) = healthcheck(&url, &tmp.path().join("missing.pem"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("missing.pem") && err.contains("--ca-file"),
        "{err}"
    );
}

#[test]
fn a_bad_web_config_stops_run_with_exit_2_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web.yml");
    let cases = [
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS10\n",
            "tls_server_config.min_version",
            "write TLS12 or TLS13",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
            "tls_server_config.cert_file",
            "a.crt",
        ),
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "basic_auth_users.alice",
            "htpasswd",
        ),
        (
            "tls_server_conf: {}\n",
            "tls_server_conf",
            "remove or correct",
        ),
    ];
    for (text, key, fix) in cases {
        std::fs::write(&web, text).unwrap();
        for cmd in ["run", "validate"] {
            let started = Instant::now();
            let (code, out) = run_command(&[cmd], &config(&web), &env());
            assert_eq!(code, Some(2), "{cmd} {text:?}: {out}");
            assert!(
                out.contains(&web.display().to_string()) && out.contains(key) && out.contains(fix),
                "{cmd} {text:?}: {out}"
            );
            assert!(
                !out.contains("hunter2"),
                "a secret reached the output: {out}"
            );
            // Before probing anything: no wait on the (closed) store.
            assert!(started.elapsed() < Duration::from_secs(5), "{cmd}: {out}");
        }
    }
}
