"""SQL component of the two-region lab: PostgreSQL 15 and MariaDB 10.11 replica pairs.

Why this exists: the agent's `postgres` and `mysql` probes must be tested against *real*
replication (what Aurora global database, RDS read replicas and plain streaming/binlog
replicas do), not a fake. One machine cannot host two AWS regions, so each "region" is one
server process on its own 127.0.0.1 port:

* PostgreSQL: primary + hot standby by physical streaming replication. Lag is injected with
  `recovery_min_apply_delay`, a stall with `pg_wal_replay_pause()`, a failover with
  `pg_ctl promote`.
* MariaDB: primary + replica by GTID binlog replication. Lag is injected with `MASTER_DELAY`
  (whole seconds only), a stall with `STOP SLAVE SQL_THREAD`, a switchover by resetting the
  replica and making the old primary read-only.

This file is a pluggable component of `tests/lab/labctl.py`: it exposes `FAULT_SERVICES`,
`up()`, `down()` and `fault()`. Only the Python standard library is used; the servers are
driven through their own command-line clients (`psql`, `mariadb`) so the lab needs no driver
packages. Everything lives under the lab directory DIR:

    DIR/pki/           lab CA (shared with other components) + the SQL servers' certificate
    DIR/pg/            owned by postgres: primary/, replica/ (data), run/ (sockets), log/, tls/
    DIR/mysql/         owned by mysql: primary/, replica/ (data), *.cnf, run/, log/, tls/

Nothing is ever bound to anything but 127.0.0.1, and `down()` stops every process started
here (also those started later by faults such as `restart`), found through the servers' own
pid files, so it works even when the caller lost the state.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

FAULT_SERVICES = ["postgres", "mysql"]

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
MARIADBD = "/usr/sbin/mariadbd"
APT_PACKAGES = ["postgresql-15", "mariadb-server", "mariadb-client", "openssl"]

APP_DB = "app"
APP_USER = "rpo"
APP_PASSWORD = "rpo-lab-secret"
REPL_USER = "repl"
REPL_PASSWORD = "repl-lab-secret"

# A unix socket path must fit in sun_path (108 bytes); leave room for PostgreSQL's
# ".s.PGSQL.NNNNN" and the MariaDB socket names.
MAX_SOCKET_DIR_LEN = 85


# --------------------------------------------------------------------------- prerequisites

def missing_packages(packages=APT_PACKAGES) -> list[str]:
    """Debian packages from `packages` that dpkg does not report as installed."""
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                             capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def ensure_packages(packages=APT_PACKAGES) -> list[str]:
    """Install what is missing (apt-get update only then); quiet when all is present.

    The project's own files must install what the lab needs (a fresh machine has nothing
    installed by hand). Returns the packages that were installed.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    print(f"lab_sql: installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    stop_system_services()
    return missing


def stop_system_services() -> None:
    """Stop the distribution's own postgres/mariadb services if the install started them.

    In containers policy-rc.d forbids starting them, but on a machine with systemd the
    packages start a cluster on 5432/3306 that nobody asked for; the lab never uses them.
    """
    if shutil.which("pg_lsclusters"):
        res = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
        for line in res.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[3] == "online":
                subprocess.run(["pg_ctlcluster", cols[0], cols[1], "stop"], capture_output=True)
    pidfile = pathlib.Path("/run/mysqld/mysqld.pid")
    if pidfile.exists() and _alive(_read_pid(pidfile)):
        subprocess.run(["service", "mariadb", "stop"], capture_output=True)


# --------------------------------------------------------------------------- small helpers

def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (kernel-chosen; sockets held until all picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run(cmd, *, user: str | None = None, cwd=None, env=None, timeout=60, check=True,
         input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run a command (as `user` via runuser when given) and raise with its output on failure."""
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout, input=input_text)
    if check and res.returncode != 0:
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}\n"
                           f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res


def _read_pid(path: pathlib.Path) -> int | None:
    """First line of a pid file as an int (postmaster.pid and mariadb pid files both)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    """True if pid runs and is not a zombie (our own exited children are reaped here)."""
    if not pid:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (no psutil in the standard library)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def _terminate(pid: int | None, first_signal=signal.SIGTERM, grace=5.0) -> None:
    """Ask a server to stop, then SIGKILL it and its children if still there after grace."""
    if not _alive(pid):
        return
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    # PostgreSQL backends each call setsid(), so a process group is not enough: kill the
    # direct children too (they would exit on postmaster death, but not instantly).
    for victim in [pid, *_children(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.05)


def _make_owned_dir(path: pathlib.Path, owner: str, mode=0o700) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, owner, owner)
    path.chmod(mode)
    return path


def _ensure_traversable(directory: pathlib.Path, user: str) -> None:
    """Let `user` reach its subdirectory of DIR: add o+x on ancestors only if it cannot.

    DIR is often a root-owned 0700 mkdtemp; the servers run unprivileged and must cd
    through it. Only the execute bit is added (no listing), and only when needed.
    """
    if _run(["test", "-x", directory], user=user, check=False).returncode == 0:
        return
    for p in [directory, *directory.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)


def parse_duration_ms(text: str) -> int:
    """'800ms', '2s', '1.5s', '1m', '0' -> milliseconds. A bare number means seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use e.g. 800ms, 2s, 1m or 0")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return int(round(value * {"ms": 1, "s": 1000, "m": 60000}[unit]))


# --------------------------------------------------------------------------- PKI

def ensure_pki(directory: pathlib.Path) -> dict:
    """Lab CA (reused if another component made it) + a server cert for 127.0.0.1/localhost.

    The agent defaults to `verify-full`, so the lab offers endpoints it can verify: the
    certificate carries SAN IP:127.0.0.1 and DNS:localhost. A flock keeps two components
    from generating the CA at the same time.
    """
    pki = directory / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = pki / "ca.crt", pki / "ca.key"
    crt, key = pki / "sql-server.crt", pki / "sql-server.key"
    with open(pki / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        if not (ca_crt.exists() and ca_key.exists()):
            _run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt,
                  "-days", "3650", "-subj", "/CN=rpo-agent lab CA",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            ca_key.chmod(0o600)
            ca_crt.chmod(0o644)
        if not (crt.exists() and key.exists()):
            ext = pki / "sql-server.ext"
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth\n")
            csr = pki / "sql-server.csr"
            _run(["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"])
            _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                  "-CAcreateserial", "-days", "825", "-out", crt, "-extfile", ext])
            key.chmod(0o600)
    return {"ca": ca_crt, "cert": crt, "key": key}


def _install_tls_copy(pki: dict, dest: pathlib.Path, owner: str) -> dict:
    """Copy cert/key/CA into a server-owned dir: both servers insist on owning a 0600 key."""
    _make_owned_dir(dest, owner)
    out = {}
    for name, src in (("ca", pki["ca"]), ("cert", pki["cert"]), ("key", pki["key"])):
        dst = dest / pathlib.Path(src).name
        shutil.copyfile(src, dst)
        shutil.chown(dst, owner, owner)
        dst.chmod(0o600)
        out[name] = str(dst)
    return out


# --------------------------------------------------------------------------- PostgreSQL

def _pg_paths(directory: pathlib.Path) -> dict:
    base = directory / "pg"
    return {"base": base, "primary": base / "primary", "replica": base / "replica",
            "run": base / "run", "log": base / "log", "tls": base / "tls"}


def pg_psql(port: int, sql: str, *, db="postgres", timeout=30, check=True) -> str:
    """Run SQL as the postgres superuser over TCP (trusted from 127.0.0.1 in this lab only)."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="5", PGSSLMODE="disable")
    res = _run([PG_BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-c", sql],
               env=env, timeout=timeout, check=check)
    return res.stdout.strip()


def _pg_ctl(directory: pathlib.Path, role: str, *args: str, check=True):
    """pg_ctl as postgres on the primary's or replica's data dir, logging to DIR/pg/log."""
    p = _pg_paths(directory)
    return _run([PG_BIN / "pg_ctl", "-D", p[role], "-l", p["log"] / f"{role}.log",
                 "-w", "-t", "30", *args], user="postgres", cwd=p["base"], check=check)


def _pg_write_config(datadir: pathlib.Path, port: int, run_dir: pathlib.Path, tls: dict) -> None:
    """Settings appended to postgresql.conf (last one wins); a basebackup copies them."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": port,
        "unix_socket_directories": str(run_dir),
        "wal_level": "replica",
        "max_wal_senders": 5,
        # Keeps WAL for a standby that was stopped by a fault so it can catch up later.
        "wal_keep_size": "256MB",
        "hot_standby": "on",
        # The standby retries a lost primary every 5 s by default: after `restart primary`
        # that alone showed up as a 4.5 s lag. Retry fast, as a lab must not add lag.
        "wal_retrieve_retry_interval": "200ms",
        "fsync": "off",  # lab only: speed, and durability is not what is measured
        "ssl": "on",
        "ssl_cert_file": tls["cert"],
        "ssl_key_file": tls["key"],
        "logging_collector": "off",
    }
    lines = "".join(f"{k} = '{v}'\n" if isinstance(v, str) else f"{k} = {v}\n"
                    for k, v in settings.items())
    with open(datadir / "postgresql.conf", "a") as f:
        f.write("\n# --- rpo-agent lab (tests/lab/lab_sql.py) ---\n" + lines)


PG_HBA = f"""\
# rpo-agent lab: superuser and replication trusted on loopback only; the app user must
# authenticate (scram) with or without TLS, as against a managed database.
local   all          all                      trust
local   replication  all                      trust
host    replication  postgres  127.0.0.1/32   trust
host    all          postgres  127.0.0.1/32   trust
hostssl {APP_DB}     {APP_USER}  127.0.0.1/32   scram-sha-256
host    {APP_DB}     {APP_USER}  127.0.0.1/32   scram-sha-256
"""


def pg_up(directory: pathlib.Path, pki: dict, ports: tuple[int, int]) -> dict:
    """initdb + start the primary, create rpo/app, basebackup the standby, wait for streaming."""
    p = _pg_paths(directory)
    shutil.rmtree(p["base"], ignore_errors=True)
    _make_owned_dir(p["base"], "postgres")
    _ensure_traversable(p["base"], "postgres")
    for d in ("run", "log"):
        _make_owned_dir(p[d], "postgres")
    tls = _install_tls_copy(pki, p["tls"], "postgres")
    primary_port, replica_port = ports

    _run([PG_BIN / "initdb", "-D", p["primary"], "-U", "postgres", "--auth=trust",
          "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
         user="postgres", cwd=p["base"])
    _pg_write_config(p["primary"], primary_port, p["run"], tls)
    (p["primary"] / "pg_hba.conf").write_text(PG_HBA)
    _pg_ctl(directory, "primary", "start")

    # Created before the basebackup so the standby starts with them (it cannot create them).
    pg_psql(primary_port, f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
    pg_psql(primary_port, f"CREATE DATABASE {APP_DB} OWNER {APP_USER}")
    # pg_monitor lets the agent's `check` read pg_stat_replication / replay positions.
    pg_psql(primary_port, f"GRANT pg_monitor TO {APP_USER}")

    _run([PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", primary_port, "-U", "postgres",
          "-D", p["replica"], "-R", "-X", "stream", "-c", "fast", "--no-sync"],
         user="postgres", cwd=p["base"])
    with open(p["replica"] / "postgresql.conf", "a") as f:
        f.write(f"port = {replica_port}\n")
    _pg_ctl(directory, "replica", "start")
    _wait(lambda: pg_psql(primary_port, "SELECT count(*) FROM pg_stat_replication "
                                        "WHERE state = 'streaming'") == "1",
          30, "PostgreSQL standby did not start streaming")
    return {"primary_port": primary_port, "replica_port": replica_port,
            "primary_pid": _read_pid(p["primary"] / "postmaster.pid"),
            "replica_pid": _read_pid(p["replica"] / "postmaster.pid")}


def pg_down(directory: pathlib.Path) -> None:
    """Fast shutdown (SIGINT) of both servers, SIGKILL of the group if one hangs."""
    p = _pg_paths(directory)
    for role in ("replica", "primary"):
        _terminate(_read_pid(p[role] / "postmaster.pid"), signal.SIGINT, grace=10)


def pg_fault(directory: pathlib.Path, state: dict, argv: list[str]) -> str:
    """postgres delay DUR | stall | resume | promote | restart|stop|start primary|replica."""
    if not argv:
        raise ValueError("postgres fault: expected delay|stall|resume|promote|restart|stop|start")
    action, rest = argv[0], argv[1:]
    replica_port = state["replica_port"]
    if action == "delay":
        ms = parse_duration_ms(_one(rest, "postgres delay DURATION"))
        if ms:
            pg_psql(replica_port, f"ALTER SYSTEM SET recovery_min_apply_delay = '{ms}ms'")
        else:
            pg_psql(replica_port, "ALTER SYSTEM RESET recovery_min_apply_delay")
        pg_psql(replica_port, "SELECT pg_reload_conf()")
        return f"postgres: standby applies commits {ms} ms after the primary committed them"
    if action == "stall":
        pg_psql(replica_port, "SELECT pg_wal_replay_pause()")
        return "postgres: standby replay paused (WAL still received; rows stop appearing)"
    if action == "resume":
        pg_psql(replica_port, "SELECT pg_wal_replay_resume()")
        return "postgres: standby replay resumed"
    if action == "promote":
        _pg_ctl(directory, "replica", "promote")
        return ("postgres: standby promoted and writable; the old primary still runs and "
                "accepts writes (split brain) until `postgres stop primary`")
    if action in ("restart", "stop", "start"):
        role = _role(rest, "postgres")
        if action == "restart":
            _pg_ctl(directory, role, "restart", "-m", "fast")
        elif action == "stop":
            _pg_ctl(directory, role, "stop", "-m", "fast")
        else:
            _pg_ctl(directory, role, "start")
        port = state[f"{role}_port"]
        return f"postgres: {role} (127.0.0.1:{port}) {action}{'ed' if action != 'stop' else 'ped'}"
    raise ValueError(f"postgres fault: unknown action {action!r}")


# --------------------------------------------------------------------------- MariaDB

def _my_paths(directory: pathlib.Path) -> dict:
    base = directory / "mysql"
    return {"base": base, "primary": base / "primary", "replica": base / "replica",
            "run": base / "run", "log": base / "log", "tls": base / "tls"}


def _my_socket(directory: pathlib.Path, role: str) -> pathlib.Path:
    return _my_paths(directory)["run"] / f"{role}.sock"


def _my_pidfile(directory: pathlib.Path, role: str) -> pathlib.Path:
    return _my_paths(directory)["run"] / f"{role}.pid"


def my_sql(directory: pathlib.Path, role: str, sql: str, *, timeout=30, check=True) -> str:
    """Run SQL as MariaDB root over the unix socket (root@localhost authenticates by uid)."""
    res = _run(["mariadb", "--no-defaults", "-S", _my_socket(directory, role), "-u", "root",
                "-N", "-B", "--connect-timeout=5", "-e", sql], timeout=timeout, check=check)
    return res.stdout.strip()


def _my_write_config(directory: pathlib.Path, role: str, port: int, server_id: int,
                     tls: dict) -> pathlib.Path:
    p = _my_paths(directory)
    cnf = p["base"] / f"{role}.cnf"
    replica_only = "read-only = 1\n" if role == "replica" else ""
    cnf.write_text(f"""\
# rpo-agent lab MariaDB {role} (tests/lab/lab_sql.py)
[mysqld]
user = mysql
datadir = {p[role]}
socket = {_my_socket(directory, role)}
pid-file = {_my_pidfile(directory, role)}
log-error = {p['log'] / (role + '.err')}
bind-address = 127.0.0.1
port = {port}
server-id = {server_id}
log-bin = mariadb-bin
relay-log = relay-bin
log-slave-updates = 1
binlog-format = ROW
gtid-strict-mode = 1
skip-name-resolve = 1
{replica_only}# A restarted peer is noticed quickly (heartbeat = half of this).
slave-net-timeout = 10
# lab only: durability is not what is measured; keep the machine responsive
innodb-flush-log-at-trx-commit = 2
sync-binlog = 0
innodb-buffer-pool-size = 64M
performance-schema = 0
ssl-ca = {tls['ca']}
ssl-cert = {tls['cert']}
ssl-key = {tls['key']}
""")
    return cnf


def _my_start(directory: pathlib.Path, role: str) -> int:
    """Start mariadbd detached (own session), wait until it answers on its socket."""
    p = _my_paths(directory)
    cnf = p["base"] / f"{role}.cnf"
    with open(p["log"] / f"{role}.out", "ab") as out:
        proc = subprocess.Popen([MARIADBD, f"--defaults-file={cnf}"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True,
                                cwd=p["base"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd {role} exited ({proc.returncode}); see "
                               f"{p['log'] / (role + '.err')}:\n{_tail(p['log'] / (role + '.err'))}")
        if my_sql(directory, role, "SELECT 1", check=False, timeout=10) == "1":
            return proc.pid
        time.sleep(0.05)
    raise RuntimeError(f"mariadbd {role} did not become ready in 60 s")


def _my_stop(directory: pathlib.Path, role: str) -> None:
    """Graceful shutdown by SIGTERM (what mariadb-admin shutdown does), KILL after 15 s."""
    _terminate(_read_pid(_my_pidfile(directory, role)), signal.SIGTERM, grace=15)


def _my_change_master(directory: pathlib.Path, primary_port: int) -> None:
    my_sql(directory, "replica", f"""
        SET GLOBAL gtid_slave_pos = '';
        CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary_port},
            MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}',
            MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;
        START SLAVE;""")


def _my_slave_status(directory: pathlib.Path) -> dict:
    """SHOW SLAVE STATUS as a dict ({} when the server is no replica)."""
    out = _run(["mariadb", "--no-defaults", "-S", _my_socket(directory, "replica"), "-u", "root",
                "-E", "-e", "SHOW SLAVE STATUS"], timeout=10).stdout
    status = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("*"):
            k, v = line.split(":", 1)
            status[k.strip()] = v.strip()
    return status


def mysql_up(directory: pathlib.Path, pki: dict, ports: tuple[int, int]) -> dict:
    """Install one datadir, copy it for the replica, start both, wire GTID replication."""
    p = _my_paths(directory)
    shutil.rmtree(p["base"], ignore_errors=True)
    _make_owned_dir(p["base"], "mysql")
    _ensure_traversable(p["base"], "mysql")
    for d in ("run", "log"):
        _make_owned_dir(p[d], "mysql")
    tls = _install_tls_copy(pki, p["tls"], "mysql")
    primary_port, replica_port = ports

    # mariadb-install-db is the slow step (~1 s warm); the replica gets a copy of the fresh
    # datadir (MariaDB has no per-server UUID file, so a copy is a valid new server).
    _run(["mariadb-install-db", "--no-defaults", f"--datadir={p['primary']}", "--user=mysql",
          "--auth-root-authentication-method=socket", "--skip-test-db",
          "--skip-name-resolve"], cwd=p["base"], timeout=120)
    shutil.copytree(p["primary"], p["replica"], symlinks=True)
    _run(["chown", "-R", "mysql:mysql", p["replica"]])
    _my_write_config(directory, "primary", primary_port, 1, tls)
    _my_write_config(directory, "replica", replica_port, 2, tls)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        primary_pid, replica_pid = pool.map(lambda r: _my_start(directory, r),
                                            ("primary", "replica"))

    # Only on the primary: the replica gets them through the binlog, like an Aurora reader.
    my_sql(directory, "primary", f"""
        CREATE DATABASE {APP_DB};
        CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}';
        GRANT ALL ON {APP_DB}.* TO '{APP_USER}'@'%';
        GRANT SLAVE MONITOR, REPLICATION CLIENT ON *.* TO '{APP_USER}'@'%';
        CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}';
        GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1';""")
    _my_change_master(directory, primary_port)

    def replicating() -> bool:
        st = _my_slave_status(directory)
        return (st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes"
                and my_sql(directory, "replica", "SELECT COUNT(*) FROM information_schema."
                           f"SCHEMATA WHERE SCHEMA_NAME = '{APP_DB}'") == "1")
    _wait(replicating, 30, "MariaDB replica did not start replicating: "
                           f"{_my_slave_status(directory).get('Last_IO_Error', '')}")
    return {"primary_port": primary_port, "replica_port": replica_port,
            "primary_pid": primary_pid, "replica_pid": replica_pid}


def mysql_down(directory: pathlib.Path) -> None:
    for role in ("replica", "primary"):
        _my_stop(directory, role)


def mysql_fault(directory: pathlib.Path, state: dict, argv: list[str]) -> str:
    """mysql delay DUR | stall | resume | promote | restart|stop|start primary|replica."""
    if not argv:
        raise ValueError("mysql fault: expected delay|stall|resume|promote|restart|stop|start")
    action, rest = argv[0], argv[1:]
    if action == "delay":
        ms = parse_duration_ms(_one(rest, "mysql delay DURATION"))
        seconds = math.ceil(ms / 1000)  # MASTER_DELAY has whole-second resolution
        my_sql(directory, "replica",
               f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {seconds}; START SLAVE;")
        return f"mysql: replica applies events {seconds} s after the primary wrote them"
    if action == "stall":
        my_sql(directory, "replica", "STOP SLAVE SQL_THREAD")
        return "mysql: replica SQL thread stopped (binlog still received; rows stop appearing)"
    if action == "resume":
        my_sql(directory, "replica", "START SLAVE SQL_THREAD")
        return "mysql: replica SQL thread started"
    if action == "promote":
        old_primary = "left read-only"
        if _alive(_read_pid(_my_pidfile(directory, "primary"))):
            my_sql(directory, "primary", "SET GLOBAL read_only = 1")
        else:
            old_primary = "was not running"
        my_sql(directory, "replica", "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")
        return (f"mysql: replica promoted and writable; old primary {old_primary} "
                "(managed switchover)")
    if action in ("restart", "stop", "start"):
        role = _role(rest, "mysql")
        if action in ("restart", "stop"):
            _my_stop(directory, role)
        if action in ("restart", "start"):
            if _alive(_read_pid(_my_pidfile(directory, role))):
                raise RuntimeError(f"mysql {role} already runs")
            _my_start(directory, role)
        port = state[f"{role}_port"]
        return f"mysql: {role} (127.0.0.1:{port}) {action}{'ed' if action != 'stop' else 'ped'}"
    raise ValueError(f"mysql fault: unknown action {action!r}")


# --------------------------------------------------------------------------- shared helpers

def _wait(predicate, timeout: float, message: str, interval=0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except RuntimeError:
            pass  # server not reachable yet
        time.sleep(interval)
    raise RuntimeError(message)


def _one(rest: list[str], usage: str) -> str:
    if len(rest) != 1:
        raise ValueError(f"usage: {usage}")
    return rest[0]


def _role(rest: list[str], service: str) -> str:
    if len(rest) != 1 or rest[0] not in ("primary", "replica"):
        raise ValueError(f"usage: {service} restart|stop|start primary|replica")
    return rest[0]


def _tail(path: pathlib.Path, n=20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _refuse_if_running(directory: pathlib.Path) -> None:
    """up() wipes DIR/pg and DIR/mysql, so it must not run over a live lab (nor stop it)."""
    pidfiles = [_pg_paths(directory)[r] / "postmaster.pid" for r in ("primary", "replica")]
    pidfiles += [_my_pidfile(directory, r) for r in ("primary", "replica")]
    running = [str(f) for f in pidfiles if _alive(_read_pid(f))]
    if running:
        raise RuntimeError(f"SQL servers already run in {directory} ({', '.join(running)}); "
                           "run down first")


def _ports_from_config(directory: pathlib.Path, kind: str) -> dict:
    """Recover the ports from the servers' own config files when the caller lost `state`."""
    ports = {}
    for role in ("primary", "replica"):
        if kind == "pg":
            text = (_pg_paths(directory)[role] / "postgresql.conf").read_text()
        else:
            text = (_my_paths(directory)["base"] / f"{role}.cnf").read_text()
        found = re.findall(r"^port\s*=\s*(\d+)", text, re.M)
        if not found:
            raise RuntimeError(f"no port in the {role} config under {directory}; is the lab up?")
        ports[f"{role}_port"] = int(found[-1])  # the last setting wins, as in the servers
    return ports


def _check_socket_room(directory: pathlib.Path) -> None:
    longest = max(len(str(_pg_paths(directory)["run"])), len(str(_my_paths(directory)["run"])))
    if longest > MAX_SOCKET_DIR_LEN:
        raise RuntimeError(f"lab dir {directory} is too long for unix sockets "
                           f"(keep DIR under ~{MAX_SOCKET_DIR_LEN - 10} characters)")


# --------------------------------------------------------------------------- component API

def env_for(directory: pathlib.Path, ca: pathlib.Path, pg: dict, my: dict) -> dict:
    """The keys written to DIR/lab.env."""
    cred = f"{APP_USER}:{APP_PASSWORD}"
    env = {"PG_BIN": str(PG_BIN), "LAB_CA_BUNDLE": str(ca)}
    for role, key in (("primary", "PRIMARY"), ("replica", "REPLICA")):
        pport, mport = pg[f"{role}_port"], my[f"{role}_port"]
        env[f"PG_{key}_PORT"] = str(pport)
        env[f"PG_{key}_URL"] = f"postgres://{cred}@127.0.0.1:{pport}/{APP_DB}?sslmode=disable"
        env[f"PG_{key}_TLS_URL"] = (f"postgres://{cred}@localhost:{pport}/{APP_DB}"
                                    f"?sslmode=verify-full&sslrootcert={ca}")
        env[f"MYSQL_{key}_PORT"] = str(mport)
        env[f"MYSQL_{key}_URL"] = f"mysql://{cred}@127.0.0.1:{mport}/{APP_DB}?ssl-mode=DISABLED"
        env[f"MYSQL_{key}_TLS_URL"] = (f"mysql://{cred}@localhost:{mport}/{APP_DB}"
                                       f"?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")
    return env


def up(dir: pathlib.Path, env: dict, args=None) -> dict:  # noqa: A002 (labctl's contract)
    """Start both pairs (in parallel) under DIR; return lab.env keys plus state (ports, pids)."""
    directory = pathlib.Path(dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _check_socket_room(directory)
    _refuse_if_running(directory)
    ensure_packages()
    pki = ensure_pki(directory)
    pg_ports, my_ports = (lambda p: ((p[0], p[1]), (p[2], p[3])))(free_ports(4))

    def timed(fn, *a):
        t0 = time.monotonic()
        result = fn(*a)
        result["up_seconds"] = round(time.monotonic() - t0, 3)
        return result

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = {"postgres": pool.submit(timed, pg_up, directory, pki, pg_ports),
                "mysql": pool.submit(timed, mysql_up, directory, pki, my_ports)}
        concurrent.futures.wait(futs.values())
    errors = [f"{name}: {f.exception()}" for name, f in futs.items() if f.exception()]
    if errors:
        down(directory, {})  # never leave half a lab running
        raise RuntimeError("lab_sql up failed:\n" + "\n".join(errors))
    pg, my = futs["postgres"].result(), futs["mysql"].result()
    result = env_for(directory, pki["ca"], pg, my)
    # labctl keeps this whole dict as the component's state (UPPER_CASE keys become lab.env,
    # the rest is state; `pids` is its safety net and what `lab status` shows).
    result.update({"postgres": pg, "mysql": my})
    _refresh_pids(directory, result)
    return result


def _state_of(state: dict | None) -> dict:
    """Accept labctl's flat component dict, or one nested under `_state` (older contract)."""
    state = state or {}
    return state.get("_state", state)


def _refresh_pids(directory: pathlib.Path, state: dict) -> None:
    """Record the servers' current PIDs (faults restart them) where labctl looks for them."""
    pidfiles = {"postgres": [_pg_paths(directory)[r] / "postmaster.pid" for r in ("primary", "replica")],
                "mysql": [_my_pidfile(directory, r) for r in ("primary", "replica")]}
    pids = []
    for service, files in pidfiles.items():
        for role, f in zip(("primary", "replica"), files):
            pid = _read_pid(f) if _alive(_read_pid(f)) else None
            if isinstance(state.get(service), dict):
                state[service][f"{role}_pid"] = pid
            if pid:
                pids.append(pid)
    state["pids"] = pids


def down(dir: pathlib.Path, state: dict | None = None) -> None:  # noqa: A002
    """Stop every server under DIR (pid files are the truth, so `state` may be empty)."""
    directory = pathlib.Path(dir).resolve()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda fn: fn(directory), (pg_down, mysql_down)))


def fault(dir: pathlib.Path, state: dict, argv: list[str]) -> str:  # noqa: A002
    """Dispatch `postgres …` / `mysql …` faults; returns a one-line description."""
    directory = pathlib.Path(dir).resolve()
    if not argv:
        raise ValueError(f"fault: expected one of {FAULT_SERVICES}")
    service, rest = argv[0], list(argv[1:])
    st = _state_of(state)
    try:
        if service in ("postgres", "postgresql", "pg"):
            return pg_fault(directory, st.get("postgres") or _ports_from_config(directory, "pg"),
                            rest)
        if service in ("mysql", "mariadb"):
            return mysql_fault(directory, st.get("mysql") or _ports_from_config(directory, "my"),
                               rest)
    finally:
        if state is not None:
            _refresh_pids(directory, st)  # labctl saves the dict it passed in
    raise ValueError(f"fault: unknown service {service!r}; expected one of {FAULT_SERVICES}")


def status(dir: pathlib.Path, state: dict) -> str:  # noqa: A002
    """Two lines for `lab status`: is each replica replicating, and how far behind."""
    directory = pathlib.Path(dir).resolve()
    st = _state_of(state)
    lines = []
    try:
        pg = st.get("postgres") or _ports_from_config(directory, "pg")
        # pg_is_wal_replay_paused() raises outside recovery, hence the CASE.
        rec = pg_psql(pg["replica_port"], "SELECT pg_is_in_recovery(), CASE WHEN "
                      "pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END",
                      timeout=5)
        lines.append(f"postgres: replica {'standby' if rec.startswith('t') else 'PROMOTED'}"
                     f"{', replay paused' if rec.endswith('|t') else ''}")
    except Exception as exc:  # noqa: BLE001 — status must not fail on a stopped server
        lines.append(f"postgres: {exc}".splitlines()[0])
    try:
        s = _my_slave_status(directory)
        lines.append("mysql: replica " + (
            f"IO {s.get('Slave_IO_Running')}, SQL {s.get('Slave_SQL_Running')}, "
            f"delay {s.get('SQL_Delay')} s, behind {s.get('Seconds_Behind_Master')} s"
            if s else "not replicating (promoted?)"))
    except Exception as exc:  # noqa: BLE001
        lines.append(f"mysql: {exc}".splitlines()[0])
    return "\n".join(lines)
