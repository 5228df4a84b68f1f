"""`tests/lab/lab`: start, inspect, fault and stop the two-region lab.

Why it exists: tests, benchmarks and the local demo all need the same lab, started the same
way, on free ports, with one file saying where everything is (DIR/lab.env, DIR/lab.json), and
one command that stops everything it started. The lab is made of pluggable *components*
(`lab_<name>.py` beside this file: aws, sql, monitoring); this file only orchestrates them.
The component contract is documented in README.md ("Components").

    lab up --dir DIR [--components aws,sql,monitoring] [--exit-with PID] [-- extra args]
    lab down --dir DIR
    lab status --dir DIR
    lab fault --dir DIR SERVICE ARGS...     (routed to the component owning SERVICE)
    lab selftest                            (test_awsserver.py)
    lab awslogs --dir DIR --group G --stream S [--region R] [--tee FILE]
                                            (stdin -> the lab's CloudWatch Logs: awslogs_forwarder.py)

The helpers below (free_port, spawn, wait_http, stop_pids, pid_alive) are for components too:
`from labctl import spawn, stop_pids`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Components start in this order (later ones get the env of earlier ones: monitoring may
# want to scrape what the others expose); unknown extra lab_*.py files come after.
PREFERRED_ORDER = ["aws", "sql", "monitoring", "redis", "redis-cluster"]
STOP_GRACE_SECONDS = 3.0


# ---- helpers for components ------------------------------------------------------------------

def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks; the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a detached process (own session, so a Ctrl-C or a dying caller does not take it
    down; `lab down` does), output appended to log_path. Returns its PID (= its process group)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own dead child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline_contains(pid: int, text: str) -> bool:
    """Guards against PID reuse: only signal a process whose command line names our lab."""
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the process and whatever it started
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_pids(pids: list[int], match: str | None = None, grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """TERM, then KILL whatever still runs after `grace` seconds. With `match`, processes whose
    command line does not contain it are left alone (their PID was reused). Returns the PIDs
    that were running."""
    running = [p for p in pids if p and pid_alive(p) and (match is None or cmdline_contains(p, match))]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in running):
        time.sleep(0.05)
    for pid in running:
        if pid_alive(pid):
            _signal(pid, signal.SIGKILL)
    return running


def wait_http(url: str, timeout: float, pid: int | None = None, log_path: Path | None = None) -> None:
    """Wait until url answers 2xx. Fails fast when `pid` dies (with the log's tail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if 200 <= r.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if pid is not None and not pid_alive(pid):
            raise RuntimeError(f"process {pid} exited before {url} answered{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:g}s{_tail(log_path)}")
        time.sleep(0.02)


def _tail(log_path: Path | None, lines: int = 20) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log_path}:\n" + "\n".join(text)


# ---- state files --------------------------------------------------------------------------------

def load_state(lab_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((lab_dir / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def save_state(lab_dir: Path, state: dict[str, Any]) -> None:
    # Rebuild the flat views (env, pids) from the components so they never disagree.
    env = {"LAB_DIR": str(lab_dir)}
    pids: dict[str, list[int]] = {}
    for name in state.get("order", []):
        comp = state["components"].get(name, {})
        env.update({k: str(v) for k, v in comp.items() if _is_env_key(k)})
        pids[name] = list(comp.get("pids", []))
    state["env"], state["pids"] = env, pids
    tmp = lab_dir / "lab.json.tmp"
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(lab_dir / "lab.json")
    lines = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    tmp = lab_dir / "lab.env.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(lab_dir / "lab.env")


def _is_env_key(key: str) -> bool:
    return key[:1].isupper() and all(c.isupper() or c.isdigit() or c == "_" for c in key)


def running_pids(state: dict[str, Any]) -> list[int]:
    return [p for comp in state.get("components", {}).values() for p in comp.get("pids", []) if pid_alive(p)]


# ---- components -------------------------------------------------------------------------------

def available_components() -> list[str]:
    found = sorted(p.stem[len("lab_"):].replace("_", "-") for p in HERE.glob("lab_*.py"))
    return [c for c in PREFERRED_ORDER if c in found] + [c for c in found if c not in PREFERRED_ORDER]


def import_component(name: str, required: bool):
    """The module lab_<name>, or None when it does not exist (yet) and was not asked for."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(f"lab_{name.replace('-', '_')}")
    except ModuleNotFoundError as e:
        if e.name == f"lab_{name.replace('-', '_')}" and not required:
            return None
        raise


# ---- commands -----------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    lab_dir = args.dir
    old = load_state(lab_dir)
    if old and running_pids(old):
        print(f"lab: a lab already runs in {lab_dir} (PIDs {running_pids(old)}); run `lab down --dir {lab_dir}` first", file=sys.stderr)
        return 1
    lab_dir.mkdir(parents=True, exist_ok=True)
    requested = [c for c in (args.components or "").split(",") if c] if args.components else None
    names = requested if requested is not None else available_components()
    state: dict[str, Any] = {"dir": str(lab_dir), "order": [], "components": {}, "watchdog_pid": None}
    env: dict[str, str] = {"LAB_DIR": str(lab_dir)}
    started = time.monotonic()
    try:
        for name in names:
            mod = import_component(name, required=requested is not None)
            if mod is None or (requested is None and not getattr(mod, "DEFAULT", True)):
                continue  # missing, or opt-in (DEFAULT = False) and not named in --components
            t0 = time.monotonic()
            result = mod.up(lab_dir, dict(env), args) or {}
            state["order"].append(name)
            state["components"][name] = result
            env.update({k: str(v) for k, v in result.items() if _is_env_key(k)})
            save_state(lab_dir, state)  # after each, so a failure later can still be cleaned up
            print(f"lab: {name} up in {time.monotonic() - t0:.2f}s", file=sys.stderr)
        if args.exit_with:
            state["watchdog_pid"] = spawn(
                [sys.executable, str(HERE / "labctl.py"), "_watchdog", "--dir", str(lab_dir), "--pid", str(args.exit_with)],
                lab_dir / "watchdog.log",
            )
        save_state(lab_dir, state)
    except BaseException as e:
        print(f"lab: up failed: {e}", file=sys.stderr)
        save_state(lab_dir, state)
        _down(lab_dir)
        return 1
    print(f"lab: ready in {time.monotonic() - started:.2f}s: {lab_dir / 'lab.env'}", file=sys.stderr)
    sys.stdout.write((lab_dir / "lab.env").read_text())
    return 0


def _down(lab_dir: Path) -> list[int]:
    state = load_state(lab_dir)
    if not state:
        return []
    stopped: list[int] = []
    watchdog = state.get("watchdog_pid")
    if watchdog and watchdog != os.getpid():
        stopped += stop_pids([watchdog], match="_watchdog")
    for name in reversed(state.get("order", [])):
        comp = state["components"].get(name, {})
        try:
            mod = import_component(name, required=False)
            if mod is not None:
                mod.down(lab_dir, comp)
        except Exception as e:
            print(f"lab: {name}: down failed ({e}); killing its PIDs", file=sys.stderr)
        # Safety net: whatever the component listed and still runs.
        stopped += stop_pids(list(comp.get("pids", [])), match=str(lab_dir))
    state["watchdog_pid"] = None
    save_state(lab_dir, state)
    return stopped


def cmd_down(args: argparse.Namespace) -> int:
    _down(args.dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state(args.dir)
    if not state:
        print(f"no lab in {args.dir}")
        return 0
    for name in state.get("order", []):
        comp = state["components"].get(name, {})
        pids = comp.get("pids", [])
        alive = [p for p in pids if pid_alive(p)]
        print(f"{name}: {'running' if alive and len(alive) == len(pids) else 'partly running' if alive else 'stopped'} (PIDs {pids}, alive {alive})")
        mod = import_component(name, required=False)
        if mod is not None and hasattr(mod, "status") and alive:
            try:
                print("  " + mod.status(args.dir, comp).replace("\n", "\n  "))
            except Exception as e:
                print(f"  status unavailable: {e}")
    wd = state.get("watchdog_pid")
    if wd:
        print(f"watchdog: {'running' if pid_alive(wd) else 'stopped'} (PID {wd})")
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    state = load_state(args.dir)
    if not state:
        print(f"lab: no lab in {args.dir}", file=sys.stderr)
        return 1
    if not args.argv:
        print("lab: usage: lab fault --dir DIR SERVICE ARGS...", file=sys.stderr)
        return 2
    service = args.argv[0]
    for name in state.get("order", []):
        mod = import_component(name, required=False)
        if mod is not None and service in getattr(mod, "FAULT_SERVICES", []):
            comp = state["components"][name]
            try:
                print(mod.fault(args.dir, comp, list(args.argv)))
            except Exception as e:
                print(f"lab: fault {' '.join(args.argv)}: {e}", file=sys.stderr)
                return 1
            finally:
                save_state(args.dir, state)  # fault() may have changed PIDs (kill/start)
            return 0
    print(f"lab: no running component handles {service!r}", file=sys.stderr)
    return 2


def cmd_selftest(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, str(HERE / "test_awsserver.py"), *args.argv])


def cmd_awslogs(argv: list[str]) -> int:
    """Plays ECS's awslogs log driver: stdin lines -> PutLogEvents (awslogs_forwarder.py)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import awslogs_forwarder

    return awslogs_forwarder.main(argv)


def cmd_watchdog(args: argparse.Namespace) -> int:
    """Runs detached; stops the lab when the process that asked for it (--exit-with) is gone."""
    try:
        fd = os.pidfd_open(args.pid)
        select.select([fd], [], [])  # readable when the process exits
    except ProcessLookupError:
        pass  # already gone
    except OSError:
        while pid_alive(args.pid):  # no pidfd (old kernel): poll
            time.sleep(0.2)
    print(f"watchdog: PID {args.pid} is gone; stopping the lab in {args.dir}", flush=True)
    _down(args.dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lab status | head` ends quietly
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["selftest"] and not {"-h", "--help"} & set(argv[1:]):
        # argparse's REMAINDER refuses a leading option (`selftest -k NAME`): hand it over as is.
        return cmd_selftest(argparse.Namespace(argv=argv[1:]))
    if argv[:1] == ["awslogs"]:
        return cmd_awslogs(argv[1:])  # its own options (and --help): awslogs_forwarder.py
    if argv[:1] == ["fault"] and "--dir" in argv:
        # A fault's own words follow free-form; take --dir out wherever it stands so
        # `lab fault dynamodb delay 1s --dir D` works as well as `lab fault --dir D dynamodb ...`.
        i = argv.index("--dir")
        argv = ["fault", *argv[i:i + 2], *argv[1:i], *argv[i + 2:]]
    extra: list[str] = []
    if "--" in argv:  # everything after `--` goes to the components untouched
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the lab; returns when it is ready")
    up.add_argument("--components", help=f"comma-separated (default: all of {','.join(available_components())})")
    up.add_argument("--exit-with", type=int, metavar="PID", help="stop the lab when PID exits")
    for name, fn_help in (("down", "stop everything the lab started"), ("status", "what runs")):
        sub.add_parser(name, help=fn_help)
    fault = sub.add_parser("fault", help="inject a fault: SERVICE ARGS... (see README)")
    fault.add_argument("argv", nargs=argparse.REMAINDER)
    selftest = sub.add_parser("selftest", help="run the AWS stand-in's self-test")
    selftest.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("awslogs", help="ship stdin to the lab's CloudWatch Logs as ECS's awslogs driver does", add_help=False)
    wd = sub.add_parser("_watchdog")
    wd.add_argument("--pid", type=int, required=True)
    for sp in (up, sub.choices["down"], sub.choices["status"], fault, wd):
        sp.add_argument("--dir", type=Path, required=True, help="lab directory (state, logs)")
    args = p.parse_args(argv)
    args.extra = extra
    if getattr(args, "dir", None) is not None:
        args.dir = args.dir.resolve()
    if args.cmd == "fault":
        args.argv = args.argv + extra  # `lab fault --dir D -- dynamodb ...` works too
    commands = {
        "up": cmd_up, "down": cmd_down, "status": cmd_status, "fault": cmd_fault,
        "selftest": cmd_selftest, "_watchdog": cmd_watchdog,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
