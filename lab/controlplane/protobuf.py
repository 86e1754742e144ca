"""Decode the Kubernetes protobuf request bodies kubectl's typed clients send into JSON-shaped dicts.

client-go sends built-in kinds as ``application/vnd.kubernetes.protobuf`` (``k8s\\x00`` + a
``runtime.Unknown`` envelope). Only the kinds kubectl creates or updates through typed clients here are
described (field numbers from the kinds' ``generated.proto``); answers are always JSON, which clients accept.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from . import errors

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# field number -> (JSON name, type); a type in SCHEMAS is a nested message; "[]" prefix = repeated.
Schema = dict[int, tuple[str, str]]
SCHEMAS: dict[str, Schema] = {
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "StringEntry": {1: ("key", "string"), 2: ("value", "string")},
    "BytesEntry": {1: ("key", "string"), 2: ("value", "bytes")},
    "ExtraEntry": {1: ("key", "string"), 2: ("value", "ExtraValue")},
    "ExtraValue": {1: ("items", "[]string")},
    "ObjectMeta": {
        1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 5: ("uid", "string"),
        6: ("resourceVersion", "string"), 8: ("creationTimestamp", "Time"), 11: ("labels", "map:StringEntry"),
        12: ("annotations", "map:StringEntry"), 14: ("finalizers", "[]string"),
    },
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                   4: ("resourceNames", "[]string"), 5: ("nonResourceURLs", "[]string")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "CertificateSigningRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CSRSpec"), 3: ("status", "CSRStatus")},
    "CSRSpec": {1: ("request", "bytes"), 2: ("username", "string"), 3: ("uid", "string"), 4: ("groups", "[]string"),
                5: ("usages", "[]string"), 6: ("extra", "map:ExtraEntry"), 7: ("signerName", "string"),
                8: ("expirationSeconds", "int")},
    "CSRStatus": {1: ("conditions", "[]CSRCondition"), 2: ("certificate", "bytes")},
    "CSRCondition": {1: ("type", "string"), 2: ("reason", "string"), 3: ("message", "string"),
                     4: ("lastUpdateTime", "Time"), 5: ("lastTransitionTime", "Time"), 6: ("status", "string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSARSpec")},
    "SSARSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                 2: ("nonResourceAttributes", "NonResourceAttributes")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SARSpec")},
    "SARSpec": {1: ("resourceAttributes", "ResourceAttributes"), 2: ("nonResourceAttributes", "NonResourceAttributes"),
                3: ("user", "string"), 4: ("groups", "[]string"), 6: ("uid", "string")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "Namespace": {1: ("metadata", "ObjectMeta")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:StringEntry"), 3: ("binaryData", "map:BytesEntry")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:BytesEntry"), 3: ("type", "string"),
               4: ("stringData", "map:StringEntry")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "rawbytes")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
}
SCHEMAS["RoleBinding"] = SCHEMAS["ClusterRoleBinding"]
SCHEMAS["Role"] = SCHEMAS["ClusterRole"]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    found: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            found.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            found.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise ValueError("truncated fixed-size field")
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return found


def _time(value: dict[str, Any]) -> str | None:
    seconds = value.get("seconds", 0)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if seconds else None


def _scalar(kind: str, raw: int | bytes) -> Any:
    if kind == "int":
        assert isinstance(raw, int)
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    assert isinstance(raw, bytes)
    if kind == "string":
        return raw.decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(raw).decode("ascii")
    if kind == "rawbytes":
        return raw
    return decode_message(kind, raw)


def decode_message(schema_name: str, data: bytes) -> dict[str, Any]:
    schema = SCHEMAS[schema_name]
    result: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind.startswith("[]"):
            result.setdefault(name, []).append(_scalar(kind[2:], raw))
        elif kind.startswith("map:"):
            entry = _scalar(kind[4:], raw)
            value = entry.get("value", "")
            result.setdefault(name, {})[entry.get("key", "")] = value.get("items", []) if isinstance(
                value, dict) else value
        elif kind == "Time":
            stamp = _time(_scalar(kind, raw))
            if stamp:
                result[name] = stamp
        else:
            value = _scalar(kind, raw)
            if value != "" or name in ("request",):
                result[name] = value
    return result


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object the same request would have carried."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body does not start with the k8s magic prefix")
    try:
        envelope = decode_message("Unknown", body[len(MAGIC):])
        type_meta = envelope.get("typeMeta", {})
        kind = type_meta.get("kind", "")
        obj = decode_message(kind if kind in SCHEMAS else "Namespace", envelope.get("raw", b""))
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise errors.bad_request(f"unable to decode protobuf body: {exc}") from exc
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
