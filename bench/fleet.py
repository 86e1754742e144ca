"""Fleet: one agent keeping 50 clusters current, and the Region workflow handling 20 CreateCluster events at once.

Agent (emulated control planes; and real ones, fewer, when ../shared/kube has the binaries): three timed
``lifeline-agent once`` passes over every cluster (bootstrap from nothing, renew all, verify all) and
``lifeline-agent run`` from nothing until every cluster is ready, each with ``max_concurrent_clusters = 1``
(the serial baseline) and with the agent's default (8 at once, or fewer with fewer clusters), in the same lab
and the same run. Each mode has its own state directory and host.

The renewal pass needs every certificate due (past its renewal deadline) and none expired when its cluster's
turn comes. So the certificates it renews are issued by an untimed priming pass with a lifetime chosen from
this run's own bootstrap passes: long enough that the last certificate is due (the agent's deadline rule at
its latest, read from the installed certificates) before the first one expires, with room for the priming
and the renewal passes at the measured speed. A slow machine gets longer lifetimes, not a wrong figure; if
the room turns out too small after priming, the mode is primed again with twice the room.

Workflow: the synthesized stack deployed into the lab Region; 20 CloudTrail ``CreateCluster`` events put
at once; time until every execution ended, and how many succeeded.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.backends import describe, unavailable
from bench.schedule import deadline_window
from lab.agentkit import (
    RENEWED,
    AgentProcess,
    check_kubeconfig,
    isolate_from_aws,
    read_status,
    run_once,
    seeded_cluster,
    started_lab,
    wait_for,  # fmt: skip
    write_config,
)

AGENT_CLUSTERS = {"full": 50, "quick": 10, "smoke": 3}
REAL_CLUSTERS = {"full": 10, "quick": 4, "smoke": 2}  # real control planes: 3 processes each on 2 cores
WORKFLOW_EVENTS = {"full": 20, "quick": 5, "smoke": 3}
ONE_YEAR = 365 * 86400
MODES = {"serial": 1, "default": None}  # max_concurrent_clusters; None: not set, the agent's default
TIMING = {"api_timeout": 10, "csr_timeout": 60}
SIGNER_BACKDATE = 300.0  # both backends backdate notBefore by 5 minutes (lab/pki.py, kube-controller-manager)
PRIMING_ATTEMPTS = 3
DUE_MARGIN = 1.0  # seconds past the latest possible deadline before the renewal pass starts


def timed_pass(lab: Any, config: Path) -> dict[str, Any]:
    started = time.monotonic()
    result = run_once(lab, config, timeout=1200)
    seconds = time.monotonic() - started
    states = [line.split()[1] for line in result.stdout.splitlines()[1:] if line.strip()]
    reasons = [json.loads(line).get("message", "") for line in result.stderr.splitlines() if line.startswith("{")]
    return {"seconds": round(seconds, 2), "exit_code": result.returncode, "ready": states.count("ready"),
            "clusters": len(states), "certificates_installed": reasons.count(RENEWED),
            "renewed_at_deadline": sum(r.startswith("issuing a new certificate: renewal deadline") for r in reasons),
            "finished_at": time.time()}  # fmt: skip


def latest_deadline(not_before: float, not_after: float, received_at: float) -> float:
    """The latest renewal deadline the agent can draw for this certificate (every fraction it may pick)."""
    return deadline_window(not_before, not_after, received_at)[1]


def lifetime_for(room: float) -> int:
    """The shortest signer lifetime (10 s steps) with ``room`` seconds between its latest deadline and expiry."""
    lifetime = 60
    while lifetime - latest_deadline(-SIGNER_BACKDATE, lifetime, 0.0) < room:
        lifetime += 10
    return lifetime


def installed_window(state: Path, clusters: list[str]) -> tuple[float, float]:
    """(latest possible deadline, earliest expiry) over the installed certificates of ``clusters``."""
    from cryptography import x509

    due, expires = 0.0, float("inf")
    for name in clusters:
        path = state / name / "kubeconfig"
        certificate = x509.load_pem_x509_certificate(check_kubeconfig(path.read_bytes()))
        not_before = certificate.not_valid_before_utc.timestamp()
        not_after = certificate.not_valid_after_utc.timestamp()
        due = max(due, latest_deadline(not_before, not_after, path.stat().st_mtime))
        expires = min(expires, not_after)
    return due, expires


def signing(lab: Any, clusters: list[str], seconds: int) -> None:
    for name in clusters:
        lab.control_plane(name).set_signing_duration(seconds)


def mode_configs(lab: Any, directory: Path, clusters: list[str], concurrent: int | None) -> tuple[Path, Path]:
    """The mode's configuration and a priming one for the same state directory and host at the default bound."""
    host = f"host-{uuid.uuid4().hex[:8]}"
    extra: dict[str, Any] = {} if concurrent is None else {"max_concurrent_clusters": concurrent}
    config = write_config(lab, directory, clusters, host_id=host, timing=TIMING, **extra)
    prime = write_config(lab, directory / "prime", clusters, host_id=host, state_dir=str(directory / "state"),
                         timing=TIMING)  # fmt: skip
    return config, prime


def renewal_passes(lab: Any, directory: Path, clusters: list[str], concurrent: int | None,
                   estimates: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    """Prime, wait until every certificate is due, then the timed renewal and verify passes.

    ``estimates``: how long the priming and the renewal pass may take (s); the certificates leave room for
    both, a quarter more and 5 s, between the latest deadline and the first expiry (twice that on each retry).
    """
    priming_estimate, renewal_estimate = estimates
    room = 1.25 * (priming_estimate + renewal_estimate) + 5
    attempts = []
    for attempt in range(PRIMING_ATTEMPTS):
        lifetime = lifetime_for(room * 2**attempt)
        config, prime = mode_configs(lab, directory / f"attempt-{attempt}", clusters, concurrent)
        signing(lab, clusters, lifetime)
        priming = timed_pass(lab, prime)
        signing(lab, clusters, ONE_YEAR)
        due, expires = installed_window(config.parent / "state", clusters)
        attempts.append({"certificate_lifetime_seconds": lifetime, "priming_pass_seconds": priming["seconds"],
                         "due_to_first_expiry_seconds": round(expires - due, 1)})  # fmt: skip
        if priming["certificates_installed"] == len(clusters) and expires - due >= 1.25 * renewal_estimate + 2:
            break
    time.sleep(max(0.0, due + DUE_MARGIN - time.time()))
    renew = timed_pass(lab, config)
    renew["expiry_margin_seconds"] = round(expires - renew.pop("finished_at"), 1)
    verify = timed_pass(lab, config)
    verify.pop("finished_at")
    return {"renew_every_cluster": renew, "verify_every_cluster": verify, "priming": attempts}


def daemon_to_all_ready(lab: Any, directory: Path, clusters: list[str], concurrent: int | None) -> dict[str, Any]:
    extra: dict[str, Any] = {} if concurrent is None else {"max_concurrent_clusters": concurrent}
    config = write_config(lab, directory, clusters, timing=TIMING, **extra)
    state = directory / "state"
    agent = AgentProcess(lab, config, directory / "daemon.log")
    try:
        wait_for(lambda: all(read_status(state, c).get("state") == "ready" for c in clusters), 600,
                 "every cluster ready under lifeline-agent run", interval=0.2)  # fmt: skip
        seconds = time.monotonic() - agent.started
        unexpected = sum(r.get("message") == "unexpected error in the reconcile loop" for r in agent.records())
    finally:
        agent.stop()
    return {"run_from_nothing_to_all_ready_seconds": round(seconds, 2), "run_unexpected_reconcile_errors": unexpected}


def agent_fleet(lab: Any, directory: Path, count: int) -> dict[str, Any]:
    """Every figure of one agent over ``count`` clusters, serial and default side by side."""
    real = lab.control_plane_backend == "real"
    with ThreadPoolExecutor(1 if real else 4) as pool:  # a real control plane starting takes both cores
        clusters = sorted(pool.map(lambda _: seeded_cluster(lab, "fleet"), range(count)))
    signing(lab, clusters, ONE_YEAR)
    modes: dict[str, dict[str, Any]] = {}
    for mode, concurrent in MODES.items():
        config, _ = mode_configs(lab, directory / f"{mode}-bootstrap", clusters, concurrent)
        modes[mode] = {"max_concurrent_clusters": concurrent or min(8, count),
                       "once_passes": {"bootstrap_from_nothing": timed_pass(lab, config)}}  # fmt: skip
    for mode, concurrent in MODES.items():
        bootstrap = modes[mode]["once_passes"]["bootstrap_from_nothing"]
        bootstrap.pop("finished_at")
        # priming runs at the default bound; a renewal pass takes at most a bootstrap pass's time
        estimates = (modes["default"]["once_passes"]["bootstrap_from_nothing"]["seconds"], bootstrap["seconds"])
        passes = renewal_passes(lab, directory / f"{mode}-renewal", clusters, concurrent, estimates)
        modes[mode]["renewal_priming"] = passes.pop("priming")
        modes[mode]["once_passes"].update(passes)
    for mode, concurrent in MODES.items():
        modes[mode].update(daemon_to_all_ready(lab, directory / f"{mode}-daemon", clusters, concurrent))
    serial, default = modes["serial"], modes["default"]
    speedup = {key: round(figures["seconds"] / default["once_passes"][key]["seconds"], 2)
               for key, figures in serial["once_passes"].items() if default["once_passes"][key]["seconds"]}
    speedup["run_from_nothing_to_all_ready"] = round(serial["run_from_nothing_to_all_ready_seconds"]
                                                     / default["run_from_nothing_to_all_ready_seconds"], 2)
    return {"clusters": count, "control_plane": describe(lab.control_plane_backend), "modes": modes,
            "serial_over_default": speedup}


def cloudtrail_event(lab: Any, name: str, event_id: str) -> dict[str, Any]:
    from lab.lab import CLUSTER_ROLE_ARN, DEFAULT_OUTPOST_ARN

    return {
        "eventVersion": "1.08", "eventSource": "eks.amazonaws.com", "eventName": "CreateCluster",
        "awsRegion": lab.region.name, "eventID": event_id, "eventType": "AwsApiCall", "managementEvent": True,
        "userIdentity": {"type": "IAMUser", "arn": lab.creator.arn, "accountId": lab.region.account_id},
        "requestParameters": {
            "name": name, "version": "1.31", "roleArn": CLUSTER_ROLE_ARN,
            "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "endpointPrivateAccess": True},
            "outpostConfig": {"outpostArns": [DEFAULT_OUTPOST_ARN], "controlPlaneInstanceType": "m5d.large"},
        },
        "responseElements": {"cluster": {"name": name, "status": "CREATING"}},
    }  # fmt: skip


def map_workflow_role(lab: Any, cluster: str, identity: str) -> None:
    """What the cluster creator does for clusters made outside Lifeline (docs/demo.md): map the workflow's role."""
    from kubernetes import client

    entry = [{"userarn": identity, "username": "lifeline-workflow", "groups": ["system:masters"]}]
    with lab.kubernetes_api_client(cluster) as api_client:
        client.CoreV1Api(api_client).create_namespaced_config_map("kube-system", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="aws-auth", namespace="kube-system"),
            data={"mapUsers": json.dumps(entry)}))  # fmt: skip


def workflow_identity(lab: Any) -> str:
    import boto3

    sts = boto3.client("sts", endpoint_url=lab.region_url, region_name=lab.region.name,
                       aws_access_key_id="lambda-role-access-key",
                       aws_secret_access_key="lambda-role-secret-key")  # noqa: S106 - a lab placeholder
    return str(sts.get_caller_identity()["Arn"])


def workflow_fleet(lab: Any, count: int) -> dict[str, Any]:
    from lab.deploy import lab_deployment

    deploy_started = time.monotonic()
    lab_deployment(lab)
    deploy_seconds = time.monotonic() - deploy_started
    identity = workflow_identity(lab)
    names = [f"wf-{uuid.uuid4().hex[:6]}" for _ in range(count)]

    def create(name: str) -> None:
        lab.create_local_cluster(name)
        map_workflow_role(lab, name, identity)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, names))
    event_ids = {str(uuid.uuid4()): name for name in names}
    entries = [{"Source": "aws.eks", "DetailType": "AWS API Call via CloudTrail",
                "Detail": json.dumps(cloudtrail_event(lab, name, event_id))} for event_id, name in event_ids.items()]
    events = lab.client("events")
    started = time.monotonic()
    for chunk in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
        response = events.put_events(Entries=entries[chunk:chunk + 10])
        if response["FailedEntryCount"]:
            raise RuntimeError(f"EventBridge refused events: {response['Entries']}")
    arns = wait_for(lambda: _executions(lab, event_ids), 60, "an execution per event")
    sfn = lab.client("stepfunctions")
    statuses: dict[str, str] = {}
    while len(statuses) < len(arns) and time.monotonic() - started < 900:
        for arn in arns:
            if arn not in statuses:
                status = sfn.describe_execution(executionArn=arn)["status"]
                if status != "RUNNING":
                    statuses[arn] = status
        time.sleep(0.5)
    seconds = time.monotonic() - started
    secrets = lab.client("secretsmanager")
    stored = sum(1 for name in names if _has_secret(secrets, name))
    return {"events": count, "deploy_seconds": round(deploy_seconds, 2),
            "events_to_all_executions_ended_seconds": round(seconds, 2),
            "succeeded": list(statuses.values()).count("SUCCEEDED"),
            "statuses": {s: list(statuses.values()).count(s) for s in set(statuses.values())},
            "still_running": len(arns) - len(statuses), "secrets_stored": stored}  # fmt: skip


def _executions(lab: Any, event_ids: dict[str, str]) -> list[str] | None:
    found = {d["input"].get("detail", {}).get("eventID"): d["executionArn"] for d in lab.region.delivered_events()}
    arns = [found[e] for e in event_ids if e in found]
    return arns if len(arns) == len(event_ids) else None


def _has_secret(secrets: Any, name: str) -> bool:
    try:
        secrets.describe_secret(SecretId=f"lifeline/{name}")
    except secrets.exceptions.ResourceNotFoundException:
        return False
    return True


def run(variant: str) -> dict[str, Any]:
    isolate_from_aws()
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        with started_lab(Path(tmp) / "lab-agent") as lab:
            backends["emulated"] = agent_fleet(lab, Path(tmp) / "emulated", AGENT_CLUSTERS[variant])
        print(f"fleet agent [emulated]: {json.dumps(backends['emulated'])}", flush=True)
        reason = unavailable("real")
        if reason is None:
            with started_lab(Path(tmp) / "lab-agent-real", control_plane="real") as lab:
                backends["real"] = agent_fleet(lab, Path(tmp) / "real", REAL_CLUSTERS[variant])
            print(f"fleet agent [real]: {json.dumps(backends['real'])}", flush=True)
        else:
            backends["real"] = {"skipped": reason}
        with started_lab(Path(tmp) / "lab-workflow", activation_delay=1.0) as lab:
            workflow = workflow_fleet(lab, WORKFLOW_EVENTS[variant])
        print(f"fleet workflow: {json.dumps(workflow)}", flush=True)
    return {"what": __doc__.strip().splitlines()[0], "agent_backends": backends, "workflow": workflow}
