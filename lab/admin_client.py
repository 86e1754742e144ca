"""The client side of a running lab's admin API: its state directory's ``env`` file and the loopback
``LAB_ADMIN_URL`` that ``python -m lab up`` serves. Used by the CLI's ``status``/``link``/``down`` and by
the drill, so neither has to import the other."""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class LabNotRunning(RuntimeError):
    """No lab answers at the admin URL recorded in the state directory."""


def read_env_file(state_dir: Path) -> dict[str, str]:
    path = state_dir / "env"
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, _, value = parts[1].partition("=")
            values[key] = value
    return values


def admin_request(state_dir: Path, method: str, path: str, timeout: float = 10.0) -> dict[str, Any]:
    url = read_env_file(state_dir).get("LAB_ADMIN_URL")
    if not url:
        raise LabNotRunning(f"no running lab in {state_dir} (no LAB_ADMIN_URL in {state_dir / 'env'})")
    if not url.startswith("http://127.0.0.1:"):
        raise LabNotRunning(f"LAB_ADMIN_URL {url!r} is not a loopback http URL")
    request = urllib.request.Request(  # noqa: S310 - checked above: loopback http only
        f"{url}{path}", method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback admin API
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError) as exc:
        raise LabNotRunning(f"no lab answers at {url}: {exc}") from exc
