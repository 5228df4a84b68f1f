//! `rpo-agent check` against the lab: every set-up problem the preflight
//! knows is shown as ✗ with its fix, a good set-up as ✓, and the exit
//! status says whether anything is wrong. One lab (AWS + SQL) for the file.

use rpo_integration_tests::sql::{lab_target, SRC};
use rpo_integration_tests::{rt, run_command, Lab};

const DST: &str = "ap-northeast-3";

fn lab() -> &'static Lab {
    Lab::shared("aws,sql")
}

/// Runs `rpo-agent ARGS --config <targets>` with the lab's environment.
fn agent(args: &[&str], targets: &[String]) -> (Option<i32>, String) {
    let config = format!("[agent]\nid = \"check\"\n\n{}", targets.join("\n"));
    run_command(args, &config, &lab().env)
}

fn dynamodb(name: &str) -> String {
    format!("[[target]]\nname = \"{name}\"\nkind = \"dynamodb\"\ntable = \"{name}\"\nsource = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\n")
}

fn s3(name: &str) -> String {
    format!("[[target]]\nname = \"{name}\"\nkind = \"s3\"\nsource = {{ region = \"{SRC}\", bucket = \"{name}-tokyo\" }}\nreplicas = [{{ region = \"{DST}\", bucket = \"{name}-osaka\" }}]\n")
}

async fn enable_ttl(lab: &Lab, table: &str) {
    use aws_sdk_dynamodb::types::TimeToLiveSpecification;
    for region in [SRC, DST] {
        aws_sdk_dynamodb::Client::new(&lab.sdk(region).await)
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("UpdateTimeToLive");
    }
}

/// The line of `out` starting with `mark target:` that contains `what`,
/// and the indented problem line under it.
fn line<'a>(out: &'a str, mark: char, target: &str, what: &str) -> Option<(&'a str, &'a str)> {
    let lines: Vec<&str> = out.lines().collect();
    lines.iter().enumerate().find_map(|(i, l)| {
        (l.starts_with(&format!("{mark} {target}:")) && l.contains(what))
            .then(|| (*l, lines.get(i + 1).copied().unwrap_or("")))
    })
}

/// The fix printed under the ✗ line of `target` that contains `what`.
fn problem<'a>(out: &'a str, target: &str, what: &str) -> &'a str {
    line(out, '✗', target, what)
        .unwrap_or_else(|| panic!("no ✗ {target}: {what} in:\n{out}"))
        .1
}

#[test]
fn a_good_set_up_passes_and_every_problem_is_shown_with_its_fix() {
    let lab = lab();
    rt().block_on(async {
        lab.create_global_table("good", SRC, DST, None).await;
        enable_ttl(lab, "good").await;
        lab.create_global_table("nottl", SRC, DST, None).await;
        lab.create_replicated_buckets("goods3-tokyo", SRC, &[("goods3-osaka", DST)], "", true)
            .await;
        lab.create_replicated_buckets("nolc-tokyo", SRC, &[("nolc-osaka", DST)], "", false)
            .await;
    });

    let good = [dynamodb("good"), s3("goods3")];
    let (code, out) = agent(&["check"], &good);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    for (target, what) in [
        ("good", "dynamodb ap-northeast-1 → ap-northeast-3"),
        (
            "good",
            "TTL on attribute `ttl` of table good (ap-northeast-3)",
        ),
        (
            "goods3",
            "lifecycle rule on `rpo-canary/` in bucket goods3-osaka",
        ),
    ] {
        assert!(
            line(&out, '✓', target, what).is_some(),
            "✓ {target}: {what}\n{out}"
        );
    }
    assert!(!out.contains('✗'), "{out}");

    let bad = [dynamodb("nottl"), s3("nolc"), dynamodb("absent")];
    let (code, out) = agent(&["check"], &bad);
    println!("{out}");
    assert_eq!(code, Some(1), "{out}");
    let fix = problem(
        &out,
        "nottl",
        "TTL on attribute `ttl` of table nottl (ap-northeast-1)",
    );
    assert!(fix.contains("update-time-to-live"), "{fix}");
    let fix = problem(
        &out,
        "nolc",
        "lifecycle rule on `rpo-canary/` in bucket nolc-tokyo",
    );
    assert!(fix.contains("Expiration Days=1"), "{fix}");
    let fix = problem(&out, "absent", "reachable and set up for replication");
    assert!(fix.contains("does not exist"), "{fix}");
    assert!(out.contains("problems"), "{out}");
}

#[test]
fn a_missing_sql_table_is_a_problem_that_check_fix_creates() {
    let lab = lab();
    let targets = [
        lab_target(lab, "pg", "postgres", "1s", ""),
        lab_target(lab, "my", "mysql", "1s", ""),
    ];
    let (code, out) = agent(&["check"], &targets);
    println!("{out}");
    assert_eq!(code, Some(1), "{out}");
    let fix = problem(&out, "pg", "reachable");
    assert!(fix.contains("rpo-agent init"), "{fix}");
    assert!(!out.contains("rpo-lab-secret"), "password printed: {out}");

    let (code, out) = agent(&["check", "--fix"], &targets);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    for t in ["pg", "my"] {
        assert!(line(&out, '✓', t, "reachable").is_some(), "{out}");
        assert!(
            line(&out, '✓', t, "ap-northeast-1 is the writer").is_some(),
            "{out}"
        );
    }
    assert!(!out.contains("rpo-lab-secret"), "password printed: {out}");
}
