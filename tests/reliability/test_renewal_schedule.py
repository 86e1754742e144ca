"""Each new certificate gets its own renewal deadline, and a fresh one is never renewed at once.

With 14-second certificates backdated 5 minutes, every kubelet-rule deadline falls before the certificate
even arrived: the agent used to renew such certificates back to back (three times in 0.7 s in the demo).
Now each waits 70-90 % of what was left of it at receipt. The long variant is ``python -m bench outage``
(renewal count vs schedule).
"""

from __future__ import annotations

import time

from lab.agentkit import agent_credentials, write_config

LIFETIME = 14


def test_short_certificates_are_renewed_on_their_own_schedule_not_in_a_burst(lab, cluster, tmp_path):
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    lab.control_plane(cluster).set_signing_duration(LIFETIME)
    with agent_credentials(lab):
        config = load_config(write_config(lab, tmp_path, [cluster]))
        agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
        seen: list[tuple[int, float, float, float]] = []  # serial, received, notAfter, deadline
        stop = time.monotonic() + 2.5 * LIFETIME
        while time.monotonic() < stop:
            delay = agent.step()
            installed = agent._installed()
            assert installed is not None and agent.next_renewal is not None, agent.last_error
            serial = installed.certificate.certificate.serial_number
            if not seen or seen[-1][0] != serial:
                received = agent.store.kubeconfig_path.stat().st_mtime
                seen.append((serial, received, installed.certificate.not_after, agent.next_renewal))
            time.sleep(min(delay, 0.2))
    assert len(seen) >= 3, f"only {len(seen) - 1} renewals in {2.5 * LIFETIME:g} s"
    for (_, received, not_after, deadline), (_, renewed, _, _) in zip(seen, seen[1:], strict=False):
        left = not_after - received
        assert received + 0.7 * left - 1 <= deadline <= received + 0.9 * left + 1, (received, deadline, not_after)
        assert renewed >= deadline - 1, "renewed before its deadline"
        assert renewed - received >= 0.7 * left - 1, "two renewals in a burst"
    assert len({deadline for *_, deadline in seen}) == len(seen), "a certificate reused its predecessor's deadline"
