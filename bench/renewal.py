"""Renewal speed: the agent's full renewal versus DESIGN §1's manual procedure, same control plane, same run.

Agent: one ``ClusterAgent.step()`` of the daemon's code in this process (new key, CSR, approve, wait for the
certificate, verify with the new kubeconfig alone, atomic install). Manual: ``manual_renewal.sh`` (openssl +
kubectl). 30 s certificates (backdated 5 minutes) make every agent step a renewal. Agent and manual runs
alternate, so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import spread
from lab.agentkit import VENV_BIN, agent_credentials, isolate_from_aws, seeded_cluster, started_lab, write_config

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
ROUNDS = {"full": {"ecdsa-p256": 30, "rsa-2048": 30, "rsa-4096": 15}, "quick": dict.fromkeys(KEY_TYPES, 4)}
MANUAL_SCRIPT = Path(__file__).resolve().parent / "manual_renewal.sh"
MANUAL_USER = "manual-operator"


class RenewalFailed(RuntimeError):
    """A timed renewal did not end with a new, verified kubeconfig."""


def time_agent_renewal(agent: Any, kubeconfig: Path) -> float:
    before = kubeconfig.read_bytes()
    started = time.perf_counter()
    agent.step()
    elapsed = time.perf_counter() - started
    if agent.state.value != "ready" or kubeconfig.read_bytes() == before:
        raise RenewalFailed(f"agent step did not renew: {agent.state.value} {agent.last_error}")
    return elapsed


def time_manual_renewal(work: Path, admin: Path, server: str, ca: Path, key_type: str) -> float:
    env_path = f"{VENV_BIN}:/usr/bin:/bin"
    started = time.perf_counter()
    result = subprocess.run(["bash", str(MANUAL_SCRIPT), str(work), str(admin), server, str(ca), MANUAL_USER,
                             key_type], capture_output=True, text=True, env={"PATH": env_path}, timeout=120,
                            check=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RenewalFailed(f"manual procedure failed: {result.stderr.strip()[-500:]}")
    return elapsed


def run(variant: str) -> dict[str, Any]:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    isolate_from_aws()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-renewal-") as tmp, started_lab(Path(tmp) / "lab") as lab:
        cluster = seeded_cluster(lab, "renewal")
        lab.control_plane(cluster).set_signing_duration(30)
        admin = lab.admin_kubeconfig(cluster)
        info = lab.describe_cluster(cluster)
        ca = Path(tmp) / "ca.crt"
        ca.write_bytes(info.ca_pem)
        subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(admin), "create", "clusterrolebinding",
                        "manual-operator", "--clusterrole=cluster-admin", f"--user={MANUAL_USER}"], check=True,
                       capture_output=True)  # fmt: skip
        for key_type in KEY_TYPES:
            work = Path(tmp) / f"manual-{key_type}"
            work.mkdir()
            with agent_credentials(lab):
                config = load_config(write_config(lab, Path(tmp) / f"agent-{key_type}", [cluster], key_type=key_type))
                agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
                agent.step()  # bootstrap (IAM token through the Region), not timed
                kubeconfig = config.cluster_dir(cluster) / "kubeconfig"
                time_agent_renewal(agent, kubeconfig)  # warm-up: imports, connection setup
                time_manual_renewal(work, admin, info.endpoint, ca, key_type)
                agent_times, manual_times = [], []
                for _ in range(ROUNDS[variant][key_type]):
                    agent_times.append(time_agent_renewal(agent, kubeconfig))
                    manual_times.append(time_manual_renewal(work, admin, info.endpoint, ca, key_type))
            agent_stats, manual_stats = spread(agent_times), spread(manual_times)
            results[key_type] = {
                "agent_seconds": agent_stats,
                "manual_seconds": manual_stats,
                "ratio_manual_over_agent_median": round(manual_stats["median"] / agent_stats["median"], 2),
            }
            print(f"renewal {key_type}: agent median {agent_stats['median']:.3f} s, manual median "
                  f"{manual_stats['median']:.3f} s, ratio {results[key_type]['ratio_manual_over_agent_median']}x",
                  flush=True)  # fmt: skip
    return {
        "what": "one full renewal: new key, CSR, approve, wait for the certificate, verify with the new "
                "kubeconfig alone, install (agent: in-process ClusterAgent.step, the daemon's code; manual: "
                "bench/manual_renewal.sh, openssl + kubectl, DESIGN section 1 steps 1-3 and 6 + a proving kubectl "
                "call); same lab control plane, alternating runs",
        "key_types": results,
    }
