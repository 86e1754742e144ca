"""Footprint: ``lifeline-agent run`` with three clusters: start-up to READY, then resident memory and CPU
time while idle (full: 10 minutes; quick: 1 minute), from /proc/<pid>/status and /proc/<pid>/stat.

Production timings (probe every 30 s, verify every 5 minutes, 7-day certificates), only the addresses
point at the lab. READY is the first ``READY=1`` datagram on a NOTIFY_SOCKET this process owns.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from lab.agentkit import (
    AgentProcess,
    NotifySocket,
    cpu_seconds,
    isolate_from_aws,
    memory_kib,
    read_status,
    seeded_cluster,  # fmt: skip
    started_lab,
    wait_for,
    write_config,
)

IDLE_SECONDS = {"full": 600, "quick": 60, "smoke": 15}
CLUSTERS = 3
SAMPLE_EVERY = 10.0
# Production timings, but failures back off at most 30 s (not 15 min), so that a cluster hit by a start-up
# failure is ready again before the idle period starts; such failures are counted in the result.
TIMING = {"backoff_base": 10, "backoff_cap": 30, "csr_timeout": 120, "api_timeout": 10, "verify_interval": 300,
          "secret_refresh_interval": 900}  # fmt: skip
UNEXPECTED = "unexpected error in the reconcile loop"


def run(variant: str) -> dict[str, Any]:
    isolate_from_aws()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp, started_lab(Path(tmp) / "lab") as lab:
        clusters = [seeded_cluster(lab, "footprint") for _ in range(CLUSTERS)]
        config = write_config(lab, Path(tmp) / "agent", clusters, timing=TIMING)
        state = Path(tmp) / "agent" / "state"
        notify = NotifySocket(Path(tmp) / "notify.sock")
        agent = AgentProcess(lab, config, Path(tmp) / "agent.log", notify=notify)
        try:
            ready_at = wait_for(lambda: notify.first("READY=1"), 60, "READY=1")
            memory_at_ready = memory_kib(agent.pid)
            wait_for(lambda: all(read_status(state, c).get("state") == "ready" for c in clusters), 120,
                     "every cluster ready")  # fmt: skip
            all_ready_at = time.monotonic()
            time.sleep(5)  # let the first pass settle
            cpu_start, idle_start = cpu_seconds(agent.pid), time.monotonic()
            renewals_start = agent.renewals()
            samples = []
            while (elapsed := time.monotonic() - idle_start) < IDLE_SECONDS[variant]:
                time.sleep(min(SAMPLE_EVERY, IDLE_SECONDS[variant] - elapsed))
                samples.append({"t": round(time.monotonic() - idle_start, 1), **memory_kib(agent.pid),
                                "cpu_seconds": round(cpu_seconds(agent.pid) - cpu_start, 3)})  # fmt: skip
            idle_seconds = time.monotonic() - idle_start
            cpu_idle = cpu_seconds(agent.pid) - cpu_start
            memory_end = memory_kib(agent.pid)
            renewals_idle = agent.renewals() - renewals_start
            alive = agent.alive()
            errors = [r for r in agent.records() if r.get("level") in ("ERROR", "CRITICAL")]
            startup_failures = [r.get("exception", "").strip().splitlines()[-1] for r in agent.records()
                                if r.get("message") == UNEXPECTED]  # fmt: skip
        finally:
            exit_code = agent.stop()
            notify.close()
    result = {
        "what": f"lifeline-agent run, {CLUSTERS} clusters, production timings (backoff cap 30 s); "
                "idle = all clusters ready, no renewal due",
        "clusters": CLUSTERS,
        "startup_to_ready_seconds": round(ready_at - agent.started, 3),
        "startup_to_all_clusters_ready_seconds": round(all_ready_at - agent.started, 3),
        "rss_kib_at_ready": memory_at_ready.get("VmRSS"),
        "idle_seconds": round(idle_seconds, 1),
        "idle_cpu_seconds": round(cpu_idle, 3),
        "idle_cpu_percent": round(100 * cpu_idle / idle_seconds, 3),
        "idle_rss_kib_end": memory_end.get("VmRSS"),
        "idle_rss_kib_max_sampled": max(s["VmRSS"] for s in samples),
        "peak_rss_kib_vmhwm": memory_end.get("VmHWM"),
        "renewals_while_idle": renewals_idle,
        "error_log_lines": len(errors),
        "unexpected_reconcile_errors": startup_failures,
        "alive_after_idle": alive,
        "exit_code_after_sigterm": exit_code,
        "samples": samples,
    }
    print(f"footprint: READY after {result['startup_to_ready_seconds']} s, RSS {result['idle_rss_kib_end']} KiB "
          f"(peak {result['peak_rss_kib_vmhwm']}), idle CPU {result['idle_cpu_percent']} %", flush=True)
    return result
