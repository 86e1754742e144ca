"""What the agent's runtime imports: botocore but not boto3, its own HTTPS client but not the Kubernetes client;
and a Region-less daemon not even botocore."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
from pathlib import Path

from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.pki import ClusterCA

PROBE = """
import json, sys
from lifeline_agent import cli, daemon, fleet, reconcile
daemon.preload_libraries()
from lifeline_agent.region import aws_client
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""

# lifeline-agent run's Daemon, until every cluster loop made its first step (a bootstrap that finds nobody
# listening), then stopped; prints the top-level packages loaded by then.
RUN_PROBE = """
import json, sys, time
from lifeline_agent.config import load_config
from lifeline_agent.daemon import Daemon
from lifeline_agent.observability import ClusterState, Observer, SystemdNotifier

config = load_config(sys.argv[1])
assert not config.needs_region
daemon = Daemon(config, Observer(), SystemdNotifier({}))

def wait(_tick):
    deadline = time.monotonic() + 30
    while any(agent.state is ClusterState.PENDING for agent in daemon.agents.values()):
        assert time.monotonic() < deadline, "no first step within 30 s"
        time.sleep(0.05)
    daemon.stop()
    return True

daemon.run(sleep=wait)
print(json.dumps({"states": [agent.state.value for agent in daemon.agents.values()],
                  "loaded": sorted({name.split('.')[0] for name in sys.modules})}))
"""


def test_the_agent_loads_botocore_and_neither_boto3_nor_the_kubernetes_client() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(result.stdout))
    assert "botocore" in loaded and "cryptography" in loaded
    assert not loaded & {"boto3", "kubernetes", "requests"}


def test_a_region_less_daemon_never_loads_botocore(tmp_path: Path) -> None:
    ca = ClusterCA.create("kubernetes")
    with socket.socket() as closed:  # a loopback port nobody listens on: the bootstrap fails at once
        closed.bind(("127.0.0.1", 0))
        endpoint = f"https://127.0.0.1:{closed.getsockname()[1]}"
    cert, key = ca.issue_client_cert("bootstrap", ["lifeline:agents"], dt.timedelta(hours=1))
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    bootstrap.write_bytes(dump_kubeconfig(build_kubeconfig(cluster_name="edge", server=endpoint, ca_pem=ca.cert_pem,
                                                           user_name="bootstrap", client_cert_pem=cert,
                                                           client_key_pem=key)))  # fmt: skip
    bootstrap.chmod(0o600)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    config = tmp_path / "agent.toml"
    config.write_text(f'host_id = "edge-host"\nstate_dir = "{tmp_path / "state"}"\nclusters = ["edge"]\n'
                      f'[cluster.edge]\nendpoint = "{endpoint}"\ncertificate_authority = "{tmp_path / "ca.crt"}"\n'
                      f'bootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
    config.chmod(0o600)
    result = subprocess.run([sys.executable, "-c", RUN_PROBE, str(config)],
                            capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["states"] == ["failed"]  # the loop made its step (nobody answered), with botocore or without
    assert "cryptography" in outcome["loaded"]
    assert "botocore" not in outcome["loaded"]
