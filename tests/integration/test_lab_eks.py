"""EKS in the lab Region, end to end with a real control plane: describe-cluster of a local cluster
(outpostConfig, id, CREATING -> ACTIVE, health issues) and the CA/endpoint of the running API server."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab.lab import DEFAULT_OUTPOST_ARN, LabError


def test_local_cluster_describe_matches_eks_and_its_control_plane(lab: Any, unique_name: str) -> None:
    created = lab.create_local_cluster(unique_name, wait_active=False, activation_delay=1.0)
    assert created.status == "CREATING"
    assert created.endpoint == "" and created.ca_pem == b""
    eks = lab.client("eks")
    active = lab.wait_active(unique_name, timeout=10)
    cluster = eks.describe_cluster(name=unique_name)["cluster"]
    assert cluster["status"] == "ACTIVE"
    assert cluster["id"] == created.id == active.id
    assert cluster["outpostConfig"] == {"outpostArns": [DEFAULT_OUTPOST_ARN], "controlPlaneInstanceType": "m5d.large"}
    control_plane = lab.control_plane(unique_name)
    assert base64.b64decode(cluster["certificateAuthority"]["data"]) == control_plane.ca_pem
    assert cluster["endpoint"] == control_plane.endpoint


def test_endpoint_answers_tls_with_the_published_ca(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    with tempfile.NamedTemporaryFile(suffix=".crt") as ca_file:
        Path(ca_file.name).write_bytes(info.ca_pem)
        context = ssl.create_default_context(cafile=ca_file.name)
        with urllib.request.urlopen(f"{info.endpoint}/version", context=context, timeout=10) as response:
            version = json.loads(response.read())
    assert version["gitVersion"].startswith("v1.31")


def test_health_issues_hold_a_cluster_in_creating(lab: Any, unique_name: str) -> None:
    lab.create_local_cluster(unique_name, wait_active=False, activation_delay=1.0)
    issue = {"code": "ClusterUnreachable", "message": "instances cannot reach the Region", "resourceIds": ["i-0a1"]}
    lab.region.set_health_issues(unique_name, [issue])
    time.sleep(1.1)
    with pytest.raises(LabError, match="still CREATING"):
        lab.wait_active(unique_name, timeout=0.5)
    assert lab.client("eks").describe_cluster(name=unique_name)["cluster"]["health"]["issues"] == [issue]


def test_extended_cluster_is_reached_through_the_link(lab: Any, unique_name: str) -> None:
    info = lab.create_extended_cluster(unique_name)
    assert info.kind == "extended" and info.outpost_arns == ()
    link_port = int(info.endpoint.rsplit(":", 1)[1])
    assert link_port in lab.link.routes().values()
    assert link_port != lab.control_plane(unique_name).port


def test_delete_cluster_stops_its_control_plane(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    control_plane_port = lab.control_plane(unique_name).port
    deleted = lab.client("eks").delete_cluster(name=unique_name)["cluster"]
    assert deleted["status"] == "DELETING"
    with pytest.raises(LabError, match="no control plane"):
        lab.control_plane(unique_name)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", control_plane_port), timeout=2).close()
    assert unique_name not in lab.client("eks").list_clusters()["clusters"]
    assert info.endpoint.endswith(f":{control_plane_port}")
