"""Region-less bootstrap: ``lifeline-agent once`` against a control plane with no Region process at all.

The control plane is started on its own (no lab, no moto, no link); its RBAC is what the Region workflow
would create, applied with real kubectl as the lab admin; the bootstrap credential is a client certificate
in ``lifeline:agents``. The agent's AWS endpoint is a loopback listener that counts connections and closes
them: any AWS call would fail, and the test sees that none was even tried.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig
from lifeline_agent.rbac import lifeline_objects

from lab.agentkit import AGENT
from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import REAL_BACKEND


class AwsTrap:
    """A loopback port that accepts and closes every connection, counting them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture(scope="module", params=["emulated", REAL_BACKEND])
def control_plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = ControlPlaneOptions(cluster_name="regionless", cluster_id=str(uuid.uuid4()))
    if request.param == "emulated":
        cp: Any = ControlPlane(options)
    else:
        from lab.controlplane.real import RealControlPlane, unavailable_reason

        if (reason := unavailable_reason()) is not None:
            pytest.skip(f"real control plane unavailable: {reason}")
        cp = RealControlPlane(options)
    with cp:
        _apply_rbac(cp, tmp_path_factory.mktemp("rbac"))
        yield cp


def _kubeconfig(cp: Any, path: Path, cn: str, groups: list[str], server: str | None = None) -> Path:
    cert, key = cp.ca.issue_client_cert(cn, groups, dt.timedelta(hours=2))
    path.write_bytes(dump_kubeconfig(build_kubeconfig(
        cluster_name="regionless", server=server or cp.endpoint, ca_pem=cp.ca_pem, user_name=cn,
        client_cert_pem=cert, client_key_pem=key)))  # fmt: skip
    path.chmod(0o600)
    return path


def _apply_rbac(cp: Any, directory: Path) -> None:
    """The objects the Region workflow creates, with real kubectl as the lab admin."""
    from tests.conftest import run_kubectl

    cert, key = cp.admin_credentials()
    admin = directory / "admin.kubeconfig"
    admin.write_bytes(dump_kubeconfig(build_kubeconfig(cluster_name="regionless", server=cp.endpoint,
                                                       ca_pem=cp.ca_pem, user_name="lab-admin", client_cert_pem=cert,
                                                       client_key_pem=key)))  # fmt: skip
    objects = directory / "rbac.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": lifeline_objects()}))
    result = run_kubectl(admin, "create", "--validate=false", "-f", str(objects))
    assert result.rc == 0, result.stdout + result.stderr


@pytest.fixture
def aws_trap() -> Iterator[AwsTrap]:
    trap = AwsTrap()
    yield trap
    trap.close()


def write_config(tmp_path: Path, host_id: str, cluster_table: str) -> Path:
    """A configuration with no region and no aws_endpoint_url: nothing but the cluster's own settings."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'clusters = ["lab-1"]\nstate_dir = "{tmp_path / "state"}"\nhost_id = "{host_id}"\n'
        f'probe_timeout = "1s"\n[timing]\napi_timeout = "10s"\n[cluster.lab-1]\n{cluster_table}'
    )
    return path


def once(config: Path, trap: AwsTrap) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": trap.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
    env.pop("AWS_REGION", None)
    env.pop("AWS_DEFAULT_REGION", None)
    return subprocess.run([str(AGENT), "once", "--config", str(config)], capture_output=True, text=True,
                          timeout=180, env=env, check=False)  # fmt: skip


def whoami(kubectl: Any, kubeconfig: Path) -> dict[str, Any]:
    rc, out, err = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    assert rc == 0, err
    return dict(json.loads(out)["status"]["userInfo"])


def installed_certificate(state: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_client_cert(state / "lab-1" / "kubeconfig"))


def _client_cert(kubeconfig: Path) -> bytes:
    import base64

    import yaml

    document = yaml.safe_load(kubeconfig.read_text())
    return base64.b64decode(document["users"][0]["user"]["client-certificate-data"])


def test_once_bootstraps_from_the_configuration_alone(control_plane, tmp_path, kubectl, aws_trap):
    bootstrap = _kubeconfig(control_plane, tmp_path / "bootstrap.kubeconfig", "bootstrap:edge", ["lifeline:agents"])
    ca = tmp_path / "cluster-ca.crt"
    ca.write_bytes(control_plane.ca_pem)
    config = write_config(tmp_path, "edge-host-1", f'endpoint = "{control_plane.endpoint}"\n'
                          f'certificate_authority = "{ca}"\nbootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip

    result = once(config, aws_trap)

    assert result.returncode == 0, result.stdout + result.stderr
    assert aws_trap.connections == 0, "the agent tried to reach AWS"
    kubeconfig = tmp_path / "state" / "lab-1" / "kubeconfig"
    user = whoami(kubectl, kubeconfig)
    assert user["username"] == "lifeline:edge-host-1"
    assert "lifeline:breakglass" in user["groups"]
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0 and "kubernetes" in out, err
    cached = json.loads((tmp_path / "state" / "lab-1" / "cluster.json").read_text())
    assert set(cached) == {"configured", "ips", "fetchedAt"}
    assert cached["configured"]["endpoint"] == control_plane.endpoint
    status = json.loads((tmp_path / "state" / "lab-1" / "status.json").read_text())
    assert status["state"] == "ready" and status["link"] == "unknown"  # never probed

    again = once(config, aws_trap)  # a valid kubeconfig: verified with it alone, kept
    assert again.returncode == 0, again.stdout + again.stderr
    assert aws_trap.connections == 0
    assert "installed a new kubeconfig" not in again.stderr


def test_an_expired_certificate_rebootstraps_and_a_renewal_uses_the_current_one(control_plane, tmp_path, kubectl,
                                                                               aws_trap):  # fmt: skip
    port = control_plane.port
    bootstrap = _kubeconfig(control_plane, tmp_path / "bootstrap.kubeconfig", "bootstrap:edge", ["lifeline:agents"],
                            server=f"https://127.0.0.1:{port}")  # fmt: skip
    config = write_config(tmp_path, "edge-host-2", f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n')
    state = tmp_path / "state" / "lab-1"

    # An expired certificate on disk: only the bootstrap credential can make a new one, no link needed.
    now = dt.datetime.now(dt.UTC)
    _install(control_plane, state, port, not_before=now - dt.timedelta(hours=2), lifetime=dt.timedelta(hours=1))
    result = once(config, aws_trap)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "certificate expired at" in result.stderr
    assert installed_certificate(tmp_path / "state").not_valid_after_utc > now + dt.timedelta(minutes=10)
    assert whoami(kubectl, state / "kubeconfig")["username"] == "lifeline:edge-host-2"

    # Past its renewal deadline (70-90 % of the lifetime): the current certificate renews. The bootstrap
    # identity may no longer request certificates (it is not in lifeline:agents now): a bootstrap would fail.
    _kubeconfig(control_plane, bootstrap, "bootstrap:edge", [], server=f"https://127.0.0.1:{port}")
    old = _install(control_plane, state, port, not_before=now - dt.timedelta(minutes=57),
                   lifetime=dt.timedelta(hours=1))  # fmt: skip
    result = once(config, aws_trap)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "renewal deadline" in result.stderr and "bootstrapping" not in result.stderr
    renewed = installed_certificate(tmp_path / "state")
    assert renewed.serial_number != old.serial_number
    assert renewed.not_valid_after_utc > now + dt.timedelta(hours=1)
    assert whoami(kubectl, state / "kubeconfig")["username"] == "lifeline:edge-host-2"
    assert aws_trap.connections == 0


def _install(cp: Any, state: Path, port: int, *, not_before: dt.datetime, lifetime: dt.timedelta) -> x509.Certificate:
    """A kubeconfig as the agent writes it, with a certificate of the given validity from the cluster CA."""
    cert, key = cp.ca.issue_client_cert("lifeline:edge-host-2", ["lifeline:breakglass"], lifetime,
                                        not_before=not_before)  # fmt: skip
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = build_kubeconfig(cluster_name="lab-1", server=f"https://127.0.0.1:{port}", ca_pem=cp.ca_pem,
                              user_name="lifeline:edge-host-2", client_cert_pem=cert, client_key_pem=key,
                              tls_server_name="127.0.0.1")  # fmt: skip
    for name, data in (("kubeconfig", dump_kubeconfig(config)), ("key.pem", key)):
        (state / name).write_bytes(data)
        (state / name).chmod(0o600)
    (state / "kubeconfig.prev").unlink(missing_ok=True)
    return x509.load_pem_x509_certificate(cert)


def test_a_mixed_configuration_probes_the_link_only_for_its_region_cluster(control_plane, tmp_path, kubectl,
                                                                          aws_trap):  # fmt: skip
    if not isinstance(control_plane, ControlPlane):
        pytest.skip("the link decision does not depend on the backend: shown on the emulated one")
    bootstrap = _kubeconfig(control_plane, tmp_path / "bootstrap.kubeconfig", "bootstrap:edge", ["lifeline:agents"])
    config = write_config(tmp_path, "edge-host-3", f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n')
    config.write_text(
        'region = "us-west-2"\n' + config.read_text().replace('clusters = ["lab-1"]', 'clusters = ["lab-1", "edge-1"]')
    )

    result = once(config, aws_trap)

    assert result.returncode == 3, result.stdout + result.stderr  # edge-1: needs-link (no Region here)
    assert aws_trap.connections > 0, "the Region cluster should have probed the link"
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["lab-1"][1] == "ready" and rows["edge-1"][1] == "needs-link", result.stdout
    assert whoami(kubectl, tmp_path / "state" / "lab-1" / "kubeconfig")["username"] == "lifeline:edge-host-3"
