"""Footprint: ``lifeline-agent run`` idle with 3 and with 50 clusters, and over service-link flaps.

On each control-plane backend that can run here (``bench/backends.py``), in a lab of its own, one after the
other: agent processes one after the other, each started with the environment the systemd unit sets
(``Environment=`` of ``agent/systemd/lifeline-agent.service``):

- ``idle_3``: 3 clusters, production timings (probe every 30 s, verify every 5 minutes, 7-day certificates):
  start-up to READY, then resident memory and CPU time while idle (full: 10 minutes; quick: 1; smoke: 15 s).
- ``idle_many``: 50 clusters (quick 10, smoke 5), the same timings: resident memory once every cluster is ready
  and after an idle period, and what each cluster adds. Emulated backend only (``MANY_REAL`` says why).
- ``flaps``: 3 clusters, the link probed every second; the service link is cut until the agent logs
  "service link disconnected", then restored until it logs "connected": 100 times (quick 20, smoke 5). RSS
  after the first 10 % of the flaps (allocator and caches warm) against RSS after the last.

Memory is ``VmRSS``/``VmHWM`` from /proc/<pid>/status, CPU ``utime + stime`` from /proc/<pid>/stat. READY is
the first ``READY=1`` datagram on a NOTIFY_SOCKET this process owns.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS, describe, in_own_labs
from lab.agentkit import (
    REPO,
    AgentProcess,
    NotifySocket,
    agent_env,
    cpu_seconds,
    memory_kib,
    read_status,
    seeded_cluster,  # fmt: skip
    started_lab,
    wait_for,
    write_config,
)

IDLE_SECONDS = {"full": 600, "quick": 60, "smoke": 15}
IDLE_SECONDS_MANY = {"full": 120, "quick": 30, "smoke": 10}
MANY_CLUSTERS = {"full": 50, "quick": 10, "smoke": 5}
FLAPS = {"full": 100, "quick": 20, "smoke": 5}
CLUSTERS = 3
SAMPLE_EVERY = 10.0
UNIT = REPO / "agent" / "systemd" / "lifeline-agent.service"
# Production timings, but failures back off at most 30 s (not 15 min), so that a cluster hit by a start-up
# failure is ready again before the idle period starts; such failures are counted in the result.
TIMING = {"backoff_base": 10, "backoff_cap": 30, "csr_timeout": 120, "api_timeout": 10, "verify_interval": 300,
          "secret_refresh_interval": 900}  # fmt: skip
UNEXPECTED = "unexpected error in the reconcile loop"
LINK_LOGGED = {True: "service link connected", False: "service link disconnected"}


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The ``Environment=`` assignments of the systemd unit (what the deployed agent runs with)."""
    values: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line.removeprefix("Environment=")):
                name, _, value = word.partition("=")
                values[name] = value
    return values


class _Run:
    """One ``lifeline-agent run`` on ``clusters`` with the unit's environment."""

    def __init__(self, lab: Any, directory: Path, clusters: list[str], **settings: Any) -> None:
        self.clusters, self.state = clusters, directory / "agent" / "state"
        config = write_config(lab, directory / "agent", clusters, timing=TIMING, **settings)
        self.notify = NotifySocket(directory / "notify.sock")
        self.agent = AgentProcess(lab, config, directory / "agent.log", notify=self.notify,
                                  env={**agent_env(lab), **unit_environment()})  # fmt: skip

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        ready_at = wait_for(lambda: self.notify.first("READY=1"), 60, "READY=1")
        at_ready = memory_kib(self.agent.pid)
        wait_for(lambda: all(read_status(self.state, c).get("state") == "ready" for c in self.clusters), timeout,
                 "every cluster ready", interval=0.5)  # fmt: skip
        return {"startup_to_ready_seconds": round(ready_at - self.agent.started, 3),
                "startup_to_all_clusters_ready_seconds": round(time.monotonic() - self.agent.started, 3),
                "rss_kib_at_ready": at_ready.get("VmRSS"), "rss_kib_all_ready": memory_kib(self.agent.pid)["VmRSS"]}

    def idle(self, seconds: float) -> dict[str, Any]:
        time.sleep(5)  # let the first pass settle
        cpu_start, start, renewals = cpu_seconds(self.agent.pid), time.monotonic(), self.agent.renewals()
        samples = []
        while (elapsed := time.monotonic() - start) < seconds:
            time.sleep(min(SAMPLE_EVERY, seconds - elapsed))
            samples.append({"t": round(time.monotonic() - start, 1), **memory_kib(self.agent.pid),
                            "cpu_seconds": round(cpu_seconds(self.agent.pid) - cpu_start, 3)})  # fmt: skip
        idle_seconds, cpu = time.monotonic() - start, cpu_seconds(self.agent.pid) - cpu_start
        memory = memory_kib(self.agent.pid)
        return {"idle_seconds": round(idle_seconds, 1), "idle_cpu_seconds": round(cpu, 3),
                "idle_cpu_percent": round(100 * cpu / idle_seconds, 3), "idle_rss_kib_end": memory["VmRSS"],
                "idle_rss_kib_max_sampled": max(s["VmRSS"] for s in samples), "peak_rss_kib_vmhwm": memory["VmHWM"],
                "renewals_while_idle": self.agent.renewals() - renewals, "samples": samples}  # fmt: skip

    def link_logged(self, up: bool) -> int:
        return sum(r.get("message") == LINK_LOGGED[up] for r in self.agent.records())

    def finish(self) -> dict[str, Any]:
        alive = self.agent.alive()
        records = self.agent.records()
        exit_code = self.agent.stop()
        self.notify.close()
        return {"error_log_lines": sum(r.get("level") in ("ERROR", "CRITICAL") for r in records),
                "unexpected_reconcile_errors": [r.get("exception", "").strip().splitlines()[-1] for r in records
                                                if r.get("message") == UNEXPECTED],
                "alive_at_end": alive, "exit_code_after_sigterm": exit_code}  # fmt: skip


def _measured(lab: Any, directory: Path, clusters: list[str], body: Callable[[_Run], dict[str, Any]],
              **settings: Any) -> dict[str, Any]:  # fmt: skip
    directory.mkdir(parents=True)
    run = _Run(lab, directory, clusters, **settings)
    result: dict[str, Any] = {"clusters": len(clusters)}
    try:
        result.update(run.wait_ready(120 + 3 * len(clusters)))
        result.update(body(run))
    finally:
        result.update(run.finish())
    return result


def flap(lab: Any, run: _Run, count: int) -> dict[str, Any]:
    """Cut and restore the link ``count`` times, each time until the agent has logged the change."""
    warm = max(1, count // 10)
    samples, seconds = [], []
    for number in range(1, count + 1):
        started = time.monotonic()
        for up in (False, True):
            seen = run.link_logged(up)
            if up:
                lab.link.restore()
            else:
                lab.link.cut()
            wait_for(lambda: run.link_logged(up) > seen, 30, LINK_LOGGED[up], interval=0.2)  # noqa: B023
        seconds.append(time.monotonic() - started)
        if number in (warm, count) or number % 10 == 0:
            samples.append({"flaps": number, **memory_kib(run.agent.pid)})
    after_warm = next(s["VmRSS"] for s in samples if s["flaps"] == warm)
    end = memory_kib(run.agent.pid)["VmRSS"]
    return {"flaps": count, "flap_seconds_median": round(sorted(seconds)[len(seconds) // 2], 2),
            "rss_kib_after_warm_up": after_warm, "warm_up_flaps": warm, "rss_kib_after_flaps": end,
            "rss_growth_kib": end - after_warm, "flap_samples": samples}  # fmt: skip


MANY_REAL = ("emulated only: 50 real control planes are 150 processes (etcd, kube-apiserver, "
             "kube-controller-manager each) on this machine's 2 cores; bench/fleet.py runs 10 real clusters at most")


def measure(backend: str, variant: str, tmp: Path) -> dict[str, Any]:
    """idle_3, idle_many (emulated only) and flaps, one agent process after the other, in a lab of ``backend``."""
    with started_lab(tmp / "lab", control_plane=backend) as lab:
        few = [seeded_cluster(lab, "footprint") for _ in range(CLUSTERS)]
        idle_3 = _measured(lab, tmp / "idle-3", few, lambda r: r.idle(IDLE_SECONDS[variant]))
        idle_many: dict[str, Any] = {"not_measured": MANY_REAL}
        if backend == "emulated":
            many = few + [seeded_cluster(lab, "footprint") for _ in range(MANY_CLUSTERS[variant] - CLUSTERS)]
            idle_many = _measured(lab, tmp / "idle-many", many, lambda r: r.idle(IDLE_SECONDS_MANY[variant]))
        flaps = _measured(lab, tmp / "flaps", few, lambda r: flap(lab, r, FLAPS[variant]),
                          probe_interval="1s", probe_timeout="1s")  # fmt: skip
    result: dict[str, Any] = {"control_plane": describe(backend), "idle_3": idle_3, "idle_many": idle_many,
                              "flaps": flaps}  # fmt: skip
    if "clusters" in idle_many:
        grown = idle_many["idle_rss_kib_end"] - idle_3["idle_rss_kib_end"]
        result["rss_kib_per_extra_cluster"] = round(grown / (idle_many["clusters"] - CLUSTERS))
    result["agent_died_in"] = [name for name in ("idle_3", "idle_many", "flaps")
                               if result[name].get("alive_at_end") is False]  # fmt: skip
    many_text = (f"{idle_many['clusters']} clusters RSS {idle_many['idle_rss_kib_end']} KiB"
                 if "clusters" in idle_many else "no 50-cluster run")  # fmt: skip
    print(f"footprint [{backend}]: 3 clusters RSS {idle_3['idle_rss_kib_end']} KiB, idle CPU "
          f"{idle_3['idle_cpu_percent']} %; {many_text}; {flaps['flaps']} flaps: RSS {flaps['rss_kib_after_warm_up']} "
          f"-> {flaps['rss_kib_after_flaps']} KiB", flush=True)  # fmt: skip
    return result


def run(variant: str, backends: Sequence[str] = BACKENDS) -> dict[str, Any]:
    measured, failures = in_own_labs("footprint", variant, backends, measure)
    failures += [f"footprint [{backend}] {part}: the agent died" for backend, figures in measured.items()
                 for part in figures.get("agent_died_in", [])]  # fmt: skip
    return {
        "what": "lifeline-agent run with the systemd unit's environment; production timings (backoff cap 30 s) "
                "for idle_3 and idle_many (idle = all clusters ready, no renewal due); flaps: probe every 1 s; "
                "each control-plane backend in a lab of its own, one after the other",
        "unit_environment": unit_environment(),
        "backends": measured,
        **({"failures": failures} if failures else {}),
    }  # fmt: skip
