"""File-system trust, the way sshd treats its files: the agent uses a configuration file, a credential
file or a state directory only if nobody but root and the agent's own user can change it (nor, for a
credential, read it), along the whole path; and the directories it creates are private from the start.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIRECTORY_MODE = 0o700
SHARED_DIRECTORY_MODE = 0o750  # with the operators' group: members may reach the kubeconfigs


class UnsafePathError(ValueError):
    """A path others could change (or read, for a credential); the message names the path and the fix."""


def _components(path: Path) -> list[Path]:
    """``path`` and its ancestors up to ``/``, both as written and symlinks resolved, leaf first."""
    absolute = Path(os.path.abspath(path))
    seen: dict[Path, None] = {}
    for candidate in (absolute, Path(os.path.realpath(absolute))):
        for component in (candidate, *candidate.parents):
            seen.setdefault(component, None)
    return list(seen)


def _check_component(path: Path, info: os.stat_result, *, leaf: bool, check_owner: bool) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if check_owner and info.st_uid not in (0, os.geteuid()):
        raise UnsafePathError(
            f"{path} is owned by uid {info.st_uid}, neither root nor this user (uid {os.geteuid()}), who could "
            f"change it: run `chown root {path}` (or chown it to the agent's user)"
        )
    # A sticky directory (like /tmp) lets others add entries but not replace or remove ours.
    if mode & 0o022 and (leaf or not (stat.S_ISDIR(info.st_mode) and mode & stat.S_ISVTX)):
        raise UnsafePathError(f"{path} is writable by its group or others (mode {mode:04o}): run `chmod go-w {path}`")


def check_trusted(path: Path, *, owner_of_leaf: bool = True) -> None:
    """Refuse ``path`` if it or a directory above it can be changed by anyone but root or this user.

    Missing components (a state directory not made yet) are skipped. ``owner_of_leaf=False`` accepts
    a leaf owned by another user (an operator reading the agent's state directory), not a writable one.
    """
    components = _components(path)
    for component in components:
        try:
            info = component.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnsafePathError(f"{component}: cannot check its owner and mode ({exc.strerror or exc})") from None
        if stat.S_ISLNK(info.st_mode):
            continue  # the resolved path is checked too
        leaf = component in (components[0], Path(os.path.realpath(path)))
        _check_component(component, info, leaf=leaf, check_owner=owner_of_leaf or not leaf)


def check_credential_file(path: Path) -> None:
    """Refuse a file holding a credential if others could read it or change it (or a directory above it)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UnsafePathError(
            f"{path} holds a credential but is readable or writable by its group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`"
        )
    check_trusted(path)


def make_private_directories(directory: Path, *, group_id: int | None = None) -> None:
    """Create ``directory`` and its missing parents, each 0700, or 0750 to ``group_id``, whatever the umask.

    ``mkdir(parents=True)`` would give the parents the umask's mode (0755 for root's usual 022).
    """
    mode = PRIVATE_DIRECTORY_MODE if group_id is None else SHARED_DIRECTORY_MODE
    missing = [d for d in (directory, *directory.parents) if not d.is_dir()]
    for new in reversed(missing):
        try:
            new.mkdir(mode=PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            if not new.is_dir():
                raise
            continue  # made by a concurrent thread: it made it the same way
        if group_id is not None:
            os.chown(new, -1, group_id)
        new.chmod(mode)
