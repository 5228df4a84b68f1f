"""Creates the local stack's canary resources in the lab's AWS stand-in.

Run with the lab venv's python (it has boto3) and the lab's lab.env in the
environment. Idempotent: existing tables and buckets are left as they are.
"""
import sys

import boto3
from botocore.exceptions import ClientError

SRC, DST = "ap-northeast-1", "ap-northeast-3"


def dynamodb_global_table(name: str) -> None:
    d = boto3.client("dynamodb", region_name=SRC)
    try:
        d.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":
            raise
    replicas = d.describe_table(TableName=name)["Table"].get("Replicas", [])
    if not any(r["RegionName"] == DST for r in replicas):
        d.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": DST}}])
    d.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})


def replicated_buckets(src: str, dst: str, prefix: str = "rpo-canary/") -> None:
    s3 = {r: boto3.client("s3", region_name=r, config=boto3.session.Config(s3={"addressing_style": "path"}))
          for r in (SRC, DST)}
    for region, bucket in ((SRC, src), (DST, dst)):
        try:
            s3[region].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        s3[region].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3[region].put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "expire-rpo-canaries", "Status": "Enabled", "Filter": {"Prefix": prefix},
            "Expiration": {"Days": 1}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    s3[SRC].put_bucket_replication(Bucket=src, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/s3-replication",
        "Rules": [{"ID": "dr", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   # Replication metrics on: S3 then publishes ReplicationLatency, which the
                   # agent shows beside its own figure (rpo_aws_reported_lag_seconds).
                   "Destination": {"Bucket": f"arn:aws:s3:::{dst}", "Metrics": {"Status": "Enabled"}}}]})


if __name__ == "__main__":
    dynamodb_global_table("orders")
    replicated_buckets("invoices-tokyo", "invoices-osaka")
    print("seed: table orders (ap-northeast-1 + ap-northeast-3), buckets invoices-tokyo → invoices-osaka", file=sys.stderr)
