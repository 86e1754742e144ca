"""CreateCluster: EKS CreateCluster with a stable clientRequestToken; an existing cluster of that name is
accepted (a rerun of the same request), so the step is idempotent."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from lambdas.aws import error_code, raise_transient
from lambdas.errors import ClusterCreateRejected


def create_cluster(eks: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    name = parameters["name"]
    try:
        cluster = eks.create_cluster(**parameters)["cluster"]
        return {"clusterName": name, "created": True, "status": cluster.get("status", "CREATING")}
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code == "ResourceInUseException":
            return {"clusterName": name, "created": False, "status": "EXISTS"}
        raise_transient(exc, "CreateCluster")
        message = exc.response.get("Error", {}).get("Message", "")
        raise ClusterCreateRejected(f"EKS refused CreateCluster for {name}: {code}: {message}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise_transient(exc, "CreateCluster")
        raise
