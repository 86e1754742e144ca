"""``meta.k8s.io/v1`` Table output with the columns a real kube-apiserver prints (``kubectl get``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Cell = Callable[[Obj], Any]
Column = tuple[str, str, int, Cell]  # (name, type, priority, cell)


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration``."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: Obj) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    when = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return human_duration((dt.datetime.now(dt.UTC) - when).total_seconds())


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _created(obj: Obj) -> str:
    return str(obj["metadata"].get("creationTimestamp", ""))


def _csr_condition(obj: Obj) -> str:
    types = {c.get("type") for c in (obj.get("status") or {}).get("conditions") or []}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if (obj.get("status") or {}).get("certificate"):
        text += ",Issued"
    return text


def _csr_duration(obj: Obj) -> str:
    seconds = obj.get("spec", {}).get("expirationSeconds")
    return human_duration(seconds) if seconds else "<none>"


def _ports(obj: Obj) -> str:
    parts = []
    for port in obj.get("spec", {}).get("ports") or []:
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        parts.append(f"{port.get('port')}{node_port}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _external_ips(obj: Obj) -> str:
    spec = obj.get("spec", {})
    ips = list(spec.get("externalIPs") or [])
    for ingress in (obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
        ips.append(ingress.get("ip") or ingress.get("hostname"))
    if ips:
        return ",".join(ips)
    return "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"


def _selector(obj: Obj) -> str:
    selector = obj.get("spec", {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _node_status(obj: Obj) -> str:
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    text = "Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"
    if obj.get("spec", {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(obj: Obj) -> str:
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    return ",".join(r for r in roles if r) or "<none>"


def _node_address(kind: str) -> Cell:
    def cell(obj: Obj) -> str:
        for address in (obj.get("status") or {}).get("addresses") or []:
            if address.get("type") == kind:
                return str(address.get("address"))
        return "<none>"
    return cell


def _node_info(field: str) -> Cell:
    return lambda obj: (obj.get("status") or {}).get("nodeInfo", {}).get(field, "")


def _subjects(kind: str) -> Cell:
    def cell(obj: Obj) -> str:
        names = []
        for subject in obj.get("subjects") or []:
            if subject.get("kind") != kind:
                continue
            if kind == "ServiceAccount":
                names.append(f"{subject.get('namespace', '')}/{subject.get('name')}")
            else:
                names.append(str(subject.get("name")))
        return ", ".join(names)
    return cell


def _role_ref(obj: Obj) -> str:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind')}/{ref.get('name')}"


def _data_count(obj: Obj) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


NAME: Column = ("Name", "string", 0, _name)
AGE: Column = ("Age", "string", 0, age)
CREATED_AT: Column = ("Created At", "date", 0, _created)
_BINDING: list[Column] = [
    NAME, ("Role", "string", 0, _role_ref), AGE,
    ("Users", "string", 1, _subjects("User")), ("Groups", "string", 1, _subjects("Group")),
    ("ServiceAccounts", "string", 1, _subjects("ServiceAccount")),
]

COLUMNS: dict[str, list[Column]] = {
    "namespaces": [NAME, ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase", "")), AGE],
    "services": [
        NAME, ("Type", "string", 0, lambda o: o.get("spec", {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: o.get("spec", {}).get("clusterIP", "<none>")),
        ("External-IP", "string", 0, _external_ips), ("Port(s)", "string", 0, _ports), AGE,
        ("Selector", "string", 1, _selector),
    ],
    "configmaps": [NAME, ("Data", "integer", 0, _data_count), AGE],
    "secrets": [NAME, ("Type", "string", 0, lambda o: o.get("type", "Opaque")),
                ("Data", "integer", 0, _data_count), AGE],
    "serviceaccounts": [NAME, ("Secrets", "integer", 0, lambda o: len(o.get("secrets") or [])), AGE],
    "nodes": [
        NAME, ("Status", "string", 0, _node_status), ("Roles", "string", 0, _node_roles), AGE,
        ("Version", "string", 0, _node_info("kubeletVersion")),
        ("Internal-IP", "string", 1, _node_address("InternalIP")),
        ("External-IP", "string", 1, _node_address("ExternalIP")),
        ("OS-Image", "string", 1, _node_info("osImage")),
        ("Kernel-Version", "string", 1, _node_info("kernelVersion")),
        ("Container-Runtime", "string", 1, _node_info("containerRuntimeVersion")),
    ],
    "pods": [NAME, ("Ready", "string", 0, lambda o: "0/0"),
             ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase", "Pending")),
             ("Restarts", "string", 0, lambda o: "0"), AGE],
    "clusterroles": [NAME, CREATED_AT],
    "roles": [NAME, CREATED_AT],
    "clusterrolebindings": _BINDING,
    "rolebindings": _BINDING,
    "certificatesigningrequests": [
        NAME, AGE, ("SignerName", "string", 0, lambda o: o.get("spec", {}).get("signerName", "")),
        ("Requestor", "string", 0, lambda o: o.get("spec", {}).get("username", "")),
        ("RequestedDuration", "string", 0, _csr_duration), ("Condition", "string", 0, _csr_condition),
    ],
}


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(plural: str, items: list[Obj], resource_version: str, include_object: str = "Metadata") -> Obj:
    columns = COLUMNS.get(plural, [NAME, CREATED_AT])
    definitions = [
        {"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": "",
         "priority": priority}
        for name, kind, priority, _ in columns
    ]
    rows = []
    for item in items:
        row: Obj = {"cells": [cell(item) for _, _, _, cell in columns]}
        shown = _row_object(item, include_object)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
