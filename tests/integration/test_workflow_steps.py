"""The workflow's steps against the lab: secret writes (idempotence, repair), RBAC bootstrap failures,
and what the handlers log (never certificates, keys or tokens)."""

from __future__ import annotations

import base64
import logging
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.eks_token import get_token

from lambdas import constants
from lambdas.bootstrap_rbac.logic import bootstrap, undo
from lambdas.config import WorkflowConfig
from lambdas.errors import ClusterUnreachable, InvalidClusterData, RbacBootstrapFailed
from lambdas.models import ClusterView
from lambdas.store_secret.logic import build_secret, store_secret

CA_MARKERS = ("BEGIN CERTIFICATE", "LS0tLS1CRUdJTi", "PRIVATE KEY", "k8s-aws-v1.")


def view_of(lab: Any, name: str, **changes: Any) -> ClusterView:
    info = lab.describe_cluster(name)
    fields: dict[str, Any] = {
        "name": info.name, "arn": info.arn, "id": info.id, "status": info.status, "endpoint": info.endpoint,
        "certificateAuthorityData": info.certificate_authority_data, "version": info.kubernetes_version,
        "platformVersion": info.platform_version, "outpostArns": list(info.outpost_arns),
    }
    fields.update(changes)
    return ClusterView(**fields)


@pytest.fixture(scope="module")
def kms_key_arn(lab: Any) -> str:
    return str(lab.client("kms").create_key(Description="lifeline steps test")["KeyMetadata"]["Arn"])


def test_secret_is_created_then_left_alone_then_versioned_when_the_cluster_changes(
    lab: Any, unique_name: str, kms_key_arn: str
) -> None:
    lab.create_local_cluster(unique_name)
    other = lab.create_local_cluster(unique_name + "-b")
    secrets = lab.client("secretsmanager")
    first = store_secret(secrets, build_secret(view_of(lab, unique_name), breakglass_group="lifeline:breakglass"),
                         kms_key_id=kms_key_arn)
    again = store_secret(secrets, build_secret(view_of(lab, unique_name), breakglass_group="lifeline:breakglass",
                                               updated_at="2030-01-01T00:00:00Z"), kms_key_id=kms_key_arn)
    assert first.changed and not again.changed
    assert again.versionId == first.versionId and again.secretArn == first.secretArn
    rotated_ca = view_of(lab, unique_name, certificateAuthorityData=other.certificate_authority_data)
    third = store_secret(secrets, build_secret(rotated_ca, breakglass_group="lifeline:breakglass"),
                         kms_key_id=kms_key_arn)
    assert third.changed and third.versionId != first.versionId
    stored = ClusterSecret.from_json(secrets.get_secret_value(SecretId=first.secretName)["SecretString"])
    assert stored.ca_pem == other.ca_pem
    described = secrets.describe_secret(SecretId=first.secretName)
    assert described["KmsKeyId"] == kms_key_arn
    assert {"Key": constants.TAG_CLUSTER, "Value": unique_name} in described["Tags"]


def test_an_unreadable_existing_secret_is_replaced_with_a_valid_version(
    lab: Any, unique_name: str, kms_key_arn: str
) -> None:
    lab.create_local_cluster(unique_name)
    secrets = lab.client("secretsmanager")
    secrets.create_secret(Name=f"lifeline/{unique_name}", SecretString="{not json")
    result = store_secret(secrets, build_secret(view_of(lab, unique_name), breakglass_group="lifeline:breakglass"),
                          kms_key_id=kms_key_arn)
    assert result.changed
    ClusterSecret.from_json(secrets.get_secret_value(SecretId=result.secretName)["SecretString"])


def test_a_ca_that_is_not_a_certificate_is_invalid_cluster_data(lab: Any, unique_name: str) -> None:
    lab.create_local_cluster(unique_name)
    bogus = view_of(lab, unique_name, certificateAuthorityData=base64.b64encode(b"random").decode())
    with pytest.raises(InvalidClusterData, match="certificateAuthorityData"):
        build_secret(bogus, breakglass_group="lifeline:breakglass")


def _config(lab: Any) -> WorkflowConfig:
    return WorkflowConfig(
        agent_principal_arns=(lab.agent_principal.arn,), token_sts_endpoint_url=lab.outpost_region_url
    )


def _token(lab: Any, cluster_id: str, session: boto3.Session) -> str:
    return get_token(cluster_id, session=session, region="us-west-2", endpoint_url=lab.outpost_region_url).token


def test_bootstrap_as_the_cluster_creator_applies_rbac_and_aws_auth(lab: Any, unique_name: str) -> None:
    from kubernetes import client

    info = lab.create_local_cluster(unique_name)
    result = bootstrap(view_of(lab, unique_name), config=_config(lab), eks=lab.client("eks"),
                       token=_token(lab, info.id, lab.creator.boto3_session()))
    assert result.authMapping == "aws-auth" and result.principals == 1
    assert sorted(result.applied) == ["ClusterRole/lifeline-csr-requester", "ClusterRoleBinding/lifeline-breakglass",
                                      "ClusterRoleBinding/lifeline-csr-requester",
                                      "ClusterRoleBinding/lifeline-operators"]
    with lab.kubernetes_api_client(unique_name) as api_client:
        data = client.CoreV1Api(api_client).read_namespaced_config_map("aws-auth", "kube-system").data
    assert lab.agent_principal.arn in data["mapUsers"] and "lifeline:agents" in data["mapUsers"]


def test_bootstrap_by_an_unmapped_principal_is_a_named_refusal(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    agent_session = lab.agent_principal.boto3_session()
    with pytest.raises(RbacBootstrapFailed, match="not authorised"):
        bootstrap(view_of(lab, unique_name), config=_config(lab), eks=lab.client("eks"),
                  token=_token(lab, info.id, agent_session))


def test_bootstrap_refuses_a_server_that_does_not_match_the_ca(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    other = lab.create_local_cluster(unique_name + "-b")
    wrong_ca = view_of(lab, unique_name, certificateAuthorityData=other.certificate_authority_data)
    with pytest.raises(RbacBootstrapFailed, match="TLS verification"):
        bootstrap(wrong_ca, config=_config(lab), eks=lab.client("eks"),
                  token=_token(lab, info.id, lab.creator.boto3_session()))


def test_bootstrap_of_an_unreachable_endpoint_is_retryable(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    closed = view_of(lab, unique_name, endpoint="https://127.0.0.1:9")
    with pytest.raises(ClusterUnreachable):
        bootstrap(closed, config=_config(lab), eks=lab.client("eks"),
                  token=_token(lab, info.id, lab.creator.boto3_session()))


class RefusingAccessEntries:
    """moto has no EKS access entries: this stand-in refuses them, as EKS does for a principal it rejects."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def create_access_entry(self, **kwargs: Any) -> None:
        import botocore.exceptions

        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "InvalidParameterException", "Message": "principal refused"},
             "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateAccessEntry")

    def delete_access_entry(self, **kwargs: Any) -> None:
        self.deleted.append(kwargs["principalArn"])


def _lifeline_objects(lab: Any, cluster: str) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    present = []
    with lab.kubernetes_api_client(cluster) as api_client:
        rbac_api = client.RbacAuthorizationV1Api(api_client)
        for kind, read, name in (("ClusterRoleBinding", rbac_api.read_cluster_role_binding, "lifeline-breakglass"),
                                 ("ClusterRoleBinding", rbac_api.read_cluster_role_binding, "lifeline-operators"),
                                 ("ClusterRole", rbac_api.read_cluster_role, "lifeline-csr-requester"),
                                 ("ClusterRoleBinding", rbac_api.read_cluster_role_binding, "lifeline-csr-requester")):
            try:
                read(name)
                present.append(f"{kind}/{name}")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            client.CoreV1Api(api_client).read_namespaced_config_map("aws-auth", "kube-system")
            present.append("ConfigMap/kube-system/aws-auth")
        except ApiException as exc:
            if exc.status != 404:
                raise
    return present


def test_a_bootstrap_that_fails_part_way_removes_the_objects_it_created(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    api_mode = view_of(lab, unique_name, authenticationMode="API_AND_CONFIG_MAP")
    with pytest.raises(RbacBootstrapFailed, match="principal refused"):
        bootstrap(api_mode, config=_config(lab), eks=RefusingAccessEntries(),
                  token=_token(lab, info.id, lab.creator.boto3_session()))
    assert _lifeline_objects(lab, unique_name) == []


def test_a_failing_rerun_keeps_what_an_earlier_run_made(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    token = _token(lab, info.id, lab.creator.boto3_session())
    bootstrap(view_of(lab, unique_name), config=_config(lab), eks=lab.client("eks"), token=token)
    before = _lifeline_objects(lab, unique_name)
    assert len(before) == 5
    with pytest.raises(RbacBootstrapFailed):
        bootstrap(view_of(lab, unique_name, authenticationMode="API_AND_CONFIG_MAP"), config=_config(lab),
                  eks=RefusingAccessEntries(), token=token)
    assert _lifeline_objects(lab, unique_name) == before


def test_undo_removes_everything_a_bootstrap_created_and_only_that(lab: Any, unique_name: str) -> None:
    info = lab.create_local_cluster(unique_name)
    token = _token(lab, info.id, lab.creator.boto3_session())
    result = bootstrap(view_of(lab, unique_name), config=_config(lab), eks=lab.client("eks"), token=token)
    assert result.created.awsAuthCreated and len(result.created.objects) == 4
    again = bootstrap(view_of(lab, unique_name), config=_config(lab), eks=lab.client("eks"), token=token)
    assert again.created.empty  # a rerun creates nothing, so undoing it removes nothing
    assert undo(view_of(lab, unique_name), again.created, config=_config(lab), eks=lab.client("eks"),
                because="test", token=token) == []
    assert len(_lifeline_objects(lab, unique_name)) == 5
    removed = undo(view_of(lab, unique_name), result.created, config=_config(lab), eks=lab.client("eks"),
                   because="test", token=token)
    assert set(removed) == {"ConfigMap/kube-system/aws-auth", *result.created.objects}
    assert _lifeline_objects(lab, unique_name) == []


def test_handlers_log_names_and_fingerprints_but_no_certificate_key_or_token(
    lab: Any, unique_name: str, kms_key_arn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lambdas.check_cluster.handler import handler as check_handler
    from lambdas.store_secret.handler import handler as store_handler

    lab.create_local_cluster(unique_name)
    for key, value in {"AWS_ENDPOINT_URL": lab.region_url, "AWS_ACCESS_KEY_ID": lab.creator.access_key_id,
                       "AWS_SECRET_ACCESS_KEY": lab.creator.secret_access_key,
                       constants.ENV_SECRET_KMS_KEY_ID: kms_key_arn}.items():
        monkeypatch.setenv(key, value)
    context = SimpleNamespace(function_name="lifeline-test", memory_limit_in_mb=256, function_version="$LATEST",
                              invoked_function_arn="arn:aws:lambda:us-west-2:123456789012:function:lifeline-test",
                              aws_request_id="req-1", get_remaining_time_in_millis=lambda: 30_000)
    caplog.set_level(logging.INFO)
    checked = check_handler({"clusterName": unique_name, "deadline": "2099-01-01T00:00:00Z"}, context)
    assert checked["verdict"] == "READY"
    stored = store_handler({"cluster": checked["cluster"]}, context)
    assert stored["secretName"] == f"lifeline/{unique_name}"
    logged = [record for record in caplog.records if record.name == "lifeline"]
    assert {r.getMessage() for r in logged} >= {"cluster checked", "secret stored"}
    text = " ".join(str(vars(r)) for r in logged)
    assert stored["caSha256"] in text
    for marker in CA_MARKERS:
        assert marker not in text


def test_bootstrap_of_an_endpoint_that_never_answers_times_out_as_unreachable(
    lab: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import lambdas.bootstrap_rbac.logic as bootstrap_logic

    info = lab.create_local_cluster(unique_name)
    monkeypatch.setattr(bootstrap_logic, "API_TIMEOUT_SECONDS", 1.0)
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word, like a cut link
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        hung = view_of(lab, unique_name, endpoint=f"https://127.0.0.1:{port}")
        with pytest.raises(ClusterUnreachable):
            bootstrap(hung, config=_config(lab), eks=lab.client("eks"),
                      token=_token(lab, info.id, lab.creator.boto3_session()))
