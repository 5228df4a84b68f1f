"""The checks behind deploy/check (run it through deploy/check, which sets up
the venv and the binary). Standard library plus PyYAML and botocore from the
lab venv; cfn-lint is run as a program.

Every check prints "✓ …" or "✗ …" (with the reason and the fix on the next
lines). "○ …" marks IAM grants for a DESIGN.md feature this source does not
have yet: neither passed nor failed, and strict as soon as the feature lands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import yaml

ROOT = Path(".")
PASSED = 0
FAILED = 0
PENDING = 0


def ok(msg: str) -> None:
    global PASSED
    PASSED += 1
    print(f"✓ {msg}", flush=True)


def bad(msg: str, why: str = "") -> None:
    global FAILED
    FAILED += 1
    print(f"✗ {msg}", flush=True)
    for line in why.strip().splitlines():
        print(f"    {line}", flush=True)


def pending(msg: str) -> None:
    global PENDING
    PENDING += 1
    print(f"○ {msg}", flush=True)


def check(cond: bool, msg: str, why: str = "") -> bool:
    (ok(msg) if cond else bad(msg, why))
    return cond


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------
# The binary's CLI
# --------------------------------------------------------------------------

class Cli:
    def __init__(self, binary: Path):
        self.binary = binary
        out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=20)
        self.help = out.stdout
        self.subcommands: list[str] = []
        in_cmds = False
        for line in out.stdout.splitlines():
            if line.strip() == "Commands:":
                in_cmds = True
                continue
            if in_cmds:
                m = re.match(r"^  (\S+)\s", line + " ")
                if not m:
                    break
                if m.group(1) != "help":
                    self.subcommands.append(m.group(1))
        hc = subprocess.run([str(binary), "healthcheck", "--help"], capture_output=True, text=True, timeout=20)
        m = re.search(r"\[default: (http://[^\]]+)\]", hc.stdout)
        self.healthcheck_default_url = m.group(1) if m else None

    def accepts(self, argv: list[str]) -> tuple[bool, str]:
        """Whether clap accepts these arguments (checked with --help appended)."""
        r = subprocess.run([str(self.binary), *argv, "--help"], capture_output=True, text=True, timeout=20)
        return r.returncode == 0, (r.stderr or r.stdout).strip()


def port_of(addr: str) -> int | None:
    m = re.search(r":(\d+)(/|$)", addr)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuations joined, comments dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def split_flags(args: str) -> tuple[dict[str, str], str]:
    flags = {}
    while args.startswith("--"):
        tok, _, args = args.partition(" ")
        k, _, v = tok[2:].partition("=")
        flags.setdefault(k, v)
        args = args.strip()
    return flags, args


def exec_form(args: str) -> list[str] | None:
    try:
        v = json.loads(args)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def glob_re(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """.dockerignore as Docker reads it: last matching pattern wins, a pattern
    that matches a parent directory matches everything below it."""

    def __init__(self, path: Path):
        self.rules: list[tuple[bool, re.Pattern]] = []
        if path.exists():
            for line in path.read_text().splitlines():
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                neg = s.startswith("!")
                s = s[1:] if neg else s
                s = s.strip().strip("/").removeprefix("./")
                self.rules.append((neg, glob_re(s)))

    def excluded(self, relpath: str) -> bool:
        parts = relpath.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        ex = False
        for neg, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                ex = not neg
        return ex


def context_files(src: str, ignore: DockerIgnore) -> list[str]:
    base = ROOT / src
    if base.is_file():
        return [src] if not ignore.excluded(src) else []
    files = []
    for dirpath, dirnames, filenames in os.walk(base):
        # No pruning of excluded directories: a "!" pattern may re-include
        # something below one, as Docker allows.
        d = Path(dirpath).relative_to(ROOT).as_posix()
        for f in filenames:
            r = f"{d}/{f}"
            if not ignore.excluded(r):
                files.append(r)
    return files


def check_dockerfile(cli_bin: Path | None, full: bool, target_dir: Path) -> Path | None:
    """Returns the binary to use for the CLI checks (the release build with --full)."""
    print("== Dockerfile (deploy/Dockerfile)")
    path = ROOT / "deploy/Dockerfile"
    if not check(path.exists(), "deploy/Dockerfile exists"):
        return cli_bin
    ins = dockerfile_instructions(path.read_text())
    stages: list[dict] = []
    for line, word, args in ins:
        if word == "FROM":
            flags, rest = split_flags(args)
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append({"image": m.group(1), "name": m.group(2) or str(len(stages)), "line": line,
                           "ins": [], "workdir": "/"})
        elif stages:
            stages[-1]["ins"].append((line, word, args))
    check(len(stages) >= 2, f"multi-stage: {len(stages)} stages ({', '.join(s['name'] + '=' + s['image'] for s in stages)})",
          "a builder stage compiles, a runtime stage ships only the binary")
    builder = next((s for s in stages if s["image"].startswith("rust:")), None)
    runtime = stages[-1] if stages else None
    check(builder is not None and builder["image"] == "rust:1-bookworm",
          f"builder stage uses rust:1-bookworm ({builder['image'] if builder else 'none'})")
    distroless = bool(runtime and "distroless" in runtime["image"])
    users = [a for _, w, a in (runtime["ins"] if runtime else []) if w == "USER"]
    nonroot = bool(users) and users[-1].split(":")[0] not in ("root", "0")
    check(runtime is not None and ((distroless and runtime["image"].endswith(":nonroot")) or nonroot)
          and (not users or nonroot),
          f"runtime stage runs as non-root ({runtime['image'] if runtime else '?'}, USER {users[-1] if users else '-'})")
    check(runtime is not None and (distroless or "slim" in runtime["image"]),
          "runtime image is small (distroless or -slim) and has no Rust toolchain")

    ignore = DockerIgnore(ROOT / ".dockerignore")
    check((ROOT / ".dockerignore").exists() and ignore.excluded("target/release/rpo-agent")
          and ignore.excluded(".lab/x") and ignore.excluded(".git/HEAD"),
          ".dockerignore keeps target/, .lab/ and .git/ out of the build context")

    # Build the exact context the builder stage sees, from COPY + .dockerignore.
    stage_dir = Path(tempfile.mkdtemp(prefix="rpo-deploy-check-"))
    copy_ok = True
    cargo_cmd, cargo_cwd = None, None
    produced: set[str] = set()
    try:
        for st in stages:
            workdir = "/"
            for line, word, args in st["ins"]:
                if word == "WORKDIR":
                    workdir = args if args.startswith("/") else f"{workdir.rstrip('/')}/{args}"
                elif word in ("COPY", "ADD") and st is builder:
                    flags, rest = split_flags(args)
                    parts = exec_form(rest) or shlex.split(rest)
                    srcs, dest = parts[:-1], parts[-1]
                    for src in srcs:
                        files = context_files(src, ignore) if (ROOT / src).exists() else []
                        if not files:
                            copy_ok = False
                            bad(f"Dockerfile:{line}: COPY {src}: not in the build context",
                                "the path does not exist in the repository, or .dockerignore excludes it")
                            continue
                        dest_abs = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
                        for f in files:
                            if (ROOT / src).is_file():
                                to = dest_abs + (Path(f).name if dest_abs.endswith("/") else "")
                            else:
                                to = f"{dest_abs.rstrip('/')}/{Path(f).relative_to(src).as_posix()}"
                            out = stage_dir / to.lstrip("/")
                            out.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(ROOT / f, out)
                elif word == "RUN" and st is builder:
                    _, rest = split_flags(args)
                    for seg in re.split(r"&&|;", rest):
                        seg = seg.strip()
                        if seg.startswith("cargo "):
                            cargo_cmd, cargo_cwd = seg, workdir
                        m = re.match(r"install\s+(?:-\S+\s+\S+\s+)*(\S+)\s+(\S+)$", seg)
                        if m:
                            produced.add(m.group(2))
                            st.setdefault("install_src", m.group(1))
                        for m in re.finditer(r"-o\s+(/\S+)", seg):
                            produced.add(m.group(1))
        if copy_ok:
            n = sum(1 for _ in stage_dir.rglob("*") if _.is_file())
            ok(f"every builder COPY source exists and passes .dockerignore ({n} files in the context)")
        expected = "cargo build --release --locked -p rpo-agent"
        check(cargo_cmd == expected, f"builder runs `{cargo_cmd}`", f"expected `{expected}`")
        inst = builder.get("install_src") if builder else None
        check(inst == "target/release/rpo-agent", f"builder takes the binary from {inst}",
              "cargo puts the rpo-agent bin at target/release/rpo-agent")

        # Runtime COPY --from=builder sources are produced by the builder.
        entry_path = None
        for line, word, args in runtime["ins"] if runtime else []:
            if word == "COPY":
                flags, rest = split_flags(args)
                if flags.get("from") == (builder or {}).get("name"):
                    parts = exec_form(rest) or shlex.split(rest)
                    for src in parts[:-1]:
                        check(src in produced, f"Dockerfile:{line}: COPY --from={flags['from']} {src} is produced by a builder RUN",
                              f"no builder RUN writes {src}")
                    if parts[0] == "/rpo-agent":
                        entry_path = parts[-1]

        # The cargo command, in the staged context.
        cwd = stage_dir / (cargo_cwd or "/").lstrip("/")
        if (cwd / "Cargo.toml").exists() and cargo_cmd:
            # --no-deps: the members alone, so no registry download is needed
            # (a fresh machine has fetched only the host platform's crates).
            meta = subprocess.run(["cargo", "metadata", "--no-deps", "--locked", "--offline", "--format-version", "1"],
                                  cwd=cwd, capture_output=True, text=True, timeout=120)
            if check(meta.returncode == 0, "`cargo metadata --locked` loads the workspace from the build context alone",
                     meta.stderr[-1500:]):
                pkgs = {p["name"]: p for p in json.loads(meta.stdout)["packages"]
                        if p["manifest_path"].startswith(str(stage_dir))}
                pkg = pkgs.get("rpo-agent")
                bins = [t["name"] for t in (pkg or {}).get("targets", []) if "bin" in t["kind"]]
                check("rpo-agent" in bins, f"package rpo-agent builds the bin `rpo-agent` ({', '.join(bins) or 'none'})")
                # cargo metadata does not open the sources; cargo build does.
                missing = [rel(Path(t["src_path"])).replace(str(stage_dir), "") for p in pkgs.values()
                           for t in p["targets"] if not Path(t["src_path"]).exists()]
                for p in pkgs.values():
                    for src in Path(p["manifest_path"]).parent.rglob("*.rs"):
                        for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', src.read_text()):
                            if not (src.parent / inc).exists():
                                missing.append(f"{src.relative_to(stage_dir)} includes {inc}")
                check(not missing, f"every target root and include_str!/include_bytes! file of the "
                      f"{len(pkgs)} workspace members is in the build context", f"missing: {missing}")
            if full:
                print(f"   running `{cargo_cmd}` in the staged context (a few minutes)…", flush=True)
                env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
                t0 = time.monotonic()
                r = subprocess.run(shlex.split(cargo_cmd), cwd=cwd, env=env, capture_output=True, text=True)
                built = target_dir / "release" / "rpo-agent"
                if check(r.returncode == 0 and built.exists(),
                         f"`{cargo_cmd}` succeeds on the build context ({time.monotonic() - t0:.0f} s)",
                         r.stderr[-3000:]):
                    cli_bin = built
        else:
            bad("the builder's WORKDIR holds the workspace Cargo.toml", f"looked in {cargo_cwd}")
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)

    # ENTRYPOINT / CMD / HEALTHCHECK / EXPOSE against the binary.
    rt = {w: a for _, w, a in (runtime["ins"] if runtime else [])}
    entry = exec_form(rt.get("ENTRYPOINT", ""))
    cmd = exec_form(rt.get("CMD", ""))
    hc_flags, hc_rest = split_flags(rt.get("HEALTHCHECK", ""))
    hc = exec_form(hc_rest.removeprefix("CMD").strip()) if hc_rest.startswith("CMD") else None
    check(entry == ["/rpo-agent"] and entry_path == "/rpo-agent",
          f"ENTRYPOINT {entry} is the copied binary ({entry_path})", "exec form, the path COPY --from=builder writes")
    check(rt.get("EXPOSE", "").split("/")[0] == "9464", f"EXPOSE {rt.get('EXPOSE')}")
    if cli_bin is None:
        bad("no rpo-agent binary to check ENTRYPOINT/CMD/HEALTHCHECK against")
        return None
    cli = Cli(cli_bin)
    if cmd is not None:
        good, err = cli.accepts(cmd)
        check(bool(cmd) and cmd[0] in cli.subcommands and good,
              f"CMD {cmd}: `rpo-agent {' '.join(cmd)}` is accepted ({', '.join(cli.subcommands)})", err)
    else:
        bad("CMD is in exec form")
    if check(hc is not None and hc[:1] == ["/rpo-agent"] and len(hc) > 1 and hc[1] in cli.subcommands,
             f"HEALTHCHECK {hc}: subcommand listed by `rpo-agent --help`",
             "the image has no shell or curl: HEALTHCHECK CMD [\"/rpo-agent\", \"healthcheck\"]"):
        check(port_of(cli.healthcheck_default_url or "") == 9464,
              f"healthcheck's default URL {cli.healthcheck_default_url} is the EXPOSEd port 9464")
        live_healthcheck(cli, hc[1:])
    return cli_bin


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def live_healthcheck(cli: Cli, hc_args: list[str]) -> None:
    """Runs a real agent and the health check command against it, then stops
    the agent and expects the health check to fail."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    cfg = f"""[agent]
id = "deploy-check"
listen = "127.0.0.1:{port}"
shutdown_grace = "1s"
[[target]]
name = "t"
kind = "dynamodb"
table = "t"
source = {{ region = "ap-northeast-1", endpoint_url = "http://127.0.0.1:9" }}
replicas = [{{ region = "ap-northeast-3", endpoint_url = "http://127.0.0.1:9" }}]
interval = "1s"
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="deploy-check", AWS_SECRET_ACCESS_KEY="deploy-check",
               AWS_EC2_METADATA_DISABLED="true", RPO_AGENT_CONFIG=cfg)
    proc = subprocess.Popen([str(cli.binary), "run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    argv = [str(cli.binary), *hc_args, "--url", url]
    try:
        up = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
                up = True
                break
            time.sleep(0.2)
        check(up, f"HEALTHCHECK command exits 0 against a running agent (`{' '.join(hc_args)} --url {url}`)",
              "" if proc.poll() is None else (proc.stderr.read() if proc.stderr else ""))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    check(rc == 0, f"the agent exits cleanly on SIGTERM (exit {rc})", "ECS stops containers with SIGTERM")
    r = subprocess.run(argv, capture_output=True, timeout=10)
    check(r.returncode != 0, f"HEALTHCHECK command fails once the agent is gone (exit {r.returncode})")


# --------------------------------------------------------------------------
# ECS task definitions
# --------------------------------------------------------------------------

def botocore_validate(service: str, operation: str, params: dict) -> str:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


def check_task_definitions(cli: Cli | None) -> dict:
    print("== ECS task definitions (deploy/ecs/)")
    found: dict = {}
    files = sorted((ROOT / "deploy/ecs").glob("*.json"))
    check(bool(files), f"task definitions: {', '.join(rel(f) for f in files)}")
    for f in files:
        name = rel(f)
        try:
            td = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            bad(f"{name}: valid JSON", str(e))
            continue
        ok(f"{name}: valid JSON")
        errs = botocore_validate("ecs", "RegisterTaskDefinition", td)
        check(not errs, f"{name}: matches the ECS RegisterTaskDefinition API model (botocore)", errs)
        for k in ("taskRoleArn", "executionRoleArn"):
            check(str(td.get(k, "")).startswith("arn:aws:iam::"), f"{name}: {k} set ({td.get(k)})")
        agents = [c for c in td.get("containerDefinitions", []) if c.get("name") == "rpo-agent"]
        if not check(len(agents) == 1, f"{name}: one container named rpo-agent"):
            continue
        c = agents[0]
        others = [x for x in td["containerDefinitions"] if x is not c]
        if others:
            check(c.get("essential") is False and (c.get("restartPolicy") or {}).get("enabled") is True
                  and any(x.get("essential") for x in others),
                  f"{name}: sidecar is non-essential with a restart policy (a probe failure never stops the app)",
                  "see deploy/README.md, 'Why the sidecar is not essential'")
        else:
            check(c.get("essential") is True, f"{name}: standalone agent task: the agent is essential")
        check(c.get("readonlyRootFilesystem") is True, f"{name}: readonlyRootFilesystem")
        user = str(c.get("user", "65532"))
        check(user.split(":")[0] not in ("0", "root"), f"{name}: runs as non-root (user {user})")
        check(0 < c.get("cpu", 0) <= 256 and 0 < c.get("memory", c.get("memoryReservation", 0)) <= 256,
              f"{name}: small footprint (cpu {c.get('cpu')} units, memory {c.get('memory')} MiB, reservation {c.get('memoryReservation')} MiB)")
        lc = c.get("logConfiguration", {})
        check(lc.get("logDriver") == "awslogs" and {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(lc.get("options", {})),
              f"{name}: awslogs log configuration")
        ports = [p.get("containerPort") for p in c.get("portMappings", [])]
        env = {e["name"]: e["value"] for e in c.get("environment", [])}
        secret_names = {s["name"] for s in c.get("secrets", [])}
        toml_text = env.get("RPO_AGENT_CONFIG")
        if not check(toml_text is not None, f"{name}: RPO_AGENT_CONFIG holds the configuration"):
            continue
        found[name] = toml_text
        hcmd = (c.get("healthCheck") or {}).get("command", [])
        if cli is None:
            bad(f"{name}: no binary to run the checks against")
            continue
        check(hcmd[:2] == ["CMD", "/rpo-agent"] and len(hcmd) > 2 and hcmd[2] in cli.subcommands,
              f"{name}: healthCheck {hcmd} uses a subcommand of the binary",
              f"subcommands: {', '.join(cli.subcommands)}; CMD-SHELL needs a shell, the image has none")
        command = c.get("command", [])
        good, err = cli.accepts(command)
        sub = [a for a in command if not a.startswith("-")]
        check(good and bool(sub) and sub[-1] == "run", f"{name}: command {command} is accepted by the binary", err)
        venv = {k: v for k, v in os.environ.items() if not k.startswith("RPO_")}
        venv["RPO_AGENT_CONFIG"] = toml_text
        r = subprocess.run([str(cli.binary), "validate"], env=venv, capture_output=True, text=True, timeout=20)
        check(r.returncode == 0, f"{name}: `rpo-agent validate` accepts the embedded RPO_AGENT_CONFIG ({r.stdout.strip()})",
              r.stderr)
        listen = re.search(r'^\s*listen\s*=\s*"([^"]+)"', toml_text, re.M)
        lport = port_of(listen.group(1)) if listen else 9464
        check(lport in ports and lport == 9464,
              f"{name}: port mapping {ports} matches listen port {lport} (and the healthcheck's default)")
        for var in re.findall(r'password_env\s*=\s*"([^"]+)"', toml_text):
            check(var in secret_names or var in env,
                  f"{name}: auth.password_env {var} is provided (secrets: {', '.join(sorted(secret_names)) or 'none'})")
        if "secret_arn" in toml_text or secret_names:
            ok(f"{name}: database credentials come from Secrets Manager, not the task definition")
        if "ca_bundle" in toml_text:
            m = re.search(r'ca_bundle\s*=\s*"([^"]+)"', toml_text)
            dockerfile = (ROOT / "deploy/Dockerfile").read_text()
            check(bool(m) and m.group(1) in dockerfile, f"{name}: ca_bundle {m.group(1) if m else '?'} is shipped by the Dockerfile")
    return found


# --------------------------------------------------------------------------
# CloudFormation
# --------------------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader, suffix, node):
    tag = node.tag[1:]
    if isinstance(node, yaml.ScalarNode):
        v = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        v = loader.construct_sequence(node, deep=True)
    else:
        v = loader.construct_mapping(node, deep=True)
    if tag == "Ref":
        return {"Ref": v}
    if tag == "GetAtt" and isinstance(v, str):
        v = v.split(".", 1)
    return {("Fn::" + tag) if tag != "Condition" else "Condition": v}


CfnLoader.add_multi_constructor("!", _intrinsic)

# IAM action -> the agent's SDK calls that need it, and the feature they belong to.
# A feature counts as present in this source when its marker exists; then every
# action of it must be called (least privilege), otherwise it is pending.
FEATURES = {
    "dynamodb probe": lambda: (ROOT / "agent/src/probe/dynamodb.rs").exists(),
    "dynamodb preflight (rpo-agent check)": lambda: "check" in CLI_SUBCOMMANDS,
    "s3 probe": lambda: (ROOT / "agent/src/probe/s3.rs").exists() or (ROOT / "agent/src/probe/s3").is_dir(),
    "s3 preflight (rpo-agent check)": lambda: "check" in CLI_SUBCOMMANDS,
    "cloudwatch reported lag": lambda: any("aws-sdk-cloudwatch" in (ROOT / p).read_text()
                                           for p in ("agent/Cargo.toml", "exporter/Cargo.toml")),
    "sql secret auth": lambda: (ROOT / "agent/src/probe/sql").is_dir(),
    "sql iam auth": lambda: (ROOT / "agent/src/probe/sql").is_dir(),
    "redis iam auth": lambda: (ROOT / "agent/src/probe/redis").is_dir(),
    "fleet leases": lambda: (ROOT / "agent/src/fleet/lease.rs").exists(),
}
ACTIONS = {
    "dynamodb:PutItem": ("dynamodb probe", ["put_item"], ""),
    "dynamodb:GetItem": ("dynamodb probe", ["get_item"], ""),
    "dynamodb:DescribeTable": ("dynamodb probe", ["describe_table"], ""),
    "dynamodb:DescribeTimeToLive": ("dynamodb preflight (rpo-agent check)", ["describe_time_to_live"], ""),
    "dynamodb:BatchGetItem": ("fleet leases", ["batch_get_item"], "the roster and every lease, ConsistentRead"),
    "dynamodb:UpdateItem": ("fleet leases", ["update_item"], "renew, release, roster beat, drop member"),
    "s3:PutObject": ("s3 probe", ["put_object"], ""),
    "s3:GetObject": ("s3 probe", ["head_object", "get_object"], "HeadObject is authorised by s3:GetObject"),
    "s3:DeleteObject": ("s3 probe", ["delete_object", "delete_objects"], ""),
    "s3:ListBucket": ("s3 probe", ["head_object"],
                      "no list call: it makes HeadObject of a not-yet-replicated key 404, not 403"),
    "s3:GetBucketVersioning": ("s3 preflight (rpo-agent check)", ["get_bucket_versioning"], ""),
    "s3:GetReplicationConfiguration": ("s3 preflight (rpo-agent check)", ["get_bucket_replication"], ""),
    "s3:GetLifecycleConfiguration": ("s3 preflight (rpo-agent check)", ["get_bucket_lifecycle_configuration"], ""),
    "cloudwatch:GetMetricData": ("cloudwatch reported lag", ["get_metric_data"], ""),
    "elasticache:DescribeReplicationGroups": ("redis reported lag", ["describe_replication_groups"],
                                              "the secondary group's member clusters"),
    "secretsmanager:GetSecretValue": ("sql secret auth", ["get_secret_value"], ""),
    "rds-db:connect": ("sql iam auth", ['"rds-db"'], "signed locally (aws-sigv4), no SDK call"),
    "elasticache:Connect": ("redis iam auth", ['"elasticache"'], "signed locally (aws-sigv4), no SDK call"),
}
# Services whose IAM tokens the agent signs itself: a string literal naming the
# SigV4 service in the source stands for the call.
PRESIGNED_SERVICES = ('"rds-db"', '"elasticache"')
# SDK operations the agent may call that need no IAM grant of the task role.
NO_GRANT_OPS: set[str] = set()
# SDK operations only an operator runs, with their own credentials: op ->
# (the IAM action the task role must NOT have, who calls it).
OPERATOR_OPS = {
    "create_table": ("dynamodb:CreateTable",
                     "the fleet's lease table, created only by `rpo-agent init` (and `check --fix`, which runs init)"),
}
# Actions allowed on Resource "*" because they have no resource-level permissions.
WILDCARD_RESOURCE_OK = {"cloudwatch:GetMetricData"}
CLI_SUBCOMMANDS: list[str] = []
NOT_OPS = {"clone", "as_ref", "unwrap", "to_string", "into", "build", "iter", "await", "lock", "read",
           "write", "client", "to_owned", "as_str", "len", "is_empty", "now", "default", "new",
           # `put.customize().interceptor(…).send()`: the request was built in
           # earlier statements; customize() is the SDK's hook, not an op.
           "customize"}


def agent_sdk_calls() -> dict[str, list[str]]:
    """Operation name -> files, for every `.op()…send()` chain in the
    non-test source of the agent and the exporter."""
    calls: dict[str, list[str]] = {}
    for base in ("agent/src", "exporter/src"):
        for f in sorted((ROOT / base).rglob("*.rs")):
            text = f.read_text()
            text = text.split("#[cfg(test)]")[0]
            text = re.sub(r"//[^\n]*", "", text)
            for m in re.finditer(r"\.send\(\)", text):
                start = max(text.rfind(";", 0, m.start()), text.rfind("{", 0, m.start()), m.start() - 800)
                chain = text[start:m.start()]
                ops = [o for o in re.findall(r"\.([a-z_][a-z0-9_]*)\(\)", chain) if o not in NOT_OPS]
                if ops:
                    calls.setdefault(ops[0], []).append(rel(f))
            for service in PRESIGNED_SERVICES:
                if service in text:
                    calls.setdefault(service, []).append(rel(f))
    return calls


def policy_statements(node) -> list[dict]:
    """IAM statements, with both branches of Fn::If."""
    if isinstance(node, list):
        return [s for x in node for s in policy_statements(x)]
    if isinstance(node, dict):
        if "Fn::If" in node:
            return [s for x in node["Fn::If"][1:] for s in policy_statements(x)]
        if "Effect" in node:
            return [node]
    return []


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


# The ACL (access string) of the agent's ElastiCache RBAC user, as deploy/README.md
# documents it: the canary keys only, and the commands the probe sends.
REDIS_ACL = "on ~rpo-canary:* +set +get +ttl +role +info +ping +readonly +cluster|shards +cluster|slots"
REDIS_PARAMS = ("RedisUserId", "RedisSourceReplicationGroup", "RedisReplicaReplicationGroup")


def redis_commands() -> dict[str, list[str]]:
    """Command (lower case, `cmd|sub` for a container command's first argument)
    -> files, for every `cmd("X")` of the redis probe's non-test source."""
    out: dict[str, list[str]] = {}
    base = ROOT / "agent/src/probe/redis"
    for f in sorted(base.rglob("*.rs")) if base.is_dir() else []:
        text = re.sub(r"//[^\n]*", "", f.read_text().split("#[cfg(test)]")[0])
        for m in re.finditer(r'\bcmd\("([A-Za-z]+)"\)(?:\s*\.arg\("([A-Za-z-]+)"\))?', text):
            name, sub = m.group(1).lower(), (m.group(2) or "").lower()
            key = f"{name}|{sub}" if name in ("cluster", "client", "config", "command", "object") and sub else name
            out.setdefault(key, []).append(rel(f))
    return out


def acl_allows(acl: str, command: str) -> bool:
    rules = acl.split()
    return f"+{command}" in rules or f"+{command.split('|')[0]}" in rules or "+@all" in rules


def check_redis_statement(res: dict) -> None:
    """elasticache:Connect: only with RedisUserId (HasRedis), on exactly the two
    replication groups (each in its region) and the user in both regions."""
    params = res.get("Parameters", {})
    missing = [p for p in REDIS_PARAMS if (params.get(p) or {}).get("Default") != ""]
    check(not missing, f"redis parameters {', '.join(REDIS_PARAMS)} exist, default empty (no Redis access)",
          f"missing or not defaulting to \"\": {missing}")
    has_redis = res.get("Conditions", {}).get("HasRedis")
    check(has_redis == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RedisUserId"}, ""]}]},
          "Condition HasRedis: RedisUserId is set", f"HasRedis is {has_redis!r}")
    rule = json.dumps(res.get("Rules", {}))
    check(all(p in rule for p in REDIS_PARAMS),
          "a Rule refuses RedisUserId without both replication groups", "add one like DbIamNeedsClusters")
    raw = [x for p in res["Resources"]["TaskRole"]["Properties"].get("Policies", [])
           for x in as_list(p["PolicyDocument"]["Statement"])]
    connect = [x for x in raw if "elasticache:Connect" in json.dumps(x)]
    if not check(len(connect) == 1, "one task role statement grants elasticache:Connect (redis auth = { iam = true })",
                 f"found {len(connect)}"):
        return
    node = connect[0]
    branches = node.get("Fn::If") if isinstance(node, dict) else None
    conditional = (isinstance(branches, list) and len(branches) == 3 and branches[0] == "HasRedis"
                   and branches[2] == {"Ref": "AWS::NoValue"} and isinstance(branches[1], dict))
    if not check(conditional, "the elasticache:Connect statement exists only when HasRedis (Fn::If, else AWS::NoValue)",
                 json.dumps(node)[:400]):
        return
    stmt = branches[1]
    resources = as_list(stmt.get("Resource", []))
    subs = [r.get("Fn::Sub") if isinstance(r, dict) else r for r in resources]
    arn = "arn:${AWS::Partition}:elasticache:${%s}:${AWS::AccountId}:%s"
    want = {arn % ("SourceRegion", "replicationgroup:${RedisSourceReplicationGroup}"),
            arn % ("ReplicaRegion", "replicationgroup:${RedisReplicaReplicationGroup}"),
            arn % ("SourceRegion", "user:${RedisUserId}"),
            arn % ("ReplicaRegion", "user:${RedisUserId}")}
    check(as_list(stmt.get("Action")) == ["elasticache:Connect"] and stmt.get("Effect") == "Allow"
          and len(subs) == len(want) and set(subs) == want and "*" not in json.dumps(resources),
          "elasticache:Connect is scoped to the two replication groups (each in its region) and the RBAC user "
          "in both regions: no other resource, no \"*\"",
          f"resources: {subs}\nwanted: {sorted(want)}")
    redis_rs = ROOT / "agent/src/probe/redis/mod.rs"
    src = redis_rs.read_text() if redis_rs.exists() else ""
    if (ROOT / "agent/src/probe/redis").is_dir():
        check('format!("rpo-canary:' in src and "~rpo-canary:*" in REDIS_ACL.split(),
              "the RBAC user's key pattern ~rpo-canary:* is the redis canary key format (agent/src/probe/redis/mod.rs)",
              "the agent's keys are rpo-canary:<agent or fleet>:<target>[:{rpoN}]")
        cmds = redis_commands()
        denied = {c: f for c, f in cmds.items() if not acl_allows(REDIS_ACL, c)}
        check(bool(cmds) and not denied,
              f"the RBAC user's ACL allows every command the redis probe sends ({', '.join(sorted(cmds))})",
              f"not allowed by {REDIS_ACL!r}: {denied}: add them to REDIS_ACL and deploy/README.md")


def check_cloudformation(cfn_lint: str, task_configs: dict) -> None:
    print("== CloudFormation (deploy/cloudformation/)")
    templates = sorted((ROOT / "deploy/cloudformation").glob("*.yaml"))
    parsed = {}
    for t in templates:
        try:
            parsed[t.name] = yaml.load(t.read_text(), Loader=CfnLoader)
            ok(f"{rel(t)}: valid YAML (with CloudFormation tags)")
        except yaml.YAMLError as e:
            bad(f"{rel(t)}: valid YAML", str(e))
    r = subprocess.run([cfn_lint, *map(str, templates)], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and templates,
          f"cfn-lint passes on {', '.join(t.name for t in templates)} (errors and warnings)",
          (r.stdout + r.stderr)[-3000:])
    for j in sorted((ROOT / "deploy/cloudformation").glob("*.json")):
        try:
            rules = json.loads(j.read_text())
        except json.JSONDecodeError as e:
            bad(f"{rel(j)}: valid JSON", str(e))
            continue
        errs = botocore_validate("s3", "PutBucketLifecycleConfiguration",
                                 {"Bucket": "b", "LifecycleConfiguration": rules})
        check(not errs, f"{rel(j)}: matches the S3 PutBucketLifecycleConfiguration API model (botocore)", errs)
        exp = [x for x in rules.get("Rules", []) if (x.get("Expiration") or {}).get("Days") == 1
               and (x.get("Filter") or {}).get("Prefix") == "rpo-canary/" and x.get("Status") == "Enabled"]
        check(bool(exp), f"{rel(j)}: expires rpo-canary/ objects after 1 day")

    res = parsed.get("canary-resources.yaml")
    if not check(res is not None, "canary-resources.yaml present"):
        return
    role = res["Resources"].get("TaskRole", {})
    trust = json.dumps(role.get("Properties", {}).get("AssumeRolePolicyDocument", {}))
    check("ecs-tasks.amazonaws.com" in trust, "task role is assumable by ECS tasks only (ecs-tasks.amazonaws.com)")
    outputs = res.get("Outputs", {})
    check(any("TaskRole" in json.dumps(o.get("Value")) for o in outputs.values()), "template outputs the task role ARN")
    stmts = policy_statements([p["PolicyDocument"]["Statement"] for p in role["Properties"].get("Policies", [])])
    granted: dict[str, list[dict]] = {}
    for s in stmts:
        for a in as_list(s.get("Action", [])):
            granted.setdefault(a, []).append(s)
    check(bool(granted), f"task role grants {len(granted)} actions in {len(stmts)} statements")

    calls = agent_sdk_calls()
    for action in sorted(granted):
        if "*" in action:
            bad(f"IAM {action}: no wildcard actions")
            continue
        if action not in ACTIONS:
            bad(f"IAM {action}: not an action the agent needs", "add it to ACTIONS in deploy/check_deploy.py "
                "with the SDK call that needs it, or remove it from the template")
            continue
        feature, ops, note = ACTIONS[action]
        where = sorted({f for o in ops for f in calls.get(o, [])})
        if where:
            ok(f"IAM {action}: the agent calls {'/'.join(o for o in ops if o in calls)} ({', '.join(where)})"
               + (f" — {note}" if note else ""))
        elif FEATURES[feature]():
            bad(f"IAM {action}: granted, but the agent never calls {' or '.join(ops)}",
                f"the {feature} is in this source and does not need it: remove it from the template")
        else:
            pending(f"IAM {action}: for the {feature}, not in this source yet (DESIGN.md); checked once it lands")
    for op, files in sorted(calls.items()):
        needs = [a for a, (_, ops, _) in ACTIONS.items() if op in ops]
        if op in NO_GRANT_OPS:
            continue
        if op in OPERATOR_OPS:
            action, who = OPERATOR_OPS[op]
            check(action not in granted,
                  f"SDK call .{op}() ({', '.join(sorted(set(files)))}) is operator-only: {who}, "
                  f"with the operator's credentials; {action} is not granted to the task role",
                  f"remove {action} from the task role in canary-resources.yaml")
            continue
        if not needs:
            bad(f"SDK call .{op}() ({', '.join(sorted(set(files)))}) is unknown to the check",
                "add the IAM action it needs to ACTIONS in deploy/check_deploy.py and grant it in canary-resources.yaml")
        else:
            check(any(a in granted for a in needs), f"SDK call .{op}() is granted by the task role ({', '.join(needs)})",
                  "the agent would get AccessDenied: grant it in deploy/cloudformation/canary-resources.yaml")
    wild = [(a, s.get("Sid", "?")) for s in stmts for a in as_list(s.get("Action", []))
            if "*" in as_list(s.get("Resource", [])) and a not in WILDCARD_RESOURCE_OK]
    check(not wild, "no Resource \"*\" except for actions without resource-level permissions ("
          + ", ".join(sorted(WILDCARD_RESOURCE_OK)) + ")", f"wildcards: {wild}")
    # Canary-shaped scoping, cross-checked with the source.
    canary_rs = (ROOT / "agent/src/canary.rs").read_text() if (ROOT / "agent/src/canary.rs").exists() else ""
    lease_rs = (ROOT / "agent/src/fleet/lease.rs").read_text() if (ROOT / "agent/src/fleet/lease.rs").exists() else ""

    def leading_keys(s: dict) -> list[str]:
        cond = ((s.get("Condition") or {}).get("ForAllValues:StringLike") or {})
        return sorted(as_list(cond.get("dynamodb:LeadingKeys", [])))

    item_actions = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
    item_stmts = [s for s in stmts if item_actions & set(as_list(s.get("Action", [])))]
    canary_stmts = [s for s in item_stmts if "dynamodb:GetItem" in as_list(s["Action"])]
    lease_stmts = [s for s in item_stmts if s not in canary_stmts]
    unscoped = [s.get("Sid", "?") for s in item_stmts if not leading_keys(s)]
    check(not unscoped, "every DynamoDB item-level statement has a dynamodb:LeadingKeys condition",
          f"statements without one: {unscoped}")
    canary_keys = ["rpo-canary#*", "rpo-lag-hint#*"]
    check(bool(canary_stmts)
          and all({"dynamodb:PutItem", "dynamodb:GetItem"} == set(as_list(s["Action"])) for s in canary_stmts)
          and all(leading_keys(s) == canary_keys for s in canary_stmts)
          and 'format!("rpo-canary#' in canary_rs and 'format!("rpo-lag-hint#' in canary_rs,
          "DynamoDB PutItem/GetItem are limited to leading keys rpo-canary#* and rpo-lag-hint#* "
          "(the canary and lag-hint key formats in canary.rs)",
          f"found {[leading_keys(s) for s in canary_stmts]}; the agent writes rpo-canary#<agent or fleet>#<target> "
          "and rpo-lag-hint#<target>[@region] (agent/src/canary.rs)")
    check_redis_statement(res)
    lease_param = {"Ref": "FleetLeaseTableName"}
    lease_tables = {k: r for k, r in res["Resources"].items()
                    if r.get("Type") == "AWS::DynamoDB::Table"
                    and (r.get("Properties") or {}).get("TableName") == lease_param}
    if not FEATURES["fleet leases"]():
        if lease_stmts or lease_tables:
            pending("fleet lease grants: for the fleet leases, not in this source yet (DESIGN.md); checked once it lands")
    else:
        lease_keys = ["rpo-fleet#*", "rpo-lease#*"]
        check(len(lease_stmts) == 1
              and set(as_list(lease_stmts[0]["Action"])) == {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
              and leading_keys(lease_stmts[0]) == lease_keys
              and all("FleetLeaseTableName" in json.dumps(s.get("Resource")) for s in lease_stmts)
              and 'format!("rpo-lease#' in lease_rs and 'format!("rpo-fleet#' in lease_rs,
              "fleet leases: BatchGetItem/PutItem/UpdateItem on the lease table only, limited to leading keys "
              "rpo-lease#* and rpo-fleet#* (the lease and roster key formats in fleet/lease.rs)",
              f"statements: {[(s.get('Sid'), as_list(s.get('Action')), leading_keys(s)) for s in lease_stmts]}")
        describe = [s for s in granted.get("dynamodb:DescribeTable", [])
                    if "FleetLeaseTableName" in json.dumps(s.get("Resource"))]
        check(len(describe) == 1 and as_list(describe[0]["Action"]) == ["dynamodb:DescribeTable"]
              and not describe[0].get("Condition"),
              "fleet leases: DescribeTable of the lease table (rpo-agent check) in a statement of its own, "
              "without a LeadingKeys condition (DescribeTable has none)")
        lt = next(iter(lease_tables.values()), {}).get("Properties", {})
        check(len(lease_tables) == 1
              and lt.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}]
              and lt.get("AttributeDefinitions") == [{"AttributeName": "pk", "AttributeType": "S"}]
              and lt.get("BillingMode") == "PAY_PER_REQUEST"
              and '"pk"' in lease_rs,
              f"optional lease table ({', '.join(lease_tables) or 'none'}): key pk (S) only, the key fleet/lease.rs "
              "reads and writes, on-demand",
              "an AWS::DynamoDB::Table with TableName !Ref FleetLeaseTableName, key pk (S), PAY_PER_REQUEST")
        # The sidecars' [fleet] against the template's defaults.
        params = res.get("Parameters", {})
        lease_region = params.get("FleetRegion", {}).get("Default") or params.get("ReplicaRegion", {}).get("Default")
        readme = (ROOT / "deploy/README.md").read_text() if (ROOT / "deploy/README.md").exists() else ""
        for name, text in task_configs.items():
            try:
                fleet = tomllib.loads(text).get("fleet")
            except tomllib.TOMLDecodeError as e:
                bad(f"{name}: the embedded config is TOML", str(e))
                continue
            if fleet is None:
                continue
            table, region = fleet.get("table"), fleet.get("region")
            pattern = params.get("FleetLeaseTableName", {}).get("AllowedPattern", "")
            check(region == lease_region and bool(table) and re.match(pattern, table or "") is not None
                  and f"FleetLeaseTableName={table}" in readme,
                  f"{name}: [fleet] table {table} in {region}: the template's default lease region "
                  f"({lease_region}) and the table deploy/README.md's stack command creates",
                  "set [fleet] region to the template's lease region (FleetRegion, default ReplicaRegion) and "
                  "table to the FleetLeaseTableName of the README's deploy command")
    s3w = granted.get("s3:PutObject", [])
    prefix_default = res["Parameters"].get("S3CanaryPrefix", {}).get("Default")
    validate_rs = (ROOT / "agent/src/config/validate.rs").read_text()
    check(bool(s3w) and all("${S3CanaryPrefix}*" in json.dumps(s.get("Resource")) for s in s3w)
          and f'"{prefix_default}"' in validate_rs,
          f"S3 object access is limited to the canary prefix (default {prefix_default}, the agent's default too)")
    table = res["Resources"].get("CanaryTable", {}).get("Properties", {})
    dynamo_rs = (ROOT / "agent/src/probe/dynamodb.rs").read_text()
    ttl = (table.get("TimeToLiveSpecification") or {}).get("AttributeName")
    check(table.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}] and ttl == "ttl"
          and f'"{ttl}"' in dynamo_rs and len(table.get("Replicas", [])) == 2,
          "optional global table: key pk (S), TTL on `ttl` (the attribute the agent writes), replicas in both regions")
    buckets = parsed.get("canary-buckets.yaml")
    if check(buckets is not None, "canary-buckets.yaml present"):
        b = buckets["Resources"]["Bucket"]["Properties"]
        rules = b.get("LifecycleConfiguration", {}).get("Rules", [])
        check(b.get("VersioningConfiguration", {}).get("Status") == "Enabled"
              and any(r.get("ExpirationInDays") == 1 and r.get("Prefix") == {"Ref": "CanaryPrefix"} for r in rules)
              and "ReplicationConfiguration" in b,
              "canary buckets: versioned, canaries expire after 1 day, replication rule on the source")
    for name, text in task_configs.items():
        m = re.search(r'prefix\s*=\s*"([^"]+)"', text)
        if m:
            check(m.group(1) == prefix_default, f"{name}: S3 prefix {m.group(1)} is the templates' canary prefix")


# --------------------------------------------------------------------------
# CloudWatch alarms and dashboard (generated by `rpo-agent alarms`)
# --------------------------------------------------------------------------

ALARMS_TEMPLATE = "deploy/cloudformation/cloudwatch-alarms.yaml"
# The task definition whose embedded config the checked-in template is made from.
ALARMS_SOURCE = "deploy/ecs/task-definition.json"
ALARM_METRICS = ("RPO", "ProbeUp", "CanariesLost")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60,
                  "h": 3600, "hr": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """A humantime duration ("60s", "15m", "1h 30m", "500ms") in seconds,
    read independently of the agent's parser."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", text.strip()):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def expected_pairs(cfg: dict) -> dict:
    """(target, replica region) -> objective in seconds, from the TOML: one
    pair per replica region, and with direction = "both" one back into the
    source's region (its EMF series ReplicaRegion = the source's region)."""
    default = cfg.get("agent", {}).get("objective", "60s")  # validate.rs DEFAULT_OBJECTIVE
    out = {}
    for t in cfg.get("target", []):
        objective = duration_seconds(t.get("objective", default))
        regions = [r["region"] for r in t.get("replicas", [])]
        if t.get("direction") == "both":
            regions.append(t["source"]["region"])
        for r in regions:
            out[(t["name"], r)] = objective
    return out


def check_alarms(cli: Cli | None, task_configs: dict) -> None:
    print(f"== CloudWatch alarms and dashboard ({ALARMS_TEMPLATE})")
    path = ROOT / ALARMS_TEMPLATE
    text = task_configs.get(ALARMS_SOURCE)
    if not check(path.exists(), f"{ALARMS_TEMPLATE} exists") or not check(
            text is not None, f"{ALARMS_SOURCE} embeds the configuration the template is made from"):
        return
    regen = (f"regenerate it: RPO_AGENT_CONFIG=\"$(jq -r '.containerDefinitions[] | select(.name == \"rpo-agent\") "
             f"| .environment[] | select(.name == \"RPO_AGENT_CONFIG\") | .value' {ALARMS_SOURCE})\" "
             f"target/debug/rpo-agent alarms --out {ALARMS_TEMPLATE}")
    if cli is None:
        bad(f"{ALARMS_TEMPLATE}: no binary to regenerate it with")
    else:
        with tempfile.TemporaryDirectory(prefix="rpo-alarms-") as d:
            for name, cfg_text in sorted(task_configs.items()):
                cfg_path = Path(d) / (Path(name).stem + ".toml")
                cfg_path.write_text(cfg_text)
                r = subprocess.run([str(cli.binary), "alarms", "--config", str(cfg_path)],
                                   capture_output=True, text=True, timeout=20)
                if name != ALARMS_SOURCE:
                    if "[emf]" in cfg_text:
                        check(r.returncode == 0, f"{name}: `rpo-agent alarms` accepts its [emf] config", r.stderr)
                    continue
                same = r.returncode == 0 and r.stdout == path.read_text()
                why = r.stderr if r.returncode else ""
                if r.returncode == 0 and not same:
                    import difflib
                    diff = difflib.unified_diff(path.read_text().splitlines(), r.stdout.splitlines(),
                                                ALARMS_TEMPLATE, "rpo-agent alarms", lineterm="", n=1)
                    why = "\n".join(list(diff)[:40])
                check(same, f"{ALARMS_TEMPLATE} is what `rpo-agent alarms` generates from {ALARMS_SOURCE}'s config "
                      "(it cannot drift from the objectives)", f"{why}\n{regen}")
    # Independently of the generator: the TOML (tomllib) against the template (YAML).
    try:
        cfg = tomllib.loads(text)
        pairs = expected_pairs(cfg)
    except (tomllib.TOMLDecodeError, KeyError, ValueError) as e:
        bad(f"{ALARMS_SOURCE}: the embedded config is TOML with targets and durations", str(e))
        return
    emf = cfg.get("emf")
    check(isinstance(emf, dict) and emf.get("to", "stdout") == "stdout",
          f"{ALARMS_SOURCE}: [emf] to = \"stdout\" (the awslogs driver ships it to CloudWatch Logs)")
    namespace = (emf or {}).get("namespace", "RPOAgent")
    try:
        tpl = yaml.load(path.read_text(), Loader=CfnLoader)
    except yaml.YAMLError as e:
        bad(f"{ALARMS_TEMPLATE}: valid YAML", str(e))
        return
    resources = tpl.get("Resources", {})
    alarms = {lid: r.get("Properties", {}) for lid, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Alarm"}
    found: dict = {}
    for lid, p in alarms.items():
        dims = {d.get("Name"): d.get("Value") for d in p.get("Dimensions", [])}
        found.setdefault((dims.get("Target"), dims.get("ReplicaRegion"), p.get("MetricName")), []).append(lid)
    want = {(t, r, m) for (t, r) in pairs for m in ALARM_METRICS}
    dupes = {k: v for k, v in found.items() if len(v) > 1}
    check(set(found) == want and not dupes,
          f"one alarm on each of {', '.join(ALARM_METRICS)} per (target, replica region): "
          f"{len(pairs)} pairs, {len(alarms)} alarms",
          f"missing: {sorted(want - set(found))}\nnot in the config: {sorted(set(found) - want)}\nduplicates: {dupes}")
    wrong = []
    for (t, r), objective in sorted(pairs.items()):
        for lid in found.get((t, r, "RPO"), []):
            p = alarms[lid]
            if not (isinstance(p.get("Threshold"), (int, float)) and float(p["Threshold"]) == objective
                    and p.get("Statistic") == "Maximum" and p.get("ComparisonOperator") == "GreaterThanThreshold"):
                wrong.append(f"{lid}: {p.get('Statistic')} {p.get('ComparisonOperator')} {p.get('Threshold')}, "
                             f"objective of {t} is {objective:g} s")
    check(not wrong, "every RPO alarm fires on Maximum > its target's objective in seconds ("
          + ", ".join(f"{t}→{r} {o:g} s" for (t, r), o in sorted(pairs.items())) + ")", "\n".join(wrong))
    not_breaching = sorted(lid for lid, p in alarms.items() if p.get("TreatMissingData") != "breaching")
    check(bool(alarms) and not not_breaching, f"every alarm ({len(alarms)}) has TreatMissingData: breaching",
          f"not breaching: {not_breaching}")
    other_ns = sorted(lid for lid, p in alarms.items() if p.get("Namespace") != namespace)
    topic = [{"Ref": "AlarmTopicArn"}]
    no_topic = sorted(lid for lid, p in alarms.items() if p.get("AlarmActions") != topic or p.get("OKActions") != topic)
    check(not other_ns and not no_topic and "AlarmTopicArn" in tpl.get("Parameters", {}),
          f"every alarm watches the [emf] namespace {namespace} and notifies the AlarmTopicArn parameter (ALARM and OK)",
          f"other namespace: {other_ns}\nwithout the topic: {no_topic}")
    dashboards = [r.get("Properties", {}) for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    try:
        body = dashboards[0]["DashboardBody"]
        body = json.loads(body["Fn::Sub"] if isinstance(body, dict) else body)
        shown = {(m[3], m[5]) for w in body["widgets"] for m in w.get("properties", {}).get("metrics", [])
                 if isinstance(m, list) and m[:3] == [namespace, "RPO", "Target"]}
        check(len(dashboards) == 1 and shown == set(pairs),
              f"the dashboard's body is JSON ({len(body['widgets'])} widgets) and plots the RPO of every pair",
              f"plotted: {sorted(shown)}\npairs: {sorted(pairs)}")
    except (IndexError, KeyError, TypeError, json.JSONDecodeError) as e:
        bad("one AWS::CloudWatch::Dashboard whose DashboardBody is JSON", repr(e))


# AWS's limits on what `rpo-agent alarms` writes (agent/src/alarms/limits.rs
# cites the pages): CloudFormation quotas (template body 51,200 bytes in the
# request, 1 MB from S3; 500 resources) and CloudWatch quotas (500 widgets per
# dashboard, 500 metrics per widget, 2,500 per dashboard, 100 alarms per alarm
# widget; Period × EvaluationPeriods ≤ 86,400 s).
LIMITS = {"direct": 51_200, "s3": 1_000_000, "resources": 500, "widgets": 500,
          "widget_metrics": 500, "dashboard_metrics": 2_500, "widget_alarms": 100, "evaluation": 86_400}


def scale_config(n: int) -> str:
    """A configuration of n (target, replica region) pairs: DynamoDB both ways
    (3 pairs), S3 and Aurora targets (1 each), as the unit tests' fixture."""
    out, left, i = ['[emf]\nto = "stdout"'], n, 0
    while left > 0:
        name = f"target-{i:04d}"
        if left >= 3 and i % 3 == 0:
            left -= 3
            out.append(f'[[target]]\nname = "{name}"\nkind = "dynamodb"\ntable = "{name}-table"\n'
                       'source = { region = "ap-northeast-1" }\n'
                       'replicas = [{ region = "ap-northeast-3" }, { region = "us-west-2" }]\ndirection = "both"')
        elif i % 3 == 1:
            left -= 1
            out.append(f'[[target]]\nname = "{name}"\nkind = "s3"\n'
                       f'source = {{ region = "ap-northeast-1", bucket = "{name}-tokyo" }}\n'
                       f'replicas = [{{ region = "ap-northeast-3", bucket = "{name}-osaka" }}]')
        else:
            left -= 1
            out.append(f'[[target]]\nname = "{name}"\nkind = "postgres"\n'
                       f'source = {{ region = "ap-northeast-1", url = "postgres://u@{name}.cluster-a.ap-northeast-1.rds.amazonaws.com/app" }}\n'
                       f'replicas = [{{ region = "ap-northeast-3", url = "postgres://u@{name}-o.cluster-ro-b.ap-northeast-3.rds.amazonaws.com/app" }}]')
        i += 1
    return "\n".join(out) + "\n"


def template_breaks(text: str, max_bytes: int) -> list:
    """The limits a template breaks, read with PyYAML and json alone."""
    tpl = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    res = tpl.get("Resources", {})
    out = []
    if len(text.encode()) > max_bytes:
        out.append(f"{len(text.encode())} bytes > {max_bytes}")
    if len(res) > LIMITS["resources"]:
        out.append(f"{len(res)} resources > {LIMITS['resources']}")
    for lid, r in res.items():
        p = r.get("Properties", {})
        if r.get("Type") == "AWS::CloudWatch::Alarm" and p.get("Period", 0) * p.get("EvaluationPeriods", 0) > LIMITS["evaluation"]:
            out.append(f"{lid}: Period × EvaluationPeriods > {LIMITS['evaluation']}")
    dash = [r["Properties"] for r in res.values() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    if len(dash) != 1:
        return out + [f"{len(dash)} dashboards"]
    body = json.loads(dash[0]["DashboardBody"]["Fn::Sub"])
    widgets = body["widgets"]
    per = [len(w.get("properties", {}).get("metrics", [])) for w in widgets]
    alarms = [len(w.get("properties", {}).get("alarms", [])) for w in widgets]
    if len(widgets) > LIMITS["widgets"]:
        out.append(f"{len(widgets)} widgets > {LIMITS['widgets']}")
    if max(per, default=0) > LIMITS["widget_metrics"]:
        out.append(f"a widget of {max(per)} metrics > {LIMITS['widget_metrics']}")
    if sum(per) > LIMITS["dashboard_metrics"]:
        out.append(f"{sum(per)} metrics > {LIMITS['dashboard_metrics']}")
    if max(alarms, default=0) > LIMITS["widget_alarms"]:
        out.append(f"an alarm widget of {max(alarms)} alarms > {LIMITS['widget_alarms']}")
    if "arn:aws:" in dash[0]["DashboardBody"]["Fn::Sub"]:
        out.append("the dashboard hard-codes the arn:aws: partition")
    return out


def check_alarm_limits(cli: Cli | None, cfn_lint: str) -> None:
    print("== `rpo-agent alarms` within AWS's limits (1, 10, 200, 1000 pairs)")
    if cli is None:
        bad("no binary to generate the templates with")
        return
    with tempfile.TemporaryDirectory(prefix="rpo-alarms-scale-") as d:
        for n in (1, 10, 200, 1000):
            cfg = Path(d) / f"p{n}.toml"
            cfg.write_text(scale_config(n))
            for upload in ("direct", "s3"):
                out = Path(d) / f"p{n}-{upload}"
                r = subprocess.run([str(cli.binary), "alarms", "--config", str(cfg), "--out-dir", str(out),
                                    *(["--s3"] if upload == "s3" else [])],
                                   capture_output=True, text=True, timeout=120)
                files = sorted(out.glob("rpo-alarms*.yaml"), key=lambda p: (len(p.name), p.name))
                if not check(r.returncode == 0 and files, f"{n} pairs ({upload}): rpo-agent alarms --out-dir writes the templates",
                             r.stderr[-2000:]):
                    continue
                broken, alarms, sizes = [], [], []
                for f in files:
                    text = f.read_text()
                    broken += [f"{f.name}: {b}" for b in template_breaks(text, LIMITS[upload])]
                    tpl = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                    alarms += [r["Properties"]["AlarmName"] for r in tpl["Resources"].values()
                               if r.get("Type") == "AWS::CloudWatch::Alarm"]
                    sizes.append(len(text.encode()))
                check(not broken and len(alarms) == 3 * n == len(set(alarms)),
                      f"{n} pairs ({upload}): {len(files)} template(s) of at most {max(sizes)} bytes, "
                      f"each within AWS's limits; {len(alarms)} alarms, each once",
                      "\n".join(broken[:20]) + f"\nalarms: {len(alarms)}, distinct {len(set(alarms))}, want {3 * n}")
                if n == 200:
                    lint = files if upload == "s3" else files[:3]
                    r = subprocess.run([cfn_lint, *map(str, lint)], capture_output=True, text=True, timeout=300)
                    check(r.returncode == 0, f"cfn-lint passes on the 200-pair templates ({upload}: "
                          f"{', '.join(f.name for f in lint)})", (r.stdout + r.stderr)[-3000:])
        # One file (stdout / --out) is refused, not written, when it would not fit.
        r = subprocess.run([str(cli.binary), "alarms", "--config", str(Path(d) / "p10.toml")],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2 and not r.stdout and "--out-dir" in r.stderr,
              "10 pairs to stdout: refused (exit 2), naming --out-dir, as one template would be over 51,200 bytes",
              f"exit {r.returncode}\n{r.stderr[-1000:]}")


def check_readme() -> None:
    print("== deploy/README.md")
    p = ROOT / "deploy/README.md"
    if not check(p.exists(), "deploy/README.md exists"):
        return
    text = p.read_text()
    refs = sorted(set(re.findall(r"\bdeploy/[A-Za-z0-9_./-]+[A-Za-z0-9_]", text)))
    missing = [r for r in refs if not (ROOT / r).exists()]
    check(not missing, f"every deploy/ path the README names exists ({len(refs)})", f"missing: {missing}")
    check("docker build -f deploy/Dockerfile" in text and "deploy/check" in text,
          "README gives the image build command and the check")
    # `--access-string '…'` of the commands, inline `on ~…` and fenced lines `on ~…`.
    acls = (re.findall(r"--access-string '([^']*)'", text) + re.findall(r"`(on ~[^`\n]*)`", text)
            + re.findall(r"(?m)^(on ~.*?)\s*$", text))
    wrong = sorted({a for a in acls if a != REDIS_ACL})
    check(len(acls) >= 2 and not wrong,
          f"the Redis RBAC user's access string in the README ({len(acls)}×) is the checked one: {REDIS_ACL}",
          f"found {acls}")


def main() -> int:
    global ROOT, CLI_SUBCOMMANDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cfn-lint", required=True)
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--bin")
    ap.add_argument("--full", action="store_true")
    a = ap.parse_args()
    ROOT = Path(a.root)
    os.chdir(ROOT)
    t0 = time.monotonic()
    binary = Path(a.bin) if a.bin else None
    if binary is not None and not binary.exists():
        bad(f"binary {binary} exists")
        binary = None
    binary = check_dockerfile(binary, a.full, Path(a.target_dir))
    cli = Cli(binary) if binary else None
    if cli:
        CLI_SUBCOMMANDS = cli.subcommands
    configs = check_task_definitions(cli)
    check_cloudformation(a.cfn_lint, configs)
    check_alarms(cli, configs)
    check_alarm_limits(cli, a.cfn_lint)
    check_readme()
    print()
    if PENDING:
        print(f"{PENDING} pending (IAM grants for DESIGN.md features not in this source yet)")
    print(f"deploy/check took {time.monotonic() - t0:.1f} s")
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
