"""Reading an AWS API request at the WSGI layer: service, region, operation, resources touched.

Why it exists: faults are scoped by table/bucket and operation, replication needs to know which
items a write touched, and moto itself does not tell us any of that before it answers. The
region comes from the SigV4 credential scope (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`),
which is how AWS SDKs say which region they mean when every region shares one endpoint.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

_SCOPE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


@dataclass
class AwsRequest:
    method: str
    path: str  # undecoded-by-us PATH_INFO as WSGI gives it
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    service: str | None = None  # signing name: "dynamodb", "s3", ...
    region: str | None = None
    op: str | None = None
    json: dict[str, Any] | None = None  # DynamoDB body
    names: list[str] = field(default_factory=list)  # tables or buckets touched (fault scopes)
    bucket: str | None = None  # S3
    key: str | None = None  # S3 object key

    @property
    def query_args(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


def read_request(environ: dict[str, Any]) -> AwsRequest:
    """Parse environ; reads the body and puts it back so moto can read it again."""
    headers = {
        k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated") or "chunked" in headers.get("transfer-encoding", ""):
        body = stream.read()  # chunked transfer encoding: werkzeug de-chunks, read to the end
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))

    req = AwsRequest(
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO", "/"),
        query=environ.get("QUERY_STRING", ""),
        headers=headers,
        body=body,
    )
    m = _SCOPE.search(headers.get("authorization", "")) or _SCOPE.search(unquote(req.query))
    if m:
        req.region, req.service = m.group(3), m.group(4)
    if req.service == "dynamodb":
        _read_dynamodb(req)
    elif req.service == "s3":
        _normalize_localhost_vhost(environ, req)
        _read_s3(req)
    return req


def _normalize_localhost_vhost(environ: dict[str, Any], req: AwsRequest) -> None:
    """`http://bucket.localhost:PORT/key` -> path style, which is all moto's server mode knows
    for a local host name (it handles `bucket.s3.REGION.amazonaws.com` itself)."""
    host = req.headers.get("host", "")
    name, _, port = host.partition(":")
    if not name.endswith(".localhost") or name == ".localhost":
        return
    bucket = name[: -len(".localhost")]
    req.path = f"/{bucket}{req.path if req.path != '/' else ''}"
    environ["PATH_INFO"] = req.path
    # moto reads the raw request target too (RAW_URI / REQUEST_URI): rewrite it alike.
    for key in ("RAW_URI", "REQUEST_URI"):
        raw = environ.get(key)
        if raw:
            rest = raw[1:] if raw == "/" or raw.startswith("/?") else raw  # "/?x" -> "/bucket?x"
            environ[key] = f"/{bucket}{rest}"
    req.headers["host"] = environ["HTTP_HOST"] = f"localhost:{port}" if port else "localhost"


# ---- DynamoDB (and DynamoDB Streams, which signs as "dynamodb" too) ----------------------------

def table_name(name_or_arn: str) -> str:
    # Every API that takes TableName also takes the table's ARN.
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":table/", 1)[-1].split("/", 1)[0]
    return name_or_arn


def _read_dynamodb(req: AwsRequest) -> None:
    target = req.headers.get("x-amz-target", "")
    req.op = target.split(".", 1)[1] if "." in target else None
    try:
        req.json = json.loads(req.body or b"{}")
    except ValueError:
        req.json = {}
    body = req.json if isinstance(req.json, dict) else {}
    names: list[str] = []
    if isinstance(body.get("TableName"), str):
        names.append(table_name(body["TableName"]))
    if isinstance(body.get("RequestItems"), dict):  # BatchWriteItem / BatchGetItem
        names.extend(table_name(t) for t in body["RequestItems"])
    for item in body.get("TransactItems") or []:  # TransactWriteItems / TransactGetItems
        for action in item.values():
            if isinstance(action, dict) and "TableName" in action:
                names.append(table_name(action["TableName"]))
    for arn_field in ("StreamArn", "ResourceArn", "TableArn"):
        if isinstance(body.get(arn_field), str) and ":table/" in body[arn_field]:
            names.append(table_name(body[arn_field]))
    if isinstance(body.get("ShardIterator"), str) and ":table/" in body["ShardIterator"]:
        names.append(table_name(body["ShardIterator"]))  # moto's iterators embed the stream ARN
    req.names = list(dict.fromkeys(names))


# ---- S3 ---------------------------------------------------------------------------------------

# Sub-resource query parameter -> the operation-name stem, for bucket-level calls.
_BUCKET_SUBRESOURCES = {
    "versioning": "BucketVersioning",
    "replication": "BucketReplication",
    "lifecycle": "BucketLifecycleConfiguration",
    "tagging": "BucketTagging",
    "policy": "BucketPolicy",
    "encryption": "BucketEncryption",
    "acl": "BucketAcl",
    "cors": "BucketCors",
    "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "object-lock": "ObjectLockConfiguration",
    "accelerate": "BucketAccelerateConfiguration",
    "logging": "BucketLogging",
    "location": "BucketLocation",
    "requestPayment": "BucketRequestPayment",
    "inventory": "BucketInventoryConfiguration",
    "metrics": "BucketMetricsConfiguration",
    "analytics": "BucketAnalyticsConfiguration",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
}
_OBJECT_SUBRESOURCES = {
    "tagging": "ObjectTagging",
    "acl": "ObjectAcl",
    "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold",
    "attributes": "ObjectAttributes",
}


def _bucket_from_host(host: str) -> str | None:
    """Virtual-host style `bucket.s3.REGION.amazonaws.com` (`.localhost` was made path style)."""
    host = host.split(":", 1)[0]
    m = re.match(r"^(.+)\.s3[.-]", host)
    return m.group(1) if m else None


def _read_s3(req: AwsRequest) -> None:
    path = req.path
    vhost_bucket = _bucket_from_host(req.headers.get("host", ""))
    if vhost_bucket:
        req.bucket, req.key = vhost_bucket, (path[1:] or None)
    else:
        parts = path.lstrip("/").split("/", 1)
        req.bucket = parts[0] or None
        req.key = parts[1] if len(parts) > 1 and parts[1] else None
    if req.key is not None:
        # PATH_INFO is already percent-decoded, as latin-1 text of the UTF-8 bytes (PEP 3333).
        try:
            req.key = req.key.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    if req.bucket:
        req.names = [req.bucket]
    req.op = s3_operation(req.method, req.bucket, req.key, req.query_args, req.headers)


def s3_operation(method: str, bucket: str | None, key: str | None, q: dict[str, list[str]], headers: dict[str, str]) -> str:
    if bucket is None:
        return "ListBuckets"
    if key is None:
        sub = next((s for s in _BUCKET_SUBRESOURCES if s in q), None)
        if method == "PUT":
            return f"Put{_BUCKET_SUBRESOURCES[sub]}" if sub else "CreateBucket"
        if method == "DELETE":
            return f"Delete{_BUCKET_SUBRESOURCES[sub]}" if sub else "DeleteBucket"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST":
            return "DeleteObjects" if "delete" in q else "PostObject"
        if sub:
            return f"Get{_BUCKET_SUBRESOURCES[sub]}"
        if "versions" in q:
            return "ListObjectVersions"
        if "uploads" in q:
            return "ListMultipartUploads"
        return "ListObjectsV2" if q.get("list-type") == ["2"] else "ListObjects"
    sub = next((s for s in _OBJECT_SUBRESOURCES if s in q), None)
    if method == "PUT":
        if "partNumber" in q and "uploadId" in q:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if sub:
            return f"Put{_OBJECT_SUBRESOURCES[sub]}"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        return "RestoreObject" if "restore" in q else "PostObject"
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        return f"Delete{_OBJECT_SUBRESOURCES[sub]}" if sub else "DeleteObject"
    if method == "HEAD":
        return "HeadObject"
    if "uploadId" in q:
        return "ListParts"
    return f"Get{_OBJECT_SUBRESOURCES[sub]}" if sub else "GetObject"
