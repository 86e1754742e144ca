"""Three control-plane "instances" on one port: DNS-free kubeconfigs per IP, one instance dying and returning."""

from __future__ import annotations

import http.client
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import run_kubectl

IPS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
HOST = "abcdef0123456789.gr7.us-west-2.eks.amazonaws.com"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    options = ControlPlaneOptions(cluster_name="ha", cluster_id=str(uuid.uuid4()), host_name=HOST, listen_ips=IPS)
    with ControlPlane(options) as cp:
        yield cp


def kubeconfig_for(cp: ControlPlane, ip: str, path: Path) -> Path:
    cert_pem, key_pem = cp.admin_credentials()
    config = build_kubeconfig(cluster_name="ha", server=f"https://{ip}:{cp.port}", ca_pem=cp.ca_pem,
                              user_name="admin", client_cert_pem=cert_pem, client_key_pem=key_pem,
                              tls_server_name=HOST)
    path.write_bytes(dump_kubeconfig(config))
    return path


def test_every_instance_serves_on_the_same_port(control_plane: ControlPlane, tmp_path: Path) -> None:
    assert control_plane.endpoint == f"https://{HOST}:{control_plane.port}"
    for ip in IPS:
        result = run_kubectl(kubeconfig_for(control_plane, ip, tmp_path / ip), "get", "svc", "--no-headers")
        assert result.stdout.split()[:3] == ["kubernetes", "ClusterIP", "172.20.0.1"], result.stderr


def test_serving_certificate_names_host_and_ips(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    with socket.create_connection(("127.0.0.3", control_plane.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    sans = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert {HOST, "localhost"} <= set(sans.value.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)} == set(IPS)


def test_one_instance_dies_and_returns(control_plane: ControlPlane, tmp_path: Path) -> None:
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    context.load_cert_chain(*write_admin_pair(control_plane, tmp_path))
    watcher = http.client.HTTPSConnection("127.0.0.2", control_plane.port, context=context, timeout=10)
    watcher.request("GET", "/api/v1/namespaces?watch=true", headers={"Host": HOST})
    stream = watcher.getresponse()
    assert stream.status == 200
    stream.readline()

    control_plane.stop_listener("127.0.0.2")
    try:
        with pytest.raises((http.client.IncompleteRead, ConnectionError, ssl.SSLError)):
            stream.read()  # the open watch is cut instead of hanging
        refused = run_kubectl(kubeconfig_for(control_plane, "127.0.0.2", tmp_path / "down"), "get", "svc")
        assert refused.rc == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            f"The connection to the server 127.0.0.2:{control_plane.port} was refused - did you specify the right "
            "host or port?")
        alive = run_kubectl(kubeconfig_for(control_plane, "127.0.0.3", tmp_path / "up"), "get", "svc")
        assert alive.rc == 0
    finally:
        control_plane.start_listener("127.0.0.2")
        watcher.close()
    back = run_kubectl(kubeconfig_for(control_plane, "127.0.0.2", tmp_path / "back"), "get", "svc")
    assert back.rc == 0, back.stderr


def write_admin_pair(cp: ControlPlane, directory: Path) -> tuple[str, str]:
    cert_pem, key_pem = cp.admin_credentials()
    (directory / "admin.crt").write_bytes(cert_pem)
    (directory / "admin.key").write_bytes(key_pem)
    return str(directory / "admin.crt"), str(directory / "admin.key")


def test_port_zero_finds_a_port_free_on_every_ip() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.5", 0))
    blocker.listen(1)
    try:
        options = ControlPlaneOptions(cluster_name="p", cluster_id="p", listen_ips=["127.0.0.4", "127.0.0.5"])
        with ControlPlane(options) as cp:
            assert cp.port != 0
        taken = ControlPlaneOptions(cluster_name="q", cluster_id="q", listen_ips=["127.0.0.5"],
                                    port=blocker.getsockname()[1])
        with pytest.raises(OSError, match="cannot listen"):
            ControlPlane(taken).start()
    finally:
        blocker.close()


def test_stopped_control_plane_starts_again_with_its_objects(tmp_path: Path) -> None:
    cp = ControlPlane(ControlPlaneOptions(cluster_name="again", cluster_id="again", host_name=HOST))
    cp.start()
    kubeconfig = kubeconfig_for(cp, "127.0.0.1", tmp_path / "k")
    assert run_kubectl(kubeconfig, "create", "ns", "kept").rc == 0
    cp.stop()
    cp.start()
    try:
        assert run_kubectl(kubeconfig, "get", "ns", "kept", "-o", "name").stdout.strip() == "namespace/kept"
        assert cp.signer.stopped is False
    finally:
        cp.stop()
