"""Per-cluster state on disk, with an atomic swap of the "current" kubeconfig.

``<state_dir>/<cluster>/``:
- ``kubeconfig``       the installed offline kubeconfig (0600, or 0640 to the operators' group)
- ``kubeconfig.prev``  the previous generation, kept when a new one is installed
- ``key.pem``          the private key of the installed kubeconfig (0600)
- ``cluster.json``     the cached secret ``lifeline/<cluster>`` (or, for a Region-less cluster, the configured
                       endpoint and CA under ``configured``) and the endpoint's resolved IPs
- ``status.json``      the last health snapshot, read by ``lifeline-agent status``
"""

from __future__ import annotations

import base64
import contextlib
import copy
import grp
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline_agent.contract import (
    DEFAULT_BREAKGLASS_GROUP,
    ClusterSecret,
    ContractError,
)
from lifeline_agent.kubeconfig import (
    NewFile,
    atomic_write,
    dump_kubeconfig,
    load_kubeconfig,
    replace_files,
)
from lifeline_agent.permissions import make_private_directories

KUBECONFIG, PREVIOUS, KEY, CACHE, STATUS = "kubeconfig", "kubeconfig.prev", "key.pem", "cluster.json", "status.json"


class StoreError(Exception):
    """A state file is unreadable or corrupt; the message names the file."""


@dataclass(frozen=True)
class ConfiguredCluster(ClusterSecret):
    """A Region-less cluster's endpoint, CA and break-glass group, as the agent's configuration gives them.

    Why a :class:`ClusterSecret` subclass and not a second cache type: the reconcile loop reads only
    ``endpoint``, ``ca_pem`` and ``breakglass_group`` of ``CachedCluster.secret``, so the loop, the trust
    gate and their types stay as they are. Nothing here claims to come from the Region: the ARN, the
    Outpost and the versions are empty, and the record is never given to the trust gate (a Region-less
    cluster is not refreshed from a secret). It is validated like a secret (endpoint, one CA:TRUE
    certificate, group), and ``cluster.json`` keeps it under ``configured``, not ``secret``, so neither
    is ever read back as the other (an older agent finds no ``secret`` and fetches one from the Region).
    """

    def _check_origin(self) -> None:
        if self.cluster_arn or self.outpost_arns or self.cluster_id:
            raise ContractError("a configured cluster has no ARN, Outpost or cluster id: those come from the Region")

    @classmethod
    def configured(cls, name: str, endpoint: str, ca_pem: bytes, breakglass_group: str | None) -> ConfiguredCluster:
        return cls(cluster_name=name, cluster_arn="", endpoint=endpoint,
                   certificate_authority_data=base64.b64encode(ca_pem).decode("ascii"), kubernetes_version="",
                   platform_version="", outpost_arns=(), breakglass_group=breakglass_group or DEFAULT_BREAKGLASS_GROUP,
                   updated_at="configured")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"clusterName": self.cluster_name, "endpoint": self.endpoint, "caSha256": self.ca_sha256,
                "certificateAuthorityData": self.certificate_authority_data,
                "breakglassGroup": self.breakglass_group}  # fmt: skip

    @classmethod
    def from_dict(cls, data: object) -> ConfiguredCluster:
        if not isinstance(data, dict):
            raise ContractError("configured: expected a JSON object")
        values: dict[str, str] = {}
        for key in ("clusterName", "endpoint", "certificateAuthorityData", "caSha256", "breakglassGroup"):
            value = data.get(key)
            if not isinstance(value, str):
                raise ContractError(f"configured.{key}: expected str, got {type(value).__name__}")
            values[key] = value
        return cls(cluster_name=values["clusterName"], cluster_arn="", endpoint=values["endpoint"],
                   certificate_authority_data=values["certificateAuthorityData"], ca_sha256=values["caSha256"],
                   kubernetes_version="", platform_version="", outpost_arns=(),
                   breakglass_group=values["breakglassGroup"], updated_at="configured")  # fmt: skip


@dataclass(frozen=True)
class CachedCluster:
    """What the agent remembers from the Region (or, Region-less, from its configuration), so it works while
    the link is down."""

    secret: ClusterSecret
    ips: tuple[str, ...]
    fetched_at: float

    def to_json(self) -> bytes:
        key = "configured" if isinstance(self.secret, ConfiguredCluster) else "secret"
        document = {key: self.secret.to_dict(), "ips": list(self.ips), "fetchedAt": self.fetched_at}
        return json.dumps(document, indent=2, sort_keys=True).encode("utf-8")


class ClusterStore:
    """The files of one cluster. Only :meth:`install` changes the current kubeconfig."""

    def __init__(self, directory: Path, *, operators_group: str | None = None) -> None:
        self.directory = Path(directory)
        self.operators_group = operators_group
        self.swaps = 0  # how often this object replaced the current kubeconfig (install or restore)
        self._parsed: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}  # path -> (stat, document)
        self._cache: tuple[tuple[int, int, int], CachedCluster] | None = None  # cluster.json: (stat, parsed)

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def kubeconfig_path(self) -> Path:
        return self.path(KUBECONFIG)

    def ensure(self) -> None:
        """Create the directory (and its missing parents): 0700, or 0750 with the operators' group so they
        can reach the kubeconfig."""
        if self.directory.is_dir():
            return
        group_id = grp.getgrnam(self.operators_group).gr_gid if self.operators_group else None
        make_private_directories(self.directory, group_id=group_id)

    def remove_stale_sessions(self) -> None:
        """Remove what a killed agent left behind: API-session directories and the temp files of cut
        atomic writes (``.<name>.*.tmp``), both possibly holding copies of the key."""
        if not self.directory.is_dir():
            return
        for stale in self.directory.glob(".session-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in self.directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    # --- the kubeconfig -----------------------------------------------------------------------------

    def current(self) -> dict[str, Any] | None:
        """The installed kubeconfig, parsed; ``None`` when there is none yet."""
        return self._load(self.kubeconfig_path)

    def installed_at(self) -> float | None:
        """When the current kubeconfig was written (epoch seconds), ``None`` when there is none."""
        try:
            return self.kubeconfig_path.stat().st_mtime
        except OSError:
            return None

    def previous(self) -> dict[str, Any] | None:
        """The previous generation, parsed; ``None`` when there is none."""
        return self._load(self.path(PREVIOUS))

    def restore_previous(self, key_pem: bytes) -> None:
        """Put the previous generation (whose key is ``key_pem``) back as the current kubeconfig."""
        mode = 0o640 if self.operators_group else 0o600
        replace_files([NewFile(self.kubeconfig_path, self.path(PREVIOUS).read_bytes(), mode, self.operators_group),
                       NewFile(self.path(KEY), key_pem)])  # fmt: skip
        self.swaps += 1

    def _load(self, path: Path) -> dict[str, Any] | None:
        """Parsed again only when the file changed (another inode, size or mtime): most steps read nothing."""
        try:
            with path.open("rb") as handle:
                seen = _identity(os.fstat(handle.fileno()))
                cached = self._parsed.get(path)
                if cached is not None and cached[0] == seen:
                    return copy.deepcopy(cached[1])
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror}") from None
        try:
            document = load_kubeconfig(data)
        except ValueError as exc:
            raise StoreError(f"{path}: {exc}") from None
        self._parsed[path] = (seen, copy.deepcopy(document))
        return document

    def install(self, config: dict[str, Any], key_pem: bytes) -> None:
        """Swap in ``config`` (already verified): the old one becomes ``kubeconfig.prev``; each file atomic, all
        three durable on return (:func:`replace_files`)."""
        self.ensure()
        replace_files(self._install_files(config, key_pem))
        self.swaps += 1
        with contextlib.suppress(OSError):  # what was written is what the next step reads: no need to parse it
            self._parsed[self.kubeconfig_path] = (_identity(self.kubeconfig_path.stat()), copy.deepcopy(config))

    def _install_files(self, config: dict[str, Any], key_pem: bytes) -> list[NewFile]:
        mode, group = 0o640 if self.operators_group else 0o600, self.operators_group
        try:
            previous = self.kubeconfig_path.read_bytes()
        except FileNotFoundError:
            previous = None
        new = dump_kubeconfig(config)
        kept = [NewFile(self.path(PREVIOUS), b"", mode, group, same_as=self.kubeconfig_path)]  # the inode, linked
        return [*(kept if previous not in (None, new) else []), NewFile(self.kubeconfig_path, new, mode, group),
                NewFile(self.path(KEY), key_pem)]  # fmt: skip

    # --- the cached secret and IPs ------------------------------------------------------------------

    def load_cache(self) -> CachedCluster | None:
        """``cluster.json``, read at every step: parsed again only when the file changed, as the kubeconfig."""
        path = self.path(CACHE)
        try:
            with path.open("rb") as handle:
                seen = _identity(os.fstat(handle.fileno()))
                if self._cache is not None and self._cache[0] == seen:
                    return self._cache[1]
                document = json.loads(handle.read())
            secret = ConfiguredCluster.from_dict(document["configured"]) if "configured" in document \
                else ClusterSecret.from_dict(document["secret"])  # fmt: skip
            ips = tuple(str(ip) for ip in document.get("ips") or ())
            cached = CachedCluster(secret=secret, ips=ips, fetched_at=float(document.get("fetchedAt", 0)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ContractError) as exc:
            raise StoreError(f"{path}: unreadable cache ({exc})") from None
        self._cache = (seen, cached)
        return cached

    def save_cache(self, cached: CachedCluster) -> None:
        self.ensure()
        atomic_write(self.path(CACHE), cached.to_json(), mode=0o600)
        self._cache = None  # read back at the next load, whatever its stat looks like

    # --- the status snapshot ------------------------------------------------------------------------

    def save_status(self, status: dict[str, Any]) -> None:
        self.ensure()
        document = dict(status, written_at=time.time())
        atomic_write(self.path(STATUS), json.dumps(document, sort_keys=True).encode("utf-8"), mode=0o644,
                     durable=False)  # rewritten at every step; a power cut may only roll it back

    def load_status(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.path(STATUS).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        except OSError as exc:
            raise StoreError(f"{self.path(STATUS)}: {exc.strerror}") from None
        return document if isinstance(document, dict) else None


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def known_clusters(state_dir: Path) -> list[str]:
    """Clusters with a cached secret in ``state_dir`` (what "all" means while the link is down)."""
    try:
        entries = sorted(os.listdir(state_dir))
    except OSError:  # missing, or not readable by this user (status run by an operator)
        return []
    return [name for name in entries if (state_dir / name / CACHE).is_file()]
