"""``python -m lab`` as an operator runs it: up --detach, status, link down/up, down, in a tmp state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, run_kubectl


def _lab(state_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state_dir = tmp_path_factory.mktemp("cli-lab")
    started = _lab(state_dir, "up", "--detach", "--activation-delay", "0.2")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield state_dir
    finally:
        _lab(state_dir, "down")


def test_up_detach_writes_the_operator_files(running_lab: Path) -> None:
    for name in ("env", "kubeconfig-admin", "kubeconfig-iam", "kubeconfig-extended-iam", "ca.crt", "lab.pid"):
        assert (running_lab / name).exists(), name
    assert (running_lab / "env").stat().st_mode & 0o777 == 0o600
    assert (running_lab / "kubeconfig-iam").stat().st_mode & 0o777 == 0o600
    env_text = (running_lab / "env").read_text()
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in env_text
    assert "export LAB_ADMIN_URL=http://127.0.0.1:" in env_text
    sourced = subprocess.run(
        ["bash", "-c", f"source {running_lab / 'env'} && echo $AWS_REGION $LAB_LOCAL_CLUSTER"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sourced.stdout.split() == ["us-west-2", "lab-local"]


def test_status_reports_link_and_clusters(running_lab: Path) -> None:
    result = _lab(running_lab, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["link"] == "up"
    assert status["clusters"]["lab-local"]["kind"] == "local"
    assert status["clusters"]["lab-local"]["status"] == "ACTIVE"
    assert status["clusters"]["lab-extended"]["kind"] == "extended"
    human = _lab(running_lab, "status")
    assert "service link: UP" in human.stdout and "lab-local" in human.stdout


def test_link_down_and_up_switch_iam_access(running_lab: Path) -> None:
    iam = running_lab / "kubeconfig-iam"
    admin = running_lab / "kubeconfig-admin"
    assert run_kubectl(iam, "get", "svc").rc == 0
    down = _lab(running_lab, "link", "down")
    try:
        assert down.returncode == 0 and "service link down" in down.stdout
        assert json.loads(_lab(running_lab, "status", "--json").stdout)["link"] == "down"
        cut = run_kubectl(iam, "get", "svc")
        assert cut.rc == 1 and "error: You must be logged in to the server" in cut.stderr, cut
        assert run_kubectl(admin, "get", "svc").rc == 0
    finally:
        up = _lab(running_lab, "link", "up")
    assert up.returncode == 0 and "service link up" in up.stdout
    assert run_kubectl(iam, "get", "svc").rc == 0


def test_second_up_is_refused_while_running(running_lab: Path) -> None:
    again = _lab(running_lab, "up", "--detach")
    assert again.returncode == 1
    assert "already running" in again.stderr


def test_down_stops_the_lab(tmp_path: Path) -> None:
    started = _lab(tmp_path, "up", "--detach", "--activation-delay", "0")
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "lab.pid").read_text())
    stopped = _lab(tmp_path, "down")
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "env").exists()
    status = _lab(tmp_path, "status")
    assert status.returncode == 1 and "no running lab" in status.stderr


def test_commands_without_a_lab_fail_clearly(tmp_path: Path) -> None:
    for args in (("status",), ("link", "down"), ("down",)):
        result = _lab(tmp_path, *args)
        assert result.returncode == 1
        assert "no running lab" in result.stderr


def test_help_lists_the_commands() -> None:
    result = _lab(Path("/nonexistent"), "--help")
    assert result.returncode == 0
    for command in ("up", "status", "link", "down"):
        assert command in result.stdout
