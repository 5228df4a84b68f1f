"""Validates logged AWS requests (tests/lab/awsserver/request_log.py) against botocore's service models.

Why it exists: the lab is moto, which accepts much that AWS refuses and ignores what it does not
know, so a request the agent gets wrong (a misspelt member, a wrong type, a query parameter or an
x-amz- header S3 never defined) passes every lab test and fails, or silently does nothing, on AWS.
botocore's JSON models are AWS's own published API definitions. JSON and RPC v2 CBOR bodies go
through botocore's own ParamValidator on the operation's input shape (unknown members at any
depth, types, required members, ranges); S3 REST-XML requests are matched to an operation by
method, URI template and literal query keys from the model's `http.requestUri`, then every query
parameter and x-amz- header must be a member bound there, and every XML element a member of the
payload shape; awsQuery forms (ElastiCache) are read back into params by the input shape and
validated the same way. Each problem names service, operation and parameter.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

import botocore
import botocore.session
from botocore.validate import ParamValidator

# Signing name -> botocore service names that sign with it (told apart by X-Amz-Target's prefix).
SERVICES = {
    "dynamodb": ["dynamodb", "dynamodbstreams"],
    "s3": ["s3"],
    "monitoring": ["cloudwatch"],
    "logs": ["logs"],
    "secretsmanager": ["secretsmanager"],
    "sts": ["sts"],
    "rds": ["rds"],
    "elasticache": ["elasticache"],
}
# Headers of the protocol (SigV4, SDK bookkeeping, aws-chunked framing), never model members.
PROTOCOL_HEADERS = {
    "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "x-amz-user-agent", "x-amz-target",
    "x-amz-decoded-content-length", "x-amz-trailer", "x-amzn-trace-id", "x-amzn-query-mode",
}


class Models:
    def __init__(self) -> None:
        self.session = botocore.session.get_session()
        self._cache: dict = {}
        self.version = botocore.__version__

    def model(self, name: str):
        if name not in self._cache:
            self._cache[name] = self.session.get_service_model(name)
        return self._cache[name]

    def for_request(self, e: dict):
        """The service model a logged request is for, or None."""
        names = SERVICES.get(e.get("service") or "", [])
        target = (e.get("headers") or {}).get("x-amz-target", "")
        for n in names:
            m = self.model(n)
            prefix = m.metadata.get("targetPrefix")
            if not target or (prefix and target.startswith(prefix + ".")):
                return m
        return None


def _xml_problems(elem: ET.Element, shape, path: str) -> list[str]:
    """Every child element of `elem` must be a member of structure `shape` (recursively)."""
    out = []
    local = lambda tag: tag.split("}", 1)[-1]
    if shape.type_name == "structure":
        by_xml = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        for child in elem:
            tag = local(child.tag)
            hit = by_xml.get(tag)
            if hit is None:
                out.append(f"XML element {path}/{tag} is not a member of {shape.name}")
                continue
            name, member = hit
            if member.type_name == "list" and member.serialization.get("flattened"):
                out += _xml_problems(child, member.member, f"{path}/{tag}")
            else:
                out += _xml_problems(child, member, f"{path}/{tag}")
    elif shape.type_name == "list":
        item = shape.member.serialization.get("name", "member")
        for child in elem:
            if local(child.tag) != item:
                out.append(f"XML element {path}/{local(child.tag)}: list {shape.name} holds <{item}> elements")
            else:
                out += _xml_problems(child, shape.member, f"{path}/{item}")
    elif shape.type_name == "map":
        pass  # S3 XML payloads have none that the agent sends
    elif len(elem):
        out.append(f"XML element {path} has child elements but {shape.name} is a {shape.type_name}")
    return out


def _s3_operation(model, e: dict):
    """The model operation for (method, path, query, headers): the URI template's shape, its
    literal query keys (most specific wins), required header members present (PutObject vs
    CopyObject: x-amz-copy-source); a tie is broken by Smithy's `x-id`, then by the lab's name,
    then against deprecated operations (GetBucketLifecycle vs GetBucketLifecycleConfiguration)."""
    parts = e["path"].lstrip("/").split("/", 1)
    has_key = len(parts) > 1 and parts[1] != ""
    query = dict(parse_qsl(e.get("query", ""), keep_blank_values=True))
    headers = {h.lower() for h in e.get("headers", {})}
    scored = []
    for name in model.operation_names:
        op = model.operation_model(name)
        if op.http.get("method") != e["method"]:
            continue
        path_t, _, lit = op.http.get("requestUri", "/").partition("?")
        if ("{Key+}" in path_t) != has_key or ("{Bucket}" in path_t) != bool(parts[0]):
            continue
        literals = dict(parse_qsl(lit, keep_blank_values=True))
        if not all(k in query and (not v or query[k] == v) for k, v in literals.items()):
            continue
        shape = op.input_shape
        required = [shape.members[r] for r in (shape.required_members if shape else [])]
        if any(m.serialization.get("location") == "header" and m.serialization.get("name", "").lower() not in headers
               for m in required):
            continue
        tie = (query.get("x-id") == name, e.get("operation") == name, not op.deprecated)
        scored.append(((len(literals), *tie), op))
    if not scored:
        return None, query
    return max(scored, key=lambda t: t[0])[1], query


def s3_problems(model, e: dict) -> list[str]:
    op, query = _s3_operation(model, e)
    if op is None:
        return [f"s3: no operation in the model takes {e['method']} {e['path']}?{e.get('query', '')}"]
    where = f"s3 {op.name}"
    out = []
    if e.get("operation") and e["operation"] != op.name:
        out.append(f"{where}: the lab named this request {e['operation']}, the model's HTTP bindings say {op.name}")
    members = op.input_shape.members if op.input_shape else {}
    literals = dict(parse_qsl(op.http.get("requestUri", "").partition("?")[2], keep_blank_values=True))
    by_query = {m.serialization.get("name", n): n for n, m in members.items() if m.serialization.get("location") == "querystring"}
    by_header = {m.serialization.get("name", n).lower(): n for n, m in members.items() if m.serialization.get("location") == "header"}
    prefixes = [m.serialization.get("name", "").lower() for m in members.values() if m.serialization.get("location") == "headers"]
    for k, v in query.items():
        if k in literals:
            continue
        if k == "x-id":  # Smithy's literal `?x-id=Operation` (botocore's copy of the model drops it)
            if v != op.name:
                out.append(f"{where}: query x-id={v} names another operation")
            continue
        if k not in by_query:
            out.append(f"{where}: query parameter {k!r} is not a member of {op.input_shape.name}")
    for h in e.get("headers", {}):
        if not h.startswith("x-amz-") or h in PROTOCOL_HEADERS:
            continue
        if h not in by_header and not any(h.startswith(p) for p in prefixes):
            out.append(f"{where}: header {h!r} is not a member of {op.input_shape.name}")
    payload = op.input_shape.serialization.get("payload") if op.input_shape else None
    if e.get("xml"):
        pshape = members.get(payload) if payload else None
        if pshape is None or pshape.type_name != "structure":
            out.append(f"{where}: an XML body, but {op.name} takes no XML payload")
        else:
            root = ET.fromstring(e["xml"])
            tag = root.tag.split("}", 1)[-1]
            want = pshape.serialization.get("name", payload)
            if tag != want:
                out.append(f"{where}: XML root <{tag}>, the model wants <{want}>")
            out += [f"{where}: {p}" for p in _xml_problems(root, pshape, tag)]
    return out


def json_problems(model, e: dict) -> list[str]:
    service = model.service_name
    name = e.get("operation")
    if name not in model.operation_names:
        return [f"{service}: operation {name!r} does not exist in the model"]
    op = model.operation_model(name)
    where = f"{service} {name}"
    out = []
    headers = e.get("headers", {})
    if e.get("protocol") == "json":
        prefix = model.metadata.get("targetPrefix")
        if headers.get("x-amz-target") != f"{prefix}.{name}":
            out.append(f"{where}: X-Amz-Target {headers.get('x-amz-target')!r}, the model wants {prefix}.{name}")
        want_ct = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}"
        if headers.get("content-type") != want_ct:
            out.append(f"{where}: Content-Type {headers.get('content-type')!r}, the model wants {want_ct}")
    elif e.get("protocol") == "smithy-rpc-v2-cbor":
        if "smithy-rpc-v2-cbor" not in model.metadata.get("protocols", [model.metadata.get("protocol")]):
            out.append(f"{where}: sent in RPC v2 CBOR, which the model does not list")
        want = f"/service/{model.metadata.get('targetPrefix')}/operation/{name}"
        if e["path"] != want:
            out.append(f"{where}: path {e['path']}, the model wants {want}")
    params = e.get("params")
    if not isinstance(params, dict):
        return out + [f"{where}: body not decoded ({e.get('undecodable', '?')} bytes)"]
    report = ParamValidator().validate(params, op.input_shape) if op.input_shape else None
    if op.input_shape is None and params:
        out.append(f"{where}: takes no input, got {sorted(params)}")
    if report is not None and report.has_errors():
        out += [f"{where}: {line.strip()}" for line in report.generate_report().splitlines()
                if line.strip() and not line.startswith("Parameter validation failed")]
    return out


_LEAF = {"integer": int, "long": int, "float": float, "double": float,
         "boolean": lambda v: {"true": True, "false": False}.get(v, v)}


def _query_params(shape, items: list[tuple[str, str]], where: str, out: list[str]) -> dict:
    """awsQuery form fields (`A.B.member.1.C=v`) back into a params dict, by the input shape;
    a field no member explains is reported. Leaf values are typed for ParamValidator."""
    params: dict = {}
    for key, value in items:
        shape_now, node, segs = shape, params, key.split(".")
        slot = None
        i = 0
        while i < len(segs):
            seg = segs[i]
            if shape_now.type_name == "structure":
                by = {m.serialization.get("name", n): (n, m) for n, m in shape_now.members.items()}
                if seg not in by:
                    out.append(f"{where}: query parameter {key!r}: {seg!r} is not a member of {shape_now.name}")
                    break
                name, shape_now = by[seg]
                slot = (node, name)
                if shape_now.type_name in ("structure", "list", "map"):
                    node = node.setdefault(name, {} if shape_now.type_name != "list" else [])
                i += 1
            elif shape_now.type_name == "list":
                flattened = shape_now.serialization.get("flattened")
                if not flattened:
                    item_name = shape_now.member.serialization.get("name", "member")
                    if seg != item_name:
                        out.append(f"{where}: query parameter {key!r}: list {shape_now.name} wants .{item_name}.N")
                        break
                    i += 1
                index = int(segs[i]) - 1 if i < len(segs) and segs[i].isdigit() else 0
                i += 1
                while len(node) <= index:
                    node.append({} if shape_now.member.type_name == "structure" else None)
                slot, shape_now = (node, index), shape_now.member
                if shape_now.type_name == "structure":
                    node = node[index]
            else:
                out.append(f"{where}: query parameter {key!r}: {shape_now.name} is a {shape_now.type_name}")
                break
        else:
            if slot is not None and shape_now.type_name not in ("structure", "list", "map"):
                slot[0][slot[1]] = _LEAF.get(shape_now.type_name, str)(value) if value != "" else value
    return params


def query_problems(model, e: dict) -> list[str]:
    fields = parse_qsl(e.get("form") or e.get("query", ""), keep_blank_values=True)
    action = dict(fields).get("Action")
    service = model.service_name
    if action not in model.operation_names:
        return [f"{service}: operation {action!r} does not exist in the model"]
    op = model.operation_model(action)
    where, out = f"{service} {action}", []
    version = dict(fields).get("Version")
    if version != model.api_version:
        out.append(f"{where}: Version={version}, the model is {model.api_version}")
    items = [(k, v) for k, v in fields if k not in ("Action", "Version")]
    if op.input_shape is None:
        return out + ([f"{where}: takes no input, got {[k for k, _ in items]}"] if items else [])
    params = _query_params(op.input_shape, items, where, out)
    report = ParamValidator().validate(params, op.input_shape)
    if report.has_errors():
        out += [f"{where}: {line.strip()}" for line in report.generate_report().splitlines()
                if line.strip() and not line.startswith("Parameter validation failed")]
    return out


def problems(models: Models, e: dict) -> list[str]:
    model = models.for_request(e)
    if model is None:
        return [f"no botocore model for signing name {e.get('service')!r} "
                f"(X-Amz-Target {e.get('headers', {}).get('x-amz-target')!r}, {e.get('method')} {e.get('path')})"]
    proto = e.get("protocol")
    if model.metadata.get("protocol") == "rest-xml":
        return s3_problems(model, e)
    if proto in ("json", "smithy-rpc-v2-cbor"):
        return json_problems(model, e)
    if proto == "query":
        return query_problems(model, e)
    return [f"{model.service_name} {e.get('operation')}: protocol {proto!r} is not checked here"]
