"""AWS's published CloudWatch metric list, as aws-cdk-lib ships it: namespace → metric → dimension sets.

Why it exists: the agent queries AWS's own lag metrics and its `rpo-agent alarms` templates name
them; a wrong metric or dimension name is silently "no data" on AWS, never an error. aws-cdk-lib's
`aws-*/lib/*-canned-metrics.generated.{js,d.ts}` are generated from CloudWatch's machine-readable
metric specification: the `.js` names each method's namespace, metric and default statistic, the
`.d.ts` gives each method's overloads, one per published dimension set. This module fetches the
pinned tarball once with `npm pack` into ~/.cache/rpo-agent/aws-facts/, checks its integrity,
extracts the facts into a JSON file next to it and reads that afterwards (milliseconds).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import tarfile
from pathlib import Path

VERSION = "2.278.0"
PACKAGE = f"aws-cdk-lib@{VERSION}"
# npm's `dist.integrity` of aws-cdk-lib-2.278.0.tgz (`npm view aws-cdk-lib@2.278.0 dist.integrity`).
INTEGRITY = "sha512-E5OfaAeWGpZk9TWUodhsNLLCPzM8ObydK5BewEgfOGwYt6UA+8po/+SyLLuFr4DoSjw17vMZg9eCNP6nlymNJg=="
CACHE = Path.home() / ".cache" / "rpo-agent" / "aws-facts"

_JS_METHOD = re.compile(
    r'(?:static\s+)?(\w+)\(dimensions\)\{return\{namespace:"([^"]+)",metricName:"([^"]+)",'
    r'dimensionsMap:dimensions,statistic:"([^"]+)"\}\}'
)
_DTS_METHOD = re.compile(r"static\s+(\w+)\(this:\s*void,\s*dimensions:\s*\{([^}]*)\}\)")
_DTS_KEY = re.compile(r"(\w+)\s*:\s*string")


def _tarball() -> Path:
    tgz = CACHE / f"aws-cdk-lib-{VERSION}.tgz"
    if not tgz.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "pack", PACKAGE, "--silent", "--pack-destination", str(CACHE)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or not tgz.exists():
            raise RuntimeError(f"npm pack {PACKAGE} failed: {r.stderr.strip()[-500:]}")
    got = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if got != INTEGRITY:
        tgz.unlink()
        raise RuntimeError(f"{tgz.name}: integrity {got[:24]}… is not the pinned {INTEGRITY[:24]}… (removed)")
    return tgz


def _extract(tgz: Path) -> dict:
    """{namespace: {metric: {"statistics": [...], "dimension_sets": [[names...], ...], "files": [...]}}}"""
    js: dict[str, str] = {}
    dts: dict[str, str] = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for m in tar:
            if "-canned-metrics.generated." not in m.name or not m.isfile():
                continue
            text = tar.extractfile(m).read().decode()
            stem = m.name.rsplit(".generated.", 1)[0]
            if m.name.endswith(".js"):
                js[stem] = text
            elif m.name.endswith(".d.ts"):
                dts[stem] = text
    out: dict = {}
    for stem, text in js.items():
        overloads: dict[str, list[list[str]]] = {}
        for method, body in _DTS_METHOD.findall(dts.get(stem, "")):
            overloads.setdefault(method, []).append(sorted(_DTS_KEY.findall(body)))
        for method, namespace, metric, stat in _JS_METHOD.findall(text):
            entry = out.setdefault(namespace, {}).setdefault(metric, {"statistics": [], "dimension_sets": [], "files": []})
            if stat not in entry["statistics"]:
                entry["statistics"].append(stat)
            for dims in overloads.get(method, []):
                if dims and dims not in entry["dimension_sets"]:
                    entry["dimension_sets"].append(dims)
            name = stem.split("package/", 1)[-1] + ".generated.d.ts"
            if name not in entry["files"]:
                entry["files"].append(name)
    return out


def load() -> dict:
    facts = CACHE / f"aws-cdk-lib-{VERSION}-canned-metrics.json"
    if facts.exists():
        return json.loads(facts.read_text())
    data = _extract(_tarball())
    if not data.get("AWS/DynamoDB"):
        raise RuntimeError(f"{PACKAGE}: no canned metrics found (layout changed?)")
    tmp = facts.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(facts)
    return data


if __name__ == "__main__":
    d = load()
    print(f"{PACKAGE}: {len(d)} namespaces, {sum(len(v) for v in d.values())} metrics")
    for ns, metric in [("AWS/DynamoDB", "ReplicationLatency"), ("AWS/ElastiCache", "GlobalDatastoreReplicationLag")]:
        print(ns, metric, d.get(ns, {}).get(metric))
