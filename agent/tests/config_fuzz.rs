//! The configuration parser never panics (issue 8).
//!
//! `rpo-agent run` and `rpo-agent validate` hand whatever text the operator
//! wrote (a file, or `$RPO_AGENT_CONFIG` from an ECS task definition) to
//! `config::parse`. A panic there would be a crash with a backtrace instead of
//! the promised "file:line: `key`: problem, fix". So every generated document
//! must end in `Ok`, or in a `ConfigError` that names a key or a line (within
//! the document) and says what is wrong and how to fix it.
//!
//! Three sources of documents, each its own test so they run in parallel:
//! - structured: built from the real grammar and key set (raw.rs, validate.rs)
//!   with valid values most of the time, so validation is reached and passed;
//! - mutated: valid documents with bytes and lines deleted, duplicated,
//!   swapped, inserted or truncated, so the TOML parser's error paths and the
//!   span → line mapping see broken input near real input;
//! - raw: arbitrary strings, lossy-decoded arbitrary bytes, and a soup of
//!   TOML tokens.
//!
//! `RPO_FUZZ_CASES` is the total number of cases (default 2000, the CI run);
//! `RPO_FUZZ_CASES=100000` is the benchmark (see BENCHMARKS.md). Failure
//! persistence is off so a CI run never writes into the source tree; a failure
//! prints the shrunk document, which is all that is needed to reproduce it.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};
use rpo_agent::config::{parse, ConfigError, Origin};

// ---------------------------------------------------------------- harness

/// Total cases across all strategies.
fn total_cases() -> u32 {
    match std::env::var("RPO_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RPO_FUZZ_CASES={v:?} is not a number")),
        Err(_) => 2000,
    }
}

/// This strategy's share of the total, in tenths: structured 4, mutated 4,
/// raw text 1, raw bytes 1.
fn cases(tenths: u32) -> u32 {
    (total_cases() * tenths / 10).max(1)
}

/// What a document led to; the coverage checks use it to make sure a
/// generator does not silently degrade into "every case is a TOML syntax
/// error", which would pass while testing almost nothing.
#[derive(Default)]
struct Tally {
    ok: Cell<u32>,
    /// Errors from the TOML/shape stage (`raw.rs`).
    shape: Cell<u32>,
    /// Errors from `validate.rs`: the document was well-formed TOML of the
    /// right shape.
    validation: Cell<u32>,
}

impl Tally {
    fn bump(c: &Cell<u32>) {
        c.set(c.get() + 1);
    }
    fn total(&self) -> u32 {
        self.ok.get() + self.shape.get() + self.validation.get()
    }
    fn report(&self, what: &str) {
        println!(
            "{what}: {} cases: {} ok, {} shape errors, {} validation errors",
            self.total(),
            self.ok.get(),
            self.shape.get(),
            self.validation.get()
        );
    }
    /// Asserts that at least `pct` percent of the cases were of the kind.
    /// The thresholds sit far (5+ standard deviations) below what the
    /// generators give, so they only trip when a generator really changed;
    /// below 200 cases chance alone could trip them, so they are skipped.
    fn at_least(&self, what: &str, kind: &str, n: u32, pct: u32) {
        let total = self.total();
        if total < 200 {
            return;
        }
        assert!(
            u64::from(n) * 100 >= u64::from(total) * u64::from(pct),
            "{what}: only {n} of {total} cases were {kind} (want >= {pct}%): the generator \
             no longer reaches that part of the parser"
        );
    }
}

/// Validation errors name keys the way `validate.rs` builds them; shape
/// errors name the key found on the offending line.
fn is_validation(e: &ConfigError) -> bool {
    e.key.starts_with("agent.")
        || e.key.starts_with("target[")
        || e.key == "target.name"
        || (e.key == "target" && e.line.is_none())
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".into())
}

/// The passwords of the generated URLs. Errors quote values (a TOML type
/// error, "`…` is not a valid name"), and ARCHITECTURE.md promises that
/// `ConfigError` shows URLs only redacted, wherever they were written.
const PASSWORD_MARK: &str = "hunter";

/// The property: parse ends in `Ok` or in an error that points somewhere real
/// and says what to do. With `intact_urls` (no byte mutations, so every
/// password still sits inside a URL) the error must not show a password.
fn check(text: &str, tally: &Tally, intact_urls: bool) -> Result<(), TestCaseError> {
    let origin = Origin::File("fuzz.toml".into());
    let res = catch_unwind(AssertUnwindSafe(|| parse(&origin, text)))
        .map_err(|p| TestCaseError::fail(format!("config::parse panicked: {}", panic_text(&*p))))?;
    let e = match res {
        Ok(_) => {
            Tally::bump(&tally.ok);
            return Ok(());
        }
        Err(e) => e,
    };
    prop_assert!(
        !e.key.is_empty() || e.line.is_some(),
        "error names neither a key nor a line: {e:?}"
    );
    prop_assert!(
        !e.problem.trim().is_empty(),
        "error without a problem: {e:?}"
    );
    prop_assert!(!e.fix.trim().is_empty(), "error without a fix: {e:?}");
    if let Some(line) = e.line {
        // `line_of` may point just past a final newline, hence the + 1.
        let lines = text.lines().count();
        prop_assert!(
            line >= 1 && line <= lines + 1,
            "line {line} outside the document's {lines} lines: {e:?}"
        );
    }
    let shown = catch_unwind(AssertUnwindSafe(|| e.to_string())).map_err(|p| {
        TestCaseError::fail(format!(
            "ConfigError's Display panicked: {}",
            panic_text(&*p)
        ))
    })?;
    prop_assert!(shown.starts_with("fuzz.toml:"), "origin not named: {shown}");
    prop_assert!(shown.contains("fix:"), "fix not shown: {shown}");
    prop_assert!(
        !intact_urls || !shown.contains(PASSWORD_MARK),
        "a password reached the error message: {shown}"
    );
    Tally::bump(if is_validation(&e) {
        &tally.validation
    } else {
        &tally.shape
    });
    Ok(())
}

/// Runs `strategy` for `n` cases; a failure panics with the shrunk document.
fn run<S>(what: &str, n: u32, strategy: S, tally: &Tally, intact_urls: bool)
where
    S: Strategy<Value = String>,
{
    let config = RunnerConfig {
        cases: n,
        failure_persistence: None,
        fork: false,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, |doc| check(&doc, tally, intact_urls)) {
        Ok(()) => tally.report(what),
        Err(TestError::Fail(why, doc)) => {
            panic!(
                "{what}: {why}\nminimal document ({} bytes):\n{doc:?}",
                doc.len()
            )
        }
        Err(TestError::Abort(why)) => panic!("{what}: proptest aborted: {why}"),
    }
}

// ---------------------------------------------------------------- TOML values

const AGENT_KEYS: &[&str] = &[
    "id",
    "listen",
    "objective",
    "interval",
    "timeout",
    "shutdown_grace",
    "aws_reported_every",
];

const TARGET_KEYS: &[&str] = &[
    "name",
    "kind",
    "table",
    "source",
    "replicas",
    "interval",
    "timeout",
    "objective",
    "direction",
    "prefix",
    "delete_seen",
    "max_pending",
    "auth",
    "ca_bundle",
    "aws_reported_every",
];

const ENDPOINT_KEYS: &[&str] = &["region", "bucket", "url", "endpoint_url"];
const AUTH_KEYS: &[&str] = &["password_env", "iam", "secret_arn"];

/// Near misses of real keys, and keys of other sections.
const MISSPELLED: &[&str] = &[
    "tabel",
    "objectve",
    "regoin",
    "intervall",
    "Name",
    "max-pending",
    "deleteSeen",
    "password",
    "aws_reported_evry",
    "",
    "target",
    "agent",
];

/// A TOML string literal of `s`, in one of TOML's four string styles when `s`
/// fits it, else as an escaped basic string.
fn toml_str(s: &str, style: u8) -> String {
    let plain = !s.chars().any(|c| c.is_control() || c == '\'');
    match style % 4 {
        1 if plain => format!("'{s}'"),
        2 if plain && !s.contains("'''") => format!("'''{s}'''"),
        3 if !s.contains('\\')
            && !s.contains('"')
            && !s.chars().any(|c| c.is_control() && c != '\n') =>
        {
            format!("\"\"\"{s}\"\"\"")
        }
        _ => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn string_lit(s: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (s, any::<u8>()).prop_map(|(s, style)| toml_str(&s, style))
}

fn strs(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(list).prop_map(str::to_string)
}

/// Durations valid in every position (interval >= 100ms, timeout > interval
/// holds against the defaults).
const GOOD_INTERVALS: &[&str] = &["1s", "5s", "250ms", "30s", "2m"];
const GOOD_TIMEOUTS: &[&str] = &["10m", "1h", "600s", "15m"];
const GOOD_OBJECTIVES: &[&str] = &["60s", "15m", "1h", "500ms", "5m"];
const GOOD_GRACES: &[&str] = &["10s", "0s", "1m", "1500ms"];
const GOOD_REPORTED: &[&str] = &["1m", "5m", "off", "1h"];

/// Durations that are wrong, extreme, or odd: zero, negative, overflowing,
/// unit-less, unknown units, non-ASCII digits and units.
const ODD_DURATIONS: &[&str] = &[
    "0s",
    "0ms",
    "-1s",
    "99ms",
    "100ms",
    "99999999999h",
    "18446744073709551615s",
    "18446744073709551616s",
    "584942417355y",
    "1e3s",
    "5 parsecs",
    "",
    " ",
    "  5s  ",
    "5",
    "s",
    "1h 30m",
    "5 s",
    "1y",
    "1w",
    "1ns",
    "∞s",
    "５s",
    "5ｓ",
    "1µs",
    "0x10s",
    "nan",
];

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => strs(GOOD_INTERVALS),
        3 => strs(ODD_DURATIONS),
        2 => "[0-9]{1,25}(ns|us|µs|ms|s|sec|m|min|h|d|w|M|y)",
        1 => "-?[0-9]{0,6}(\\.[0-9]{0,3})?[a-zµ ]{0,5}",
    ]
}

/// Strings that stress the validators: empty, whitespace, unicode, control
/// characters, separators used in canary keys, URL-ish text.
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\t",
    "auto",
    "東京",
    "🦀",
    "a#b",
    "a/b",
    "\u{0}",
    "\u{7f}",
    "\u{feff}x",
    "\r\n",
    "é",
    "x\u{301}",
    "mysql://",
    "://",
    "arn:",
    "https://",
    "1979-05-27T07:32:00Z",
];

/// Connection URLs with passwords (`PASSWORD_MARK`), to be put anywhere: an
/// operator may well write `source = "postgres://…"`.
const SECRET_URLS: &[&str] = &[
    "postgres://rpo:hunter2@writer.example:5432/app",
    "postgresql://rpo@reader.example/app?sslmode=require&password=hunter3",
    "mysql://rpo:hunter2@writer.example/app",
    "https://key:hunter2@s3.example",
];

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => strs(ODD_STRINGS),
        1 => strs(SECRET_URLS),
        1 => duration_text(),
        2 => ".{0,24}",
        1 => "[a-z0-9._#/:@-]{0,16}",
    ]
}

fn float_lit(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        // Debug always prints a '.' or an exponent, as TOML floats need.
        format!("{f:?}")
    }
}

/// Any TOML value, of any type, nested a little: what a confused operator (or
/// a broken template) might put after any `=`.
fn any_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => string_lit(any_string()),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => strs(&[
            "0", "-1", "1", "9223372036854775807", "9223372036854775808",
            "-9223372036854775809", "99999999999999999999", "0xff", "0o17", "0b101",
            "1_000", "+5", "-0", "007",
        ]),
        1 => any::<f64>().prop_map(float_lit),
        1 => strs(&["nan", "+inf", "-inf", "1e400", "-0.0", "3.14", "5e-324", "1.", ".5"]),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => strs(&["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "1979-05-27 07:32:00.999"]),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((any_key(), inner), 0..4).prop_map(|kv| inline_table(&kv)),
        ]
    })
    .boxed()
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        strs(AGENT_KEYS),
        strs(TARGET_KEYS),
        strs(ENDPOINT_KEYS),
        strs(AUTH_KEYS),
        strs(MISSPELLED).prop_map(|k| if k.is_empty() { "\"\"".into() } else { k }),
    ]
}

fn inline_table(kv: &[(String, String)]) -> String {
    if kv.is_empty() {
        return "{}".into();
    }
    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", body.join(", "))
}

// ---------------------------------------------------------------- the grammar

const REGIONS: &[&str] = &["ap-northeast-1", "ap-northeast-3", "us-east-1", "eu-west-1"];

/// A value for `key` as `raw.rs` types it; mostly valid, sometimes odd.
fn value_for(key: &str) -> BoxedStrategy<String> {
    let odd = match key {
        "id" => string_lit(strs(&[
            "auto",
            "dr-agent-1",
            "",
            "a#b",
            "a/b",
            "東京-1",
            " auto ",
        ]))
        .boxed(),
        "listen" => string_lit(strs(&[
            "127.0.0.1:9464",
            "0.0.0.0:0",
            "[::1]:9464",
            "localhost",
            "127.0.0.1:99999",
            "",
            ":9464",
            "127.0.0.1",
            "256.0.0.1:1",
        ]))
        .boxed(),
        "objective" | "interval" | "timeout" | "shutdown_grace" => {
            string_lit(duration_text()).boxed()
        }
        "aws_reported_every" => string_lit(prop_oneof![
            duration_text(),
            strs(&["off", " off ", "Off", "1m", "59s", "60s"]),
        ])
        .boxed(),
        "name" => string_lit(prop_oneof![
            strs(&["orders", "invoices", "core-db", "a.b_c", "", "bad name", "東京", "a#b"]),
            "[a-zA-Z0-9._-]{1,12}",
        ])
        .boxed(),
        "kind" => string_lit(strs(&[
            "dynamodb",
            "s3",
            "postgres",
            "mysql",
            "gcs",
            "",
            "S3",
            "postgresql",
        ]))
        .boxed(),
        "direction" => string_lit(strs(&["one-way", "both", "sideways", "", "Both"])).boxed(),
        "delete_seen" | "iam" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        "max_pending" => prop_oneof![
            strs(&[
                "1",
                "1000",
                "0",
                "-1",
                "9223372036854775807",
                "-9223372036854775808"
            ]),
            any::<i64>().prop_map(|i| i.to_string()),
        ]
        .boxed(),
        "source" => endpoint().boxed(),
        "replicas" => prop::collection::vec(endpoint(), 0..4)
            .prop_map(|v| format!("[{}]", v.join(", ")))
            .boxed(),
        "auth" => auth().boxed(),
        "region" => string_lit(prop_oneof![
            strs(REGIONS),
            strs(&["Tokyo", "", "ap_northeast_1"])
        ])
        .boxed(),
        "url" => string_lit(strs(&[
            "postgres://rpo@writer.example:5432/app",
            "postgresql://rpo:hunter2@reader.example/app?sslpassword=x",
            "mysql://rpo@h/app",
            "mariadb://h",
            "http://x",
            "",
            "postgres://",
            "://",
            "postgres://u:p@h@x",
        ]))
        .boxed(),
        "endpoint_url" => string_lit(strs(&[
            "http://127.0.0.1:4566",
            "https://dynamodb.ap-northeast-1.amazonaws.com",
            "ftp://x",
            "",
        ]))
        .boxed(),
        "secret_arn" => string_lit(strs(&[
            "arn:aws:secretsmanager:ap-northeast-1:1:secret:db",
            "db",
            "",
        ]))
        .boxed(),
        _ => string_lit(any_string()).boxed(),
    };
    prop_oneof![
        10 => odd,
        2 => any_value(),
        1 => string_lit(strs(SECRET_URLS)),
    ]
    .boxed()
}

/// An inline endpoint table with any subset of its keys, in any order, now
/// and then with a duplicated or unknown key.
fn endpoint() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        12 => strs(ENDPOINT_KEYS),
        1 => strs(MISSPELLED),
    ];
    prop::collection::vec(
        keys.prop_flat_map(|k| value_for(&k).prop_map(move |v| (k.clone(), v))),
        0..4,
    )
    .prop_map(|kv| inline_table(&kv))
}

fn auth() -> impl Strategy<Value = String> {
    let keys = prop_oneof![10 => strs(AUTH_KEYS), 1 => strs(MISSPELLED)];
    prop::collection::vec(
        keys.prop_flat_map(|k| value_for(&k).prop_map(move |v| (k.clone(), v))),
        0..3,
    )
    .prop_map(|kv| inline_table(&kv))
}

/// A target that validates as written, for one of the four kinds; the
/// perturbations applied afterwards make most of them fail in one place.
fn coherent_target() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        strs(&["orders", "invoices", "core-db", "ledger"]),
        "[a-z][a-z0-9._-]{0,10}",
    ];
    let regions = subsequence(REGIONS, 2..=4).prop_shuffle();
    let optional = (
        proptest::option::of(strs(GOOD_INTERVALS)),
        proptest::option::of(strs(GOOD_TIMEOUTS)),
        proptest::option::of(strs(GOOD_OBJECTIVES)),
        proptest::option::of(1i64..100_000),
        any::<u8>(),
        proptest::option::of(strs(GOOD_REPORTED)),
    );
    (name, 0..4usize, regions, optional, 0..3u8).prop_map(
        |(
            name,
            kind,
            regions,
            (interval, timeout, objective, max_pending, style, reported),
            extra,
        )| {
            let q = |s: &str| toml_str(s, style);
            let mut kv = vec![("name".to_string(), q(&name))];
            let kind = ["dynamodb", "s3", "postgres", "mysql"][kind];
            kv.push(("kind".into(), q(kind)));
            let (src, reps) = regions.split_first().expect("at least two regions");
            let ep = |i: usize, region: &str| match kind {
                "dynamodb" => format!("{{ region = {} }}", q(region)),
                "s3" => format!(
                    "{{ region = {}, bucket = {} }}",
                    q(region),
                    q(&format!("b{i}"))
                ),
                "postgres" => format!(
                    "{{ region = {}, url = {} }}",
                    q(region),
                    q(&format!("postgres://rpo@db{i}.example:5432/app"))
                ),
                _ => format!(
                    "{{ region = {}, url = {} }}",
                    q(region),
                    q(&format!("mysql://rpo@db{i}.example/app"))
                ),
            };
            kv.push(("source".into(), ep(0, src)));
            let reps: Vec<String> = reps.iter().enumerate().map(|(i, r)| ep(i + 1, r)).collect();
            kv.push(("replicas".into(), format!("[{}]", reps.join(", "))));
            match (kind, extra) {
                ("dynamodb", _) => {
                    kv.push(("table".into(), q(&name)));
                    if extra == 1 {
                        kv.push(("direction".into(), q("both")));
                    }
                }
                ("s3", 1) => kv.push(("prefix".into(), q("canaries/"))),
                ("s3", 2) => kv.push(("delete_seen".into(), "true".into())),
                (_, 1) => kv.push(("auth".into(), "{ iam = true }".into())),
                (_, 2) => kv.push((
                    "auth".into(),
                    format!(
                        "{{ secret_arn = {} }}",
                        q("arn:aws:secretsmanager:ap-northeast-1:1:secret:db")
                    ),
                )),
                _ => {}
            }
            for (k, v) in [
                ("interval", interval),
                ("timeout", timeout),
                ("objective", objective),
            ] {
                if let Some(v) = v {
                    kv.push((k.into(), q(v.as_str())));
                }
            }
            if let Some(m) = max_pending {
                kv.push(("max_pending".into(), m.to_string()));
            }
            // CloudWatch figures exist for DynamoDB and S3 only.
            if let (Some(r), "dynamodb" | "s3") = (reported, kind) {
                kv.push(("aws_reported_every".into(), q(r.as_str())));
            }
            kv
        },
    )
}

/// Edits of a table's entries: drop one, set one (real key, near miss or
/// another section's key) to a possibly wrong value, or repeat one.
#[derive(Debug, Clone)]
enum Edit {
    Drop(Index),
    Set(String, String),
    Repeat(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = prop_oneof![
        12 => strs(TARGET_KEYS),
        1 => strs(MISSPELLED),
        1 => strs(ENDPOINT_KEYS),
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(Edit::Drop),
        8 => key.prop_flat_map(|k| value_for(&k).prop_map(move |v| Edit::Set(k.clone(), v))),
        1 => any::<Index>().prop_map(Edit::Repeat),
    ]
}

fn apply_edits(mut kv: Vec<(String, String)>, edits: Vec<Edit>) -> Vec<(String, String)> {
    for e in edits {
        match e {
            Edit::Drop(i) if !kv.is_empty() => {
                kv.remove(i.index(kv.len()));
            }
            Edit::Repeat(i) if !kv.is_empty() => {
                let x = kv[i.index(kv.len())].clone();
                kv.push(x);
            }
            Edit::Set(k, v) => match kv.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => kv.push((k, v)),
            },
            _ => {}
        }
    }
    kv
}

fn target_entries() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        // Valid, then edited 0..3 times: 0 edits checks that valid documents pass.
        9 => (coherent_target(), prop::collection::vec(edit(), 0..3))
            .prop_map(|(kv, edits)| apply_edits(kv, edits)),
        // Any keys with any values.
        1 => prop::collection::vec(
            prop_oneof![5 => strs(TARGET_KEYS), 1 => strs(MISSPELLED)]
                .prop_flat_map(|k| value_for(&k).prop_map(move |v| (k.clone(), v))),
            0..8,
        ),
    ]
}

fn agent_entries() -> impl Strategy<Value = Vec<(String, String)>> {
    let valid = |k: &str| -> BoxedStrategy<String> {
        let list: &'static [&'static str] = match k {
            "id" => &["auto", "dr-agent-1", "a.b_c"],
            "listen" => &["127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464"],
            "objective" => GOOD_OBJECTIVES,
            "interval" => GOOD_INTERVALS,
            "timeout" => GOOD_TIMEOUTS,
            "aws_reported_every" => GOOD_REPORTED,
            _ => GOOD_GRACES,
        };
        string_lit(strs(list)).boxed()
    };
    let keys = subsequence(AGENT_KEYS, 0..=AGENT_KEYS.len());
    let stray = proptest::option::weighted(0.1, (strs(MISSPELLED), any_value()));
    (keys, any::<bool>(), stray).prop_flat_map(move |(keys, strict, stray)| {
        let values: Vec<BoxedStrategy<String>> = keys
            .iter()
            .map(|k| if strict { valid(k) } else { value_for(k) })
            .collect();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        values.prop_map(move |vals| {
            let mut kv: Vec<(String, String)> = keys.iter().cloned().zip(vals).collect();
            if let Some(s) = &stray {
                kv.push(s.clone());
            }
            kv
        })
    })
}

/// Layout details that change spans and lines but not meaning (mostly):
/// spacing, comments, quoted keys, blank lines, CRLF.
fn render_table(header: &str, kv: &[(String, String)], style: u8) -> String {
    let nl = if style & 0x40 != 0 { "\r\n" } else { "\n" };
    let mut out = String::new();
    if style & 1 != 0 {
        out.push_str(&format!("# {header}{nl}"));
    }
    out.push_str(header);
    out.push_str(nl);
    for (i, (k, v)) in kv.iter().enumerate() {
        let key = if style & 2 != 0 && i % 3 == 0 && !k.starts_with('"') {
            format!("\"{k}\"")
        } else {
            k.clone()
        };
        let sep = if style & 4 != 0 { "=" } else { " = " };
        let indent = if style & 8 != 0 { "  " } else { "" };
        let comment = if style & 16 != 0 { "  # why not" } else { "" };
        out.push_str(&format!("{indent}{key}{sep}{v}{comment}{nl}"));
        if style & 32 != 0 {
            out.push_str(nl);
        }
    }
    out
}

fn structured_doc() -> impl Strategy<Value = String> {
    (
        proptest::option::of(agent_entries()),
        // No target at all is one error; keep it rare so targets get validated.
        prop_oneof![
            1 => Just(Vec::new()),
            9 => prop::collection::vec(target_entries(), 1..4),
        ],
        any::<u8>(),
        // 1..=4 are the layouts that are errors or odd; 0 and 5.. the usual one.
        0..12u8,
    )
        .prop_map(|(agent, targets, style, placement)| {
            let mut doc = String::new();
            // TOML allows top-level keys only before the first table.
            if placement == 1 {
                doc.push_str("stray = 1\n");
            }
            let agent_text = agent.map(|kv| render_table("[agent]", &kv, style));
            if placement != 2 {
                doc.push_str(agent_text.as_deref().unwrap_or(""));
            }
            for t in &targets {
                doc.push('\n');
                doc.push_str(&render_table("[[target]]", t, style));
            }
            match placement {
                // [agent] after the targets is still valid TOML.
                2 => doc.push_str(agent_text.as_deref().unwrap_or("")),
                3 => doc.push_str("\n[bogus]\nx = 1\n"),
                4 => doc.push_str("\n[agent]\nid = \"again\"\n"),
                _ => {}
            }
            doc
        })
}

// ---------------------------------------------------------------- mutation

/// The design example, the same file `config/tests.rs` starts from.
const GOOD: &str = include_str!("../src/config/testdata/design-example.toml");

/// Every key, sub-tables instead of inline tables, a multi-line array,
/// comments, literal strings, multi-byte UTF-8 (so byte mutations split
/// characters): what GOOD does not have.
const EVERY_KEY: &str = r#"# rpo-agent configuration: 東京 → 大阪 🦀
[agent]
id = 'dr-東京-1'
listen = "0.0.0.0:9464"
objective = "2m"
interval = "1s"
timeout = "5m"   # canaries unseen this long are lost
shutdown_grace = "15s"
aws_reported_every = "5m"

[[target]]
name = "ledger"
kind = "mysql"
replicas = [
  { region = "ap-northeast-3", url = "mysql://rpo@reader-a.example/ledger" },
  { region = "us-east-1", url = "mariadb://rpo@reader-b.example/ledger" },
]
max_pending = 500
ca_bundle = "/etc/ssl/rds-global-bundle.pem"
objective = "30s"

[target.source]
region = "ap-northeast-1"
url = "mysql://rpo@writer.example:3306/ledger"

[target.auth]
secret_arn = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:ledger"

[[target]]
name = "events"
kind = "dynamodb"
table = "events"
direction = "both"
aws_reported_every = "off"
source = { region = "ap-northeast-1", endpoint_url = "http://127.0.0.1:4566" }

[[target.replicas]]
region = "ap-northeast-3"
endpoint_url = "http://127.0.0.1:4566"

[[target.replicas]]
region = "eu-west-1"

[[target]]
name = "assets"
kind = "s3"
source = { region = "ap-northeast-1", bucket = "assets-tokyo" }
replicas = [{ region = "ap-northeast-3", bucket = "assets-osaka" }]
prefix = '''canaries/'''
delete_seen = true
interval = "500ms"
timeout = "1h"
"#;

/// The smallest valid document: no [agent] table at all.
const MINIMAL: &str = "[[target]]\nname=\"t\"\nkind=\"dynamodb\"\ntable=\"t\"\nsource={region=\"ap-northeast-1\"}\nreplicas=[{region=\"ap-northeast-3\"}]";

const BASES: &[&str] = &[GOOD, EVERY_KEY, MINIMAL];

/// Byte strings worth inserting: TOML punctuation, quotes that open strings,
/// multi-byte UTF-8 (so truncation and deletion split characters), CR, BOM.
const SNIPPETS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "#",
    ",",
    ".",
    "\\",
    "\\u",
    "\n",
    "\r",
    "\r\n",
    "\t",
    " ",
    "\u{0}",
    "\u{feff}",
    "é",
    "東",
    "🦀",
    "-",
    "0",
    "1e",
    "nan",
    "true",
    "[agent]\n",
    "[[target]]\n",
    "name = \"x\"\n",
    "target = 1\n",
    "x.y.z = 1\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteBytes(Index, usize),
    Insert(Index, Vec<u8>),
    ReplaceByte(Index, u8),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Replace what follows the first `=` on a line with another value.
    ReplaceValue(Index, String),
    InsertLine(Index, String),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop_oneof![
        3 => strs(SNIPPETS).prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..4),
        1 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
    ];
    let line = any_key().prop_flat_map(|k| value_for(&k).prop_map(move |v| format!("{k} = {v}")));
    prop_oneof![
        2 => (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::DeleteBytes(i, n)),
        3 => (any::<Index>(), bytes).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::ReplaceByte(i, b)),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        2 => any::<Index>().prop_map(Mutation::DuplicateLine),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (any::<Index>(), any_value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        2 => (any::<Index>(), line).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn split_lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
}

fn mutate(doc: &mut Vec<u8>, m: &Mutation) {
    // Positions in 0..=len for insertions, 0..len for everything else.
    let at = |i: &Index, len: usize| i.index(len + 1);
    match m {
        Mutation::DeleteBytes(i, n) if !doc.is_empty() => {
            let s = i.index(doc.len());
            let e = (s + n).min(doc.len());
            doc.drain(s..e);
        }
        Mutation::Insert(i, b) => {
            let s = at(i, doc.len());
            doc.splice(s..s, b.iter().copied());
        }
        Mutation::ReplaceByte(i, b) if !doc.is_empty() => {
            let s = i.index(doc.len());
            doc[s] = *b;
        }
        Mutation::Truncate(i) => {
            let s = at(i, doc.len());
            doc.truncate(s);
        }
        Mutation::DeleteLine(i)
        | Mutation::DuplicateLine(i)
        | Mutation::SwapLines(i, _)
        | Mutation::ReplaceValue(i, _)
        | Mutation::InsertLine(i, _) => {
            let mut lines = split_lines(doc);
            let n = i.index(lines.len());
            match m {
                Mutation::DeleteLine(_) => {
                    lines.remove(n);
                }
                Mutation::DuplicateLine(_) => {
                    let l = lines[n].clone();
                    lines.insert(n, l);
                }
                Mutation::SwapLines(_, j) => {
                    let j = j.index(lines.len());
                    lines.swap(n, j);
                }
                Mutation::ReplaceValue(_, v) => {
                    if let Some(eq) = lines[n].iter().position(|&c| c == b'=') {
                        lines[n].truncate(eq + 1);
                        lines[n].push(b' ');
                        lines[n].extend_from_slice(v.as_bytes());
                    }
                }
                Mutation::InsertLine(_, l) => {
                    let n = at(i, lines.len());
                    lines.insert(n, l.clone().into_bytes());
                }
                _ => unreachable!(),
            }
            *doc = lines.join(&b'\n');
        }
        _ => {}
    }
}

fn mutated_doc() -> impl Strategy<Value = String> {
    (0..BASES.len(), prop::collection::vec(mutation(), 1..5)).prop_map(|(base, ms)| {
        let mut doc = BASES[base].as_bytes().to_vec();
        for m in &ms {
            mutate(&mut doc, m);
        }
        String::from_utf8_lossy(&doc).into_owned()
    })
}

// ---------------------------------------------------------------- raw

/// TOML-ish tokens glued at random: gets far deeper into the TOML parser than
/// uniformly random characters, which nearly all fail on the first byte.
const TOKENS: &[&str] = &[
    "[agent]",
    "[[target]]",
    "[target.source]",
    "[[target.replicas]]",
    "name",
    "kind",
    "source",
    "replicas",
    "region",
    "interval",
    "id",
    "=",
    " = ",
    " ",
    "\n",
    "\r\n",
    "\"",
    "'",
    "\"\"\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ".",
    "#",
    "\\",
    "\"5s\"",
    "\"dynamodb\"",
    "\"ap-northeast-1\"",
    "1",
    "-1",
    "true",
    "1979-05-27",
    "é",
    "🦀",
    "\t",
    "\u{0}",
];

fn raw_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => ".*",
        1 => "(?s).{0,300}",
        2 => prop::collection::vec(select(TOKENS), 0..80).prop_map(|t| t.concat()),
    ]
}

fn raw_bytes() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..512)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------- tests

#[test]
fn structured_documents_parse_or_name_their_problem() {
    let tally = Tally::default();
    let what = "structured";
    run(what, cases(4), structured_doc(), &tally, true);
    // The generator must both pass validation and fail inside it, or it
    // tests only half of `parse`.
    tally.at_least(what, "Ok", tally.ok.get(), 2);
    tally.at_least(what, "validation errors", tally.validation.get(), 10);
    tally.at_least(what, "shape errors", tally.shape.get(), 10);
}

#[test]
fn mutated_documents_parse_or_name_their_problem() {
    let tally = Tally::default();
    let what = "mutated";
    run(what, cases(4), mutated_doc(), &tally, false);
    tally.at_least(what, "Ok", tally.ok.get(), 1);
    tally.at_least(what, "validation errors", tally.validation.get(), 2);
    tally.at_least(what, "shape errors", tally.shape.get(), 10);
}

#[test]
fn arbitrary_text_parses_or_names_its_problem() {
    let tally = Tally::default();
    run("raw text", cases(1), raw_text(), &tally, false);
}

#[test]
fn arbitrary_bytes_parse_or_name_their_problem() {
    let tally = Tally::default();
    run("raw bytes", cases(1), raw_bytes(), &tally, false);
}

/// The mutation strategy starts from valid documents; if one stopped
/// validating (a renamed key, a new required key), mutation would test
/// broken-from-the-start input only.
#[test]
fn mutation_bases_are_valid() {
    for (i, base) in BASES.iter().enumerate() {
        let cfg = parse(&Origin::Inline, base).unwrap_or_else(|e| panic!("base {i}: {e}"));
        assert!(!cfg.targets.is_empty(), "base {i}");
    }
    let every = parse(&Origin::Inline, EVERY_KEY).expect("EVERY_KEY is valid");
    assert_eq!(every.targets.len(), 3);
    assert_eq!(
        every.targets[1].replicas.len(),
        2,
        "[[target.replicas]] tables"
    );
    assert!(
        every.targets[0].ca_bundle.is_some(),
        "[target.source] sub-table"
    );
}

/// The leak the structured run found: a connection URL where a table was
/// expected got quoted whole by TOML's type error ("invalid type: string
/// \"postgres://u:hunter2@…\""), and one on a line without `=` became the key.
#[test]
fn a_url_in_the_wrong_place_is_shown_redacted() {
    for doc in [
        GOOD.replacen(
            "source = { region = \"ap-northeast-1\" }",
            "source = \"postgres://rpo:hunter2@writer.example/app\"",
            1,
        ),
        GOOD.replacen(
            "replicas = [{ region = \"ap-northeast-3\" }]",
            "replicas = [\n  \"postgres://rpo:hunter2@reader.example/app\",\n]",
            1,
        ),
        GOOD.replacen(
            "name = \"orders\"",
            "name = \"mysql://rpo:hunter2@h/db\"",
            1,
        ),
    ] {
        let err = parse(&Origin::Inline, &doc).expect_err("not a valid document");
        let shown = err.to_string();
        assert!(!shown.contains(PASSWORD_MARK), "{shown}");
        assert!(
            shown.contains("rpo:***@"),
            "the URL is still recognisable: {shown}"
        );
    }
}
