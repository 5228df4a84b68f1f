"""Lab component `aws`: the AWS stand-in (tests/lab/awsserver), one process for every region.

Why it exists: it is the plug between `lab` (labctl.py) and the AWS stand-in: it picks the
ports, starts the server and waits until it answers, says what goes into lab.env, stops it, and
routes `lab fault ... dynamodb|s3|aws ...`: replication/API faults go to the server's control
API; `aws kill` / `aws start` / `aws restart` simulate an outage of the whole AWS endpoint
(SIGKILL, then a new process on the SAME ports that replays its control-plane journal);
`aws region-down REGION [--refuse]` / `aws region-up REGION` (one region not answering) go to
the control API, or straight into DIR/aws-faults.json while the server is killed (the next
`aws start` loads them).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from labctl import free_port, pid_alive, spawn, stop_pids, wait_http

FAULT_SERVICES = ["dynamodb", "s3", "aws"]

HERE = Path(__file__).resolve().parent
SOURCE_REGION = "ap-northeast-1"
REPLICA_REGION = "ap-northeast-3"
READY_TIMEOUT = 30.0


def _start(lab_dir: Path, port: int, control_port: int, quiet: bool, request_log: str | None = None) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, "-m", "awsserver.server",
        "--dir", str(lab_dir), "--port", str(port), "--control-port", str(control_port),
    ]
    if quiet:
        cmd.append("--quiet")
    if request_log:
        cmd += ["--request-log", request_log]
    log = lab_dir / "aws.log"
    pid = spawn(cmd, log, env=env, cwd=HERE)
    try:
        wait_http(f"http://127.0.0.1:{control_port}/healthz", READY_TIMEOUT, pid=pid, log_path=log)
    except BaseException:
        stop_pids([pid])
        raise
    return pid


# What a server run leaves in DIR. A new `lab up` starts from nothing (only `aws start`, the
# simulated recovery, replays the journal and keeps faults and ground truth).
_RUN_STATE = ("aws-journal.jsonl", "aws-faults.json", "ground-truth.jsonl")


def _request_log(extra: list[str]) -> str | None:
    """`--aws-request-log PATH` (or `=PATH`) in EXTRA: the server's request log
    (awsserver/request_log.py), made absolute (the server runs in tests/lab/)."""
    for i, a in enumerate(extra):
        if a == "--aws-request-log" and i + 1 < len(extra):
            return str(Path(extra[i + 1]).resolve())
        if a.startswith("--aws-request-log="):
            return str(Path(a.split("=", 1)[1]).resolve())
    return None


def up(lab_dir: Path, env: dict[str, str], args: Any) -> dict[str, Any]:
    quiet = "--aws-quiet" in getattr(args, "extra", [])
    request_log = _request_log(list(getattr(args, "extra", [])))
    for name in _RUN_STATE:
        (lab_dir / name).unlink(missing_ok=True)
    last_error: Exception | None = None
    for _ in range(3):  # a free port can be taken between the probe and the bind: retry
        port, control_port = free_port(), free_port()
        try:
            pid = _start(lab_dir, port, control_port, quiet, request_log)
            break
        except RuntimeError as e:
            last_error = e
    else:
        raise RuntimeError(f"aws server did not start: {last_error}")
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "lab",
        "AWS_SECRET_ACCESS_KEY": "lab",
        "AWS_REGION": SOURCE_REGION,
        "AWS_DEFAULT_REGION": SOURCE_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LAB_CONTROL_URL": f"http://127.0.0.1:{control_port}",
        "LAB_GROUND_TRUTH": str(lab_dir / "ground-truth.jsonl"),
        "LAB_AWS_LOG": str(lab_dir / "aws.log"),
        "LAB_SOURCE_REGION": SOURCE_REGION,
        "LAB_REPLICA_REGION": REPLICA_REGION,
        # state (not env): what down() and `aws start` need
        "pids": [pid],
        "port": port,
        "control_port": control_port,
        "quiet": quiet,
        "request_log": request_log,
    }


def down(lab_dir: Path, state: dict[str, Any]) -> None:
    stop_pids(list(state.get("pids", [])), match=str(lab_dir))


def _control(state: dict[str, Any], method: str, path: str, payload: Any = None) -> dict[str, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{state['control_port']}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def fault(lab_dir: Path, state: dict[str, Any], argv: list[str]) -> str:
    if argv[0] == "aws":
        return _process_fault(lab_dir, state, argv[1:])
    answer = _control(state, "POST", "/fault", {"argv": argv})
    if not answer.get("ok"):
        raise ValueError(answer.get("error", answer))
    return answer["message"]


def _process_fault(lab_dir: Path, state: dict[str, Any], argv: list[str]) -> str:
    verb = argv[0] if argv else ""
    pid = (state.get("pids") or [0])[0]
    if verb == "kill":
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.01)
        return f"aws: killed (PID {pid})"
    if verb in ("region-down", "region-up"):
        if pid and pid_alive(pid):
            answer = _control(state, "POST", "/fault", {"argv": ["aws", *argv]})
            if not answer.get("ok"):
                raise ValueError(answer.get("error", answer))
            return answer["message"]
        from awsserver.faults import FaultState  # stdlib only: no moto import here

        return FaultState(lab_dir / "aws-faults.json").apply_command(["aws", *argv]) + " (server not running: saved for `aws start`)"
    if verb in ("start", "restart"):
        if verb == "restart" and pid and pid_alive(pid):
            stop_pids([pid], match=str(lab_dir))
        if pid and pid_alive(pid):
            return f"aws: already running (PID {pid})"
        new = _start(lab_dir, state["port"], state["control_port"], state.get("quiet", False), state.get("request_log"))
        state["pids"] = [new]
        return f"aws: started on port {state['port']} (PID {new})"
    raise ValueError("usage: aws kill | aws start | aws restart | aws region-down REGION [--refuse] | aws region-up REGION")


def status(lab_dir: Path, state: dict[str, Any]) -> str:
    s = _control(state, "GET", "/status")
    lines = [f"AWS API http://127.0.0.1:{state['port']}, control http://127.0.0.1:{state['control_port']}"]
    for name, regions in s.get("dynamodb_global_tables", {}).items():
        lines.append(f"dynamodb global table {name}: {', '.join(regions)}")
    for b in s.get("s3_replication", []):
        lines.append(f"s3 replication {b}")
    for q in s.get("replication", []):
        lines.append(
            f"queue {q['service']} {q['name']} {q['source_region']}->{q['replica_region']}: "
            f"{q['queued']} queued, {q['applied']} applied{' (stalled)' if q['stalled'] else ''}"
            f"{''.join(f' (held: {r} down)' for r in q.get('region_down', []))}"
        )
    for r in s.get("regions_down", []):
        lines.append(
            f"region {r['region']} down ({'connections reset' if r['mode'] == 'refuse' else 'requests hang'}): "
            f"{r['hanging']} request(s) held now, {r['unanswered']} left unanswered"
        )
    for f in s.get("faults", []):
        lines.append(f"faults {f['service']} {f['name'] or '(global)'}: {json.dumps(f['faults'])}")
    for where, n in sorted(s.get("cloudwatch_published", {}).items()):
        lines.append(f"cloudwatch {where} ReplicationLatency: {n} datapoint(s) published")
    emf = s.get("logs_emf") or {}
    if emf.get("log_events"):
        why = ", ".join(f"{r} {n}" for r, n in sorted(emf.get("rejected", {}).items()))
        lines.append(
            f"logs: {emf['log_events']} event(s); EMF {emf['documents_extracted']} document(s) extracted "
            f"({emf['datapoints']} datapoint(s)), {emf['documents_rejected']} not extracted{f' ({why})' if why else ''}"
        )
    return "\n".join(lines)
