"""The local ledger of personal kubeconfigs (``lifeline-agent grant``): ``<state_dir>/<cluster>/grants.json``.

One record per grant: for whom, who asked, the certificate's serial, fingerprint and validity, where the
kubeconfig went. Never a key nor a certificate. Read-modify-write under an exclusive lock
(``grants.lock``), written atomically (0600, or 0640 to the operators' Unix group, like the kubeconfig).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lifeline_agent.kubeconfig import atomic_write

LEDGER, LOCK = "grants.json", "grants.lock"
KEPT = 1000  # the oldest records beyond this are dropped (their certificates expired long ago)


class LedgerError(Exception):
    """The ledger is unreadable or corrupt; the message names the file."""


@dataclass(frozen=True)
class Grant:
    """One personal kubeconfig as the ledger records it (epoch seconds for times)."""

    cluster: str
    user: str
    group: str
    requested_by: str
    serial: str
    fingerprint_sha256: str
    not_before: float
    not_after: float
    issued_at: float
    output: str
    server: str
    csr: str

    def state(self, now: float) -> str:
        """``active`` until the certificate expires, then ``expired``; deleting the operators' binding revokes
        every grant, which only the API server knows (``kubectl auth whoami`` with it then fails)."""
        return "active" if now < self.not_after else "expired"

    @classmethod
    def from_dict(cls, data: object) -> Grant:
        if not isinstance(data, dict):
            raise ValueError("a grant record is not a JSON object")
        values: dict[str, Any] = {}
        for item in fields(cls):
            value = data.get(item.name)
            wanted = (int, float) if item.type == "float" else str
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"grant record: {item.name} is {type(value).__name__}, not {item.type}")
            values[item.name] = float(value) if item.type == "float" else value
        return cls(**values)


class Ledger:
    """The grants of one cluster directory."""

    def __init__(self, directory: Path, *, operators_group: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LEDGER
        self.operators_group = operators_group

    def grants(self) -> list[Grant]:
        """Every recorded grant, oldest first; ``[]`` when nothing was granted yet."""
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerError(f"{self.path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise LedgerError(f"{self.path}: not JSON ({exc})") from None
        try:
            records = document["grants"] if isinstance(document, dict) else None
            if not isinstance(records, list):
                raise ValueError("no list 'grants'")
            return [Grant.from_dict(record) for record in records]
        except ValueError as exc:
            raise LedgerError(f"{self.path}: {exc}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's lock (one grant at a time per cluster)."""
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def check_writable(self) -> None:
        """:class:`LedgerError` (before anything is issued) when this user cannot record a grant."""
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise LedgerError(f"{self.directory}: not writable by this user (uid {os.geteuid()}), so the grant "
                              "could not be recorded; run it as root (sudo) or as the agent's user")  # fmt: skip
        self.grants()

    def record(self, grant: Grant) -> None:
        """Append ``grant`` (call under :meth:`locked`)."""
        records = [asdict(g) for g in self.grants()] + [asdict(grant)]
        data = json.dumps({"grants": records[-KEPT:]}, indent=2, sort_keys=True).encode("utf-8")
        mode = 0o640 if self.operators_group else 0o600
        atomic_write(self.path, data, mode=mode, group=self.operators_group)
