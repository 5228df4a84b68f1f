"""Benchmark: rpo-agent side by side with the usual open-source lag monitors on
the lab's real SQL replica pairs, with the same injected delay.

1. MariaDB 10.11 primary -> replica with MASTER_DELAY 2 (`lab fault mysql delay 2s`):
   pt-heartbeat (percona-toolkit; `--update --interval 1` on the primary,
   `--monitor` on the replica) vs rpo-agent (a `mysql` target, interval 1 s).
   For each tool: the lag it reports (median / min / max over the window after
   a warm-up), the error of its median against the injected 2 s and against
   the true lag of its own rows (replica-only triggers log when the applier
   writes each heartbeat / canary row: MASTER_DELAY's whole-second arithmetic
   makes that true lag differ from 2 s), and the queries per second it causes
   on the replica (SHOW GLOBAL STATUS Questions / Com_select deltas).
2. PostgreSQL 15 primary -> hot standby with an idle primary (no application
   writes): prometheus-postgres-exporter with Debian's example queries.yaml
   (`pg_replication_lag` = now() - pg_last_xact_replay_timestamp()), scraped
   from the standby, vs rpo-agent's `rpo_seconds` (a `postgres` target,
   interval 1 s), over a 60 s window, with no delay and with `postgres delay
   800ms`.

Every tool runs alone in its own window (the agent's canaries are writes: had
it run while the exporter was measured, the primary would no longer be idle).

Installs what it needs (as root: percona-toolkit, libdbd-mysql-perl,
prometheus-postgres-exporter; the lab installs PostgreSQL and MariaDB), starts
its own lab in a temp dir (`--exit-with` this process) and stops every process
it starts.

Run (from the repository root, with the lab venv's python, as root):
    cargo build --release -p rpo-agent   # default --bin: target/release, else target/debug
    ~/.cache/rpo-agent/lab-venv/bin/python bench/sql_side_by_side.py [--seconds 40] [--idle 60]
"""
import argparse
import ctypes
import json
import os
import pathlib
import pty
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "tests/lab/lab"
SRC, DST = "ap-northeast-1", "ap-northeast-3"
PACKAGES = ["percona-toolkit", "libdbd-mysql-perl", "prometheus-postgres-exporter"]
EXPORTER = "/usr/bin/prometheus-postgres-exporter"
QUERIES_CANDIDATES = ["/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml",
                      "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml.gz"]
WARMUP = 10.0

_children = []  # every process this script started (stopped in stop_all)


# --------------------------------------------------------------------------- plumbing

def ensure_packages():
    missing = []
    for pkg in PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {' '.join(missing)}: run as root (apt-get install)")
    print(f"installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if this script dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def spawn(cmd, log, env=None, **kw):
    p = subprocess.Popen([str(c) for c in cmd], env=env, stdin=subprocess.DEVNULL,
                         stdout=kw.pop("stdout", open(log, "ab")), stderr=open(log, "ab"),
                         preexec_fn=_die_with_parent, **kw)
    _children.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    for p in reversed(_children):
        stop(p)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lab_up(d):
    subprocess.run([LAB, "up", "--dir", d, "--components", "sql", "--exit-with", str(os.getpid())],
                   check=True, stdout=subprocess.DEVNULL)
    env = {}
    for line in open(os.path.join(d, "lab.env")):
        k, _, v = line.strip().partition("=")
        if k:
            env[k] = shlex.split(v)[0] if v else ""
    return env


def fault(d, *args):
    subprocess.run([LAB, "fault", "--dir", d, *args], check=True, stdout=subprocess.DEVNULL)


def http_get(url, timeout=5):
    return urllib.request.urlopen(url, timeout=timeout).read().decode()


def prom_values(text, name):
    """{labels-string: value} of every sample of metric `name` in an exposition text."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] == name:
            out[head[len(name):]] = float(value)
    return out


def prom_sum(text, name):
    return sum(prom_values(text, name).values())


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def parse_ts(text):
    """RFC 3339 (tracing's JSON `timestamp`, up to 9 fraction digits) -> unix seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def wall():
    return time.time()


# --------------------------------------------------------------------------- the agent

def agent_config(port, kind, env, name):
    p = "PG" if kind == "postgres" else "MYSQL"
    return (f'[agent]\nid = "bench"\nlisten = "127.0.0.1:{port}"\nobjective = "60s"\n\n'
            f'[[target]]\nname = "{name}"\nkind = "{kind}"\n'
            f'source = {{ region = "{SRC}", url = "{env[p + "_PRIMARY_URL"]}" }}\n'
            f'replicas = [{{ region = "{DST}", url = "{env[p + "_REPLICA_URL"]}" }}]\n'
            f'interval = "1s"\ntimeout = "2m"\n')


class Agent:
    def __init__(self, bin_, d, kind, env, name):
        self.port = free_port()
        self.name = name
        self.cfg = os.path.join(d, f"agent-{name}.toml")
        with open(self.cfg, "w") as f:
            f.write(agent_config(self.port, kind, env, name))
        self.log = os.path.join(d, f"agent-{name}.log")
        init = subprocess.run([bin_, "init", "--config", self.cfg], capture_output=True, text=True)
        if init.returncode != 0:
            raise RuntimeError(f"rpo-agent init failed:\n{init.stdout}{init.stderr}")
        e = dict(os.environ, RPO_LOG="warn,rpo_agent::scheduler=debug")
        self.proc = spawn([bin_, "--log-format", "json", "run", "--config", self.cfg], self.log, env=e,
                          stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                http_get(f"http://127.0.0.1:{self.port}/metrics", 1)
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rpo-agent exited; see {self.log}")
                time.sleep(0.1)
        raise RuntimeError(f"rpo-agent did not serve /metrics; see {self.log}")

    def metrics(self):
        return http_get(f"http://127.0.0.1:{self.port}/metrics")

    def rpo_seconds(self):
        v = prom_values(self.metrics(), "rpo_seconds")
        return max(v.values()) if v else float("nan")

    def observed(self, t0, t1, with_seq=False):
        """Per-canary lags (seconds; with_seq: (seq, lag)) the agent logged between wall times t0 and t1."""
        lags = []
        for line in open(self.log):
            if '"canary observed"' not in line:
                continue
            o = json.loads(line)
            ts = parse_ts(o["timestamp"])
            if t0 <= ts <= t1:
                lags.append((o["seq"], o["lag_seconds"]) if with_seq else o["lag_seconds"])
        return lags

    def stop(self):
        stop(self.proc)


# --------------------------------------------------------------------------- MariaDB

def my_root(d, role, sql, fmt=("-N", "-B"), check=True):
    sock = os.path.join(d, "mysql", "run", f"{role}.sock")
    return subprocess.run(["mariadb", "--no-defaults", "-S", sock, "-u", "root", *fmt, "-e", sql],
                          check=check, capture_output=True, text=True).stdout


def replica_counters(d):
    out = my_root(d, "replica", "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select')")
    return {k: int(v) for k, v in (line.split("\t") for line in out.strip().splitlines())}


def counter_deltas(d, seconds, during=None):
    """Increase of Questions and Com_select on the replica over `seconds` (calls during() every 1 s),
    and the window's exact length under the key "seconds"."""
    c0, t0 = replica_counters(d), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        if during:
            during()
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    c1, t1 = replica_counters(d), time.monotonic()
    return dict({k: c1[k] - c0[k] for k in c0}, seconds=t1 - t0)


def net_rate(window, base, key):
    """Per-second rate of `key` in a window, less the statements this script's own sampling adds
    to every window (the whole increase of a window in which no tool ran)."""
    return (window[key] - base[key]) / window["seconds"]


class PtMonitor:
    """`pt-heartbeat --monitor` on a pty (it block-buffers into a pipe); keeps (wall, lag) lines."""

    def __init__(self, cmd, log):
        master, slave = pty.openpty()
        self.proc = spawn(cmd, log, stdout=slave)
        os.close(slave)
        self.master, self.lines, self.raw = master, [], open(log, "a")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                self.raw.write(text + "\n")
                self.raw.flush()
                m = re.match(r"^(\d+(?:\.\d+)?)s\s*\[", text)
                if m:
                    self.lines.append((wall(), float(m.group(1))))

    def between(self, t0, t1):
        return [v for t, v in self.lines if t0 <= t <= t1]

    def stop(self):
        stop(self.proc)
        try:
            os.close(self.master)
        except OSError:
            pass


TRUTH_DB = "rpo_bench_truth"


def truth_setup(d):
    """Ground truth on the replica: replica-only triggers record when each replicated row is applied.

    MariaDB runs triggers for row-based events only with slave_run_triggers_for_rbr; SYSDATE(6) is
    the real clock (NOW() in the applier is the primary's event time). Nothing here is binlogged or
    sent by a client, so it adds no Questions.
    """
    my_root(d, "replica", "STOP SLAVE SQL_THREAD; SET GLOBAL slave_run_triggers_for_rbr = 'YES'; "
                          "START SLAVE SQL_THREAD;")
    my_root(d, "replica", f"SET SESSION sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS {TRUTH_DB}; "
                          f"CREATE TABLE IF NOT EXISTS {TRUTH_DB}.applied (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                          "what VARCHAR(16), k VARCHAR(64), applied_at DOUBLE)")


def truth_trigger(d, table, what, key_expr):
    wait_replica_table(d, table, need_row=(table == "heartbeat"))
    for ev in ("INSERT", "UPDATE"):
        my_root(d, "replica", f"SET SESSION sql_log_bin = 0; CREATE TRIGGER app.rpo_bench_{what}_{ev.lower()} "
                              f"AFTER {ev} ON app.{table} FOR EACH ROW INSERT INTO {TRUTH_DB}.applied "
                              f"(what, k, applied_at) VALUES ('{what}', {key_expr}, UNIX_TIMESTAMP(SYSDATE(6)))")


def truth_rows(d, what):
    out = my_root(d, "replica", f"SELECT k, applied_at FROM {TRUTH_DB}.applied WHERE what = '{what}'")
    return [(k, float(a)) for k, a in (line.split("\t") for line in out.strip().splitlines())]


def wait_replica_table(d, table, need_row, timeout=15):
    """Until app.`table` exists on the replica (need_row: and has a row)."""
    for _ in range(int(timeout * 10)):
        n = my_root(d, "replica", f"SELECT COUNT(*) FROM app.{table}", check=False).strip()
        if n and (n != "0" or not need_row):
            return
        time.sleep(0.1)
    raise RuntimeError(f"app.{table} did not reach the replica in {timeout} s")


def utc_ts(text):
    """pt-heartbeat's ts column ('2026-11-30T16:50:01.000123', UTC with --utc) -> unix seconds."""
    base, _, frac = text.partition(".")
    return datetime.fromisoformat(base + "+00:00").timestamp() + (float("0." + frac) if frac else 0.0)


def mariadb_part(bin_, d, env, seconds):
    fault(d, "mysql", "delay", "2s")
    status = my_root(d, "replica", "SHOW SLAVE STATUS", fmt=("-E",))
    sql_delay = re.search(r"SQL_Delay:\s*(\d+)", status).group(1)
    truth_setup(d)
    agent_cfg = os.path.join(d, "agent-my-init.toml")
    with open(agent_cfg, "w") as f:
        f.write(agent_config(free_port(), "mysql", env, "my"))
    subprocess.run([bin_, "init", "--config", agent_cfg], check=True, capture_output=True)
    rows = []

    # Baseline: the replica's counters with no tool running (only this script's sampling).
    base = counter_deltas(d, 10)

    # pt-heartbeat alone.
    my = ["-h", "127.0.0.1", "-u", "rpo", "-p", "rpo-lab-secret", "-D", "app"]
    upd = spawn(["pt-heartbeat", "--update", "--interval", "1", "--utc", "--create-table",
                 "-P", env["MYSQL_PRIMARY_PORT"], *my], os.path.join(d, "pt-heartbeat-update.log"))
    # The monitor gives up at once if the heartbeat table has not reached the replica yet.
    truth_trigger(d, "heartbeat", "hb", "NEW.ts")
    mon = PtMonitor(["pt-heartbeat", "--monitor", "--utc", "--interval", "1", "--master-server-id", "1",
                     "-P", env["MYSQL_REPLICA_PORT"], *my], os.path.join(d, "pt-heartbeat-monitor.log"))
    time.sleep(WARMUP)
    t0 = wall()
    pt_rates = counter_deltas(d, seconds)
    t1 = wall()
    pt = mon.between(t0, t1)
    mon.stop()
    stop(upd)
    if upd.returncode not in (0, -15) or not pt:
        raise RuntimeError(f"pt-heartbeat produced no figures; see {d}/pt-heartbeat-*.log")
    time.sleep(3)  # the last heartbeats are applied before the agent's window
    hb_truth = [a - utc_ts(k) for k, a in truth_rows(d, "hb") if t0 - 3 <= utc_ts(k) <= t1]
    rows.append(("pt-heartbeat --monitor: printed lag, 1/s", pt, pt_rates, hb_truth))
    rows.append(("  true lag of its heartbeat rows (replica trigger)", hb_truth, None, None))

    # rpo-agent alone.
    truth_trigger(d, "rpo_canary", "canary", "NEW.seq")
    agent = Agent(bin_, d, "mysql", env, "my")
    time.sleep(WARMUP)
    m0 = agent.metrics()
    samples = []
    t0 = wall()
    ag_rates = counter_deltas(d, seconds, during=lambda: samples.append(agent.rpo_seconds()))
    t1 = wall()
    m1 = agent.metrics()
    agent.stop()
    observed = agent.observed(t0, t1, with_seq=True)
    lags = [lag for _, lag in observed]
    truth = {int(k): a for k, a in truth_rows(d, "canary")}
    pairs = [(lag, truth[seq] - seq / 1e6) for seq, lag in observed if seq in truth]
    ag_truth = [t for _, t in pairs]
    errs = sorted(lag - t for lag, t in pairs)

    def delta(name):
        return prom_sum(m1, name) - prom_sum(m0, name)
    canaries = max(1.0, delta("rpo_replication_lag_seconds_count"))
    hist_mean = delta("rpo_replication_lag_seconds_sum") / canaries
    unc_mean = delta("rpo_measurement_uncertainty_seconds_sum") / max(1.0, delta("rpo_measurement_uncertainty_seconds_count"))
    reads = delta("rpo_replica_reads_total")
    rows.append(("rpo-agent: rpo_replication_lag_seconds, per canary", lags, ag_rates, ag_truth))
    rows.append(("rpo-agent: rpo_seconds, scraped 1/s", samples, "same", ag_truth))
    rows.append(("  true lag of its canaries (replica trigger)", ag_truth, None, None))

    print(f"\n## 1. MariaDB 10.11, MASTER_DELAY {sql_delay} (`lab fault mysql delay 2s`), "
          f"{seconds} s window after {WARMUP:.0f} s warm-up, each tool alone\n")
    print("| tool / figure | n | median | min | max | median − 2 s | median − true median | "
          "replica Questions/s | replica Com_select/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, xs, rates, true in rows:
        med, lo, hi = stats(xs)
        if rates == "same":
            q = s_ = "(same run)"
        elif rates:
            q = f"{net_rate(rates, base, 'Questions'):.2f}"
            s_ = f"{net_rate(rates, base, 'Com_select'):.2f}"
        else:
            q = s_ = "–"
        vs_true = f"{med - statistics.median(true):+.3f} s" if true else "–"
        print(f"| {label} | {len(xs)} | {med:.3f} s | {lo:.3f} s | {hi:.3f} s | {med - 2:+.3f} s | {vs_true} "
              f"| {q} | {s_} |")
    if errs:
        abs_errs = sorted(abs(e) for e in errs)
        print(f"\nrpo-agent per canary against its own row's apply time ({len(errs)} canaries): error median "
              f"{statistics.median(errs) * 1e3:+.1f} ms, p90 |error| {abs_errs[int(len(abs_errs) * 0.9)] * 1e3:.1f} ms, "
              f"max |error| {abs_errs[-1] * 1e3:.1f} ms (the agent times from its write's acknowledgement on its "
              f"monotonic clock; the truth is the replica trigger's SYSDATE(6) minus the canary's seq, i.e. the "
              f"wall clock just before the write).")
    print(f"rpo-agent: mean of rpo_replication_lag_seconds from the histogram's _sum/_count = {hist_mean:.3f} s; "
          f"rpo_replica_reads_total {reads / (t1 - t0):.2f} reads/s = {reads / canaries:.1f} reads per canary "
          f"(adaptive polling around the predicted arrival); mean rpo_measurement_uncertainty_seconds "
          f"{unc_mean * 1e3:.0f} ms.")
    print(f"\nQueries/s method: SHOW GLOBAL STATUS 'Questions' (statements sent by clients, prepared executes "
          f"included; the replication applier is not a client) and 'Com_select' on the replica, read at the start "
          f"and end of each tool's {seconds} s window while only that tool ran (pt-heartbeat: the --monitor on the "
          f"replica; its --update runs on the primary); the increase seen over a {base['seconds']:.0f} s window with no tool "
          f"running (Questions +{base['Questions']}, Com_select +{base['Com_select']}: this script's own two "
          f"SHOW GLOBAL STATUS reads) is subtracted from each window's increase. Connection set-up statements count, pings do not.")
    print("Ground truth: replica-only AFTER INSERT/UPDATE triggers (slave_run_triggers_for_rbr=YES) log "
          "SYSDATE(6) when the applier writes each heartbeat / canary row; true lag = that − the row's write "
          "time (pt-heartbeat's ts column, the canary's seq).")
    print("MASTER_DELAY semantics (MariaDB 10.11): before a transaction the applier sleeps (event's whole-second "
          "timestamp + N) − (its own clock truncated to the second) seconds, counted from when it reads the event. "
          "An idle applier reads a row as it arrives, so an isolated row waits N s (lab self-test: 2001–2005 ms). "
          "Under a steady writer of one row per second the applier is still asleep on the previous row when the "
          "next arrives, reads each row at the previous row's apply time, and its applies lock to one sub-second "
          "phase: within a run every row then has about the same true lag, but that lag can lie anywhere from "
          "≈1 s to ≈3 s depending on where the phase fell relative to the writes, and the two tools' rows (written "
          "in different windows, at different sub-second phases) need not see the same true lag. Hence the 'true "
          "lag' rows: each tool is judged against its own rows. pt-heartbeat writes at whole seconds, reads at "
          "+0.5 s (--skew) and subtracts the skew, so it prints its rows' true lag rounded to whole seconds.")


# --------------------------------------------------------------------------- PostgreSQL

def queries_yaml(d):
    for path in QUERIES_CANDIDATES:
        if os.path.exists(path):
            if path.endswith(".gz"):
                out = os.path.join(d, "queries.yaml")
                with open(out, "wb") as f:
                    subprocess.run(["gzip", "-dc", path], stdout=f, check=True)
                return path, out
            return path, path
    raise RuntimeError(f"no example queries.yaml in {QUERIES_CANDIDATES}")


class Exporter:
    def __init__(self, d, env):
        self.port = free_port()
        shipped, self.queries = queries_yaml(d)
        self.shipped = shipped
        dsn = env["PG_REPLICA_URL"].replace("postgres://", "postgresql://", 1)
        e = dict(os.environ, DATA_SOURCE_NAME=dsn)
        self.proc = spawn([EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}",
                           f"--extend.query-path={self.queries}", "--log.level=warn"],
                          os.path.join(d, "postgres-exporter.log"), env=e)
        for _ in range(100):
            try:
                if "pg_up" in http_get(self.url(), 2):
                    return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"postgres exporter exited; see {d}/postgres-exporter.log")
            time.sleep(0.1)
        raise RuntimeError(f"postgres exporter did not answer; see {d}/postgres-exporter.log")

    def url(self):
        return f"http://127.0.0.1:{self.port}/metrics"

    def lag(self):
        v = prom_values(http_get(self.url()), "pg_replication_lag")
        return max(v.values()) if v else float("nan")

    def stop(self):
        stop(self.proc)


def sample_series(fns, seconds):
    """Calls every fn once per second for `seconds` (+1 for t=0); returns [[values at t=0..]]."""
    out = [[] for _ in fns]
    start = time.monotonic()
    for i in range(int(seconds) + 1):
        time.sleep(max(0.0, start + i - time.monotonic()))
        for k, fn in enumerate(fns):
            out[k].append(fn())
    return out


def parse_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", text)
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def pg_super(env, sql):
    """SQL as the lab's postgres superuser (trusted on 127.0.0.1) on the primary, database app."""
    port = env["PG_PRIMARY_PORT"]
    subprocess.run([os.path.join(env.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                    "-U", "postgres", "-d", "app", "-c", sql],
                   env=dict(os.environ, PGSSLMODE="disable"), check=True, capture_output=True)


def postgres_case(bin_, d, env, idle, delay):
    fault(d, "postgres", "delay", delay)
    true_lag = parse_seconds(delay)
    # Autovacuum would ANALYZE rpo_canary during the idle window after an agent window's updates
    # (a commit the standby replays, which resets pg_last_xact_replay_timestamp): do it now.
    pg_super(env, "VACUUM ANALYZE rpo_canary")
    time.sleep(true_lag + 0.5)
    # Window A: the exporter alone, nothing writes to the primary.
    exp = Exporter(d, env)
    (idle_lag,) = sample_series([exp.lag], idle)
    # Window B: the agent (its canaries are the only writes), the exporter still scraped.
    agent = Agent(bin_, d, "postgres", env, "pg" + ("0" if delay == "0" else delay))
    time.sleep(5)
    rpo, busy_lag = sample_series([agent.rpo_seconds, exp.lag], idle)
    lags = agent.observed(wall() - idle, wall())
    agent.stop()
    exp.stop()

    label = "no delay" if delay == "0" else f"`lab fault postgres delay {delay}` (recovery_min_apply_delay)"
    print(f"\n### PostgreSQL 15, {label}; true lag ≈ {true_lag:.1f} s (+ 1–5 ms)\n")
    print(f"| t (s) | exporter `pg_replication_lag`, primary idle (window A) | rpo-agent `rpo_seconds` (window B) "
          f"| exporter `pg_replication_lag` during window B (the agent's canaries are the only writes) |")
    print("| --- | --- | --- | --- |")
    for t in range(0, int(idle) + 1, 10):
        print(f"| {t} | {idle_lag[t]:.2f} s | {rpo[t]:.3f} s | {busy_lag[t]:.2f} s |")
    resets = [t for t in range(1, len(idle_lag)) if idle_lag[t] < idle_lag[t - 1] - 0.5]
    if resets:
        print(f"\nNote: pg_replication_lag fell back at t = {', '.join(map(str, resets))} s of window A: something "
              f"committed on the primary (autovacuum?) and the standby replayed it.")
    print("\n| series (sampled 1/s) | n | median | min | max | error of median vs true lag |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, xs in (("window A exporter pg_replication_lag", idle_lag), ("window B rpo-agent rpo_seconds", rpo),
                     ("window B exporter pg_replication_lag", busy_lag)):
        med, lo, hi = stats(xs)
        print(f"| {name} | {len(xs)} | {med:.3f} s | {lo:.3f} s | {hi:.3f} s | {med - true_lag:+.3f} s |")
    if lags:
        med, lo, hi = stats(lags)
        print(f"\nrpo-agent per-canary lag in window B: n={len(lags)}, median {med:.3f} s, min {lo:.3f} s, "
              f"max {hi:.3f} s; error of the median vs {true_lag:.1f} s: {med - true_lag:+.3f} s.")


def postgres_part(bin_, d, env, idle, delays):
    # `rpo-agent init` creates rpo_canary now, so the standby has replayed a commit (without one,
    # pg_last_xact_replay_timestamp() is NULL and the example query reports 0).
    cfg = os.path.join(d, "agent-pg-init.toml")
    with open(cfg, "w") as f:
        f.write(agent_config(free_port(), "postgres", env, "pg-init"))
    subprocess.run([bin_, "init", "--config", cfg], check=True, capture_output=True)
    shipped, _ = queries_yaml(d)
    print(f"\n## 2. PostgreSQL 15 primary idle for {idle:.0f} s: prometheus-postgres-exporter "
          f"({exporter_version()}) with Debian's example {shipped}, scraped from the standby, "
          f"vs rpo-agent (postgres target, interval 1 s)\n")
    print("Window A: only the exporter runs, nothing writes to the primary (just before it, the script runs VACUUM "
          "ANALYZE rpo_canary so that autovacuum does not commit during it; `pg_replication_lag` = "
          "now() - pg_last_xact_replay_timestamp() on the standby). Window B, right after: the agent runs "
          "(its canary upsert once per second is the only write) and the exporter is still scraped. "
          "t = seconds since the window started; values sampled once per second.")
    for delay in delays:
        postgres_case(bin_, d, env, idle, delay)


def exporter_version():
    out = subprocess.run([EXPORTER, "--version"], capture_output=True, text=True)
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return f"postgres_exporter {m.group(1)}" if m else "postgres_exporter"


def tool_versions():
    pt = subprocess.run(["pt-heartbeat", "--version"], capture_output=True, text=True).stdout.strip()
    my = subprocess.run(["mariadb", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Distrib (\S+?),", my)
    return pt, (f"MariaDB {m.group(1)}" if m else "MariaDB")


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=40, help="MariaDB measuring window per tool")
    ap.add_argument("--idle", type=int, default=60, help="PostgreSQL idle window")
    ap.add_argument("--pg-delays", default="0,800ms", help="postgres delays to run, comma separated")
    default_bin = ROOT / "target/release/rpo-agent"
    if not default_bin.exists():
        default_bin = ROOT / "target/debug/rpo-agent"
    ap.add_argument("--bin", default=str(default_bin))
    ap.add_argument("--skip", choices=["mysql", "postgres"], help="leave one part out")
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs) afterwards")
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} is missing: run cargo build -p rpo-agent")
    ensure_packages()
    d = tempfile.mkdtemp(prefix="rpo-sql-", dir="/tmp")
    shown_bin = os.path.relpath(a.bin, ROOT)
    a.bin = shutil.copy2(a.bin, os.path.join(d, "rpo-agent"))  # a concurrent cargo build cannot swap it
    cmd = " ".join([os.path.relpath(sys.executable) if not sys.executable.startswith(str(pathlib.Path.home()))
                    else "~/" + os.path.relpath(sys.executable, pathlib.Path.home()),
                    "bench/sql_side_by_side.py", *sys.argv[1:]])
    try:
        env = lab_up(d)
        pt_version, my_version = tool_versions()
        print(f"# rpo-agent SQL side-by-side benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
        print(f"\nReproduce (repository root, as root): `{cmd}`; agent binary {shown_bin}; "
              f"{pt_version}; {my_version}; PostgreSQL 15; lab in {d}.")
        if a.skip != "mysql":
            mariadb_part(a.bin, d, env, a.seconds)
        if a.skip != "postgres":
            postgres_part(a.bin, d, env, a.idle, [x.strip() for x in a.pg_delays.split(",") if x.strip()])
    finally:
        stop_all()
        subprocess.run([LAB, "down", "--dir", d], stdout=subprocess.DEVNULL)
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
