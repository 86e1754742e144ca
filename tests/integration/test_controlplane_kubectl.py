"""What a fresh EKS local cluster shows real kubectl: nodes, namespaces, ConfigMaps, version, discovery,
apply/patch/delete round trips."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import run_kubectl


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    options = ControlPlaneOptions(cluster_name="kubectl", cluster_id=str(uuid.uuid4()), kubernetes_version="1.30")
    with ControlPlane(options) as cp:
        yield cp


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert_pem, key_pem = control_plane.admin_credentials()
    config = build_kubeconfig(cluster_name="kubectl", server=control_plane.endpoint, ca_pem=control_plane.ca_pem,
                              user_name="admin", client_cert_pem=cert_pem, client_key_pem=key_pem)
    path = tmp_path_factory.mktemp("kubectl") / "admin.kubeconfig"
    path.write_bytes(dump_kubeconfig(config))
    return path


def test_local_cluster_nodes(admin: Path) -> None:
    lines = run_kubectl(admin, "get", "nodes").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[1], r[2]) for r in rows] == [("NotReady", "control-plane")] * 3 + [("Ready", "<none>")] * 2
    assert {r[4] for r in rows} == {"v1.30.6-eks-2d5f260"}
    taints = run_kubectl(admin, "get", "nodes", "-o", "jsonpath={.items[0].spec.taints}").stdout
    assert json.loads(taints) == [{"effect": "NoSchedule", "key": "node-role.eks-local.amazonaws.com/control-plane"}]


def test_extended_cluster_has_only_workers(tmp_path: Path) -> None:
    options = ControlPlaneOptions(cluster_name="ext", cluster_id="ext", kind="extended")
    with ControlPlane(options) as cp:
        nodes, _ = cp.store.list("nodes")
    assert len(nodes) == 2
    assert all("node-role.kubernetes.io/control-plane" not in n["metadata"]["labels"] for n in nodes)


def test_server_version(admin: Path) -> None:
    version = json.loads(run_kubectl(admin, "version", "-o", "json").stdout)["serverVersion"]
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "30", "v1.30.6-eks-2d5f260")


def test_namespaces_and_root_ca_configmaps(control_plane: ControlPlane, admin: Path) -> None:
    namespaces = run_kubectl(admin, "get", "ns", "-o", "name").stdout.split()
    assert namespaces == ["namespace/default", "namespace/kube-node-lease", "namespace/kube-public",
                          "namespace/kube-system"]
    ca = run_kubectl(admin, "get", "cm", "kube-root-ca.crt", "-n", "kube-public", "-o",
                     "jsonpath={.data.ca\\.crt}").stdout
    assert ca.encode() == control_plane.ca_pem
    assert run_kubectl(admin, "create", "ns", "team-a").rc == 0
    assert "kube-root-ca.crt" in run_kubectl(admin, "get", "cm", "-n", "team-a").stdout
    assert run_kubectl(admin, "delete", "ns", "team-a").rc == 0
    assert run_kubectl(admin, "get", "cm", "-n", "team-a", "-o", "name").stdout == ""


def test_aggregated_discovery_is_served(admin: Path, tmp_path: Path) -> None:
    result = run_kubectl(admin, "api-resources", f"--cache-dir={tmp_path}", "-v=6")
    assert "certificatesigningrequests   csr" in result.stdout
    requested = [line for line in result.stderr.splitlines() if '"Response"' in line]
    assert any("/apis?timeout" in line for line in requested)
    assert not any("/apis/rbac.authorization.k8s.io/v1" in line for line in requested)


def test_legacy_discovery_documents(control_plane: ControlPlane, tmp_path: Path) -> None:
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    cert_pem, key_pem = control_plane.admin_credentials()
    (tmp_path / "c").write_bytes(cert_pem)
    (tmp_path / "k").write_bytes(key_pem)
    context.load_cert_chain(tmp_path / "c", tmp_path / "k")

    def get(path: str) -> dict[str, object]:
        with urllib.request.urlopen(control_plane.endpoint + path, context=context, timeout=5) as response:
            document: dict[str, object] = json.load(response)
        return document

    assert get("/api")["versions"] == ["v1"]
    groups = {g["name"] for g in get("/apis")["groups"]}  # type: ignore[union-attr, index]
    assert {"rbac.authorization.k8s.io", "certificates.k8s.io", "authentication.k8s.io"} <= groups
    resources = {r["name"] for r in get("/apis/certificates.k8s.io/v1")["resources"]}  # type: ignore[union-attr, index]
    assert resources == {"certificatesigningrequests", "certificatesigningrequests/approval",
                         "certificatesigningrequests/status"}


BINDING = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: lifeline-breakglass
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {role}
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: lifeline:breakglass
"""


def test_apply_patch_and_delete_round_trip(admin: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "binding.yaml"
    manifest.write_text(BINDING.format(role="cluster-admin"))
    assert "created" in run_kubectl(admin, "apply", "-f", str(manifest)).stdout
    assert "unchanged" in run_kubectl(admin, "apply", "-f", str(manifest)).stdout
    manifest.write_text(BINDING.format(role="view"))
    assert "configured" in run_kubectl(admin, "apply", "-f", str(manifest)).stdout
    row = run_kubectl(admin, "get", "clusterrolebinding", "lifeline-breakglass", "-o", "wide", "--no-headers")
    assert row.stdout.split()[:2] == ["lifeline-breakglass", "ClusterRole/view"]
    assert row.stdout.split()[-1] == "lifeline:breakglass"
    labelled = run_kubectl(admin, "label", "clusterrolebinding", "lifeline-breakglass", "owner=lifeline")
    assert labelled.rc == 0, labelled.stderr
    assert run_kubectl(admin, "get", "clusterrolebinding", "-l", "owner=lifeline", "-o", "name").stdout.strip() == (
        "clusterrolebinding.rbac.authorization.k8s.io/lifeline-breakglass")
    deleted = run_kubectl(admin, "delete", "-f", str(manifest))
    assert deleted.stdout.strip() == 'clusterrolebinding.rbac.authorization.k8s.io "lifeline-breakglass" deleted'
    missing = run_kubectl(admin, "get", "clusterrolebinding", "lifeline-breakglass")
    assert missing.stderr.strip() == ('Error from server (NotFound): clusterrolebindings.rbac.authorization.k8s.io '
                                      '"lifeline-breakglass" not found')


def test_create_twice_is_already_exists(admin: Path) -> None:
    assert run_kubectl(admin, "create", "clusterrole", "twice", "--verb=get", "--resource=pods").rc == 0
    again = run_kubectl(admin, "create", "clusterrole", "twice", "--verb=get", "--resource=pods")
    assert again.stderr.strip() == ('Error from server (AlreadyExists): clusterroles.rbac.authorization.k8s.io '
                                    '"twice" already exists')


def test_get_all_lists_the_kubernetes_service(admin: Path) -> None:
    lines = run_kubectl(admin, "get", "all").stdout.splitlines()
    assert lines[1].split()[:5] == ["service/kubernetes", "ClusterIP", "172.20.0.1", "<none>", "443/TCP"]
