"""Is (namespace, metric, dimension names) one that AWS publishes? And where do the agent's come from?

Why it exists: a CloudWatch query or alarm on a metric/dimension set AWS never publishes is not an
error anywhere, it is just empty forever. This module holds the published list (aws-cdk-lib's canned
metrics, cdk_metrics.py, plus documented_metrics.json where aws-cdk-lib lists a metric without any
dimension set or not at all) and pulls every metric reference out of what the agent produces: the
MetricStat queries of its GetMetricData requests (from the lab's request log) and the alarms,
dashboard metric arrays and SEARCH expressions of `rpo-agent alarms` templates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cdk_metrics

HERE = Path(__file__).resolve().parent
# CloudWatch statistics syntax (GetMetricData Stat / dashboard "stat" / SEARCH's second argument).
_STAT = re.compile(r"^(SampleCount|Sum|Average|Minimum|Maximum|IQM|(p|tm|wm|tc|ts|pr|TM|WM|TC|TS|PR)"
                   r"(\d{1,2}(\.\d+)?|100|\([^)]*\)))$")
_SEARCH = re.compile(r"SEARCH\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'([^']*)'\s*,\s*(\d+)\s*\)")
_TERM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class MetricRef:
    namespace: str
    metric: str
    dims: frozenset
    where: str  # what named it, for the message
    stat: str | None = None
    exact: bool = True  # False: a SEARCH without a schema matches any set containing `dims`


class Published:
    def __init__(self) -> None:
        self.cdk = cdk_metrics.load()
        doc = json.loads((HERE / "documented_metrics.json").read_text())
        self.documented = {(m["namespace"], m["metric"]): m for m in doc["metrics"]}

    def sets(self, ns: str, metric: str) -> tuple[list[frozenset] | None, str]:
        """The published dimension sets and where they come from; None: the metric is unknown."""
        cdk = self.cdk.get(ns, {}).get(metric)
        if cdk and cdk["dimension_sets"]:
            return [frozenset(s) for s in cdk["dimension_sets"]], f"aws-cdk-lib {cdk_metrics.VERSION} {cdk['files'][0]}"
        doc = self.documented.get((ns, metric))
        if doc is not None:
            src = doc["url"] + (" (aws-cdk-lib lists it without dimensions)" if cdk else "")
            return ([frozenset(s) for s in doc["dimension_sets"]] if doc["dimension_sets"] else []), src
        if cdk:
            return [], f"aws-cdk-lib {cdk_metrics.VERSION} (no dimension set, none documented in documented_metrics.json)"
        return None, f"neither aws-cdk-lib {cdk_metrics.VERSION} nor documented_metrics.json"

    def problem(self, ref: MetricRef) -> str | None:
        if ref.stat is not None and not _STAT.match(ref.stat):
            return f"{ref.where}: {ref.namespace} {ref.metric}: statistic {ref.stat!r} is not a CloudWatch statistic"
        sets, src = self.sets(ref.namespace, ref.metric)
        if sets is None:
            known = sorted(self.cdk.get(ref.namespace, {}))
            hint = f" (namespace {ref.namespace} has {len(known)} metrics there)" if known else f" (namespace {ref.namespace} unknown)"
            return f"{ref.where}: metric {ref.namespace} {ref.metric} is not published: {src}{hint}"
        ok = any(ref.dims == s for s in sets) if ref.exact else any(ref.dims <= s for s in sets)
        if ok:
            return None
        want = "; ".join("{" + ", ".join(sorted(s)) + "}" for s in sets) or "no documented dimension set"
        how = "" if ref.exact else " as a subset"
        return (f"{ref.where}: {ref.namespace} {ref.metric} with dimensions {{{', '.join(sorted(ref.dims))}}} is not "
                f"a published dimension set{how}; published: {want} ({src})")


# ---- where the agent names metrics ---------------------------------------------------------

def search_refs(expr: str, where: str) -> list[MetricRef]:
    """Every SEARCH('…', 'stat', period) in a metric math expression. `{NS,Dim,…}` fixes the exact
    dimension set; without it, Namespace="…" and the Dim="…" terms must be part of some set."""
    out = []
    for query, stat, _period in _SEARCH.findall(expr):
        schema = re.match(r"\s*\{([^}]*)\}", query)
        terms = dict(_TERM.findall(query))
        metric = terms.pop("MetricName", None)
        if schema:
            ns, *dims = [p.strip().strip('"') for p in schema.group(1).split(",")]
            stray = set(terms) - set(dims) - {"Namespace"}
            if stray:  # a term on a dimension outside the schema matches nothing
                dims = [*dims, *sorted(stray)]
            out.append(MetricRef(ns, metric or "?", frozenset(dims), f"{where} SEARCH", stat, exact=True))
        else:
            ns = terms.pop("Namespace", "?")
            out.append(MetricRef(ns, metric or "?", frozenset(terms), f"{where} SEARCH", stat, exact=False))
    return out


def get_metric_data_refs(entries: list[dict]) -> list[MetricRef]:
    out = []
    for e in entries:
        if e.get("operation") != "GetMetricData":
            continue
        for q in (e.get("params") or {}).get("MetricDataQueries", []):
            where = f"GetMetricData ({e.get('region')}) query {q.get('Id')}"
            ms = q.get("MetricStat")
            if ms:
                m = ms.get("Metric", {})
                dims = frozenset(d.get("Name") for d in m.get("Dimensions", []))
                out.append(MetricRef(m.get("Namespace", "?"), m.get("MetricName", "?"), dims, where, ms.get("Stat")))
            if q.get("Expression"):
                out += search_refs(q["Expression"], where)
    return out


def _cfn_yaml(text: str):
    import yaml  # the lab venv has PyYAML (moto)

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {f"Fn::{suffix}" if suffix not in ("Ref", "Condition") else suffix: value}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(text, Loader=Loader)


def _dashboard_rows(metrics: list) -> list[tuple[list, dict]]:
    """Dashboard metric rows with CloudWatch's shorthand resolved: "." repeats the previous row's
    value at that position, "..." the rest of the previous row."""
    rows, prev = [], []
    for row in metrics:
        if isinstance(row, dict):
            rows.append(([], row))
            continue
        opts = row[-1] if row and isinstance(row[-1], dict) else {}
        items = [x for x in row if not isinstance(x, dict)]
        full: list = []
        for i, x in enumerate(items):
            if x == "...":
                full += prev[len(full):]
                break
            full.append(prev[i] if x == "." and i < len(prev) else x)
        rows.append((full, opts))
        prev = full
    return rows


def template_refs(text: str, name: str) -> list[MetricRef]:
    tpl = _cfn_yaml(text)
    out = []
    for lid, res in (tpl.get("Resources") or {}).items():
        p = res.get("Properties") or {}
        where = f"{name} {lid}"
        if res.get("Type") == "AWS::CloudWatch::Alarm":
            if p.get("MetricName"):
                dims = frozenset(d.get("Name") for d in p.get("Dimensions", []))
                out.append(MetricRef(p.get("Namespace", "?"), p["MetricName"], dims, where,
                                     p.get("Statistic") or p.get("ExtendedStatistic")))
            for q in p.get("Metrics", []) or []:
                ms = q.get("MetricStat")
                if ms:
                    m = ms.get("Metric", {})
                    out.append(MetricRef(m.get("Namespace", "?"), m.get("MetricName", "?"),
                                         frozenset(d.get("Name") for d in m.get("Dimensions", [])), where, ms.get("Stat")))
                if q.get("Expression"):
                    out += search_refs(q["Expression"], where)
        elif res.get("Type") == "AWS::CloudWatch::Dashboard":
            body = p.get("DashboardBody")
            body = body.get("Fn::Sub", body) if isinstance(body, dict) else body
            if isinstance(body, list):  # !Sub [text, vars]
                body = body[0]
            for w, widget in enumerate(json.loads(body).get("widgets", [])):
                wprops = widget.get("properties", {})
                wwhere = f"{where} widget {w} ({wprops.get('title', '')})"
                for row, opts in _dashboard_rows(wprops.get("metrics", []) or []):
                    if "expression" in opts:
                        out += search_refs(opts["expression"], wwhere)
                    if len(row) >= 2:
                        dims = frozenset(row[2::2])
                        out.append(MetricRef(row[0], row[1], dims, wwhere, opts.get("stat") or wprops.get("stat")))
    return out
