"""CloudWatch Logs in the lab: Embedded Metric Format (EMF) extraction, as AWS does it.

Why it exists: the agent prints EMF documents on stdout; on ECS the awslogs driver ships them
to CloudWatch Logs, which turns every valid document into CloudWatch datapoints. Tests must
read the agent's own figures back with GetMetricData, so the lab extracts them too. moto 5.2.5
stores log events and never extracts anything.

This is the gateway extension for the SigV4 signing name `logs` (awsJson1_1,
`X-Amz-Target: Logs_20140328.<Op>`). Every request reaches moto unchanged; after moto stored
a PutLogEvents batch (200), each stored event whose message is a JSON object with a root
`_aws` member is validated against the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
- `_aws.Timestamp` (ms since the epoch, 14 days back to 2 hours ahead) stamps the datapoints;
- `_aws.CloudWatchMetrics`: directives {Namespace (1-255, not `AWS/`), Dimensions (sets of
  <= 30 root member names whose values are strings of 1-1024 chars; `[]` = no dimensions),
  Metrics (<= 100 {Name, Unit?, StorageResolution? 1|60})};
- each metric's value is the root member of its name: a number, an array of <= 100 numbers,
  or a histogram {"Values", "Counts", "Max"?, "Min"?, "Count"?, "Sum"?} (aws-embedded-metrics-java).
A valid document becomes, per directive x dimension set x metric, datapoints in moto's
CloudWatch backend of the request's region (put_metric_data, Values/Counts for a histogram,
unit `None` when none is given), so the lab's GetMetricData (cloudwatch.py, CBOR) and moto's
own protocols see them. An invalid one is not extracted at all (the event stays a plain log
event, as on AWS): it is counted by reason in `status()`, logged to aws.log, and counted in
`AWS/Logs` `EMFValidationErrors` / `EMFParsingErrors` {LogGroupName} (Count), as AWS does.
A message that starts with `{`, mentions `"_aws"` and is not JSON is a parsing error.
Extraction never breaks PutLogEvents: any failure is logged and moto's answer returned.

Lab limits: a histogram whose Counts add up to more than MAX_HISTOGRAM_SAMPLES is refused
(`histogram_too_many_samples`: moto keeps one datum per sample); StorageResolution is checked
but every sample is kept at full resolution (as everything in the lab's CloudWatch).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import uuid
from typing import Any

from .apirequest import AwsRequest
from .replies import Reply

log = logging.getLogger("logs")

TARGET_PREFIX = "Logs_20140328."
# Control-plane operations replayed after `aws kill` / `aws start` (journal.py).
_JOURNALED = frozenset({"CreateLogGroup", "CreateLogStream", "DeleteLogGroup", "DeleteLogStream", "PutRetentionPolicy"})

UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})
MAX_DIMENSIONS = 30  # per dimension set
MAX_METRICS = 100  # per directive
MAX_VALUES = 100  # per value array / histogram
MAX_NAME = 255
MAX_DIMENSION_VALUE = 1024
MAX_AGE_MS = 14 * 24 * 3600 * 1000
MAX_AHEAD_MS = 2 * 3600 * 1000
MAX_HISTOGRAM_SAMPLES = 100_000  # lab limit (moto stores one datum per counted sample)

# Why a document was not extracted. "invalid_json" is a parsing error, every other reason a
# validation error (AWS's two EMF error metrics).
PARSING_REASONS = frozenset({"invalid_json"})
_UTC = dt.timezone.utc


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _name(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= MAX_NAME


def _value(name: str, raw: Any) -> tuple[list[float], list[float] | None]:
    """A metric's root member -> (values, counts or None)."""
    if _number(raw):
        return [float(raw)], None
    if isinstance(raw, list):
        if len(raw) > MAX_VALUES:
            raise Rejected("too_many_values", f"{name}: {len(raw)} values (at most {MAX_VALUES})")
        if not all(_number(v) for v in raw):
            raise Rejected("value_not_numeric", f"{name}: an array member is not a number")
        return [float(v) for v in raw], None
    if isinstance(raw, dict):
        values, counts = raw.get("Values"), raw.get("Counts")
        if not isinstance(values, list) or not isinstance(counts, list) or len(values) != len(counts):
            raise Rejected("histogram_invalid", f"{name}: Values and Counts must be arrays of equal length")
        if len(values) > MAX_VALUES:
            raise Rejected("too_many_values", f"{name}: {len(values)} histogram values (at most {MAX_VALUES})")
        if not all(_number(v) for v in values) or not all(_number(c) and c >= 0 for c in counts):
            raise Rejected("histogram_invalid", f"{name}: Values must be numbers, Counts numbers >= 0")
        for key in ("Max", "Min", "Count", "Sum"):
            if key in raw and not _number(raw[key]):
                raise Rejected("histogram_invalid", f"{name}: {key} is not a number")
        if sum(int(c) for c in counts) > MAX_HISTOGRAM_SAMPLES:
            raise Rejected("histogram_too_many_samples", f"{name}: Counts add up to more than the lab's {MAX_HISTOGRAM_SAMPLES}")
        return [float(v) for v in values], [float(c) for c in counts]
    raise Rejected("value_not_numeric", f"{name}: {type(raw).__name__} is not a number, an array of numbers or a histogram")


def extract(doc: dict[str, Any], now_ms: float) -> list[tuple[str, list[dict[str, Any]]]]:
    """A parsed document with a root `_aws` -> [(namespace, put_metric_data entries)].
    Raises Rejected (nothing is extracted) for any violation of the specification."""
    meta = doc["_aws"]
    if not isinstance(meta, dict):
        raise Rejected("aws_not_object", "_aws is not an object")
    if "Timestamp" not in meta:
        raise Rejected("timestamp_missing", "_aws.Timestamp is missing")
    ts = meta["Timestamp"]
    if not _number(ts) or ts < 0:
        raise Rejected("timestamp_invalid", f"_aws.Timestamp {ts!r} is not a number of ms since the epoch")
    if ts < now_ms - MAX_AGE_MS:
        raise Rejected("timestamp_too_old", f"_aws.Timestamp {ts} is more than 14 days old")
    if ts > now_ms + MAX_AHEAD_MS:
        raise Rejected("timestamp_too_new", f"_aws.Timestamp {ts} is more than 2 hours ahead")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not all(isinstance(d, dict) for d in directives):
        raise Rejected("directives_invalid", "_aws.CloudWatchMetrics is not an array of objects")
    stamp = dt.datetime.fromtimestamp(ts / 1000.0, _UTC).replace(tzinfo=None)  # moto: naive UTC
    out = []
    for n, d in enumerate(directives):
        where = f"CloudWatchMetrics[{n}]"
        namespace = d.get("Namespace")
        if not _name(namespace):
            raise Rejected("namespace_invalid", f"{where}.Namespace is not a string of 1-{MAX_NAME} characters")
        if namespace.startswith("AWS/"):
            raise Rejected("namespace_reserved", f"{where}.Namespace {namespace!r} starts with AWS/")
        dimsets = d.get("Dimensions")
        if not isinstance(dimsets, list) or not all(isinstance(s, list) and all(isinstance(k, str) for k in s) for s in dimsets):
            raise Rejected("dimensions_invalid", f"{where}.Dimensions is not an array of arrays of strings")
        for s in dimsets:
            if len(s) > MAX_DIMENSIONS:
                raise Rejected("too_many_dimensions", f"{where}: a dimension set has {len(s)} keys (at most {MAX_DIMENSIONS})")
            if len(set(s)) != len(s):
                raise Rejected("dimensions_invalid", f"{where}: a dimension set repeats a key")
            for key in s:
                if key not in doc:
                    raise Rejected("dimension_missing", f"{where}: dimension {key!r} is not a root member")
                if not isinstance(doc[key], str):
                    raise Rejected("dimension_not_string", f"{where}: dimension {key!r} is {type(doc[key]).__name__}, not a string")
                if not 1 <= len(doc[key]) <= MAX_DIMENSION_VALUE:
                    raise Rejected("dimension_value_invalid", f"{where}: dimension {key!r} is empty or longer than {MAX_DIMENSION_VALUE}")
        metrics = d.get("Metrics")
        if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
            raise Rejected("metrics_invalid", f"{where}.Metrics is not an array of objects")
        if len(metrics) > MAX_METRICS:
            raise Rejected("too_many_metrics", f"{where}: {len(metrics)} metrics (at most {MAX_METRICS})")
        entries = []
        for m in metrics:
            name = m.get("Name")
            if not _name(name):
                raise Rejected("metrics_invalid", f"{where}: a metric Name is not a string of 1-{MAX_NAME} characters")
            unit = m.get("Unit", "None")
            if unit not in UNITS:
                raise Rejected("unit_invalid", f"{where}: {name}: unknown Unit {unit!r}")
            if "StorageResolution" in m and (not isinstance(m["StorageResolution"], int) or isinstance(m["StorageResolution"], bool)
                                             or m["StorageResolution"] not in (1, 60)):
                raise Rejected("storage_resolution_invalid", f"{where}: {name}: StorageResolution must be 1 or 60")
            if name not in doc:
                raise Rejected("value_missing", f"{where}: metric {name!r} has no root member")
            values, counts = _value(name, doc[name])
            if not values:
                continue  # an empty array: nothing to publish (moto would publish a 0)
            for s in dimsets or [[]]:  # `"Dimensions": []`: the metric without dimensions
                entry: dict[str, Any] = {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": doc[k]} for k in s],
                    "Timestamp": stamp,
                    "Unit": unit,
                }
                if counts is None and len(values) == 1:
                    entry["Value"] = values[0]
                else:
                    entry["Values"] = values
                    if counts is not None:
                        entry["Counts"] = counts
                entries.append(entry)
        out.append((namespace, entries))
    return out


def _aws_member(message: str) -> tuple[dict[str, Any] | None, bool]:
    """(document, is_parse_error): the parsed root object when it has `_aws`; (None, True)
    for a message that looks like EMF but is not JSON; (None, False) for a plain log event."""
    text = message.strip()
    if not text.startswith("{") or '"_aws"' not in text:
        return None, False
    try:
        doc = json.loads(text)
    except ValueError:
        return None, True
    if isinstance(doc, dict) and "_aws" in doc:
        return doc, False
    return None, False


class CloudWatchLogs:
    """The `logs` gateway extension: EMF extraction after moto stored a PutLogEvents batch."""

    UNLOCKED_OPS: frozenset[str] = frozenset()  # put_metric_data needs the moto lock

    def __init__(self, cloudwatch: Any):
        self.cloudwatch = cloudwatch  # cloudwatch.CloudWatch: `backend(region)` is moto's
        self._lock = threading.Lock()
        self.counts: dict[str, Any] = {
            "log_events": 0,  # events moto stored, in PutLogEvents batches that succeeded
            "documents_extracted": 0,
            "documents_rejected": 0,
            "datapoints": 0,  # moto's datapoints added by extraction (a histogram: one per sample)
            "rejected": {},  # reason -> documents
            "extracted": {},  # "region namespace" -> documents
        }

    # ---- gateway hooks ---------------------------------------------------------------------
    @staticmethod
    def _op(req: AwsRequest) -> str | None:
        target = req.headers.get("x-amz-target", "")
        return target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None

    def journaled(self, req: AwsRequest) -> bool:
        return self._op(req) in _JOURNALED

    def error_reply(self, req: AwsRequest, kind: str) -> Reply:
        if kind == "throttle":
            return _json_error(400, "ThrottlingException", "Rate exceeded")
        if kind == "503":
            return _json_error(503, "ServiceUnavailableException", "The service cannot complete the request.")
        return _json_error(500, "InternalFailure", "Internal failure")

    def before(self, req: AwsRequest) -> Reply | None:
        req.op = self._op(req)
        return None

    def after(self, req: AwsRequest, reply: Reply) -> Reply:
        if req.op == "PutLogEvents" and 200 <= reply.status < 300:
            try:
                self._extract_batch(req)
            except Exception:  # extraction must never break PutLogEvents
                log.exception("EMF extraction failed for a PutLogEvents batch")
        return reply

    # ---- extraction ------------------------------------------------------------------------
    def _extract_batch(self, req: AwsRequest) -> None:
        body = json.loads(req.body or b"{}")
        group, stream = body.get("logGroupName", "?"), body.get("logStreamName", "?")
        events = body.get("logEvents") or []
        region = req.region or "us-east-1"
        now_ms = time.time() * 1000.0
        backend = self.cloudwatch.backend(region)
        stored = extracted = datapoints = 0
        rejected: dict[str, int] = {}
        parse_errors = validation_errors = 0
        for i, event in enumerate(events):
            ts, message = event.get("timestamp"), event.get("message")
            # moto stores an event only from 14 days back to 2 hours ahead; only those count.
            if not _number(ts) or not now_ms - MAX_AGE_MS <= ts <= now_ms + MAX_AHEAD_MS or not isinstance(message, str):
                continue
            stored += 1
            doc, parse_error = _aws_member(message)
            if doc is None and not parse_error:
                continue
            try:
                if parse_error:
                    raise Rejected("invalid_json", "the message mentions _aws but is not a JSON object")
                puts = extract(doc, now_ms)
            except Rejected as e:
                rejected[e.reason] = rejected.get(e.reason, 0) + 1
                if e.reason in PARSING_REASONS:
                    parse_errors += 1
                else:
                    validation_errors += 1
                log.info("EMF not extracted (%s) from %s %s event %d: %s", e.reason, group, stream, i, e.detail)
                continue
            before = len(backend.metric_data)
            for namespace, entries in puts:
                if entries:
                    backend.put_metric_data(namespace, entries)
            datapoints += len(backend.metric_data) - before
            extracted += 1
            with self._lock:
                for namespace, _ in puts:
                    key = f"{region} {namespace}"
                    self.counts["extracted"][key] = self.counts["extracted"].get(key, 0) + 1
        stamp = dt.datetime.fromtimestamp(now_ms / 1000.0, _UTC).replace(tzinfo=None)
        for metric, n in (("EMFParsingErrors", parse_errors), ("EMFValidationErrors", validation_errors)):
            if n:  # AWS's own account of documents it could not extract
                backend.put_metric_data("AWS/Logs", [{
                    "MetricName": metric, "Dimensions": [{"Name": "LogGroupName", "Value": group}],
                    "Value": float(n), "Unit": "Count", "Timestamp": stamp,
                }])
        with self._lock:
            c = self.counts
            c["log_events"] += stored
            c["documents_extracted"] += extracted
            c["documents_rejected"] += sum(rejected.values())
            c["datapoints"] += datapoints
            for reason, n in rejected.items():
                c["rejected"][reason] = c["rejected"].get(reason, 0) + n
        if extracted or rejected:
            log.info(
                "PutLogEvents %s %s (%s): %d event(s), %d EMF document(s) extracted (%d datapoint(s)), %d not extracted",
                group, stream, region, stored, extracted, datapoints, sum(rejected.values()),
            )

    def status(self) -> dict[str, Any]:
        with self._lock:
            c = self.counts
            return {**c, "rejected": dict(c["rejected"]), "extracted": dict(c["extracted"])}


def _json_error(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"__type": code, "message": message}).encode()
    return Reply(
        status,
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Length", str(len(body))),
        ],
        body,
    )
