"""S3 buckets bound to their region, and replication (CRR/SRR) as the bucket's rules say.

Why it exists: moto stores a bucket's replication configuration but never copies an object,
never shows `x-amz-replication-status`, and answers for a bucket in any region. The agent's S3
probe depends on all three, so this module adds, through moto's own backend objects:
- region binding: a request signed for another region than the bucket's gets AWS's
  `400 AuthorizationHeaderMalformed` (expected region in the message, `<Region>` and the
  `x-amz-bucket-region` header);
- PutBucketReplication checks: versioning `Enabled` on the source and the destination, the
  destination exists;
- replication of PutObject/CopyObject/CompleteMultipartUpload (and delete markers when the rule
  says `DeleteMarkerReplication Enabled`) per rule: `Status`, `Priority`, `Filter` (Prefix, Tag,
  And{Prefix,Tags}, or the old top-level Prefix), `Destination.Bucket`, `ReplicationTime`;
  source status `PENDING` -> `COMPLETED` | `FAILED`, replica `REPLICA`, same body, metadata,
  content type and version id; timed by the Replicator (delay/jitter/stall/drop/fail faults);
- for a rule with replication metrics or RTC (`Destination.Metrics` / `ReplicationTime`
  `Enabled`), one CloudWatch `AWS/S3 ReplicationLatency` datapoint per completed change
  (cloudwatch.py), as AWS publishes it.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import xmltodict
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import FakeKey, s3_backends

from .apirequest import AwsRequest
from .cloudwatch import CloudWatch
from .faults import ReplicationPlan
from .ground_truth import GroundTruth
from .replication import Replicator
from .replies import Reply, s3_error

log = logging.getLogger("s3")

# Operations that create a new object version at the source (replicated when a rule matches).
OBJECT_WRITES = {"PutObject", "CopyObject", "CompleteMultipartUpload"}
# Data-plane calls keep their bucket's region check; these do not address a bucket's data.
_NO_REGION_CHECK = {"ListBuckets", "CreateBucket", "GetBucketLocation"}


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _enabled(node: Any) -> bool:
    return isinstance(node, dict) and node.get("Status") == "Enabled"


def rule_matches(rule: dict[str, Any], key: str, tags: dict[str, str]) -> bool:
    """Does an (xmltodict-shaped) replication rule select this object?"""
    if rule.get("Status") != "Enabled":
        return False
    if "Filter" not in rule:  # V1 rule: <Prefix> beside <Status>
        return key.startswith(rule.get("Prefix") or "")
    f = rule.get("Filter") or {}
    if "And" in f:
        f = f["And"] or {}
    prefix = f.get("Prefix") or ""
    wanted = {t["Key"]: t.get("Value") or "" for t in _as_list(f.get("Tag"))}
    return key.startswith(prefix) and all(tags.get(k) == v for k, v in wanted.items())


def metrics_rule_id(rule: dict[str, Any]) -> str | None:
    """The RuleId dimension of the rule's `ReplicationLatency` metric ("" for a rule without ID),
    or None when AWS publishes no metric for it (neither replication metrics nor RTC enabled)."""
    dest = rule.get("Destination") or {}
    if _enabled(dest.get("Metrics")) or _enabled(dest.get("ReplicationTime")):
        return rule.get("ID") or ""
    return None


def bucket_of_arn(arn: str) -> str:
    return arn.split(":::", 1)[1] if arn.startswith("arn:") else arn


class S3Replication:
    UNLOCKED_OPS = frozenset({"HeadObject", "GetObject", "HeadBucket", "GetBucketVersioning", "GetBucketReplication", "GetBucketLocation"})

    def __init__(
        self,
        replicator: Replicator,
        ground_truth: GroundTruth,
        account_id: str = DEFAULT_ACCOUNT_ID,
        metrics: CloudWatch | None = None,
    ):
        self.replicator = replicator
        self.ground_truth = ground_truth
        self.metrics = metrics  # AWS's own ReplicationLatency, for rules with metrics/RTC
        self.account_id = account_id
        self._patch_key_headers()

    @property
    def backend(self):
        return s3_backends[self.account_id]["aws"]

    def _bucket(self, name: str | None):
        return self.backend.buckets.get(name) if name else None

    @staticmethod
    def _patch_key_headers() -> None:
        """HEAD/GET answers are built from FakeKey.response_dict: add the replication status
        we keep on the key (`_lab_replication_status`), as AWS shows it."""
        original = FakeKey.response_dict
        if getattr(original.fget, "_rpo_lab", False):
            return

        def response_dict(key: FakeKey) -> dict[str, Any]:
            res = original.fget(key)
            status = getattr(key, "_lab_replication_status", None)
            if status:
                res["x-amz-replication-status"] = status
            return res

        response_dict._rpo_lab = True  # type: ignore[attr-defined]
        FakeKey.response_dict = property(response_dict)  # type: ignore[method-assign,assignment]

    # ---- gateway hooks ---------------------------------------------------------------------
    def journaled(self, req: AwsRequest) -> bool:
        # Bucket-level PUT/DELETE: CreateBucket, PutBucketVersioning, PutBucketReplication,
        # PutBucketLifecycleConfiguration, tagging, policy, DeleteBucket, ...
        return req.key is None and req.bucket is not None and req.method in ("PUT", "DELETE")

    def error_reply(self, req: AwsRequest, kind: str) -> Reply:
        if kind == "slowdown":
            return s3_error(503, "SlowDown", "Please reduce your request rate.", req.method)
        if kind == "503":
            return s3_error(503, "ServiceUnavailable", "Service is unable to handle request.", req.method)
        return s3_error(500, "InternalError", "We encountered an internal error. Please try again.", req.method)

    def before(self, req: AwsRequest) -> Reply | None:
        bucket = self._bucket(req.bucket)
        if bucket is not None and req.region and req.op not in _NO_REGION_CHECK and bucket.region_name != req.region:
            reply = s3_error(
                400,
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the region '{req.region}' is wrong; "
                f"expecting '{bucket.region_name}'",
                req.method,
                Region=bucket.region_name,
            )
            reply.set_header("x-amz-bucket-region", bucket.region_name)
            return reply
        if req.op == "PutBucketReplication" and bucket is not None:
            return self._check_replication_config(req, bucket)
        return None

    def after(self, req: AwsRequest, reply: Reply) -> Reply:
        if req.op == "GetBucketVersioning" and 200 <= reply.status < 300:
            # moto names the root after the operation; AWS (and the Rust SDK,
            # which checks the root) use VersioningConfiguration.
            reply.body = reply.body.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration")
            if reply.header("Content-Length") is not None:
                reply.set_header("Content-Length", str(len(reply.body)))
            return reply
        if req.op == "GetBucketReplication" and 200 <= reply.status < 300:
            # moto answers every rule with an empty Filter Prefix: give back the stored rules.
            config = getattr(self._bucket(req.bucket), "replication", None)
            if config:
                body = {k: v for k, v in config.items() if not k.startswith("@")}
                doc = {"ReplicationConfiguration": {"@xmlns": "http://s3.amazonaws.com/doc/2006-03-01/", **body}}
                reply.body = xmltodict.unparse(doc).encode()
                if reply.header("Content-Length") is not None:
                    reply.set_header("Content-Length", str(len(reply.body)))
            return reply
        if not 200 <= reply.status < 300 or req.bucket is None or req.key is None:
            return reply
        if req.op in OBJECT_WRITES:
            self._replicate_object(req, reply.header("x-amz-version-id"))
        elif req.op == "DeleteObject" and reply.header("x-amz-delete-marker") == "true" and "versionId" not in req.query_args:
            self._replicate_delete_marker(req)
        return reply

    # ---- configuration checks --------------------------------------------------------------
    def _check_replication_config(self, req: AwsRequest, bucket) -> Reply | None:
        def invalid(msg: str) -> Reply:
            return s3_error(400, "InvalidRequest", msg, req.method)

        if not bucket.is_versioned:
            return invalid("Versioning must be 'Enabled' on the bucket to apply a replication configuration")
        try:
            config = xmltodict.parse(req.body or b"<x/>").get("ReplicationConfiguration") or {}
        except Exception:
            return s3_error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema", req.method)
        for rule in _as_list(config.get("Rule")):
            dest = bucket_of_arn(((rule or {}).get("Destination") or {}).get("Bucket") or "")
            target = self._bucket(dest)
            if target is None:
                return invalid("Destination bucket must exist.")
            if not target.is_versioned:
                return invalid("Destination bucket must have versioning enabled.")
        return None

    # ---- replication -------------------------------------------------------------------------
    def _destinations(self, bucket, key: str, tags: dict[str, str], delete_marker: bool = False) -> list[dict[str, Any]]:
        """The winning rule per destination bucket (highest Priority) that selects this key."""
        config = getattr(bucket, "replication", None) or {}
        best: dict[str, dict[str, Any]] = {}
        for rule in _as_list(config.get("Rule")):
            if not rule_matches(rule, key, tags):
                continue
            if delete_marker and not _enabled(rule.get("DeleteMarkerReplication")):
                continue
            dest = bucket_of_arn((rule.get("Destination") or {}).get("Bucket") or "")
            prio = int(rule.get("Priority") or 0)
            if dest not in best or prio > int(best[dest].get("Priority") or 0):
                best[dest] = rule
        return [dict(rule, _dest=dest) for dest, rule in best.items()]

    def _object_tags(self, req: AwsRequest, key_obj: FakeKey) -> dict[str, str]:
        try:
            return dict(self.backend.tagger.get_tag_dict_for_resource(key_obj.arn))
        except Exception:
            tagging = req.headers.get("x-amz-tagging", "")
            return {k: v[0] for k, v in parse_qs(tagging).items()}

    def _replicate_object(self, req: AwsRequest, version_id: str | None) -> None:
        committed_at, committed_mono = time.time(), time.monotonic()
        bucket = self._bucket(req.bucket)
        if bucket is None or not getattr(bucket, "replication", None):
            return
        src_key = self.backend.get_object(req.bucket, req.key, version_id=version_id)
        if src_key is None:
            return
        rules = self._destinations(bucket, req.key, self._object_tags(req, src_key))
        if not rules:
            return
        src_key._lab_replication_status = "PENDING"
        # Source COMPLETED only when every destination has it; FAILED as soon as one fails.
        pending = {"left": len(rules), "failed": False}
        for rule in rules:
            dest = self._bucket(rule["_dest"])
            if dest is None:
                continue
            record = {
                "service": "s3",
                "bucket": req.bucket,
                "dest_bucket": rule["_dest"],
                "key": req.key,
                "version_id": src_key.version_id,
                "source_region": bucket.region_name,
                "replica_region": dest.region_name,
                "rtc": _enabled((rule.get("Destination") or {}).get("ReplicationTime")),
                "committed_at": committed_at,
            }
            run = self._object_applier(src_key, rule["_dest"], record, pending, metrics_rule_id(rule))
            plan = self.replicator.submit("s3", req.bucket, bucket.region_name, dest.region_name, committed_mono, run)
            if plan.dropped:  # never replicated: the source stays PENDING, as a lost event would
                self.ground_truth.record(**record, readable_at=None, status="PENDING", dropped=True)

    def _publish(self, record: dict[str, Any], rule_id: str | None, readable_at: float) -> None:
        if self.metrics is not None and rule_id is not None:
            self.metrics.s3_replicated(
                record["bucket"], record["dest_bucket"], rule_id, record["source_region"], record["committed_at"], readable_at
            )

    def _object_applier(self, src_key: FakeKey, dest_name: str, record: dict[str, Any], pending: dict[str, Any], rule_id: str | None):
        def run(plan: ReplicationPlan) -> None:
            if plan.failed:
                pending["failed"] = True
                src_key._lab_replication_status = "FAILED"
                self.ground_truth.record(**record, readable_at=None, status="FAILED", dropped=False)
                return
            dest = self._bucket(dest_name)
            if dest is None:
                log.warning("destination bucket %s is gone; %s not replicated", dest_name, record["key"])
                return
            replica = self.backend.put_object(
                dest_name,
                src_key.name,
                src_key.value,
                storage=src_key.storage_class,
                disable_notification=True,
            )
            replica._metadata = copy.deepcopy(src_key.metadata)
            replica.checksum_algorithm = src_key.checksum_algorithm
            replica.checksum_value = src_key.checksum_value
            if dest.is_versioned and src_key._version_id not in (None, "null"):
                replica._version_id = src_key._version_id  # AWS keeps the version id
            replica._lab_replication_status = "REPLICA"
            readable_at = time.time()
            pending["left"] -= 1
            if pending["left"] <= 0 and not pending["failed"]:
                src_key._lab_replication_status = "COMPLETED"
            self.ground_truth.record(**record, readable_at=readable_at, status="COMPLETED", dropped=False)
            self._publish(record, rule_id, readable_at)

        return run

    def _replicate_delete_marker(self, req: AwsRequest) -> None:
        committed_at, committed_mono = time.time(), time.monotonic()
        bucket = self._bucket(req.bucket)
        if bucket is None or not getattr(bucket, "replication", None):
            return
        # Tag filters cannot select a delete marker (it has no tags): AWS refuses delete marker
        # replication with tag-based rules; here such a rule simply does not match.
        for rule in self._destinations(bucket, req.key, {}, delete_marker=True):
            dest = self._bucket(rule["_dest"])
            if dest is None:
                continue
            record = {
                "service": "s3", "bucket": req.bucket, "dest_bucket": rule["_dest"], "key": req.key,
                "version_id": None, "delete_marker": True, "source_region": bucket.region_name,
                "replica_region": dest.region_name, "committed_at": committed_at,
            }

            def run(plan: ReplicationPlan, dest_name: str = rule["_dest"], record: dict = record, rule_id: str | None = metrics_rule_id(rule)) -> None:
                if plan.failed:
                    self.ground_truth.record(**record, readable_at=None, status="FAILED", dropped=False)
                    return
                self.backend.delete_object(dest_name, req.key)
                readable_at = time.time()
                self.ground_truth.record(**record, readable_at=readable_at, status="COMPLETED", dropped=False)
                self._publish(record, rule_id, readable_at)

            plan = self.replicator.submit("s3", req.bucket, bucket.region_name, dest.region_name, committed_mono, run)
            if plan.dropped:
                self.ground_truth.record(**record, readable_at=None, status="PENDING", dropped=True)

    def status(self) -> list[str]:
        out = []
        for name, bucket in list(self.backend.buckets.items()):
            rules = _as_list((getattr(bucket, "replication", None) or {}).get("Rule"))
            for rule in rules:
                dest = bucket_of_arn((rule.get("Destination") or {}).get("Bucket") or "")
                out.append(f"{name} ({bucket.region_name}) -> {dest}: rule {rule.get('ID')} {rule.get('Status')} priority {rule.get('Priority')}")
        return out
