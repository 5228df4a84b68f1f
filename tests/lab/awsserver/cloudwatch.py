"""CloudWatch in the lab: AWS's own `ReplicationLatency` datapoints, readable over RPC v2 CBOR.

Why it exists: SRE teams compare the agent's lag with the figure AWS itself publishes, so the
lab must publish that figure as AWS does, and serve it to the agent's SDK:
1. Publishing. For every change the lab replicates (dynamodb_global.py, s3_replication.py),
   one datapoint goes into moto's own CloudWatch backend, value = readable_at - committed_at
   (the very figures of the ground-truth line), stamped when the change became readable:
   - DynamoDB global tables: `AWS/DynamoDB` `ReplicationLatency` {TableName, ReceivingRegion},
     Milliseconds, in the region where the write happened;
   - S3 replication, only for a rule with `Destination.Metrics` or `Destination.ReplicationTime`
     `Enabled`: `AWS/S3` `ReplicationLatency` {SourceBucket, DestinationBucket, RuleId},
     Seconds, in the source bucket's region.
   Nothing replicates during a stall, so nothing is published then, as with AWS. Because the
   data live in moto, every protocol moto speaks (query, JSON) sees them too.
2. Reading. aws-sdk-cloudwatch for Rust (1.140) speaks only Smithy RPC v2 CBOR
   (`POST /service/GraniteServiceVersion20100801/operation/GetMetricData`), which moto 5.2.5
   answers with 404. This module, a gateway extension for the signing name `monitoring`,
   answers GetMetricData in that protocol from moto's data; every other CloudWatch request
   (other operations, query/JSON protocols) still goes to moto untouched.
   GetMetricData here: MetricStat queries only (no metric math / Metrics Insights), exact
   dimension-set match, datapoints within [StartTime, EndTime) aggregated per Period bucket
   aligned to the epoch (floor(t / Period) * Period), newest first unless ScanBy says
   `TimestampAscending`; statistics SampleCount, Sum, Average, Minimum, Maximum and pNN[.N].
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import re
import uuid
from typing import Any

import cbor2
from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID

from .apirequest import AwsRequest
from .replies import Reply

log = logging.getLogger("cloudwatch")

RPC_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
_BASIC_STATS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,10})?|100)$")
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_MAX_DATAPOINTS = 100_800  # AWS's limit per GetMetricData call
_UTC = dt.timezone.utc


class BadRequest(Exception):
    def __init__(self, message: str, code: str = "InvalidParameterValue", status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def cbor_reply(status: int, body: dict[str, Any], extra: list[tuple[str, str]] | None = None) -> Reply:
    data = cbor2.dumps(body)  # Python floats are encoded as float64 (non-canonical mode)
    return Reply(
        status,
        [
            ("smithy-protocol", "rpc-v2-cbor"),
            ("Content-Type", "application/cbor"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            *(extra or []),
            ("Content-Length", str(len(data))),
        ],
        data,
    )


def cbor_error(status: int, code: str, message: str) -> Reply:
    """The rpc-v2-cbor error shape; `x-amzn-query-error` because CloudWatch is
    awsQueryCompatible (the Rust SDK takes the error code from that header when present)."""
    kind = "Sender" if status < 500 else "Receiver"
    return cbor_reply(status, {"__type": code, "message": message}, [("x-amzn-query-error", f"{code};{kind}")])


def _epoch(value: Any, what: str) -> float:
    if isinstance(value, dt.datetime):  # cbor2 decodes tag 1 into an aware datetime
        return (value if value.tzinfo else value.replace(tzinfo=_UTC)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise BadRequest(f"The parameter {what} must be a timestamp.")


def _str(value: Any, what: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"The parameter {what} is required and must be a non-empty string.")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"The parameter {what} must be an integer.")
    return value


def _stat(values: list[float], aggregated: list[MetricAggregatedDatum], stat: str) -> float | None:
    """One statistic over a bucket's raw values and statistic sets (PutMetricData StatisticValues)."""
    count = len(values) + sum(a.sample_count for a in aggregated)
    if count == 0:
        return None
    if stat == "SampleCount":
        return float(count)
    total = sum(values) + sum(a.sum for a in aggregated)
    if stat == "Sum":
        return float(total)
    if stat == "Average":
        return float(total / count)
    if stat == "Minimum":
        return float(min([*values, *(a.min for a in aggregated)]))
    if stat == "Maximum":
        return float(max([*values, *(a.max for a in aggregated)]))
    # pNN: nearest rank over the raw values (statistic sets carry no distribution).
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(float(stat[1:]) / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


# Metrics moto computes on every read from other services' state (`aws_metric_data`: in 5.2.5
# only S3's BucketSizeBytes / NumberOfObjects, which sum every object version of every bucket).
# None of them is a metric this module publishes, so a query for one of those skips them.
_PUBLISHED = {("AWS/DynamoDB", "ReplicationLatency"), ("AWS/S3", "ReplicationLatency")}


class _SeriesIndex:
    """One region's `metric_data` (moto's list of every datapoint put) grouped by metric
    (namespace, name, dimension set), kept up to date incrementally: moto only appends to that
    list. Without it every GetMetricData scanned every datapoint ever published, under the
    moto lock: with 1000 targets ≈ 20 ms per call after 10 minutes, growing without bound."""

    def __init__(self, data: list):
        self.data = data
        self.seen = 0
        self.series: dict[tuple[str, str, frozenset], list] = {}

    def current(self, data: list) -> bool:
        return data is self.data and len(data) >= self.seen

    def update(self) -> None:
        new = self.data[self.seen:]
        for md in new:
            key = (md.namespace, md.name, frozenset((d.name, d.value) for d in md.dimensions))
            self.series.setdefault(key, []).append(md)
        self.seen += len(new)

    def get(self, namespace: str, name: str, dimensions: frozenset) -> list:
        return self.series.get((namespace, name, dimensions), [])


class CloudWatch:
    """Publisher of the replication metrics, and the `monitoring` gateway extension."""

    # Nothing unlocked: reading moto's metric list needs the moto lock (replication workers
    # append to it while holding that lock).
    UNLOCKED_OPS: frozenset[str] = frozenset()

    def __init__(self, account_id: str = DEFAULT_ACCOUNT_ID):
        self.account_id = account_id
        self.published: dict[str, int] = {}  # "region namespace" -> datapoints published
        self._indexes: dict[str, _SeriesIndex] = {}  # region -> moto's datapoints by metric

    def backend(self, region: str):
        return cloudwatch_backends[self.account_id][region]

    # ---- publishing (called by the replication workers, under the moto lock) ---------------
    def _put(self, region: str, namespace: str, dimensions: dict[str, str], value: float, unit: str, at: float) -> None:
        try:
            self.backend(region).put_metric_data(
                namespace,
                [{
                    "MetricName": "ReplicationLatency",
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    "Value": float(value),
                    "Unit": unit,
                    # moto keeps naive UTC datetimes (its utcnow()); microseconds are kept.
                    "Timestamp": dt.datetime.fromtimestamp(at, _UTC).replace(tzinfo=None),
                }],
            )
            key = f"{region} {namespace}"
            self.published[key] = self.published.get(key, 0) + 1
        except Exception:  # a metric must never break replication
            log.exception("publishing %s ReplicationLatency %s in %s", namespace, dimensions, region)

    def dynamodb_replicated(self, table: str, source_region: str, replica_region: str, committed_at: float, readable_at: float) -> None:
        self._put(
            source_region, "AWS/DynamoDB", {"TableName": table, "ReceivingRegion": replica_region},
            (readable_at - committed_at) * 1000.0, "Milliseconds", readable_at,
        )

    def s3_replicated(self, source_bucket: str, dest_bucket: str, rule_id: str, source_region: str, committed_at: float, readable_at: float) -> None:
        self._put(
            source_region, "AWS/S3",
            {"SourceBucket": source_bucket, "DestinationBucket": dest_bucket, "RuleId": rule_id},
            readable_at - committed_at, "Seconds", readable_at,
        )

    def status(self) -> dict[str, int]:
        return dict(self.published)

    # ---- gateway hooks ---------------------------------------------------------------------
    def journaled(self, req: AwsRequest) -> bool:
        return False

    def error_reply(self, req: AwsRequest, kind: str) -> Reply:
        # No fault grammar targets CloudWatch today; shaped right should one ever do so.
        if kind == "throttle":
            return cbor_error(400, "Throttling", "Rate exceeded")
        if kind == "503":
            return cbor_error(503, "ServiceUnavailable", "Service is unavailable")
        return cbor_error(500, "InternalFailure", "Internal failure")

    def before(self, req: AwsRequest) -> Reply | None:
        if req.method != "POST" or req.path != RPC_PREFIX + "GetMetricData":
            return None  # everything else: moto's own answer
        try:
            return self.get_metric_data(req)
        except BadRequest as e:
            log.info("GetMetricData (rpc-v2-cbor) refused: %s: %s", e.code, e)
            return cbor_error(e.status, e.code, str(e))
        except Exception:  # a lab bug: say so in the protocol, not with moto's 404
            log.exception("GetMetricData (rpc-v2-cbor) failed")
            return cbor_error(500, "InternalFailure", "The lab's GetMetricData failed; see aws.log.")

    def after(self, req: AwsRequest, reply: Reply) -> Reply:
        return reply

    # ---- GetMetricData ---------------------------------------------------------------------
    def get_metric_data(self, req: AwsRequest) -> Reply:
        if not req.region:
            raise BadRequest("Request is missing Authentication Token (SigV4 credential scope).", "MissingAuthenticationToken", 403)
        try:
            params = cbor2.loads(req.body) if req.body else {}
        except Exception as e:
            raise BadRequest(f"The request body is not valid CBOR: {e}") from None
        if not isinstance(params, dict):
            raise BadRequest("The request body must be a CBOR map.")
        queries = self._parse_queries(params.get("MetricDataQueries"))
        if "StartTime" not in params or "EndTime" not in params:
            raise BadRequest("The parameters StartTime and EndTime are required.")
        start, end = _epoch(params["StartTime"], "StartTime"), _epoch(params["EndTime"], "EndTime")
        if start >= end:
            raise BadRequest("The parameter StartTime must be less than the parameter EndTime.")
        scan_by = params.get("ScanBy") or "TimestampDescending"
        if scan_by not in ("TimestampDescending", "TimestampAscending"):
            raise BadRequest(f"The value {scan_by!r} for parameter ScanBy is invalid.")
        max_points = _MAX_DATAPOINTS
        if params.get("MaxDatapoints") is not None:
            max_points = _int(params["MaxDatapoints"], "MaxDatapoints")
            if max_points < 1:
                raise BadRequest("The parameter MaxDatapoints must be greater than 0.")
        offset = self._offset(params.get("NextToken"))
        try:
            backend = self.backend(req.region)
        except Exception:
            raise BadRequest(f"Unknown region {req.region!r}.") from None

        # The gateway holds the moto lock here: a stable view of moto's metric list.
        series = [self._series(q, self._candidates(req.region, backend, q), start, end, scan_by) for q in queries]

        # Pagination over all returned datapoints, in query order.
        results, seen, remaining = [], 0, False
        for q, points in zip(queries, series):
            if not q["ReturnData"]:
                continue
            lo = min(max(offset - seen, 0), len(points))
            hi = min(max(offset + max_points - seen, 0), len(points))
            seen += len(points)
            partial = hi < len(points)
            remaining = remaining or partial
            page = points[lo:hi]
            results.append({
                "Id": q["Id"],
                "Label": q["Label"],
                "Timestamps": [cbor2.CBORTag(1, float(t)) for t, _ in page],
                "Values": [float(v) for _, v in page],
                "StatusCode": "PartialData" if partial else "Complete",
            })
        body: dict[str, Any] = {"MetricDataResults": results, "Messages": []}
        if remaining:
            body["NextToken"] = base64.urlsafe_b64encode(json.dumps({"lab_offset": offset + max_points}).encode()).decode()
        return cbor_reply(200, body)

    def _candidates(self, region: str, backend: Any, q: dict[str, Any]) -> list:
        """The datapoints that may belong to query q: its metric's series (what
        `backend.get_all_metrics()` holds for it, in the same order), without a full scan."""
        index = self._indexes.get(region)
        if index is None or not index.current(backend.metric_data):
            index = self._indexes[region] = _SeriesIndex(backend.metric_data)
        index.update()
        data = index.get(q["Namespace"], q["MetricName"], q["Dimensions"])
        if (q["Namespace"], q["MetricName"]) not in _PUBLISHED:
            data = data + backend.aws_metric_data  # computed from other services, every call
        return data

    @staticmethod
    def _offset(token: Any) -> int:
        if token is None:
            return 0
        try:
            offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))["lab_offset"]
            if isinstance(offset, int) and offset >= 0:
                return offset
        except Exception:
            pass
        raise BadRequest("The service cannot process the given NextToken.", "InvalidNextToken")

    @staticmethod
    def _parse_queries(raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise BadRequest("The parameter MetricDataQueries is required and must be a non-empty list.")
        if len(raw) > 500:
            raise BadRequest("The collection MetricDataQueries must not have a size greater than 500.")
        out, ids = [], set()
        for n, q in enumerate(raw, 1):
            where = f"MetricDataQueries.member.{n}"
            if not isinstance(q, dict):
                raise BadRequest(f"The parameter {where} must be a map.")
            qid = _str(q.get("Id"), f"{where}.Id")
            if not _ID.match(qid) or qid in ids:
                raise BadRequest(f"The value {qid!r} for parameter {where}.Id is invalid or not unique.")
            ids.add(qid)
            if "Expression" in q:
                raise BadRequest(f"{where}: the lab's CloudWatch serves MetricStat queries only (no Expression).")
            stat = q.get("MetricStat")
            if not isinstance(stat, dict):
                raise BadRequest(f"The parameter {where}.MetricStat is required.")
            metric = stat.get("Metric")
            if not isinstance(metric, dict):
                raise BadRequest(f"The parameter {where}.MetricStat.Metric is required.")
            dims = metric.get("Dimensions") or []
            if not isinstance(dims, list) or not all(isinstance(d, dict) for d in dims):
                raise BadRequest(f"The parameter {where}.MetricStat.Metric.Dimensions must be a list of maps.")
            dimset = frozenset(
                (_str(d.get("Name"), f"{where}.MetricStat.Metric.Dimensions.Name"),
                 _str(d.get("Value"), f"{where}.MetricStat.Metric.Dimensions.Value", required=False) or "")
                for d in dims
            )
            period = _int(stat.get("Period"), f"{where}.MetricStat.Period")
            if period < 1 or not (period in (1, 5, 10, 20, 30) or period % 60 == 0):
                raise BadRequest(f"The parameter {where}.MetricStat.Period must be 1, 5, 10, 20, 30 or a multiple of 60.")
            stat_name = _str(stat.get("Stat"), f"{where}.MetricStat.Stat")
            if stat_name not in _BASIC_STATS and not (_PERCENTILE.match(stat_name) and float(stat_name[1:]) <= 100):
                raise BadRequest(f"The value {stat_name!r} for parameter {where}.MetricStat.Stat is not supported "
                                 f"by the lab (one of {', '.join(_BASIC_STATS)}, pNN).")
            name = _str(metric.get("MetricName"), f"{where}.MetricStat.Metric.MetricName")
            return_data = q.get("ReturnData", True)
            out.append({
                "Id": qid,
                "Label": _str(q.get("Label"), f"{where}.Label", required=False) or name,
                "Namespace": _str(metric.get("Namespace"), f"{where}.MetricStat.Metric.Namespace"),
                "MetricName": name,
                "Dimensions": dimset,
                "Period": period,
                "Stat": stat_name,
                "Unit": _str(stat.get("Unit"), f"{where}.MetricStat.Unit", required=False),
                "ReturnData": return_data is not False,
            })
        return out

    @staticmethod
    def _series(q: dict[str, Any], data: list, start: float, end: float, scan_by: str) -> list[tuple[int, float]]:
        """(bucket start, statistic) per non-empty Period bucket, in ScanBy order."""
        buckets: dict[int, tuple[list[float], list[MetricAggregatedDatum]]] = {}
        for md in data:
            if md.namespace != q["Namespace"] or md.name != q["MetricName"]:
                continue
            if frozenset((d.name, d.value) for d in md.dimensions) != q["Dimensions"]:
                continue
            if q["Unit"] and md.unit != q["Unit"]:
                continue
            ts = md.timestamp
            t = (ts if ts.tzinfo else ts.replace(tzinfo=_UTC)).timestamp()
            if not start <= t < end:
                continue
            bucket = buckets.setdefault(int(t // q["Period"]) * q["Period"], ([], []))
            if isinstance(md, MetricDatum):
                bucket[0].append(float(md.value))
            elif isinstance(md, MetricAggregatedDatum):
                bucket[1].append(md)
        points = []
        for t in sorted(buckets, reverse=scan_by == "TimestampDescending"):
            value = _stat(*buckets[t], q["Stat"])
            if value is not None:
                points.append((t, value))
        return points
