"""The post-install hook (``post_install_hook`` of a cluster): an operator's command run after each verified
install of the cluster's kubeconfig, e.g. to copy it to the operators' jump host.

The hook gets the cluster name, the kubeconfig path and the certificate's notAfter (ISO 8601, UTC) as its last
three arguments, and the same as ``LIFELINE_CLUSTER``, ``LIFELINE_KUBECONFIG``, ``LIFELINE_NOT_AFTER``
(with ``LIFELINE_NOT_AFTER_EPOCH``) and ``LIFELINE_INSTALL`` (``new-certificate`` or ``new-server``: the same
certificate, verified against another control-plane address) in its environment. That environment is minimal:
these, ``PATH``, ``LANG``, ``LC_*``, ``TZ`` and ``HOME`` (those four when the agent has them), nothing else of
the agent's (no ``AWS_*`` credentials).

It runs after the install, never before nor for a failed one, on a thread of its own: renewal neither waits
for it nor looks at its outcome, so a hook cannot block or undo an install. Each cluster's hooks run one at a
time, in install order. The outcome (``success``, ``failure``, ``timeout``) is the hook's own exit status: a
process it leaves behind is not waited for, even one holding its stderr open (which is read only until the
hook exits). A hook still running after ``post_install_hook_timeout`` is killed with its whole process group
(SIGTERM, SIGKILL ``KILL_GRACE`` s later), so a hook's thread is busy at most about its timeout plus twice
``KILL_GRACE``. The outcome is logged, with the end of its stderr (redacted) when it failed, and counted in
``lifeline_install_hooks``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from lifeline_agent.config import ClusterSettings
from lifeline_agent.observability import Observer, redact

log = logging.getLogger(__name__)

STDERR_TAIL = 2000  # characters of a failed hook's stderr that go into the log
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a hook past its timeout, and at most after SIGKILL
POLL_INTERVAL = 0.05  # seconds between looks at whether the hook has exited, while its stderr is open
_KEPT_ENVIRONMENT = ("LANG", "TZ", "HOME")  # with PATH and LC_*: all the hook gets of the agent's environment
_READ_SIZE = 1 << 16
_LAST_READS = 16  # at most this many reads of stderr once the hook has exited (a child may still write)
_pending = threading.Condition()
_pending_count = 0


@dataclass(frozen=True)
class HookOutcome:
    result: str  # success, failure or timeout
    detail: str
    seconds: float


@dataclass(frozen=True)
class _Install:
    kubeconfig: Path
    not_after: float
    kind: str


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _environment(*, cluster: str, kubeconfig: Path, not_after: float, kind: str) -> dict[str, str]:
    """The hook's whole environment: the install's ``LIFELINE_*`` and the locale, time zone, PATH and HOME."""
    kept = {k: v for k, v in os.environ.items() if k in _KEPT_ENVIRONMENT or k.startswith("LC_")}
    return {**kept, "PATH": os.environ.get("PATH", os.defpath), "LIFELINE_CLUSTER": cluster,
            "LIFELINE_KUBECONFIG": str(kubeconfig), "LIFELINE_NOT_AFTER": _utc(not_after),
            "LIFELINE_NOT_AFTER_EPOCH": str(int(not_after)), "LIFELINE_INSTALL": kind}  # fmt: skip


def run_hook(argv: tuple[str, ...], *, cluster: str, kubeconfig: Path, not_after: float, kind: str,
             timeout: float) -> HookOutcome:  # fmt: skip
    """Run the hook once and wait for it to exit, at most ``timeout`` seconds (then it is killed)."""
    environment = _environment(cluster=cluster, kubeconfig=kubeconfig, not_after=not_after, kind=kind)
    started = time.monotonic()
    try:
        process = subprocess.Popen([*argv, cluster, str(kubeconfig), _utc(not_after)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment,
                                   cwd=kubeconfig.parent, start_new_session=True, close_fds=True)  # fmt: skip
    except OSError as exc:
        return HookOutcome("failure", f"cannot start {argv[0]}: {exc.strerror or exc}", 0.0)
    with cast(IO[bytes], process.stderr) as pipe:  # stderr=PIPE: never None
        stderr = _StderrTail(pipe.fileno())
        code = _wait(process, stderr, timeout)
    if code is None:
        _kill(process)
        return HookOutcome("timeout", f"still running after {timeout:g} s: killed", time.monotonic() - started)
    elapsed = time.monotonic() - started
    if code == 0:
        return HookOutcome("success", "exit status 0", elapsed)
    status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    tail = redact(stderr.data.decode("utf-8", "replace")[-STDERR_TAIL:]).strip()
    return HookOutcome("failure", f"{status}" + (f"; stderr: {tail}" if tail else ""), elapsed)


class _StderrTail:
    """The last bytes read from a pipe, one bounded read at a time, never blocking."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd, self.data, self.open = fd, b"", True
        self._poll = select.poll()  # not select.select: the agent's descriptors may go past FD_SETSIZE
        self._poll.register(fd, select.POLLIN)

    def readable(self, seconds: float) -> bool:
        return bool(self._poll.poll(seconds * 1000))

    def read(self) -> bool:
        """One read; False when nothing was there (or the pipe is closed)."""
        try:
            chunk = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return False
        self.open = bool(chunk)
        self.data = (self.data + chunk)[-4 * STDERR_TAIL :]
        return self.open


def _wait(process: subprocess.Popen[bytes], stderr: _StderrTail, timeout: float) -> int | None:
    """The hook's exit status, or None when it is still running after ``timeout`` s; its stderr meanwhile."""
    deadline = time.monotonic() + timeout
    while (code := process.poll()) is None and (left := deadline - time.monotonic()) > 0:
        if not stderr.open:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(left)
        elif stderr.readable(min(left, POLL_INTERVAL)):
            stderr.read()
    if code is not None:
        for _ in range(_LAST_READS):  # what it wrote just before it exited
            if not stderr.read():
                break
    return code


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hook's process group, SIGKILL to what is left of it ``KILL_GRACE`` s later; bounded."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            process.poll()  # reaps the hook itself: a zombie would keep its group alive
            os.killpg(process.pid, 0)  # ProcessLookupError once the group is empty
            time.sleep(POLL_INTERVAL)
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(KILL_GRACE)


class InstallHook:
    """One cluster's hook: :meth:`installed` queues a run and returns at once."""

    def __init__(self, settings: ClusterSettings, observer: Observer | None = None) -> None:
        self.cluster, self.argv = settings.name, settings.post_install_hook
        self.timeout, self.observer = settings.post_install_hook_timeout, observer
        self._queue: queue.SimpleQueue[_Install] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def installed(self, kubeconfig: Path, not_after: float, kind: str = "new-certificate") -> None:
        """A verified kubeconfig was just installed: run the hook (if any) in the background. Never raises."""
        global _pending_count
        if not self.argv:
            return
        with self._lock:  # the worker takes from the queue, or ends, only under this lock
            if self._worker is None:
                worker = threading.Thread(target=self._work, name=f"hook-{self.cluster}", daemon=True)
                try:
                    worker.start()
                except RuntimeError as exc:  # no thread to be had (the unit's TasksMax): this install gets no hook
                    log.error("post-install hook not run: %s", exc, extra={"cluster": self.cluster})
                    self._count("failure")
                    return
                self._worker = worker
            with _pending:
                _pending_count += 1
            self._queue.put(_Install(kubeconfig, not_after, kind))

    def _work(self) -> None:
        """Run the queued hooks, then end: an idle cluster keeps no thread (the unit's TasksMax counts them)."""
        global _pending_count
        while True:
            with self._lock:
                try:
                    install = self._queue.get_nowait()
                except queue.Empty:
                    self._worker = None
                    return
            try:
                self._run(install)
            except Exception:  # a bug here must not stop later hooks (nor reach renewal)
                log.exception("unexpected error running the post-install hook", extra={"cluster": self.cluster})
            finally:
                with _pending:
                    _pending_count -= 1
                    _pending.notify_all()

    def _run(self, install: _Install) -> None:
        outcome = run_hook(self.argv, cluster=self.cluster, kubeconfig=install.kubeconfig,
                           not_after=install.not_after, kind=install.kind, timeout=self.timeout)  # fmt: skip
        extra = {"cluster": self.cluster, "hook": self.argv[0], "result": outcome.result,
                 "seconds": round(outcome.seconds, 3), "install": install.kind}  # fmt: skip
        if outcome.result == "success":
            log.info("post-install hook succeeded", extra=extra)
        else:
            log.warning("post-install hook %s: %s (the installed kubeconfig stays)", outcome.result,
                        outcome.detail, extra=extra)  # fmt: skip
        self._count(outcome.result)

    def _count(self, result: str) -> None:
        if self.observer is not None:
            self.observer.install_hook(self.cluster, result)


def wait_for_hooks(timeout: float) -> bool:
    """Wait until no hook of this process is queued or running, at most ``timeout`` s; True when none is."""
    deadline = time.monotonic() + timeout
    with _pending:
        while _pending_count > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _pending.wait(left)
        return True
