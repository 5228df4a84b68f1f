"""Self-test of the lab's AWS stand-in, through the real interface (`lab up/fault/down`, boto3).

Why it exists: the agent's accuracy tests trust the lab's ground truth and fault behaviour; this
checks them end to end in well under a minute, without pytest (the venv has only moto and its
dependencies). Run: `tests/lab/lab selftest` (or `... selftest -k NAME` for a subset).
Last line: `N passed, N failed`; exit status non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
LAB = [sys.executable, str(HERE / "labctl.py")]
SRC, DST = "ap-northeast-1", "ap-northeast-3"

TESTS: list[Callable[["Lab"], None]] = []


def test(fn: Callable[["Lab"], None]) -> Callable[["Lab"], None]:
    TESTS.append(fn)
    return fn


class Lab:
    def __init__(self, lab_dir: Path):
        self.dir = lab_dir
        out = subprocess.run([*LAB, "up", "--dir", str(lab_dir), "--components", "aws"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"lab up failed: {out.stderr}")
        self.env = dict(line.split("=", 1) for line in (lab_dir / "lab.env").read_text().splitlines() if line)

    def fault(self, *argv: str) -> str:
        out = subprocess.run([*LAB, "fault", "--dir", str(self.dir), *argv], capture_output=True, text=True)
        assert out.returncode == 0, f"lab fault {' '.join(argv)}: {out.stderr}"
        return out.stdout

    def down(self) -> None:
        subprocess.run([*LAB, "down", "--dir", str(self.dir)], check=True)

    def client(self, service: str, region: str, **cfg):
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            # No retries: a test must see exactly what the server answered. (botocore's
            # `max_attempts` still allows one retry of a timeout or a reset: pass
            # retries={"total_max_attempts": 1} where that matters.)
            config=Config(**{"retries": {"max_attempts": 1, "mode": "standard"}, **cfg}),
        )

    def truth(self, **match) -> list[dict]:
        path = Path(self.env["LAB_GROUND_TRUTH"])
        if not path.exists():
            return []
        lines = [json.loads(l) for l in path.read_text().splitlines() if l]
        return [l for l in lines if all(l.get(k) == v for k, v in match.items())]


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def error_code(fn: Callable[[], object]) -> tuple[str, int]:
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an error, the call succeeded")


# ---- DynamoDB ---------------------------------------------------------------------------------

def global_table(lab: Lab, name: str):
    src, dst = lab.client("dynamodb", SRC), lab.client("dynamodb", DST)
    src.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    src.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": DST}}])
    return src, dst


def replica_item(client, table: str, pk: str):
    return client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


@test
def dynamodb_replica_creation_and_describe(lab: Lab) -> None:
    src, dst = lab.client("dynamodb", SRC), lab.client("dynamodb", DST)
    src.create_table(
        TableName="t-describe",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    src.put_item(TableName="t-describe", Item={"pk": {"S": "before"}, "sk": {"S": "x"}})
    answer = src.update_table(TableName="t-describe", ReplicaUpdates=[{"Create": {"RegionName": DST}}])
    assert answer["TableDescription"]["Replicas"][0]["RegionName"] == DST
    for client, other in ((src, DST), (dst, SRC)):
        t = client.describe_table(TableName="t-describe")["Table"]
        assert [(r["RegionName"], r["ReplicaStatus"]) for r in t["Replicas"]] == [(other, "ACTIVE")], t.get("Replicas")
        assert t["GlobalTableVersion"] == "2019.11.21"
        assert [k["AttributeName"] for k in t["KeySchema"]] == ["pk", "sk"]
        assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # Existing items are copied into the new replica.
    assert dst.get_item(TableName="t-describe", Key={"pk": {"S": "before"}, "sk": {"S": "x"}}).get("Item")
    code, _ = error_code(lambda: src.update_table(TableName="t-describe", ReplicaUpdates=[{"Create": {"RegionName": DST}}]))
    assert code == "ValidationException", code
    # Delete the replica: the group is gone from both descriptions.
    src.update_table(TableName="t-describe", ReplicaUpdates=[{"Delete": {"RegionName": DST}}])
    assert "Replicas" not in src.describe_table(TableName="t-describe")["Table"]
    code, _ = error_code(lambda: dst.describe_table(TableName="t-describe"))
    assert code == "ResourceNotFoundException", code


@test
def dynamodb_replication_delay_300ms(lab: Lab) -> None:
    src, dst = global_table(lab, "t-delay")
    lab.fault("dynamodb", "delay", "300ms", "--table", "t-delay")
    for i in range(5):
        src.put_item(TableName="t-delay", Item={"pk": {"S": f"k{i}"}, "seq": {"N": str(100 + i)}})
        assert replica_item(dst, "t-delay", f"k{i}") is None, "replicated before the delay"
        time.sleep(0.05)
    wait_for(lambda: len(lab.truth(table="t-delay")) == 5, 3, "5 ground-truth lines")
    for line in lab.truth(table="t-delay"):
        lag = line["readable_at"] - line["committed_at"]
        assert 0.300 <= lag <= 0.340, f"lag {lag:.4f}s outside 300-340 ms: {line}"
        assert line["source_region"] == SRC and line["replica_region"] == DST and line["dropped"] is False
        assert line["seq"] == 100 + int(line["key"]["pk"][1:]), line
    assert replica_item(dst, "t-delay", "k4")["seq"] == {"N": "104"}


@test
def dynamodb_replicates_both_ways_and_deletes(lab: Lab) -> None:
    src, dst = global_table(lab, "t-both")
    dst.put_item(TableName="t-both", Item={"pk": {"S": "from-osaka"}, "seq": {"N": "1"}})
    wait_for(lambda: replica_item(src, "t-both", "from-osaka"), 2, "replica -> source")
    src.delete_item(TableName="t-both", Key={"pk": {"S": "from-osaka"}})
    wait_for(lambda: replica_item(dst, "t-both", "from-osaka") is None, 2, "delete replicated")
    src.batch_write_item(RequestItems={"t-both": [{"PutRequest": {"Item": {"pk": {"S": f"b{i}"}}}} for i in range(3)]})
    src.update_item(TableName="t-both", Key={"pk": {"S": "b0"}}, UpdateExpression="SET seq = :s", ExpressionAttributeValues={":s": {"N": "9"}})
    src.transact_write_items(TransactItems=[{"Put": {"TableName": "t-both", "Item": {"pk": {"S": "tx"}}}}])
    wait_for(lambda: (replica_item(dst, "t-both", "b0") or {}).get("seq") == {"N": "9"} and replica_item(dst, "t-both", "tx"), 2, "batch/update/transact replicated")
    # Replicated changes are not replicated back: one line per direction and change.
    assert len(lab.truth(table="t-both", source_region=DST)) == 1


@test
def dynamodb_stall_and_resume(lab: Lab) -> None:
    src, dst = global_table(lab, "t-stall")
    lab.fault("dynamodb", "stall", "--table", "t-stall")
    for i in range(3):
        src.put_item(TableName="t-stall", Item={"pk": {"S": f"s{i}"}, "seq": {"N": str(i)}})
    time.sleep(0.5)
    assert replica_item(dst, "t-stall", "s0") is None, "replicated while stalled"
    lab.fault("dynamodb", "resume", "--table", "t-stall")
    wait_for(lambda: replica_item(dst, "t-stall", "s2"), 0.5, "queued changes after resume")
    seqs = [l["seq"] for l in lab.truth(table="t-stall")]
    assert seqs == [0, 1, 2], f"not applied in order: {seqs}"


@test
def dynamodb_drop(lab: Lab) -> None:
    src, dst = global_table(lab, "t-drop")
    lab.fault("dynamodb", "drop", "1", "--table", "t-drop")
    src.put_item(TableName="t-drop", Item={"pk": {"S": "lost"}})
    src.put_item(TableName="t-drop", Item={"pk": {"S": "kept"}})
    wait_for(lambda: replica_item(dst, "t-drop", "kept"), 2, "second change")
    assert replica_item(dst, "t-drop", "lost") is None
    lost = lab.truth(table="t-drop", key={"pk": "lost"})
    assert len(lost) == 1 and lost[0]["dropped"] is True and lost[0]["readable_at"] is None, lost


@test
def dynamodb_api_errors(lab: Lab) -> None:
    src, _ = global_table(lab, "t-err")
    lab.fault("dynamodb", "error", "throttle", "1", "PutItem", "--table", "t-err")
    put = lambda: src.put_item(TableName="t-err", Item={"pk": {"S": "x"}})  # noqa: E731
    assert error_code(put) == ("ProvisionedThroughputExceededException", 400)
    src.get_item(TableName="t-err", Key={"pk": {"S": "x"}})  # other operations unaffected
    lab.fault("dynamodb", "error", "throttle", "1", "DescribeTable", "--table", "t-err")
    assert error_code(lambda: src.describe_table(TableName="t-err")) == ("ThrottlingException", 400)
    lab.fault("dynamodb", "error", "clear", "--table", "t-err")
    lab.fault("dynamodb", "error", "503", "1", "--table", "t-err")
    assert error_code(put)[1] == 503
    lab.fault("dynamodb", "error", "clear", "--table", "t-err")
    lab.fault("dynamodb", "error", "latency", "200ms", "GetItem", "--table", "t-err")
    t0 = time.monotonic()
    src.get_item(TableName="t-err", Key={"pk": {"S": "x"}})
    assert time.monotonic() - t0 >= 0.2
    lab.fault("dynamodb", "error", "clear", "--table", "t-err")
    put()


# ---- S3 ---------------------------------------------------------------------------------------

def s3_pair(lab: Lab, src_name: str, dst_name: str, rule: dict | None = None):
    src, dst = lab.client("s3", SRC), lab.client("s3", DST)
    src.create_bucket(Bucket=src_name, CreateBucketConfiguration={"LocationConstraint": SRC})
    dst.create_bucket(Bucket=dst_name, CreateBucketConfiguration={"LocationConstraint": DST})
    for client, name in ((src, src_name), (dst, dst_name)):
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    rule = rule or {"Filter": {"Prefix": "rpo-canary/"}}
    rule = {"ID": "canary", "Priority": 1, "Status": "Enabled", "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{dst_name}"}, **rule}
    src.put_bucket_replication(
        Bucket=src_name,
        ReplicationConfiguration={"Role": "arn:aws:iam::123456789012:role/replication", "Rules": [rule]},
    )
    return src, dst


def head_status(client, bucket: str, key: str) -> str | None:
    try:
        return client.head_object(Bucket=bucket, Key=key).get("ReplicationStatus") or "NONE"
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return None
        raise


def raw_s3(lab: Lab, method: str, path: str, region: str, body: bytes = b"", headers: dict | None = None):
    """A request the way a SigV4 SDK sends it (moto does not check signatures), without
    botocore's automatic region redirect, so the test sees the server's own answer."""
    import urllib.error
    import urllib.request

    h = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=lab/20261123/{region}/s3/aws4_request, SignedHeaders=host, Signature=0",
        "Content-Type": "application/octet-stream",
        **(headers or {}),
    }
    req = urllib.request.Request(lab.env["AWS_ENDPOINT_URL"] + path, data=body if method in ("PUT", "POST") else None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@test
def s3_pending_completed_replica(lab: Lab) -> None:
    src, dst = s3_pair(lab, "s3-src-ok", "s3-dst-ok")
    lab.fault("s3", "delay", "300ms", "--bucket", "s3-src-ok")
    put = src.put_object(Bucket="s3-src-ok", Key="rpo-canary/a1/t/1", Body=b"canary-1", ContentType="text/plain", Metadata={"agent": "a1"})
    assert head_status(src, "s3-src-ok", "rpo-canary/a1/t/1") == "PENDING"
    assert head_status(dst, "s3-dst-ok", "rpo-canary/a1/t/1") is None
    wait_for(lambda: head_status(src, "s3-src-ok", "rpo-canary/a1/t/1") == "COMPLETED", 2, "source COMPLETED")
    got = dst.get_object(Bucket="s3-dst-ok", Key="rpo-canary/a1/t/1")
    assert got["ReplicationStatus"] == "REPLICA", got.get("ReplicationStatus")
    assert got["Body"].read() == b"canary-1" and got["ContentType"] == "text/plain" and got["Metadata"] == {"agent": "a1"}
    assert got["VersionId"] == put["VersionId"], (got["VersionId"], put["VersionId"])
    line, = lab.truth(bucket="s3-src-ok")
    assert line["status"] == "COMPLETED" and line["dest_bucket"] == "s3-dst-ok" and line["version_id"] == put["VersionId"]
    assert (line["source_region"], line["replica_region"]) == (SRC, DST)
    lag = line["readable_at"] - line["committed_at"]
    assert 0.300 <= lag <= 0.340, f"lag {lag:.4f}s outside 300-340 ms"
    # Keys outside the rule's prefix are not replicated and carry no status.
    src.put_object(Bucket="s3-src-ok", Key="other/x", Body=b"x")
    assert head_status(src, "s3-src-ok", "other/x") == "NONE"


@test
def s3_fail_stall_drop(lab: Lab) -> None:
    src, dst = s3_pair(lab, "s3-src-f", "s3-dst-f")
    lab.fault("s3", "fail", "1", "--bucket", "s3-src-f")
    src.put_object(Bucket="s3-src-f", Key="rpo-canary/f1", Body=b"1")
    wait_for(lambda: head_status(src, "s3-src-f", "rpo-canary/f1") == "FAILED", 2, "source FAILED")
    assert head_status(dst, "s3-dst-f", "rpo-canary/f1") is None
    assert lab.truth(bucket="s3-src-f", key="rpo-canary/f1")[0]["status"] == "FAILED"
    lab.fault("s3", "stall", "--bucket", "s3-src-f")
    src.put_object(Bucket="s3-src-f", Key="rpo-canary/f2", Body=b"2")
    time.sleep(0.3)
    assert head_status(src, "s3-src-f", "rpo-canary/f2") == "PENDING"
    lab.fault("s3", "resume", "--bucket", "s3-src-f")
    wait_for(lambda: head_status(dst, "s3-dst-f", "rpo-canary/f2") == "REPLICA", 1, "replica after resume")
    lab.fault("s3", "drop", "1", "--bucket", "s3-src-f")
    src.put_object(Bucket="s3-src-f", Key="rpo-canary/f3", Body=b"3")
    time.sleep(0.2)
    assert head_status(src, "s3-src-f", "rpo-canary/f3") == "PENDING" and head_status(dst, "s3-dst-f", "rpo-canary/f3") is None


@test
def s3_rule_tag_filter(lab: Lab) -> None:
    rule = {"Filter": {"And": {"Prefix": "p/", "Tags": [{"Key": "replicate", "Value": "yes"}]}}}
    src, dst = s3_pair(lab, "s3-src-tag", "s3-dst-tag", rule)
    src.put_object(Bucket="s3-src-tag", Key="p/tagged", Body=b"t", Tagging="replicate=yes")
    src.put_object(Bucket="s3-src-tag", Key="p/untagged", Body=b"u")
    wait_for(lambda: head_status(dst, "s3-dst-tag", "p/tagged") == "REPLICA", 2, "tagged object replicated")
    assert head_status(src, "s3-src-tag", "p/untagged") == "NONE"
    assert head_status(dst, "s3-dst-tag", "p/untagged") is None


@test
def s3_versioning_required_and_region_binding(lab: Lab) -> None:
    src, dst = lab.client("s3", SRC), lab.client("s3", DST)
    src.create_bucket(Bucket="s3-nover", CreateBucketConfiguration={"LocationConstraint": SRC})
    dst.create_bucket(Bucket="s3-nover-dst", CreateBucketConfiguration={"LocationConstraint": DST})
    config = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [{"Status": "Enabled", "Priority": 1, "Filter": {}, "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": {"Bucket": "arn:aws:s3:::s3-nover-dst"}}]}
    code = error_code(lambda: src.put_bucket_replication(Bucket="s3-nover", ReplicationConfiguration=config))
    assert code == ("InvalidRequest", 400), code
    src.put_bucket_versioning(Bucket="s3-nover", VersioningConfiguration={"Status": "Enabled"})
    code = error_code(lambda: src.put_bucket_replication(Bucket="s3-nover", ReplicationConfiguration=config))
    assert code == ("InvalidRequest", 400), code  # the destination is not versioned either
    status, headers, body = raw_s3(lab, "PUT", "/s3-nover/k", DST, b"x")
    assert status == 400 and b"<Code>AuthorizationHeaderMalformed</Code>" in body and f"expecting '{SRC}'".encode() in body, body
    assert headers.get("x-amz-bucket-region") == SRC and headers.get("x-amz-request-id")
    assert raw_s3(lab, "HEAD", "/s3-nover", DST)[0] == 400
    assert raw_s3(lab, "HEAD", "/s3-nover", SRC)[0] == 200


@test
def s3_api_errors_and_chunked_body(lab: Lab) -> None:
    src, dst = s3_pair(lab, "s3-src-err", "s3-dst-err")
    lab.fault("s3", "error", "slowdown", "1", "PutObject", "--bucket", "s3-src-err")
    assert error_code(lambda: src.put_object(Bucket="s3-src-err", Key="k", Body=b"x")) == ("SlowDown", 503)
    src.list_objects_v2(Bucket="s3-src-err")  # other operations unaffected
    lab.fault("s3", "error", "500", "1", "HeadObject", "--bucket", "s3-src-err")
    assert error_code(lambda: src.head_object(Bucket="s3-src-err", Key="k"))[1] == 500
    lab.fault("s3", "error", "clear", "--bucket", "s3-src-err")
    # What the Rust SDK sends: aws-chunked with a trailing checksum. The body must stay intact.
    chunked = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    status, _, _ = raw_s3(lab, "PUT", "/s3-src-err/rpo-canary/chunked", SRC, chunked, {
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "11",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-crc32",
    })
    assert status == 200, status
    wait_for(lambda: head_status(dst, "s3-dst-err", "rpo-canary/chunked") == "REPLICA", 2, "chunked object replicated")
    for client, bucket in ((src, "s3-src-err"), (dst, "s3-dst-err")):
        assert client.get_object(Bucket=bucket, Key="rpo-canary/chunked")["Body"].read() == b"hello world"


# ---- CloudWatch ReplicationLatency over Smithy RPC v2 CBOR ------------------------------------

CW_PATH = "/service/GraniteServiceVersion20100801/operation/"


def cw_rpc(lab: Lab, region: str, body: bytes, op: str = "GetMetricData") -> tuple[int, dict, object]:
    """What aws-sdk-cloudwatch for Rust sends: rpc-v2-cbor, SigV4-signed for `monitoring`
    (built by hand: boto3's own cloudwatch client would pick another protocol)."""
    import urllib.error
    import urllib.request

    import cbor2
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {
        "smithy-protocol": "rpc-v2-cbor",
        "content-type": "application/cbor",
        "accept": "application/cbor",
        "x-amzn-query-mode": "true",
    }
    aws_req = AWSRequest(method="POST", url=lab.env["AWS_ENDPOINT_URL"] + CW_PATH + op, data=body, headers=headers)
    SigV4Auth(Credentials(lab.env["AWS_ACCESS_KEY_ID"], lab.env["AWS_SECRET_ACCESS_KEY"]), "monitoring", region).add_auth(aws_req)
    prepared = aws_req.prepare()
    req = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, h, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        status, h, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    assert h.get("content-type") == "application/cbor" and h.get("smithy-protocol") == "rpc-v2-cbor", (status, h, raw[:200])
    return status, h, cbor2.loads(raw)


def get_metric_data(lab: Lab, region: str, queries: list[tuple[str, str, dict, str]], **extra) -> dict[str, dict]:
    """queries: (Id, Namespace, Dimensions, Stat) of ReplicationLatency, Period 60, last 10 min.
    Returns the results by Id, checked for the response shape."""
    import cbor2

    now = time.time()
    body = cbor2.dumps({
        "MetricDataQueries": [
            {"Id": qid, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": ns, "MetricName": "ReplicationLatency",
                           "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                "Period": 60, "Stat": stat}}
            for qid, ns, dims, stat in queries
        ],
        "StartTime": cbor2.CBORTag(1, now - 600.0),
        "EndTime": cbor2.CBORTag(1, now + 60.0),
        **extra,
    })
    status, _, answer = cw_rpc(lab, region, body)
    assert status == 200, (status, answer)
    assert answer["Messages"] == [] and "NextToken" not in answer, answer
    results = {r["Id"]: r for r in answer["MetricDataResults"]}
    assert list(results) == [q[0] for q in queries], answer
    for r in results.values():
        assert r["Label"] == "ReplicationLatency" and r["StatusCode"] == "Complete", r
        assert len(r["Timestamps"]) == len(r["Values"]), r
        assert all(isinstance(v, float) for v in r["Values"]), r
        # tag 1 epoch seconds (cbor2 decodes it to a datetime), aligned to the period
        assert all(t.timestamp() % 60 == 0 for t in r["Timestamps"]), r
    return results


@test
def cloudwatch_dynamodb_replication_latency(lab: Lab) -> None:
    src, _ = global_table(lab, "t-cw")
    lab.fault("dynamodb", "delay", "300ms", "--table", "t-cw")
    for i in range(4):
        src.put_item(TableName="t-cw", Item={"pk": {"S": f"cw{i}"}, "seq": {"N": str(i)}})
    wait_for(lambda: len(lab.truth(table="t-cw")) == 4, 3, "4 ground-truth lines")
    lags_ms = [(l["readable_at"] - l["committed_at"]) * 1000 for l in lab.truth(table="t-cw")]
    dims = {"TableName": "t-cw", "ReceivingRegion": DST}
    got = get_metric_data(lab, SRC, [
        ("avg", "AWS/DynamoDB", dims, "Average"),
        ("max", "AWS/DynamoDB", dims, "Maximum"),
        ("n", "AWS/DynamoDB", dims, "SampleCount"),
        ("wrongregion", "AWS/DynamoDB", {"TableName": "t-cw", "ReceivingRegion": SRC}, "Average"),
        ("wrongtable", "AWS/DynamoDB", {"TableName": "t-cw-other", "ReceivingRegion": DST}, "Average"),
        ("partialdims", "AWS/DynamoDB", {"TableName": "t-cw"}, "Average"),
    ], ScanBy="TimestampDescending")
    for qid in ("avg", "max"):
        assert got[qid]["Values"], got[qid]
        assert all(abs(v - 300) <= 50 for v in got[qid]["Values"]), (qid, got[qid]["Values"])
    assert sum(got["n"]["Values"]) == 4, got["n"]  # one datapoint per replicated change
    assert max(got["max"]["Values"]) == max(lags_ms), (got["max"]["Values"], lags_ms)  # the ground-truth figures
    stamps = got["avg"]["Timestamps"]
    assert stamps == sorted(stamps, reverse=True), stamps  # newest first
    for qid in ("wrongregion", "wrongtable", "partialdims"):
        assert got[qid]["Values"] == [] and got[qid]["Timestamps"] == [], got[qid]
    # Datapoints published after a read are seen by the next one (the series index is incremental).
    for i in range(4, 6):
        src.put_item(TableName="t-cw", Item={"pk": {"S": f"cw{i}"}, "seq": {"N": str(i)}})
    wait_for(lambda: len(lab.truth(table="t-cw")) == 6, 3, "6 ground-truth lines")
    again = get_metric_data(lab, SRC, [("n", "AWS/DynamoDB", dims, "SampleCount")])
    assert sum(again["n"]["Values"]) == 6, again["n"]
    # Published in the source region only (the write's region).
    assert get_metric_data(lab, DST, [("avg", "AWS/DynamoDB", dims, "Average")])["avg"]["Values"] == []
    # The datapoints live in moto's CloudWatch: its own protocols see them too.
    cw = lab.client("cloudwatch", SRC)
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    stats = cw.get_metric_statistics(
        Namespace="AWS/DynamoDB", MetricName="ReplicationLatency",
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - datetime.timedelta(minutes=10), EndTime=now + datetime.timedelta(minutes=1),
        Period=60, Statistics=["SampleCount"],
    )["Datapoints"]
    assert sum(d["SampleCount"] for d in stats) == 6 and stats[0]["Unit"] == "Milliseconds", stats


@test
def cloudwatch_s3_replication_latency(lab: Lab) -> None:
    rule = {"ID": "cw-rule", "Filter": {"Prefix": "rpo-canary/"},
            "Destination": {"Bucket": "arn:aws:s3:::s3-dst-cw", "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}}}
    src, dst = s3_pair(lab, "s3-src-cw", "s3-dst-cw", rule)
    # Same pair of regions, a rule without metrics: AWS publishes nothing for it.
    s3_pair(lab, "s3-src-nocw", "s3-dst-nocw")
    for bucket in ("s3-src-cw", "s3-src-nocw"):
        lab.fault("s3", "delay", "200ms", "--bucket", bucket)
    for i in range(3):
        src.put_object(Bucket="s3-src-cw", Key=f"rpo-canary/cw/{i}", Body=b"x")
        src.put_object(Bucket="s3-src-nocw", Key=f"rpo-canary/cw/{i}", Body=b"x")
    wait_for(lambda: len(lab.truth(bucket="s3-src-cw")) == 3 and len(lab.truth(bucket="s3-src-nocw")) == 3, 3, "6 ground-truth lines")
    dims = {"SourceBucket": "s3-src-cw", "DestinationBucket": "s3-dst-cw", "RuleId": "cw-rule"}
    got = get_metric_data(lab, SRC, [
        ("max", "AWS/S3", dims, "Maximum"),
        ("avg", "AWS/S3", dims, "Average"),
        ("n", "AWS/S3", dims, "SampleCount"),
        ("norule", "AWS/S3", {"SourceBucket": "s3-src-nocw", "DestinationBucket": "s3-dst-nocw", "RuleId": "canary"}, "Maximum"),
        ("otherrule", "AWS/S3", dict(dims, RuleId="canary"), "Maximum"),
    ], ScanBy="TimestampAscending")
    for qid in ("max", "avg"):
        assert got[qid]["Values"] and all(abs(v - 0.2) <= 0.05 for v in got[qid]["Values"]), (qid, got[qid])
    assert sum(got["n"]["Values"]) == 3, got["n"]
    assert got["norule"]["Values"] == [] and got["otherrule"]["Values"] == [], got
    assert get_metric_data(lab, DST, [("max", "AWS/S3", dims, "Maximum")])["max"]["Values"] == []  # source region only
    # Stalled: nothing replicates, nothing is published.
    lab.fault("s3", "stall", "--bucket", "s3-src-cw")
    src.put_object(Bucket="s3-src-cw", Key="rpo-canary/cw/stalled", Body=b"x")
    time.sleep(0.4)
    assert sum(get_metric_data(lab, SRC, [("n", "AWS/S3", dims, "SampleCount")])["n"]["Values"]) == 3
    lab.fault("s3", "resume", "--bucket", "s3-src-cw")
    wait_for(lambda: head_status(dst, "s3-dst-cw", "rpo-canary/cw/stalled") == "REPLICA", 2, "replica after resume")
    assert sum(get_metric_data(lab, SRC, [("n", "AWS/S3", dims, "SampleCount")])["n"]["Values"]) == 4


@test
def cloudwatch_rpc_buckets_and_pages(lab: Lab) -> None:
    import datetime

    import cbor2

    # Data put through moto's own protocol (boto3: JSON) are served over CBOR too.
    minute = int(time.time() // 60) * 60
    lab.client("cloudwatch", SRC).put_metric_data(Namespace="Lab/Test", MetricData=[
        {"MetricName": "m", "Value": v, "Unit": "Seconds", "Dimensions": [{"Name": "d", "Value": "x"}],
         "Timestamp": datetime.datetime.fromtimestamp(minute - off, datetime.timezone.utc)}
        for off, v in ((60, 1.0), (60 - 59.5, 3.0), (120, 5.0), (180, 7.0), (170, 9.0))
    ])
    query = {"Id": "q", "MetricStat": {"Metric": {"Namespace": "Lab/Test", "MetricName": "m", "Dimensions": [{"Name": "d", "Value": "x"}]},
                                       "Period": 60, "Stat": "Average"}, "Label": "mine"}
    window = {"StartTime": cbor2.CBORTag(1, minute - 600), "EndTime": cbor2.CBORTag(1, minute + 60)}
    status, _, page1 = cw_rpc(lab, SRC, cbor2.dumps({"MetricDataQueries": [query], **window, "MaxDatapoints": 2}))
    assert status == 200, page1
    r1 = page1["MetricDataResults"][0]
    assert r1["Label"] == "mine" and r1["StatusCode"] == "PartialData" and page1.get("NextToken"), page1
    # newest first; epoch-aligned buckets: [minute-60, minute) holds 1.0 and 3.0
    assert [t.timestamp() for t in r1["Timestamps"]] == [minute - 60, minute - 120] and r1["Values"] == [2.0, 5.0], r1
    status, _, page2 = cw_rpc(lab, SRC, cbor2.dumps({"MetricDataQueries": [query], **window, "MaxDatapoints": 2, "NextToken": page1["NextToken"]}))
    r2 = page2["MetricDataResults"][0]
    assert status == 200 and r2["StatusCode"] == "Complete" and "NextToken" not in page2, page2
    assert [t.timestamp() for t in r2["Timestamps"]] == [minute - 180] and r2["Values"] == [8.0], r2
    status, _, asc = cw_rpc(lab, SRC, cbor2.dumps({"MetricDataQueries": [query], **window, "ScanBy": "TimestampAscending"}))
    assert asc["MetricDataResults"][0]["Values"] == [8.0, 5.0, 2.0], asc
    # [StartTime, EndTime): the datapoint at minute - 180 is in only when StartTime <= it.
    narrow = {"StartTime": cbor2.CBORTag(1, minute - 175), "EndTime": cbor2.CBORTag(1, minute - 60)}
    status, _, cut = cw_rpc(lab, SRC, cbor2.dumps({"MetricDataQueries": [query], **narrow}))
    assert cut["MetricDataResults"][0]["Values"] == [5.0, 9.0], cut


@test
def cloudwatch_rpc_errors(lab: Lab) -> None:
    import cbor2

    def refused(body: bytes, code: str = "InvalidParameterValue") -> None:
        status, headers, answer = cw_rpc(lab, SRC, body)
        assert status == 400 and answer.get("__type") == code and answer.get("message"), (status, answer)
        assert headers.get("x-amzn-query-error") == f"{code};Sender", headers

    now = time.time()
    ok_query = {"Id": "q", "MetricStat": {"Metric": {"Namespace": "AWS/S3", "MetricName": "ReplicationLatency"}, "Period": 60, "Stat": "Maximum"}}
    window = {"StartTime": cbor2.CBORTag(1, now - 60), "EndTime": cbor2.CBORTag(1, now)}
    refused(b"\xff\x00 not cbor")
    refused(cbor2.dumps(["not", "a", "map"]))
    refused(cbor2.dumps({"MetricDataQueries": [], **window}))
    refused(cbor2.dumps({"MetricDataQueries": [ok_query]}))  # no StartTime/EndTime
    refused(cbor2.dumps({"MetricDataQueries": [ok_query], "StartTime": cbor2.CBORTag(1, now), "EndTime": cbor2.CBORTag(1, now - 60)}))
    refused(cbor2.dumps({"MetricDataQueries": [dict(ok_query, MetricStat=dict(ok_query["MetricStat"], Period=7))], **window}))
    refused(cbor2.dumps({"MetricDataQueries": [dict(ok_query, MetricStat=dict(ok_query["MetricStat"], Stat="Median"))], **window}))
    refused(cbor2.dumps({"MetricDataQueries": [{"Id": "q"}], **window}))
    refused(cbor2.dumps({"MetricDataQueries": [ok_query], **window, "NextToken": "bogus"}), "InvalidNextToken")
    status, _, answer = cw_rpc(lab, SRC, cbor2.dumps({"MetricDataQueries": [ok_query], **window}))
    assert status == 200 and answer["MetricDataResults"][0]["Values"] == [], answer


# ---- HTTP/1.1 keep-alive on the AWS port (awsserver/http11.py) -------------------------------

class RawConn:
    """One TCP connection to the AWS port, HTTP/1.1 by hand: checks framing byte by byte."""

    def __init__(self, lab: Lab):
        import socket

        host, port = lab.env["AWS_ENDPOINT_URL"].split("//", 1)[1].split(":")
        self.port = int(port)
        self.sock = socket.create_connection((host, self.port), timeout=5)
        self.rfile = self.sock.makefile("rb")

    def request(self, method: str, path: str, service: str = "s3", body: bytes = b"", headers: dict | None = None, region: str = SRC) -> bytes:
        h = {
            "Host": f"127.0.0.1:{self.port}",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=lab/20261123/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0",
            **(headers or {}),
        }
        if "Transfer-Encoding" not in h and "Content-Length" not in h and (body or method in ("PUT", "POST")):
            h["Content-Length"] = str(len(body))
        return f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n" + body

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))  # several at once = pipelined

    def answer(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """Reads exactly one answer; its Content-Length must frame the body (no close-delimited
        bodies, no chunked answers)."""
        line = self.rfile.readline()
        assert line.startswith(b"HTTP/1.1 "), f"no answer (connection closed?): {line!r}"
        status, headers = int(line.split()[1]), {}
        while (l := self.rfile.readline()) not in (b"\r\n", b""):
            k, _, v = l.decode("latin-1").partition(":")
            assert k.strip().lower() not in headers, f"header {k} twice"
            headers[k.strip().lower()] = v.strip()
        if status == 100:
            return self.answer(method)
        assert "transfer-encoding" not in headers, headers
        if method == "HEAD" or status in (204, 304):
            return status, headers, b""
        assert "content-length" in headers, (status, headers)
        body = self.rfile.read(int(headers["content-length"]))
        assert len(body) == int(headers["content-length"]), (status, headers, body)
        return status, headers, body

    def closed(self) -> bool:
        self.sock.settimeout(2)
        return self.rfile.read(1) == b""


@test
def http_keep_alive_and_framing(lab: Lab) -> None:
    c = RawConn(lab)
    create = b"<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>" % SRC.encode()
    c.send(c.request("PUT", "/ka-bucket", body=create), c.request("PUT", "/ka-bucket/k", body=b"hello"))
    for _ in range(2):
        status, h, _ = c.answer()
        assert status == 200 and h.get("connection") != "close", (status, h)
    # HEAD: no body, the object's length; a missing key and a DELETE (204) keep the connection.
    c.send(c.request("HEAD", "/ka-bucket/k"), c.request("HEAD", "/ka-bucket/missing"), c.request("DELETE", "/ka-bucket/gone"),
           c.request("GET", "/ka-bucket/k"))
    status, h, _ = c.answer("HEAD")
    assert status == 200 and h["content-length"] == "5", (status, h)
    assert c.answer("HEAD")[0] == 404
    assert c.answer("DELETE")[0] == 204
    assert c.answer()[2] == b"hello"
    # Chunked upload with a trailer section, pipelined with the next request.
    chunked = b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n"
    c.send(c.request("PUT", "/ka-bucket/ch", body=chunked, headers={"Transfer-Encoding": "chunked"}), c.request("GET", "/ka-bucket/ch"))
    assert c.answer()[0] == 200 and c.answer()[2] == b"abcdefg"
    # Expect: 100-continue: one 100, then the answer.
    c.send(c.request("PUT", "/ka-bucket/e", headers={"Expect": "100-continue", "Content-Length": "2"}))
    assert c.rfile.readline().startswith(b"HTTP/1.1 100 "), "no 100 Continue"
    assert c.rfile.readline() == b"\r\n"
    c.send(b"ok", c.request("GET", "/ka-bucket/e"))
    assert c.answer()[0] == 200 and c.answer()[2] == b"ok"
    # Errors of every origin are framed and keep the connection: moto's, the gateway's
    # injected faults (DynamoDB JSON, S3 XML, HEAD without body), the CBOR CloudWatch replies.
    lab.fault("dynamodb", "error", "throttle", "1", "GetItem", "--table", "ka-table")
    lab.fault("s3", "error", "500", "1", "HeadObject", "--bucket", "ka-bucket")
    ddb = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"}
    cbor_h = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
    c.send(
        c.request("POST", "/", "dynamodb", b'{"TableName":"ka-table","Key":{"pk":{"S":"x"}}}', ddb),
        c.request("POST", "/", "dynamodb", b'{"TableName":"ka-missing","Key":{"pk":{"S":"x"}}}', ddb),
        c.request("HEAD", "/ka-bucket/k"),
        c.request("GET", "/ka-bucket/k"),
        c.request("POST", CW_PATH + "GetMetricData", "monitoring", b"\xff not cbor", cbor_h),
        c.request("GET", "/ka-bucket/k"),
    )
    status, _, body = c.answer()
    assert status == 400 and b"ProvisionedThroughputExceededException" in body, (status, body)
    status, _, body = c.answer()
    assert status == 400 and b"ResourceNotFoundException" in body, (status, body)
    assert c.answer("HEAD")[0] == 500
    assert c.answer()[2] == b"hello"
    status, h, body = c.answer()
    assert status == 400 and h["content-type"] == "application/cbor" and body, (status, h)
    assert c.answer()[2] == b"hello"
    lab.fault("dynamodb", "reset", "--table", "ka-table")
    lab.fault("s3", "reset", "--bucket", "ka-bucket")
    # Idle connections and a request held by a latency fault do not hold up anyone else.
    idle = [RawConn(lab) for _ in range(10)]
    stalled = RawConn(lab)
    stalled.send(b"PUT /ka-bucket/half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")  # stops mid-body
    lab.fault("s3", "error", "latency", "1s", "GetObject", "--bucket", "ka-bucket")
    hung = RawConn(lab)
    t0 = time.monotonic()
    hung.send(hung.request("GET", "/ka-bucket/k"))
    time.sleep(0.1)
    c.send(c.request("HEAD", "/ka-bucket/k"))
    assert c.answer("HEAD")[0] == 200 and time.monotonic() - t0 < 0.6, "a hung request held up another connection"
    assert hung.answer()[2] == b"hello" and time.monotonic() - t0 >= 1.0
    lab.fault("s3", "reset", "--bucket", "ka-bucket")
    # Bad framing closes (after an answer); `Connection: close` is honoured.
    bad = RawConn(lab)
    bad.send(b"PUT /ka-bucket/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    status, h, _ = bad.answer()
    assert status == 400 and h.get("connection") == "close" and bad.closed()
    c.send(c.request("GET", "/ka-bucket/k", headers={"Connection": "close"}))
    status, h, _ = c.answer()
    assert status == 200 and h.get("connection") == "close" and c.closed()
    for conn in (*idle, stalled, hung, bad, c):
        conn.sock.close()
    # boto3 (urllib3) reuses one connection per client: no new connection per request.
    import urllib3.connection

    opened = []
    orig = urllib3.connection.HTTPConnection.connect

    def counting_connect(conn):
        opened.append(1)
        return orig(conn)

    urllib3.connection.HTTPConnection.connect = counting_connect
    try:
        s3 = lab.client("s3", SRC)
        for _ in range(20):
            s3.head_object(Bucket="ka-bucket", Key="k")
    finally:
        urllib3.connection.HTTPConnection.connect = orig
    assert len(opened) == 1, f"{len(opened)} connections for 20 requests"


# ---- region outage (`aws region-down REGION [--refuse]`, `aws region-up REGION`) ----------------

def control(lab: Lab, path: str, argv: list[str] | None = None) -> dict:
    """The control API directly (GET /status, POST /fault): a few ms, where `lab fault` (a
    process) would be too slow for the timing of a test."""
    import urllib.request

    data = json.dumps({"argv": argv}).encode() if argv is not None else None
    req = urllib.request.Request(lab.env["LAB_CONTROL_URL"] + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


ONE_ATTEMPT = {"total_max_attempts": 1, "mode": "standard"}  # not even a retry of a timeout/reset


def outage(lab: Lab, region: str) -> dict | None:
    return next((r for r in control(lab, "/status")["regions_down"] if r["region"] == region), None)


def no_answer(fn: Callable[[], object]) -> tuple[BaseException, float]:
    """Calls fn, which must fail without any HTTP answer (timeout, reset, closed); returns the
    error and how long it took."""
    t0 = time.monotonic()
    try:
        fn()
    except ClientError as e:
        raise AssertionError(f"got an HTTP answer: {e}") from None
    except Exception as e:
        return e, time.monotonic() - t0
    raise AssertionError("expected no answer, the call succeeded")


@test
def aws_region_down_hangs_only_that_region(lab: Lab) -> None:
    import threading
    import urllib.request

    s3src, s3dst = lab.client("s3", SRC), lab.client("s3", DST)
    s3src.create_bucket(Bucket="rd-src", CreateBucketConfiguration={"LocationConstraint": SRC})
    s3dst.create_bucket(Bucket="rd-dst", CreateBucketConfiguration={"LocationConstraint": DST})
    s3dst.put_object(Bucket="rd-dst", Key="k", Body=b"v")
    presigned = lab.client("s3", DST, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "rd-dst", "Key": "k"}, ExpiresIn=60)
    assert "X-Amz-Credential=" in presigned and "Authorization" not in presigned
    # Clients are made here: boto3's default session is not thread-safe for creating them.
    quick = {"read_timeout": 1, "connect_timeout": 1, "retries": ONE_ATTEMPT}
    down = {
        "dynamodb": (lambda c: lambda: c.list_tables())(lab.client("dynamodb", DST, **quick)),
        "dynamodbstreams": (lambda c: lambda: c.list_streams())(lab.client("dynamodbstreams", DST, **quick)),
        "s3": (lambda c: lambda: c.head_object(Bucket="rd-dst", Key="k"))(lab.client("s3", DST, **quick)),
        "cloudwatch": (lambda c: lambda: c.list_metrics())(lab.client("cloudwatch", DST, **quick)),
        "presigned": lambda: urllib.request.urlopen(presigned, timeout=1).read(),
    }
    healthy = [
        lab.client("dynamodb", SRC).list_tables,
        lambda: s3src.head_bucket(Bucket="rd-src"),
        lab.client("cloudwatch", SRC).list_metrics,
    ]
    lab.fault("aws", "region-down", DST)
    try:
        assert json.loads((lab.dir / "aws-faults.json").read_text())["regions_down"] == {DST: "hang"}
        results: dict[str, tuple[BaseException, float]] = {}
        threads = [threading.Thread(target=lambda n=n, f=f: results.__setitem__(n, no_answer(f))) for n, f in down.items()]
        for t in threads:
            t.start()
        wait_for(lambda: outage(lab, DST)["hanging"] == len(down), 0.8, f"{len(down)} requests held")
        # Meanwhile, the other region answers at once.
        for call in healthy:
            t0 = time.monotonic()
            call()
            assert time.monotonic() - t0 < 0.3, f"a healthy-region request took {time.monotonic() - t0:.2f}s"
        for t in threads:
            t.join(5)
        for name, (err, took) in results.items():
            assert "timeout" in type(err).__name__.lower() or "timed out" in str(err), (name, repr(err))
            assert 0.95 <= took < 1.5, (name, took)
        assert len(results) == len(down), results
        # The clients gave up and closed: their threads are free again.
        wait_for(lambda: outage(lab, DST)["hanging"] == 0, 1.5, "held requests released")
        # A held request gets nothing, and is closed without answer on region-up.
        c = RawConn(lab)
        c.send(c.request("POST", "/", "dynamodb", b"{}", {"X-Amz-Target": "DynamoDB_20120810.ListTables"}, region=DST))
        c.sock.settimeout(0.3)
        try:
            got = c.sock.recv(1)
            raise AssertionError(f"answered while the region is down: {got!r}")
        except TimeoutError:
            pass
    finally:
        lab.fault("aws", "region-up", DST)
    c.sock.settimeout(1)
    t0 = time.monotonic()
    assert c.sock.recv(1) == b"" and time.monotonic() - t0 < 0.5, "not closed on region-up"
    c.sock.close()
    assert outage(lab, DST) is None and control(lab, "/status")["regions_down"] == []
    # Up again: every service answers.
    for name, call in down.items():
        call()


@test
def aws_region_down_refuse(lab: Lab) -> None:
    ddb, s3 = lab.client("dynamodb", DST, retries=ONE_ATTEMPT), lab.client("s3", DST, retries=ONE_ATTEMPT)
    lab.fault("aws", "region-down", DST, "--refuse")
    try:
        for call in (ddb.list_tables, lambda: s3.head_bucket(Bucket="rd-dst")):
            err, took = no_answer(call)
            assert took < 0.5, (repr(err), took)
        c = RawConn(lab)  # what the client sees on the wire: a reset, no answer
        c.send(c.request("HEAD", "/rd-dst", region=DST))
        t0 = time.monotonic()
        try:
            got = c.sock.recv(1)
            raise AssertionError(f"expected a connection reset, got {got!r}")
        except ConnectionResetError:
            assert time.monotonic() - t0 < 0.5
        c.sock.close()
        lab.client("dynamodb", SRC).list_tables()  # other regions unaffected
        assert outage(lab, DST)["mode"] == "refuse"
    finally:
        lab.fault("aws", "region-up", DST)
    ddb.list_tables()
    s3.head_bucket(Bucket="rd-dst")


@test
def aws_region_down_holds_replication(lab: Lab) -> None:
    src, dst = global_table(lab, "t-outage")
    s3src, s3dst = s3_pair(lab, "s3-src-out", "s3-dst-out")
    lab.fault("dynamodb", "delay", "300ms", "--table", "t-outage")
    # OUT of the region: committed in DST, not yet replicated when DST goes down.
    dst.put_item(TableName="t-outage", Item={"pk": {"S": "from-osaka"}, "seq": {"N": "100"}})
    control(lab, "/fault", ["aws", "region-down", DST])
    try:
        # INTO the region: written in the healthy one.
        for i in range(3):
            src.put_item(TableName="t-outage", Item={"pk": {"S": f"o{i}"}, "seq": {"N": str(i)}})
        s3src.put_object(Bucket="s3-src-out", Key="rpo-canary/out/1", Body=b"1")
        time.sleep(0.5)  # well past the 300 ms delay
        assert lab.truth(table="t-outage") == [] and lab.truth(bucket="s3-src-out") == [], "replicated while down"
        assert replica_item(src, "t-outage", "from-osaka") is None
        assert head_status(s3src, "s3-src-out", "rpo-canary/out/1") == "PENDING"
        queues = {(q["service"], q["source_region"], q["replica_region"]): q
                  for q in control(lab, "/status")["replication"] if q["name"] in ("t-outage", "s3-src-out")}
        for pair, n in ((("dynamodb", SRC, DST), 3), (("dynamodb", DST, SRC), 1), (("s3", SRC, DST), 1)):
            assert queues[pair]["queued"] == n and queues[pair]["region_down"] == [DST], (pair, queues[pair])
    finally:
        lab.fault("aws", "region-up", DST)
    wait_for(lambda: replica_item(dst, "t-outage", "o2") and replica_item(src, "t-outage", "from-osaka")
             and head_status(s3dst, "s3-dst-out", "rpo-canary/out/1") == "REPLICA", 1, "queued changes after region-up")
    seqs = [l["seq"] for l in lab.truth(table="t-outage", source_region=SRC)]
    assert seqs == [0, 1, 2], f"not applied in order: {seqs}"
    assert head_status(s3src, "s3-src-out", "rpo-canary/out/1") == "COMPLETED"


# ---- CloudWatch Logs: EMF extraction (awsserver/logs_emf.py) and `lab awslogs` --------------

EMF_SCHEMA = HERE.parent / "emf" / "emf.schema.json"


def emf_schema_errors(doc: object) -> list[str]:
    """What tests/emf/emf.schema.json says about doc (jsonschema comes with moto[server])."""
    import jsonschema

    schema = json.loads(EMF_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(doc)]


def emf_doc(ts_ms: int, namespace: str, metrics: list[dict], dims: list[list[str]], **members) -> dict:
    return {"_aws": {"Timestamp": ts_ms, "CloudWatchMetrics": [
        {"Namespace": namespace, "Dimensions": dims, "Metrics": metrics}]}, **members}


def emf_stat(lab: Lab, region: str, namespace: str, name: str, dims: dict, stat: str, period: int = 60) -> list[tuple[float, float]]:
    """(bucket start, value) of one metric over the last 20 minutes, through the lab's
    GetMetricData over RPC v2 CBOR (what the agent's SDK speaks), oldest first."""
    import cbor2

    now = time.time()
    body = cbor2.dumps({
        "MetricDataQueries": [{"Id": "q", "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": period, "Stat": stat}}],
        "StartTime": cbor2.CBORTag(1, now - 1200.0), "EndTime": cbor2.CBORTag(1, now + 60.0),
        "ScanBy": "TimestampAscending",
    })
    status, _, answer = cw_rpc(lab, region, body)
    assert status == 200, (status, answer)
    r = answer["MetricDataResults"][0]
    return [(t.timestamp(), v) for t, v in zip(r["Timestamps"], r["Values"])]


def logs_status(lab: Lab) -> dict:
    return control(lab, "/status")["logs_emf"]


def log_stream(lab: Lab, region: str, group: str, stream: str):
    logs = lab.client("logs", region)
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    return logs


def stream_messages(logs, group: str, stream: str) -> list[dict]:
    return logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]


@test
def logs_emf_extraction_statistics(lab: Lab) -> None:
    group, stream = "/emf/stats", "s"
    logs = log_stream(lab, SRC, group, stream)
    # Two documents in the same second of the previous minute (one Period-60 bucket), one a
    # second later: Maximum of a plain value, SampleCount/percentiles of a histogram, Sum of a Count.
    minute = int(time.time() // 60) * 60 - 60
    t0, t1 = (minute + 10) * 1000, (minute + 11) * 1000
    metrics = [
        {"Name": "RPO", "Unit": "Seconds", "StorageResolution": 1},
        {"Name": "ReplicationLag", "Unit": "Seconds"},
        {"Name": "CanariesLost", "Unit": "Count"},
        {"Name": "ProbeUp", "Unit": "None"},
        {"Name": "Reads"},  # no Unit: stored as None
    ]
    dims = [["Target", "ReplicaRegion"], ["Target"]]
    docs = [
        emf_doc(t0, "Lab/EMF", metrics, dims, Target="orders", ReplicaRegion=DST, Kind="dynamodb",
                RPO=2.5, CanariesLost=1, ProbeUp=1, Reads=[3, 4, 5],
                ReplicationLag={"Values": [0.1, 0.2, 0.3], "Counts": [50, 45, 5], "Max": 0.3, "Min": 0.1, "Count": 100, "Sum": 15.5}),
        emf_doc(t0, "Lab/EMF", metrics, dims, Target="orders", ReplicaRegion=DST, Kind="dynamodb",
                RPO=4.0, CanariesLost=2, ProbeUp=0, Reads=[1],
                ReplicationLag={"Values": [0.4], "Counts": [0], "Max": 0.4, "Min": 0.4, "Count": 0, "Sum": 0}),
        emf_doc(t1, "Lab/EMF", metrics, dims, Target="orders", ReplicaRegion=DST, Kind="dynamodb",
                RPO=1.0, CanariesLost=0, ProbeUp=1, Reads=[], ReplicationLag=0.25),
    ]
    for d in docs:
        assert emf_schema_errors(d) == [], emf_schema_errors(d)
    before = logs_status(lab)
    now_ms = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": now_ms, "message": json.dumps(d)} for d in docs] + [{"timestamp": now_ms, "message": "a plain line"}])
    after = logs_status(lab)
    assert after["documents_extracted"] - before["documents_extracted"] == 3, (before, after)
    assert after["documents_rejected"] == before["documents_rejected"], after
    assert after["log_events"] - before["log_events"] == 4, after
    # The events themselves are stored unchanged (extraction only adds datapoints).
    assert [e["message"] for e in stream_messages(logs, group, stream)] == [json.dumps(d) for d in docs] + ["a plain line"]

    full = {"Target": "orders", "ReplicaRegion": DST}
    assert emf_stat(lab, SRC, "Lab/EMF", "RPO", full, "Maximum") == [(minute, 4.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "RPO", full, "Maximum", period=1) == [(minute + 10, 4.0), (minute + 11, 1.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "RPO", full, "SampleCount") == [(minute, 3.0)]
    # Histogram: 100 samples (a zero count adds none) plus the plain 0.25 of the third document.
    assert emf_stat(lab, SRC, "Lab/EMF", "ReplicationLag", full, "SampleCount") == [(minute, 101.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "ReplicationLag", full, "p99") == [(minute, 0.3)]
    assert emf_stat(lab, SRC, "Lab/EMF", "ReplicationLag", full, "p40") == [(minute, 0.1)]  # nearest rank 41 of 101
    assert emf_stat(lab, SRC, "Lab/EMF", "ReplicationLag", full, "p50") == [(minute, 0.2)]  # rank 51
    assert emf_stat(lab, SRC, "Lab/EMF", "ReplicationLag", full, "Maximum") == [(minute, 0.3)]
    assert emf_stat(lab, SRC, "Lab/EMF", "CanariesLost", full, "Sum") == [(minute, 3.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "ProbeUp", full, "Minimum") == [(minute, 0.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "Reads", full, "SampleCount") == [(minute, 4.0)]  # [] adds nothing
    # Every dimension set is a metric of its own; dimensions must match exactly.
    assert emf_stat(lab, SRC, "Lab/EMF", "CanariesLost", {"Target": "orders"}, "Sum") == [(minute, 3.0)]
    assert emf_stat(lab, SRC, "Lab/EMF", "CanariesLost", {"Target": "orders", "Kind": "dynamodb"}, "Sum") == []
    assert emf_stat(lab, SRC, "Lab/EMF", "CanariesLost", {}, "Sum") == []
    # In the request's region only.
    assert emf_stat(lab, DST, "Lab/EMF", "RPO", full, "Maximum") == []
    # Units as declared (moto's own protocol sees the datapoints too).
    import datetime
    cw = lab.client("cloudwatch", SRC)
    for name, unit in (("RPO", "Seconds"), ("CanariesLost", "Count"), ("Reads", "None")):
        points = cw.get_metric_statistics(
            Namespace="Lab/EMF", MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in full.items()],
            StartTime=datetime.datetime.fromtimestamp(minute - 60, datetime.timezone.utc),
            EndTime=datetime.datetime.fromtimestamp(minute + 120, datetime.timezone.utc),
            Period=60, Statistics=["SampleCount"])["Datapoints"]
        assert points and all(p["Unit"] == unit for p in points), (name, points)
    # `"Dimensions": []` (allowed by the specification): the metric without dimensions.
    bare = emf_doc(t0, "Lab/EMF-bare", [{"Name": "N", "Unit": "Count"}], [], N=7)
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now_ms, "message": json.dumps(bare)}])
    assert emf_stat(lab, SRC, "Lab/EMF-bare", "N", {}, "Sum") == [(minute, 7.0)]
    # Another region's logs publish into that region's CloudWatch.
    logs_dst = log_stream(lab, DST, group, stream)
    logs_dst.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now_ms, "message": json.dumps(docs[0])}])
    assert emf_stat(lab, DST, "Lab/EMF", "RPO", full, "Maximum") == [(minute, 2.5)]
    assert logs_status(lab)["extracted"][f"{DST} Lab/EMF"] == 1


# (reason, document or raw message): none of them may be extracted. `ok` is the value member
# every document would need; each case breaks one rule.
def _emf_invalid_cases(now_ms: int) -> list[tuple[str, object]]:
    def doc(reason: str, metrics=None, dims=None, ts=now_ms, namespace=None, **members):
        base = {"M": 1.0, "D": "d"}
        base.update(members)
        return emf_doc(ts, namespace or f"Lab/Bad/{reason}", metrics or [{"Name": "M", "Unit": "Count"}],
                       [["D"]] if dims is None else dims, **base)

    cases: list[tuple[str, object]] = [
        ("value_missing", {k: v for k, v in doc("value_missing").items() if k != "M"}),
        ("value_not_numeric", doc("value_not_numeric", M="1.5")),
        ("value_not_numeric", doc("value_not_numeric", M=True)),
        ("value_not_numeric", doc("value_not_numeric", M=None)),
        ("value_not_numeric", doc("value_not_numeric", M=[1, "2"])),
        ("too_many_values", doc("too_many_values", M=list(range(101)))),
        ("too_many_values", doc("too_many_values", M={"Values": list(range(101)), "Counts": [1] * 101})),
        ("histogram_invalid", doc("histogram_invalid", M={"Values": [1, 2], "Counts": [1]})),
        ("histogram_invalid", doc("histogram_invalid", M={"Values": [1], "Counts": [-1]})),
        ("histogram_invalid", doc("histogram_invalid", M={"Values": [1], "Counts": [1], "Max": "x"})),
        ("dimension_missing", {k: v for k, v in doc("dimension_missing").items() if k != "D"}),
        ("dimension_not_string", doc("dimension_not_string", D=5)),
        ("dimension_not_string", doc("dimension_not_string", D=None)),
        ("dimension_value_invalid", doc("dimension_value_invalid", D="")),
        ("too_many_dimensions", doc("too_many_dimensions", dims=[[f"D{i}" for i in range(31)]], **{f"D{i}": "v" for i in range(31)})),
        ("dimensions_invalid", doc("dimensions_invalid", dims="D")),
        ("dimensions_invalid", doc("dimensions_invalid", dims=[["D", "D"]])),
        ("too_many_metrics", doc("too_many_metrics", metrics=[{"Name": f"M{i}"} for i in range(101)], **{f"M{i}": 1 for i in range(101)})),
        ("metrics_invalid", doc("metrics_invalid", metrics=[{"Unit": "Count"}])),
        ("unit_invalid", doc("unit_invalid", metrics=[{"Name": "M", "Unit": "Secs"}])),
        ("storage_resolution_invalid", doc("storage_resolution_invalid", metrics=[{"Name": "M", "StorageResolution": 30}])),
        ("timestamp_invalid", doc("timestamp_invalid", ts="now")),
        ("timestamp_invalid", doc("timestamp_invalid", ts=-5)),
        ("timestamp_too_old", doc("timestamp_too_old", ts=now_ms - 15 * 86400 * 1000)),
        ("timestamp_too_new", doc("timestamp_too_new", ts=now_ms + 3 * 3600 * 1000)),
        ("namespace_reserved", doc("namespace_reserved", namespace="AWS/Lab")),
        ("namespace_invalid", doc("namespace_invalid", namespace="x" * 256)),
        ("aws_not_object", {"_aws": ["Lab/Bad/aws_not_object"], "M": 1}),
        ("directives_invalid", {"_aws": {"Timestamp": now_ms, "CloudWatchMetrics": {"Namespace": "Lab/Bad/directives_invalid"}}, "M": 1}),
        ("invalid_json", '{"_aws": {"Timestamp": %d, "CloudWatchMetrics": [' % now_ms),
    ]
    missing_ts = doc("timestamp_missing")
    del missing_ts["_aws"]["Timestamp"]
    cases.append(("timestamp_missing", missing_ts))
    return cases


# Reasons a schema cannot see: the value/dimension members (tests/emf/README.md, cross-member rules).
_CROSS_MEMBER = {"value_missing", "value_not_numeric", "too_many_values", "histogram_invalid",
                 "dimension_missing", "dimension_not_string", "dimension_value_invalid",
                 "timestamp_too_old", "timestamp_too_new"}


@test
def logs_emf_invalid_documents_not_extracted(lab: Lab) -> None:
    group, stream = "/emf/invalid", "s"
    logs = log_stream(lab, SRC, group, stream)
    now_ms = int(time.time() * 1000)
    cases = _emf_invalid_cases(now_ms)
    # The schema refuses every case it can see; the others are the tests' code's to check.
    for reason, d in cases:
        if reason == "invalid_json":
            continue
        errors = emf_schema_errors(d)
        assert bool(errors) == (reason not in _CROSS_MEMBER), (reason, errors, d)
    good = emf_doc(now_ms, "Lab/Good", [{"Name": "M", "Unit": "Count"}], [["D"]], M=1, D="d")
    messages = [d if isinstance(d, str) else json.dumps(d) for _, d in cases]
    before = logs_status(lab)
    # One batch: an invalid document does not stop the valid one beside it.
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": now_ms, "message": m} for m in [*messages, json.dumps(good)]])
    after = logs_status(lab)
    want: dict[str, int] = {}
    for reason, _ in cases:
        want[reason] = want.get(reason, 0) + 1
    got = {r: n - before["rejected"].get(r, 0) for r, n in after["rejected"].items() if n - before["rejected"].get(r, 0)}
    assert got == want, (got, want)
    assert after["documents_rejected"] - before["documents_rejected"] == len(cases)
    assert after["documents_extracted"] - before["documents_extracted"] == 1
    assert emf_stat(lab, SRC, "Lab/Good", "M", {"D": "d"}, "Sum") == [(now_ms // 60000 * 60, 1.0)]
    # Nothing of the invalid ones is in CloudWatch; they stay plain log events.
    cw = lab.client("cloudwatch", SRC)
    listed = {m["Namespace"] for m in cw.list_metrics()["Metrics"]}
    assert not any(ns.startswith("Lab/Bad/") or ns == "AWS/Lab" for ns in listed), sorted(listed)
    assert [e["message"] for e in stream_messages(logs, group, stream)] == [*messages, json.dumps(good)]
    # AWS's own account: AWS/Logs EMFValidationErrors / EMFParsingErrors {LogGroupName}.
    # (stamped when ingested: summed over the buckets, in case that was a minute boundary)
    assert sum(v for _, v in emf_stat(lab, SRC, "AWS/Logs", "EMFValidationErrors", {"LogGroupName": group}, "Sum")) == len(cases) - 1
    assert sum(v for _, v in emf_stat(lab, SRC, "AWS/Logs", "EMFParsingErrors", {"LogGroupName": group}, "Sum")) == 1
    # Each is logged with its reason.
    text = Path(lab.env["LAB_AWS_LOG"]).read_text()
    for reason in want:
        assert f"EMF not extracted ({reason}) from {group}" in text, reason
    # A failing extraction never fails PutLogEvents: a batch of only invalid events is stored.
    answer = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now_ms, "message": messages[0]}])
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


@test
def logs_awslogs_batches_and_splits(lab: Lab) -> None:
    # The forwarder's batching rules, as the awslogs driver's (no lab needed).
    import awslogs_forwarder as fw

    batch = fw.Batch()
    for i in range(fw.MAX_EVENTS_PER_PUT):
        assert batch.fits("x")
        batch.add(1000 - i % 3, "x")
    assert not batch.fits("x")  # 10 000 events at most
    events = batch.take()
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)  # timestamp order
    assert batch.events == [] and batch.bytes == 0
    big = "y" * 250_000
    for _ in range(4):
        batch.add(1, big)
    assert batch.bytes == 4 * (250_000 + 26) and not batch.fits(big)  # 1 MiB with 26 bytes per event
    assert batch.fits("y" * (fw.MAX_BYTES_PER_PUT - batch.bytes - 26)) and not batch.fits("y" * (fw.MAX_BYTES_PER_PUT - batch.bytes - 25))
    # Lines over 262 118 bytes are split between characters, each piece at most that long.
    line = "é" * 200_000  # 400 000 bytes
    pieces = fw.split_line(line)
    assert "".join(pieces) == line and [len(p.encode()) for p in pieces] == [262_118, 400_000 - 262_118]
    odd = "a" + "€" * 100_000  # 1 + 300 000 bytes: the cut falls inside no character
    pieces = fw.split_line(odd)
    assert "".join(pieces) == odd and all(len(p.encode()) <= fw.MAX_BYTES_PER_EVENT for p in pieces)
    assert len(pieces[0].encode()) == 262_117
    assert fw.split_line("") == [] and fw.split_line("short") == ["short"]


@test
def logs_awslogs_forwarder_end_to_end(lab: Lab) -> None:
    group, stream = "/ecs/rpo-agent", "e2e"
    tee = lab.dir / "awslogs-tee.txt"
    proc = subprocess.Popen(
        [*LAB, "awslogs", "--dir", str(lab.dir), "--group", group, "--stream", stream, "--region", SRC, "--tee", str(tee)],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    logs = lab.client("logs", SRC)
    minute = int(time.time() // 60) * 60 - 60
    ts = (minute + 30) * 1000
    metrics = [{"Name": "RPO", "Unit": "Seconds"}, {"Name": "ReplicationLag", "Unit": "Seconds"}, {"Name": "CanariesLost", "Unit": "Count"}]
    dims = [["Target", "ReplicaRegion"]]
    doc1 = emf_doc(ts, "Lab/Forwarded", metrics, dims, Target="t", ReplicaRegion=DST, RPO=1.5, CanariesLost=1,
                   ReplicationLag={"Values": [0.2, 0.5], "Counts": [9, 1], "Max": 0.5, "Min": 0.2, "Count": 10, "Sum": 2.3})
    doc2 = emf_doc(ts, "Lab/Forwarded", metrics, dims, Target="t", ReplicaRegion=DST, RPO=3.0, CanariesLost=2,
                   ReplicationLag={"Values": [0.3], "Counts": [10], "Max": 0.3, "Min": 0.3, "Count": 10, "Sum": 3.0})
    big = "z" * 300_000
    written = ["starting", json.dumps(doc1)]
    try:
        for line in written:
            proc.stdin.write(line + "\n")
        proc.stdin.flush()
        # Flushed within the second, before EOF (the driver sends on a timer).
        def arrived() -> bool:
            try:
                return len(stream_messages(logs, group, stream)) == 2
            except ClientError:  # the forwarder has not created the group/stream yet
                return False

        wait_for(arrived, 4, "the first lines in CloudWatch Logs before EOF")
        assert proc.poll() is None
        more = [json.dumps(doc2), "", big, "the end"]
        for line in more:
            proc.stdin.write(line + "\n")
        written += more
        proc.stdin.close()
        rc = proc.wait(15)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, (rc, err)
    assert "6 event(s)" in err, err
    events = stream_messages(logs, group, stream)
    # One event per line, no event for the empty line, the 300 000-byte line in two, in order.
    assert [e["message"] for e in events] == ["starting", json.dumps(doc1), json.dumps(doc2), big[:262_118], big[262_118:], "the end"], \
        [e["message"][:40] for e in events]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps) and stamps[3] == stamps[4], stamps
    assert tee.read_text() == "".join(l + "\n" for l in written)
    full = {"Target": "t", "ReplicaRegion": DST}
    assert emf_stat(lab, SRC, "Lab/Forwarded", "RPO", full, "Maximum") == [(minute, 3.0)]
    assert emf_stat(lab, SRC, "Lab/Forwarded", "CanariesLost", full, "Sum") == [(minute, 3.0)]
    assert emf_stat(lab, SRC, "Lab/Forwarded", "ReplicationLag", full, "SampleCount") == [(minute, 20.0)]
    assert emf_stat(lab, SRC, "Lab/Forwarded", "ReplicationLag", full, "p90") == [(minute, 0.3)]
    assert emf_stat(lab, SRC, "Lab/Forwarded", "ReplicationLag", full, "p99") == [(minute, 0.5)]
    # An existing group and stream are reused; a lab that is not there is exit status 2.
    again = subprocess.run([*LAB, "awslogs", "--dir", str(lab.dir), "--group", group, "--stream", stream],
                           input="once more\n", capture_output=True, text=True, timeout=15)
    assert again.returncode == 0, again.stderr
    assert stream_messages(logs, group, stream)[-1]["message"] == "once more"
    nolab = subprocess.run([*LAB, "awslogs", "--dir", str(lab.dir / "nowhere"), "--group", group, "--stream", stream],
                           input="", capture_output=True, text=True, timeout=15)
    assert nolab.returncode == 2 and "no lab" in nolab.stderr, nolab


@test
def logs_awslogs_recreates_a_deleted_stream(lab: Lab) -> None:
    group, stream = "/ecs/rpo-agent", "recreated"
    proc = subprocess.Popen([*LAB, "awslogs", "--dir", str(lab.dir), "--group", group, "--stream", stream, "--flush-interval", "200ms"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = lab.client("logs", SRC)

    def messages() -> list[str]:
        try:
            return [e["message"] for e in stream_messages(logs, group, stream)]
        except ClientError:
            return []

    try:
        proc.stdin.write("first\n")
        proc.stdin.flush()
        wait_for(lambda: messages() == ["first"], 3, "the first line")
        logs.delete_log_stream(logGroupName=group, logStreamName=stream)
        proc.stdin.write("second\n")
        proc.stdin.close()
        assert proc.wait(15) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert messages() == ["second"]


# ---- process faults (last: a restart loses data items) ---------------------------------------

@test
def aws_kill_and_start_keeps_tables_and_buckets(lab: Lab) -> None:
    global_table(lab, "t-restart")
    lab.fault("dynamodb", "delay", "250ms", "--table", "t-restart")
    lab.fault("s3", "delay", "0s", "--bucket", "s3-src-ok")
    log_stream(lab, SRC, "/restart", "s")
    lab.fault("aws", "region-down", "eu-west-1", "--refuse")
    lab.fault("aws", "kill")
    lab.fault("aws", "region-down", "us-west-2", "--refuse")  # while killed: into aws-faults.json
    src = lab.client("dynamodb", SRC, connect_timeout=1)
    try:
        src.list_tables()
        raise AssertionError("the AWS endpoint still answers after aws kill")
    except ClientError:
        raise
    except Exception:
        pass  # connection refused, as it should be
    lab.fault("aws", "start")
    # Region outages survive the restart (and one set while killed applies at start).
    assert {r["region"]: r["mode"] for r in control(lab, "/status")["regions_down"]} == {"eu-west-1": "refuse", "us-west-2": "refuse"}
    for region in ("eu-west-1", "us-west-2"):
        assert no_answer(lab.client("dynamodb", region, retries=ONE_ATTEMPT).list_tables)[1] < 0.5
        lab.fault("aws", "region-up", region)
        lab.client("dynamodb", region).list_tables()
    src, dst = lab.client("dynamodb", SRC), lab.client("dynamodb", DST)
    for client, other in ((src, DST), (dst, SRC)):
        t = client.describe_table(TableName="t-restart")["Table"]
        assert [r["RegionName"] for r in t["Replicas"]] == [other], t.get("Replicas")
    # Faults survive the restart too.
    src.put_item(TableName="t-restart", Item={"pk": {"S": "after"}})
    wait_for(lambda: lab.truth(table="t-restart"), 2, "replication after restart")
    lag = lab.truth(table="t-restart")[0]
    assert lag["readable_at"] - lag["committed_at"] >= 0.25
    # Buckets, their regions, versioning and replication rules are back too.
    s3src, s3dst = lab.client("s3", SRC), lab.client("s3", DST)
    assert s3src.get_bucket_versioning(Bucket="s3-src-ok")["Status"] == "Enabled"
    assert s3src.get_bucket_replication(Bucket="s3-src-ok")["ReplicationConfiguration"]["Rules"][0]["ID"] == "canary"
    s3src.put_object(Bucket="s3-src-ok", Key="rpo-canary/after-restart", Body=b"r")
    wait_for(lambda: head_status(s3dst, "s3-dst-ok", "rpo-canary/after-restart") == "REPLICA", 2, "S3 replication after restart")
    assert raw_s3(lab, "HEAD", "/s3-src-ok", DST)[0] == 400
    # Log groups and streams are back too (their events are not, as items and objects).
    streams = lab.client("logs", SRC).describe_log_streams(logGroupName="/restart")["logStreams"]
    assert [st["logStreamName"] for st in streams] == ["s"], streams


def main(argv: list[str]) -> int:
    selected = TESTS
    if "-k" in argv:
        pattern = argv[argv.index("-k") + 1]
        selected = [t for t in TESTS if pattern in t.__name__]
    passed = failed = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rpo-lab-selftest-") as tmp:
        lab = Lab(Path(tmp))
        try:
            for t in selected:
                t0 = time.monotonic()
                try:
                    t(lab)
                except Exception:
                    failed += 1
                    print(f"FAIL {t.__name__} ({time.monotonic() - t0:.2f}s)")
                    traceback.print_exc(file=sys.stdout)
                else:
                    passed += 1
                    print(f"ok   {t.__name__} ({time.monotonic() - t0:.2f}s)")
                sys.stdout.flush()
        finally:
            if failed and os.environ.get("LAB_SELFTEST_KEEP"):
                print(f"keeping {tmp}/aws.log:\n" + (Path(tmp) / "aws.log").read_text()[-4000:])
            lab.down()
    print(f"selftest took {time.monotonic() - started:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
