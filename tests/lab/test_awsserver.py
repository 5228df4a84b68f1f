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
            # No retries: a test must see exactly what the server answered.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **cfg),
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


# ---- process faults (last: a restart loses data items) ---------------------------------------

@test
def aws_kill_and_start_keeps_tables(lab: Lab) -> None:
    global_table(lab, "t-restart")
    lab.fault("dynamodb", "delay", "250ms", "--table", "t-restart")
    lab.fault("aws", "kill")
    src = lab.client("dynamodb", SRC, connect_timeout=1)
    try:
        src.list_tables()
        raise AssertionError("the AWS endpoint still answers after aws kill")
    except ClientError:
        raise
    except Exception:
        pass  # connection refused, as it should be
    lab.fault("aws", "start")
    src, dst = lab.client("dynamodb", SRC), lab.client("dynamodb", DST)
    for client, other in ((src, DST), (dst, SRC)):
        t = client.describe_table(TableName="t-restart")["Table"]
        assert [r["RegionName"] for r in t["Replicas"]] == [other], t.get("Replicas")
    # Faults survive the restart too.
    src.put_item(TableName="t-restart", Item={"pk": {"S": "after"}})
    wait_for(lambda: lab.truth(table="t-restart"), 2, "replication after restart")
    lag = lab.truth(table="t-restart")[0]
    assert lag["readable_at"] - lag["committed_at"] >= 0.25


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
