"""Readiness reporting never blocks or slows renewal: ``lifeline-agent run`` renews 20-second certificates while
the Region's CloudWatch endpoint accepts connections and never answers (every other service answers through the
link, so the agent sees the link up and keeps trying to report). On the emulated control plane only: what is
shown is the reporter beside the cluster loop, which the control plane's backend does not change (the readiness
tests in tests/integration/test_readiness_region.py run on both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.outage import parse_not_after, parse_time
from lab.agentkit import RENEWED, AgentProcess, agent_env, read_status, seeded_cluster, wait_for, write_config
from tests.conftest import SilentEndpoint
from tests.integration.test_readiness_region import reports

LIFETIME = 20  # seconds; each certificate is renewed at 70-90 % of what was left of it at receipt
RENEWALS = 2


def test_renewals_keep_their_deadlines_while_cloudwatch_never_answers(
    lab: Any, tmp_path: Path, agents: list[AgentProcess], silent_endpoint: SilentEndpoint
) -> None:
    cluster = seeded_cluster(lab, "quiet-cw")
    lab.control_plane(cluster).set_signing_duration(LIFETIME)
    # no aws_endpoint_url: the SDK's endpoints apply, the lab's Region for all but CloudWatch
    config = write_config(lab, tmp_path, [cluster], aws_endpoint_url=None, readiness_interval="10s")
    agent = AgentProcess(lab, config, tmp_path / "agent.log",
                         env=agent_env(lab, AWS_ENDPOINT_URL_CLOUDWATCH=silent_endpoint.url))  # fmt: skip
    agents.append(agent)
    state = tmp_path / "state"

    deadlines: dict[float, float] = {}  # certificate notAfter -> its renewal deadline, as the agent publishes them

    def enough() -> bool:
        status = read_status(state, cluster)
        if status.get("certificate_not_after") and status.get("next_renewal"):
            deadlines.setdefault(status["certificate_not_after"], status["next_renewal"])
        address = agent.metrics_address()
        return agent.renewals() > RENEWALS and address is not None and reports(address).get("failure", 0) >= 2

    wait_for(enough, LIFETIME * (RENEWALS + 4), f"{RENEWALS} renewals after the first kubeconfig and 2 failed reports")
    tried = reports(agent.metrics_address())
    assert agent.stop() == 0

    records = agent.records()
    installs = [(parse_time(r["time"]), parse_not_after(r["not_after"]))
                for r in records if r.get("message") == RENEWED]  # fmt: skip
    starts = [parse_time(r["time"]) for r in records
              if str(r.get("message", "")).startswith("issuing a new certificate")]  # fmt: skip
    assert len(installs) > RENEWALS
    for (installed, not_after), (next_installed, _) in zip(installs, installs[1:], strict=False):
        deadline = deadlines[not_after]
        began = min(start for start in starts if start > installed)
        assert began >= deadline - 0.01, f"renewed at {began}, before its deadline {deadline}"
        assert next_installed < not_after, f"the kubeconfig lapsed: due {deadline}, expired {not_after}, " \
                                           f"replaced {next_installed}"

    # meanwhile the reporter tried, waited its timeout each time, failed, and said so once
    assert tried.get("success", 0) == 0, tried
    assert silent_endpoint.connections >= 2
    warnings = [r for r in records if "cannot report readiness" in r.get("message", "")]
    assert len(warnings) == 1 and "timeout" in warnings[0]["message"].lower(), warnings
