"""One agent keeps at most ``MAX_CLUSTERS`` clusters (a thread each, under the unit's TasksMax): the rest are
named in the log and not started, and the kept ones renew as ever. The daemon runs in the test's process against
the lab so that the limit can be made small; every request it makes is real."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, seeded_cluster, wait_for, write_config


def test_clusters_past_the_limit_are_named_and_not_started_and_the_others_get_ready(
        lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from lifeline_agent import daemon as daemon_module
    from lifeline_agent.config import load_config
    from lifeline_agent.observability import ClusterState, Observer, SystemdNotifier

    names = sorted(seeded_cluster(lab, "limit") for _ in range(3))
    config = load_config(write_config(lab, tmp_path, names))
    monkeypatch.setattr(daemon_module, "MAX_CLUSTERS", 2)
    caplog.set_level(logging.ERROR, logger="lifeline_agent.daemon")
    with agent_credentials(lab):
        daemon = daemon_module.Daemon(config, Observer(), SystemdNotifier({}))
        ticks = []

        def until_ready(_tick: float) -> bool:
            ticks.append(_tick)
            wait_for(lambda: all(agent.state is ClusterState.READY for agent in daemon.agents.values()), 60,
                     "the kept clusters ready")  # fmt: skip
            if len(ticks) < 2:  # one more turn of the main loop: the left-out one is not retried past the limit
                return False
            daemon.stop()
            return True

        assert daemon.run(sleep=until_ready) == 0
    assert sorted(daemon.agents) == names[:2]
    assert not (tmp_path / "state" / names[2] / "kubeconfig").exists()
    for name in names[:2]:
        assert (tmp_path / "state" / name / "kubeconfig").exists()
    refusals = [r.getMessage() for r in caplog.records if "not kept by this agent" in r.getMessage()]
    assert refusals == [f"1 cluster(s) not kept by this agent: {names[2]} (at most 2 per agent, a thread each; "
                        "the unit's TasksMax is 128): give them to another agent"]  # fmt: skip


def test_a_cluster_whose_thread_cannot_start_is_named_and_started_at_the_next_try(
        lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import Daemon
    from lifeline_agent.observability import ClusterState, Observer, SystemdNotifier

    names = sorted(seeded_cluster(lab, "nothread") for _ in range(2))
    config = load_config(write_config(lab, tmp_path, names, probe_interval=1))
    start = threading.Thread.start
    refused: list[str] = []

    def refuse_the_first(thread: threading.Thread) -> None:  # what TasksMax does to the agent, once
        if thread.name == f"cluster-{names[0]}" and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse_the_first)
    caplog.set_level(logging.INFO, logger="lifeline_agent.daemon")
    with agent_credentials(lab):
        daemon = Daemon(config, Observer(), SystemdNotifier({}))

        def until_both_ready(tick: float) -> bool:
            if names[0] not in daemon.agents:  # not started yet: the main loop tries again after probe_interval
                return threading.Event().wait(tick)
            wait_for(lambda: all(daemon.agents[n].state is ClusterState.READY for n in names), 60, "both ready")
            daemon.stop()
            return True

        assert daemon.run(sleep=until_both_ready) == 0
    assert refused == [f"cluster-{names[0]}"]
    messages = [r.getMessage() for r in caplog.records]
    assert "cannot start the cluster's loop: can't start new thread (tried again in 1 s)" in messages
    assert not [m for m in messages if "not kept by this agent" in m]  # it is kept: its thread starts at the retry
    for name in names:
        assert (tmp_path / "state" / name / "kubeconfig").exists()
