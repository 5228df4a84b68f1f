"""Monitoring component of the two-region lab: Prometheus + Alertmanager + a webhook receiver.

Why this exists: the shipped rules (dashboards/rules/*.yml) must be shown to work end to end —
the agent's metrics scraped, rules evaluated, alerts routed by Alertmanager, notifications
delivered — with lab timings short enough for tests (a stall of a 10 s-objective target pages
within objective + 15 s). Everything binds 127.0.0.1 on free ports and lives under DIR:

    DIR/monitoring/prometheus.yml      scrape job "rpo-agent" (1 s) via file_sd targets.json, rules
    DIR/monitoring/targets.json        the agent's scrape address(es); rewrite it (or use
                                       `lab fault monitoring scrape ADDR`) and Prometheus follows
    DIR/monitoring/alertmanager.yml    one route to the webhook: group_wait/group_interval 1s
    DIR/monitoring/targets-tls.json    job "rpo-agent-tls": agents served with TLS + basic auth
                                       (`lab fault monitoring scrape-tls ADDR`), scraped over
                                       https with the lab CA and the lab's scrape credentials
    DIR/monitoring/agent-web.yml       a web_config for such an agent: the lab's agent certificate
                                       (DIR/pki/agent.crt, from the lab CA of lab_sql.ensure_pki)
                                       and the user `prometheus` (bcrypt of scrape-password)
    DIR/monitoring/prometheus-data/, alertmanager-data/, *.log
    DIR/alerts.jsonl                   one JSON line per notification (+ "lab_received_at")

Prometheus runs with evaluation_interval 1s and --rules.alert.resend-delay=1s (without it the
first alert reaches Alertmanager a minute late), Alertmanager with --cluster.listen-address=
(no gossip port). The rule files are read from the repository (dashboards/rules/), so
`lab fault monitoring reload` picks up edits.

Scrape address of the agent, first found: env RPO_AGENT_SCRAPE (lab.env so far, then the
process environment), args.scrape, `--scrape ADDR` in the extra args (`lab up ... -- --scrape
ADDR`), else 127.0.0.1:9464. Several addresses: comma-separated.

The packages `prometheus` and `prometheus-alertmanager` are installed with apt-get when their
binaries are missing (quiet when present).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
RULES_DIR = REPO / "dashboards" / "rules"
WEBHOOK = HERE / "monitoring" / "webhook_receiver.py"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from labctl import free_port, spawn, stop_pids, wait_http  # noqa: E402

FAULT_SERVICES = ["monitoring"]
JOB = "rpo-agent"
TLS_JOB = "rpo-agent-tls"
SCRAPE_USER = "prometheus"
DEFAULT_SCRAPE = "127.0.0.1:9464"
PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
            "promtool": "prometheus", "amtool": "prometheus-alertmanager"}
READY_TIMEOUT = 60.0
INTERVAL = "1s"


# ---- packages ----------------------------------------------------------------------------------

def ensure_packages() -> None:
    """apt-get install the Debian packages whose binaries are missing (idempotent, quiet)."""
    missing = sorted({pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {', '.join(missing)}: run `apt-get install {' '.join(missing)}` as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "install",
               "--no-install-recommends", *missing]
    r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode != 0 or any(shutil.which(b) is None for b in PACKAGES):
        # a fresh machine's package lists may be missing or stale
        subprocess.run(["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "update"], env=env,
                       capture_output=True, text=True)
        r = subprocess.run(install, env=env, capture_output=True, text=True)
    still = [b for b in PACKAGES if shutil.which(b) is None]
    if still:
        raise RuntimeError(f"apt-get install {' '.join(missing)} failed ({', '.join(still)} missing):\n"
                           + (r.stdout + r.stderr)[-2000:])


# ---- configuration ------------------------------------------------------------------------------

def scrape_targets(env: dict[str, str], args: Any) -> list[str]:
    value = env.get("RPO_AGENT_SCRAPE") or os.environ.get("RPO_AGENT_SCRAPE") or getattr(args, "scrape", None)
    extra = list(getattr(args, "extra", None) or [])
    for i, a in enumerate(extra):
        if a == "--scrape" and i + 1 < len(extra):
            value = value or extra[i + 1]
        elif a.startswith("--scrape="):
            value = value or a.split("=", 1)[1]
    return parse_targets(value or DEFAULT_SCRAPE)


def parse_targets(value: str) -> list[str]:
    out = []
    for t in value.split(","):
        t = t.strip()
        for prefix in ("http://", "https://"):
            if t.startswith(prefix):
                t = t[len(prefix):]
        t = t.split("/", 1)[0]
        if not t:
            continue
        host, sep, port = t.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"scrape address must be HOST:PORT, got {t!r}")
        out.append(t)
    if not out:
        raise ValueError("no scrape address given")
    return out


def write_targets(mdir: pathlib.Path, targets: list[str]) -> None:
    tmp = mdir / "targets.json.tmp"
    tmp.write_text(json.dumps([{"targets": targets, "labels": {}}], indent=1) + "\n")
    tmp.replace(mdir / "targets.json")  # atomic: Prometheus never reads half a file


def write_tls_targets(mdir: pathlib.Path, targets: list[str]) -> None:
    tmp = mdir / "targets-tls.json.tmp"
    tmp.write_text(json.dumps([{"targets": targets, "labels": {}}] if targets else [], indent=1) + "\n")
    tmp.replace(mdir / "targets-tls.json")


def bcrypt_hash(password: str, cost: int = 10) -> str:
    """A bcrypt hash ($2b$) of password: Python's crypt (libxcrypt) where it exists, else htpasswd."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** cost))
        if h and h.startswith("$2"):
            return h
    except ImportError:
        pass
    if shutil.which("htpasswd") is None:
        raise RuntimeError("no bcrypt: Python has no crypt module and htpasswd is missing; "
                           "run `apt-get install apache2-utils`")
    r = subprocess.run(["htpasswd", "-niBC", str(cost), SCRAPE_USER], input=password + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().split(":", 1)[1]


def ensure_agent_tls(lab_dir: pathlib.Path, mdir: pathlib.Path) -> dict[str, str]:
    """The lab CA (shared with lab_sql), a certificate for agents (127.0.0.1/localhost), the
    scrape password and a web_config for an agent that Prometheus's TLS job can scrape."""
    import fcntl
    import secrets
    from lab_sql import ensure_pki  # the CA lives there; importing starts nothing
    pki = ensure_pki(lab_dir)
    d = pathlib.Path(pki["ca"]).parent
    crt, key = d / "agent.crt", d / "agent.key"
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (crt.exists() and key.exists()):
            ext = d / "agent.ext"
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
            _check(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(d / "agent.csr"), "-subj", "/CN=localhost"])
            _check(["openssl", "x509", "-req", "-in", str(d / "agent.csr"), "-CA", str(pki["ca"]),
                    "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "825", "-out", str(crt),
                    "-extfile", str(ext)])
            key.chmod(0o600)
    password = secrets.token_urlsafe(18)
    pw_file = mdir / "scrape-password"
    pw_file.write_text(password)
    pw_file.chmod(0o600)
    web = mdir / "agent-web.yml"
    web.write_text("# written by tests/lab/lab_monitoring.py: what an agent scraped by job "
                   f"{TLS_JOB} needs\n" + json.dumps({
                       "tls_server_config": {"cert_file": str(crt), "key_file": str(key)},
                       "basic_auth_users": {SCRAPE_USER: bcrypt_hash(password)},
                   }, indent=1) + "\n")
    return {"AGENT_WEB_CONFIG": str(web), "AGENT_TLS_CA": str(pki["ca"]),
            "AGENT_TLS_CERT": str(crt), "AGENT_TLS_KEY": str(key),
            "AGENT_SCRAPE_USER": SCRAPE_USER, "AGENT_SCRAPE_PASSWORD_FILE": str(pw_file),
            "PROMETHEUS_TLS_TARGETS_FILE": str(mdir / "targets-tls.json")}


def write_prometheus_config(mdir: pathlib.Path, am_port: int, tls: dict[str, str] | None = None) -> pathlib.Path:
    rules = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    if not rules:
        raise RuntimeError(f"no rule files in {RULES_DIR}")
    cfg = {
        "global": {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL, "evaluation_interval": INTERVAL,
                   "external_labels": {"lab": "rpo-agent"}},
        "rule_files": rules,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{
            "job_name": JOB,
            "file_sd_configs": [{"files": [str(mdir / "targets.json")], "refresh_interval": "1s"}],
        }],
    }
    if tls:
        cfg["scrape_configs"].append({
            "job_name": TLS_JOB,
            "scheme": "https",
            "tls_config": {"ca_file": tls["AGENT_TLS_CA"]},
            "basic_auth": {"username": tls["AGENT_SCRAPE_USER"],
                           "password_file": tls["AGENT_SCRAPE_PASSWORD_FILE"]},
            "file_sd_configs": [{"files": [tls["PROMETHEUS_TLS_TARGETS_FILE"]], "refresh_interval": "1s"}],
        })
    path = mdir / "prometheus.yml"
    path.write_text("# written by tests/lab/lab_monitoring.py (JSON is YAML)\n" + json.dumps(cfg, indent=1) + "\n")
    return path


def write_alertmanager_config(mdir: pathlib.Path, webhook_port: int) -> pathlib.Path:
    cfg = {
        "route": {"receiver": "lab-webhook",
                  "group_by": ["alertname", "severity", "instance", "target", "replica_region"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "lab-webhook", "webhook_configs": [
            {"url": f"http://127.0.0.1:{webhook_port}/alerts", "send_resolved": True, "max_alerts": 0}]}],
    }
    path = mdir / "alertmanager.yml"
    path.write_text("# written by tests/lab/lab_monitoring.py (JSON is YAML)\n" + json.dumps(cfg, indent=1) + "\n")
    return path


def _check(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")


# ---- component contract ---------------------------------------------------------------------------

def up(lab_dir: pathlib.Path, env: dict[str, str], args: Any) -> dict[str, Any]:
    lab_dir = pathlib.Path(lab_dir).resolve()
    ensure_packages()
    targets = scrape_targets(env, args)
    mdir = lab_dir / "monitoring"
    mdir.mkdir(parents=True, exist_ok=True)
    alerts_log = lab_dir / "alerts.jsonl"
    alerts_log.touch()
    write_targets(mdir, targets)
    write_tls_targets(mdir, [])
    tls = ensure_agent_tls(lab_dir, mdir)

    state: dict[str, Any] = {"pids": [], "scrape": targets}
    try:
        # 1. webhook receiver
        wh_port = free_port()
        wh_log = mdir / "webhook.log"
        pid = spawn([sys.executable, str(WEBHOOK), "--port", str(wh_port), "--out", str(alerts_log)], wh_log)
        state["pids"].append(pid)
        state["webhook_pid"], state["webhook_port"] = pid, wh_port

        # 2. Alertmanager
        am_port = free_port()
        am_cfg = write_alertmanager_config(mdir, wh_port)
        _check(["amtool", "check-config", str(am_cfg)])
        am_log = mdir / "alertmanager.log"
        pid = spawn(["prometheus-alertmanager", f"--config.file={am_cfg}",
                     f"--storage.path={mdir / 'alertmanager-data'}",
                     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                     f"--web.external-url=http://127.0.0.1:{am_port}/"], am_log)
        state["pids"].append(pid)
        state["alertmanager_pid"], state["alertmanager_port"] = pid, am_port

        # 3. Prometheus
        prom_port = free_port()
        prom_cfg = write_prometheus_config(mdir, am_port, tls)
        _check(["promtool", "check", "config", str(prom_cfg)])
        prom_log = mdir / "prometheus.log"
        pid = spawn(["prometheus", f"--config.file={prom_cfg}",
                     f"--storage.tsdb.path={mdir / 'prometheus-data'}",
                     "--storage.tsdb.retention.time=2d",
                     f"--web.listen-address=127.0.0.1:{prom_port}",
                     f"--web.external-url=http://127.0.0.1:{prom_port}/",
                     "--web.enable-lifecycle",
                     "--rules.alert.resend-delay=1s"], prom_log)
        state["pids"].append(pid)
        state["prometheus_pid"], state["prometheus_port"] = pid, prom_port

        wait_http(f"http://127.0.0.1:{wh_port}/healthz", READY_TIMEOUT, state["webhook_pid"], wh_log)
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", READY_TIMEOUT, state["alertmanager_pid"], am_log)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", READY_TIMEOUT, state["prometheus_pid"], prom_log)
    except BaseException:
        down(lab_dir, state)
        raise

    state.update({
        "PROMETHEUS_URL": f"http://127.0.0.1:{prom_port}",
        "ALERTMANAGER_URL": f"http://127.0.0.1:{am_port}",
        "ALERT_WEBHOOK_LOG": str(alerts_log),
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{wh_port}/alerts",
        "PROMETHEUS_TARGETS_FILE": str(mdir / "targets.json"),
        **tls,
    })
    return state


def down(lab_dir: pathlib.Path, state: dict[str, Any]) -> None:
    # Prometheus first (it would otherwise keep sending to a dead Alertmanager), webhook last.
    order = [state.get("prometheus_pid"), state.get("alertmanager_pid"), state.get("webhook_pid")]
    pids = [p for p in order if p] + [p for p in state.get("pids", []) if p not in order]
    stop_pids(pids, match=str(pathlib.Path(lab_dir).resolve()))


def _post(url: str, timeout: float = 10) -> None:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()


def _get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


FAULT_USAGE = ("monitoring scrape HOST:PORT[,HOST:PORT...] | monitoring scrape-tls HOST:PORT[,...] | "
               "monitoring reload | monitoring clear-alerts")


def fault(lab_dir: pathlib.Path, state: dict[str, Any], argv: list[str]) -> str:
    """Controls rather than faults:
    scrape ADDR[,ADDR]  point the rpo-agent scrape job at the agent (file_sd; no restart)
    reload              re-read the rule files and both configs (POST /-/reload)
    clear-alerts        truncate DIR/alerts.jsonl
    scrape-tls ADDR[,ADDR]  point job rpo-agent-tls (https, lab CA, basic auth) at agents
                        that run with AGENT_WEB_CONFIG
    """
    lab_dir = pathlib.Path(lab_dir).resolve()
    args = argv[1:] if argv and argv[0] == "monitoring" else argv
    if not args:
        raise ValueError(f"usage: {FAULT_USAGE}")
    verb, rest = args[0], args[1:]
    if verb == "scrape":
        if len(rest) != 1:
            raise ValueError("usage: monitoring scrape HOST:PORT[,HOST:PORT...]")
        targets = parse_targets(rest[0])
        write_targets(lab_dir / "monitoring", targets)
        state["scrape"] = targets
        return f"monitoring: job {JOB} now scrapes {', '.join(targets)}"
    if verb == "scrape-tls":
        if len(rest) != 1:
            raise ValueError("usage: monitoring scrape-tls HOST:PORT[,HOST:PORT...]")
        targets = parse_targets(rest[0])
        write_tls_targets(lab_dir / "monitoring", targets)
        state["scrape_tls"] = targets
        return f"monitoring: job {TLS_JOB} now scrapes {', '.join(targets)} over https with basic auth"
    if verb == "reload":
        _post(f"{state['PROMETHEUS_URL']}/-/reload")
        _post(f"{state['ALERTMANAGER_URL']}/-/reload")
        return "monitoring: Prometheus and Alertmanager reloaded"
    if verb == "clear-alerts":
        with open(state["ALERT_WEBHOOK_LOG"], "r+b") as f:
            f.truncate(0)
        return f"monitoring: {state['ALERT_WEBHOOK_LOG']} emptied"
    raise ValueError(f"unknown monitoring command {verb!r}; usage: {FAULT_USAGE}")


def status(lab_dir: pathlib.Path, state: dict[str, Any]) -> str:
    lines = [f"prometheus {state.get('PROMETHEUS_URL')}  alertmanager {state.get('ALERTMANAGER_URL')}  "
             f"webhook log {state.get('ALERT_WEBHOOK_LOG')}"]
    try:
        t = _get_json(f"{state['PROMETHEUS_URL']}/api/v1/targets?state=active")
        for tgt in t["data"]["activeTargets"]:
            lines.append(f"scrape {tgt['labels'].get('job')} {tgt['scrapeUrl']}: {tgt['health']}"
                         + (f" ({tgt['lastError']})" if tgt.get("lastError") else ""))
        a = _get_json(f"{state['PROMETHEUS_URL']}/api/v1/alerts")
        firing = [f"{x['labels']['alertname']}/{x['labels'].get('severity', '')}/{x['labels'].get('target', '')}"
                  f"={x['state']}" for x in a["data"]["alerts"]]
        lines.append("alerts: " + (", ".join(firing) if firing else "none"))
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        lines.append(f"prometheus API unavailable: {e}")
    try:
        with open(state["ALERT_WEBHOOK_LOG"], "rb") as f:
            lines.append(f"notifications received: {sum(1 for _ in f)}")
    except (OSError, KeyError):
        pass
    return "\n".join(lines)


if __name__ == "__main__":  # manual use: python3 lab_monitoring.py up|down DIR [SCRAPE]
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["up", "down", "status"])
    p.add_argument("dir", type=pathlib.Path)
    p.add_argument("--scrape")
    a = p.parse_args()
    d = a.dir.resolve()
    if a.cmd == "up":
        d.mkdir(parents=True, exist_ok=True)
        st = up(d, {}, a)
        (d / "monitoring-state.json").write_text(json.dumps(st, indent=1))
        print(json.dumps({k: v for k, v in st.items() if k.isupper()}, indent=1))
    else:
        st = json.loads((d / "monitoring-state.json").read_text())
        print(status(d, st) if a.cmd == "status" else down(d, st) or "stopped")
