"""HTTP/1.1 keep-alive on the lab's API server, as kube-apiserver keeps it: many requests over one TLS connection."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.integration.test_controlplane_listeners import write_admin_pair


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneOptions(cluster_name="keepalive", cluster_id=str(uuid.uuid4()))) as cp:
        yield cp


class OneConnection(http.client.HTTPSConnection):
    """A client that never reconnects: a request after the server closed the connection raises NotConnected."""

    auto_open = 0
    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


def admin_connection(cp: ControlPlane, directory: Path) -> OneConnection:
    context = ssl.create_default_context(cadata=cp.ca_pem.decode())
    context.load_cert_chain(*write_admin_pair(cp, directory))
    connection = OneConnection("localhost", cp.port, context=context, timeout=10)
    connection.connect()
    return connection


def test_requests_on_one_tls_connection_are_all_answered_on_it(control_plane: ControlPlane, tmp_path: Path) -> None:
    connection = admin_connection(control_plane, tmp_path)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "b"}}
    requests = [
        ("GET", "/api/v1/namespaces/default/services/kubernetes", None, 200),
        ("POST", "/api/v1/namespaces/default/configmaps", configmap, 201),
        # refused before the body is read: the server must skip the body to find the next request
        ("POST", "/apis/nothing.example.com/v1/things", {"padding": "x" * 20000}, 404),
        # a stream without a length (chunked) that ends on its own
        ("GET", "/api/v1/namespaces?watch=true&timeoutSeconds=1", None, 200),
        ("GET", "/healthz", None, 200),
        ("DELETE", "/api/v1/namespaces/default/configmaps/kept", None, 200),
        ("GET", "/api/v1/namespaces/default/configmaps/kept", None, 404),
    ]
    payloads = {}
    try:
        for method, path, body, status in requests:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = connection.getresponse()
            payloads[path] = response.read()
            assert (method, path, response.status) == (method, path, status), payloads[path][:300]
            assert not response.will_close, (method, path, response.getheader("Connection"))
    finally:
        connection.close()
    assert connection.opened == 1
    events = [json.loads(line) for line in payloads["/api/v1/namespaces?watch=true&timeoutSeconds=1"].splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "default"), ("ADDED", "kube-node-lease"), ("ADDED", "kube-public"), ("ADDED", "kube-system")]
    assert payloads["/healthz"] == b"ok"
