"""The lab's own speed: the signer's delay on both backends, and the emulated API server's TCP_NODELAY.

``python -m bench.lab_speed [--quick|--smoke]`` writes ``bench/results/lab_speed.json``.

Signer delay: from the answer to the approval PUT to the certificate in the CSR's status. For each round a
new ECDSA P-256 CSR for ``kubernetes.io/kube-apiserver-client`` is POSTed as the lab admin, a watch on that CSR
is opened, the approval is PUT, and the delay runs from the PUT's answer to the first watch event that carries
``status.certificate`` (no polling interval in the figure). Rounds alternate between the backends: ``real``
(kube-controller-manager v1.28.7's csrsigning controller, via :mod:`lab.controlplane.real`) and ``emulated``
(:mod:`lab.controlplane.signer`, whose ``SIGNING_DELAY`` is set from the real figure).

Request latency: one GET as the lab admin on a new TLS connection to the emulated API server, and the TLS
handshake alone, with ``lab.controlplane.listener.TCP_NODELAY`` on and off in alternating blocks on one server:
the ratio is the cost of Nagle's algorithm the lab no longer adds. In the same rotation, GETs one after the
other on one ``http.client`` connection (TCP_NODELAY on), which reconnects whenever the server closed the
connection: the connections it opened per GET say whether the server kept the connection alive (0) or
closed it after each answer (1), and the ratio to a GET on a new connection is what keep-alive saves a client.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.common import run_and_write, spread

ROUNDS = {"full": 60, "quick": 15, "smoke": 4}
LATENCY_BLOCKS = {"full": 20, "quick": 6, "smoke": 2}
LATENCY_BLOCK = 10
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SIGNER = "kubernetes.io/kube-apiserver-client"
TIMEOUT = 30.0


class _Admin:
    """HTTPS as ``lab:admin`` to one control plane: one connection for requests, one per watch."""

    def __init__(self, cp: Any, directory: Path) -> None:
        cert, key = cp.admin_credentials()
        (directory / "admin.crt").write_bytes(cert)
        (directory / "admin.key").touch(mode=0o600)
        (directory / "admin.key").write_bytes(key)
        self.context = ssl.create_default_context(cadata=cp.ca_pem.decode("ascii"))
        self.context.load_cert_chain(directory / "admin.crt", directory / "admin.key")
        self.host, self.port = cp.options.listen_ips[0], cp.port

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=TIMEOUT)

    def request(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        connection = self.connect()
        try:
            connection.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
        finally:
            connection.close()
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {response.status} {answer.get('message')}")
        return dict(answer)


def _csr_pem(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def measure_once(admin: _Admin) -> float:
    """Seconds from the approval PUT's answer to the first watch event with the certificate."""
    name = f"delay-{uuid.uuid4().hex[:8]}"
    created = admin.request("POST", CSR_PATH, {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(_csr_pem(name)).decode(), "signerName": SIGNER,
                 "usages": ["client auth"], "expirationSeconds": 3600}})  # fmt: skip
    # The watch starts at the CSR's creation revision, so it sees the signer's update whenever it is read; its
    # answer is awaited only after the PUT (the emulated server sends its headers with the first event).
    watch = admin.connect()
    try:
        watch.request("GET", f"{CSR_PATH}?watch=true&fieldSelector=metadata.name%3D{name}"
                             f"&resourceVersion={created['metadata']['resourceVersion']}")  # fmt: skip
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        created["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Bench",
                                             "message": "signer delay", "lastUpdateTime": now}]}  # fmt: skip
        admin.request("PUT", f"{CSR_PATH}/{name}/approval", created)
        approved = time.perf_counter()
        stream = watch.getresponse()
        if stream.status != 200:
            raise RuntimeError(f"watch {name}: {stream.status}")
        while True:
            line = stream.readline()
            if not line:
                raise RuntimeError(f"watch {name} ended before the certificate")
            event = json.loads(line)
            if (event.get("object", {}).get("status") or {}).get("certificate"):
                return time.perf_counter() - approved
    finally:
        watch.close()


def _timed_get(admin: _Admin) -> float:
    connection = admin.connect()
    try:
        started = time.perf_counter()
        connection.request("GET", "/api/v1/namespaces/default/services/kubernetes")
        connection.getresponse().read()
        return time.perf_counter() - started
    finally:
        connection.close()


class _CountingConnection(http.client.HTTPSConnection):
    """An ``http.client`` connection that counts the TLS connections it opens (it reconnects when the server closed)."""

    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


def _timed_kept_alive_gets(admin: _Admin, count: int) -> tuple[list[float], int]:
    """``count`` GETs one after the other on one client after an untimed first one; the connections opened for them."""
    connection = _CountingConnection(admin.host, admin.port, context=admin.context, timeout=TIMEOUT)
    times = []
    try:
        for number in range(count + 1):
            started = time.perf_counter()
            connection.request("GET", "/api/v1/namespaces/default/services/kubernetes")
            connection.getresponse().read()
            if number:
                times.append(time.perf_counter() - started)
            else:
                connection.opened = 0
        return times, connection.opened
    finally:
        connection.close()


def _timed_handshake(admin: _Admin) -> float:
    started = time.perf_counter()
    with socket.create_connection((admin.host, admin.port), timeout=TIMEOUT) as raw, \
            admin.context.wrap_socket(raw, server_hostname="localhost"):  # fmt: skip
        return time.perf_counter() - started


def request_latency(admin: _Admin, blocks: int) -> dict[str, Any]:
    """GET on a new connection and the TLS handshake alone, Nagle on vs off, and GETs on one client; alternating."""
    from lab.controlplane import listener

    samples: dict[str, list[float]] = {}
    opened = 0
    try:
        for _ in range(blocks):
            for label, no_delay in (("nagle", False), ("nodelay", True)):
                listener.TCP_NODELAY = no_delay
                for _ in range(LATENCY_BLOCK):
                    samples.setdefault(f"get_{label}", []).append(_timed_get(admin))
                    samples.setdefault(f"handshake_{label}", []).append(_timed_handshake(admin))
            times, connections = _timed_kept_alive_gets(admin, LATENCY_BLOCK)
            samples.setdefault("get_kept_alive", []).extend(times)
            opened += connections
    finally:
        listener.TCP_NODELAY = True
    figures = {name: spread(values) for name, values in samples.items()}
    median = {name: float(values["median"]) for name, values in figures.items()}
    return {"seconds": figures, "get_nagle_over_nodelay_median": round(median["get_nagle"] / median["get_nodelay"], 2),
            "get_new_connection_over_kept_alive_median": round(median["get_nodelay"] / median["get_kept_alive"], 2),
            "connections_opened_per_kept_alive_get": round(opened / len(samples["get_kept_alive"]), 3)}  # fmt: skip


def run(variant: str) -> dict[str, Any]:
    from lab.controlplane import ControlPlane, ControlPlaneOptions
    from lab.controlplane.real import KUBE_VERSION, RealControlPlane, unavailable_reason
    from lab.controlplane.signer import SIGNING_DELAY

    reason = unavailable_reason()
    if reason is not None:
        return {"skipped": reason, "failures": [f"real backend unavailable: {reason}"]}

    def options() -> ControlPlaneOptions:
        return ControlPlaneOptions(cluster_name="signer-delay", cluster_id=str(uuid.uuid4()))

    samples: dict[str, list[float]] = {"real": [], "emulated": []}
    with tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp, RealControlPlane(options()) as real, \
            ControlPlane(options()) as emulated:  # fmt: skip
        admins = {}
        for label, cp in (("real", real), ("emulated", emulated)):
            (Path(tmp) / label).mkdir()
            admins[label] = _Admin(cp, Path(tmp) / label)
            measure_once(admins[label])  # warm-up: informers synced, connections and caches made
        for _ in range(ROUNDS[variant]):
            for label, admin in admins.items():
                samples[label].append(measure_once(admin))
        latency = request_latency(admins["emulated"], LATENCY_BLOCKS[variant])
    real_spread, emulated_spread = spread(samples["real"]), spread(samples["emulated"])
    signer = {
        "what": "approval PUT answered -> first watch event with status.certificate (ECDSA P-256 CSR, "
                "kube-apiserver-client signer); rounds alternate between the backends",
        "real_controller": f"kube-controller-manager {KUBE_VERSION} csrsigning (lab.controlplane.real)",
        "emulated_signing_delay_seconds": SIGNING_DELAY,
        "seconds": {"real": real_spread, "emulated": emulated_spread},
        "emulated_over_real_median": round(float(emulated_spread["median"]) / float(real_spread["median"]), 2),
    }  # fmt: skip
    latency["what"] = ("emulated API server: GET /api/v1/namespaces/default/services/kubernetes on a new TLS "
                       "connection, and the handshake alone, TCP_NODELAY off vs on; GETs one after the other on "
                       "one http.client connection (reconnecting if the server closed it); alternating blocks")
    print(f"signer delay: real median {1000 * float(real_spread['median']):.1f} ms, emulated "
          f"{1000 * float(emulated_spread['median']):.1f} ms; GET with Nagle / without: "
          f"{latency['get_nagle_over_nodelay_median']}x; new connection / kept alive: "
          f"{latency['get_new_connection_over_kept_alive_median']}x, connections opened per kept-alive GET "
          f"{latency['connections_opened_per_kept_alive_get']}", flush=True)  # fmt: skip
    return {"signer_delay": signer, "request_latency": latency}


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """SUMMARY.md rows: the signer's delay on each backend; the emulated API server's request latency."""
    signer, latency = result.get("signer_delay"), result.get("request_latency")
    if signer is None or latency is None:
        return [("Lab speed: signer delay, request latency", "real", "not run", str(result.get("skipped")))]
    rows = []
    for backend in ("real", "emulated"):
        figures = signer["seconds"][backend]
        rows.append((f"Signer delay: approval PUT answered to certificate in a watch event (median of {figures['n']})",
                     "real (v1.28.7)" if backend == "real" else backend, f"{1000 * figures['median']:.1f} ms",
                     f"p10-p90 {1000 * figures['p10']:.1f}-{1000 * figures['p90']:.1f} ms; emulated / real "
                     f"{signer['emulated_over_real_median']}x; emulated SIGNING_DELAY "
                     f"{1000 * signer['emulated_signing_delay_seconds']:g} ms"))  # fmt: skip
    seconds = latency["seconds"]
    rows.append((f"Lab API server: GET on a new TLS connection, Nagle on vs TCP_NODELAY (median of "
                 f"{seconds['get_nodelay']['n']} each)", "emulated",
                 f"{1000 * seconds['get_nagle']['median']:.1f} ms vs {1000 * seconds['get_nodelay']['median']:.1f} ms: "
                 f"**{latency['get_nagle_over_nodelay_median']}x**",
                 f"TLS handshake alone {1000 * seconds['handshake_nagle']['median']:.1f} ms vs "
                 f"{1000 * seconds['handshake_nodelay']['median']:.1f} ms; alternating blocks"))  # fmt: skip
    if "get_kept_alive" in seconds:
        kept = seconds["get_kept_alive"]
        rows.append((f"Lab API server: GET on a kept-alive connection vs on a new one (median of {kept['n']})",
                     "emulated", f"{1000 * kept['median']:.1f} ms vs {1000 * seconds['get_nodelay']['median']:.1f} ms: "
                     f"**{latency['get_new_connection_over_kept_alive_median']}x**",
                     f"connections opened per kept-alive GET: {latency['connections_opened_per_kept_alive_get']:g} "
                     "(0: the server keeps connections alive, as kube-apiserver does); TCP_NODELAY on"))  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    variant = "smoke" if "--smoke" in argv else "quick" if "--quick" in argv else "full"
    path, result = run_and_write("lab_speed", variant, lambda: run(variant))
    print(f"lab_speed: wrote {path}", flush=True)
    return 1 if result.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
