"""The Lab: Region (moto), service link, and one emulated EKS control plane per cluster, on loopback.

Outpost side vs Region side: ``region_url`` is moto directly (Region-side code, test setup);
``outpost_region_url`` is moto through the service link (the agent, IAM kubeconfigs, and the local
control planes' STS verification). Cutting the link (``lab.link.cut()``) cuts only the latter, and the Region's
``AWS/Outposts`` ``ConnectedStatus`` of the lab's Outposts follows it (``lab.outposts``).
"""

from __future__ import annotations

import base64
import contextlib
import shlex
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.client
from lifeline_agent.kubeconfig import ExecPlugin, atomic_write, build_kubeconfig, dump_kubeconfig

from lab.link import ServiceLink
from lab.region import REGION_NAME, ProvisionRequest, Region, outposts
from lambdas.constants import ENV_TOKEN_STS_ENDPOINT_URL

DEFAULT_OUTPOST_ARN = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"
CLUSTER_ROLE_ARN = "arn:aws:iam::123456789012:role/lab-eks-cluster-role"
REGION_ROUTE = "region"
ONE_YEAR_SECONDS = 365 * 24 * 3600
CREATE_CLUSTER_TIMEOUT = 180.0  # seconds: see _create_cluster


def _stop_quietly(control_plane: Any) -> None:
    with contextlib.suppress(Exception):
        control_plane.stop()


class LabError(RuntimeError):
    """The lab cannot do what was asked (not started, unknown cluster, cluster never became ACTIVE...)."""


@dataclass(frozen=True)
class Principal:
    """An IAM identity made in the lab's Region, with its access key."""

    name: str
    arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def boto3_session(self, region: str = REGION_NAME) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=region,
        )


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    arn: str
    id: str
    kind: str  # "local" (control plane on the Outpost) or "extended" (control plane in the Region)
    endpoint: str
    ca_pem: bytes
    status: str
    outpost_arns: tuple[str, ...]
    kubernetes_version: str
    platform_version: str

    @property
    def certificate_authority_data(self) -> str:
        return base64.b64encode(self.ca_pem).decode("ascii")


def _venv_script(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} is not installed next to {sys.executable} nor on PATH")
    return found


CONTROL_PLANE_BACKENDS = ("emulated", "real")


class Lab:
    def __init__(
        self,
        state_dir: Path,
        *,
        activation_delay: float = 0.0,
        signing_duration_seconds: int = ONE_YEAR_SECONDS,
        min_expiration_seconds: int = 600,
        sts_timeout: float = 3.0,
        control_plane: str = "emulated",
    ) -> None:
        self.control_plane_backend = "emulated"
        self.use_control_plane(control_plane)
        self.state_dir = Path(state_dir)
        self.activation_delay = activation_delay
        self.signing_duration_seconds = signing_duration_seconds
        self.min_expiration_seconds = min_expiration_seconds
        self.sts_timeout = sts_timeout
        self.region = Region(
            provisioner=self._provision, deprovisioner=self._deprovision, activation_delay=activation_delay,
            lambda_dir=self.state_dir / "lambda",
        )
        from lambdas.watch_readiness.logic import outpost_id

        self.link = ServiceLink()
        self.outposts = outposts.OutpostsService(self.link.history, [outpost_id(DEFAULT_OUTPOST_ARN)])
        self.outpost_region_url = ""
        self.creator: Principal | None = None  # set by start()
        self.agent_principal: Principal | None = None
        self._control_planes: dict[str, Any] = {}
        self._clients: dict[tuple[str, str, str, float], Any] = {}
        self._lock = threading.Lock()
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Lab:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.region.start()
        try:
            port = self.link.add_route(REGION_ROUTE, self.region.host, self.region.port)
            self.outpost_region_url = f"http://127.0.0.1:{port}"
            # The lab's control planes verify tokens with the Outpost-side STS address (the service link), so
            # the functions sign tokens for it; in AWS both sides use the Region's STS endpoint.
            self.region.set_lambda_environment(ENV_TOKEN_STS_ENDPOINT_URL, self.outpost_region_url)
            self.creator = self._make_user("lab-cluster-creator")
            self.agent_principal = self._make_user("lifeline-agent")
            outposts.publish(self.outposts, self.region.account_id, self.region.name)
            self._started = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        with self._lock:
            control_planes = list(self._control_planes.values())
            self._control_planes.clear()
        if control_planes:  # each waits out its own threads' polls: all at once, not one after the other
            with ThreadPoolExecutor(min(32, len(control_planes)), thread_name_prefix="lab-stop") as pool:
                list(pool.map(_stop_quietly, control_planes))
        self.link.stop()
        outposts.withdraw(self.region.account_id, self.region.name)
        self.region.stop()
        self._clients.clear()
        self._started = False

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def use_control_plane(self, backend: str) -> str:
        """Clusters created from now on get ``backend``'s control plane; returns the previous backend.
        ``real`` raises :class:`RealControlPlaneUnavailable` (what is missing) when it cannot run here."""
        if backend not in CONTROL_PLANE_BACKENDS:
            raise LabError(f"control plane {backend!r}: choose one of {', '.join(CONTROL_PLANE_BACKENDS)}")
        if backend == "real":
            from lab.controlplane.real import find_binaries

            find_binaries()
        previous, self.control_plane_backend = self.control_plane_backend, backend
        return previous

    @property
    def region_url(self) -> str:
        return self.region.url

    def _require_started(self) -> None:
        if not self._started:
            raise LabError("the lab is not started")

    # --- AWS clients ---------------------------------------------------------------------------------

    def _make_user(self, name: str) -> Principal:
        iam = boto3.client(
            "iam",
            endpoint_url=self.region_url,
            region_name=REGION_NAME,
            aws_access_key_id="lab-bootstrap",
            aws_secret_access_key="lab-bootstrap",  # noqa: S106 - moto accepts any key for IAM
        )
        user = iam.create_user(UserName=name)["User"]
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Principal(name, user["Arn"], key["AccessKeyId"], key["SecretAccessKey"])

    def boto3_session(self, principal: Principal | None = None) -> boto3.Session:
        principal = principal or self.creator
        if principal is None:
            raise LabError("the lab is not started")
        return principal.boto3_session()

    def client(
        self, service: str, *, side: str = "region", principal: Principal | None = None, timeout: float = 10.0
    ) -> Any:
        """A boto3 client for the lab's Region, reached directly (``side="region"``) or through the link."""
        if side not in ("region", "outpost"):
            raise LabError(f"side must be 'region' or 'outpost', not {side!r}")
        principal = principal or self.creator
        if principal is None:
            raise LabError("the lab is not started")
        key = (service, side, principal.access_key_id, timeout)
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None:
            return cached
        endpoint = self.region_url if side == "region" else self.outpost_region_url
        config = botocore.client.Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2})
        made = principal.boto3_session().client(service, endpoint_url=endpoint, config=config)
        with self._lock:
            return self._clients.setdefault(key, made)

    def enable_cloudtrail(self, trail_name: str = "lab-management-events") -> str:
        """A logging multi-Region trail, so EKS API calls reach EventBridge as CloudTrail events."""
        self._require_started()
        bucket = f"{trail_name}-{self.region.account_id}"
        s3 = self.client("s3")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION_NAME})
        cloudtrail = self.client("cloudtrail")
        try:
            arn = cloudtrail.create_trail(Name=trail_name, S3BucketName=bucket, IsMultiRegionTrail=True)["TrailARN"]
        except cloudtrail.exceptions.TrailAlreadyExistsException:
            arn = cloudtrail.get_trail(Name=trail_name)["Trail"]["TrailARN"]
        cloudtrail.start_logging(Name=trail_name)
        return str(arn)

    # --- clusters ------------------------------------------------------------------------------------

    def _provision(self, name: str, request: ProvisionRequest) -> tuple[str, bytes]:
        """Called by the patched EKS CreateCluster: start the cluster's control plane."""
        from lab.controlplane import ControlPlane, ControlPlaneOptions
        from lambdas.watch_readiness.logic import outpost_id

        # A local cluster's API server is on the Outpost and reaches STS through the link; an extended
        # cluster's is in the Region (direct STS) and the Outpost reaches it through the link.
        sts_url = self.outpost_region_url if request.is_local else self.region_url
        for arn in (request.outpost_config or {}).get("outpostArns", []):
            self.outposts.add_outpost(outpost_id(arn))
        options = ControlPlaneOptions(
            cluster_name=name,
            cluster_id=request.cluster_id,
            kind="local" if request.is_local else "extended",
            kubernetes_version=request.kubernetes_version,
            sts_url=sts_url,
            sts_allowed_hosts=(urlsplit(sts_url).netloc,),
            sts_timeout=self.sts_timeout,
            creator_arn=request.creator_arn,
            signing_duration_seconds=self.signing_duration_seconds,
            min_expiration_seconds=self.min_expiration_seconds,
        )
        if self.control_plane_backend == "real":
            from lab.controlplane.real import RealControlPlane

            control_plane: Any = RealControlPlane(options)
        else:
            control_plane = ControlPlane(options)
        control_plane.start()
        try:
            endpoint = control_plane.endpoint
            if not request.is_local:
                port = self.link.add_route(f"cluster-{name}", "127.0.0.1", control_plane.port)
                endpoint = f"https://localhost:{port}"
        except BaseException:
            control_plane.stop()
            raise
        with self._lock:
            self._control_planes[name] = control_plane
        ca_pem = control_plane.ca_pem
        return endpoint, ca_pem if isinstance(ca_pem, bytes) else ca_pem.encode("ascii")

    def _deprovision(self, name: str) -> None:
        """Called by the patched EKS DeleteCluster: stop the cluster's control plane and its link route."""
        with self._lock:
            control_plane = self._control_planes.pop(name, None)
        self.link.remove_route(f"cluster-{name}")
        if control_plane is not None:
            control_plane.stop()

    def create_local_cluster(
        self,
        name: str,
        *,
        outposts_arn: str = DEFAULT_OUTPOST_ARN,
        instance_type: str = "m5d.large",
        kubernetes_version: str = "1.31",
        wait_active: bool = True,
        activation_delay: float | None = None,
    ) -> ClusterInfo:
        """EKS CreateCluster with ``outpostConfig``, as the lab's creator principal."""
        outpost_config = {"outpostArns": [outposts_arn], "controlPlaneInstanceType": instance_type}
        return self._create_cluster(name, outpost_config, kubernetes_version, wait_active, activation_delay)

    def create_extended_cluster(
        self, name: str, *, kubernetes_version: str = "1.31", wait_active: bool = True
    ) -> ClusterInfo:
        """EKS CreateCluster without ``outpostConfig``: control plane in the Region, behind the link."""
        return self._create_cluster(name, None, kubernetes_version, wait_active, None)

    def _create_cluster(
        self,
        name: str,
        outpost_config: dict[str, Any] | None,
        kubernetes_version: str,
        wait_active: bool,
        activation_delay: float | None,
    ) -> ClusterInfo:
        self._require_started()
        request: dict[str, Any] = {
            "name": name,
            "version": kubernetes_version,
            "roleArn": CLUSTER_ROLE_ARN,
            "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "endpointPrivateAccess": True},
        }
        if outpost_config is not None:
            request["outpostConfig"] = outpost_config
        if activation_delay is not None:
            request["tags"] = {"lab:activation-delay": str(activation_delay)}
        # The control plane starts inside CreateCluster (a real one: etcd, kube-apiserver, kube-controller-
        # manager, ~10 s on a busy machine): a short read timeout would make botocore send it again, and the
        # retry fails "Cluster already exists" although the first call worked.
        self.client("eks", timeout=CREATE_CLUSTER_TIMEOUT).create_cluster(**request)
        if wait_active:
            return self.wait_active(name)
        return self.describe_cluster(name)

    def wait_active(self, name: str, timeout: float | None = None) -> ClusterInfo:
        deadline = time.monotonic() + (timeout if timeout is not None else self.activation_delay + 30)
        while True:
            info = self.describe_cluster(name)
            if info.status == "ACTIVE":
                return info
            if time.monotonic() > deadline:
                raise LabError(f"cluster {name} is still {info.status} after the wait")
            time.sleep(0.1)

    def describe_cluster(self, name: str) -> ClusterInfo:
        cluster = self.client("eks").describe_cluster(name=name)["cluster"]
        outpost = cluster.get("outpostConfig") or {}
        ca_data = (cluster.get("certificateAuthority") or {}).get("data")
        return ClusterInfo(
            name=cluster["name"],
            arn=cluster["arn"],
            id=cluster.get("id", ""),
            kind="local" if outpost else "extended",
            endpoint=cluster.get("endpoint") or "",
            ca_pem=base64.b64decode(ca_data) if ca_data else b"",
            status=cluster["status"],
            outpost_arns=tuple(outpost.get("outpostArns", ())),
            kubernetes_version=cluster.get("version", ""),
            platform_version=cluster.get("platformVersion", ""),
        )

    def control_plane(self, name: str) -> Any:
        with self._lock:
            if name not in self._control_planes:
                raise LabError(f"no control plane for cluster {name!r}")
            return self._control_planes[name]

    def cluster_names(self) -> list[str]:
        with self._lock:
            return sorted(self._control_planes)

    # --- kubeconfigs ---------------------------------------------------------------------------------

    def _kubeconfig_path(self, name: str, flavour: str) -> Path:
        directory = self.state_dir / "kubeconfigs"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory / f"{name}-{flavour}.yaml"

    def _server_for(self, name: str) -> tuple[str, bytes]:
        info = self.describe_cluster(name)
        if info.status != "ACTIVE":
            raise LabError(f"cluster {name} is {info.status}; its endpoint is not published yet")
        return info.endpoint, info.ca_pem

    def admin_kubeconfig(self, name: str, path: Path | None = None) -> Path:
        """X.509 kubeconfig for CN=lab:admin, O=system:masters (the lab operator, not Lifeline)."""
        server, ca_pem = self._server_for(name)
        cert_pem, key_pem = self.control_plane(name).admin_credentials()
        config = build_kubeconfig(
            cluster_name=name,
            server=server,
            ca_pem=ca_pem,
            user_name="lab-admin",
            client_cert_pem=_as_bytes(cert_pem),
            client_key_pem=_as_bytes(key_pem),
        )
        target = path or self._kubeconfig_path(name, "admin")
        atomic_write(target, dump_kubeconfig(config))
        return target

    def iam_kubeconfig(
        self,
        name: str,
        *,
        principal: Principal | None = None,
        path: Path | None = None,
        token_cluster_id: str | None = None,
    ) -> Path:
        """IAM kubeconfig: exec plugin ``lifeline-agent get-token`` (as ``aws eks get-token``), principal's keys."""
        principal = principal or self.creator
        if principal is None:
            raise LabError("the lab is not started")
        server, ca_pem = self._server_for(name)
        info = self.describe_cluster(name)
        # Outpost-side users reach STS through the link; the token is signed for the host the API server calls.
        sts_url = self.outpost_region_url if info.kind == "local" else self.region_url
        env = {
            "AWS_ENDPOINT_URL": sts_url,
            "AWS_ACCESS_KEY_ID": principal.access_key_id,
            "AWS_SECRET_ACCESS_KEY": principal.secret_access_key,
            "AWS_REGION": REGION_NAME,
            "AWS_DEFAULT_REGION": REGION_NAME,
        }
        if principal.session_token:
            env["AWS_SESSION_TOKEN"] = principal.session_token
        plugin = ExecPlugin(
            command=_venv_script("lifeline-agent"),
            args=("get-token", "--cluster", token_cluster_id or name, "--region", REGION_NAME),
            env=env,
        )
        config = build_kubeconfig(
            cluster_name=name, server=server, ca_pem=ca_pem, user_name=f"iam-{principal.name}", exec_plugin=plugin
        )
        target = path or self._kubeconfig_path(name, f"iam-{principal.name}")
        atomic_write(target, dump_kubeconfig(config))
        return target

    # --- environment ---------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Region-side shell environment: the creator's credentials and the lab's addresses."""
        self._require_started()
        assert self.creator is not None and self.agent_principal is not None
        return {
            "AWS_ENDPOINT_URL": self.region_url,
            "AWS_ACCESS_KEY_ID": self.creator.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.creator.secret_access_key,
            "AWS_REGION": REGION_NAME,
            "AWS_DEFAULT_REGION": REGION_NAME,
            "LAB_STATE_DIR": str(self.state_dir),
            "LAB_REGION_URL": self.region_url,
            "LAB_OUTPOST_REGION_URL": self.outpost_region_url,
            "LAB_CREATOR_ARN": self.creator.arn,
            "LAB_AGENT_ARN": self.agent_principal.arn,
            "LAB_AGENT_ACCESS_KEY_ID": self.agent_principal.access_key_id,
            "LAB_AGENT_SECRET_ACCESS_KEY": self.agent_principal.secret_access_key,
        }

    def write_env_file(self, extra: dict[str, str] | None = None, path: Path | None = None) -> Path:
        """``<state_dir>/env``: shell-sourceable ``export NAME=value`` lines (mode 0600: it holds keys)."""
        values = {**self.env(), **(extra or {})}
        text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())
        target = path or self.state_dir / "env"
        atomic_write(target, text.encode("utf-8"))
        return target

    # --- what the Region workflow would do ---------------------------------------------------------

    def seed_cluster_for_agent(self, name: str, *, breakglass_group: str | None = None) -> Any:
        """Write ``lifeline/<name>`` and apply the contract's RBAC + aws-auth for the agent principal."""
        from lifeline_agent import rbac
        from lifeline_agent.contract import DEFAULT_BREAKGLASS_GROUP, ClusterSecret

        self._require_started()
        assert self.agent_principal is not None
        info = self.describe_cluster(name)
        if info.status != "ACTIVE":
            raise LabError(f"cluster {name} is {info.status}, not ACTIVE")
        group = breakglass_group or DEFAULT_BREAKGLASS_GROUP
        secret = ClusterSecret(
            cluster_name=info.name,
            cluster_arn=info.arn,
            cluster_id=info.id or None,
            endpoint=info.endpoint,
            certificate_authority_data=info.certificate_authority_data,
            kubernetes_version=info.kubernetes_version,
            platform_version=info.platform_version,
            outpost_arns=info.outpost_arns,
            breakglass_group=group,
        )
        secrets = self.client("secretsmanager")
        try:
            secrets.create_secret(Name=secret.secret_name, SecretString=secret.to_json())
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=secret.secret_name, SecretString=secret.to_json())
        with self.kube_session(name) as session:
            rbac.apply_objects(session, rbac.lifeline_objects(group))
            rbac.apply_aws_auth(session, [self.agent_principal.arn])
        return secret

    @contextlib.contextmanager
    def kube_session(self, name: str) -> Any:
        """A ``lifeline_agent.kube.KubeSession`` authenticated as the lab admin (X.509)."""
        from lifeline_agent import kube

        server, ca_pem = self._server_for(name)
        cert_pem, key_pem = self.control_plane(name).admin_credentials()
        credential = kube.Credential(cert_pem=_as_bytes(cert_pem), key_pem=_as_bytes(key_pem))
        with kube.KubeSession(kube.Target(server=server, ca_pem=_as_bytes(ca_pem)), credential) as session:
            yield session

    @contextlib.contextmanager
    def kubernetes_api_client(self, name: str) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the lab admin (X.509)."""
        from kubernetes import client

        server, ca_pem = self._server_for(name)
        cert_pem, key_pem = self.control_plane(name).admin_credentials()
        with tempfile.TemporaryDirectory(prefix="lab-admin-", dir=self.state_dir) as tmp:
            files = {"ca.crt": ca_pem, "admin.crt": _as_bytes(cert_pem), "admin.key": _as_bytes(key_pem)}
            for file_name, data in files.items():
                atomic_write(Path(tmp) / file_name, data)
            configuration = client.Configuration()
            configuration.host = server
            configuration.ssl_ca_cert = str(Path(tmp) / "ca.crt")
            configuration.cert_file = str(Path(tmp) / "admin.crt")
            configuration.key_file = str(Path(tmp) / "admin.key")
            with client.ApiClient(configuration) as api_client:
                yield api_client


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("ascii")
