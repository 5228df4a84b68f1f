//! The bad-input corpus: every case must fail with the key it names.

use super::*;

const GOOD: &str = include_str!("testdata/design-example.toml");

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(&Origin::File("rpo.toml".into()), text)
}

#[test]
fn the_design_example_is_valid() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.targets.len(), 3);
    assert_eq!(c.agent.id, None);
    let o = &c.targets[0];
    assert_eq!(o.kind, Kind::Dynamodb);
    assert_eq!(o.interval, Duration::from_secs(5));
    assert_eq!(o.timeout, Duration::from_secs(600));
    assert_eq!(o.objective, Duration::from_secs(60));
    assert_eq!(c.targets[1].objective, Duration::from_secs(900));
    assert_eq!(
        c.targets[2].auth,
        Auth::PasswordEnv("RPO_DB_PASSWORD".into())
    );
}

/// (what is wrong, replace this, by this, the key the error must name, line)
const CORPUS: &[(&str, &str, &str, &str, Option<usize>)] = &[
    (
        "unknown key",
        "table = \"orders\"",
        "tabel = \"orders\"",
        "tabel",
        Some(10),
    ),
    (
        "unknown agent key",
        "objective = \"60s\"",
        "objectve = \"60s\"",
        "objectve",
        Some(5),
    ),
    (
        "unknown endpoint key",
        "{ region = \"ap-northeast-3\" }",
        "{ regoin = \"ap-northeast-3\" }",
        "regoin",
        Some(12),
    ),
    (
        "bad duration",
        "interval = \"5s\"",
        "interval = \"5 parsecs\"",
        "target[orders].interval",
        Some(13),
    ),
    (
        "missing table",
        "table = \"orders\"\n",
        "",
        "target[orders].table",
        Some(7),
    ),
    (
        "replica = source",
        "replicas = [{ region = \"ap-northeast-3\" }]",
        "replicas = [{ region = \"ap-northeast-1\" }]",
        "target[orders].replicas",
        Some(12),
    ),
    (
        "interval < 100ms",
        "interval = \"5s\"",
        "interval = \"50ms\"",
        "target[orders].interval",
        Some(13),
    ),
    (
        "objective zero",
        "objective = \"15m\"",
        "objective = \"0s\"",
        "target[invoices].objective",
        Some(22),
    ),
    (
        "agent objective zero",
        "objective = \"60s\"",
        "objective = \"0ms\"",
        "agent.objective",
        Some(5),
    ),
    (
        "two targets one name",
        "name = \"invoices\"",
        "name = \"orders\"",
        "target.name",
        Some(17),
    ),
    (
        "unknown kind",
        "kind = \"s3\"",
        "kind = \"gcs\"",
        "target[invoices].kind",
        Some(18),
    ),
    (
        "wrong type",
        "interval = \"5s\"",
        "interval = 5",
        "interval",
        Some(13),
    ),
    (
        "timeout below interval",
        "timeout = \"10m\"",
        "timeout = \"1s\"",
        "target[orders].timeout",
        Some(14),
    ),
    (
        "bad listen",
        "listen = \"127.0.0.1:9464\"",
        "listen = \"localhost\"",
        "agent.listen",
        Some(4),
    ),
    (
        "s3 without bucket",
        "region = \"ap-northeast-3\", bucket = \"invoices-osaka\"",
        "region = \"ap-northeast-3\"",
        "target[invoices].replicas.bucket",
        Some(20),
    ),
    (
        "table on s3",
        "prefix = \"rpo-canary/\"",
        "table = \"x\"",
        "target[invoices].table",
        Some(21),
    ),
    (
        "two auth methods",
        "{ password_env = \"RPO_DB_PASSWORD\" }",
        "{ password_env = \"X\", iam = true }",
        "target[core-db].auth",
        Some(29),
    ),
    (
        "mysql url on postgres",
        "url = \"postgres://rpo@writer.example:5432/app\"",
        "url = \"mysql://rpo@writer.example/app\"",
        "target[core-db].source.url",
        Some(27),
    ),
    (
        "both on s3",
        "prefix = \"rpo-canary/\"",
        "direction = \"both\"",
        "target[invoices].direction",
        Some(21),
    ),
    (
        "bad region",
        "source = { region = \"ap-northeast-1\" }",
        "source = { region = \"Tokyo\" }",
        "target[orders].source.region",
        Some(11),
    ),
];

#[test]
fn every_bad_input_names_its_key_line_and_a_fix() {
    for (what, from, to, key, line) in CORPUS {
        assert!(GOOD.contains(from), "{what}: corpus text not found");
        let text = GOOD.replacen(from, to, 1);
        let err = parse_str(&text).expect_err(what);
        assert_eq!(&err.key, key, "{what}: {err}");
        assert_eq!(err.line, *line, "{what}: {err}");
        assert!(!err.fix.is_empty(), "{what}");
        let shown = err.to_string();
        assert!(shown.starts_with("rpo.toml:"), "{what}: {shown}");
        assert!(shown.contains("fix:"), "{what}: {shown}");
    }
}

#[test]
fn no_target_is_an_error() {
    let err = parse_str("[agent]\nid = \"a\"\n").unwrap_err();
    assert_eq!(err.key, "target");
}

#[test]
fn passwords_never_reach_messages() {
    let text = GOOD.replacen(
        "url = \"postgres://rpo@writer.example:5432/app\"",
        "url = \"mysql://rpo:hunter2@writer.example/app?password=hunter3\"",
        1,
    );
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(!err.contains("hunter"), "{err}");
    assert_eq!(
        redact_url("postgres://u:p@h:1/d?sslmode=verify-full&password=x"),
        "postgres://u:***@h:1/d?sslmode=verify-full&password=***"
    );
}

#[test]
fn env_origin_is_named() {
    let err = parse(&Origin::Env(CONFIG_ENV), "[agent]\nbogus = 1\n").unwrap_err();
    assert!(err.to_string().starts_with("$RPO_AGENT_CONFIG:2:"), "{err}");
}

#[test]
fn a_config_dumped_with_debug_shows_no_password() {
    let text = GOOD.replacen(
        "url = \"postgres://rpo@writer.example:5432/app\"",
        "url = \"postgres://rpo:hunter2@writer.example:5432/app?sslpassword=hunter3\"",
        1,
    );
    let cfg = parse_str(&text).expect("valid config");
    let dumped = format!("{cfg:?}");
    assert!(dumped.contains("rpo:***@writer.example"), "{dumped}");
    assert!(!dumped.contains("hunter"), "{dumped}");
}

fn with_fleet(fleet: &str) -> Result<Config, ConfigError> {
    parse_str(&format!("{GOOD}\n[fleet]\n{fleet}"))
}

#[test]
fn a_fleet_gets_its_defaults() {
    let c = with_fleet(
        "name = \"orders-api\"\ntable = \"rpo-agent-leases\"\nregion = \"ap-northeast-3\"\n",
    )
    .unwrap();
    let f = c.fleet.expect("fleet");
    assert_eq!(f.name, "orders-api");
    assert_eq!(f.table, "rpo-agent-leases");
    assert_eq!(f.region, "ap-northeast-3");
    assert_eq!(f.lease, Duration::from_secs(20));
    assert_eq!(f.endpoint_url, None);
    assert!(parse_str(GOOD).unwrap().fleet.is_none());
}

#[test]
fn every_bad_fleet_names_its_key_and_line() {
    let ok = "name = \"f\"\ntable = \"t\"\nregion = \"ap-northeast-3\"\n";
    let line0 = GOOD.lines().count() + 3;
    let cases: &[(&str, &str, &str, usize)] = &[
        ("name = \"f\"\n", "name = \"a#b\"\n", "fleet.name", 0),
        ("name = \"f\"\n", "", "fleet.name", 0),
        ("table = \"t\"\n", "table = \"\"\n", "fleet.table", 1),
        (
            "region = \"ap-northeast-3\"\n",
            "region = \"Tokyo\"\n",
            "fleet.region",
            2,
        ),
        (
            "region = \"ap-northeast-3\"\n",
            "region = \"ap-northeast-3\"\nlease = \"1s\"\n",
            "fleet.lease",
            3,
        ),
        (
            "region = \"ap-northeast-3\"\n",
            "region = \"ap-northeast-3\"\nlease = \"soon\"\n",
            "fleet.lease",
            3,
        ),
        (
            "region = \"ap-northeast-3\"\n",
            "region = \"ap-northeast-3\"\nendpoint_url = \"localhost:1\"\n",
            "fleet.endpoint_url",
            3,
        ),
        (
            "region = \"ap-northeast-3\"\n",
            "region = \"ap-northeast-3\"\nleese = \"20s\"\n",
            "leese",
            3,
        ),
    ];
    for (from, to, key, line) in cases {
        let err = with_fleet(&ok.replacen(from, to, 1)).unwrap_err();
        assert_eq!(err.key, *key, "{from} -> {to}: {err}");
        assert!(!err.fix.is_empty(), "{err}");
        // A missing key is reported at the table's header.
        if !to.is_empty() {
            assert_eq!(err.line, Some(line0 + line), "{from} -> {to}: {err}");
        }
    }
}

fn with_emf(emf: &str) -> Result<Config, ConfigError> {
    parse_str(&format!("{GOOD}\n[emf]\n{emf}"))
}

#[test]
fn emf_gets_its_defaults_and_takes_every_destination() {
    let c = with_emf("").unwrap().emf.unwrap();
    assert_eq!(c.to, EmfTo::Stdout);
    assert_eq!(c.namespace, "RPOAgent");
    assert_eq!(c.every, Duration::from_secs(60));
    assert_eq!(c.storage_resolution, 60);
    assert_eq!(
        c.dimensions,
        vec![vec![EmfDimension::Target, EmfDimension::ReplicaRegion]]
    );
    let c = with_emf(
        "to = \"tcp://127.0.0.1:25888\"\nevery = \"1s\"\nstorage_resolution = 1\ndimensions = [[\"Target\", \"ReplicaRegion\"], [\"Kind\"]]\n",
    )
    .unwrap()
    .emf
    .unwrap();
    assert_eq!(c.to, EmfTo::Tcp("127.0.0.1:25888".into()));
    assert_eq!(c.every, Duration::from_secs(1));
    assert_eq!(c.storage_resolution, 1);
    assert_eq!(c.dimensions.len(), 2);
    let c = with_emf("to = \"udp://cwagent:25888\"\n")
        .unwrap()
        .emf
        .unwrap();
    assert_eq!(c.to, EmfTo::Udp("cwagent:25888".into()));
    assert!(parse_str(GOOD).unwrap().emf.is_none());
}

#[test]
fn every_bad_emf_names_its_key_and_line() {
    let line0 = GOOD.lines().count() + 2;
    let cases: &[(&str, &str)] = &[
        ("to = \"stderr\"", "emf.to"),
        ("to = \"http://127.0.0.1:25888\"", "emf.to"),
        ("to = \"tcp://127.0.0.1\"", "emf.to"),
        ("to = \"udp://:25888\"", "emf.to"),
        ("namespace = \"AWS/DynamoDB\"", "emf.namespace"),
        ("namespace = \"\"", "emf.namespace"),
        ("every = \"500ms\"", "emf.every"),
        ("every = \"1500ms\"", "emf.every"),
        ("every = \"soon\"", "emf.every"),
        ("every = \"8h 1s\"", "emf.every"),
        ("every = \"1d\"", "emf.every"),
        ("storage_resolution = 10", "emf.storage_resolution"),
        ("dimensions = [[\"Table\"]]", "emf.dimensions"),
        ("dimensions = [[\"Target\", \"Target\"]]", "emf.dimensions"),
        ("dimensions = [[]]", "emf.dimensions"),
        ("dimensions = []", "emf.dimensions"),
        (
            "dimensions = [[\"Target\"], [\"Target\"]]",
            "emf.dimensions",
        ),
        ("namspace = \"RPOAgent\"", "namspace"),
    ];
    for (text, key) in cases {
        let err = with_emf(&format!("{text}\n")).unwrap_err();
        assert_eq!(err.key, *key, "{text}: {err}");
        assert!(!err.fix.is_empty(), "{err}");
        assert_eq!(err.line, Some(line0 + 1), "{text}: {err}");
    }
}

#[test]
fn an_empty_web_config_path_is_an_error() {
    let text = GOOD.replacen("[agent]\n", "[agent]\nweb_config = \" \"\n", 1);
    let err = parse_str(&text).unwrap_err();
    assert_eq!(err.key, "agent.web_config", "{err}");
    let text = GOOD.replacen(
        "[agent]\n",
        "[agent]\nweb_config = \"/etc/rpo-agent/web.yml\"\n",
        1,
    );
    assert_eq!(
        parse_str(&text).unwrap().agent.web_config,
        Some(std::path::PathBuf::from("/etc/rpo-agent/web.yml"))
    );
}

fn redis_target(extra: &str, source: &str, replica: &str) -> Result<Config, ConfigError> {
    parse_str(&format!(
        "[[target]]\nname = \"sessions\"\nkind = \"redis\"\nsource = {{ region = \"ap-northeast-1\", {source} }}\nreplicas = [{{ region = \"ap-northeast-3\", {replica} }}]\n{extra}\n"
    ))
}

#[test]
fn a_redis_target_takes_urls_auth_tls_and_cluster_mode() {
    let c = redis_target(
        "auth = { iam = true }\ncluster = true\nca_bundle = \"/etc/ca.pem\"",
        "url = \"rediss://rpo@primary.example:6379\", replication_group = \"s-apne1\"",
        "url = \"rediss://rpo@replica.example:6379\", replication_group = \"s-apne3\"",
    )
    .unwrap();
    let t = &c.targets[0];
    assert_eq!(t.kind, Kind::Redis);
    assert!(t.kind.single_writer());
    assert!(t.cluster);
    assert_eq!(t.auth, Auth::Iam);
    assert_eq!(t.replicas[0].replication_group.as_deref(), Some("s-apne3"));
    assert!(t.aws_reported_every.is_some());
    let plain = redis_target(
        "auth = { password_env = \"REDIS_AUTH\" }",
        "url = \"redis://primary.example:6379\"",
        "url = \"redis://replica.example:6379\"",
    )
    .unwrap();
    assert!(!plain.targets[0].cluster);
}

#[test]
fn bad_redis_targets_name_the_key_and_the_fix() {
    let src = "url = \"rediss://rpo@primary.example:6379\", replication_group = \"a\"";
    let rep = "url = \"rediss://rpo@replica.example:6379\", replication_group = \"b\"";
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "url = \"http://primary.example\"", rep, "source.url"),
        (
            "",
            "bucket = \"b\", url = \"rediss://h:1\"",
            rep,
            "source.bucket",
        ),
        ("", src, src, "replicas"),
        (
            "auth = { iam = true }",
            "url = \"rediss://primary.example:6379\", replication_group = \"a\"",
            rep,
            "source.url",
        ),
        (
            "auth = { iam = true }",
            src,
            "url = \"rediss://rpo@replica.example:6379\"",
            "replicas.replication_group",
        ),
        ("table = \"t\"", src, rep, "table"),
    ];
    for (extra, s, r, key) in cases {
        let e = redis_target(extra, s, r).expect_err(&format!("{extra} {s} {r}"));
        assert!(e.key.contains(key), "{key}: {e}");
        assert!(!e.fix.is_empty(), "{e}");
    }
    // cluster is a redis key only.
    let e = parse_str(&GOOD.replace("table = \"orders\"", "table = \"orders\"\ncluster = true"))
        .unwrap_err();
    assert!(e.key.ends_with("cluster"), "{e}");
    // A password in the URL never reaches the message.
    let e = redis_target("", "url = \"http://u:hunter2@h\"", rep).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
