"""Kubeconfig building and atomic file writing: the one implementation every part uses.

A kubeconfig made here works without DNS when given an IP: ``server: https://<ip>:<port>`` with
``tls-server-name: <endpoint host>``, so the API server's certificate is still checked against
the name it was issued for.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig ``exec`` credential plugin (for IAM kubeconfigs)."""

    command: str
    args: Sequence[str] = ()
    env: dict[str, str] | None = None
    api_version: str = "client.authentication.k8s.io/v1beta1"

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "apiVersion": self.api_version,
            "command": self.command,
            "args": list(self.args),
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }
        if self.env:
            entry["env"] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        return entry


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    user_name: str,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    exec_plugin: ExecPlugin | None = None,
    tls_server_name: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A single-context kubeconfig with embedded CA and either a client certificate or an exec plugin."""
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("client_cert_pem and client_key_pem go together")
    if (client_cert_pem is None) == (exec_plugin is None):
        raise ValueError("give exactly one credential: a client certificate and key, or an exec plugin")
    cluster: dict[str, Any] = {"server": server, "certificate-authority-data": _b64(ca_pem)}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    user: dict[str, Any]
    if exec_plugin is not None:
        user = {"exec": exec_plugin.as_dict()}
    elif client_cert_pem is not None and client_key_pem is not None:
        user = {
            "client-certificate-data": _b64(client_cert_pem),
            "client-key-data": _b64(client_key_pem),
        }
    else:
        raise ValueError("give exactly one credential: a client certificate and key, or an exec plugin")
    context: dict[str, Any] = {"cluster": cluster_name, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": cluster_name, "context": context}],
        "current-context": cluster_name,
        "preferences": {},
    }


# libyaml (in PyYAML's wheels) parses and writes a kubeconfig ~10x faster than the pure-Python classes, which
# were a third of a renewal's time; the results are the same documents.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_kubeconfig(config: dict[str, Any]) -> bytes:
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False).encode("utf-8")


def load_kubeconfig(data: bytes) -> dict[str, Any]:
    """Parse a kubeconfig; ``ValueError`` when it is not one (truncated, garbage, wrong shape)."""
    try:
        config = yaml.load(data, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValueError(f"kubeconfig is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or config.get("kind") != "Config":
        raise ValueError("kubeconfig has no 'kind: Config' document")
    for key in ("clusters", "users", "contexts"):
        if not isinstance(config.get(key), list) or not config[key]:
            raise ValueError(f"kubeconfig has no {key}")
    return config


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, group: str | None = None,
                 durable: bool = True) -> None:  # fmt: skip
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    Temp file in the same directory, created with ``mode`` (never wider), fsync, rename, fsync of
    the directory. The temp file is removed if anything fails. ``durable=False`` leaves out both fsyncs,
    for snapshots rewritten at every step that a power cut may roll back or empty (readers still see one
    whole file).
    """
    path = Path(path)
    tmp_name = _written_temp_file(path, data, mode=mode, group=group, durable=durable)
    try:
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        _fsync_directory(path.parent)


def write_new_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` with ``data``, whole or not at all, never replacing anything that is there
    (a file, a symlink, or one made a moment ago): :class:`FileExistsError` then.

    Temp file in the same directory, fsync, hard link to ``path`` (which fails if the name exists), removal
    of the temp name, fsync of the directory.
    """
    path = Path(path)
    tmp_name = _written_temp_file(path, data, mode=mode, group=None, durable=True)
    try:
        os.link(tmp_name, path, follow_symlinks=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    _fsync_directory(path.parent)


def _written_temp_file(path: Path, data: bytes, *, mode: int, group: str | None, durable: bool) -> str:
    """A temp file beside ``path`` holding ``data`` (``mode``, ``group``); removed again if anything fails."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, grp.getgrnam(group).gr_gid)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return tmp_name


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
