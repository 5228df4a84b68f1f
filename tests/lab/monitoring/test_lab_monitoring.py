#!/usr/bin/env python3
"""Plumbing test of the lab's monitoring component (tests/lab/lab_monitoring.py).

Starts Prometheus + Alertmanager + the webhook receiver with the shipped rules, scraping a
stub exporter in this process (a few rpo_ series whose RPO can be made to "stall"), and checks
that the chain works: the scrape job is up, recording rules evaluate, a stall of a target with
a 10 s objective pages (RPOAboveObjective, severity warning) within objective + 15 s, the
notification lands in DIR/alerts.jsonl with summary/description/runbook_url, it resolves after
the stall ends, the `monitoring` controls work, and down() stops every process.

The stub only stands in for the agent's /metrics to exercise the monitoring stack; the
agent's own metrics are checked against the dashboards by dashboards/check_panels.py in the
agent's integration tests. Last line: "N passed, N failed"; exit 1 on failure. ~60 s.

    python3 tests/lab/monitoring/test_lab_monitoring.py [--keep DIR]
"""
import argparse
import http.server
import json
import pathlib
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

LAB = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(LAB))
import lab_monitoring  # noqa: E402
from labctl import pid_alive  # noqa: E402

OBJECTIVE = 10.0
LABELS = 'target="orders",kind="dynamodb",source_region="ap-northeast-1",replica_region="ap-northeast-3"'


class Stub:
    """The agent's /metrics, reduced to what the RPO alerts read."""

    def __init__(self):
        self.stall_since = None
        self.start = time.time()
        stub = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                b = stub.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.addr = f"127.0.0.1:{self.srv.server_address[1]}"

    def render(self):
        now = time.time()
        rpo = 0.3 if self.stall_since is None else 0.3 + now - self.stall_since
        last = now - 0.3 if self.stall_since is None else self.stall_since
        n = int(now - self.start)
        return "\n".join([
            "# TYPE rpo_seconds gauge", f"rpo_seconds{{{LABELS}}} {rpo}",
            "# TYPE rpo_objective_seconds gauge", f"rpo_objective_seconds{{{LABELS}}} {OBJECTIVE}",
            "# TYPE rpo_interval_seconds gauge", f"rpo_interval_seconds{{{LABELS}}} 1",
            "# TYPE rpo_last_canary_success_timestamp_seconds gauge",
            f"rpo_last_canary_success_timestamp_seconds{{{LABELS}}} {last}",
            "# TYPE rpo_probe_up gauge", f"rpo_probe_up{{{LABELS}}} 1",
            "# TYPE rpo_canaries_lost_total counter", f"rpo_canaries_lost_total{{{LABELS}}} 0",
            "# TYPE rpo_canaries_written_total counter", f"rpo_canaries_written_total{{{LABELS}}} {n}",
            "# TYPE rpo_agent_build_info gauge", 'rpo_agent_build_info{version="stub"} 1', ""])

    def close(self):
        self.srv.shutdown()


RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" — {detail}" if detail else ""), flush=True)
    return ok


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def wait_for(fn, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def notifications(log):
    out = []
    for line in pathlib.Path(log).read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def find(log, alertname, severity, status):
    for n in notifications(log):
        for a in n.get("alerts", []):
            if (a["labels"].get("alertname") == alertname and a["labels"].get("severity") == severity
                    and a.get("status") == status):
                return n, a
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=pathlib.Path, help="use this lab dir and leave it (for debugging)")
    opts = ap.parse_args()
    tmp = None
    if opts.keep:
        lab_dir = opts.keep.resolve()
        lab_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="rpo-lab-monitoring-")
        lab_dir = pathlib.Path(tmp.name)
    stub = Stub()
    state = None
    try:
        args = argparse.Namespace(dir=lab_dir, components="monitoring", exit_with=None, extra=[])
        t0 = time.monotonic()
        state = lab_monitoring.up(lab_dir, {"RPO_AGENT_SCRAPE": stub.addr}, args)
        check("up() returns ready", True, f"{time.monotonic() - t0:.2f}s")
        for k in ("PROMETHEUS_URL", "ALERTMANAGER_URL", "ALERT_WEBHOOK_LOG"):
            check(f"state has {k}", k in state)
        check("state has pids", len(state.get("pids", [])) == 3)
        check("ALERT_WEBHOOK_LOG is DIR/alerts.jsonl", state["ALERT_WEBHOOK_LOG"] == str(lab_dir / "alerts.jsonl"))
        prom = state["PROMETHEUS_URL"]
        for url in (prom + "/-/ready", state["ALERTMANAGER_URL"] + "/-/ready"):
            with urllib.request.urlopen(url, timeout=5) as r:
                check(f"{url} answers", r.status == 200)

        up = wait_for(lambda: query(prom, 'up{job="rpo-agent"} == 1'), 20)
        check('scrape job "rpo-agent" is up', up, str(up and up[0]["metric"]))
        rec = wait_for(lambda: query(prom, "rpo:rpo_objective:ratio"), 20)
        check("recording rules evaluate (rpo:rpo_objective:ratio)", rec)
        time.sleep(3)
        check("no notification while healthy", not notifications(state["ALERT_WEBHOOK_LOG"]),
              str(notifications(state["ALERT_WEBHOOK_LOG"])[:1]))

        # Stall: the RPO grows from now on and crosses the objective ~OBJECTIVE s later.
        stall_wall = time.time()
        stub.stall_since = stall_wall
        got = wait_for(lambda: find(state["ALERT_WEBHOOK_LOG"], "RPOAboveObjective", "warning", "firing"),
                       OBJECTIVE + 30, 0.2)
        if check("stall pages RPOAboveObjective (warning)", got):
            n, a = got
            latency = n["lab_received_at"] - stall_wall
            check(f"page within objective + 15 s ({OBJECTIVE:g} + 15)", latency <= OBJECTIVE + 15,
                  f"{latency:.1f}s after the stall began")
            ann = a.get("annotations", {})
            check("notification has summary, description, runbook_url",
                  all(ann.get(k) for k in ("summary", "description", "runbook_url")), json.dumps(ann))
            check("runbook file exists", (LAB.parent.parent / ann.get("runbook_url", "-")).is_file())
            check("labels carry target and replica_region",
                  a["labels"].get("target") == "orders" and a["labels"].get("replica_region") == "ap-northeast-3")
        crit = wait_for(lambda: find(state["ALERT_WEBHOOK_LOG"], "RPOAboveObjective", "critical", "firing"),
                        OBJECTIVE + 20, 0.2)
        check("RPO above 2x objective pages critical", crit)

        # Resume: resolves after keep_firing_for (30 s).
        stub.stall_since = None
        resume = time.time()
        res = wait_for(lambda: find(state["ALERT_WEBHOOK_LOG"], "RPOAboveObjective", "warning", "resolved"), 60, 0.5)
        check("resolved notification after the stall ends", res,
              f"{res[0]['lab_received_at'] - resume:.1f}s after resume" if res else "")

        msg = lab_monitoring.fault(lab_dir, state, ["monitoring", "scrape", "127.0.0.1:1,127.0.0.1:2"])
        tj = json.loads((lab_dir / "monitoring" / "targets.json").read_text())
        check("fault monitoring scrape rewrites targets.json", tj[0]["targets"] == ["127.0.0.1:1", "127.0.0.1:2"], msg)
        n_targets = wait_for(lambda: len(query(prom, 'up{job="rpo-agent"}')) == 2, 15)
        check("Prometheus follows targets.json", n_targets)
        check("fault monitoring reload", "reloaded" in lab_monitoring.fault(lab_dir, state, ["monitoring", "reload"]))
        lab_monitoring.fault(lab_dir, state, ["monitoring", "clear-alerts"])
        check("fault monitoring clear-alerts", pathlib.Path(state["ALERT_WEBHOOK_LOG"]).stat().st_size == 0)
        try:
            lab_monitoring.fault(lab_dir, state, ["monitoring", "bogus"])
            check("unknown control is rejected", False)
        except ValueError:
            check("unknown control is rejected", True)
        print(lab_monitoring.status(lab_dir, state))
    except Exception as e:  # report, then clean up
        check(f"no exception ({type(e).__name__})", False, str(e))
    finally:
        if state is not None and not opts.keep:
            pids = list(state.get("pids", []))
            lab_monitoring.down(lab_dir, state)
            check("down() stops every process", not any(pid_alive(p) for p in pids))
            lab_monitoring.down(lab_dir, state)
            check("down() is idempotent", True)
        stub.close()
        if tmp:
            tmp.cleanup()
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
