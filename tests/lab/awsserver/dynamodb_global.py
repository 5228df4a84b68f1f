"""DynamoDB global tables (version 2019.11.21) on top of moto's per-region tables.

Why it exists: moto keeps regions apart but ignores `UpdateTable ReplicaUpdates` and never
copies an item between regions. This module adds, at the request layer and through moto's own
backend objects (moto stays unmodified on disk):
- replica creation/deletion (`ReplicaUpdates: [{Create|Delete: {RegionName}}]`): the replica
  gets the source's key schema, attributes, billing, indexes, stream spec, TTL and current items;
- `Replicas` + `GlobalTableVersion` in every group member's table description;
- replication of every successful write, in every direction (multi-active), through the
  Replicator (delay/jitter/stall/drop faults), with one ground-truth line per change and one
  CloudWatch `AWS/DynamoDB ReplicationLatency` datapoint per applied change (cloudwatch.py).
Changes are applied to replicas through moto's backend, not through HTTP, so a replicated
change is never replicated again.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

from .apirequest import AwsRequest, table_name
from .cloudwatch import CloudWatch
from .faults import ReplicationPlan
from .ground_truth import GroundTruth
from .replication import Replicator
from .replies import Reply, dynamodb_error

log = logging.getLogger("dynamodb")

GLOBAL_TABLE_VERSION = "2019.11.21"

# Operations whose success changes items (and so must be replicated).
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
# Operations whose success changes tables: journaled so a restarted server rebuilds them.
CONTROL_OPS = {
    "CreateTable", "UpdateTable", "DeleteTable", "UpdateTimeToLive", "TagResource",
    "UntagResource", "UpdateContinuousBackups",
}
# Data-plane operations answer throttling with ProvisionedThroughputExceededException (as AWS
# does for table throughput); control-plane ones with ThrottlingException. SDKs retry both.
DATA_PLANE_OPS = WRITE_OPS | {
    "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "ExecuteStatement",
    "BatchExecuteStatement", "ExecuteTransaction",
}


def plain(value: dict[str, Any]) -> Any:
    """DynamoDB JSON attribute value -> plain JSON (for the ground-truth log)."""
    (kind, v), = value.items()
    if kind == "N":
        return int(v) if v.lstrip("-").isdigit() else float(v)
    if kind in ("S", "B", "BOOL"):
        return v
    if kind == "NULL":
        return None
    if kind in ("SS", "BS"):
        return list(v)
    if kind == "NS":
        return [plain({"N": x}) for x in v]
    if kind == "L":
        return [plain(x) for x in v]
    if kind == "M":
        return {k: plain(x) for k, x in v.items()}
    return v


class DynamoDBGlobalTables:
    UNLOCKED_OPS = frozenset({"GetItem", "BatchGetItem", "DescribeTable", "DescribeTimeToLive"})

    def __init__(
        self,
        replicator: Replicator,
        ground_truth: GroundTruth,
        account_id: str = DEFAULT_ACCOUNT_ID,
        metrics: CloudWatch | None = None,
    ):
        self.replicator = replicator
        self.ground_truth = ground_truth
        self.metrics = metrics  # AWS's own ReplicationLatency, published per applied change
        self.account_id = account_id
        self.groups: dict[str, set[str]] = {}  # table name -> regions holding a replica
        self._groups_lock = threading.Lock()
        self._patch_describe()

    # ---- moto access ---------------------------------------------------------------------
    def backend(self, region: str):
        return dynamodb_backends[self.account_id][region]

    def members(self, name: str) -> set[str]:
        with self._groups_lock:
            return set(self.groups.get(name, ()))

    def _patch_describe(self) -> None:
        """Make moto's Table.describe() (DescribeTable, CreateTable, UpdateTable... answers)
        list the other replicas, as AWS's does for a global table."""
        original = Table.describe
        tables = self
        if getattr(original, "_rpo_lab", False):
            return

        def describe(table: Table, base_key: str = "TableDescription") -> dict[str, Any]:
            result = original(table, base_key)
            regions = tables.members(table.name)
            if table.region_name in regions and len(regions) > 1:
                result[base_key]["Replicas"] = [
                    {
                        "RegionName": r,
                        "ReplicaStatus": "ACTIVE",
                        "ReplicaTableClassSummary": {"TableClass": "STANDARD"},
                    }
                    for r in sorted(regions - {table.region_name})
                ]
                result[base_key]["GlobalTableVersion"] = GLOBAL_TABLE_VERSION
            return result

        describe._rpo_lab = True  # type: ignore[attr-defined]
        Table.describe = describe  # type: ignore[method-assign]

    # ---- gateway hooks ---------------------------------------------------------------------
    def journaled(self, req: AwsRequest) -> bool:
        return req.op in CONTROL_OPS

    def error_reply(self, req: AwsRequest, kind: str) -> Reply:
        if kind == "throttle":
            if req.op in DATA_PLANE_OPS:
                return dynamodb_error(
                    400,
                    "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was exceeded. "
                    "Consider increasing your provisioning level with the UpdateTable API.",
                )
            return dynamodb_error(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        if kind == "503":
            return dynamodb_error(503, "ServiceUnavailable", "The service is currently unavailable or busy.")
        return dynamodb_error(500, "InternalServerError", "Internal server error")

    def before(self, req: AwsRequest) -> Reply | None:
        body = req.json or {}
        if req.op == "UpdateTable" and body.get("ReplicaUpdates"):
            return self._replica_updates(req.region or "", table_name(body.get("TableName", "")), body["ReplicaUpdates"])
        return None

    def after(self, req: AwsRequest, reply: Reply) -> Reply:
        if reply.status != 200 or not req.region:
            return reply
        if req.op in WRITE_OPS:
            self._replicate_write(req)
        elif req.op == "DeleteTable":
            self._leave_group(req.names[0] if req.names else "", req.region)
        elif req.op == "UpdateTimeToLive":
            self._propagate_ttl(req)
        return reply

    # ---- replicas --------------------------------------------------------------------------
    def _replica_updates(self, region: str, name: str, updates: list[dict[str, Any]]) -> Reply | None:
        try:
            source = self.backend(region).get_table(name)
        except Exception:
            return None  # let moto answer ResourceNotFoundException in its own words
        for update in updates:
            if "Create" in update:
                err = self._create_replica(source, update["Create"].get("RegionName", ""))
            elif "Delete" in update:
                err = self._delete_replica(source, update["Delete"].get("RegionName", ""))
            else:
                err = None  # "Update" (replica-specific throughput/class): accepted, nothing to do
            if err:
                return err
        return None  # moto then answers UpdateTable with the (patched) description

    def _create_replica(self, source: Table, region: str) -> Reply | None:
        members = self.members(source.name) or {source.region_name}
        try:
            target = self.backend(region)
        except Exception:
            return dynamodb_error(400, "ValidationException", f"Invalid region: {region}")
        if region in members or source.name in target.tables:
            return dynamodb_error(
                400,
                "ValidationException",
                f"Failed to create a the new replica of table with name: '{source.name}' because "
                "one or more replicas already existed as tables.",
            )
        # AWS turns on NEW_AND_OLD_IMAGES streams for a 2019.11.21 global table.
        if not (source.stream_specification or {}).get("StreamEnabled"):
            source.set_stream_specification({"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        replica = target.create_table(
            source.name,
            schema=copy.deepcopy(source.schema),
            throughput={k: v for k, v in source.throughput.items() if k != "NumberOfDecreasesToday"},
            attr=copy.deepcopy(source.attr),
            global_indexes=[
                {"IndexName": i.name, "KeySchema": i.schema, "Projection": i.projection}
                for i in source.global_indexes
            ],
            indexes=[
                {"IndexName": i.name, "KeySchema": i.schema, "Projection": i.projection}
                for i in source.indexes
            ],
            streams=copy.deepcopy(source.stream_specification),
            billing_mode=source.billing_mode or "PROVISIONED",
            sse_specification=None,
            tags=[],
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
        replica.ttl = copy.deepcopy(source.ttl)
        # A new replica starts with the table's current items, as AWS backfills it.
        for item in source.all_items():
            replica.put_item(copy.deepcopy(item.to_json()["Attributes"]), overwrite=True)
        with self._groups_lock:
            self.groups.setdefault(source.name, {source.region_name}).update({source.region_name, region})
        log.info("replica of %s created in %s (group %s)", source.name, region, sorted(self.members(source.name)))
        return None

    def _delete_replica(self, source: Table, region: str) -> Reply | None:
        if region not in self.members(source.name) or region == source.region_name:
            return dynamodb_error(
                400, "ValidationException", f"Cannot delete replica {region} of table {source.name}: no such replica."
            )
        try:
            self.backend(region).delete_table(source.name)
        except Exception:
            pass  # already gone: leaving the group is all that is left to do
        self._leave_group(source.name, region)
        return None

    def _leave_group(self, name: str, region: str) -> None:
        with self._groups_lock:
            regions = self.groups.get(name)
            if regions is None:
                return
            regions.discard(region)
            if len(regions) <= 1:
                del self.groups[name]
        log.info("%s left the group of %s", region, name)

    def _propagate_ttl(self, req: AwsRequest) -> None:
        # TTL is a table-wide setting of a global table: AWS applies it to every replica.
        name = req.names[0] if req.names else ""
        spec = (req.json or {}).get("TimeToLiveSpecification")
        for region in self.members(name) - {req.region}:
            try:
                self.backend(region).update_time_to_live(name, spec)
            except Exception:
                log.exception("TTL propagation of %s to %s", name, region)

    # ---- replication of items ----------------------------------------------------------------
    def _written_keys(self, req: AwsRequest) -> list[tuple[str, dict[str, Any]]]:
        """(table, key-or-item) for every item the write touched."""
        body = req.json or {}
        out: list[tuple[str, dict[str, Any]]] = []
        if req.op == "PutItem":
            out.append((table_name(body["TableName"]), body["Item"]))
        elif req.op in ("UpdateItem", "DeleteItem"):
            out.append((table_name(body["TableName"]), body["Key"]))
        elif req.op == "BatchWriteItem":
            for t, writes in body.get("RequestItems", {}).items():
                for w in writes:
                    if "PutRequest" in w:
                        out.append((table_name(t), w["PutRequest"]["Item"]))
                    elif "DeleteRequest" in w:
                        out.append((table_name(t), w["DeleteRequest"]["Key"]))
        elif req.op == "TransactWriteItems":
            for item in body.get("TransactItems", []):
                for action, spec in item.items():
                    if action == "Put":
                        out.append((table_name(spec["TableName"]), spec["Item"]))
                    elif action in ("Update", "Delete"):
                        out.append((table_name(spec["TableName"]), spec["Key"]))
        return out

    def _replicate_write(self, req: AwsRequest) -> None:
        committed_at, committed_mono = time.time(), time.monotonic()
        src = req.region or ""
        for name, attrs in self._written_keys(req):
            others = self.members(name) - {src}
            if not others or src not in self.members(name):
                continue
            table = self.backend(src).get_table(name)
            key = {a: attrs[a] for a in table.table_key_attrs if a in attrs}
            item = table.get_item(
                DynamoType(key[table.hash_key_attr]),
                DynamoType(key[table.range_key_attr]) if table.range_key_attr else None,
            )
            # The NEW full image, read right after the write; None means the item is gone.
            image = copy.deepcopy(item.to_json()["Attributes"]) if item is not None else None
            seq = image.get("seq") if image else None
            record = {
                "service": "dynamodb",
                "table": name,
                "key": {k: plain(v) for k, v in key.items()},
                "seq": plain(seq) if seq and "N" in seq else None,
                "source_region": src,
                "committed_at": committed_at,
            }
            for dst in sorted(others):
                run = self._applier(name, key, image, dst, dict(record, replica_region=dst))
                plan = self.replicator.submit("dynamodb", name, src, dst, committed_mono, run)
                if plan.dropped:
                    self.ground_truth.record(**record, replica_region=dst, readable_at=None, dropped=True)

    def _applier(self, name: str, key: dict[str, Any], image: dict[str, Any] | None, dst: str, record: dict[str, Any]):
        def run(plan: ReplicationPlan) -> None:
            table = self.backend(dst).tables.get(name)
            if table is None:
                log.warning("replica %s/%s is gone; change to %s not applied", dst, name, record["key"])
                return
            if image is not None:
                table.put_item(copy.deepcopy(image), overwrite=True)
            else:
                table.delete_item(
                    DynamoType(key[table.hash_key_attr]),
                    DynamoType(key[table.range_key_attr]) if table.range_key_attr else None,
                )
            readable_at = time.time()
            self.ground_truth.record(**record, readable_at=readable_at, dropped=False)
            if self.metrics is not None:
                # As AWS: in the region of the write, per receiving region, in milliseconds.
                self.metrics.dynamodb_replicated(name, record["source_region"], dst, record["committed_at"], readable_at)

        return run

    def status(self) -> dict[str, list[str]]:
        with self._groups_lock:
            return {name: sorted(regions) for name, regions in self.groups.items()}
