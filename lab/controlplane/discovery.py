"""Discovery documents (legacy ``/api``, ``/apis``) and the OpenAPI v3 documents kubectl reads.

kubectl's ``--validate`` (default ``strict``) looks in OpenAPI v3 for a ``fieldValidation`` query parameter
on each kind's PATCH operation; when found, it leaves validation to the server. So each group-version
document lists, per resource, the PATCH operation with its ``x-kubernetes-group-version-kind``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import ResourceType, group_versions, types_in

Obj = dict[str, Any]


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> Obj:
    groups = [_group_entry(g, vs) for g, vs in group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> Obj | None:
    versions = group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def _resource_entries(rtype: ResourceType) -> list[Obj]:
    entry: Obj = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    entries = [entry]
    for sub in rtype.subresources:
        entries.append({"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                        "kind": rtype.kind, "verbs": ["get", "patch", "update"]})
    return entries


def api_resource_list(group: str, version: str) -> Obj | None:
    found = types_in(group, version)
    if not found:
        return None
    resources = [entry for rtype in found for entry in _resource_entries(rtype)]
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    """Does the client's Accept header ask for aggregated discovery (apidiscovery.k8s.io/v2)?"""
    return any("g=apidiscovery.k8s.io" in part and "v=v2" in part.replace("v=v2beta1", "")
               for part in accept.split(","))


def _aggregated_resource(rtype: ResourceType) -> Obj:
    kind = {"group": "", "version": "", "kind": rtype.kind}
    entry: Obj = {
        "resource": rtype.plural,
        "responseKind": kind,
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    if rtype.subresources:
        entry["subresources"] = [{"subresource": sub, "responseKind": kind, "verbs": ["get", "patch", "update"]}
                                 for sub in rtype.subresources]
    return entry


def aggregated_discovery(legacy: bool) -> Obj:
    """``/api`` (legacy=True: the core group) or ``/apis`` as an ``APIGroupDiscoveryList``."""
    items = []
    for group, versions in group_versions().items():
        if (group == "") != legacy:
            continue
        listed = [{"version": v, "resources": [_aggregated_resource(t) for t in types_in(group, v)],
                   "freshness": "Current"} for v in versions]
        metadata: Obj = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({"metadata": metadata, "versions": listed})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _openapi_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_document(group: str, version: str) -> Obj | None:
    found = types_in(group, version)
    if not found:
        return None
    paths: Obj = {}
    prefix = "/" + _openapi_key(group, version)
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                        "description": "Ignore, Warn or Strict: how unknown or duplicate fields are handled."}
    for rtype in found:
        scope = f"{prefix}/namespaces/{{namespace}}" if rtype.namespaced else prefix
        gvk = {"group": group, "version": version, "kind": rtype.kind}
        operation = {"operationId": f"create{rtype.kind}", "x-kubernetes-group-version-kind": gvk,
                     "x-kubernetes-action": "post", "parameters": [field_validation],
                     "responses": {"201": {"description": "Created"}}}
        collection: Obj = {"post": operation}
        paths[f"{scope}/{rtype.plural}"] = collection
        if "patch" in rtype.verbs:
            patch = {**operation, "operationId": f"patch{rtype.kind}", "x-kubernetes-action": "patch",
                     "responses": {"200": {"description": "OK"}}}
            paths[f"{scope}/{rtype.plural}/{{name}}"] = {"patch": patch}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"}, "paths": paths,
            "components": {"schemas": {}}}


def openapi_root() -> Obj:
    paths = {}
    for group, versions in group_versions().items():
        for version in versions:
            key = _openapi_key(group, version)
            digest = hashlib.sha256(json.dumps(openapi_document(group, version), sort_keys=True).encode())
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.hexdigest()[:32].upper()}"}
    return {"paths": paths}
