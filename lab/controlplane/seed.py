"""The objects a fresh EKS local cluster has: namespaces, the kubernetes Service, CA ConfigMaps, nodes and
the built-in ClusterRoles and ClusterRoleBindings."""

from __future__ import annotations

from typing import Any

from .store import ObjectStore

Obj = dict[str, Any]

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVICE_CLUSTER_IP = "172.20.0.1"
CONTROL_PLANE_TAINT = "node-role.eks-local.amazonaws.com/control-plane"
PATCH_RELEASES = {"1.29": "1.29.10", "1.30": "1.30.6", "1.31": "1.31.4", "1.32": "1.32.0"}
EKS_BUILD = "eks-2d5f260"

_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/"]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_READ = ["get", "list", "watch"]
_WORKLOADS = ["pods", "pods/log", "pods/status", "services", "endpoints", "configmaps", "secrets",
              "serviceaccounts", "persistentvolumeclaims", "events"]
_APPS = ["deployments", "daemonsets", "replicasets", "statefulsets", "deployments/scale"]


def full_version(kubernetes_version: str) -> str:
    return f"v{PATCH_RELEASES.get(kubernetes_version, kubernetes_version + '.0')}-{EKS_BUILD}"


def version_info(kubernetes_version: str) -> Obj:
    major, minor = kubernetes_version.split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": full_version(kubernetes_version),
        "gitCommit": "5d4a8fd5f5e4a6b2a9c3d1e0f7b6a5c4d3e2f1a0",
        "gitTreeState": "clean",
        "buildDate": "2024-12-10T23:10:12Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def cluster_role(name: str, rules: list[Obj]) -> Obj:
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return {"metadata": _meta(name, labels=labels), "rules": rules}


def cluster_role_binding(name: str, role: str, subjects: list[Obj]) -> Obj:
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return {
        "metadata": _meta(name, labels=labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _group(name: str) -> Obj:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def builtin_cluster_roles() -> list[Obj]:
    rbac_objects = ["roles", "rolebindings"]
    return [
        cluster_role("cluster-admin", [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]),
        cluster_role("admin", [
            {"apiGroups": [""], "resources": _WORKLOADS, "verbs": _ALL_VERBS},
            {"apiGroups": ["apps"], "resources": _APPS, "verbs": _ALL_VERBS},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": rbac_objects, "verbs": _ALL_VERBS},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
             "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
        ]),
        cluster_role("edit", [
            {"apiGroups": [""], "resources": _WORKLOADS, "verbs": _ALL_VERBS},
            {"apiGroups": ["apps"], "resources": _APPS, "verbs": _ALL_VERBS},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
        ]),
        cluster_role("view", [
            {"apiGroups": [""], "resources": [r for r in _WORKLOADS if r != "secrets"] + ["namespaces"],
             "verbs": _READ},
            {"apiGroups": ["apps"], "resources": _APPS, "verbs": _READ},
        ]),
        cluster_role("system:basic-user", [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
        ]),
        cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}]),
        cluster_role("system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_URLS, "verbs": ["get"]}]),
    ]


def builtin_cluster_role_bindings() -> list[Obj]:
    return [
        cluster_role_binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
        cluster_role_binding("system:basic-user", "system:basic-user", [_group("system:authenticated")]),
        cluster_role_binding("system:discovery", "system:discovery", [_group("system:authenticated")]),
        cluster_role_binding("system:public-info-viewer", "system:public-info-viewer",
                             [_group("system:authenticated"), _group("system:unauthenticated")]),
    ]


def kubernetes_service() -> Obj:
    return {
        "metadata": _meta("kubernetes", "default",
                          {"component": "apiserver", "provider": "kubernetes"}),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": SERVICE_CLUSTER_IP,
            "clusterIPs": [SERVICE_CLUSTER_IP],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }


def _node(name: str, ip: str, version: str, *, control_plane: bool, ready: bool) -> Obj:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "m5.large" if not control_plane else "m5d.large",
    }
    spec: Obj = {}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
        spec["taints"] = [{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
    }
    return {
        "metadata": _meta(name, labels=labels),
        "spec": spec,
        "status": {
            "conditions": [condition],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": version,
                "osImage": "Amazon Linux 2023.6.20241212",
                "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                "containerRuntimeVersion": "containerd://1.7.23",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def nodes(kind: str, kubernetes_version: str) -> list[Obj]:
    version = full_version(kubernetes_version)
    found: list[Obj] = []
    if kind == "local":
        for index in range(3):
            ip = f"10.0.1.{10 + index}"
            name = f"ip-10-0-1-{10 + index}.us-west-2.compute.internal"
            found.append(_node(name, ip, version, control_plane=True, ready=False))
    for index in range(2):
        ip = f"10.0.2.{20 + index}"
        name = f"ip-10-0-2-{20 + index}.us-west-2.compute.internal"
        found.append(_node(name, ip, version, control_plane=False, ready=True))
    return found


def seed(store: ObjectStore, *, ca_pem: bytes, kind: str, kubernetes_version: str) -> None:
    """Fill an empty store with what a new cluster of ``kind`` ("local" or "extended") contains."""
    for name in NAMESPACES:
        store.create("namespaces", {"metadata": _meta(name, labels={"kubernetes.io/metadata.name": name}),
                                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        store.create("configmaps", {"metadata": _meta("kube-root-ca.crt", name),
                                    "data": {"ca.crt": ca_pem.decode("ascii")}})
    store.create("services", kubernetes_service())
    for role in builtin_cluster_roles():
        store.create("clusterroles", role)
    for binding in builtin_cluster_role_bindings():
        store.create("clusterrolebindings", binding)
    for node in nodes(kind, kubernetes_version):
        store.create("nodes", node)
