"""Readers never see a torn or unusable kubeconfig while the agent renews back to back, on both backends."""

from __future__ import annotations

import time

import pytest

from lab.agentkit import AgentProcess, ReaderProcess, seeded_cluster, wait_for, write_config
from tests.conftest import both_backends, lab_of_backend

lab = pytest.fixture(name="lab")(lab_of_backend)

MIN_RENEWALS = 200
MIN_READS = 10_000
CLUSTERS = 4  # one daemon renews them concurrently (one loop each), so 200 renewals fit the test budget


@both_backends
def test_ten_thousand_reads_during_two_hundred_renewals_are_all_usable(lab, tmp_path, agents):
    clusters = [seeded_cluster(lab, "readers") for _ in range(CLUSTERS)]
    for name in clusters:
        lab.control_plane(name).set_signing_duration(30)
    config = write_config(lab, tmp_path, clusters)
    state = tmp_path / "state"
    kubeconfigs = [state / name / "kubeconfig" for name in clusters]
    agent = AgentProcess(lab, config, tmp_path / "agent.log")
    agents.append(agent)
    wait_for(lambda: all(k.exists() for k in kubeconfigs), 60, "every cluster's first kubeconfig")
    before = agent.renewals()

    reader = ReaderProcess(kubeconfigs, tmp_path / "stop", kubectl_every=250)
    deadline = time.monotonic() + 240
    while (agent.renewals() - before < MIN_RENEWALS or reader.reads() < MIN_READS) \
            and time.monotonic() < deadline and agent.alive():
        agent.renew_now()  # SIGUSR1: every cluster renews now (a fresh certificate waits for its deadline)
        time.sleep(0.5)
    result = reader.finish()
    renewals = agent.renewals() - before

    assert agent.alive()
    assert renewals >= MIN_RENEWALS, f"only {renewals} renewals"
    assert result["reads"] >= MIN_READS, result
    assert result["kubectl_calls"] >= MIN_READS // 250
    assert result["problems"] == [], result
    assert result["certificates_seen"] >= MIN_RENEWALS // 2, result  # the reader saw the swaps happen
    assert agent.stop() == 0
