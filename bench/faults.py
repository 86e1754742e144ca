"""Faults injected at the steps of a renewal, from the lab's side (the agent is not changed).

A renewal is, on the wire: create the CSR, approve it, poll it for the certificate, then prove the new
kubeconfig (SelfSubjectReview, read the ``kubernetes`` service); then the agent installs it on disk.
:class:`StepHook` runs an action inside the lab's API server when a request of a given step arrives
(raise a 500, stall past the client's timeout, cut the service link, SIGKILL the agent...).
:class:`SmallDisk` is a tmpfs state directory that can be filled up or made read-only.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CSR_COLLECTION = r"/apis/certificates\.k8s\.io/v1/certificatesigningrequests"


@dataclass(frozen=True)
class Step:
    name: str
    method: str
    path: re.Pattern[str]
    occurrence: int = 1  # the n-th matching request of a renewal (the CSR is read once to approve it)


RENEWAL_STEPS = (
    Step("create-csr", "POST", re.compile(CSR_COLLECTION + "$")),
    Step("approve", "PUT", re.compile(CSR_COLLECTION + "/[^/]+/approval$")),
    Step("wait-certificate", "GET", re.compile(CSR_COLLECTION + "/[^/]+$")),  # the first poll: approval reads none
    Step("verify-identity", "POST", re.compile(r"/selfsubjectreviews$")),
    Step("verify-read", "GET", re.compile(r"/api/v1/namespaces/default/services/kubernetes$")),
)
STEPS = {step.name: step for step in RENEWAL_STEPS}


class StepHook:
    """Runs ``action(request)`` in the API server when ``step``'s request arrives (once), then serves it.

    Requests are counted from the CSR's creation, so the verification of the *installed* kubeconfig
    (same paths) does not trigger ``verify-*`` steps before a renewal started.
    """

    def __init__(self, control_plane: Any, step: Step, action: Callable[[Any], None]) -> None:
        self.app, self.step, self.action = control_plane.app, step, action
        self.fired = threading.Event()
        self._seen = 0
        self._renewing = False
        self._lock = threading.Lock()

    def _handle(self, request: Any) -> Any:
        with self._lock:
            fire = self._matches(request.method, request.path)
        if fire:
            self.fired.set()
            self.action(request)
        return type(self.app).handle(self.app, request)

    def _matches(self, method: str, path: str) -> bool:
        if self.fired.is_set():
            return False
        if method == "POST" and re.search(CSR_COLLECTION + "$", path):
            self._renewing = True
        if not self._renewing or method != self.step.method or not self.step.path.search(path):
            return False
        self._seen += 1
        return self._seen == self.step.occurrence

    def __enter__(self) -> StepHook:
        self.app.handle = self._handle
        return self

    def __exit__(self, *_: object) -> None:
        del self.app.handle


def server_error(_request: Any) -> None:
    """The API server answers this request with a 500 ``Status``."""
    from lab.controlplane import errors

    raise errors.internal_error("injected fault: the API server failed this request")


def stall(seconds: float) -> Callable[[Any], None]:
    """The connection hangs (a cut link to the control plane looks like this): no answer for ``seconds``."""
    return lambda _request: time.sleep(seconds)


def kill_after(pid_of: Callable[[], int], delay: float = 0.0) -> Callable[[Any], None]:
    """SIGKILL the process ``pid_of()`` now, or ``delay`` seconds later (past the last request of a step)."""

    def action(_request: Any) -> None:
        pid = pid_of()
        if delay <= 0:
            os.kill(pid, 9)
        else:
            threading.Timer(delay, os.kill, (pid, 9)).start()

    return action


class MountNotPermitted(RuntimeError):
    """This host does not let the tests mount a tmpfs (not root, or no CAP_SYS_ADMIN)."""


class SmallDisk:
    """A small tmpfs at ``path``: :meth:`fill` leaves no free block, :meth:`read_only` remounts it ro."""

    def __init__(self, path: Path, size: str = "256k") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                                capture_output=True, text=True, check=False)  # fmt: skip
        if result.returncode != 0:
            raise MountNotPermitted(result.stderr.strip() or "mount failed")
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until ENOSPC; the filesystem has no free block left."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

    def hog(self, stop: threading.Event) -> None:
        """Keep the filesystem full until ``stop``: every block something frees is taken again at once."""
        while not stop.is_set():
            self.fill()
            stop.wait(0.0005)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.path)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@contextmanager
def small_disk(path: Path, size: str = "256k") -> Iterator[SmallDisk]:
    disk = SmallDisk(path, size)
    try:
        yield disk
    finally:
        disk.close()


def leftovers(directory: Path) -> list[str]:
    """Temporary files a write or a session left behind in ``directory`` (names starting with a dot)."""
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in directory.iterdir() if entry.name.startswith("."))
