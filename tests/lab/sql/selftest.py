#!/usr/bin/env python3
"""Self-test of the lab's SQL component (tests/lab/lab_sql.py), runnable on its own.

Why: the agent's accuracy tests trust the lab's injected lags, so the lab itself must be shown
to inject what it claims. This starts both pairs in a temporary DIR, checks replication, TLS,
every fault, and that `down()` leaves no process behind. It needs root (like the lab).

Lag is measured *inside the replica server*: a stored routine (created on the primary, so it
replicates) polls for the row every millisecond and returns SYSDATE/clock_timestamp minus the
row's `written_at` (set by the primary at insert time). That keeps client process start-up
(≈10 ms per psql/mariadb call) out of the figures.

Usage: python3 tests/lab/sql/selftest.py [--keep]    (last line: "N passed, N failed")
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import lab_sql  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'  — ' + detail if detail else ''}", flush=True)
    return bool(ok)


# ----------------------------------------------------------------- clients as the app user

def pg(url: str, sql: str, check_rc=True, timeout=30) -> subprocess.CompletedProcess:
    res = subprocess.run([str(lab_sql.PG_BIN / "psql"), "-X", "-q", "-A", "-t",
                          "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         capture_output=True, text=True, timeout=timeout)
    if check_rc and res.returncode != 0:
        raise RuntimeError(f"psql failed: {res.stderr.strip()}")
    return res


def my(port: int, sql: str, check_rc=True, timeout=30) -> subprocess.CompletedProcess:
    res = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port),
                          "-u", lab_sql.APP_USER, f"-p{lab_sql.APP_PASSWORD}", "-N", "-B",
                          "--ssl=0", lab_sql.APP_DB, "-e", sql],
                         capture_output=True, text=True, timeout=timeout)
    if check_rc and res.returncode != 0:
        raise RuntimeError(f"mariadb failed: {res.stderr.strip()}")
    return res


PG_SETUP = """
CREATE TABLE lab_selftest (id int PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION lab_wait(k int, timeout_s float8) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + timeout_s * interval '1 second';
        w timestamptz;
BEGIN
  LOOP
    SELECT written_at INTO w FROM lab_selftest WHERE id = k;
    IF FOUND THEN RETURN extract(epoch FROM clock_timestamp() - w) * 1000; END IF;
    IF clock_timestamp() > deadline THEN RETURN -1; END IF;
    PERFORM pg_sleep(0.001);
  END LOOP;
END $$;
"""

MY_SETUP = """
CREATE TABLE lab_selftest (id INT PRIMARY KEY, written_at DATETIME(6) NOT NULL DEFAULT NOW(6));
CREATE PROCEDURE lab_wait(IN k INT, IN timeout_s DOUBLE)
BEGIN
  DECLARE deadline DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL CAST(timeout_s * 1000000 AS SIGNED) MICROSECOND;
  WHILE NOT EXISTS (SELECT 1 FROM lab_selftest WHERE id = k) AND SYSDATE(6) < deadline DO
    DO SLEEP(0.001);
  END WHILE;
  SELECT IFNULL((SELECT TIMESTAMPDIFF(MICROSECOND, written_at, SYSDATE(6)) / 1000
                 FROM lab_selftest WHERE id = k), -1);
END
"""


class Pair:
    """One primary/replica pair seen as the app user: insert on one side, time the other."""

    def __init__(self, kind: str, env: dict):
        self.kind, self.env, self.next_id = kind, env, 1

    def sql(self, role: str, text: str, check_rc=True, timeout=30):
        if self.kind == "postgres":
            return pg(self.env[f"PG_{role.upper()}_URL"], text, check_rc, timeout)
        return my(int(self.env[f"MYSQL_{role.upper()}_PORT"]), text, check_rc, timeout)

    def setup(self) -> None:
        if self.kind == "postgres":
            self.sql("primary", PG_SETUP)
        else:
            # The mariadb client splits on ';' unless the delimiter changes.
            table, proc = MY_SETUP.strip().split(";\n", 1)
            self.sql("primary", table)
            self.sql("primary", "DELIMITER //\n" + proc + "//\n")
        # The routine is called on the replica: wait until its creation has replicated.
        probe = ("SELECT count(*) FROM pg_proc WHERE proname = 'lab_wait'"
                 if self.kind == "postgres" else
                 "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_NAME = 'lab_wait'")
        deadline = time.monotonic() + 10
        while self.sql("replica", probe).stdout.strip() != "1":
            if time.monotonic() > deadline:
                raise RuntimeError("lab_wait() did not replicate within 10 s")
            time.sleep(0.05)

    def lag_ms(self, timeout_s=5.0, writer="primary", reader="replica") -> float:
        """Insert a row on `writer`, return how long `reader` took to show it (-1: not seen)."""
        k, self.next_id = self.next_id, self.next_id + 1
        call = (f"SELECT lab_wait({k}, {timeout_s})" if self.kind == "postgres"
                else f"CALL lab_wait({k}, {timeout_s})")
        waiter = self._spawn(reader, call)
        time.sleep(0.3)  # let the waiter connect and start polling before the write
        self.sql(writer, f"INSERT INTO lab_selftest (id) VALUES ({k})")
        out, err = waiter.communicate(timeout=timeout_s + 30)
        if waiter.returncode != 0:
            raise RuntimeError(f"waiter failed: {err.strip()}")
        return float(out.strip())

    def _spawn(self, role: str, text: str) -> subprocess.Popen:
        if self.kind == "postgres":
            cmd = [str(lab_sql.PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   self.env[f"PG_{role.upper()}_URL"], "-c", text]
        else:
            cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P",
                   self.env[f"MYSQL_{role.upper()}_PORT"], "-u", lab_sql.APP_USER,
                   f"-p{lab_sql.APP_PASSWORD}", "-N", "-B", "--ssl=0", lab_sql.APP_DB, "-e", text]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def attempt(name: str, fn) -> None:
    """Run one test step; an exception is a failed check, not the end of the run."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 — report and go on with the other checks
        check(name, False, f"{type(exc).__name__}: {exc}")


def lab_processes(directory: pathlib.Path) -> list[str]:
    """Processes whose command line or working directory lies under the lab DIR."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(directory) in cmd or cwd.startswith(str(directory)):
            found.append(f"{entry}: {cmd.strip()[:100]}")
    return found


def port_open(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ----------------------------------------------------------------- test groups

def test_postgres(directory: pathlib.Path, env: dict, state: dict) -> None:
    p = Pair("postgres", env)
    flt = lambda *a: lab_sql.fault(directory, state, ["postgres", *a])  # noqa: E731

    def basics():
        p.setup()
        lags = [p.lag_ms() for _ in range(5)]
        check("pg: row inserted on primary is read on standby", all(l >= 0 for l in lags))
        check("pg: base lag small", max(lags) < 100,
              f"median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms")
        r = p.sql("replica", "INSERT INTO lab_selftest (id) VALUES (-1)", check_rc=False)
        check("pg: standby refuses writes", r.returncode != 0 and "read-only" in r.stderr)
    attempt("pg: basics", basics)

    def tls():
        for role in ("PRIMARY", "REPLICA"):
            r = pg(env[f"PG_{role}_TLS_URL"],
                   "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            check(f"pg: {role.lower()} TLS URL (verify-full, localhost)", r.stdout.strip() == "t")
        conninfo = (f"host=localhost port={env['PG_PRIMARY_PORT']} dbname=app user=rpo "
                    f"password={lab_sql.APP_PASSWORD} sslmode=verify-full "
                    f"sslrootcert={env['LAB_CA_BUNDLE']}")
        r = pg(conninfo, "SELECT 1")
        check("pg: verify-full conninfo works", r.stdout.strip() == "1")
        bad = pg(conninfo.replace("host=localhost", "host=127.0.0.1 hostaddr=127.0.0.1")
                 .replace("sslrootcert=", "sslrootcert=/nonexistent-"), "SELECT 1", False)
        check("pg: verify-full rejects an unknown CA", bad.returncode != 0)
    attempt("pg: tls", tls)

    def delay():
        flt("delay", "800ms")
        lags = [p.lag_ms() for _ in range(3)]
        check("pg: delay 800ms → 780–900 ms", all(780 <= l <= 900 for l in lags),
              ", ".join(f"{l:.0f}" for l in lags) + " ms")
        flt("delay", "0")
        lag = p.lag_ms()
        check("pg: delay 0 clears the delay", 0 <= lag < 100, f"{lag:.1f} ms")
    attempt("pg: delay", delay)

    def stall():
        flt("stall")
        missed = p.lag_ms(timeout_s=1.0)
        check("pg: stall stops rows appearing", missed == -1)
        flt("resume")
        k = p.next_id - 1
        t0 = time.monotonic()
        seen = p.sql("replica", f"SELECT lab_wait({k}, 3)").stdout.strip()
        check("pg: resume lets the stalled row through", float(seen) >= 0,
              f"seen {1000 * (time.monotonic() - t0):.0f} ms after resume")
    attempt("pg: stall", stall)

    def restart():
        t0 = time.monotonic()
        flt("restart", "replica")
        took = time.monotonic() - t0
        lag = p.lag_ms()
        check("pg: replication continues after replica restart", lag >= 0,
              f"restart {took:.2f} s, next lag {lag:.1f} ms")
        t0 = time.monotonic()
        flt("restart", "primary")
        took = time.monotonic() - t0
        lag = p.lag_ms()
        check("pg: replication continues after primary restart", lag >= 0,
              f"restart {took:.2f} s, next lag {lag:.1f} ms")
        flt("stop", "replica")
        check("pg: stop replica closes its port", not port_open(int(env["PG_REPLICA_PORT"])))
        flt("start", "replica")
        check("pg: start replica catches up", p.lag_ms() >= 0)
    attempt("pg: restart", restart)

    def promote():
        t0 = time.monotonic()
        flt("promote")
        took = time.monotonic() - t0
        r = p.sql("replica", "SELECT pg_is_in_recovery()")
        check("pg: promote → standby no longer in recovery", r.stdout.strip() == "f",
              f"promote {took:.2f} s")
        r = p.sql("replica", "INSERT INTO lab_selftest (id) VALUES (-2)", check_rc=False)
        check("pg: promoted standby accepts writes", r.returncode == 0, r.stderr.strip())
        r = p.sql("primary", "INSERT INTO lab_selftest (id) VALUES (-3)", check_rc=False)
        check("pg: old primary still writable (split brain, as documented)", r.returncode == 0)
        flt("stop", "primary")
        check("pg: stop primary", not port_open(int(env["PG_PRIMARY_PORT"])))
    attempt("pg: promote", promote)


def test_mysql(directory: pathlib.Path, env: dict, state: dict) -> None:
    p = Pair("mysql", env)
    flt = lambda *a: lab_sql.fault(directory, state, ["mysql", *a])  # noqa: E731

    def basics():
        p.setup()
        lags = [p.lag_ms() for _ in range(5)]
        check("mysql: row inserted on primary is read on replica", all(l >= 0 for l in lags))
        check("mysql: base lag small", max(lags) < 100,
              f"median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms")
        r = p.sql("replica", "INSERT INTO lab_selftest (id) VALUES (-1)", check_rc=False)
        check("mysql: replica refuses the app user's writes", r.returncode != 0
              and "read-only" in r.stderr, r.stderr.strip().splitlines()[-1])
        r = subprocess.run(["mariadb", "--no-defaults", "-h", "localhost", "--protocol=TCP",
                            "-P", env["MYSQL_PRIMARY_PORT"], "-u", "rpo",
                            f"-p{lab_sql.APP_PASSWORD}", "--ssl", "--ssl-verify-server-cert",
                            f"--ssl-ca={env['LAB_CA_BUNDLE']}", "-N", "-B", "app", "-e",
                            "SHOW STATUS LIKE 'Ssl_version'"], capture_output=True, text=True)
        check("mysql: TLS with server-cert verification", "TLS" in r.stdout, r.stderr.strip())
    attempt("mysql: basics", basics)

    def delay():
        flt("delay", "2s")
        lags = [p.lag_ms(timeout_s=6) for _ in range(2)]
        check("mysql: delay 2s → 2–3 s", all(2000 <= l <= 3000 for l in lags),
              ", ".join(f"{l:.0f}" for l in lags) + " ms")
        flt("delay", "0")
        lag = p.lag_ms()
        check("mysql: delay 0 clears the delay", 0 <= lag < 100, f"{lag:.1f} ms")
    attempt("mysql: delay", delay)

    def stall():
        flt("stall")
        check("mysql: stall stops rows appearing", p.lag_ms(timeout_s=1.0) == -1)
        flt("resume")
        k = p.next_id - 1
        t0 = time.monotonic()
        seen = p.sql("replica", f"CALL lab_wait({k}, 3)").stdout.strip()
        check("mysql: resume lets the stalled row through", float(seen) >= 0,
              f"seen {1000 * (time.monotonic() - t0):.0f} ms after resume")
    attempt("mysql: stall", stall)

    def restart():
        t0 = time.monotonic()
        flt("restart", "replica")
        took = time.monotonic() - t0
        lag = p.lag_ms()
        check("mysql: replication continues after replica restart", lag >= 0,
              f"restart {took:.2f} s, next lag {lag:.1f} ms")
        t0 = time.monotonic()
        flt("restart", "primary")
        took = time.monotonic() - t0
        lag = p.lag_ms(timeout_s=10)
        check("mysql: replication resumes after primary restart", lag >= 0,
              f"restart {took:.2f} s, next lag {lag:.1f} ms")
        flt("stop", "replica")
        check("mysql: stop replica closes its port", not port_open(int(env["MYSQL_REPLICA_PORT"])))
        flt("start", "replica")
        check("mysql: start replica catches up", p.lag_ms() >= 0)
    attempt("mysql: restart", restart)

    def promote():
        t0 = time.monotonic()
        flt("promote")
        took = time.monotonic() - t0
        ro_new = p.sql("replica", "SELECT @@read_only").stdout.strip()
        ro_old = p.sql("primary", "SELECT @@read_only").stdout.strip()
        check("mysql: promote → replica writable, old primary read-only",
              ro_new == "0" and ro_old == "1",
              f"replica {ro_new}, primary {ro_old}, promote {took:.2f} s")
        r = p.sql("replica", "INSERT INTO lab_selftest (id) VALUES (-2)", check_rc=False)
        check("mysql: promoted replica accepts the app user's writes", r.returncode == 0,
              r.stderr.strip())
        r = p.sql("primary", "INSERT INTO lab_selftest (id) VALUES (-3)", check_rc=False)
        check("mysql: old primary refuses the app user's writes", r.returncode != 0)
    attempt("mysql: promote", promote)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave DIR (logs) after the run")
    args = ap.parse_args()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="rpo-sql-selftest-"))
    state = {}
    try:
        lab_sql.ensure_packages()  # outside the timing: a first install takes minutes
        t0 = time.monotonic()
        state = lab_sql.up(directory, {}, None)  # labctl keeps this dict as our state
        took = time.monotonic() - t0
        env = {k: v for k, v in state.items() if k.isupper()}
        expected = {f"{a}_{b}_{c}" for a in ("PG", "MYSQL") for b in ("PRIMARY", "REPLICA")
                    for c in ("URL", "TLS_URL", "PORT")} | {"PG_BIN", "LAB_CA_BUNDLE"}
        check("up: returns every lab.env key", expected <= env.keys(),
              f"missing {sorted(expected - env.keys())}" if not expected <= env.keys() else "")
        check("up: both pairs up", True,
              f"total {took:.2f} s (postgres {state['postgres']['up_seconds']:.2f} s, "
              f"mysql {state['mysql']['up_seconds']:.2f} s, in parallel)")
        st = lab_sql.status(directory, state)
        check("status: both replicas replicating", "standby" in st and "IO Yes, SQL Yes" in st,
              st.replace("\n", "; "))
        check("up: pids recorded for labctl", len(state.get("pids", [])) == 4)
        test_postgres(directory, env, state)
        test_mysql(directory, env, state)
    except Exception as exc:  # noqa: BLE001
        check("up", False, f"{type(exc).__name__}: {exc}")
    finally:
        t0 = time.monotonic()
        lab_sql.down(directory, state)
        took = time.monotonic() - t0
        left = lab_processes(directory)
        check("down: no process left under DIR", not left, f"{took:.2f} s; " + "; ".join(left))
        ports = [state[s][f"{r}_port"] for s in ("postgres", "mysql") if s in state
                 for r in ("primary", "replica")]
        check("down: every port closed", not any(port_open(pt) for pt in ports))
        lab_sql.down(directory, state)
        check("down: idempotent", True)
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    failed = sum(1 for _, ok, _ in RESULTS if not ok)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
