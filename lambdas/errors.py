"""Named failures. A Lambda error's type name is the Step Functions error name, so these class names
are what Catch, the failure event and the execution's ``error`` show.

``WorkflowError`` subclasses are final (caught, published, the execution fails with that name);
``TransientAwsError`` and ``ClusterUnreachable`` are retried with backoff by the state machine.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """A step failed for a reason that retrying will not change."""


class InvalidRequest(WorkflowError):
    """The execution input is not a CreateCluster event, a provisioning request or a direct request."""


class EventOriginMismatch(WorkflowError):
    """The event names another AWS account or Region than the stack's: it is not about this account's cluster."""


class WorkflowMisconfigured(WorkflowError):
    """A function's environment lacks a setting the stack always gives it (a hand-made deployment?)."""


class OutpostNotAllowed(WorkflowError):
    """The cluster's Outpost is not one of the stack's allowed Outposts."""


class ClusterNotFound(WorkflowError):
    """DescribeCluster found no cluster of that name."""


class ClusterDeleting(WorkflowError):
    """The cluster is being deleted."""


class ClusterFailed(WorkflowError):
    """The cluster is in the FAILED state."""


class ClusterUnhealthy(WorkflowError):
    """The cluster stayed CREATING past the wait bound with health issues (the message lists them)."""


class ClusterWaitTimeout(WorkflowError):
    """The cluster did not become ACTIVE within the wait bound."""


class InvalidClusterData(WorkflowError):
    """DescribeCluster returned data that breaks the Region/agent contract (e.g. CA not a certificate)."""


class ClusterCreateRejected(WorkflowError):
    """EKS refused CreateCluster (invalid parameters, access denied...)."""


class RbacBootstrapFailed(WorkflowError):
    """The in-cluster objects could not be applied (not authorised, rejected by the API server...)."""


class SecretWriteFailed(WorkflowError):
    """Secrets Manager refused to write the secret or its policy (access denied, pending deletion, key...)."""


class RbacRollbackFailed(WorkflowError):
    """Undoing the RBAC objects this execution created failed: the message names what is left."""


class ReadinessAlarmFailed(WorkflowError):
    """CloudWatch refused the cluster's readiness alarm (access denied, invalid, limit exceeded...)."""


class TransientAwsError(Exception):
    """Throttling, a 5xx or a connection error from an AWS API: retried by the state machine."""


class ClusterUnreachable(Exception):
    """The cluster's API server could not be reached (connection, TLS handshake, 5xx): retried."""
