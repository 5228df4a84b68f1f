"""Checks EMF documents, one per line, against the EMF specification.

Why: the agent's EMF lines are only worth something if CloudWatch Logs extracts them, and it
extracts nothing from a line that breaks one rule, silently. This checks each line against
`emf.schema.json` (what a schema can say) and the cross-member rules of README.md (what it
cannot): value members, dimension members, the timestamp window, the line size. It prints
one line per problem and exits 1 if there is any; 0 with a count otherwise.

    python check_emf.py FILE [--now UNIX_SECONDS]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jsonschema

HERE = Path(__file__).resolve().parent
MAX_VALUES = 100
MAX_LINE_BYTES = 262_118
MAX_DIMENSION_VALUE = 1024
PAST_MS = 14 * 24 * 3600 * 1000
FUTURE_MS = 2 * 3600 * 1000
HISTOGRAM_KEYS = {"Values", "Counts", "Max", "Min", "Count", "Sum"}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def value_problem(v) -> str | None:
    """Why v is not an EMF metric value (None: it is one)."""
    if _number(v):
        return None
    if isinstance(v, list):
        if len(v) > MAX_VALUES:
            return f"an array of {len(v)} values (at most {MAX_VALUES})"
        if not all(_number(x) for x in v):
            return "an array with a member that is not a number"
        return None
    if isinstance(v, dict):
        if set(v) != HISTOGRAM_KEYS:
            return f"an object with members {sorted(v)} (a histogram has exactly {sorted(HISTOGRAM_KEYS)})"
        values, counts = v["Values"], v["Counts"]
        if not (isinstance(values, list) and isinstance(counts, list)):
            return "a histogram whose Values or Counts is not an array"
        if len(values) != len(counts):
            return f"a histogram with {len(values)} Values and {len(counts)} Counts"
        if len(values) > MAX_VALUES:
            return f"a histogram of {len(values)} bins (at most {MAX_VALUES})"
        if not all(_number(x) for x in values) or not all(_number(c) and c >= 0 for c in counts):
            return "a histogram with a value or count that is not a number (counts ≥ 0)"
        if not all(_number(v[k]) for k in ("Max", "Min", "Count", "Sum")):
            return "a histogram whose Max, Min, Count or Sum is not a number"
        if abs(sum(counts) - v["Count"]) > 1e-9 * max(1.0, v["Count"]):
            return f"a histogram whose Counts add up to {sum(counts)}, not its Count {v['Count']}"
        if values and (min(values) < v["Min"] - 1e-9 or max(values) > v["Max"] + 1e-9):
            return "a histogram with a value outside [Min, Max]"
        return None
    return f"a {type(v).__name__}"


def problems(line: str, validator, now_ms: int) -> list[str]:
    if len(line.encode()) > MAX_LINE_BYTES:
        return [f"{len(line.encode())} bytes: over the {MAX_LINE_BYTES} bytes of one log event"]
    try:
        doc = json.loads(line)
    except ValueError as e:
        return [f"not JSON: {e}"]
    out = [f"schema: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    if out:
        return out
    ts = doc["_aws"]["Timestamp"]
    if ts < now_ms - PAST_MS or ts > now_ms + FUTURE_MS:
        out.append(f"Timestamp {ts} is outside [now - 14 days, now + 2 hours]")
    for i, directive in enumerate(doc["_aws"]["CloudWatchMetrics"]):
        names = [m["Name"] for m in directive["Metrics"]]
        if len(set(names)) != len(names):
            out.append(f"directive {i}: a metric is listed twice: {names}")
        dims = {d for dset in directive["Dimensions"] for d in dset}
        for name in names:
            if name not in doc:
                out.append(f"directive {i}: metric {name} has no member at the root")
            elif (why := value_problem(doc[name])) is not None:
                out.append(f"directive {i}: metric {name} is {why}")
            if name in dims:
                out.append(f"directive {i}: {name} is both a dimension and a metric")
        for d in sorted(dims):
            v = doc.get(d)
            if not isinstance(v, str) or not 1 <= len(v) <= MAX_DIMENSION_VALUE:
                out.append(f"directive {i}: dimension {d} is {json.dumps(v)} at the root (a string of 1-1024 characters)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--now", type=float, help="unix seconds the documents are judged at (default: now)")
    args = ap.parse_args()
    schema = json.loads((HERE / "emf.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    now_ms = int((args.now if args.now is not None else time.time()) * 1000)
    n = bad = 0
    for number, line in enumerate(args.file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        n += 1
        for p in problems(line, validator, now_ms):
            bad += 1
            print(f"{args.file}:{number}: {p}")
    if n == 0:
        print(f"{args.file}: no document")
        return 1
    print(f"{n} documents, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
