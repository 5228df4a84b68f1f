#!/usr/bin/env python3
"""Static checks of the Grafana dashboards and the Prometheus rules (stdlib only).

    python3 dashboards/check_dashboards.py

Prints one line per check (PASS/FAIL) and exits 1 if any failed:
  dashboards: valid JSON; unique panel ids; every metric name in every query is one the agent
  exports (or a recording rule defined in dashboards/rules/); no hard-coded datasource uid
  (only ${datasource}, and Grafana's built-in annotation source); template variables
  datasource (type datasource, prometheus), target and region present; template variables
  used only in =~ matchers; the generated files are up to date.
  rules: every alert has summary, description and a runbook_url whose file exists; every
  alert and recording rule is exercised by a promtool test in dashboards/tests/.
"""
import json
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

# What rpo-agent exports (DESIGN.md, metric names are fixed there).
GAUGES = ["rpo_seconds", "rpo_upper_bound_seconds", "rpo_objective_seconds", "rpo_canaries_pending",
          "rpo_probe_up", "rpo_aws_reported_lag_seconds", "rpo_agent_build_info",
          "rpo_last_canary_success_timestamp_seconds", "rpo_interval_seconds"]
COUNTERS = ["rpo_canaries_written_total", "rpo_canaries_observed_total", "rpo_canaries_lost_total",
            "rpo_canaries_failed_total", "rpo_probe_errors_total", "rpo_api_requests_total",
            "rpo_direction_changes_total"]
HISTOGRAMS = ["rpo_replication_lag_seconds", "rpo_measurement_uncertainty_seconds"]
AGENT_METRICS = set(GAUGES) | set(COUNTERS) | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "and", "or", "unless", "inf", "nan", "atan2", "start", "end"}

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" — {detail}" if detail and not ok else ""))


def rule_files():
    return sorted((HERE / "rules").glob("*.yml"))


def parse_rules():
    """(alerts, records) from the rule files; alerts: list of dicts with annotations.

    A tiny parser for our own rule files (PyYAML is not guaranteed on CI)."""
    alerts, records = [], []
    for f in rule_files():
        cur = None
        for line in f.read_text().splitlines():
            m = re.match(r"^\s*-\s*(alert|record):\s*(\S+)\s*$", line)
            if m:
                cur = {"kind": m.group(1), "name": m.group(2), "annotations": {}, "file": f.name}
                (alerts if m.group(1) == "alert" else records).append(cur)
                continue
            m = re.match(r"^\s{10}(summary|description|runbook_url):\s*(.*)$", line)
            if m and cur is not None:
                cur["annotations"][m.group(1)] = m.group(2)
    return alerts, records


def substitute(expr):
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    expr = re.sub(r"\$\{?__range_s\}?", "300", expr)
    return re.sub(r"\$\{?(\w+)(:\w+)?\}?", ".*", expr)


def metric_names(expr):
    """Metric names used in a PromQL expression (heuristic tokeniser, good for our queries)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', substitute(expr))
    e = re.sub(r"\{[^}]*\}", "", e)                      # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                     # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def datasource_uids(obj, path="$"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "datasource":
                if isinstance(v, dict):
                    yield path + ".datasource", v.get("uid"), v.get("type")
                elif isinstance(v, str):
                    yield path + ".datasource", v, None
            yield from datasource_uids(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from datasource_uids(v, f"{path}[{i}]")


def queries(dash):
    """(where, expr) for every panel target, annotation and variable query."""
    for p in walk_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"]
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            yield f"annotation '{a.get('name')}'", a["expr"]


def variable_queries(dash):
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            yield v["name"], q.get("query") if isinstance(q, dict) else q


def check_dashboards(records):
    allowed = AGENT_METRICS | set(records)
    files = sorted((HERE / "grafana").glob("*.json"))
    check("dashboards exist", len(files) >= 3, f"found {len(files)}")
    for f in files:
        name = f.name
        try:
            dash = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as e:
            check(f"{name}: valid JSON", False, str(e))
            continue
        check(f"{name}: valid JSON", True)
        ids = [p.get("id") for p in walk_panels(dash.get("panels", []))]
        dup = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
        check(f"{name}: unique panel ids", not dup and ids, f"duplicates/missing: {dup}")
        check(f"{name}: has a title and no datasource __inputs", bool(dash.get("title")) and "__inputs" not in dash)

        bad = []
        for where, expr in queries(dash):
            unknown = metric_names(expr) - allowed
            if unknown:
                bad.append(f"{where}: {sorted(unknown)}")
        for vname, q in variable_queries(dash):
            m = re.match(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", q or "")
            if not m:
                bad.append(f"variable {vname}: not label_values(...): {q}")
            elif metric_names(m.group(1)) - allowed:
                bad.append(f"variable {vname}: {sorted(metric_names(m.group(1)) - allowed)}")
        check(f"{name}: every metric is exported by the agent or recorded", not bad, "; ".join(bad))

        bad = []
        for path, uid, typ in datasource_uids(dash):
            if uid == "${datasource}" and typ in (None, "prometheus"):
                continue
            if uid == "-- Grafana --" and typ == "grafana" and ".annotations.list" in path:
                continue
            bad.append(f"{path}={uid!r}")
        check(f"{name}: no hard-coded datasource uid", not bad, ", ".join(bad[:5]))

        panels_without_ds = [p.get("id") for p in walk_panels(dash.get("panels", []))
                             if p.get("type") != "row" and "datasource" not in p]
        check(f"{name}: every panel uses the datasource variable", not panels_without_ds, str(panels_without_ds))

        vars_ = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        ds = vars_.get("datasource", {})
        ok = ds.get("type") == "datasource" and ds.get("query") == "prometheus"
        check(f"{name}: datasource variable of type prometheus", ok)
        check(f"{name}: template variables target and region",
              "target" in vars_ and "region" in vars_ and all(
                  vars_[n].get("type") == "query" and vars_[n].get("datasource", {}).get("uid") == "${datasource}"
                  for n in ("target", "region") if n in vars_))

        bad = []
        for where, expr in list(queries(dash)) + [(f"variable {n}", q) for n, q in variable_queries(dash)]:
            for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*\$[^"]*)"', expr):
                if m.group(2) != "=~":
                    bad.append(f"{where}: {m.group(0)}")
            used = set(re.findall(r"\$\{?(\w+)", expr)) - {"__rate_interval", "__interval", "__range", "__range_s"}
            if used - set(vars_):
                bad.append(f"{where}: undefined variables {sorted(used - set(vars_))}")
        check(f"{name}: template variables only in =~ matchers and defined", not bad, "; ".join(bad))

        targets_ok = all(
            t.get("refId") and t.get("datasource", {}).get("uid") == "${datasource}"
            for p in walk_panels(dash.get("panels", [])) for t in p.get("targets", []))
        check(f"{name}: every query has a refId and the datasource variable", targets_ok)

    r = subprocess.run([sys.executable, str(HERE / "gen_dashboards.py"), "--check"],
                       capture_output=True, text=True)
    check("dashboards are up to date with gen_dashboards.py", r.returncode == 0, r.stdout.strip())


def check_rules(alerts, records):
    check("rules: alerts found", len(alerts) > 0)
    tests_text = "\n".join(p.read_text() for p in sorted((HERE / "tests").glob("*.yml")))
    for a in alerts:
        ann = a["annotations"]
        missing = [k for k in ("summary", "description", "runbook_url") if not ann.get(k)]
        check(f"alert {a['name']}: summary, description, runbook_url", not missing, f"missing {missing}")
        url = ann.get("runbook_url", "")
        ok = url == f"dashboards/runbooks/{a['name']}.md" and (ROOT / url).is_file()
        check(f"alert {a['name']}: runbook {url} exists", ok)
        check(f"alert {a['name']}: has promtool tests",
              re.search(rf"alertname:\s*{re.escape(a['name'])}\s*$", tests_text, re.M) is not None)
    for r in records:
        check(f"record {r['name']}: has promtool tests",
              re.search(rf"expr:\s*{re.escape(r['name'])}\s*$", tests_text, re.M) is not None)


def self_test():
    got = metric_names('sum by (le) (increase(rpo_replication_lag_seconds_bucket{target=~"$target"}[$__rate_interval])) '
                       '/ ignoring(metric) group_left() rpo:x:y offset 5m or on() vector(0) > bool 1e3')
    check("metric-name extractor self-test", got == {"rpo_replication_lag_seconds_bucket", "rpo:x:y"}, str(got))


def main():
    self_test()
    alerts, records = parse_rules()
    check_rules(alerts, records)
    check_dashboards([r["name"] for r in records])
    failed = RESULTS.count(False)
    print(f"check_dashboards: {len(RESULTS) - failed} checks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
