"""Watch streams over real HTTPS: initial events + bookmark (client-go WatchList), resume, heartbeats."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.controlplane import ControlPlane, ControlPlaneOptions, watch


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneOptions(cluster_name="watch", cluster_id=str(uuid.uuid4()))) as cp:
        yield cp


@pytest.fixture(scope="module")
def tls(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    cert_pem, key_pem = control_plane.admin_credentials()
    (directory / "admin.crt").write_bytes(cert_pem)
    (directory / "admin.key").write_bytes(key_pem)
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    context.load_cert_chain(Path(directory / "admin.crt"), Path(directory / "admin.key"))
    return context


def open_watch(cp: ControlPlane, context: ssl.SSLContext, query: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection("localhost", cp.port, context=context, timeout=10)
    connection.request("GET", f"/api/v1/namespaces?watch=true&{query}")
    return connection.getresponse()


def event(stream: http.client.HTTPResponse) -> dict[str, Any]:
    line = stream.readline()
    assert line, "watch stream ended"
    decoded: dict[str, Any] = json.loads(line)
    return decoded


def test_initial_events_end_with_a_bookmark(control_plane: ControlPlane, tls: ssl.SSLContext) -> None:
    stream = open_watch(control_plane, tls, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                                            "&allowWatchBookmarks=true&timeoutSeconds=5")
    names = []
    while (current := event(stream))["type"] == "ADDED":
        names.append(current["object"]["metadata"]["name"])
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    assert current["type"] == "BOOKMARK"
    assert current["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(current["object"]["metadata"]["resourceVersion"]) == control_plane.store.resource_version
    stream.close()


def test_resume_from_a_resource_version_sees_only_later_changes(control_plane: ControlPlane,
                                                                 tls: ssl.SSLContext) -> None:
    since = control_plane.store.resource_version
    control_plane.store.create("namespaces", {"metadata": {"name": "later"}})
    stream = open_watch(control_plane, tls, f"resourceVersion={since}&timeoutSeconds=5")
    added = event(stream)
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "later")
    control_plane.store.delete("namespaces", "", "later")
    assert event(stream)["type"] == "DELETED"
    stream.close()


def test_idle_watch_gets_heartbeat_bookmarks(control_plane: ControlPlane, tls: ssl.SSLContext,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL", 0.2)
    since = control_plane.store.resource_version
    stream = open_watch(control_plane, tls, f"resourceVersion={since}&allowWatchBookmarks=true&timeoutSeconds=5")
    heartbeat = event(stream)
    assert heartbeat["type"] == "BOOKMARK"
    assert heartbeat["object"]["kind"] == "Namespace"
    stream.close()


def test_bad_resource_version_is_a_bad_request(control_plane: ControlPlane, tls: ssl.SSLContext) -> None:
    response = open_watch(control_plane, tls, "resourceVersion=abc")
    assert response.status == 400
    assert json.loads(response.read())["message"] == 'invalid resource version "abc"'
