"""RBAC rule evaluation (pure logic): the rules kube-apiserver's RBAC authorizer applies."""

from __future__ import annotations

from typing import Any

import pytest

from lab.controlplane.rbac_eval import (
    Attributes,
    StaticPolicy,
    UserInfo,
    authorize,
    forbidden_message,
    non_resource_url_matches,
    resource_matches,
)

RBAC = "rbac.authorization.k8s.io"
CERTS = "certificates.k8s.io"


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, role_kind: str, role_name: str, subjects: list[dict[str, str]],
            namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role_name},
            "subjects": subjects}


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name, (*groups, "system:authenticated"))


REQUESTER_RULES = [
    {"apiGroups": [CERTS], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": [CERTS], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
    {"apiGroups": [CERTS], "resources": ["signers"], "verbs": ["approve"],
     "resourceNames": ["kubernetes.io/kube-apiserver-client"]},
]
POLICY = StaticPolicy([
    role("ClusterRole", "requester", REQUESTER_RULES),
    binding("ClusterRoleBinding", "requester", "ClusterRole", "requester",
            [{"kind": "Group", "name": "lifeline:agents"}]),
    role("ClusterRole", "reader", [{"apiGroups": [""], "resources": ["configmaps", "services"],
                                    "verbs": ["get", "list"]}]),
    binding("RoleBinding", "read-team", "ClusterRole", "reader", [{"kind": "User", "name": "ann"}], "team"),
    role("Role", "lease-writer", [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}], "team"),
    binding("RoleBinding", "lease", "Role", "lease-writer",
            [{"kind": "ServiceAccount", "name": "robot", "namespace": "team"}], "team"),
    role("ClusterRole", "health", [{"nonResourceURLs": ["/healthz", "/metrics/*"], "verbs": ["get"]}]),
    binding("ClusterRoleBinding", "health", "ClusterRole", "health", [{"kind": "User", "name": "probe"}]),
    binding("ClusterRoleBinding", "dangling", "ClusterRole", "gone", [{"kind": "User", "name": "orphan"}]),
])


def csr(verb: str, who: UserInfo, *, subresource: str = "", name: str = "x") -> Attributes:
    return Attributes(who, verb, True, CERTS, "certificatesigningrequests", subresource, "", name)


def test_system_masters_may_do_anything() -> None:
    root = UserInfo("root", ("system:masters",))
    assert authorize(csr("delete", root), StaticPolicy([])).allowed
    assert authorize(Attributes(root, "get", False, path="/anything"), StaticPolicy([])).allowed


def test_group_binding_grants_listed_verbs_only() -> None:
    agent = user("lifeline:host-1", "lifeline:agents")
    assert authorize(csr("create", agent, name=""), POLICY).allowed
    assert not authorize(csr("delete", agent), POLICY).allowed
    assert not authorize(csr("create", user("stranger"), name=""), POLICY).allowed


def test_subresource_needs_its_own_rule() -> None:
    agent = user("lifeline:host-1", "lifeline:agents")
    assert authorize(csr("update", agent, subresource="approval"), POLICY).allowed
    assert not authorize(csr("update", agent, subresource="status"), POLICY).allowed
    assert not authorize(csr("update", agent), POLICY).allowed


@pytest.mark.parametrize(("rule", "resource", "subresource", "expected"), [
    (["*"], "pods", "log", True),
    (["pods"], "pods", "", True),
    (["pods"], "pods", "log", False),
    (["pods/log"], "pods", "log", True),
    (["*/log"], "pods", "log", True),
    (["*/log"], "pods", "", False),
    (["pods/*"], "pods", "log", False),
])
def test_resource_matching(rule: list[str], resource: str, subresource: str, expected: bool) -> None:
    assert resource_matches(rule, resource, subresource) is expected


def test_resource_names_restrict_the_signer() -> None:
    agent = user("lifeline:host-1", "lifeline:agents")
    def approve(signer: str) -> Attributes:
        return Attributes(agent, "approve", True, CERTS, "signers", "", "", signer)

    assert authorize(approve("kubernetes.io/kube-apiserver-client"), POLICY).allowed
    assert not authorize(approve("kubernetes.io/*"), POLICY).allowed
    assert not authorize(approve("example.com/other"), POLICY).allowed


def test_api_group_must_match() -> None:
    ann = user("ann")
    in_team = Attributes(ann, "get", True, "", "configmaps", "", "team", "x")
    assert authorize(in_team, POLICY).allowed
    other_group = Attributes(ann, "get", True, "apps", "configmaps", "", "team", "x")
    assert not authorize(other_group, POLICY).allowed


def test_role_binding_applies_only_in_its_namespace() -> None:
    ann = user("ann")
    assert not authorize(Attributes(ann, "get", True, "", "configmaps", "", "default", "x"), POLICY).allowed
    assert not authorize(Attributes(ann, "list", True, "", "configmaps"), POLICY).allowed


def test_service_account_subject_and_wildcard_subresource() -> None:
    robot = user("system:serviceaccount:team:robot", "system:serviceaccounts")
    allowed = authorize(Attributes(robot, "patch", True, "coordination.k8s.io", "leases", "status", "team", "l"),
                        POLICY)
    assert allowed.allowed
    assert allowed.reason == ('RBAC: allowed by RoleBinding "lease/team" of Role "lease-writer" to '
                              'ServiceAccount "team/robot"')
    impostor = user("system:serviceaccount:other:robot")
    assert not authorize(Attributes(impostor, "patch", True, "x", "leases", "status", "team", "l"), POLICY).allowed


def test_non_resource_urls() -> None:
    probe = user("probe")
    assert authorize(Attributes(probe, "get", False, path="/healthz"), POLICY).allowed
    assert authorize(Attributes(probe, "get", False, path="/metrics/slis"), POLICY).allowed
    assert not authorize(Attributes(probe, "get", False, path="/healthz/etcd"), POLICY).allowed
    assert not authorize(Attributes(probe, "post", False, path="/healthz"), POLICY).allowed
    assert non_resource_url_matches(["*"], "/anything")


def test_binding_to_missing_role_explains_itself() -> None:
    decision = authorize(csr("get", user("orphan")), POLICY)
    assert not decision.allowed
    assert decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'


def test_allowed_reason_names_the_binding() -> None:
    decision = authorize(csr("get", user("lifeline:host-1", "lifeline:agents")), POLICY)
    assert decision.reason == ('RBAC: allowed by ClusterRoleBinding "requester" of ClusterRole "requester" '
                               'to Group "lifeline:agents"')


def test_forbidden_messages_are_phrased_like_kubernetes() -> None:
    bob = user("bob")
    assert forbidden_message(csr("update", bob, subresource="approval")) == (
        'User "bob" cannot update resource "certificatesigningrequests/approval" in API group '
        '"certificates.k8s.io" at the cluster scope'
    )
    assert forbidden_message(Attributes(bob, "list", True, "", "services", "", "default")) == (
        'User "bob" cannot list resource "services" in API group "" in the namespace "default"'
    )
    assert forbidden_message(Attributes(bob, "get", False, path="/api")) == 'User "bob" cannot get path "/api"'
    assert forbidden_message(csr("get", bob), "RBAC: x") == (
        'User "bob" cannot get resource "certificatesigningrequests" in API group "certificates.k8s.io" '
        "at the cluster scope: RBAC: x"
    )
