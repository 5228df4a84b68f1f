//! The status page at `/`: one self-contained HTML document.
//!
//! It is what an operator opens during an incident or a DR drill, often
//! through a port-forward into a private subnet, so it carries no external
//! asset and needs no JavaScript (a meta refresh keeps it current). Every
//! state is written out in words, not only in colour. Every string that came
//! from configuration or from an error message is escaped: error texts quote
//! whatever a remote API answered.

use std::fmt::Write;

use crate::human::{duration, UNKNOWN};
use crate::status::ReplicaStatus;

/// Seconds between automatic reloads of the page.
pub const REFRESH_SECONDS: u32 = 5;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa;
  --ok-bg:#dafbe1; --ok-fg:#116329; --bad-bg:#ffebe9; --bad-fg:#a40e26; --na-bg:#eaeef2; --na-fg:#424a53; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:var(--bg); }
header { background:#24292f; color:#fff; padding:14px 20px; display:flex; flex-wrap:wrap;
  align-items:baseline; gap:8px 24px; }
header h1 { margin:0; font-size:20px; font-weight:600; letter-spacing:.2px; }
header .meta { display:flex; flex-wrap:wrap; gap:6px 20px; color:#d0d7de; }
header .meta b { color:#fff; font-weight:600; }
main { padding:16px 20px; }
.summary { margin:0 0 12px; color:var(--muted); }
.summary strong { color:var(--fg); }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; overflow-x:auto; }
table { border-collapse:collapse; width:100%; }
th, td { padding:10px 8px; text-align:left; vertical-align:middle; }
th { font-size:12px; font-weight:600; color:var(--muted); background:#fafbfc; white-space:nowrap;
  vertical-align:bottom; line-height:1.3;
  border-bottom:1px solid var(--line); }
th .sub { font-weight:400; font-size:11px; }
th:first-child, td:first-child { padding-left:16px; }
tbody + tbody { border-top:1px solid var(--line); }
tbody.breach td:first-child { box-shadow: inset 4px 0 0 var(--bad-fg); }
tbody.ok td:first-child { box-shadow: inset 4px 0 0 var(--ok-fg); }
tbody.unknown td:first-child { box-shadow: inset 4px 0 0 var(--na-fg); }
.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.err td { padding-top:0; }
tr.err .label { font-size:12px; font-weight:600; color:var(--bad-fg); margin-right:6px; white-space:nowrap; }
.target { font-weight:600; }
.sub { color:var(--muted); font-size:12px; }
.nowrap { white-space:nowrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:700;
  letter-spacing:.3px; white-space:nowrap; }
.badge.ok { background:var(--ok-bg); color:var(--ok-fg); }
.badge.bad { background:var(--bad-bg); color:var(--bad-fg); }
.badge.na { background:var(--na-bg); color:var(--na-fg); }
.rpo { display:flex; align-items:center; gap:8px; white-space:nowrap; font-variant-numeric:tabular-nums; }
.rpo .obj { color:var(--muted); }
.alert { color:var(--bad-fg); font-weight:700; }
.error { font:12px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; color:#6e1020;
  background:var(--bad-bg); padding:2px 6px; border-radius:4px; overflow-wrap:anywhere; }
.empty { padding:32px; text-align:center; color:var(--muted); }
footer { padding:0 20px 20px; color:var(--muted); font-size:12px; }
footer a { color:#0969da; }
"#;

/// Renders the whole page.
pub fn render(agent_id: &str, version: &str, ready: bool, replicas: &[ReplicaStatus]) -> String {
    let mut html = String::with_capacity(8192 + replicas.len() * 1024);
    let ready_badge = if ready {
        r#"<span class="badge ok">READY</span>"#
    } else {
        r#"<span class="badge na">NOT READY</span>"#
    };
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>rpo-agent</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>rpo-agent</h1>
<div class="meta"><span>agent <b>{id}</b></span><span>version <b>{version}</b></span>{ready_badge}</div>
</header>
<main>
"#,
        id = escape(agent_id),
        version = escape(version),
    );
    if replicas.is_empty() {
        html.push_str(
            r#"<div class="card"><p class="empty">no targets configured</p></div>
"#,
        );
    } else {
        summary(&mut html, replicas);
        table(&mut html, replicas);
    }
    let _ = write!(
        html,
        r#"</main>
<footer>Refreshes every {REFRESH_SECONDS} s · <a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></footer>
</body>
</html>
"#
    );
    html
}

fn summary(html: &mut String, replicas: &[ReplicaStatus]) {
    let targets = {
        let mut names: Vec<&str> = replicas.iter().map(|r| r.target.as_str()).collect();
        names.dedup(); // the board is sorted by target
        names.len()
    };
    let breaching = replicas
        .iter()
        .filter(|r| r.rpo_seconds.is_some() && !r.within_objective())
        .count();
    // A standby's probe writes nothing: it is not down.
    let down = replicas
        .iter()
        .filter(|r| !r.up && r.fleet.as_ref().is_none_or(|f| f.leader))
        .count();
    let _ = write!(
        html,
        r#"<p class="summary"><strong>{targets}</strong> target{ts}, <strong>{n}</strong> replica{rs} · "#,
        ts = plural(targets),
        n = replicas.len(),
        rs = plural(replicas.len()),
    );
    if breaching == 0 {
        html.push_str("all known RPOs within objective");
    } else {
        let _ = write!(
            html,
            r#"<span class="alert">{breaching} over objective</span>"#
        );
    }
    if down > 0 {
        let _ = write!(
            html,
            r#" · <span class="alert">{down} probe{} down</span>"#,
            plural(down)
        );
    }
    html.push_str("</p>\n");
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Columns of the table; the error row under a pair spans all of them.
const COLUMNS: usize = 10;

fn table(html: &mut String, replicas: &[ReplicaStatus]) {
    html.push_str(
        r#"<div class="card"><table>
<thead><tr><th>Target<br><span class="sub">kind · direction</span></th><th>Probe</th><th>RPO now<br><span class="sub">/ objective</span></th><th class="num" title="now − write time of the newest canary seen in the replica (the upper bound): a failover now loses at most this much">Data at risk<br><span class="sub">if you fail over now</span></th><th class="num">Last lag<br><span class="sub">± uncertainty</span></th><th class="num">Pending</th><th class="num">Written</th><th class="num">Observed</th><th class="num">Lost</th><th class="num">Failed</th></tr></thead>
"#,
    );
    for r in replicas {
        row(html, r);
    }
    html.push_str("</table></div>\n");
}

/// One pair: a `<tbody>` holding its row and, if it has one, its last error
/// on a full-width row beneath (error texts are long; squeezed into a column
/// they would make every row tall and unreadable).
fn row(html: &mut String, r: &ReplicaStatus) {
    let (class, badge) = match r.rpo_seconds {
        None => ("unknown", r#"<span class="badge na">NO DATA</span>"#),
        Some(_) if r.within_objective() => ("ok", r#"<span class="badge ok">OK</span>"#),
        Some(_) => ("breach", r#"<span class="badge bad">BREACH</span>"#),
    };
    let lag = match (r.last_lag_seconds, r.last_uncertainty_seconds) {
        (None, _) => UNKNOWN.to_string(),
        (Some(l), None) => duration(Some(l)),
        (Some(l), Some(u)) => format!(
            r#"{} <span class="sub">± {}</span>"#,
            duration(Some(l)),
            duration(Some(u))
        ),
    };
    let probe = match &r.fleet {
        Some(f) if !f.leader => r#"<span class="badge na">STANDBY</span>"#,
        _ if r.up => r#"<span class="badge ok">UP</span>"#,
        _ => r#"<span class="badge bad">DOWN</span>"#,
    };
    // Fleet mode: who writes the canaries, under the direction.
    let seat = match &r.fleet {
        None => String::new(),
        Some(f) => {
            let who = match (f.leader, f.holder.as_deref()) {
                (true, Some(_)) => "lease held here".to_string(),
                (true, None) => "measuring alone (lease table unreachable)".to_string(),
                (false, Some(h)) => format!("held by {}", escape(h)),
                (false, None) => "lease free".to_string(),
            };
            format!(r#"<div class="sub nowrap">fleet: {who}</div>"#)
        }
    };
    // Lost or failed canaries are data that did not arrive: make them stand out.
    let counted = |n: u64| {
        if n > 0 {
            format!(r#"<span class="alert">{n}</span>"#)
        } else {
            n.to_string()
        }
    };
    let _ = write!(
        html,
        r#"<tbody class="{class}">
<tr>
<td><div class="target">{target}</div><div class="sub nowrap">{kind} · {direction}</div>{seat}</td>
<td>{probe}</td>
<td><div class="rpo">{badge}<span>{rpo} <span class="obj">/ {objective}</span></span></div></td>
<td class="num">{upper}</td>
<td class="num">{lag}</td>
<td class="num">{pending}</td>
<td class="num">{written}</td>
<td class="num">{observed}</td>
<td class="num">{lost}</td>
<td class="num">{failed}</td>
</tr>
"#,
        target = escape(&r.target),
        kind = escape(&r.kind),
        direction = escape(&r.direction),
        rpo = duration(r.rpo_seconds),
        objective = duration(Some(r.objective_seconds)),
        upper = duration(r.upper_bound_seconds),
        pending = r.pending,
        written = r.written,
        observed = r.observed,
        lost = counted(r.lost),
        failed = counted(r.failed),
    );
    if let Some(e) = r.last_error.as_deref().filter(|e| !e.is_empty()) {
        let _ = writeln!(
            html,
            r#"<tr class="err"><td colspan="{COLUMNS}"><span class="label">Last error</span> <code class="error">{}</code></td></tr>"#,
            escape(e)
        );
    }
    html.push_str("</tbody>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ReplicaLabels;

    fn status(target: &str) -> ReplicaStatus {
        ReplicaStatus::new(
            &ReplicaLabels {
                target: target.into(),
                kind: "s3".into(),
                source_region: "ap-northeast-1".into(),
                replica_region: "ap-northeast-3".into(),
            },
            60.0,
        )
    }

    #[test]
    fn escapes_everything_that_came_from_outside() {
        let mut s = status("<b>t</b>");
        s.last_error = Some(r#"<script>alert("x")</script> & 'y'"#.into());
        let html = render("a<id>", "1\"2", true, &[s]);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>t</b>"));
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;")
        );
        assert!(html.contains("a&lt;id&gt;"));
        assert!(html.contains("1&quot;2"));
    }

    #[test]
    fn a_standby_pair_says_who_holds_the_lease_and_is_not_counted_down() {
        let mut held = status("a");
        held.up = true;
        held.rpo_seconds = Some(1.0);
        held.fleet = Some(crate::status::FleetSeat {
            leader: true,
            holder: Some("me".into()),
        });
        let mut standby = status("b");
        standby.fleet = Some(crate::status::FleetSeat {
            leader: false,
            holder: Some("task-<7>".into()),
        });
        let html = render("me", "v", true, &[held, standby]);
        assert!(html.contains("STANDBY"), "{html}");
        assert!(html.contains("held by task-&lt;7&gt;"), "{html}");
        assert!(html.contains("lease held here"), "{html}");
        assert!(
            !html.contains("probe down") && !html.contains("probes down"),
            "{html}"
        );
    }

    #[test]
    fn states_are_words_not_only_colours() {
        let mut ok = status("a");
        ok.rpo_seconds = Some(1.0);
        ok.up = true;
        let mut bad = status("b");
        bad.rpo_seconds = Some(120.0);
        let unknown = status("c");
        let html = render("id", "v", false, &[ok, bad, unknown]);
        for word in [
            "OK",
            "BREACH",
            "NO DATA",
            "UP",
            "DOWN",
            "NOT READY",
            "1 over objective",
        ] {
            assert!(html.contains(word), "{word}");
        }
    }

    #[test]
    fn empty_board_says_so() {
        assert!(render("id", "v", true, &[]).contains("no targets configured"));
    }
}
