"""The fleet pass's own rules: the ``max_concurrent_clusters`` setting, the ordered slots, and a pass whose
steps raise or hang past their bound (real threads and a real state directory; only the step is stubbed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lifeline_agent.config import AgentConfig, ClusterSettings, ConfigError, Timing, load_config
from lifeline_agent.fleet import Slots, run_pass
from lifeline_agent.observability import ClusterState
from lifeline_agent.progress import WatchedAgent
from lifeline_agent.regionless import NoLink


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text('clusters = ["a"]\nhost_id = "h"\n' + text)
    return path


def test_the_setting_defaults_to_eight_and_a_pass_never_runs_more_than_it_has_clusters(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.max_concurrent_clusters == 8
    assert [config.concurrency(n) for n in (0, 1, 3, 8, 50)] == [1, 1, 3, 8, 8]
    assert load_config(write(tmp_path, "max_concurrent_clusters = 1\n")).concurrency(50) == 1


@pytest.mark.parametrize("value, words", [("0", "from 1 to 64"), ("65", "from 1 to 64"), ("-3", "from 1 to 64"),
                                          ("2.5", "expected int"), ("inf", "expected int"), ("true", "expected int"),
                                          ('"8"', "expected int")])  # fmt: skip
def test_a_bad_setting_is_named(tmp_path, value, words):
    path = write(tmp_path, f"max_concurrent_clusters = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: max_concurrent_clusters: ") and words in str(caught.value)


def test_slots_serve_tickets_in_order_and_never_more_than_the_limit():
    slots, cancel = Slots(2), threading.Event()
    order: list[int] = []
    inside, most, lock = 0, 0, threading.Lock()
    tickets = [slots.ticket() for _ in range(6)]

    def hold(ticket: int) -> None:
        nonlocal inside, most
        assert slots.acquire(ticket, cancel)
        with lock:
            order.append(ticket)
            inside += 1
            most = max(most, inside)
        time.sleep(0.02)
        with lock:
            inside -= 1
        slots.release()

    threads = [threading.Thread(target=hold, args=(t,)) for t in reversed(tickets)]  # started in reverse order
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == tickets and most == 2


def test_a_cancelled_wait_gives_up():
    slots, cancel = Slots(1), threading.Event()
    first, second = slots.ticket(), slots.ticket()
    assert slots.acquire(first, cancel)
    cancel.set()
    assert slots.acquire(second, cancel) is False


class ScriptedAgent(WatchedAgent):
    """A real WatchedAgent (store, state directory, published status) whose step follows the cluster's name."""

    release = threading.Event()

    def step(self) -> float:
        if self.cluster.startswith("hang"):
            self.release.wait(30)
        if self.cluster.startswith("boom"):
            raise TypeError("a bug in this cluster's step")
        self.state = ClusterState.READY
        self.publish()
        return 60.0


def config_for(tmp_path: Path, names: list[str], concurrent: int) -> AgentConfig:
    # a step may take 0.1 + 12 x 0.1 + 2 x 0.1 = 1.5 s
    return AgentConfig(source=tmp_path / "agent.toml", clusters=tuple(ClusterSettings(n) for n in names),
                       state_dir=tmp_path / "state", host_id="h", probe_timeout=0.1, max_concurrent_clusters=concurrent,
                       timing=Timing(csr_timeout=0.1, api_timeout=0.1))  # fmt: skip


def factory(config: AgentConfig, name: str, link: Any) -> WatchedAgent:
    return ScriptedAgent(config, name, link)


def test_a_raising_step_and_a_step_past_its_bound_do_not_hold_up_or_change_the_others(tmp_path):
    names = ["boom-1", "fine-1", "fine-2", "hang-1", "fine-3"]
    config = config_for(tmp_path, names, 1)  # one slot: the hung step's slot must go to the next cluster
    (tmp_path / "state").mkdir(mode=0o700)
    ScriptedAgent.release.clear()
    try:
        outcomes = run_pass(config, names, NoLink(), make_agent=factory, tick=0.1)
    finally:
        ScriptedAgent.release.set()
    assert [o.health.cluster for o in outcomes] == names
    states = {o.health.cluster: o.health.state for o in outcomes}
    assert states == {"boom-1": ClusterState.FAILED, "fine-1": ClusterState.READY, "fine-2": ClusterState.READY,
                      "hang-1": ClusterState.FAILED, "fine-3": ClusterState.READY}  # fmt: skip
    errors = {o.health.cluster: o.health.last_error or "" for o in outcomes}
    assert errors["boom-1"] == "unexpected error: TypeError: a bug in this cluster's step"
    assert errors["hang-1"].startswith("stuck in ") and "(a step may take 2 s)" in errors["hang-1"], errors
    assert not any(errors[name] for name in ("fine-1", "fine-2", "fine-3"))


def test_a_forfeited_ticket_does_not_hold_up_the_tickets_after_it():
    slots, cancel = Slots(1), threading.Event()
    cancel.set()  # any wait ends in False at once: True means the ticket's turn had come
    first, second, third = slots.ticket(), slots.ticket(), slots.ticket()
    slots.forfeit(first)  # its thread never started
    assert slots.acquire(second, cancel)
    slots.forfeit(third)  # forfeited while the one before it holds the slot
    slots.release()
    assert slots.acquire(slots.ticket(), cancel)
