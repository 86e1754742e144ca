"""The lab's emulated EKS local control plane: a Kubernetes API server over HTTPS on loopback.

Real kubectl (1.37) and the official ``kubernetes`` client work against it unchanged::

    with ControlPlane(ControlPlaneOptions(cluster_name="demo", cluster_id=str(uuid.uuid4()))) as cp:
        cert_pem, key_pem = cp.admin_credentials()      # CN=lab:admin, O=system:masters
        ...  # a kubeconfig for cp.endpoint with cp.ca_pem

What it does, module by module: ``listener`` (one werkzeug HTTPS listener per control-plane IP),
``app`` (authentication, impersonation, RBAC, dispatch, Status errors), ``authn`` (X.509 and EKS IAM
tokens verified against the Region's STS, aws-auth mapping), ``rbac_eval`` (RBAC rule evaluation),
``handlers`` (create/get/list/update/patch/delete, reviews), ``csr`` (CSR validation and admission),
``signer`` (csrsigning and csrcleaner controllers), ``watch``, ``tables`` (``kubectl get`` columns),
``discovery`` (discovery and OpenAPI v3), ``protobuf`` (typed-client request bodies), ``seed`` (a new
cluster's objects), ``store`` (the thread-safe object store, ``ControlPlane.store``).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lab.pki import ClusterCA

from . import seed
from .app import ApiServerApp
from .authn import IamTokenAuthenticator
from .listener import Listener, bind_same_port
from .signer import Signer
from .store import ObjectStore

__all__ = ["ControlPlane", "ControlPlaneOptions", "ObjectStore"]

ADMIN_LIFETIME = dt.timedelta(days=365)


@dataclass
class ControlPlaneOptions:
    cluster_name: str
    cluster_id: str
    host_name: str = "localhost"
    listen_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 0
    kind: str = "local"
    kubernetes_version: str = "1.31"
    sts_url: str | None = None
    sts_allowed_hosts: tuple[str, ...] = ()
    sts_timeout: float = 3.0
    creator_arn: str | None = None
    signing_duration_seconds: int = 365 * 24 * 3600
    min_expiration_seconds: int = 600
    ca: ClusterCA | None = None


class ControlPlane:
    """One cluster's API server: one HTTPS listener per ``listen_ips`` entry, all on the same port."""

    def __init__(self, options: ControlPlaneOptions) -> None:
        if options.kind not in ("local", "extended"):
            raise ValueError(f"kind must be 'local' or 'extended', not {options.kind!r}")
        if not options.listen_ips:
            raise ValueError("listen_ips must name at least one loopback address")
        self.options = options
        self.ca = options.ca or ClusterCA.create("kubernetes")
        self.ca_pem = self.ca.cert_pem
        self.store = ObjectStore()
        seed.seed(self.store, ca_pem=self.ca_pem, kind=options.kind, kubernetes_version=options.kubernetes_version)
        self.signer = Signer(self.store, self.ca, options.signing_duration_seconds)
        self.port = options.port
        self.app = ApiServerApp(
            store=self.store,
            ca_cert=self.ca.certificate,
            ca_pem=self.ca_pem,
            version_info=seed.version_info(options.kubernetes_version),
            min_expiration_seconds=options.min_expiration_seconds,
            iam=self._iam_authenticator(),
            server_address=lambda: f"{options.listen_ips[0]}:{self.port}",
        )
        self._listeners: dict[str, Listener] = {}
        self._lock = threading.Lock()
        self._serving_dir: tempfile.TemporaryDirectory[str] | None = None
        self._started = False

    def _iam_authenticator(self) -> IamTokenAuthenticator | None:
        opts = self.options
        if opts.sts_url is None:
            return None
        return IamTokenAuthenticator(
            sts_url=opts.sts_url,
            cluster_ids=tuple(dict.fromkeys([opts.cluster_name, opts.cluster_id])),
            allowed_hosts=tuple(opts.sts_allowed_hosts),
            timeout=opts.sts_timeout,
            creator_arn=opts.creator_arn,
            aws_auth=lambda: self.store.find("configmaps", "kube-system", "aws-auth"),
        )

    @property
    def endpoint(self) -> str:
        return f"https://{self.options.host_name}:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            cert_pem, key_pem = self.ca.issue_serving_cert(
                [self.options.host_name, "localhost"], list(self.options.listen_ips)
            )
            self._serving_dir = tempfile.TemporaryDirectory(prefix="lab-apiserver-")
            directory = Path(self._serving_dir.name)
            (directory / "tls.crt").write_bytes(cert_pem)
            key_path = directory / "tls.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key_pem)
            sockets, self.port = bind_same_port(self.options.listen_ips, self.port or self.options.port)
            for ip, sock in sockets.items():
                self._listeners[ip] = Listener(ip, sock, self.app, directory, self.ca_pem)
            for listener in self._listeners.values():
                listener.start()
            if self.signer.stopped:
                self.signer = self.signer.restarted()
            self.app.stopping.clear()
            self.signer.start()
            self._started = True

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self.app.stopping.set()
            for listener in self._listeners.values():
                listener.stop()
            self._listeners.clear()
            self.signer.stop()
            if self._serving_dir is not None:
                self._serving_dir.cleanup()
            self._started = False

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop_listener(self, ip: str) -> None:
        """One control-plane instance dies: its listener closes and its open connections drop."""
        with self._lock:
            listener = self._listeners.pop(ip, None)
        if listener is None:
            raise KeyError(f"no running listener on {ip}")
        listener.stop()

    def start_listener(self, ip: str) -> None:
        """The instance comes back on the same port."""
        if self._serving_dir is None:
            raise RuntimeError("start() the control plane first")
        with self._lock:
            if ip in self._listeners:
                return
            sockets, _ = bind_same_port([ip], self.port)
            listener = Listener(ip, sockets[ip], self.app, Path(self._serving_dir.name), self.ca_pem)
            self._listeners[ip] = listener
        listener.start()

    # --- lab controls ---------------------------------------------------------------------------------
    def admin_credentials(self) -> tuple[bytes, bytes]:
        """A ``CN=lab:admin, O=system:masters`` client certificate and key from the cluster CA."""
        return self.ca.issue_client_cert("lab:admin", ["system:masters"], ADMIN_LIFETIME)

    def set_signing_duration(self, seconds: int) -> None:
        self.signer.signing_duration_seconds = seconds

    def set_clock_offset(self, seconds: float) -> None:
        self.signer.clock_offset = seconds

    def fail_next(self, path_regex: str, status: int = 500, count: int = 1) -> None:
        """The next ``count`` requests whose path matches ``path_regex`` get a ``status`` Status error."""
        self.app.fail_next(path_regex, status, count)
