"""The post-install hook against the lab (issue 12): real ``lifeline-agent once`` passes, a real hook script."""

from __future__ import annotations

import datetime as dt
import signal
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

    # a failed bootstrap runs no hook (the link down, the kubeconfig gone: no certificate to be had); a failed
    # renewal with the current certificate: the next test
    link_restored.cut()
    for leftover in kubeconfig.parent.glob("kubeconfig*"):
        leftover.unlink()
    failed = agentkit.run_once(lab, config, timeout=120)
    assert failed.returncode == 3, failed.stdout + failed.stderr  # needs-link
    assert len(runs.read_text().splitlines()) == 1


def certificate_not_after(kubeconfig: Path) -> str:
    """The notAfter of the client certificate in ``kubeconfig``, as the hook gets it."""
    from lifeline_agent import kube
    from lifeline_agent.keys import parse_certificate, utc
    from lifeline_agent.kubeconfig import load_kubeconfig

    _, credential = kube.from_kubeconfig(load_kubeconfig(kubeconfig.read_bytes()))
    assert credential.cert_pem is not None
    return utc(parse_certificate(credential.cert_pem).not_after)


@both_backends
def test_a_failed_renewal_with_the_current_certificate_runs_no_hook(
    lab: Any, unique_name: str, tmp_path: Path
) -> None:
    from kubernetes import client

    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    runs = tmp_path / "runs.log"
    hook = tmp_path / "record.sh"
    hook.write_text(f'#!/bin/sh\necho "$@ $LIFELINE_INSTALL" >> {runs}\n')
    hook.chmod(0o700)
    cluster = {unique_name: {"post_install_hook": [str(hook)], "post_install_hook_timeout": "10s"}}
    config = agentkit.write_config(lab, tmp_path, [unique_name], cluster=cluster)
    kubeconfig = tmp_path / "state" / unique_name / "kubeconfig"
    agent = agentkit.AgentProcess(lab, config, tmp_path / "agent.log")
    try:
        address = agentkit.wait_for(agent.metrics_address, 30, "the metrics endpoint")
        agentkit.wait_for(lambda: agentkit.metric_counts(address, "lifeline_install_hooks") == {"success": 1.0}, 60,
                          "the first install's hook")  # fmt: skip
        (first,) = runs.read_text().splitlines()
        installed = kubeconfig.read_bytes()
        with lab.kubernetes_api_client(unique_name) as api:  # the new certificate will not pass verification
            client.RbacAuthorizationV1Api(api).delete_cluster_role_binding("lifeline-breakglass")

        agent.process.send_signal(signal.SIGUSR1)  # renew now, with the current certificate
        agentkit.wait_for(lambda: agentkit.metric_counts(address, "lifeline_renewals").get("failure", 0) >= 1, 60,
                          "the renewal to fail")  # fmt: skip
        assert any(r.get("message") == "issuing a new certificate: renewal requested (SIGUSR1)"
                   for r in agent.records())  # fmt: skip
        assert kubeconfig.read_bytes() == installed
        assert runs.read_text().splitlines() == [first]
        assert agentkit.metric_counts(address, "lifeline_install_hooks") == {"success": 1.0}

        # and no hook is on its way either: a cluster's hooks run in install order, so the next successful
        # renewal's hook (the binding back, the requested renewal retried) is the second run, not the third
        lab.seed_cluster_for_agent(unique_name)
        agentkit.wait_for(lambda: agentkit.metric_counts(address, "lifeline_install_hooks") == {"success": 2.0}, 60,
                          "the hook of the renewal after the binding came back")  # fmt: skip
        second = f"{unique_name} {kubeconfig} {certificate_not_after(kubeconfig)} new-certificate"
        assert runs.read_text().splitlines() == [first, second]
        assert kubeconfig.read_bytes() != installed
    finally:
        agent.stop()


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
