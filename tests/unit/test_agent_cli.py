"""The command line: exit codes, help, configuration errors; link memory; address helpers."""

from __future__ import annotations

import json

import pytest
from lifeline_agent import cli
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import SERVING_STATES, ClusterState
from lifeline_agent.resolver import endpoint_host_port, ip_of_server, resolve, server_url


def test_configuration_error_exits_2_and_names_the_file(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    config.write_text('clusters = ["a"]\nkey_type = "dsa"\n')
    assert cli.main(["once", "--config", str(config)]) == cli.EXIT_USAGE
    assert f"{config}: key_type" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["once", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for code in ("0", "1", "2", "3", "4"):
        assert f"\n  {code}  " in text
    assert "needs the service link" in text and "lifeline-breakglass" in text
    for state in ClusterState:
        assert state.value in text, state


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (["ready", "ready"], 0),
        (["ready", "needs-link"], 3),
        (["revoked", "needs-link"], 4),
        (["needs-link", "failed", "revoked"], 1),
        (["pending"], 1),
        (["ready", "untrusted"], 1),
        (["revoked", "group-changed"], 1),
        (["renewing", "ready"], 0),
        (["unknown"], 1),
        (["a-state-of-a-newer-agent", "needs-link"], 1),
        ([], 0),
    ],
)
def test_exit_code_of_several_clusters(states, code):
    assert cli._state_exit_code(states) == code


def test_every_state_but_ready_and_renewing_is_a_non_zero_exit_code():
    codes = {state: cli._state_exit_code([state.value]) for state in ClusterState}
    assert {state for state, code in codes.items() if code == cli.EXIT_OK} == SERVING_STATES
    assert codes[ClusterState.UNTRUSTED] == codes[ClusterState.GROUP_CHANGED] == cli.EXIT_FAILED


def test_status_without_state_shows_pending(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    config.write_text(f'clusters = ["edge-1"]\nstate_dir = "{tmp_path / "state"}"\nhost_id = "h"\n')
    assert cli.main(["status", "--config", str(config)]) == cli.EXIT_FAILED
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CLUSTER", "STATE", "EXPIRES", "NEXT", "RENEWAL", "LAST", "VERIFIED", "LINK",
                                "KUBECONFIG"]
    assert lines[1].split()[:2] == ["edge-1", "pending"]


def test_link_monitor_remembers_for_an_interval_and_reports_every_probe():
    answers, reports = [True, False], []
    monitor = LinkMonitor(lambda: answers.pop(0), interval=3600, report=reports.append)
    assert monitor.last is None
    assert monitor.is_up() is True
    assert monitor.is_up() is True  # remembered, not probed again
    assert monitor.is_up(fresh=True) is False
    assert reports == [True, False] and monitor.last is False


def test_addresses():
    assert resolve("127.0.0.2", 443) == ["127.0.0.2"]
    assert "127.0.0.1" in resolve("localhost", 443)
    assert endpoint_host_port("https://api.edge.local") == ("api.edge.local", 443)
    assert endpoint_host_port("https://localhost:6443") == ("localhost", 6443)
    assert server_url("fd00::1", 443) == "https://[fd00::1]:443"
    assert ip_of_server("https://[fd00::1]:443") == "fd00::1"
    assert ip_of_server("https://localhost:443") is None


def test_status_names_an_unreadable_status_file(tmp_path, capsys):
    state = tmp_path / "state" / "edge-1"
    state.mkdir(parents=True)
    (state / "status.json").mkdir()  # reading it fails the way an unreadable file does (root reads anything)
    config = tmp_path / "agent.toml"
    config.write_text(f'clusters = ["edge-1"]\nstate_dir = "{tmp_path / "state"}"\nhost_id = "h"\n')
    assert cli.main(["status", "--json", "--config", str(config)]) == cli.EXIT_FAILED
    document = json.loads(capsys.readouterr().out)[0]
    assert document["state"] == "unknown" and "status.json" in document["last_error"]
