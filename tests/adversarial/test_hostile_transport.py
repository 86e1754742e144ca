"""The agent's API transport against hostile servers, over real sockets and TLS (issue 9, cases 4 and 5).

A server that drips its answer one byte a second, or drips its TLS handshake, fails the call at the
whole-request deadline with :class:`kube.Timeout`; a 300 MB answer (with a Content-Length, chunked, or
delimited by the end of the connection) fails with :class:`kube.BodyTooLarge` and the process's peak
memory barely moves. Against the lab, a control plane that starts dripping its answers leaves the
installed kubeconfig byte-identical and the cluster loop moves on to its next step, which recovers.
A server shedding load (429) is :class:`kube.TooManyRequests`, which the RBAC bootstrap retries.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lifeline_agent import kube

from lab.agentkit import agent_credentials, check_kubeconfig, kubectl, seeded_cluster, write_config
from lab.pki import ClusterCA
from lambdas.bootstrap_rbac.logic import bootstrap
from lambdas.config import WorkflowConfig
from lambdas.errors import ClusterUnreachable
from lambdas.models import ClusterView
from tests.adversarial.hostile_server import TOKEN_USER, HostileApiServer

API_TIMEOUT = 2.0
MEMORY_GROWTH_LIMIT_KIB = 64 * 1024
HUGE_BYTES = 300 * 1024 * 1024


def session_to(url: str, ca_pem: bytes, timeout: float = API_TIMEOUT) -> kube.KubeSession:
    return kube.KubeSession(kube.Target(url, ca_pem, None), kube.Credential(token="hostile-test-token"),
                            timeout=timeout)  # fmt: skip


def test_an_honest_server_answers_every_call_of_one_session_over_one_connection(
    hostile: HostileApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifeline_agent import transport

    connects: list[tuple[str, int]] = []
    real_connect = transport.socket.create_connection

    def counted(address: tuple[str, int], *args: Any, **options: Any) -> socket.socket:
        connects.append(address)
        return real_connect(address, *args, **options)

    monkeypatch.setattr(transport.socket, "create_connection", counted)
    with session_to(hostile.url, hostile.ca_pem) as session:
        identity = session.who_am_i()
        allowed = session.can("get", "services", "default", "kubernetes")
        service = session.read_kubernetes_service()
    assert identity is not None and identity.user == TOKEN_USER
    assert allowed and service["metadata"]["name"] == "kubernetes"
    assert [r.headers.get("authorization") for r in hostile.requests] == ["Bearer hostile-test-token"] * 3
    assert connects == [("127.0.0.1", hostile.port)]  # kept alive: one TCP connection and TLS handshake


def test_a_server_certificate_from_another_ca_is_a_tls_error(hostile: HostileApiServer, tmp_path: Path) -> None:
    other_ca = ClusterCA.create(common_name="not-the-cluster-ca", key_type="ec").cert_pem
    with session_to(hostile.url, other_ca) as session, pytest.raises(kube.TlsError, match="not trusted"):
        session.read_kubernetes_service()
    assert hostile.requests == []


def test_a_dripping_answer_fails_at_the_whole_request_deadline(hostile: HostileApiServer, tmp_path: Path) -> None:
    hostile.mode = "slow-drip"
    started = time.monotonic()
    with session_to(hostile.url, hostile.ca_pem) as session, \
            pytest.raises(kube.Timeout, match=f"within {API_TIMEOUT:g} s"):  # fmt: skip
        session.read_kubernetes_service()
    elapsed = time.monotonic() - started
    assert API_TIMEOUT * 0.9 <= elapsed < 2 * API_TIMEOUT, elapsed
    assert [r.path for r in hostile.requests] == ["/api/v1/namespaces/default/services/kubernetes?resourceVersion=0"]
    assert issubclass(kube.Timeout, kube.Unreachable)  # another address of the cluster is tried next


class DrippingHandshake:
    """A TCP server that answers a ClientHello with the start of a TLS record, then one byte every 0.3 s."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(4096)
                connection.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB follows...
                while not self._stop.wait(0.3):
                    try:
                        connection.sendall(b"\x02")
                    except OSError:
                        break

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def test_a_dripping_tls_handshake_fails_at_the_deadline(tmp_path: Path) -> None:
    server = DrippingHandshake()
    ca_pem = ClusterCA.create(key_type="ec").cert_pem
    try:
        started = time.monotonic()
        with session_to(f"https://127.0.0.1:{server.port}", ca_pem) as session, \
                pytest.raises(kube.Timeout):  # fmt: skip
            session.read_kubernetes_service()
        assert time.monotonic() - started < 2 * API_TIMEOUT
    finally:
        server.stop()


class EndlessBody:
    """HTTPS on 127.0.0.1 whose every answer is 300 MB of JSON without a Content-Length, made while sent."""

    def __init__(self, framing: str, directory: Path) -> None:
        self.framing = framing
        self.ca = ClusterCA.create(key_type="ec")
        cert_pem, key_pem = self.ca.issue_serving_cert(["localhost"], ["127.0.0.1"])
        (directory / "tls.crt").write_bytes(cert_pem)
        (directory / "tls.key").write_bytes(key_pem)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                with self._context.wrap_socket(raw, server_side=True) as connection:
                    connection.recv(65536)
                    self._answer(connection)
            except OSError:
                continue  # the client hung up, as it should

    def _answer(self, connection: ssl.SSLSocket) -> None:
        header = "Transfer-Encoding: chunked" if self.framing == "chunked" else "Connection: close"
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{header}\r\n\r\n".encode())
        piece = b'{"items":"' + b"x" * (64 * 1024 - 10)
        while self.sent < HUGE_BYTES and not self._stop.is_set():
            data = b"%x\r\n%s\r\n" % (len(piece), piece) if self.framing == "chunked" else piece
            connection.sendall(data)
            self.sent += len(piece)
            piece = b"x" * (64 * 1024)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()


# Run in a child process so that its peak memory (VmHWM) is the call's alone.
MEASURE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from lifeline_agent import kube

    def peak_kib():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    url, ca_file = sys.argv[1:3]
    target = kube.Target(url, Path(ca_file).read_bytes(), None)
    with kube.KubeSession(target, kube.Credential(token="t"), timeout=30) as session:
        before, started = peak_kib(), time.monotonic()
        try:
            session.read_kubernetes_service()
            error, message = None, ""
        except kube.KubeError as exc:
            error, message = type(exc).__name__, str(exc)
        print(json.dumps({"before": before, "after": peak_kib(), "error": error, "message": message,
                          "elapsed": time.monotonic() - started}))
    """
)


def measured_call(url: str, ca_pem: bytes, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    child = subprocess.run([sys.executable, "-c", MEASURE, url, str(tmp_path / "ca.crt")],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert child.returncode == 0, child.stderr
    return dict(json.loads(child.stdout))


def test_a_300_mb_answer_with_a_length_is_refused_before_it_is_read(hostile: HostileApiServer, tmp_path: Path) -> None:
    hostile.mode = "huge-body"
    result = measured_call(hostile.url, hostile.ca_pem, tmp_path)
    assert result["error"] == "BodyTooLarge", result
    assert "314572800 bytes" in result["message"]
    assert result["after"] - result["before"] < MEMORY_GROWTH_LIMIT_KIB, result


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_a_300_mb_answer_without_a_length_is_cut_at_the_cap(framing: str, tmp_path: Path) -> None:
    server = EndlessBody(framing, tmp_path)
    try:
        result = measured_call(server.url, server.ca.cert_pem, tmp_path)
    finally:
        server.stop()
    assert result["error"] == "BodyTooLarge", result
    assert result["after"] - result["before"] < MEMORY_GROWTH_LIMIT_KIB, result
    assert server.sent < 64 * 1024 * 1024  # it stopped reading near the 4 MiB cap, not at the end


class DripProxy:
    """TCP from ``listen`` to ``upstream``; while :attr:`drip` is set, answers reach the client 4 bytes a second."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.drip = False
        self._listener = socket.create_server(listen)
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(self.upstream, timeout=5)
            for source, sink, dripped in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, dripped), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, dripped: bool) -> None:
        source.settimeout(0.5)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                while data and dripped and self.drip and not self._stop.is_set():
                    sink.sendall(data[:1])
                    data = data[1:]
                    self._stop.wait(0.25)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def test_a_dripping_control_plane_keeps_the_kubeconfig_and_the_loop_moves_on(lab: Any, tmp_path: Path) -> None:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.observability import ClusterState
    from lifeline_agent.reconcile import ClusterAgent

    cluster = seeded_cluster(lab, "drip")
    control_plane = lab.control_plane(cluster)
    control_plane.start_listener("127.0.0.2")
    control_plane.stop_listener("127.0.0.1")  # 127.0.0.1 (where "localhost" resolves) is the dripping proxy now
    proxy = DripProxy(("127.0.0.1", control_plane.port), ("127.0.0.2", control_plane.port))
    try:
        config = load_config(write_config(lab, tmp_path, [cluster], timing={"api_timeout": API_TIMEOUT,
                                                                            "verify_interval": 1}))  # fmt: skip
        with agent_credentials(lab):
            agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
            kubeconfig = config.cluster_dir(cluster) / "kubeconfig"
            agent.step()
            assert agent.state is ClusterState.READY, agent.last_error
            installed = kubeconfig.read_bytes()

            proxy.drip = True
            time.sleep(1.1)  # the installed kubeconfig is due to be proven again
            started = time.monotonic()
            agent.step()
            elapsed = time.monotonic() - started
            assert agent.state is ClusterState.RENEWING, agent.state  # still serving offline, not healthy
            assert "Timeout" in (agent.last_error or ""), agent.last_error
            assert elapsed < 2 * API_TIMEOUT, elapsed
            assert kubeconfig.read_bytes() == installed

            proxy.drip = False
            time.sleep(1.1)
            agent.step()
            assert agent.state is ClusterState.READY, agent.last_error
            assert kubeconfig.read_bytes() == installed
        check_kubeconfig(installed)
        result = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
        assert result.returncode == 0, result.stderr
    finally:
        proxy.stop()
        control_plane.start_listener("127.0.0.1")
        control_plane.stop_listener("127.0.0.2")


def test_a_server_shedding_load_is_too_many_requests_a_server_error(hostile: HostileApiServer) -> None:
    hostile.mode = "throttled"
    with session_to(hostile.url, hostile.ca_pem) as session, pytest.raises(kube.TooManyRequests, match="429"):
        session.read_kubernetes_service()
    assert issubclass(kube.TooManyRequests, kube.ServerError)  # the agent and the workflow retry it like a 5xx


def test_the_rbac_bootstrap_against_a_server_shedding_load_fails_as_retryable(hostile: HostileApiServer) -> None:
    hostile.mode = "throttled"
    cluster = ClusterView(name="edge-1", arn="arn:aws:eks:us-west-2:123456789012:cluster/edge-1", status="ACTIVE",
                          endpoint=hostile.url, certificateAuthorityData=base64.b64encode(hostile.ca_pem).decode(),
                          version="1.31", platformVersion="eks-local-outposts.1", outpostArns=[],
                          authenticationMode="CONFIG_MAP")  # fmt: skip
    with pytest.raises(ClusterUnreachable, match="overloaded or failing: .*429 Too Many Requests"):
        bootstrap(cluster, config=WorkflowConfig(), eks=None, token="hostile-test-token")
    assert hostile.requests and {r.bearer_token for r in hostile.requests} == {"hostile-test-token"}
