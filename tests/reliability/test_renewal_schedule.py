"""Each new certificate gets its own renewal deadline (the count of renewals follows the schedule).

With 60-second certificates backdated 5 minutes, two-thirds of the kubelet-rule deadlines fall before the
certificate even arrived, so renewals can follow each other within one second, and such certificates share
notBefore/notAfter (whole seconds). The long variant is ``python -m bench outage`` (renewal count vs schedule).
"""

from __future__ import annotations

import time

from lab.agentkit import agent_credentials, write_config


def test_certificates_issued_in_the_same_second_get_their_own_deadline(lab, cluster, tmp_path):
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    lab.control_plane(cluster).set_signing_duration(60)
    with agent_credentials(lab):
        config = load_config(write_config(lab, tmp_path, [cluster]))
        agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
        seen: list[tuple[int, float, float, float]] = []  # serial, notBefore, notAfter, deadline
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            delay = agent.step()
            installed = agent._installed()
            assert installed is not None and agent.next_renewal is not None
            certificate, serial = installed.certificate, installed.certificate.certificate.serial_number
            if not seen or seen[-1][0] != serial:
                seen.append((serial, certificate.not_before, certificate.not_after, agent.next_renewal))
            pairs = [(a, b) for a, b in zip(seen, seen[1:], strict=False) if a[1:3] == b[1:3]]
            if pairs:
                break
            time.sleep(min(delay, 1.0))
    assert pairs, "no two certificates were issued within one second in 40 s"
    (_, _, _, first), (_, _, _, second) = pairs[0]
    assert first != second, "the second certificate reused its predecessor's renewal deadline"
