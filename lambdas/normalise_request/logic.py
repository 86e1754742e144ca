"""NormaliseRequest: accept the three ways in, validate them, and produce one normalised request.

- a CloudTrail ``CreateCluster`` event (from the rule, or passed to StartExecution): the cluster exists;
- a ``Lifeline Provision Request`` event: the workflow creates the cluster;
- a direct StartExecution input (the provision request's fields at the top level).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from pydantic import ValidationError

from lambdas import constants
from lambdas.config import WorkflowConfig
from lambdas.errors import EventOriginMismatch, InvalidRequest, OutpostNotAllowed, WorkflowMisconfigured
from lambdas.models import (
    CloudTrailEvent,
    NormalisedRequest,
    OutpostConfig,
    PollPlan,
    ProvisionEvent,
    ProvisionRequest,
    WaitOptions,
)
from lambdas.timeutil import format_timestamp
from lambdas.validation import describe_validation_error

MAX_INPUT_BYTES = 32 * 1024


def normalise(event: object, *, config: WorkflowConfig, now: dt.datetime) -> NormalisedRequest:
    """Validate ``event`` and return the normalised request; ``InvalidRequest``/``OutpostNotAllowed`` otherwise."""
    if not isinstance(event, dict):
        raise InvalidRequest(f"input must be a JSON object, not {type(event).__name__}")
    size = len(json.dumps(event, default=str).encode("utf-8"))
    if size > MAX_INPUT_BYTES:
        raise InvalidRequest(f"input is {size} bytes; at most {MAX_INPUT_BYTES} are accepted")
    try:
        if "detail-type" in event:
            return _from_event(event, config=config, now=now)
        request = ProvisionRequest.model_validate(event)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    return _provision(request, trigger="direct", config=config, now=now)


def _from_event(event: dict[str, Any], *, config: WorkflowConfig, now: dt.datetime) -> NormalisedRequest:
    detail_type = event.get("detail-type")
    if detail_type == constants.CLOUDTRAIL_DETAIL_TYPE:
        cloudtrail = CloudTrailEvent.model_validate(event)
        detail = cloudtrail.detail
        check_origin(config, account=cloudtrail.account, region=cloudtrail.region)
        check_origin(config, account=detail.recipientAccountId, region=detail.awsRegion, where="detail.")
        parameters = cloudtrail.detail.requestParameters
        outposts = _allowed_outposts(parameters.outpostConfig, config)
        return NormalisedRequest(
            clusterName=parameters.cluster_name,
            trigger="cloudtrail",
            create=False,
            createRequest=None,
            requestedOutpostArns=outposts,
            poll=_poll_plan(WaitOptions(), config, now),
        )
    if detail_type == constants.PROVISION_REQUEST_DETAIL_TYPE:
        provision = ProvisionEvent.model_validate(event)
        check_origin(config, account=provision.account, region=provision.region)
        return _provision(provision.detail, trigger="provision-event", config=config, now=now)
    raise InvalidRequest("detail-type: not a CloudTrail CreateCluster event nor a Lifeline Provision Request")


def check_origin(config: WorkflowConfig, *, account: str | None, region: str | None, where: str = "") -> None:
    """An event about another account or Region would act on this account's cluster of that name: refused."""
    if config.stack_account is None or config.stack_region is None:
        raise WorkflowMisconfigured("the stack's account and Region are not set (LIFELINE_STACK_ACCOUNT, "
                                    "LIFELINE_STACK_REGION): events cannot be checked")
    if account is not None and account != config.stack_account:
        raise EventOriginMismatch(f"{where}account: the event is from account {account}, "
                                  f"not this stack's ({config.stack_account})")
    if region is not None and region != config.stack_region:
        raise EventOriginMismatch(f"{where}region: the event is from Region {region}, "
                                  f"not this stack's ({config.stack_region})")


def _provision(
    request: ProvisionRequest, *, trigger: Any, config: WorkflowConfig, now: dt.datetime
) -> NormalisedRequest:
    outposts = _allowed_outposts(request.outpostConfig, config)
    return NormalisedRequest(
        clusterName=request.cluster_name,
        trigger=trigger,
        create=request.create,
        createRequest=create_cluster_parameters(request) if request.create else None,
        requestedOutpostArns=outposts,
        poll=_poll_plan(request, config, now),
    )


def _allowed_outposts(outpost_config: OutpostConfig | None, config: WorkflowConfig) -> list[str]:
    if outpost_config is None:
        return []  # not a local cluster as far as the request says; CheckCluster decides from EKS itself
    arns = list(outpost_config.outpostArns)
    refused = [arn for arn in arns if config.allowed_outpost_arns and arn not in config.allowed_outpost_arns]
    if refused:
        raise OutpostNotAllowed(f"outpostConfig.outpostArns: {refused[0]} is not an allowed Outpost")
    return arns


def _poll_plan(options: WaitOptions, config: WorkflowConfig, now: dt.datetime) -> PollPlan:
    interval = options.pollIntervalSeconds or config.poll_interval_seconds
    max_wait = options.maxWaitSeconds or config.max_wait_seconds
    if max_wait > config.max_wait_limit_seconds:
        raise InvalidRequest(f"maxWaitSeconds: at most {config.max_wait_limit_seconds} is allowed")
    return PollPlan(
        intervalSeconds=interval,
        maxWaitSeconds=max_wait,
        deadline=format_timestamp(now + dt.timedelta(seconds=max_wait)),
    )


def client_request_token(request: ProvisionRequest) -> str:
    """Stable for the same request, so that a rerun's CreateCluster is the same idempotent call."""
    if request.clientRequestToken:
        return request.clientRequestToken
    if request.outpostConfig is None:
        raise InvalidRequest("creating a cluster needs outpostConfig")
    seed = json.dumps([request.cluster_name, request.roleArn, request.outpostConfig.outpostArns], sort_keys=True)
    return "lifeline-" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:40]


def create_cluster_parameters(request: ProvisionRequest) -> dict[str, object]:
    """The EKS CreateCluster parameters (boto3 names) for a provisioning request."""
    if request.resourcesVpcConfig is None or request.outpostConfig is None:
        raise InvalidRequest("creating a cluster needs resourcesVpcConfig and outpostConfig")
    parameters: dict[str, object] = {
        "name": request.cluster_name,
        "roleArn": request.roleArn,
        "resourcesVpcConfig": request.resourcesVpcConfig.model_dump(exclude_none=True),
        "outpostConfig": request.outpostConfig.model_dump(exclude_none=True),
        "clientRequestToken": client_request_token(request),
        "tags": {**request.tags, constants.TAG_MANAGED_BY: constants.MANAGED_BY_VALUE},
    }
    if request.version:
        parameters["version"] = request.version
    if request.accessConfig:
        parameters["accessConfig"] = request.accessConfig.model_dump()
    return parameters
