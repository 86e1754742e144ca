"""Long outage with short certificates: the service link is down (full: 10 minutes; quick: 2 minutes) while
``lifeline-agent run`` keeps a 60-second-certificate kubeconfig current and kubectl uses it every 2 seconds.

The schedule is the agent's own rule (``lifeline_agent.deadline.renewal_deadline`` through ``bench/schedule.py``:
the kubelet's 70-90 % of the lifetime, or of what was left when the certificate arrived where the kubelet's
point had passed by then, as it has for most draws with the signer's 5-minute backdate): every renewal must
land between its predecessor's earliest and latest deadline (plus the step's own time) and before the
predecessor's notAfter, and the number of renewals must match the count the rule predicts (within 3 standard
deviations). The shortest time between two renewals is recorded too.

On each control-plane backend that can run here (``bench/backends.py``), one after the other.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS, describe, in_own_labs
from bench.common import spread
from bench.schedule import deadline_window, deadlines
from lab.agentkit import (
    RENEWED,
    AgentProcess,
    kubectl,
    read_status,
    seeded_cluster,
    started_lab,  # fmt: skip
    wait_for,
    write_config,
)

OUTAGE_SECONDS = {"full": 600, "quick": 120, "smoke": 30, "probe": 90}
SIGNING_SECONDS = 60
BACKDATE_SECONDS = 300
LIFETIME = SIGNING_SECONDS + BACKDATE_SECONDS
KUBECTL_EVERY = 2.0
SLACK_SECONDS = 5.0  # a renewal's own duration plus the loop's wake-up


def parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def parse_not_after(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def expected_count(duration: float, renewal_seconds: float) -> tuple[float, float]:
    """Renewals the schedule predicts in ``duration`` seconds, and the standard deviation of that count."""
    issued = 0.0
    not_after = issued + SIGNING_SECONDS
    intervals = [max(0.0, deadline - issued) + renewal_seconds
                 for deadline in deadlines(not_after - LIFETIME, not_after, issued)]  # fmt: skip
    mean = sum(intervals) / len(intervals)
    variance = sum((x - mean) ** 2 for x in intervals) / len(intervals)
    count = duration / mean
    return count, (count * variance / mean**2) ** 0.5


def check_schedule(installs: list[tuple[float, float]]) -> dict[str, Any]:
    """``installs``: (install time, notAfter) in order, the one in place before the cut first. Each renewal must
    come after its predecessor's earliest deadline and before its latest one (plus the step's own time)."""
    late, early, expired_gaps, gaps = [], [], [], []
    for (issued, not_after), (next_issued, _) in zip(installs, installs[1:], strict=False):
        earliest, latest = deadline_window(not_after - LIFETIME, not_after, issued)
        window_open, window_close = max(issued, earliest), max(issued, latest) + SLACK_SECONDS
        if next_issued < window_open - 1.0:  # log times are to the millisecond, notAfter to the second
            early.append(round(window_open - next_issued, 2))
        if next_issued > window_close:
            late.append(round(next_issued - window_close, 2))
        if next_issued >= not_after:
            expired_gaps.append(round(next_issued - not_after, 2))
        gaps.append(next_issued - issued)
    return {"renewals_checked": max(0, len(installs) - 1), "early": early, "late": late,
            "installed_after_predecessor_expired": expired_gaps,
            "shortest_seconds_between_renewals": round(min(gaps), 2) if gaps else None,
            "on_schedule": not early and not late and not expired_gaps}  # fmt: skip


def measure(backend: str, variant: str, tmp: Path) -> dict[str, Any]:
    """The outage on one cluster of ``backend``, in a lab of its own."""
    outage = OUTAGE_SECONDS[variant]
    with started_lab(tmp / "lab", control_plane=backend) as lab:
        cluster = seeded_cluster(lab, "outage")
        lab.control_plane(cluster).set_signing_duration(SIGNING_SECONDS)
        config = write_config(lab, tmp / "agent", [cluster], probe_interval="5s")
        state = tmp / "agent" / "state"
        kubeconfig = state / cluster / "kubeconfig"
        agent = AgentProcess(lab, config, tmp / "agent.log")
        try:
            wait_for(lambda: read_status(state, cluster).get("state") == "ready", 60, "the first kubeconfig")
            cut_at = time.time()
            lab.link.cut()
            calls, failures, latencies = 0, [], []
            while time.time() - cut_at < outage:
                started = time.monotonic()
                result = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
                latencies.append(time.monotonic() - started)
                calls += 1
                if result.returncode != 0:
                    failures.append(result.stderr.strip()[:300])
                time.sleep(max(0.0, KUBECTL_EVERY - (time.monotonic() - started)))
            restored_at = time.time()
            lab.link.restore()
            time.sleep(2)
            records = agent.records()
            alive = agent.alive()
        finally:
            exit_code = agent.stop()
    installs = [(parse_time(r["time"]), parse_not_after(r["not_after"])) for r in records
                if r.get("message") == RENEWED]  # fmt: skip
    before_cut = [i for i in installs if i[0] < cut_at]
    during = [i for i in installs if cut_at <= i[0] <= restored_at]
    starts = [parse_time(r["time"]) for r in records if str(r.get("message", "")).startswith("issuing a new")]
    durations = [end - start for start, (end, _) in zip(starts, installs, strict=False) if 0 <= end - start < 60]
    renewal_seconds = spread(durations)
    expected, deviation = expected_count(restored_at - cut_at, float(renewal_seconds.get("median", 0.5)))
    schedule = check_schedule(before_cut[-1:] + during)
    disconnected = [r for r in records if r.get("message") == "service link disconnected"]
    result = {
        "control_plane": describe(backend),
        "outage_seconds": round(restored_at - cut_at, 1),
        "kubectl_calls": calls,
        "kubectl_failures": len(failures),
        "kubectl_failure_messages": failures[:5],
        "kubectl_seconds": spread(latencies),
        "renewals_during_outage": len(during),
        "renewal_seconds": renewal_seconds,
        "expected_renewals_from_schedule": round(expected, 1),
        "expected_renewals_standard_deviation": round(deviation, 1),
        "count_matches_schedule": abs(len(during) - expected) <= 3 * deviation + 1,
        "schedule": schedule,
        "agent_saw_link_down": bool(disconnected),
        "agent_alive": alive,
        "exit_code_after_sigterm": exit_code,
    }
    print(f"outage [{backend}]: {calls} kubectl calls, {len(failures)} failed; {len(during)} renewals (schedule "
          f"expects {expected:.1f} +- {deviation:.1f}), every renewal in its window: {schedule['on_schedule']}",
          flush=True)  # fmt: skip
    return result


def run(variant: str, backends: Sequence[str] = BACKENDS) -> dict[str, Any]:
    measured, failures = in_own_labs("outage", variant, backends, measure)
    return {
        "what": f"link cut for {OUTAGE_SECONDS[variant]} s; {SIGNING_SECONDS}-second certificates (backdated "
                f"{BACKDATE_SECONDS} s); kubectl get svc through the offline kubeconfig every {KUBECTL_EVERY:g} s; "
                "each control-plane backend in a lab of its own, one after the other",
        "backends": measured,
        **({"failures": failures} if failures else {}),
    }  # fmt: skip
