"""Issue 9 case 11: hostile inputs to the Region workflow, run through the real synthesized state machine in
the lab Region. Each ends in a named failure with no secret ``lifeline/<name>`` and no Lifeline RBAC object
left in the cluster's control plane."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from lifeline_agent.rbac import AWS_AUTH, BREAKGLASS_BINDING, CSR_REQUESTER, OPERATORS_BINDING

from lab.deploy import DeployedStack, lab_deployment
from lambdas import constants
from tests.integration.test_workflow_execution import (
    cloudtrail_event,
    events_for,
    grant_workflow_admin,
    run,
    secret_names,
    workflow_principal_client,
)

pytestmark = pytest.mark.xdist_group("lifeline-workflow")  # the same lab deployment as the workflow tests

FOREIGN_ACCOUNT = "210987654321"
FOREIGN_REGION = "eu-west-1"


@pytest.fixture(scope="module")
def deployed(lab: Any) -> DeployedStack:
    return lab_deployment(lab)


@pytest.fixture(scope="module")
def workflow_identity(lab: Any) -> str:
    return str(workflow_principal_client(lab, "sts").get_caller_identity()["Arn"])


def lifeline_objects_in(lab: Any, cluster: str) -> list[str]:
    """The Lifeline RBAC objects and aws-auth agent entries the cluster's control plane holds (as admin sees it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    found = []
    with lab.kubernetes_api_client(cluster) as api_client:
        rbac = client.RbacAuthorizationV1Api(api_client)
        for kind, read, name in (
            ("ClusterRoleBinding", rbac.read_cluster_role_binding, BREAKGLASS_BINDING),
            ("ClusterRoleBinding", rbac.read_cluster_role_binding, OPERATORS_BINDING),
            ("ClusterRole", rbac.read_cluster_role, CSR_REQUESTER),
            ("ClusterRoleBinding", rbac.read_cluster_role_binding, CSR_REQUESTER),
        ):
            try:
                read(name)
                found.append(f"{kind}/{name}")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        namespace, name = AWS_AUTH
        try:
            data = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace).data or {}
        except ApiException as exc:
            if exc.status != 404:
                raise
            data = {}
        if lab.agent_principal.arn in json.dumps(data):
            found.append("aws-auth entry of the agent principal")
    return found


def aws_auth_entries(lab: Any, cluster: str) -> dict[str, Any]:
    """aws-auth's mapRoles/mapUsers as data (their YAML layout may change when entries are removed)."""
    from kubernetes import client

    namespace, name = AWS_AUTH
    with lab.kubernetes_api_client(cluster) as api_client:
        data = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace).data or {}
    return {key: yaml.safe_load(value) for key, value in data.items()}


def assert_failed_with_nothing_written(lab: Any, result: dict[str, Any], cluster: str, error: str) -> None:
    assert result["status"] == "FAILED", result.get("output")
    assert result["error"] == error, result.get("cause")
    assert "Traceback" not in result["cause"]
    assert f"lifeline/{cluster}" not in secret_names(lab)
    assert lifeline_objects_in(lab, cluster) == []
    assert not events_for(lab, constants.READY_DETAIL_TYPE, cluster)
    published = [e["detail"]["error"] for e in lab.region.events(detail_type=constants.FAILED_DETAIL_TYPE)
                 if e["detail"].get("executionArn") == result["executionArn"]]
    assert published == [error]


def _administrable_cluster(lab: Any, name: str, identity: str) -> None:
    """A local cluster the workflow could fully serve: only the event's origin may stop it."""
    lab.create_local_cluster(name)
    grant_workflow_admin(lab, name, identity)


def test_controls_an_administrable_cluster_with_a_genuine_event_gets_offline_access(
    lab: Any, deployed: DeployedStack, workflow_identity: str, unique_name: str
) -> None:
    """The control for the refusals below: the same event from this account and Region succeeds."""
    _administrable_cluster(lab, unique_name, workflow_identity)
    result = run(lab, deployed, cloudtrail_event(unique_name))
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert f"lifeline/{unique_name}" in secret_names(lab)
    assert len(lifeline_objects_in(lab, unique_name)) == 5


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("account", FOREIGN_ACCOUNT, f"account {FOREIGN_ACCOUNT}"),
        ("detail.recipientAccountId", FOREIGN_ACCOUNT, f"account {FOREIGN_ACCOUNT}"),
    ],
)
def test_an_event_from_another_account_is_refused_and_nothing_is_written(
    lab: Any, deployed: DeployedStack, workflow_identity: str, unique_name: str, field: str, value: str, message: str
) -> None:
    _administrable_cluster(lab, unique_name, workflow_identity)
    event = cloudtrail_event(unique_name)
    target = event["detail"] if field.startswith("detail.") else event
    target[field.removeprefix("detail.")] = value
    result = run(lab, deployed, event)
    assert_failed_with_nothing_written(lab, result, unique_name, "EventOriginMismatch")
    assert message in result["cause"]


@pytest.mark.parametrize("field", ["region", "detail.awsRegion"])
def test_an_event_from_another_region_is_refused_and_nothing_is_written(
    lab: Any, deployed: DeployedStack, workflow_identity: str, unique_name: str, field: str
) -> None:
    _administrable_cluster(lab, unique_name, workflow_identity)
    event = cloudtrail_event(unique_name)
    target = event["detail"] if field.startswith("detail.") else event
    target[field.removeprefix("detail.")] = FOREIGN_REGION
    result = run(lab, deployed, event)
    assert_failed_with_nothing_written(lab, result, unique_name, "EventOriginMismatch")
    assert f"Region {FOREIGN_REGION}" in result["cause"]


def test_a_replayed_event_for_a_cluster_lifeline_cannot_administer_leaves_no_secret(
    lab: Any, deployed: DeployedStack, unique_name: str
) -> None:
    """The cluster exists, created by someone else who never mapped the workflow's role: the RBAC bootstrap
    is refused, and since the secret is written only after the RBAC, no secret exists either."""
    lab.create_local_cluster(unique_name)
    result = run(lab, deployed, cloudtrail_event(unique_name))
    assert_failed_with_nothing_written(lab, result, unique_name, "RbacBootstrapFailed")
    assert "not authorised" in result["cause"]


def test_a_failed_secret_write_rolls_back_exactly_the_rbac_this_execution_made(
    lab: Any, deployed: DeployedStack, workflow_identity: str, unique_name: str
) -> None:
    """StoreSecret fails after BootstrapRbac succeeded (a secret of that name is pending deletion, which blocks
    creating it): RollbackRbac removes the objects and the agents' aws-auth entry, and keeps the operator's."""
    _administrable_cluster(lab, unique_name, workflow_identity)
    operator_aws_auth = aws_auth_entries(lab, unique_name)
    secrets = lab.client("secretsmanager")
    secrets.create_secret(Name=f"lifeline/{unique_name}", SecretString="{}")
    secrets.delete_secret(SecretId=f"lifeline/{unique_name}", RecoveryWindowInDays=7)
    result = run(lab, deployed, cloudtrail_event(unique_name))
    assert_failed_with_nothing_written(lab, result, unique_name, "SecretWriteFailed")
    assert aws_auth_entries(lab, unique_name) == operator_aws_auth
    history = lab.client("stepfunctions").get_execution_history(executionArn=result["executionArn"], maxResults=1000)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]
    assert entered.index("BootstrapRbac") < entered.index("StoreSecret") < entered.index("RollbackRbac")
    rollback_output = [
        json.loads(e["stateExitedEventDetails"]["output"]) for e in history["events"]
        if e.get("stateExitedEventDetails", {}).get("name") == "RollbackRbac"
    ]
    (state,) = rollback_output
    removed = state["rollback"]["removed"]
    assert f"aws-auth entry {lab.agent_principal.arn}" in removed
    assert {f"ClusterRoleBinding/{BREAKGLASS_BINDING}", f"ClusterRole/{CSR_REQUESTER}"} <= set(removed)
