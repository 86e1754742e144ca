"""Typed models of what the steps receive and return. Inputs are validated strictly (no type coercion);
unknown fields are refused in requests we define and ignored in AWS events."""

from __future__ import annotations

from typing import Annotated, Literal

from lifeline_agent.contract import CLUSTER_NAME_PATTERN, OUTPOST_ARN_PATTERN
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ClusterName = Annotated[str, StringConstraints(pattern=CLUSTER_NAME_PATTERN.pattern, max_length=100)]
OutpostArn = Annotated[str, StringConstraints(pattern=OUTPOST_ARN_PATTERN.pattern, max_length=200)]
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
RoleArn = Annotated[str, StringConstraints(pattern=ROLE_ARN_PATTERN, max_length=600)]
SubnetId = Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")]
SecurityGroupId = Annotated[str, StringConstraints(pattern=r"^sg-[0-9a-f]{8,17}$")]
InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,30}\.[a-z0-9]{1,30}$")]
KubernetesVersion = Annotated[str, StringConstraints(pattern=r"^1\.\d{1,2}$")]
RequestToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_ .:/=+@-]+$", max_length=128)]
TagValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_ .:/=+@-]*$", max_length=256)]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
_LENIENT = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)


class ControlPlanePlacement(BaseModel):
    model_config = _LENIENT
    groupName: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+=,.@-]+$", max_length=255)]


class OutpostConfig(BaseModel):
    model_config = _LENIENT
    outpostArns: list[OutpostArn] = Field(min_length=1, max_length=1)
    controlPlaneInstanceType: InstanceType | None = None
    controlPlanePlacement: ControlPlanePlacement | None = None


class ResourcesVpcConfig(BaseModel):
    model_config = _STRICT
    subnetIds: list[SubnetId] = Field(min_length=1, max_length=16)
    securityGroupIds: list[SecurityGroupId] = Field(default_factory=list, max_length=5)
    endpointPrivateAccess: bool | None = None
    endpointPublicAccess: bool | None = None


class AccessConfig(BaseModel):
    model_config = _STRICT
    authenticationMode: Literal["CONFIG_MAP", "API", "API_AND_CONFIG_MAP"]


class WaitOptions(BaseModel):
    """Per-execution overrides of the polling interval and the total wait bound (seconds)."""

    model_config = _STRICT
    pollIntervalSeconds: int | None = Field(default=None, ge=1, le=3600)
    maxWaitSeconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class _Named(BaseModel):
    """Accepts the current ``name`` and the older ``clusterName``; both given must agree."""

    name: ClusterName | None = None
    clusterName: ClusterName | None = None

    @model_validator(mode="after")
    def _one_name(self) -> _Named:
        if self.name is None and self.clusterName is None:
            raise ValueError("the cluster name is missing (name or clusterName)")
        if self.name is not None and self.clusterName is not None and self.name != self.clusterName:
            raise ValueError("name and clusterName disagree")
        return self

    @property
    def cluster_name(self) -> str:
        return self.name or self.clusterName or ""


class ProvisionRequest(_Named, WaitOptions):
    """A ``Lifeline Provision Request`` event's detail, or a direct StartExecution input.

    ``create`` false registers an existing cluster (no CreateCluster); the create fields are then unused.
    """

    model_config = _STRICT
    create: bool = True
    roleArn: RoleArn | None = None
    resourcesVpcConfig: ResourcesVpcConfig | None = None
    outpostConfig: OutpostConfig | None = None
    version: KubernetesVersion | None = None
    accessConfig: AccessConfig | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=40)

    @model_validator(mode="after")
    def _no_reserved_tags(self) -> ProvisionRequest:
        if any(key.lower().startswith("aws:") for key in self.tags):
            raise ValueError("tags: keys starting with aws: are reserved")
        return self
    clientRequestToken: RequestToken | None = None

    @model_validator(mode="after")
    def _create_fields(self) -> ProvisionRequest:
        if self.create:
            missing = [f for f in ("roleArn", "resourcesVpcConfig", "outpostConfig") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"creating a cluster needs {', '.join(missing)}")
        return self


class CreateClusterParameters(_Named):
    model_config = _LENIENT
    outpostConfig: OutpostConfig | None = None


AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
RegionName = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", max_length=30)]


class CloudTrailDetail(BaseModel):
    model_config = _LENIENT
    eventSource: Literal["eks.amazonaws.com"]
    eventName: Literal["CreateCluster"]
    errorCode: str | None = None
    recipientAccountId: AccountId | None = None
    awsRegion: RegionName | None = None
    requestParameters: CreateClusterParameters

    @model_validator(mode="after")
    def _succeeded(self) -> CloudTrailDetail:
        if self.errorCode is not None:
            raise ValueError("the CreateCluster call failed (errorCode is set): there is no cluster")
        return self


class CloudTrailEvent(BaseModel):
    model_config = _LENIENT
    source: Literal["aws.eks"]
    detail_type: Literal["AWS API Call via CloudTrail"] = Field(alias="detail-type")
    account: AccountId
    region: RegionName
    detail: CloudTrailDetail


class ProvisionEvent(BaseModel):
    model_config = _LENIENT
    source: Literal["lifeline"]
    detail_type: Literal["Lifeline Provision Request"] = Field(alias="detail-type")
    account: AccountId
    region: RegionName
    detail: ProvisionRequest


class PollPlan(BaseModel):
    intervalSeconds: int
    maxWaitSeconds: int
    deadline: str


class NormalisedRequest(BaseModel):
    """The workflow's state after NormaliseRequest (``$.request``)."""

    clusterName: str
    trigger: Literal["cloudtrail", "provision-event", "direct"]
    create: bool
    createRequest: dict[str, object] | None
    requestedOutpostArns: list[str]
    poll: PollPlan


class CheckInput(BaseModel):
    model_config = _STRICT
    clusterName: ClusterName
    deadline: str


class ClusterView(BaseModel):
    """What the later steps need from DescribeCluster (``$.check.cluster``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    name: ClusterName
    arn: str
    id: str | None = None
    status: str
    endpoint: str
    certificateAuthorityData: str
    version: str
    platformVersion: str
    outpostArns: list[str]
    authenticationMode: str = "CONFIG_MAP"


class CheckResult(BaseModel):
    verdict: Literal["READY", "WAIT", "SKIP"]
    reason: str
    status: str
    cluster: ClusterView | None = None


class ClusterStepInput(BaseModel):
    """Input of StoreSecret and BootstrapRbac."""

    model_config = _STRICT
    cluster: ClusterView


RbacObjectName = Annotated[str, StringConstraints(pattern=r"^(ClusterRole|ClusterRoleBinding)/[a-z0-9:._-]{1,253}$")]
PrincipalArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]+$")]


class CreatedRbac(BaseModel):
    """What one BootstrapRbac invocation made that was not there before it (``$.rbac.created``): exactly
    what RollbackRbac may remove."""

    model_config = ConfigDict(strict=True, extra="forbid")
    objects: list[RbacObjectName] = Field(default_factory=list)
    awsAuthCreated: bool = False
    awsAuthPrincipals: list[PrincipalArn] = Field(default_factory=list)
    accessEntries: list[PrincipalArn] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.objects or self.awsAuthCreated or self.awsAuthPrincipals or self.accessEntries)


class StepFailure(BaseModel):
    """A caught error as Step Functions passes it (``$.failure``)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    Error: str
    Cause: str = ""


class RollbackInput(BaseModel):
    model_config = _STRICT
    cluster: ClusterView
    created: CreatedRbac
    failure: StepFailure
