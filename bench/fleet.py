"""Fleet: one agent keeping 50 clusters current, and the Region workflow handling 20 CreateCluster events at once.

Agent: ``lifeline-agent once`` passes over 50 clusters (sequential: bootstrap from nothing, renew all,
verify all) and ``lifeline-agent run`` (one loop per cluster) from nothing until every cluster is ready.
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

from lab.agentkit import (
    RENEWED,
    AgentProcess,
    isolate_from_aws,
    read_status,
    run_once,
    seeded_cluster,
    started_lab,
    wait_for,  # fmt: skip
    write_config,
)

AGENT_CLUSTERS = {"full": 50, "quick": 10, "smoke": 3}
WORKFLOW_EVENTS = {"full": 20, "quick": 5, "smoke": 3}
ONE_YEAR = 365 * 86400


def timed_pass(lab: Any, config: Path) -> dict[str, Any]:
    started = time.monotonic()
    result = run_once(lab, config, timeout=1200)
    states = [line.split()[1] for line in result.stdout.splitlines()[1:] if line.strip()]
    return {"seconds": round(time.monotonic() - started, 2), "exit_code": result.returncode,
            "ready": states.count("ready"), "clusters": len(states),
            "certificates_installed": result.stderr.count(RENEWED)}  # fmt: skip


def agent_fleet(lab: Any, directory: Path, count: int) -> dict[str, Any]:
    with ThreadPoolExecutor(4) as pool:
        clusters = list(pool.map(lambda _: seeded_cluster(lab, "fleet"), range(count)))
    config = write_config(lab, directory / "once", clusters, timing={"api_timeout": 10, "csr_timeout": 60})

    def signing(seconds: int) -> None:
        for name in clusters:
            lab.control_plane(name).set_signing_duration(seconds)

    signing(30)  # the first certificates are due at once, so the second pass renews every cluster
    passes = {"bootstrap_from_nothing": timed_pass(lab, config)}
    signing(ONE_YEAR)
    passes["renew_every_cluster"] = timed_pass(lab, config)
    passes["verify_every_cluster"] = timed_pass(lab, config)

    daemon_config = write_config(lab, directory / "daemon", clusters, timing={"api_timeout": 10, "csr_timeout": 60})
    state = directory / "daemon" / "state"
    agent = AgentProcess(lab, daemon_config, directory / "daemon.log")
    try:
        wait_for(lambda: all(read_status(state, c).get("state") == "ready" for c in clusters), 600,
                 "every cluster ready under lifeline-agent run", interval=0.5)  # fmt: skip
        daemon_seconds = time.monotonic() - agent.started
        unexpected = sum(r.get("message") == "unexpected error in the reconcile loop" for r in agent.records())
    finally:
        agent.stop()
    return {"clusters": count, "once_passes": passes,
            "run_from_nothing_to_all_ready_seconds": round(daemon_seconds, 2),
            "run_unexpected_reconcile_errors": unexpected}  # fmt: skip


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
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        with started_lab(Path(tmp) / "lab-agent") as lab:
            agent = agent_fleet(lab, Path(tmp), AGENT_CLUSTERS[variant])
        print(f"fleet agent: {json.dumps(agent)}", flush=True)
        with started_lab(Path(tmp) / "lab-workflow", activation_delay=1.0) as lab:
            workflow = workflow_fleet(lab, WORKFLOW_EVENTS[variant])
        print(f"fleet workflow: {json.dumps(workflow)}", flush=True)
    return {"what": __doc__.strip().splitlines()[0], "agent": agent, "workflow": workflow}
