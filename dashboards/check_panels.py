#!/usr/bin/env python3
"""Run every query of every dashboard against a real Prometheus (stdlib only).

    python3 dashboards/check_panels.py --prometheus http://127.0.0.1:9090 [options]

For every panel target, every annotation query and every template-variable query
(label_values) of dashboards/grafana/*.json, substitutes the Grafana variables and asks
Prometheus. A query FAILS when Prometheus answers with an error, or when it returns no data
(no series, or only NaN values) - unless the panel is allowed to be empty (--allow-empty, and
the built-in list below: panels that are legitimately empty on a healthy system). Annotation
queries (events such as failovers) are only checked for errors.

Variables: $target, $region (any template variable) -> ".*" unless --var NAME=VALUE is given
(the dashboards use template variables only in =~ matchers); $__rate_interval -> --rate-interval
(1m); $__interval -> --step; $__range -> --range (10m), and range queries span [now-range, now].

Prints one line per query and, last, "N passed, N failed". Exit 1 if any query failed.
"""
import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent

# "<dashboard title> / <panel title>" regexes that may return no data on a healthy system.
DEFAULT_ALLOW_EMPTY = [
    r"/ Probe errors by code$",  # no errors happened: nothing to show
]

DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")


def seconds(d):
    m = DURATION.match(d)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {d!r} (e.g. 30s, 10m, 1h)")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def substitute(expr, args, variables):
    rng = args.range
    subs = {
        "__rate_interval": args.rate_interval, "__interval": args.step, "__range": rng,
        "__range_s": str(int(seconds(rng))), "__range_ms": str(int(seconds(rng) * 1000)),
        "__interval_ms": str(int(seconds(args.step) * 1000)),
    }

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in subs:
            return subs[name]
        return variables.get(name, ".*")

    # ${name}, ${name:format}, [[name]], $name
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def api(base, path, params, timeout):
    url = base.rstrip("/") + path + "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            return None, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"request failed: {e}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType', 'error')}: {body.get('error', body)}"
    return body.get("data"), None


def has_data(data):
    """True if a query result holds at least one non-NaN value."""
    rtype, result = data.get("resultType"), data.get("result")
    if rtype == "matrix":
        return any(not math.isnan(float(v)) for s in result for _, v in s.get("values", []))
    if rtype == "vector":
        return any(not math.isnan(float(s["value"][1])) for s in result)
    if rtype == "scalar":
        return not math.isnan(float(result[1]))
    return bool(result)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def collect(dash_dir):
    """Yield (kind, label, dashboard, panel_title, target) for everything to run."""
    for f in sorted(pathlib.Path(dash_dir).glob("*.json")):
        dash = json.loads(f.read_text(encoding="utf-8"))
        title = dash.get("title", f.name)
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                yield "variable", f"{title} / variable {v['name']}", title, f"variable {v['name']}", {"expr": q}
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                yield "annotation", f"{title} / annotation {a.get('name')}", title, a.get("name"), {"expr": a["expr"]}
        for p in walk_panels(dash.get("panels", [])):
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield "panel", f"{title} / {p.get('title')} [{t.get('refId')}]", title, p.get("title"), t


def run_one(kind, target, args, variables, now):
    expr = substitute(target["expr"], args, variables)
    if kind == "variable":
        m = re.match(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", expr)
        if not m:
            return False, f"unsupported variable query: {expr}", expr
        data, err = api(args.prometheus, f"/api/v1/label/{m.group(2)}/values",
                        {"match[]": m.group(1), "start": now - seconds(args.range), "end": now},
                        args.timeout)
        if err:
            return False, err, expr
        return (True, f"{len(data)} values", expr) if data else (None, "no values", expr)
    if target.get("instant") and not target.get("range"):
        data, err = api(args.prometheus, "/api/v1/query", {"query": expr, "time": now}, args.timeout)
    else:
        data, err = api(args.prometheus, "/api/v1/query_range",
                        {"query": expr, "start": now - seconds(args.range), "end": now,
                         "step": seconds(args.step)}, args.timeout)
    if err:
        return False, err, expr
    if not has_data(data):
        return None, "no data" if not data.get("result") else "only NaN", expr
    return True, f"{len(data['result']) if isinstance(data['result'], list) else 1} series", expr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboards", default=str(HERE / "grafana"), help="directory of dashboard JSON")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value for a template variable (default: .*)")
    ap.add_argument("--range", default="10m", type=str, help="dashboard time range / $__range (10m)")
    ap.add_argument("--rate-interval", default="1m", help="$__rate_interval (1m)")
    ap.add_argument("--step", default="15s", help="range query step and $__interval (15s)")
    ap.add_argument("--allow-empty", action="append", default=[], metavar="REGEX",
                    help="'<dashboard title> / <panel title>' regex allowed to return no data")
    ap.add_argument("--no-default-allow-empty", action="store_true",
                    help="require data even from panels that are empty on a healthy system")
    ap.add_argument("--retry-for", type=float, default=0, metavar="SECONDS",
                    help="re-run failing queries until they pass or this time has passed")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    args = ap.parse_args(argv)
    for d in (args.range, args.rate_interval, args.step):
        seconds(d)
    variables = {}
    for kv in args.var:
        if "=" not in kv:
            ap.error(f"--var wants NAME=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        variables[k] = v
    allow = [re.compile(r) for r in args.allow_empty + ([] if args.no_default_allow_empty else DEFAULT_ALLOW_EMPTY)]

    items = list(collect(args.dashboards))
    if not items:
        print(f"no dashboards in {args.dashboards}")
        print("0 passed, 1 failed")
        return 1
    deadline = time.time() + args.retry_for
    pending = list(range(len(items)))
    outcome = {}
    while True:
        now = time.time()
        still = []
        for i in pending:
            kind, label, _, _, target = items[i]
            ok, detail, expr = run_one(kind, target, args, variables, now)
            if ok is None:  # empty
                if kind == "annotation":
                    ok, detail = True, detail + " (annotations may be empty)"
                elif any(r.search(label) for r in allow):
                    ok, detail = True, detail + " (allowed empty)"
            outcome[i] = (ok, detail, expr)
            if not ok:
                still.append(i)
        pending = still
        if not pending or time.time() >= deadline:
            break
        time.sleep(min(2.0, max(0.0, deadline - time.time())))

    passed = failed = 0
    for i, (kind, label, _, _, _) in enumerate(items):
        ok, detail, expr = outcome[i]
        if ok:
            passed += 1
            if not args.quiet:
                print(f"PASS {label}: {detail}")
        else:
            failed += 1
            print(f"FAIL {label}: {detail}\n     query: {expr}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
