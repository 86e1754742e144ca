"""Renewal speed: the agent's full renewal versus DESIGN §1's manual procedure, same control plane, same run.

Agent: one ``ClusterAgent.step()`` of the daemon's code in this process (new key, CSR, approve, wait for the
certificate, verify with the new kubeconfig alone, atomic install). Manual: ``manual_renewal.sh`` (openssl +
kubectl). Every timed agent step renews on request (``ClusterAgent.request_renewal``, what SIGUSR1 does).
API floor (``bench/api_floor.py``): the least a client does for a certificate (key, CSR, one TLS connection,
POST, approve, GET until issued), as the agent's identity; the acceptance's floor holds the TLS context and a
session ticket of that certificate (the agent holds both from verifying it), the cold one makes them anew
every time. Agent, manual and floor runs alternate, so drift in the machine's load hits all alike. After each
timed step the agent deletes its CSR (what its next step does in the daemon), not timed, as the floor's are not.

Each control-plane backend that can run here is measured in the same run, one after the other, each in its
own lab: ``emulated`` (the lab's in-process API server) and ``real`` (etcd + kube-apiserver +
kube-controller-manager v1.28.7 from ``../shared/kube``, 30 s certificates from
``--cluster-signing-duration``). A backend that cannot run is recorded as skipped, with the reason.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from bench.api_floor import ApiFloor
from bench.backends import BACKENDS, in_own_labs
from bench.common import load_average, spread
from lab.agentkit import VENV_BIN, agent_credentials, seeded_cluster, started_lab, write_config

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
FLOOR_KEY_TYPE = "ecdsa-p256"  # the agent's default, and the floor's key
# api_floor: with the TLS context and session of the certificate in hand, as the agent has them (the acceptance);
# api_floor_cold: a new context and a full handshake every time, the floor of the first benchmarks
FLOORS = ("api_floor", "api_floor_cold")
ROUNDS = {"full": {"ecdsa-p256": 30, "rsa-2048": 30, "rsa-4096": 15}, "quick": dict.fromkeys(KEY_TYPES, 4),
          "smoke": dict.fromkeys(KEY_TYPES, 3)}  # fmt: skip
MANUAL_SCRIPT = Path(__file__).resolve().parent / "manual_renewal.sh"
MANUAL_USER = "manual-operator"
SIGNING_DURATION_SECONDS = 30


class RenewalFailed(RuntimeError):
    """A timed renewal did not end with a new, verified kubeconfig."""


def time_agent_renewal(agent: Any, kubeconfig: Path) -> float:
    before = kubeconfig.read_bytes()
    agent.request_renewal("benchmark round")  # a fresh certificate is not due yet: renew now, as SIGUSR1 does
    started = time.perf_counter()
    agent.step()
    elapsed = time.perf_counter() - started
    if agent.state.value != "ready" or kubeconfig.read_bytes() == before:
        raise RenewalFailed(f"agent step did not renew: {agent.state.value} {agent.last_error}")
    agent.delete_csrs()  # what the daemon's next step does; not timed, like the floor's deletions
    if agent.csrs.pending:
        raise RenewalFailed(f"the agent's CSRs {agent.csrs.pending} were not deleted")
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


def agent_credential(kubeconfig: Path) -> tuple[dict[str, Any], bytes, bytes]:
    """``(cluster entry, certificate PEM, key PEM)`` of the agent's installed kubeconfig."""
    config = yaml.safe_load(kubeconfig.read_bytes())
    user = config["users"][0]["user"]
    return (config["clusters"][0]["cluster"], base64.b64decode(user["client-certificate-data"]),
            base64.b64decode(user["client-key-data"]))  # fmt: skip


def api_floor_for(kubeconfig: Path, *, warm: bool = True) -> ApiFloor:
    """The API floor as the agent's identity, from the agent's installed kubeconfig."""
    cluster, cert_pem, key_pem = agent_credential(kubeconfig)
    subject = x509.load_pem_x509_certificate(cert_pem).subject
    names = [subject.get_attributes_for_oid(oid)[0].value for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME)]
    return ApiFloor(cluster["server"], base64.b64decode(cluster["certificate-authority-data"]),
                    cluster.get("tls-server-name"), cert_pem, key_pem, (str(names[0]), str(names[1])),
                    warm=warm)  # fmt: skip


def describe_backend(backend: str) -> str:
    if backend == "real":
        from lab.controlplane.real import KUBE_VERSION

        return (f"real: etcd + kube-apiserver + kube-controller-manager {KUBE_VERSION} (separate processes), "
                f"certificates capped by --cluster-signing-duration={SIGNING_DURATION_SECONDS}s")  # fmt: skip
    return "emulated: the lab's API server in this process (the in-process agent shares its GIL)"


def measure(backend: str, variant: str, tmp: Path) -> dict[str, Any]:
    """The renewal figures of every key type on one cluster of ``backend``, in a lab of its own."""
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    results: dict[str, Any] = {}
    with started_lab(tmp / "lab", control_plane=backend) as lab:
        cluster = seeded_cluster(lab, "renewal")
        lab.control_plane(cluster).set_signing_duration(SIGNING_DURATION_SECONDS)
        admin = lab.admin_kubeconfig(cluster)
        info = lab.describe_cluster(cluster)
        ca = tmp / "ca.crt"
        ca.write_bytes(info.ca_pem)
        subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(admin), "create", "clusterrolebinding",
                        "manual-operator", "--clusterrole=cluster-admin", f"--user={MANUAL_USER}"], check=True,
                       capture_output=True)  # fmt: skip
        for key_type in KEY_TYPES:
            work = tmp / f"manual-{key_type}"
            work.mkdir()
            with agent_credentials(lab):
                config = load_config(write_config(lab, tmp / f"agent-{key_type}", [cluster], key_type=key_type))
                agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
                agent.step()  # bootstrap (IAM token through the Region), not timed
                kubeconfig = config.cluster_dir(cluster) / "kubeconfig"
                time_agent_renewal(agent, kubeconfig)  # warm-up: imports, connection setup
                time_manual_renewal(work, admin, info.endpoint, ca, key_type)
                floors = {name: api_floor_for(kubeconfig, warm=name == "api_floor")
                          for name in FLOORS} if key_type == FLOOR_KEY_TYPE else {}  # fmt: skip
                agent_times: list[float] = []
                manual_times: list[float] = []
                floor_times: dict[str, list[float]] = {name: [] for name in floors}
                try:
                    for floor in floors.values():
                        floor.renew()  # warm-up
                    for _ in range(ROUNDS[variant][key_type]):
                        agent_times.append(time_agent_renewal(agent, kubeconfig))
                        # The agent's new certificate (they live 30 s). The warm floor makes its context and ticket
                        # now, as the agent did in its step: they wait through the manual procedure, as the agent's do.
                        for floor in floors.values():
                            floor.use(*agent_credential(kubeconfig)[1:])
                        manual_times.append(time_manual_renewal(work, admin, info.endpoint, ca, key_type))
                        for name, floor in floors.items():
                            floor_times[name].append(floor.renew())
                    for floor in floors.values():
                        floor.use(*agent_credential(kubeconfig)[1:])
                        floor.delete_csrs()
                finally:
                    for floor in floors.values():
                        floor.close()
            agent_stats, manual_stats = spread(agent_times), spread(manual_times)
            results[key_type] = {
                "agent_seconds": agent_stats,
                "manual_seconds": manual_stats,
                "ratio_manual_over_agent_median": round(manual_stats["median"] / agent_stats["median"], 2),
            }
            for name, times in floor_times.items():
                floor_stats = spread(times)
                results[key_type][f"{name}_seconds"] = floor_stats
                results[key_type][f"ratio_agent_over_{name}_median"] = round(
                    agent_stats["median"] / floor_stats["median"], 2)
            print(f"renewal [{backend}] {key_type}: agent median {agent_stats['median']:.3f} s, manual median "
                  f"{manual_stats['median']:.3f} s, ratio {results[key_type]['ratio_manual_over_agent_median']}x",
                  flush=True)  # fmt: skip
    default, slowest_manual = results[FLOOR_KEY_TYPE], results["rsa-4096"]
    acceptance = {
        "agent_default_vs_manual_rsa_4096": round(slowest_manual["manual_seconds"]["median"]
                                                  / default["agent_seconds"]["median"], 2),
        "agent_default_over_api_floor": default["ratio_agent_over_api_floor_median"],
        "targets": {"agent_default_vs_manual_rsa_4096": ">= 40", "agent_default_over_api_floor": "<= 2"},
    }  # fmt: skip
    return {"control_plane": describe_backend(backend), "key_types": results, "acceptance": acceptance,
            "load_average_at_end": load_average()}  # fmt: skip


def run(variant: str, backends: Sequence[str] = BACKENDS) -> dict[str, Any]:
    measured, failures = in_own_labs("renewal", variant, backends, measure)
    return {
        "what": "one full renewal: new key, CSR, approve, wait for the certificate, verify with the new "
                "kubeconfig alone, install (agent: in-process ClusterAgent.step, the daemon's code; manual: "
                "bench/manual_renewal.sh, openssl + kubectl, DESIGN section 1 steps 1-3 and 6 + a proving kubectl "
                "call); same lab control plane, alternating runs; each control-plane backend in its own lab, "
                "one after the other",
        "backends": measured,
        **({"failures": failures} if failures else {}),
    }
