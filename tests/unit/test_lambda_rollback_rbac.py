"""RollbackRbac's input: only what BootstrapRbac can have created may be named for removal."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.errors import InvalidRequest
from lambdas.models import RollbackInput
from lambdas.validation import parse_input

AGENT = "arn:aws:iam::123456789012:role/lifeline-agent"
CLUSTER = {"name": "edge-1", "arn": "arn:aws:eks:us-west-2:123456789012:cluster/edge-1", "status": "ACTIVE",
           "endpoint": "https://10.0.0.1", "certificateAuthorityData": "", "version": "1.31",
           "platformVersion": "eks-local-outposts.1", "outpostArns": []}
FAILURE = {"Error": "SecretWriteFailed", "Cause": "{}"}


def _input(**created: Any) -> dict[str, Any]:
    return {"cluster": CLUSTER, "created": created, "failure": FAILURE}


def test_what_bootstrap_records_is_accepted() -> None:
    request = parse_input(RollbackInput, _input(objects=["ClusterRoleBinding/lifeline-breakglass",
                                                         "ClusterRole/lifeline-csr-requester"],
                                                awsAuthCreated=True, awsAuthPrincipals=[AGENT]))
    assert not request.created.empty and request.failure.Error == "SecretWriteFailed"
    assert parse_input(RollbackInput, _input()).created.empty


@pytest.mark.parametrize(
    "created",
    [
        {"objects": ["Namespace/kube-system"]},
        {"objects": ["ClusterRole/../x"]},
        {"awsAuthPrincipals": ["*"]},
        {"accessEntries": ["arn:aws:iam::123456789012:root"]},
        {"awsAuthCreated": "true"},
        {"deleteEverything": True},
    ],
)
def test_anything_else_is_refused(created: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        parse_input(RollbackInput, _input(**created))
