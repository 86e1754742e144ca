"""Pure helpers behind the handlers: name validation, merge patches, selectors, request parsing."""

from __future__ import annotations

import pytest

from lab.controlplane import requestinfo
from lab.controlplane.errors import ApiError
from lab.controlplane.handlers import merge_patch, name_problem
from lab.controlplane.resources import lookup
from lab.controlplane.selectors import matcher

CSR = lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
CONFIGMAP = lookup("", "v1", "configmaps")
NAMESPACE = lookup("", "v1", "namespaces")


@pytest.mark.parametrize(("name", "rtype", "ok"), [
    ("lifeline:host-1", CSR, True), ("a/b", CSR, False), ("..", CSR, False),
    ("kube-root-ca.crt", CONFIGMAP, True), ("a_b", CONFIGMAP, False), ("-a", CONFIGMAP, False),
    ("team-a", NAMESPACE, True), ("team.a", NAMESPACE, False),
])
def test_names(name: str, rtype: object, ok: bool) -> None:
    assert (name_problem(name, rtype) is None) is ok  # type: ignore[arg-type]


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    target = {"metadata": {"labels": {"a": "1", "b": "2"}}, "subjects": [{"name": "x"}, {"name": "y"}]}
    patched = merge_patch(target, {"metadata": {"labels": {"b": None, "c": "3"}}, "subjects": [{"name": "z"}]})
    assert patched == {"metadata": {"labels": {"a": "1", "c": "3"}}, "subjects": [{"name": "z"}]}
    assert target["metadata"]["labels"] == {"a": "1", "b": "2"}


def test_selectors() -> None:
    obj = {"metadata": {"name": "n", "namespace": "ns", "labels": {"app": "web", "tier": "front"}},
           "spec": {"signerName": "kubernetes.io/kube-apiserver-client"}}
    assert matcher("app=web,tier!=back", "metadata.name=n")(obj)
    assert matcher("app in (web, api),!missing", None)(obj)
    assert not matcher("app notin (web)", None)(obj)
    assert matcher(None, "spec.signerName=kubernetes.io/kube-apiserver-client")(obj)
    assert not matcher("missing", None)(obj)
    with pytest.raises(ApiError):
        matcher("a b c", None)


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/api/v1/namespaces/default/services", ("list", "", "services", "", "default", "")),
    ("GET", "/api/v1/namespaces/team", ("get", "", "namespaces", "", "team", "team")),
    ("PUT", "/api/v1/namespaces/team/status", ("update", "", "namespaces", "status", "team", "team")),
    ("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval",
     ("update", "certificates.k8s.io", "certificatesigningrequests", "approval", "", "x")),
    ("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles", ("deletecollection", "rbac.authorization.k8s.io",
                                                                   "clusterroles", "", "", "")),
])
def test_request_info(method: str, path: str, expected: tuple[str, ...]) -> None:
    info = requestinfo.parse(method, path)
    assert info.resource_request
    assert (info.verb, info.api_group, info.resource, info.subresource, info.namespace, info.name) == expected


def test_discovery_paths_are_non_resource_requests() -> None:
    for path in ("/api", "/api/v1", "/apis/certificates.k8s.io/v1", "/version", "/openapi/v3"):
        assert not requestinfo.parse("GET", path).resource_request
    assert requestinfo.parse("GET", "/api/v1/nodes", watch=True).verb == "watch"
