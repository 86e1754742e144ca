"""Control-plane backends of a benchmark: each one that can run here is measured in turn, the others are recorded as
skipped with the reason (``{"skipped": why}``), a failed one as ``{"failed": what}`` while the others still count.

``emulated`` is the lab's API server (:mod:`lab.controlplane`); ``real`` is etcd + kube-apiserver +
kube-controller-manager from ``../shared/kube`` (:mod:`lab.controlplane.real`). The lab is imported only when a
backend is measured, so ``python -m bench --help`` stays light.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BACKENDS = ("emulated", "real")


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or ``None``."""
    if backend == "real":
        from lab.controlplane.real import unavailable_reason

        return unavailable_reason()
    return None


def describe(backend: str) -> str:
    """What ``backend`` is, for a benchmark with one control plane per cluster."""
    if backend == "real":
        from lab.controlplane.real import KUBE_VERSION

        return f"real: etcd + kube-apiserver + kube-controller-manager {KUBE_VERSION} per cluster (separate processes)"
    return "emulated: the lab's API server, one per cluster, in the benchmark's process"


def kubernetes_version(backend: str) -> dict[str, str]:
    """``{"kubernetes_version": ...}`` for the real backend, nothing for the emulated one."""
    if backend != "real":
        return {}
    from lab.controlplane.real import KUBE_VERSION

    return {"kubernetes_version": KUBE_VERSION}


def on_each_backend(name: str, backends: Sequence[str],
                    measure: Callable[[str], dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """``measure(backend)`` for each of ``backends`` that can run here: ``(figures by backend, failures)``."""
    measured: dict[str, Any] = {}
    failures: list[str] = []
    for backend in backends:
        reason = unavailable(backend)
        if reason is not None:
            measured[backend] = {"skipped": reason}
            print(f"{name} [{backend}]: skipped: {reason}", flush=True)
            continue
        started = time.monotonic()
        try:
            measured[backend] = {**measure(backend), **kubernetes_version(backend)}
        except Exception as exc:  # noqa: BLE001 - recorded; the other backend's figures still count
            measured[backend] = {"failed": f"{type(exc).__name__}: {str(exc)[-500:]}"}
            failures.append(f"{name} [{backend}]: {measured[backend]['failed']}")
            print(failures[-1], flush=True)
        measured[backend]["wall_seconds"] = round(time.monotonic() - started, 1)
    return measured, failures


def in_own_labs(name: str, variant: str, backends: Sequence[str],
                measure: Callable[[str, str, Path], dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """``measure(backend, variant, scratch)`` on each backend in a lab of its own (a fresh scratch directory, no
    route to AWS): ``(figures by backend, failures)``."""
    from lab.agentkit import isolate_from_aws

    isolate_from_aws()

    def in_own_lab(backend: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-{backend}-") as scratch:
            return measure(backend, variant, Path(scratch))

    return on_each_backend(name, backends, in_own_lab)
