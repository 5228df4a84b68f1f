"""Benchmark: how long `rpo-agent report --last 30d` takes on a Prometheus that
holds 30 days of history for 50 targets, with and without the recording rules
of the group `rpo-agent.report` (dashboards/rules/rpo-recording.rules.yml).

No lab, no agent: the history is synthetic. Steps, each timed:

  1. generate   OpenMetrics text of one agent instance (job "rpo-agent",
                instance 127.0.0.1:9464) with --targets targets (60 % dynamodb,
                20 % postgres, 20 % s3; one replica each; objective 30 s, a few
                5 s and 60 s) scraped every --scrape s over the --days days that
                end at the current hour: RPO = lag + age of the newest canary +
                noise; 1-3 episodes per target (2-20 min above the objective:
                replication stalls, with their backlog observed late, lost or
                failed canaries; or probe outages, rpo_probe_up 0 and probe
                errors); one 30 min agent outage (only `up` = 0 meanwhile, the
                counters reset after it); one direction change of two postgres
                targets (rpo_direction_changes_total +1, source and replica
                labels swapped from then on). To keep the file and promtool's
                work to minutes, only rpo_seconds, rpo_objective_seconds, up and
                rpo_direction_changes_total have every scrape; the other gauges
                and the counters have one sample per --aux-step (60 s), the
                lag histogram one per --hist-step (300 s). The figures say so.
  2. promtool   `promtool tsdb create-blocks-from openmetrics` into DATA
                (--max-block-duration: few passes over the file).
  3. run A      Prometheus on DATA without rules (free port, retention 90d, no
                scrape targets): `rpo-agent report` as json and html, and json
                with --raw.
  4. backfill   `promtool tsdb create-blocks-from rules` of the report group
                (copied to a temp file) over the data's span, blocks moved
                into DATA: the one-off cost a user pays to get the fast path.
  5. run B      Prometheus restarted with the report group loaded; it first
                compacts the backfilled blocks (waited for, and timed); the
                same reports, --raw too (both paths on the same data).

Per report: the first (cold) run, then min / median of --runs runs with
hyperfine when installed (else a loop), the JSON's `path` / `path_note`, the
number of targets, the queries the report sent (its "report made" log line),
and Prometheus's RSS (VmRSS now, VmHWM peak). Then a markdown table.

Run (from the repository root; stdlib only, plain python3 works too):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/report_history.py [--targets 50] [--days 30] [--scrape 15] [--keep DIR]
All defaults: ≈ 25 min on 2 cores (most of it the raw-path reports, ≈ 50 s
each) and ≈ 8 GB of scratch space (the OpenMetrics file, deleted after step 2;
the TSDBs are ≈ 150 MB). --skip-a leaves out run A's reports. --keep DIR keeps DIR/data (raw blocks) and
DIR/data-rules (with the backfilled rules): a rerun with the same --keep
skips steps 1, 2 and 4 (4 is redone when the shipped group's rules changed;
the report window follows the data, --from/--to, once it is over an hour old). A quick try: --targets 5 --days 3 (≈ 1 min).
"""
import argparse
import array
import bisect
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import benchlib as bl

JOB, INSTANCE = "rpo-agent", "127.0.0.1:9464"
RULES_FILE = bl.ROOT / "dashboards/rules/rpo-recording.rules.yml"
REPORT_GROUP = "rpo-agent.report"
LE = ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300",
      "600", "900", "1800", "3600", "+Inf"]
LE_F = [float(x) for x in LE]
REGIONS = {"dynamodb": ("ap-northeast-1", "ap-northeast-3"), "postgres": ("eu-west-1", "eu-central-1"),
           "s3": ("us-east-1", "us-west-2")}
ERRORS = {"dynamodb": ("put", "ThrottlingException"), "postgres": ("insert", "08006"), "s3": ("put", "SlowDown")}
OUTAGE = 1800
FLIPS = 2


# ---- the synthetic history -----------------------------------------------------------------------

class Target:
    """One target's month: its normal RPO, episodes, direction change; values at any scrape."""

    def __init__(self, i, n, rng, start, end, outage):
        dyn, pg = round(n * 0.6), round(n * 0.2)
        self.kind = "dynamodb" if i < dyn else "postgres" if i < dyn + pg else "s3"
        k = i if i < dyn else i - dyn if i < dyn + pg else i - dyn - pg
        self.name = f"{ {'dynamodb': 'ddb', 'postgres': 'pg', 's3': 's3'}[self.kind]}-{k + 1:02d}"
        self.objective = 60.0 if self.kind == "s3" else 5.0 if i % 10 == 3 else 30.0
        self.interval = 1.0 if self.objective == 5.0 else 5.0   # canary interval
        self.lag = {"dynamodb": rng.uniform(0.8, 2.0), "postgres": rng.uniform(0.05, 0.4),
                    "s3": rng.uniform(6.0, 15.0)}[self.kind]
        if self.objective == 5.0:
            self.lag = min(self.lag, 1.0)
        self.noise = 1.0 if self.objective == 5.0 else rng.uniform(1.0, 3.0)
        self.phase = rng.uniform(0, self.interval)
        self.unc = rng.uniform(0.2, 1.0)
        self.src, self.dst = REGIONS[self.kind]
        self.start, self.end, self.outage = start, end, outage
        # direction change: the first FLIPS postgres targets, days apart
        self.flip = None
        if self.kind == "postgres" and k < FLIPS:
            self.flip = float(start + (end - start) * (0.55 + 0.15 * k)) // 15 * 15 + 7
        # episodes: [(stall_start, cross, end, how)], away from the outage and the flip
        self.episodes = []
        busy = [(outage[0] - 7200, outage[1] + 7200)] + ([(self.flip - 7200, self.flip + 7200)] if self.flip else [])
        margin = min(86400, (end - start) / 10)
        for _ in range(rng.randint(1, 3)):
            for _ in range(1000):   # a free spot (short histories may have none)
                above = rng.uniform(120, 1200)
                cross = rng.uniform(start + margin, end - margin)
                normal = self.lag + self.interval / 2 + self.noise / 2
                s, e = cross - max(self.objective - normal, 1.0), cross + above
                if all(e + 3600 < a or s - 3600 > b for a, b in busy):
                    break
            else:
                break
            how = rng.choice(["stall", "stall", "lost", "failed" if self.kind == "s3" else "lost", "probe"])
            self.episodes.append((s, cross, e, how))
            busy.append((s, e))
        self.episodes.sort()
        # histogram: share of normal observations at or under each bucket (lag + read jitter)
        lags = sorted(self.lag * rng.lognormvariate(0, 0.35) + rng.uniform(0, 0.2) for _ in range(2000))
        self.cum = [sum(1 for x in lags if x <= le) / len(lags) for le in LE_F]
        self.mean = sum(lags) / len(lags)
    def segments(self):
        """[(from, to, source, replica)]: the label sets of the pair over time (outage excluded later)."""
        if self.flip is None:
            return [(self.start, self.end + 1, self.src, self.dst)]
        return [(self.start, self.flip, self.src, self.dst), (self.flip, self.end + 1, self.dst, self.src)]

    def rpo_array(self, ts, rng):
        """RPO at each scrape time of `ts` (float32 array)."""
        out = array.array("f", bytes(4 * len(ts)))
        lag, iv, ph, nz = self.lag, self.interval, self.phase, self.noise
        eps = self.episodes
        ei = 0
        for j, t in enumerate(ts):
            v = lag + ((t + ph) % iv) + rng.random() * nz
            while ei < len(eps) and eps[ei][2] <= t:
                ei += 1
            if ei < len(eps) and eps[ei][0] <= t:
                v = max(v, t - eps[ei][0] + lag + iv / 2)
            if self.flip is not None and 0 <= t - self.flip < 60:
                v += 3.0  # the switchover itself
            out[j] = v
        return out

    def counters(self, t, hist=False):
        """(written, observed, lost, failed, reads, errors, direction changes, histogram buckets, lag sum)
        at t, since the counters' last reset (agent restart, or the new pair after the direction
        change). Monotonic between resets: writes stop while the probe is down; the canaries of
        a stall are observed at its end, with lags from the stall's length down (one lost or
        failed in some)."""
        base = self.start
        if t >= self.outage[1]:
            base = self.outage[1]
        if self.flip is not None and t >= self.flip:
            base = max(base, self.flip)
        iv, lag = self.interval, self.lag
        eps = [x for x in self.episodes if x[2] > base and x[0] <= t]
        probes = [x for x in eps if x[3] == "probe"]

        def w(u):   # canaries written by u
            n = max(0, math.floor((u - base) / iv))
            for s, c, e, how in probes:
                if u >= s:
                    n -= max(0, math.floor((min(u, e) - base) / iv)) - max(0, math.floor((s - base) / iv))
            return n

        written = w(t)
        normal = w(t - lag)
        lost = failed = errors = 0
        buckets = [0] * len(LE)
        lag_sum = 0.0
        backlog = 0
        for s, c, e, how in eps:
            if how == "probe":
                errors += math.floor((min(t, e) - s) / 10)   # a failed write every 10 s
                continue
            n = w(min(t, e) - lag) - w(s - lag)   # written during the stall: not observed in time
            normal -= n
            if t < e:
                continue
            lost += how == "lost"
            failed += how == "failed"
            n -= (how == "lost") + (how == "failed")
            backlog += n
            top = e - s + lag   # the oldest one's lag; then one interval less each
            if hist:
                for li, le in enumerate(LE_F[:-1]):
                    buckets[li] += n - min(n, max(0, math.ceil((top - le) / iv)))
            lag_sum += n * top - iv * n * (n - 1) / 2
        observed = normal + backlog
        if hist:
            for li in range(len(LE)):
                buckets[li] += math.floor(normal * self.cum[li])
        buckets[-1] = observed
        lag_sum += normal * self.mean
        reads = observed + observed // 3 + errors
        dirs = 1 if self.flip is not None and t >= self.flip and base == self.flip else 0
        return written, observed, lost, failed, reads, errors, dirs, buckets, lag_sum


def generate(path, a, start, end, seed):
    """Writes the OpenMetrics file; returns (lines, series, targets)."""
    rng = random.Random(seed)
    o = start + int((end - start) * 0.4) // 900 * 900 + 300
    outage = (o, o + OUTAGE)
    targets = [Target(i, a.targets, rng, start, end, outage) for i in range(a.targets)]
    step = a.scrape
    ts_all = list(range(start, end + 1, step))
    ts_live = [t for t in ts_all if not (outage[0] <= t < outage[1])]
    lines = series = 0

    def pair(tg, s, d):
        return (f'target="{tg.name}",kind="{tg.kind}",source_region="{s}",replica_region="{d}",'
                f'job="{JOB}",instance="{INSTANCE}"')

    grids = {every: [t for t in ts_live if (t - start) % every == 0] for every in {step, a.aux_step, a.hist_step}}

    def times(seg, every):
        g = grids[every]
        return g[bisect.bisect_left(g, seg[0]):bisect.bisect_left(g, seg[1])]

    # One file per metric family (OpenMetrics: a family's samples together), written in one
    # pass over the targets, then concatenated.
    cnames = ["written", "observed", "lost", "failed"]
    fams = ([("rpo_seconds", "gauge"), ("rpo_upper_bound_seconds", "gauge"), ("rpo_objective_seconds", "gauge"),
             ("rpo_probe_up", "gauge"), ("rpo_aws_reported_lag_seconds", "gauge")]
            + [(f"rpo_canaries_{c}", "counter") for c in cnames]
            + [("rpo_replica_reads", "counter"), ("rpo_probe_errors", "counter"),
               ("rpo_direction_changes", "counter"), ("rpo_replication_lag_seconds", "histogram"), ("up", "gauge")])
    parts = pathlib.Path(str(path) + ".parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()
    files = {name: open(parts / name, "w", buffering=1 << 20) for name, _ in fams}
    for name, typ in fams:
        files[name].write(f"# TYPE {name} {typ}\n")

    def emit(fam, prefix, pts):
        nonlocal lines, series
        files[fam].write("".join([f"{prefix}{v} {t}\n" for t, v in pts]))
        lines += len(pts)
        series += 1

    for tg in targets:
        r = dict(zip(ts_live, tg.rpo_array(ts_live, rng)))
        downs = [(s, e) for s, c, e, how in tg.episodes if how == "probe"]
        op, code = ERRORS[tg.kind]
        for seg in tg.segments():
            lab = pair(tg, seg[2], seg[3])
            fine, aux = times(seg, step), times(seg, a.aux_step)
            emit("rpo_seconds", f"rpo_seconds{{{lab}}} ", [(t, f"{r[t]:.3f}") for t in fine])
            emit("rpo_objective_seconds", f"rpo_objective_seconds{{{lab}}} ", [(t, f"{tg.objective:g}") for t in fine])
            emit("rpo_upper_bound_seconds", f"rpo_upper_bound_seconds{{{lab}}} ",
                 [(t, f"{r[t] + tg.unc:.3f}") for t in aux])
            emit("rpo_probe_up", f"rpo_probe_up{{{lab}}} ",
                 [(t, 0 if any(s <= t < e for s, e in downs) else 1) for t in aux])
            if tg.kind != "postgres":
                pts = []
                for t in aux:
                    cw = t - 120   # CloudWatch: a minute's average, two minutes late
                    v = tg.lag * (1.1 + 0.2 * math.sin(cw / 3600))
                    for s, c, e, how in tg.episodes:
                        if how != "probe" and s <= cw < e:
                            v = cw - s + tg.lag
                    pts.append((t, f"{v:.3f}"))
                emit("rpo_aws_reported_lag_seconds",
                     f'rpo_aws_reported_lag_seconds{{{lab},metric="ReplicationLatency"}} ', pts)
            cs = [(t, tg.counters(t)) for t in aux]
            for ci, c in enumerate(cnames):
                emit(f"rpo_canaries_{c}", f"rpo_canaries_{c}_total{{{lab}}} ", [(t, x[ci]) for t, x in cs])
            emit("rpo_replica_reads", f"rpo_replica_reads_total{{{lab}}} ", [(t, x[4]) for t, x in cs])
            emit("rpo_probe_errors", f'rpo_probe_errors_total{{{lab},op="{op}",code="{code}"}} ',
                 [(t, x[5]) for t, x in cs])
            out = []
            for t in times(seg, a.hist_step):
                x = tg.counters(t, hist=True)
                for le, b in zip(LE, x[7]):
                    out.append(f'rpo_replication_lag_seconds_bucket{{{lab},le="{le}"}} {b} {t}\n')
                out.append(f"rpo_replication_lag_seconds_count{{{lab}}} {x[1]} {t}\n")
                out.append(f"rpo_replication_lag_seconds_sum{{{lab}}} {x[8]:.3f} {t}\n")
            files["rpo_replication_lag_seconds"].write("".join(out))
            lines += len(out)
            series += len(LE) + 2
        if tg.kind == "postgres":
            flip = tg.flip if tg.flip is not None else math.inf
            emit("rpo_direction_changes",
                 f'rpo_direction_changes_total{{target="{tg.name}",kind="{tg.kind}",job="{JOB}",instance="{INSTANCE}"}} ',
                 [(t, 1 if t >= flip else 0) for t in grids[step]])
    emit("up", f'up{{job="{JOB}",instance="{INSTANCE}"}} ', [(t, 0 if outage[0] <= t < outage[1] else 1) for t in ts_all])
    with open(path, "wb") as f:
        for name, _ in fams:
            files[name].close()
            with open(parts / name, "rb") as part:
                shutil.copyfileobj(part, f, 1 << 24)
            (parts / name).unlink()
        f.write(b"# EOF\n")
    parts.rmdir()
    return lines, series, targets, outage


# ---- processes -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def query(port, q, t=None):
    args = {"query": q} | ({"time": str(t)} if t is not None else {})
    d = get_json(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(args), 300)
    return d["data"]["result"]


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


class Prometheus:
    def __init__(self, data, work, rules=None):
        self.port = free_port()
        cfg = work / ("prometheus-rules.yml" if rules else "prometheus.yml")
        cfg.write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n"
                       + (f"rule_files:\n  - {rules}\n" if rules else "") + "scrape_configs: []\n")
        self.log = work / ("prometheus-B.log" if rules else "prometheus-A.log")
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
             "--storage.tsdb.retention.time=90d", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--web.external-url=http://127.0.0.1:{self.port}/"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 600
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def settle(self, least=0.0, quiet=5.0, timeout=900):
        """Waits (>= `least` s since now) until Prometheus has used < 5 % CPU for `quiet` s
        (its compactions done). Returns the seconds waited."""
        t0 = time.time()
        last_cpu, last_t = bl.cpu_seconds(self.proc.pid), time.time()
        calm_since = None
        while time.time() - t0 < timeout:
            time.sleep(1)
            cpu, now = bl.cpu_seconds(self.proc.pid), time.time()
            busy = (cpu - last_cpu) / (now - last_t) > 0.05
            last_cpu, last_t = cpu, now
            calm_since = None if busy else (calm_since or now)
            if calm_since and now - calm_since >= quiet and now - t0 >= least:
                break
        return time.time() - t0

    def rss(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        return out.get("VmRSS", 0), out.get("VmHWM", 0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def du(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def mib(n):
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def report_group(src, dst):
    """Copies the `rpo-agent.report` group of the shipped rules file (text, no YAML library)."""
    text = pathlib.Path(src).read_text().splitlines()
    out, inside, indent = [], False, None
    for line in text:
        m = re.match(r"^(\s*)- name:\s*(\S+)", line)
        if m:
            if inside and len(m.group(1)) == indent:
                break
            if m.group(2).strip("'\"") == REPORT_GROUP:
                inside, indent = True, len(m.group(1))
        if inside:
            out.append(line)
    if not out:
        raise RuntimeError(f"{src} has no group {REPORT_GROUP}")
    pathlib.Path(dst).write_text("groups:\n" + "\n".join(out) + "\n")
    return [m.group(1) for m in (re.match(r"^\s*- record:\s*(\S+)", x) for x in out) if m]


# ---- the reports ---------------------------------------------------------------------------------

def time_report(a, prom, window, fmt, raw, work):
    out = work / f"report.{fmt}"
    cmd = [a.bin, "report", "--prometheus", prom.url, *window, "--format", fmt, "--out", str(out)]
    if raw:
        cmd.append("--raw")
    if a.query_timeout:
        cmd += ["--query-timeout", a.query_timeout]
    env = dict(os.environ, RPO_LOG=os.environ.get("RPO_LOG", "info"), NO_COLOR="1")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    first = time.perf_counter() - t0
    row = {"fmt": fmt + (" --raw" if raw else ""), "first": first, "cmd": " ".join(cmd)}
    if r.returncode != 0:
        row["error"] = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-3000:]}"
        return row
    m = re.search(r"queries\W{0,3}(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", r.stderr))
    row["queries"] = int(m.group(1)) if m else None
    if fmt == "json":
        try:
            j = json.loads(out.read_text())
            row["path"], row["note"] = j.get("path"), j.get("path_note")
            row["targets"] = len(j.get("targets") or [])
        except (OSError, ValueError) as e:
            row["error"] = f"--out {out}: not JSON: {e}"
    row["bytes"] = out.stat().st_size if out.exists() else 0
    times = []
    if a.runs > 0 and shutil.which("hyperfine"):
        jf = work / "hyperfine.json"
        h = subprocess.run(["hyperfine", "-N", "-i", "--runs", str(a.runs), "--export-json", str(jf),
                            "--style", "none", " ".join(cmd)], capture_output=True, text=True, env=env)
        if h.returncode == 0:
            res = json.loads(jf.read_text())["results"][0]
            codes = res.get("exit_codes") or [0] * len(res["times"])
            times = [x for x, c in zip(res["times"], codes) if c == 0]
            if any(codes):
                row["error"] = (f"{sum(1 for c in codes if c)} of {len(codes)} timed runs failed (exit codes {codes}); "
                                f"the first run succeeded in {first:.1f} s")
        else:
            row["error"] = f"hyperfine: {h.stderr.strip()[-2000:]}"
    else:
        for _ in range(a.runs):
            t0 = time.perf_counter()
            x = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if x.returncode == 0:
                times.append(time.perf_counter() - t0)
            else:
                row["error"] = f"a timed run failed: exit {x.returncode}: {x.stderr.strip()[-2000:]}"
    times = sorted(times) or [first]
    row["min"], row["median"] = times[0], bl.median(times)
    row["rss"], row["hwm"] = prom.rss()
    return row


def print_row(run, row):
    if "error" in row and "min" not in row:
        print(f"  {run} {row['fmt']:<11} FAILED after {row['first']:.2f} s: {row['error']}\n    ({row['cmd']})", flush=True)
        return
    extra = f" path={row.get('path')!r} targets={row.get('targets')}" if "path" in row else ""
    print(f"  {run} {row['fmt']:<11} first {row['first']:.2f} s, min {row['min']:.2f} s, median {row['median']:.2f} s,"
          f" {row['queries']} queries, {mib(row['bytes'])} out, Prometheus RSS {row['rss']:.0f} MiB"
          f" (peak {row['hwm']:.0f}){extra}", flush=True)
    if row.get("note"):
        print(f"      path_note: {row['note']}", flush=True)
    if row.get("error"):
        print(f"      ERROR: {row['error']}\n      ({row['cmd']})", flush=True)


def check_data(prom, start, end, a):
    """A few queries: what the report will find (series, slices per series)."""
    n = query(prom.port, "count(rpo_seconds)", end)
    n = n[0]["value"][1] if n else "0"
    c = query(prom.port, f"count_over_time(up[{end - start + 1}s])", end)
    c = c[0]["value"][1] if c else "0"
    print(f"  data: count(rpo_seconds) at the end = {n}, `up` samples = {c}", flush=True)


def check_rules(prom, start, end):
    r = query(prom.port, f"count_over_time(rpo:slice_within_objective:bool1m[{end - start + 60}s])", end)
    vals = sorted(float(x["value"][1]) for x in r)
    r2 = query(prom.port, f"sum_over_time(rpo:slice_within_objective:bool1m[{end - start + 60}s])", end)
    met = sum(float(x["value"][1]) for x in r2)
    if vals:
        print(f"  rules: rpo:slice_within_objective:bool1m has {len(vals)} series, {vals[0]:.0f}..{vals[-1]:.0f}"
              f" slices each (of {(end - start) // 60} minutes), {met:.0f} of {sum(vals):.0f} met", flush=True)
    else:
        print("  rules: rpo:slice_within_objective:bool1m has NO series", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=50)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--scrape", type=int, default=15, help="scrape interval, s (every scrape: rpo_seconds, objective, up)")
    p.add_argument("--aux-step", type=int, default=60, help="s between samples of the other gauges and counters")
    p.add_argument("--hist-step", type=int, default=300, help="s between samples of the lag histogram")
    p.add_argument("--runs", type=int, default=3, help="timed runs per report after the first")
    p.add_argument("--keep", help="keep the TSDBs in DIR (reused by a rerun)")
    p.add_argument("--bin", default=bl.default_agent())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--query-timeout", help="passed to rpo-agent report (its default: 120s)")
    p.add_argument("--rules", default=str(RULES_FILE))
    p.add_argument("--no-report", action="store_true", help="only build and check the data (no rpo-agent)")
    p.add_argument("--skip-a", action="store_true", help="no reports in run A (without rules)")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("SIGTERM"))   # run the finally: stop Prometheus
    for step in (a.aux_step, a.hist_step):
        if step % a.scrape:
            p.error("--aux-step and --hist-step must be multiples of --scrape")
    if not a.no_report:
        bl.check_agent(a.bin)
    for b in ("prometheus", "promtool"):
        if not shutil.which(b):
            sys.exit(f"{b} missing: deploy/local/prereqs (or apt-get install prometheus)")

    work = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="rpo-report-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    raw_dir, rules_dir, meta_f = work / "data", work / "data-rules", work / "meta.json"
    figures = {}
    proms = []
    try:
        meta = json.loads(meta_f.read_text()) if meta_f.exists() else None
        if meta and meta.get("args") != [a.targets, a.days, a.scrape, a.aux_step, a.hist_step, a.seed]:
            print(f"{work}: data of other options {meta.get('args')}: rebuilt")
            meta = None
        if meta is None:
            for d in (raw_dir, rules_dir):
                shutil.rmtree(d, ignore_errors=True)
            end = int(time.time()) // 3600 * 3600
            start = end - a.days * 86400
            om = work / "history.om"
            t0 = time.perf_counter()
            lines, series, targets, outage = generate(om, a, start, end, a.seed)
            figures["generate"] = time.perf_counter() - t0
            figures["om_bytes"] = om.stat().st_size
            print(f"generate: {lines:,} samples of {series:,} series ({a.targets} targets, {a.days} d, "
                  f"every {a.scrape} s: rpo_seconds, objective, up, direction changes; every {a.aux_step} s: "
                  f"other gauges, counters; every {a.hist_step} s: lag histogram) in {figures['generate']:.1f} s,"
                  f" {mib(figures['om_bytes'])}", flush=True)
            eps = sum(len(t.episodes) for t in targets)
            print(f"  {eps} episodes, agent outage {time.strftime('%Y-%m-%d %H:%M', time.gmtime(outage[0]))} UTC "
                  f"+30 min, direction changes: "
                  + ", ".join(f"{t.name} {time.strftime('%m-%d %H:%M', time.gmtime(t.flip))}" for t in targets if t.flip),
                  flush=True)
            t0 = time.perf_counter()
            r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                                f"--max-block-duration={a.days * 24 * 2}h", str(om), str(raw_dir)],
                               capture_output=True, text=True)
            figures["promtool"] = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"promtool create-blocks-from openmetrics failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
            figures["tsdb_raw"] = du(raw_dir)
            blocks = len([d for d in raw_dir.iterdir() if d.is_dir()])
            print(f"promtool openmetrics: {figures['promtool']:.1f} s, {blocks} blocks, TSDB {mib(figures['tsdb_raw'])}",
                  flush=True)
            om.unlink()
            meta = {"args": [a.targets, a.days, a.scrape, a.aux_step, a.hist_step, a.seed], "start": start,
                    "end": end, "figures": figures}
        else:
            figures = meta["figures"]
            print(f"reusing {work} (data {time.strftime('%Y-%m-%d %H:%M', time.gmtime(meta['start']))} .. "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(meta['end']))} UTC)", flush=True)
        start, end = meta["start"], meta["end"]
        if time.time() - end <= 3600:
            window = ["--last", f"{a.days}d"]
        else:
            window = ["--from", str(start), "--to", str(end)]
        print(f"report window: {' '.join(window)}", flush=True)

        rows = []
        # ---- run A: raw blocks, no rules
        prom = Prometheus(raw_dir, work)
        proms.append(prom)
        prom.settle(least=0, quiet=3)
        print(f"run A: Prometheus (no rules) on :{prom.port}, RSS {prom.rss()[0]:.0f} MiB", flush=True)
        check_data(prom, start, end, a)
        if not a.no_report and not a.skip_a:
            for fmt, raw in (("json", False), ("html", False), ("json", True)):
                row = time_report(a, prom, window, fmt, raw, work)
                print_row("A", row)
                rows.append(("A (no rules)", row))
        # ---- backfill the report rules (again when the shipped group's rules changed)
        rules_tmp = work / "report-rules.yml"
        records = report_group(a.rules, rules_tmp)
        if rules_dir.exists() and meta.get("rules") != records:
            print(f"the group {REPORT_GROUP} now records {', '.join(records)}: backfilled again", flush=True)
            shutil.rmtree(rules_dir)
        if not rules_dir.exists():
            out = work / "rule-blocks"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "rules", "--quiet", f"--start={start}",
                                f"--end={end}", f"--url={prom.url}", f"--output-dir={out}", str(rules_tmp)],
                               capture_output=True, text=True)
            figures["backfill"] = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"promtool create-blocks-from rules failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
            nblocks = len([d for d in out.iterdir() if d.is_dir()])
            figures["rule_blocks"], figures["rule_bytes"] = nblocks, du(out)
            print(f"backfill rules: {figures['backfill']:.1f} s, {nblocks} blocks, {mib(figures['rule_bytes'])}",
                  flush=True)
        prom.stop()
        proms.remove(prom)
        if not rules_dir.exists():
            tmp = work / "data-rules.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for d in raw_dir.iterdir():   # the blocks only (not wal, chunks_head, lock)
                if d.is_dir() and re.fullmatch(r"[0-9A-Z]{26}", d.name):
                    shutil.copytree(d, tmp / d.name)
            for d in (work / "rule-blocks").iterdir():
                shutil.move(str(d), tmp / d.name)
            shutil.rmtree(work / "rule-blocks")
            tmp.rename(rules_dir)
        meta["figures"], meta["rules"] = figures, records
        meta_f.write_text(json.dumps(meta))
        # ---- run B: with the backfilled rules, rules loaded
        t0 = time.perf_counter()
        prom = Prometheus(rules_dir, work, rules=rules_tmp)
        proms.append(prom)
        started = time.perf_counter() - t0
        blocks0 = metric(prom.port, "prometheus_tsdb_blocks_loaded")
        waited = prom.settle(least=75, quiet=10)
        blocks1 = metric(prom.port, "prometheus_tsdb_blocks_loaded")
        comp = metric(prom.port, "prometheus_tsdb_compactions_total")
        print(f"run B: Prometheus (report rules loaded) on :{prom.port}: ready in {started:.1f} s with "
              f"{blocks0:.0f} blocks; compactions settled after {waited:.0f} s ({comp:.0f} compactions, "
              f"{blocks1:.0f} blocks), RSS {prom.rss()[0]:.0f} MiB, TSDB {mib(du(rules_dir))}", flush=True)
        figures["tsdb_rules"] = du(rules_dir)
        check_data(prom, start, end, a)
        check_rules(prom, start, end)
        if not a.no_report:
            for fmt, raw in (("json", False), ("html", False), ("json", True)):
                row = time_report(a, prom, window, fmt, raw, work)
                print_row("B", row)
                rows.append(("B (rules)", row))
        prom.stop()
        proms.remove(prom)
        meta_f.write_text(json.dumps(meta))

        # ---- summary
        print()
        print(f"{a.targets} targets, {a.days} d of history, report {' '.join(window)}; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items() if k in ("generate", "promtool", "backfill"))
              + (f"; OpenMetrics {mib(figures['om_bytes'])}" if "om_bytes" in figures else "")
              + (f"; TSDB {mib(figures['tsdb_raw'])} raw, {mib(figures['tsdb_rules'])} with the rules"
                 if "tsdb_raw" in figures else ""))
        if rows:
            table = []
            for run, r in rows:
                if "min" not in r:
                    table.append([run, r["fmt"], "error", "", "", "", "", r["error"].splitlines()[0][:80]])
                else:
                    table.append([run, r["fmt"], f"{r['first']:.2f} s", f"{r['min']:.2f} s", f"{r['median']:.2f} s",
                                  str(r["queries"]), f"{r['hwm']:.0f} MiB", r.get("path") or ""])
            print(bl.markdown_table(["Prometheus", "report", "first", "min", "median", "queries",
                                     "Prometheus peak RSS", "path"], table))
        print(f"\nbuild: {bl.describe_build(a.bin)}" if not a.no_report else "")
    finally:
        for prom in proms:
            prom.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
