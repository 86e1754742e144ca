"""The synthesized state machine, deployed into the lab Region and executed against lab control planes.

One deployment per lab (``lab.deploy.lab_deployment``); all tests here share one xdist worker.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import boto3
import pytest
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.rbac import BREAKGLASS_BINDING, CSR_REQUESTER

from cdk.constructs.workflow import RETRY_MAX_ATTEMPTS
from lab.deploy import DeployedStack, lab_deployment
from lab.lab import CLUSTER_ROLE_ARN, DEFAULT_OUTPOST_ARN
from lambdas import constants

pytestmark = pytest.mark.xdist_group("lifeline-workflow")

OTHER_OUTPOST_ARN = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"
EXECUTION_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def deployed(lab: Any) -> DeployedStack:
    return lab_deployment(lab)


def workflow_principal_client(lab: Any, service: str) -> Any:
    """A client with credentials moto does not know: moto resolves them to the same identity as the keys the
    lab runs Lambda functions with, i.e. the workflow's principal."""
    return boto3.client(
        service, endpoint_url=lab.region_url, region_name="us-west-2",
        aws_access_key_id="lifeline-test-unknown-key", aws_secret_access_key="unknown",
    )


@pytest.fixture(scope="module")
def workflow_identity(lab: Any) -> str:
    return str(workflow_principal_client(lab, "sts").get_caller_identity()["Arn"])


def create_cluster_parameters(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.31",
        "roleArn": CLUSTER_ROLE_ARN,
        "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "endpointPrivateAccess": True},
        "outpostConfig": {"outpostArns": [DEFAULT_OUTPOST_ARN], "controlPlaneInstanceType": "m5d.large"},
    }


def grant_workflow_admin(lab: Any, cluster: str, identity: str) -> None:
    """What an operator does for clusters created outside Lifeline: map the workflow's role as admin."""
    from kubernetes import client

    entry = [{"userarn": identity, "username": "lifeline-workflow", "groups": ["system:masters"]}]
    with lab.kubernetes_api_client(cluster) as api_client:
        client.CoreV1Api(api_client).create_namespaced_config_map(
            "kube-system",
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="aws-auth", namespace="kube-system"),
                data={"mapUsers": json.dumps(entry)},
            ),
        )


def cloudtrail_event_detail(name: str, *, name_field: str = "name", outpost: str | None = DEFAULT_OUTPOST_ARN) -> dict:
    parameters: dict[str, Any] = {
        name_field: name,
        "roleArn": CLUSTER_ROLE_ARN,
        "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"]},
    }
    if outpost is not None:
        parameters["outpostConfig"] = {"outpostArns": [outpost], "controlPlaneInstanceType": "m5d.large"}
    return {
        "eventVersion": "1.08",
        "eventSource": "eks.amazonaws.com",
        "eventName": "CreateCluster",
        "awsRegion": "us-west-2",
        "requestParameters": parameters,
        "responseElements": {"cluster": {"name": name, "status": "CREATING"}},
    }


def cloudtrail_event(name: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": constants.CLOUDTRAIL_DETAIL_TYPE,
        "source": constants.CLOUDTRAIL_SOURCE,
        "account": "123456789012",
        "time": "2026-11-27T09:00:00Z",
        "region": "us-west-2",
        "resources": [],
        "detail": cloudtrail_event_detail(name, **kwargs),
    }


def provision_request(name: str, *, outpost: str = DEFAULT_OUTPOST_ARN, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "roleArn": CLUSTER_ROLE_ARN,
        "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "endpointPrivateAccess": True},
        "outpostConfig": {"outpostArns": [outpost], "controlPlaneInstanceType": "m5d.large"},
        "version": "1.31",
        **extra,
    }


def put_event(lab: Any, source: str, detail_type: str, detail: dict[str, Any]) -> None:
    response = lab.client("events").put_events(
        Entries=[{"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}]
    )
    assert response["FailedEntryCount"] == 0


def start(lab: Any, deployed: DeployedStack, execution_input: Any) -> str:
    response = lab.client("stepfunctions").start_execution(
        stateMachineArn=deployed.state_machine_arn,
        name=f"test-{uuid.uuid4().hex}",
        input=execution_input if isinstance(execution_input, str) else json.dumps(execution_input),
    )
    return str(response["executionArn"])


def delivered_execution(lab: Any, cluster: str, timeout: float = 10.0) -> str:
    """The execution EventBridge started for an event about ``cluster``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in lab.region.delivered_events():
            if cluster in json.dumps(delivery["input"].get("detail", {})):
                return str(delivery["executionArn"])
        time.sleep(0.1)
    raise AssertionError(f"EventBridge started no execution for {cluster}")


def finished(lab: Any, execution_arns: list[str], timeout: float = EXECUTION_TIMEOUT) -> dict[str, dict]:
    sfn = lab.client("stepfunctions")
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(execution_arns):
        assert time.monotonic() < deadline, f"executions still running: {set(execution_arns) - set(results)}"
        for arn in execution_arns:
            if arn not in results:
                described = sfn.describe_execution(executionArn=arn)
                if described["status"] != "RUNNING":
                    results[arn] = described
        time.sleep(0.2)
    return results


def run(lab: Any, deployed: DeployedStack, execution_input: Any) -> dict[str, Any]:
    arn = start(lab, deployed, execution_input)
    return finished(lab, [arn])[arn]


def secret_names(lab: Any) -> set[str]:
    paginator = lab.client("secretsmanager").get_paginator("list_secrets")
    return {s["Name"] for page in paginator.paginate() for s in page["SecretList"]}


def events_for(lab: Any, detail_type: str, cluster: str) -> list[dict[str, Any]]:
    return [e for e in lab.region.events(detail_type=detail_type) if e["detail"].get("clusterName") == cluster]


def assert_offline_access_ready(lab: Any, deployed: DeployedStack, cluster: str) -> ClusterSecret:
    """Secret (CA = the control plane's, CMK, tags), RBAC objects and aws-auth in the cluster, ready event."""
    from kubernetes import client

    secrets = lab.client("secretsmanager")
    name = f"lifeline/{cluster}"
    secret = ClusterSecret.from_json(secrets.get_secret_value(SecretId=name)["SecretString"])
    control_plane = lab.control_plane(cluster)
    ca_pem = control_plane.ca_pem if isinstance(control_plane.ca_pem, bytes) else control_plane.ca_pem.encode()
    assert secret.ca_pem == ca_pem
    assert base64.b64decode(secret.certificate_authority_data) == ca_pem
    info = lab.describe_cluster(cluster)
    assert (secret.endpoint, secret.cluster_id, secret.outpost_arns) == (info.endpoint, info.id, info.outpost_arns)
    described = secrets.describe_secret(SecretId=name)
    assert described["KmsKeyId"] == deployed.kms_key_arn
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags[constants.TAG_CLUSTER] == cluster
    policy = json.loads(secrets.get_resource_policy(SecretId=name)["ResourcePolicy"])
    allow, deny, writes = policy["Statement"]
    assert allow["Principal"] == {"AWS": [lab.agent_principal.arn]} and deny["Effect"] == "Deny"
    assert lab.agent_principal.arn in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert writes["Effect"] == "Deny" and "secretsmanager:PutSecretValue" in writes["Action"]
    writer = writes["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert writer in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] and writer != lab.agent_principal.arn
    with lab.kubernetes_api_client(cluster) as api_client:
        rbac = client.RbacAuthorizationV1Api(api_client)
        breakglass = rbac.read_cluster_role_binding(BREAKGLASS_BINDING)
        assert [(s.kind, s.name) for s in breakglass.subjects] == [("Group", "lifeline:breakglass")]
        assert breakglass.role_ref.name == "cluster-admin"
        assert rbac.read_cluster_role(CSR_REQUESTER).rules
        requester_groups = {s.name for s in rbac.read_cluster_role_binding(CSR_REQUESTER).subjects}
        assert requester_groups == {"lifeline:agents", "lifeline:breakglass"}
        aws_auth = client.CoreV1Api(api_client).read_namespaced_config_map("aws-auth", "kube-system")
        assert lab.agent_principal.arn in aws_auth.data["mapUsers"]
    (ready,) = events_for(lab, constants.READY_DETAIL_TYPE, cluster)[-1:]
    assert ready["source"] == constants.EVENT_SOURCE
    assert ready["detail"]["secretName"] == name
    assert ready["detail"]["caSha256"] == secret.ca_sha256
    return secret


def test_cluster_created_while_cloudtrail_logs_gets_offline_access_through_the_rule(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    """The whole trigger: EKS CreateCluster -> CloudTrail -> EventBridge rule -> execution. The cluster is
    created by the workflow's own principal (which makes it the cluster's admin, as with the provisioning path)."""
    trail = lab.enable_cloudtrail()
    try:
        workflow_principal_client(lab, "eks").create_cluster(**create_cluster_parameters(unique_name))
    finally:
        lab.client("cloudtrail").stop_logging(Name=trail)  # the lab is shared: leave CloudTrail as found
    arn = delivered_execution(lab, unique_name)
    result = finished(lab, [arn])[arn]
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert json.loads(result["output"])["status"] == "READY"
    assert_offline_access_ready(lab, deployed, unique_name)


def test_older_cloudtrail_shape_with_cluster_name_and_an_operator_mapped_workflow_role(
    lab: Any, deployed: DeployedStack, workflow_identity: str, unique_name: str
) -> None:
    """Cluster created by someone else: its creator maps the workflow's role in aws-auth; the workflow adds the
    agents and keeps that entry. (Started directly with the event: the rule's match of this shape is checked
    with EventBridge's matcher in tests/infrastructure.)"""
    from kubernetes import client

    lab.create_local_cluster(unique_name)
    grant_workflow_admin(lab, unique_name, workflow_identity)
    result = run(lab, deployed, cloudtrail_event(unique_name, name_field="clusterName"))
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert_offline_access_ready(lab, deployed, unique_name)
    with lab.kubernetes_api_client(unique_name) as api_client:
        data = client.CoreV1Api(api_client).read_namespaced_config_map("aws-auth", "kube-system").data
    assert workflow_identity in data["mapUsers"], "the operator's own aws-auth entry must be kept"


def test_provision_request_event_creates_the_cluster_and_gives_offline_access(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    put_event(lab, constants.EVENT_SOURCE, constants.PROVISION_REQUEST_DETAIL_TYPE, provision_request(unique_name))
    arn = delivered_execution(lab, unique_name)
    result = finished(lab, [arn])[arn]
    assert result["status"] == "SUCCEEDED", result.get("cause")
    info = lab.describe_cluster(unique_name)
    assert info.kind == "local" and info.outpost_arns == (DEFAULT_OUTPOST_ARN,)
    assert_offline_access_ready(lab, deployed, unique_name)


def test_running_twice_gives_the_same_end_state(lab: Any, deployed: DeployedStack, unique_name: str) -> None:
    request = provision_request(unique_name, clientRequestToken="lifeline-test-token-1")
    first = run(lab, deployed, request)
    assert first["status"] == "SUCCEEDED", first.get("cause")
    secrets = lab.client("secretsmanager")
    versions_after_first = secrets.list_secret_version_ids(SecretId=f"lifeline/{unique_name}")["Versions"]
    secret_after_first = assert_offline_access_ready(lab, deployed, unique_name)

    second = run(lab, deployed, request)
    assert second["status"] == "SUCCEEDED", second.get("cause")
    assert json.loads(first["output"])["secretChanged"] is True
    assert json.loads(second["output"])["secretChanged"] is False
    versions_after_second = secrets.list_secret_version_ids(SecretId=f"lifeline/{unique_name}")["Versions"]
    assert len(versions_after_second) == len(versions_after_first)
    secret_after_second = assert_offline_access_ready(lab, deployed, unique_name)
    assert secret_after_second == secret_after_first
    assert len(events_for(lab, constants.READY_DETAIL_TYPE, unique_name)) == 2
    assert lab.cluster_names().count(unique_name) == 1


def test_cluster_without_outpost_config_is_skipped_and_nothing_is_written(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    trail = lab.enable_cloudtrail()
    try:
        lab.create_extended_cluster(unique_name)
    finally:
        lab.client("cloudtrail").stop_logging(Name=trail)
    recorded = lab.region.events(detail_type=constants.CLOUDTRAIL_DETAIL_TYPE, source=constants.CLOUDTRAIL_SOURCE)
    assert any(unique_name in json.dumps(e["detail"]) for e in recorded)  # the rule saw it, and did not match
    result = run(lab, deployed, cloudtrail_event(unique_name, outpost=None))  # started directly, it is skipped
    assert result["status"] == "SUCCEEDED", result.get("cause")
    output = json.loads(result["output"])
    assert output["status"] == "SKIPPED" and "no outpostConfig" in output["reason"]
    assert f"lifeline/{unique_name}" not in secret_names(lab)
    assert not events_for(lab, constants.READY_DETAIL_TYPE, unique_name)
    assert not any(unique_name in json.dumps(d["input"]) for d in lab.region.delivered_events())


def test_cluster_stuck_creating_with_health_issues_fails_with_them_as_the_cause(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    lab.create_local_cluster(unique_name, wait_active=False, activation_delay=3600)
    issue = {"code": "ClusterUnreachable", "message": "control plane instances cannot reach the Region",
             "resourceIds": ["i-0123456789abcdef0"]}
    lab.region.set_health_issues(unique_name, [issue])
    result = run(lab, deployed, {"name": unique_name, "create": False, "pollIntervalSeconds": 1, "maxWaitSeconds": 3})
    assert result["status"] == "FAILED"
    assert result["error"] == "ClusterUnhealthy"
    assert "ClusterUnreachable: control plane instances cannot reach the Region" in result["cause"]
    (failed,) = events_for(lab, constants.FAILED_DETAIL_TYPE, unique_name)
    assert failed["detail"]["error"] == "ClusterUnhealthy"
    assert "cannot reach the Region" in failed["detail"]["reason"]
    assert f"lifeline/{unique_name}" not in secret_names(lab)


def test_cluster_that_never_becomes_active_times_out_cleanly(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    lab.create_local_cluster(unique_name, wait_active=False, activation_delay=3600)
    result = run(lab, deployed, {"clusterName": unique_name, "create": False, "pollIntervalSeconds": 1,
                                 "maxWaitSeconds": 2})
    assert result["status"] == "FAILED"
    assert result["error"] == "ClusterWaitTimeout"
    assert "still CREATING" in result["cause"]
    assert [e["detail"]["error"] for e in events_for(lab, constants.FAILED_DETAIL_TYPE, unique_name)] == [
        "ClusterWaitTimeout"
    ]
    assert f"lifeline/{unique_name}" not in secret_names(lab)


def _hostile_inputs(existing_foreign_outpost_cluster: str) -> list[tuple[str, Any, str]]:
    def trail(**changes: Any) -> dict[str, Any]:
        event = cloudtrail_event("hostile-target")
        event["detail"].update(changes)
        return event

    two_outposts = trail()
    two_outposts["detail"]["requestParameters"]["outpostConfig"]["outpostArns"] = [DEFAULT_OUTPOST_ARN] * 2
    no_parameters = trail()
    del no_parameters["detail"]["requestParameters"]
    return [
        ("empty object", {}, "InvalidRequest"),
        ("JSON list", [], "InvalidRequest"),
        ("JSON string", '"lifeline"', "InvalidRequest"),
        ("path traversal name", {"name": "../../etc/passwd", "create": False}, "InvalidRequest"),
        ("slash in name", {"name": "team/prod", "create": False}, "InvalidRequest"),
        ("newline in name", {"name": "prod\n", "create": False}, "InvalidRequest"),
        ("name too long", {"name": "a" * 101, "create": False}, "InvalidRequest"),
        ("name of wrong type", {"name": 42, "create": False}, "InvalidRequest"),
        ("names disagree", {"name": "one", "clusterName": "two", "create": False}, "InvalidRequest"),
        ("create of wrong type", {"name": "ok", "create": "false"}, "InvalidRequest"),
        ("unknown field", {"name": "ok", "create": False, "kubeconfig": "x"}, "InvalidRequest"),
        ("wait bound too long", {"name": "ok", "create": False, "maxWaitSeconds": 10**9}, "InvalidRequest"),
        ("oversized input", {"name": "ok", "create": False, "tags": {f"k{i}": "v" * 256 for i in range(200)}},
         "InvalidRequest"),
        ("provision without VPC config", {k: v for k, v in provision_request("p").items()
                                          if k != "resourcesVpcConfig"}, "InvalidRequest"),
        ("role ARN of wrong type", provision_request("p", roleArn=[CLUSTER_ROLE_ARN]), "InvalidRequest"),
        ("reserved tag", provision_request("p", tags={"aws:cloudformation:stack-name": "x"}), "InvalidRequest"),
        ("provision on a foreign Outpost", provision_request("p", outpost=OTHER_OUTPOST_ARN), "OutpostNotAllowed"),
        ("CloudTrail event on a foreign Outpost", cloudtrail_event("c", outpost=OTHER_OUTPOST_ARN),
         "OutpostNotAllowed"),
        ("CloudTrail event with two Outposts", two_outposts, "InvalidRequest"),
        ("CloudTrail event without requestParameters", no_parameters, "InvalidRequest"),
        ("CloudTrail DeleteCluster", trail(eventName="DeleteCluster"), "InvalidRequest"),
        ("failed CreateCluster call", trail(errorCode="AccessDenied"), "InvalidRequest"),
        ("unknown detail-type", {**cloudtrail_event("c"), "detail-type": "Something Else"}, "InvalidRequest"),
        ("cluster that does not exist", {"name": "no-such-cluster-x1", "create": False}, "ClusterNotFound"),
        ("existing cluster on a foreign Outpost", {"name": existing_foreign_outpost_cluster, "create": False},
         "OutpostNotAllowed"),
        ("Kubernetes version EKS refuses for local clusters",
         provision_request(existing_foreign_outpost_cluster + "-old", version="1.27"), "ClusterCreateRejected"),
    ]


def test_malformed_and_hostile_inputs_end_in_named_failures_with_nothing_written(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    lab.create_local_cluster(unique_name, outposts_arn=OTHER_OUTPOST_ARN)
    cases = _hostile_inputs(unique_name)
    assert len(cases) >= 15
    secrets_before = secret_names(lab)
    clusters_before = set(lab.cluster_names())
    ready_before = len(lab.region.events(detail_type=constants.READY_DETAIL_TYPE))
    failed_before = len(lab.region.events(detail_type=constants.FAILED_DETAIL_TYPE))
    arns = [start(lab, deployed, execution_input) for _, execution_input, _ in cases]
    results = finished(lab, arns)
    outcomes = {
        label: (results[arn]["status"], results[arn].get("error"))
        for (label, _, _), arn in zip(cases, arns, strict=True)
    }
    assert outcomes == {label: ("FAILED", error) for label, _, error in cases}
    for arn in arns:
        cause = results[arn]["cause"]
        assert "Traceback" not in cause and len(cause) < 2000
    assert secret_names(lab) == secrets_before
    assert set(lab.cluster_names()) == clusters_before
    assert len(lab.region.events(detail_type=constants.READY_DETAIL_TYPE)) == ready_before
    assert len(lab.region.events(detail_type=constants.FAILED_DETAIL_TYPE)) == failed_before + len(cases)


def test_unreachable_cluster_is_retried_with_backoff_then_fails_named(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    lab.create_local_cluster(unique_name)
    lab.control_plane(unique_name).stop()
    arn = start(lab, deployed, {"name": unique_name, "create": False})
    result = finished(lab, [arn])[arn]
    assert result["status"] == "FAILED"
    assert result["error"] == "ClusterUnreachable"
    history = lab.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    bootstrap_attempts = [
        e for e in history
        if e["type"] == "LambdaFunctionScheduled"
        and "BootstrapRbac" in e["lambdaFunctionScheduledEventDetails"]["resource"]
    ]
    assert len(bootstrap_attempts) == 1 + RETRY_MAX_ATTEMPTS  # the first try, then MaxAttempts retries
    (failed,) = events_for(lab, constants.FAILED_DETAIL_TYPE, unique_name)
    assert failed["detail"]["error"] == "ClusterUnreachable"


def test_two_concurrent_requests_for_one_cluster_both_converge(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    request = provision_request(unique_name)
    arns = [start(lab, deployed, request), start(lab, deployed, request)]
    results = finished(lab, arns)
    assert [results[arn]["status"] for arn in arns] == ["SUCCEEDED", "SUCCEEDED"], [
        results[arn].get("cause") for arn in arns
    ]
    assert lab.cluster_names().count(unique_name) == 1
    assert_offline_access_ready(lab, deployed, unique_name)
