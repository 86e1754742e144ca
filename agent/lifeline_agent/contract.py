"""The contract between the Region workflow and the agent: the secret ``lifeline/<cluster-name>``.

JSON, ``schemaVersion: 1``. Adding fields is compatible (unknown fields are kept and ignored);
removing or renaming one bumps ``schemaVersion``. The Region writes it with :meth:`ClusterSecret.to_json`,
the agent reads it with :meth:`ClusterSecret.from_json`; both sides validate with the same code.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

SCHEMA_VERSION = 1
SECRET_PREFIX = "lifeline/"
DEFAULT_BREAKGLASS_GROUP = "lifeline:breakglass"
AGENTS_GROUP = "lifeline:agents"
# Personal kubeconfigs (`lifeline-agent grant`): CN=lifeline-user:<name>, O=<operators group>.
DEFAULT_OPERATORS_GROUP = "lifeline:operators"
PERSONAL_USER_PREFIX = "lifeline-user:"
MAX_SECRET_BYTES = 64 * 1024
# The agents' readiness metrics (lifeline_agent.readiness) and the workflow's per-cluster alarm on them.
READINESS_NAMESPACE = "Lifeline"
READY_METRIC = "OfflineAccessReady"
SECONDS_LEFT_METRIC = "OfflineAccessSecondsLeft"
CLUSTER_DIMENSION = "ClusterName"
READINESS_ALARM_PREFIX = "lifeline-readiness-"

# EKS: 1-100 characters, starts with a letter or digit, then letters, digits, hyphens, underscores.
CLUSTER_NAME_PATTERN = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
OUTPOST_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:outposts:[a-z0-9-]+:\d{12}:outpost/op-[0-9a-f]{17}$")
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,62}$")


class ContractError(ValueError):
    """The secret does not follow the Region/agent contract; the message names the field."""


def validate_cluster_name(name: object) -> str:
    if not isinstance(name, str) or not CLUSTER_NAME_PATTERN.fullmatch(name):
        raise ContractError(
            f"clusterName: {name!r} is not a valid EKS cluster name "
            "(1-100 letters, digits, '-' or '_', starting with a letter or digit)"
        )
    return name


def secret_name(cluster_name: str) -> str:
    return SECRET_PREFIX + validate_cluster_name(cluster_name)


def ca_sha256(certificate_authority_data: str) -> str:
    """Hex SHA-256 of the CA PEM bytes (the base64-decoded ``certificateAuthorityData``)."""
    return hashlib.sha256(decode_ca(certificate_authority_data)).hexdigest()


def decode_ca(certificate_authority_data: str) -> bytes:
    """The CA PEM from EKS's ``certificateAuthority.data`` (base64 of the PEM).

    Exactly one parseable certificate with ``BasicConstraints CA:TRUE``: kubectl trusts every
    certificate of the field, so a second one would let its holder impersonate the API server.
    """
    try:
        pem = base64.b64decode(certificate_authority_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError("certificateAuthorityData: not base64") from exc
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ContractError("certificateAuthorityData: not a PEM certificate") from exc
    if len(certificates) != 1 or pem.count(b"-----BEGIN") != 1:
        raise ContractError(f"certificateAuthorityData: {pem.count(b'-----BEGIN')} PEM blocks; "
                            "expected exactly one certificate (the cluster CA)")  # fmt: skip
    try:
        constraints = certificates[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ContractError("certificateAuthorityData: the certificate has no BasicConstraints; "
                            "it is not a CA") from None  # fmt: skip
    except ValueError as exc:
        raise ContractError(f"certificateAuthorityData: unreadable extensions ({exc})") from None
    if not constraints.ca:
        raise ContractError("certificateAuthorityData: the certificate is not a CA (BasicConstraints CA:FALSE)")
    return pem


def _require(data: dict[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ContractError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and not value and not optional:
        raise ContractError(f"{key}: must not be empty")
    return value


def validate_endpoint(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise ContractError(f"endpoint: {endpoint!r} is not a URL ({exc})") from None
    if "@" in parts.netloc:
        raise ContractError(f"endpoint: {endpoint!r} carries user information (user:password@); not allowed")
    if "?" in endpoint or "#" in endpoint:
        raise ContractError(f"endpoint: {endpoint!r} has a query or fragment; expected https://host[:port]")
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or port == 0:
        raise ContractError(f"endpoint: {endpoint!r} is not an https://host[:port] URL")
    return endpoint.rstrip("/")


@dataclass(frozen=True)
class ClusterSecret:
    cluster_name: str
    cluster_arn: str
    endpoint: str
    certificate_authority_data: str
    kubernetes_version: str
    platform_version: str
    outpost_arns: tuple[str, ...]
    breakglass_group: str = DEFAULT_BREAKGLASS_GROUP
    cluster_id: str | None = None
    updated_at: str = ""
    ca_sha256: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate_cluster_name(self.cluster_name)
        object.__setattr__(self, "endpoint", validate_endpoint(self.endpoint))
        digest = ca_sha256(self.certificate_authority_data)
        if self.ca_sha256 and self.ca_sha256 != digest:
            raise ContractError("caSha256: does not match certificateAuthorityData")
        object.__setattr__(self, "ca_sha256", digest)
        if not GROUP_PATTERN.fullmatch(self.breakglass_group) or self.breakglass_group.startswith("system:"):
            raise ContractError(f"breakglassGroup: {self.breakglass_group!r} is not an allowed group name")
        self._check_origin()

    def _check_origin(self) -> None:
        """What a secret written in the Region carries: a time stamp and exactly one Outpost."""
        if not self.updated_at:
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            object.__setattr__(self, "updated_at", now.isoformat().replace("+00:00", "Z"))
        if len(self.outpost_arns) != 1 or not all(OUTPOST_ARN_PATTERN.fullmatch(a) for a in self.outpost_arns):
            raise ContractError("outpostArns: expected exactly one Outpost ARN")

    @functools.cached_property
    def ca_pem(self) -> bytes:  # read at every step: decoded (and checked) once
        return decode_ca(self.certificate_authority_data)

    @property
    def secret_name(self) -> str:
        return secret_name(self.cluster_name)

    @property
    def token_cluster_id(self) -> str:
        """The ``x-k8s-aws-id`` for IAM tokens: the cluster ``id`` where there is one, else the name."""
        return self.cluster_id or self.cluster_name

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            {
                "schemaVersion": self.schema_version,
                "clusterName": self.cluster_name,
                "clusterArn": self.cluster_arn,
                "clusterId": self.cluster_id,
                "endpoint": self.endpoint,
                "certificateAuthorityData": self.certificate_authority_data,
                "caSha256": self.ca_sha256,
                "kubernetesVersion": self.kubernetes_version,
                "platformVersion": self.platform_version,
                "outpostArns": list(self.outpost_arns),
                "breakglassGroup": self.breakglass_group,
                "updatedAt": self.updated_at,
            }
        )
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: object) -> ClusterSecret:
        if not isinstance(data, dict):
            raise ContractError("secret: expected a JSON object")
        version = _require(data, "schemaVersion", int)
        if version != SCHEMA_VERSION:
            raise ContractError(f"schemaVersion: {version} is not supported (this agent reads {SCHEMA_VERSION})")
        outposts = _require(data, "outpostArns", list)
        if not all(isinstance(a, str) for a in outposts):
            raise ContractError("outpostArns: expected a list of strings")
        known = {
            "schemaVersion", "clusterName", "clusterArn", "clusterId", "endpoint", "certificateAuthorityData",
            "caSha256", "kubernetesVersion", "platformVersion", "outpostArns", "breakglassGroup", "updatedAt",
        }  # fmt: skip
        return cls(
            cluster_name=validate_cluster_name(data.get("clusterName")),
            cluster_arn=_require(data, "clusterArn", str),
            cluster_id=_require(data, "clusterId", str, optional=True),
            endpoint=_require(data, "endpoint", str),
            certificate_authority_data=_require(data, "certificateAuthorityData", str),
            ca_sha256=_require(data, "caSha256", str),
            kubernetes_version=_require(data, "kubernetesVersion", str),
            platform_version=_require(data, "platformVersion", str),
            outpost_arns=tuple(outposts),
            breakglass_group=_require(data, "breakglassGroup", str),
            updated_at=_require(data, "updatedAt", str),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ClusterSecret:
        if len(text) > MAX_SECRET_BYTES:
            raise ContractError(f"secret: larger than {MAX_SECRET_BYTES} bytes")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"secret: not JSON ({exc})") from exc
        return cls.from_dict(data)
