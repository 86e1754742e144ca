"""BootstrapRbac's access-entry mapping (moto has no EKS access entries: a recording stand-in for the API)."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from lambdas.bootstrap_rbac.logic import map_with_access_entries
from lambdas.errors import RbacBootstrapFailed, TransientAwsError
from lambdas.models import ClusterView

AGENT = "arn:aws:iam::123456789012:role/lifeline-agent"
VIEW = ClusterView(name="edge-1", arn="arn:aws:eks:us-west-2:123456789012:cluster/edge-1", status="ACTIVE",
                   endpoint="https://10.0.0.1", certificateAuthorityData="", version="1.31",
                   platformVersion="eks-local-outposts.1", outpostArns=[], authenticationMode="API_AND_CONFIG_MAP")


def client_error(code: str, status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


class RecordingEks:
    def __init__(self, create_error: Exception | None = None) -> None:
        self.create_error = create_error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_access_entry(self, **kwargs: Any) -> None:
        self.calls.append(("create", kwargs))
        if self.create_error:
            raise self.create_error

    def update_access_entry(self, **kwargs: Any) -> None:
        self.calls.append(("update", kwargs))


def test_creates_an_access_entry_per_agent_principal_with_the_agents_group() -> None:
    eks = RecordingEks()
    assert map_with_access_entries(eks, VIEW, (AGENT,), "lifeline:agents") == [AGENT]
    assert eks.calls == [("create", {"clusterName": "edge-1", "principalArn": AGENT,
                                     "kubernetesGroups": ["lifeline:agents"]})]


def test_an_existing_entry_is_updated_so_reruns_converge() -> None:
    eks = RecordingEks(client_error("ResourceInUseException", 409))
    map_with_access_entries(eks, VIEW, (AGENT,), "lifeline:agents")
    assert [call for call, _ in eks.calls] == ["create", "update"]


def test_throttling_is_transient_and_refusals_are_named() -> None:
    with pytest.raises(TransientAwsError):
        map_with_access_entries(RecordingEks(client_error("ThrottlingException")), VIEW, (AGENT,), "g")
    with pytest.raises(RbacBootstrapFailed, match="AccessDenied"):
        map_with_access_entries(RecordingEks(client_error("AccessDeniedException", 403)), VIEW, (AGENT,), "g")
