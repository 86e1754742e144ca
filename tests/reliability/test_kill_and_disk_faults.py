"""SIGKILL at each step of a renewal, a full disk and a read-only state directory during a renewal.

Afterwards the installed kubeconfig works, and the agent (restarted, as systemd would, after a kill)
renews by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.faults import STEPS, MountNotPermitted, StepHook, kill_after, leftovers, small_disk
from lab.agentkit import AgentProcess, agent_credentials, check_kubeconfig, kubectl, wait_for, write_config

KILL_POINTS = [(name, 0.0) for name in STEPS] + [("install", 0.03), ("install", 0.08)]


def assert_works(kubeconfig: Path) -> None:
    check_kubeconfig(kubeconfig.read_bytes())
    result = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
    assert result.returncode == 0, result.stderr


def asking_for_renewals(agent: AgentProcess, done: Callable[[], bool]) -> Callable[[], bool]:
    """A wait condition that asks ``agent`` to renew now (SIGUSR1) until ``done()``."""
    def condition() -> bool:
        if done():
            return True
        agent.renew_now()
        return False

    return condition


def test_sigkill_at_each_step_leaves_a_working_kubeconfig_and_a_restart_recovers(lab, cluster, tmp_path, agents):
    lab.control_plane(cluster).set_signing_duration(30)
    config = write_config(lab, tmp_path, [cluster])
    kubeconfig = tmp_path / "state" / cluster / "kubeconfig"
    log = tmp_path / "agent.log"
    agents.append(first := AgentProcess(lab, config, log))
    wait_for(kubeconfig.exists, 60, "the first kubeconfig")
    first.stop()
    for step_name, delay in KILL_POINTS:
        # "install": the kill lands just after the new kubeconfig was proven, while it is being written.
        step = STEPS["verify-read" if step_name == "install" else step_name]
        with StepHook(lab.control_plane(cluster), step, kill_after(lambda: agents[-1].pid, delay)) as hook:
            agents.append(agent := AgentProcess(lab, config, log))
            wait_for(asking_for_renewals(agent, hook.fired.is_set), 60, f"a renewal reaching {step_name}")
            agent.process.wait(timeout=30)
        assert agent.process.returncode == -9
        assert_works(kubeconfig)

    renewed_before = (recovered := AgentProcess(lab, config, log)).renewals()
    agents.append(recovered)
    wait_for(asking_for_renewals(recovered, lambda: recovered.renewals() > renewed_before + 1), 60,
             "renewals after the restart", interval=0.5)  # fmt: skip
    assert_works(kubeconfig)
    # Sessions the killed agents left (copies of the client key) were swept; only in-flight ones may exist.
    assert len([n for n in leftovers(kubeconfig.parent) if n.startswith(".session-")]) <= 1
    assert recovered.stop() == 0


def test_temp_files_of_a_killed_install_are_swept_at_start(lab, cluster, tmp_path):
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    config = load_config(write_config(lab, tmp_path, [cluster]))
    directory = config.cluster_dir(cluster)
    directory.mkdir(parents=True, mode=0o700)
    for name in (".kubeconfig.k1x2y3.tmp", ".key.pem.k4x5y6.tmp", ".kubeconfig.prev.k7x8y9.tmp"):
        (directory / name).write_bytes(b"-----BEGIN " b"PRIVATE KEY-----\n")  # what a cut write leaves
    ClusterAgent(config, cluster, make_link_monitor(config, None))
    assert leftovers(directory) == []


@pytest.fixture
def disk(tmp_path: Path) -> Any:
    try:
        with small_disk(tmp_path / "disk") as mounted:
            yield mounted
    except MountNotPermitted as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")


@pytest.mark.parametrize("fault", ["disk-full", "read-only-at-install"])
def test_disk_full_or_read_only_state_keeps_the_last_kubeconfig_then_recovers(lab, cluster, disk, fault):
    from lifeline_agent.observability import ClusterState

    lab.control_plane(cluster).set_signing_duration(30)
    with agent_credentials(lab):
        agent, kubeconfig = bootstrapped_agent(lab, disk.path / "etc", cluster)
        before = kubeconfig.read_bytes()
        if fault == "disk-full":
            disk.fill()
            renew(agent)
        else:  # the state turns read-only after the new kubeconfig was proven, just before it is written
            with StepHook(lab.control_plane(cluster), STEPS["verify-read"], lambda _r: disk.read_only()) as hook:
                renew(agent)
            assert hook.fired.is_set()
        expected = "No space left on device" if fault == "disk-full" else "Read-only file system"
        assert agent.state is ClusterState.RENEWING, agent.last_error  # still serving the last kubeconfig
        assert expected in (agent.last_error or ""), agent.last_error  # the write failed, named by the OS
        assert kubeconfig.read_bytes() == before
        assert_works(kubeconfig)

        renew(agent)  # still broken: keeps serving the last kubeconfig, no crash
        assert agent.state is ClusterState.RENEWING
        assert kubeconfig.read_bytes() == before

        disk.free() if fault == "disk-full" else disk.read_only(False)
        renew(agent)
        assert agent.state is ClusterState.READY, agent.last_error
        assert kubeconfig.read_bytes() != before
        assert_works(kubeconfig)
        assert [n for n in leftovers(kubeconfig.parent) if n.startswith(".kubeconfig")] == []


def test_disk_filling_up_during_renewals_never_leaves_a_broken_kubeconfig(lab, cluster, disk):
    """A writer grabs every block freed while renewals run: each install either fits or fails cleanly."""
    lab.control_plane(cluster).set_signing_duration(30)
    with agent_credentials(lab):
        agent, kubeconfig = bootstrapped_agent(lab, disk.path / "etc", cluster)
        stop = threading.Event()
        hog = threading.Thread(target=disk.hog, args=(stop,), daemon=True)
        hog.start()
        try:
            for _ in range(5):
                renew(agent)
                assert_works(kubeconfig)
        finally:
            stop.set()
            hog.join()
        disk.free()
        renew(agent)
        assert agent.state.value == "ready", agent.last_error
        assert_works(kubeconfig)
        assert [n for n in leftovers(kubeconfig.parent) if n.startswith(".kubeconfig")] == []


def renew(agent: Any) -> None:
    """One step that renews whatever the deadline says (the request stays until a renewal succeeds)."""
    agent.request_renewal("the test renews now")
    agent.step()


def bootstrapped_agent(lab: Any, directory: Path, cluster: str) -> tuple[Any, Path]:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    config = load_config(write_config(lab, directory, [cluster]))
    agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
    agent.step()
    assert agent.state.value == "ready", agent.last_error
    return agent, config.cluster_dir(cluster) / "kubeconfig"
