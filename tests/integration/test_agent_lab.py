"""The agent against the lab: real lifeline-agent processes, real TLS, real kubectl."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / ".venv" / "bin" / "lifeline-agent"


def write_config(lab: Any, directory: Path, clusters: list[str], **extra: Any) -> Path:
    """An agent configuration for the lab: its Region through the service link, short timings."""
    host_id = extra.pop("host_id", f"host-{uuid.uuid4().hex[:8]}")
    timing = {"backoff_base": 1, "backoff_cap": 5, "csr_timeout": 20, "api_timeout": 5, **extra.pop("timing", {})}
    cluster_tables = extra.pop("cluster", {})
    lines = [
        'region = "us-west-2"',
        f"clusters = {json.dumps(clusters)}",
        f'state_dir = "{directory / "state"}"',
        f'host_id = "{host_id}"',
        f'aws_endpoint_url = "{lab.outpost_region_url}"',
        'probe_timeout = "1s"',
        'metrics_address = "127.0.0.1:0"',
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    lines.append("[timing]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in timing.items()]
    for name, table in cluster_tables.items():
        lines.append(f'[cluster."{name}"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_env(lab: Any) -> dict[str, str]:
    principal = lab.agent_principal
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=principal.access_key_id, AWS_SECRET_ACCESS_KEY=principal.secret_access_key,
               AWS_REGION="us-west-2", AWS_DEFAULT_REGION="us-west-2", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return env


def run_agent(lab: Any, config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AGENT), *args, "--config", str(config)], capture_output=True, text=True,
                          env=agent_env(lab), timeout=timeout, check=False)


def whoami(kubectl: Any, kubeconfig: Path) -> dict[str, Any]:
    """The user the API server sees, asked with kubectl through ``kubeconfig`` (a SelfSubjectReview)."""
    review = kubeconfig.parent.parent / "ssr.json"
    review.write_text('{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}')
    rc, out, err = kubectl(kubeconfig, "create", "--validate=false", "-f", str(review), "-o", "json")
    assert rc == 0, err
    return dict(json.loads(out)["status"]["userInfo"])


@pytest.fixture
def seeded_cluster(lab: Any, unique_name: str) -> str:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    return unique_name


def test_once_from_nothing_gives_a_working_offline_kubeconfig(lab, seeded_cluster, tmp_path, kubectl):
    config = write_config(lab, tmp_path, [seeded_cluster], host_id="edge-host-1")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err
    assert "kubernetes" in out
    user = whoami(kubectl, kubeconfig)
    assert user["username"] == "lifeline:edge-host-1"
    assert "lifeline:breakglass" in user["groups"]


# --- helpers for the longer scenarios -----------------------------------------------------------------


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_status(state_dir: Path, cluster: str) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / cluster / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


class RunningAgent:
    """``lifeline-agent run`` as a subprocess; its JSON log lines collected in a file."""

    def __init__(self, lab: Any, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen([str(AGENT), "run", "--config", str(config)], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=agent_env(lab))

    def records(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def running_agents() -> Iterator[list[RunningAgent]]:
    agents: list[RunningAgent] = []
    yield agents
    for agent in agents:
        agent.stop()


def key_material_forms(key_pem: bytes) -> list[str]:
    """Secret parts of the key as they could appear in text: PEM lines, base64 of the PEM, the scalar in hex."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, None)
    body = [line for line in key_pem.decode().splitlines() if line and not line.startswith("-----")]
    kubeconfig_form = base64.b64encode(key_pem).decode()[80:140]  # past the constant PEM/PKCS#8 header
    return [*body, kubeconfig_form, format(key.private_numbers().private_value, "x")]


# --- scenarios ------------------------------------------------------------------------------------------


def test_the_key_never_leaves_the_host(lab, seeded_cluster, tmp_path):
    config = write_config(lab, tmp_path, [seeded_cluster], log_level="DEBUG")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stderr
    key_pem = (tmp_path / "state" / seeded_cluster / "key.pem").read_bytes()
    assert b"PRIVATE KEY" in key_pem
    control_plane = lab.control_plane(seeded_cluster)
    secrets_client = lab.client("secretsmanager")
    secret_values = [secrets_client.get_secret_value(SecretId=s["ARN"]).get("SecretString", "")
                     for s in secrets_client.list_secrets()["SecretList"]]
    places = {
        "agent logs": result.stdout + result.stderr,
        "secrets": json.dumps(secret_values),
        "API objects": repr(control_plane.store._objects),
        "API watch events": repr(list(control_plane.store._events)),
    }
    assert '"level": "DEBUG"' in places["agent logs"] or '"level": "INFO"' in places["agent logs"]
    for form in key_material_forms(key_pem):
        for place, text in places.items():
            assert form not in text, f"private key material found in {place}"


def test_renews_offline_with_its_own_certificate_and_kubectl_never_fails(
        lab, seeded_cluster, tmp_path, kubectl, link_restored, running_agents):
    lab.control_plane(seeded_cluster).set_signing_duration(60)  # 60 s certificates (+ 5 min backdate)
    config = write_config(lab, tmp_path, [seeded_cluster], probe_interval="1s")
    state = tmp_path / "state"
    agent = RunningAgent(lab, config, tmp_path / "agent.log")
    running_agents.append(agent)
    kubeconfig = state / seeded_cluster / "kubeconfig"
    wait_for(lambda: read_status(state, seeded_cluster).get("state") == "ready", 60, "the first kubeconfig")

    link_restored.cut()
    wait_for(lambda: read_status(state, seeded_cluster).get("link") == "disconnected" or
             any(r.get("message") == "service link disconnected" for r in agent.records()), 30, "link down noticed")
    installed_before = sum(r.get("message") == "installed a new kubeconfig" for r in agent.records())
    failures, calls, expiries = [], 0, set()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
        calls += 1
        if rc != 0:
            failures.append(err)
        expiries.add(read_status(state, seeded_cluster).get("certificate_not_after"))
        renewals = sum(r.get("message") == "installed a new kubeconfig" for r in agent.records()) - installed_before
        if renewals >= 3 and calls >= 10:
            break
        time.sleep(0.3)
    assert failures == [], failures[:3]
    assert renewals >= 3, f"only {renewals} renewals while the link was down"
    assert len(expiries - {None}) >= 3
    assert not any(r.get("level") == "ERROR" for r in agent.records() if "needs-link" in str(r.get("message")))
    assert agent.stop() == 0
