"""The agent's configuration: a TOML file, validated; every error names the file and the key.

Example (every key but ``clusters`` has a default)::

    region = "us-west-2"
    clusters = ["edge-1", "edge-2"]        # or "all": every secret named lifeline/<cluster>
    state_dir = "/var/lib/lifeline"
    certificate_lifetime = "7d"            # requested; the signer may issue a shorter one
    key_type = "ecdsa-p256"                # or "rsa-2048", "rsa-4096"
    host_id = "..."                        # default: /etc/machine-id
    breakglass_group = "lifeline:breakglass" # default: the secret's breakglassGroup
    probe_interval = "30s"
    metrics_address = "127.0.0.1:9877"
    operators_group = "lifeline-operators" # optional: kubeconfigs become 0640 to this group
    aws_endpoint_url = "https://..."       # optional: a VPC endpoint (or the lab)
    probe_timeout = "2s"
    log_level = "INFO"
    max_concurrent_clusters = 8            # cluster steps at once in a `once` pass and the first pass of `run`
    readiness_metrics = true               # report each cluster's readiness to CloudWatch (Lifeline namespace)
    readiness_interval = "1m"              # how often, while the link is up

    [timing]                               # optional knobs (defaults shown)
    backoff_base = "10s"                   # first retry after a failure; doubles, with jitter
    backoff_cap = "15m"                    # longest wait between retries (also while revoked)
    csr_timeout = "2m"                     # how long to wait for the signer
    api_timeout = "10s"                    # one API server or Region request
    verify_interval = "5m"                 # how often the installed kubeconfig is proven
    secret_refresh_interval = "15m"        # how often lifeline/<cluster> is re-read while connected
    clock_skew = "1m"                      # tolerated clock difference when checking a certificate's validity
    min_remaining_lifetime = "5m"          # a new certificate with less time left is not installed

    [grant]                                # personal kubeconfigs (`lifeline-agent grant`; defaults shown)
    group = "lifeline:operators"           # their Kubernetes group, bound by the workflow (lifeline-operators)
    max_ttl = "1h"                         # the longest --ttl allowed (at least 10m, at most 7d)

    [cluster.edge-1]                       # optional per-cluster settings
    endpoint_ips = ["10.0.0.10", "10.0.0.11"]
    bootstrap_kubeconfig = "/etc/lifeline/edge-1-bootstrap.kubeconfig"
    post_install_hook = ["/usr/local/bin/copy-kubeconfig", "--to", "jump-1"]  # + cluster, path, notAfter
    post_install_hook_timeout = "30s"      # then the hook is killed

    [cluster.lab-1]                        # Region-less: no secret, no EKS, no STS, no link probe
    endpoint = "https://10.0.0.20:443"     # default: the bootstrap kubeconfig's server
    certificate_authority = "/etc/lifeline/lab-1-ca.crt"   # or certificate_authority_data = "<PEM>";
                                           # default: the bootstrap kubeconfig's CA
    breakglass_group = "lifeline:breakglass"                # optional
    bootstrap_kubeconfig = "/etc/lifeline/lab-1-bootstrap.kubeconfig"  # required: the bootstrap credential
    # regionless = true                    # with neither endpoint nor CA: both from the bootstrap kubeconfig
"""

from __future__ import annotations

import base64
import binascii
import grp
import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lifeline_agent.contract import (
    AGENTS_GROUP,
    CLUSTER_NAME_PATTERN,
    DEFAULT_BREAKGLASS_GROUP,
    DEFAULT_OPERATORS_GROUP,
    GROUP_PATTERN,
    ContractError,
    decode_ca,
    validate_endpoint,
)
from lifeline_agent.permissions import UnsafePathError, check_credential_file, check_trusted

DEFAULT_CONFIG_PATH = Path("/etc/lifeline/agent.toml")
MACHINE_ID_PATH = Path("/etc/machine-id")
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
ALL_CLUSTERS = "all"
MIN_CERTIFICATE_LIFETIME = 600  # Kubernetes rejects spec.expirationSeconds below 10 minutes.
MAX_DURATION = 366 * 86400  # longer is a typo; and Event.wait() overflows on huge timeouts
HOST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
MAX_CONCURRENT_CLUSTERS = 64  # each running step is a thread; the unit's TasksMax is 128
MAX_CLUSTERS = 100  # `run` keeps a thread per cluster; the unit's TasksMax (128) leaves room for the rest
DEFAULT_CONCURRENT_CLUSTERS = 8
MAX_HOOK_TIMEOUT = 600.0  # a hook that needs longer should start its own background job
MAX_HOOK_ARGUMENTS = 32
MIN_READINESS_INTERVAL = 10.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ClusterSettings:
    """One cluster's settings. With ``endpoint`` set it is Region-less (:mod:`lifeline_agent.regionless`):
    the endpoint and CA come from the configuration, and the bootstrap kubeconfig's credential makes the
    first certificate (and a new one after an expiry)."""

    name: str
    endpoint_ips: tuple[str, ...] = ()
    bootstrap_kubeconfig: Path | None = None
    endpoint: str | None = None
    ca_pem: bytes | None = None
    breakglass_group: str | None = None
    post_install_hook: tuple[str, ...] = ()  # argv; the cluster, kubeconfig path and notAfter are appended
    post_install_hook_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.endpoint is not None and (self.ca_pem is None or self.bootstrap_kubeconfig is None):
            raise ValueError(f"cluster {self.name}: a Region-less cluster needs its CA and a bootstrap kubeconfig")
        if self.endpoint is None and (self.ca_pem is not None or self.breakglass_group is not None):
            raise ValueError(f"cluster {self.name}: a CA or break-glass group is configured only with an endpoint")

    @property
    def regionless(self) -> bool:
        """True when the configuration, not the Region's secret, says where the API server is and its CA."""
        return self.endpoint is not None


@dataclass(frozen=True)
class Timing:
    """Knobs for the loops; the defaults suit production, tests shorten them."""

    backoff_base: float = 10.0
    backoff_cap: float = 900.0
    csr_timeout: float = 120.0
    api_timeout: float = 10.0
    verify_interval: float = 300.0
    secret_refresh_interval: float = 900.0
    clock_skew: float = 60.0  # tolerated difference between this host's clock and the signer's
    min_remaining_lifetime: float = 300.0  # a new certificate with less left than this is not installed


MAX_GRANT_TTL = 7 * 86400


@dataclass(frozen=True)
class GrantSettings:
    """Personal kubeconfigs issued by ``lifeline-agent grant``: their group and their longest lifetime."""

    group: str = DEFAULT_OPERATORS_GROUP
    max_ttl: int = 3600


@dataclass(frozen=True)
class AgentConfig:
    source: Path
    region: str | None = None
    clusters: tuple[ClusterSettings, ...] = ()
    all_clusters: bool = False
    state_dir: Path = Path("/var/lib/lifeline")
    certificate_lifetime: int = 7 * 86400
    key_type: str = "ecdsa-p256"
    host_id: str = ""
    breakglass_group: str | None = None  # None: the group named in the cluster's secret
    probe_interval: float = 30.0
    probe_timeout: float = 2.0
    metrics_address: str = "127.0.0.1:9877"
    operators_group: str | None = None
    aws_endpoint_url: str | None = None
    log_level: str = "INFO"
    max_concurrent_clusters: int = DEFAULT_CONCURRENT_CLUSTERS
    readiness_metrics: bool = True
    readiness_interval: float = 60.0
    timing: Timing = field(default_factory=Timing)
    grant: GrantSettings = field(default_factory=GrantSettings)

    def cluster(self, name: str) -> ClusterSettings:
        """The settings of ``name`` (defaults when the cluster was discovered, not listed)."""
        for settings in self.clusters:
            if settings.name == name:
                return settings
        return ClusterSettings(name=name)

    def cluster_dir(self, name: str) -> Path:
        return self.state_dir / name

    def concurrency(self, clusters: int) -> int:
        """How many of ``clusters`` cluster steps run at once in a pass (at least one)."""
        return max(1, min(self.max_concurrent_clusters, clusters))

    def group_for(self, secret_group: str | None) -> str:
        """The break-glass group certificates carry: configured, else the secret's, else the default."""
        return self.breakglass_group or secret_group or DEFAULT_BREAKGLASS_GROUP

    @property
    def needs_region(self) -> bool:
        """False when every cluster is Region-less: then nothing asks the Region, nor probes the link."""
        return self.all_clusters or any(not settings.regionless for settings in self.clusters)

    @property
    def user_name(self) -> str:
        """The Kubernetes user name of this host's certificates: ``lifeline:<host-id>``."""
        return f"lifeline:{self.host_id}"


class _Reader:
    """Takes keys out of one TOML table, checking types; errors name the file and the dotted key."""

    def __init__(self, source: Path, table: dict[str, Any], prefix: str = "") -> None:
        self.source, self.table, self.prefix = source, dict(table), prefix

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key}: {message}")

    def take(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            return default
        value = self.table.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.error(key, f"expected {wanted}, got {type(value).__name__} {value!r}")
        return value

    def duration(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.take(key, (int, float, str))
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None:
            raise self.error(key, f"{value!r} is not a duration (seconds, or a number with s, m, h or d)")
        if not math.isfinite(seconds) or seconds > MAX_DURATION:
            raise self.error(key, f"{value!r} is not a finite duration of at most {MAX_DURATION // 86400} days")
        if seconds < minimum or seconds <= 0:
            raise self.error(key, f"{value!r} is too short (at least {max(minimum, 1):g} s)")
        return seconds

    def finish(self) -> None:
        if self.table:
            unknown = ", ".join(sorted(self.prefix + k for k in self.table))
            raise ConfigError(f"{self.source}: unknown key(s): {unknown}")


def parse_duration(value: int | float | str) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(value)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def read_machine_id(path: Path = MACHINE_ID_PATH) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"host_id: not set and {path} is unreadable ({exc})") from exc


def load_config(path: Path | str = DEFAULT_CONFIG_PATH, *, machine_id_path: Path = MACHINE_ID_PATH) -> AgentConfig:
    """Read and validate the agent configuration; :class:`ConfigError` names the file and the key.

    A file (or a directory above it) that anyone but root or this user could change is refused.
    """
    source = Path(path)
    try:
        check_trusted(source)
    except UnsafePathError as exc:
        raise ConfigError(f"{source}: refused: {exc}") from None
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the configuration file ({exc.strerror or exc})") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    return parse_config(document, source, machine_id_path=machine_id_path)


def parse_config(document: dict[str, Any], source: Path, *, machine_id_path: Path = MACHINE_ID_PATH) -> AgentConfig:
    top = _Reader(source, document)
    region = top.take("region", str)
    if region is not None and not REGION_PATTERN.fullmatch(region):
        raise top.error("region", f"{region!r} is not an AWS Region name (like us-west-2)")
    clusters, all_clusters = _clusters(top)
    state_dir = _absolute_path(top, "state_dir", None) or Path("/var/lib/lifeline")
    lifetime = top.duration("certificate_lifetime", 7 * 86400.0, minimum=MIN_CERTIFICATE_LIFETIME)
    key_type = top.take("key_type", str, "ecdsa-p256")
    if key_type not in KEY_TYPES:
        raise top.error("key_type", f"{key_type!r} is not one of {', '.join(KEY_TYPES)}")
    host_id = top.take("host_id", str) or read_machine_id(machine_id_path)
    if not HOST_ID_PATTERN.fullmatch(host_id):
        raise top.error("host_id", f"{host_id!r} must be 1-63 letters, digits, '.', '_' or '-'")
    group = top.take("breakglass_group", str)
    if group is not None and (not GROUP_PATTERN.fullmatch(group) or group.startswith("system:")):
        raise top.error("breakglass_group", f"{group!r} is not an allowed group name (and not system:*)")
    probe_interval = top.duration("probe_interval", 30.0, minimum=1.0)
    probe_timeout = top.duration("probe_timeout", 2.0)
    metrics_address = top.take("metrics_address", str, "127.0.0.1:9877")
    _check_address(top, metrics_address)
    operators_group = top.take("operators_group", str)
    if operators_group is not None:
        try:
            grp.getgrnam(operators_group)
        except KeyError:
            raise top.error("operators_group", f"group {operators_group!r} does not exist on this host") from None
    endpoint_url = top.take("aws_endpoint_url", str)
    if endpoint_url is not None and not re.match(r"^https?://[^/\s]+/?$", endpoint_url):
        raise top.error("aws_endpoint_url", f"{endpoint_url!r} is not an http(s)://host[:port] URL")
    log_level = top.take("log_level", str, "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise top.error("log_level", f"{log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    concurrent = top.take("max_concurrent_clusters", int, DEFAULT_CONCURRENT_CLUSTERS)
    if not 1 <= concurrent <= MAX_CONCURRENT_CLUSTERS:
        raise top.error("max_concurrent_clusters", f"{concurrent} is not a whole number from 1 to "
                        f"{MAX_CONCURRENT_CLUSTERS}")  # fmt: skip
    readiness_metrics = top.take("readiness_metrics", bool, True)
    readiness_interval = top.duration("readiness_interval", 60.0, minimum=MIN_READINESS_INTERVAL)
    timing = _timing(source, top.take("timing", dict, {}))
    grant = _grant(source, top.take("grant", dict, {}), group)
    top.finish()
    return AgentConfig(
        source=source, region=region, clusters=clusters, all_clusters=all_clusters, state_dir=state_dir,
        certificate_lifetime=int(lifetime), key_type=key_type, host_id=host_id, breakglass_group=group,
        probe_interval=probe_interval, probe_timeout=probe_timeout, metrics_address=metrics_address,
        operators_group=operators_group, aws_endpoint_url=endpoint_url, log_level=log_level,
        max_concurrent_clusters=concurrent, readiness_metrics=readiness_metrics,
        readiness_interval=readiness_interval, timing=timing, grant=grant,
    )  # fmt: skip


def _clusters(top: _Reader) -> tuple[tuple[ClusterSettings, ...], bool]:
    listed = top.take("clusters", (list, str))
    tables = top.take("cluster", dict, {})
    all_clusters = listed == ALL_CLUSTERS
    if isinstance(listed, str) and not all_clusters:
        raise top.error("clusters", f"{listed!r}: give a list of cluster names or \"{ALL_CLUSTERS}\"")
    names: list[str] = [] if all_clusters or listed is None else list(listed)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not CLUSTER_NAME_PATTERN.fullmatch(name):
            raise top.error(f"clusters[{index}]", f"{name!r} is not an EKS cluster name")
    names += [name for name in tables if name not in names]
    if not names and not all_clusters:
        raise top.error("clusters", f"no cluster configured: list names or set clusters = \"{ALL_CLUSTERS}\"")
    if len(set(names)) != len(names):
        raise top.error("clusters", "a cluster is listed twice")
    if len(names) > MAX_CLUSTERS:
        raise top.error("clusters", f"{len(names)} clusters: one agent keeps at most {MAX_CLUSTERS} (a thread "
                                    "each; the unit's TasksMax is 128): split them over more agents (hosts)")
    settings = []
    for name in names:
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise top.error(f"cluster.{name}", "expected a table")
        if not CLUSTER_NAME_PATTERN.fullmatch(name):
            raise top.error(f"cluster.{name}", "the table name is not an EKS cluster name")
        settings.append(_cluster_settings(_Reader(top.source, table, f"cluster.{name}."), name))
    return tuple(settings), all_clusters


def _cluster_settings(reader: _Reader, name: str) -> ClusterSettings:
    ips = reader.take("endpoint_ips", list, [])
    for index, ip in enumerate(ips):
        try:
            ipaddress.ip_address(ip)
        except (TypeError, ValueError):
            raise reader.error(f"endpoint_ips[{index}]", f"{ip!r} is not an IP address") from None
    bootstrap = _absolute_path(reader, "bootstrap_kubeconfig", None)
    if bootstrap is not None and not (bootstrap.is_file() and os.access(bootstrap, os.R_OK)):
        raise reader.error("bootstrap_kubeconfig", f"{bootstrap} is not a readable file")
    if bootstrap is not None:
        try:
            check_credential_file(bootstrap)
        except UnsafePathError as exc:
            raise reader.error("bootstrap_kubeconfig", f"refused: {exc}") from None
    endpoint, ca_pem, group, pinned = _regionless_settings(reader, bootstrap)
    hook = _post_install_hook(reader)
    hook_timeout = reader.duration("post_install_hook_timeout", 30.0)
    if hook_timeout > MAX_HOOK_TIMEOUT:
        raise reader.error("post_install_hook_timeout", f"at most {MAX_HOOK_TIMEOUT:g} s")
    reader.finish()
    return ClusterSettings(name=name, endpoint_ips=tuple(dict.fromkeys([*ips, *pinned])),
                           bootstrap_kubeconfig=bootstrap, endpoint=endpoint, ca_pem=ca_pem,
                           breakglass_group=group, post_install_hook=hook,
                           post_install_hook_timeout=hook_timeout)  # fmt: skip


def _post_install_hook(reader: _Reader) -> tuple[str, ...]:
    """The hook's argv: an absolute path to an executable that only root or this user can change, then
    plain string arguments (no shell: nothing in them is expanded)."""
    key = "post_install_hook"
    argv = reader.take(key, list, [])
    if not argv:
        return ()
    if len(argv) > MAX_HOOK_ARGUMENTS:
        raise reader.error(key, f"at most {MAX_HOOK_ARGUMENTS} items (the program and its arguments)")
    for index, item in enumerate(argv):
        if not isinstance(item, str) or "\x00" in item or len(item) > 4096:
            raise reader.error(f"{key}[{index}]", f"{item!r:.80} is not a string of at most 4096 characters")
    program = Path(argv[0])
    if not program.is_absolute():
        raise reader.error(key, f"{argv[0]!r}: the program must be an absolute path (no shell, no PATH search)")
    if not program.is_file() or not os.access(program, os.X_OK):
        raise reader.error(key, f"{program} is not an executable file")
    try:  # the hook runs as the agent, with the kubeconfig's path: nobody else may change it
        check_trusted(program)
    except UnsafePathError as exc:
        raise reader.error(key, f"refused: {exc}") from None
    return tuple(argv)


_REGIONLESS_KEYS = ("endpoint", "certificate_authority", "certificate_authority_data")


def _regionless_settings(reader: _Reader, bootstrap: Path | None) -> tuple[str | None, bytes | None, str | None,
                                                                          list[str]]:  # fmt: skip
    """``(endpoint, CA PEM, break-glass group, addresses to pin)`` of a Region-less cluster; all empty for a
    Region cluster. The endpoint and CA not given come from the bootstrap kubeconfig's cluster entry."""
    given = [key for key in _REGIONLESS_KEYS if key in reader.table]
    regionless = reader.take("regionless", bool)
    if regionless is False and given:
        raise reader.error("regionless", f"false, but {', '.join(given)} make the cluster Region-less")
    if not given and not regionless:
        if "breakglass_group" in reader.table:
            raise reader.error("breakglass_group", "only for a Region-less cluster (endpoint, certificate_authority "
                               "or regionless = true); a Region cluster's group is in its secret, or set the "
                               "top-level breakglass_group")  # fmt: skip
        return None, None, None, []
    if bootstrap is None:
        raise reader.error("bootstrap_kubeconfig", "required for a Region-less cluster (endpoint, "
                           "certificate_authority or regionless = true): its credential makes the first "
                           "certificate")  # fmt: skip
    endpoint = reader.take("endpoint", str)
    if endpoint is not None:
        endpoint = _endpoint(reader, "endpoint", endpoint)
    ca_pem = _certificate_authority(reader)
    group = reader.take("breakglass_group", str)
    if group is not None and (not GROUP_PATTERN.fullmatch(group) or group.startswith("system:")):
        raise reader.error("breakglass_group", f"{group!r} is not an allowed group name (and not system:*)")
    pinned: list[str] = []
    if endpoint is None or ca_pem is None:
        server, kubeconfig_ca, pinned = _from_bootstrap_kubeconfig(reader, bootstrap)
        endpoint = endpoint or server
        if ca_pem is None:
            ca_pem = _validated_ca(reader, "bootstrap_kubeconfig", kubeconfig_ca, "its cluster's CA: ")
        if endpoint != server:
            pinned = []
    return endpoint, ca_pem, group, pinned


def _endpoint(reader: _Reader, key: str, value: str, what: str = "") -> str:
    try:
        return validate_endpoint(value)
    except ContractError as exc:
        raise reader.error(key, what + str(exc).removeprefix("endpoint: ")) from None


def _validated_ca(reader: _Reader, key: str, pem: bytes, what: str = "") -> bytes:
    """``pem`` if it is exactly one CA:TRUE certificate (the rules of ``contract.decode_ca``)."""
    try:
        return decode_ca(base64.b64encode(pem).decode("ascii"))
    except ContractError as exc:
        raise reader.error(key, what + str(exc).removeprefix("certificateAuthorityData: ")) from None


def _certificate_authority(reader: _Reader) -> bytes | None:
    path = _absolute_path(reader, "certificate_authority", None)
    data = reader.take("certificate_authority_data", str)
    if path is not None and data is not None:
        raise reader.error("certificate_authority_data", "give certificate_authority or "
                           "certificate_authority_data, not both")  # fmt: skip
    if data is not None:
        if "-----BEGIN" in data:
            return _validated_ca(reader, "certificate_authority_data", data.encode("ascii", "replace"))
        try:  # the base64 of a kubeconfig's certificate-authority-data
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise reader.error("certificate_authority_data", "neither a PEM certificate nor base64 of one") from None
        return _validated_ca(reader, "certificate_authority_data", decoded)
    if path is None:
        return None
    try:  # the CA decides whom the agent trusts: nobody else may change the file
        check_trusted(path)
        pem = path.read_bytes()
    except UnsafePathError as exc:
        raise reader.error("certificate_authority", f"refused: {exc}") from None
    except OSError as exc:
        raise reader.error("certificate_authority", f"{path}: cannot read it ({exc.strerror or exc})") from None
    return _validated_ca(reader, "certificate_authority", pem, f"{path}: ")


def _from_bootstrap_kubeconfig(reader: _Reader, path: Path) -> tuple[str, bytes, list[str]]:
    """The server, CA and (for a server given as an IP with ``tls-server-name``) the address to pin."""
    from lifeline_agent.kube import from_kubeconfig
    from lifeline_agent.kubeconfig import load_kubeconfig

    key = "bootstrap_kubeconfig"
    try:
        target, _ = from_kubeconfig(load_kubeconfig(path.read_bytes()), path.parent)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise reader.error(key, f"{path}: no usable cluster entry to take the endpoint and CA from ({exc})") from None
    server = _endpoint(reader, key, target.server, f"{path}: its cluster's server: ")
    if target.tls_server_name is None:
        return server, target.ca_pem, []
    parts = urlsplit(server)
    try:
        ip = str(ipaddress.ip_address(parts.hostname or ""))
    except ValueError:
        raise reader.error(key, f"{path}: tls-server-name with a server that is not an IP address; "
                           "set endpoint = instead") from None  # fmt: skip
    endpoint = _endpoint(reader, key, f"https://{target.tls_server_name}:{parts.port or 443}",
                         f"{path}: its tls-server-name: ")  # fmt: skip
    return endpoint, target.ca_pem, [ip]


def _timing(source: Path, table: dict[str, Any]) -> Timing:
    reader = _Reader(source, table, "timing.")
    default = Timing()
    timing = Timing(
        backoff_base=reader.duration("backoff_base", default.backoff_base),
        backoff_cap=reader.duration("backoff_cap", default.backoff_cap),
        csr_timeout=reader.duration("csr_timeout", default.csr_timeout),
        api_timeout=reader.duration("api_timeout", default.api_timeout),
        verify_interval=reader.duration("verify_interval", default.verify_interval),
        secret_refresh_interval=reader.duration("secret_refresh_interval", default.secret_refresh_interval),
        clock_skew=reader.duration("clock_skew", default.clock_skew),
        min_remaining_lifetime=reader.duration("min_remaining_lifetime", default.min_remaining_lifetime),
    )
    reader.finish()
    if timing.backoff_cap < timing.backoff_base:
        raise reader.error("backoff_cap", "must not be smaller than timing.backoff_base")
    return timing


def _grant(source: Path, table: dict[str, Any], breakglass_group: str | None) -> GrantSettings:
    reader = _Reader(source, table, "grant.")
    group = reader.take("group", str, DEFAULT_OPERATORS_GROUP)
    if not GROUP_PATTERN.fullmatch(group) or group.startswith("system:"):
        raise reader.error("group", f"{group!r} is not an allowed group name (and not system:*)")
    if group in (AGENTS_GROUP, DEFAULT_BREAKGLASS_GROUP, breakglass_group):
        raise reader.error("group", f"{group!r} is one of the agents' own groups: personal kubeconfigs need a group "
                           "of their own, so that deleting its binding revokes them and nothing else")  # fmt: skip
    max_ttl = reader.duration("max_ttl", float(GrantSettings.max_ttl), minimum=MIN_CERTIFICATE_LIFETIME)
    if max_ttl > MAX_GRANT_TTL:
        raise reader.error("max_ttl", f"{max_ttl:g} s is longer than {MAX_GRANT_TTL // 86400} days")
    reader.finish()
    return GrantSettings(group=group, max_ttl=int(max_ttl))


def check_state_dir(config: AgentConfig, *, writer: bool) -> None:
    """Refuse a state directory (or a directory above it) that others could change.

    ``writer``: the agent itself runs (``run``, ``once``), so the directory must also be root's or its own;
    an operator reading the agent's state (``status``, ``verify``) may find it owned by the agent's user.
    """
    try:
        check_trusted(config.state_dir, owner_of_leaf=writer)
    except UnsafePathError as exc:
        raise ConfigError(f"{config.source}: state_dir: refused: {exc}") from None


def _absolute_path(reader: _Reader, key: str, default: Path | None) -> Path | None:
    value = reader.take(key, str)
    if value is None:
        return default
    path = Path(value)
    if not path.is_absolute() or "\x00" in value:
        raise reader.error(key, f"{value!r} must be an absolute path")
    return path


def _check_address(reader: _Reader, address: str) -> None:
    host, sep, port = address.rpartition(":")
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host.strip("[]"))
        valid = bool(sep) and 0 <= int(port) < 65536
    except ValueError:
        valid = False
    if not valid:
        raise reader.error("metrics_address", f"{address!r} is not IP:PORT")
    if not ip.is_loopback:
        raise reader.error("metrics_address", f"{address!r}: serve metrics on loopback only")
