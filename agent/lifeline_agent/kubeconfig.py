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
import secrets
import stat
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


@dataclass(frozen=True)
class NewFile:
    """What :func:`replace_files` puts at ``path``: ``data``, or the inode of ``same_as`` (a durable file) linked."""

    path: Path
    data: bytes = b""
    mode: int = 0o600
    group: str | None = None
    same_as: Path | None = None


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, group: str | None = None,
                 durable: bool = True) -> None:  # fmt: skip
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix (:func:`replace_files`).

    ``durable=False`` leaves out the fsyncs, for snapshots rewritten at every step that a power cut may roll back
    or empty (readers still see one whole file).
    """
    replace_files([NewFile(Path(path), data, mode, group)], durable=durable)


def write_new_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` with ``data``, whole or not at all, never replacing anything that is there
    (a file, a symlink, or one made a moment ago): :class:`FileExistsError` then.

    A temp file beside it (fsynced), hard-linked to ``path`` (which fails if the name exists), the temp name
    removed, the directory fsynced; if that last part fails, ``path`` is removed again.
    """
    path = Path(path)
    name = _temp_file(NewFile(path, data, mode), durable=True)
    try:
        os.link(name, path, follow_symlinks=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    try:
        _fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def replace_files(files: Sequence[NewFile], *, durable: bool = True) -> None:
    """Replace each file atomically, in the order given, all durable when this returns.

    Each new content goes to a temp file beside its file, created with its mode (never wider) and fsynced
    (``durable``); only when every one is written are they renamed over the files, one after the other, and
    then each directory is fsynced once. A ``same_as`` file is hard-linked instead of copied: its data is on
    disk already. The temp files not renamed are removed if anything fails.
    """
    temps: list[str] = []
    try:
        for file in files:
            temps.append(_temp_file(file, durable))
        for file in files:
            os.replace(temps[0], file.path)
            temps.pop(0)
    finally:
        for name in temps:
            with contextlib.suppress(OSError):
                os.unlink(name)
    for directory in dict.fromkeys(file.path.parent for file in files) if durable else ():
        _fsync_directory(directory)


def _temp_file(file: NewFile, durable: bool) -> str:
    """A temp file beside ``file.path`` with its new content; its name."""
    if file.same_as is not None:
        name = os.path.join(file.path.parent, f".{file.path.name}.{secrets.token_hex(6)}.tmp")
        found = os.stat(file.same_as)
        group_id = -1 if file.group is None else grp.getgrnam(file.group).gr_gid
        if stat.S_IMODE(found.st_mode) == file.mode and group_id in (-1, found.st_gid):
            with contextlib.suppress(OSError):  # no hard links on this file system: copied below
                os.link(file.same_as, name)
                return name
        file = NewFile(file.path, file.same_as.read_bytes(), file.mode, file.group)  # a copy, these permissions
    fd, name = tempfile.mkstemp(prefix=f".{file.path.name}.", suffix=".tmp", dir=file.path.parent)
    try:
        os.fchmod(fd, file.mode)
        if file.group is not None:
            os.fchown(fd, -1, grp.getgrnam(file.group).gr_gid)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(file.data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):  # the cause matters more than a temp file a read-only disk keeps
            os.unlink(name)
        raise
    return name


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
