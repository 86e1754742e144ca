"""Long outage with short certificates: the service link is down (full: 10 minutes; quick: 2 minutes) while
``lifeline-agent run`` keeps a 60-second-certificate kubeconfig current and kubectl uses it every 2 seconds.

The schedule: each certificate (lifetime L = 60 s + the 5-minute backdate) is due at notBefore +
U(0.7, 0.9) x L, i.e. at once or up to 24 s after issue; every renewal must land in its predecessor's window
(plus the step's own time) and before the predecessor's notAfter.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agentkit import (
    RENEWED,
    AgentProcess,
    isolate_from_aws,
    kubectl,
    read_status,
    seeded_cluster,
    started_lab,  # fmt: skip
    wait_for,
    write_config,
)
from bench.common import spread

OUTAGE_SECONDS = {"full": 600, "quick": 120, "smoke": 30}
SIGNING_SECONDS = 60
BACKDATE_SECONDS = 300
LIFETIME = SIGNING_SECONDS + BACKDATE_SECONDS
LOW, HIGH = 0.7, 0.9
KUBECTL_EVERY = 2.0
SLACK_SECONDS = 5.0  # a renewal's own duration plus the loop's wake-up


def parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def parse_not_after(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def expected_interval(renewal_seconds: float) -> float:
    """Mean time between installs: E[max(0, U(0.7, 0.9) x L - backdate)] + one renewal's duration."""
    low, high = LOW * LIFETIME - BACKDATE_SECONDS, HIGH * LIFETIME - BACKDATE_SECONDS
    waiting = (max(0.0, high) ** 2 - max(0.0, low) ** 2) / (2 * (high - low)) if high > 0 else 0.0
    return waiting + renewal_seconds


def check_schedule(installs: list[tuple[float, float]]) -> dict[str, Any]:
    """``installs``: (install time, notAfter) in order, the one in place before the cut first."""
    late, early, expired_gaps = [], [], []
    for (issued, not_after), (next_issued, _) in zip(installs, installs[1:], strict=False):
        not_before = not_after - LIFETIME
        window_open = max(issued, not_before + LOW * LIFETIME)
        window_close = max(issued, not_before + HIGH * LIFETIME) + SLACK_SECONDS
        if next_issued < window_open - 1.0:  # log times are to the millisecond, notAfter to the second
            early.append(round(window_open - next_issued, 2))
        if next_issued > window_close:
            late.append(round(next_issued - window_close, 2))
        if next_issued >= not_after:
            expired_gaps.append(round(next_issued - not_after, 2))
    return {"renewals_checked": max(0, len(installs) - 1), "early": early, "late": late,
            "installed_after_predecessor_expired": expired_gaps,
            "on_schedule": not early and not late and not expired_gaps}  # fmt: skip


def run(variant: str) -> dict[str, Any]:
    isolate_from_aws()
    outage = OUTAGE_SECONDS[variant]
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp, started_lab(Path(tmp) / "lab") as lab:
        cluster = seeded_cluster(lab, "outage")
        lab.control_plane(cluster).set_signing_duration(SIGNING_SECONDS)
        config = write_config(lab, Path(tmp) / "agent", [cluster], probe_interval="5s")
        state = Path(tmp) / "agent" / "state"
        kubeconfig = state / cluster / "kubeconfig"
        agent = AgentProcess(lab, config, Path(tmp) / "agent.log")
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
    interval = expected_interval(float(renewal_seconds.get("median", 0.5)))
    schedule = check_schedule(before_cut[-1:] + during)
    disconnected = [r for r in records if r.get("message") == "service link disconnected"]
    result = {
        "what": f"link cut for {outage} s; {SIGNING_SECONDS}-second certificates (backdated "
                f"{BACKDATE_SECONDS} s); kubectl get svc through the offline kubeconfig every {KUBECTL_EVERY:g} s",
        "outage_seconds": round(restored_at - cut_at, 1),
        "kubectl_calls": calls,
        "kubectl_failures": len(failures),
        "kubectl_failure_messages": failures[:5],
        "kubectl_seconds": spread(latencies),
        "renewals_during_outage": len(during),
        "renewal_seconds": renewal_seconds,
        "expected_renewals_from_schedule": round((restored_at - cut_at) / interval, 1),
        "schedule": schedule,
        "agent_saw_link_down": bool(disconnected),
        "agent_alive": alive,
        "exit_code_after_sigterm": exit_code,
    }
    print(f"outage: {calls} kubectl calls, {len(failures)} failed; {len(during)} renewals "
          f"(schedule expects {result['expected_renewals_from_schedule']}), on schedule: "
          f"{schedule['on_schedule']}", flush=True)  # fmt: skip
    return result
