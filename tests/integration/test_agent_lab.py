"""The agent against the lab: real lifeline-agent processes, real TLS, real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
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
