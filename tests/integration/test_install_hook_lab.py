"""The post-install hook against the lab (issue 12): real ``lifeline-agent once`` passes, a real hook script."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from lab import agentkit
from tests.conftest import both_backends, lab_of_backend

lab = pytest.fixture(name="lab")(lab_of_backend)


@both_backends
def test_the_hook_runs_once_per_verified_install_and_never_for_a_failed_one(
    lab: Any, unique_name: str, tmp_path: Path, link_restored: Any
) -> None:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    runs = tmp_path / "runs.log"
    hook = tmp_path / "copy-kubeconfig.sh"  # a jump-host copy, with a local directory as the jump host
    hook.write_text(f'#!/bin/sh\necho "$@ $LIFELINE_INSTALL" >> {runs}\ncp "$2" {tmp_path}/jump-host.kubeconfig\n')
    hook.chmod(0o700)
    cluster = {unique_name: {"post_install_hook": [str(hook)], "post_install_hook_timeout": "10s"}}
    config = agentkit.write_config(lab, tmp_path, [unique_name], cluster=cluster)
    assert agentkit.run_once(lab, config, timeout=120).returncode == 0
    status = agentkit.read_status(tmp_path / "state", unique_name)
    kubeconfig = tmp_path / "state" / unique_name / "kubeconfig"
    expiry = dt.datetime.fromtimestamp(status["certificate_not_after"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert runs.read_text().splitlines() == [f"{unique_name} {kubeconfig} {expiry} new-certificate"]
    assert (tmp_path / "jump-host.kubeconfig").read_bytes() == kubeconfig.read_bytes()
    assert agentkit.run_once(lab, config, timeout=120).returncode == 0  # nothing due: no install, no hook
    assert len(runs.read_text().splitlines()) == 1

    # a failed renewal runs no hook: the link is down and the kubeconfig gone, so no certificate can be had
    link_restored.cut()
    for leftover in kubeconfig.parent.glob("kubeconfig*"):
        leftover.unlink()
    failed = agentkit.run_once(lab, config, timeout=120)
    assert failed.returncode == 3, failed.stdout + failed.stderr  # needs-link
    assert len(runs.read_text().splitlines()) == 1


@both_backends
@pytest.mark.parametrize(("body", "outcome"), [("echo jump-1 unreachable >&2; exit 7", "failure"),
                                               ("sleep 60", "timeout")])  # fmt: skip
def test_a_failing_or_hanging_hook_is_logged_and_renewal_goes_on(
    lab: Any, unique_name: str, tmp_path: Path, body: str, outcome: str
) -> None:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o700)
    cluster = {unique_name: {"post_install_hook": [str(hook)], "post_install_hook_timeout": "2s"}}
    config = agentkit.write_config(lab, tmp_path, [unique_name], cluster=cluster)
    started = time.monotonic()
    ran = agentkit.run_once(lab, config, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert time.monotonic() - started < 60
    kubeconfig = tmp_path / "state" / unique_name / "kubeconfig"
    assert agentkit.run_once(lab, config, "verify").returncode == 0 and kubeconfig.is_file()
    assert f'"result": "{outcome}"' in ran.stderr and "the installed kubeconfig stays" in ran.stderr
    if outcome == "failure":
        assert "exit status 7" in ran.stderr and "jump-1 unreachable" in ran.stderr
