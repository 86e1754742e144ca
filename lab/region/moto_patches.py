"""Every adaptation of moto that the lab's Region needs, in one place.

Each patch is a small function that replaces one moto behaviour; the comment on it says which and why.
``apply_all(hooks)`` applies them all (idempotent) and points them at the current ``RegionHooks``.
moto keeps its state in module-level backends, so there is one Region per process at a time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from lab.region.lambda_sandbox import Sandboxes

ACCOUNT_ID = "123456789012"
LOCAL_PLATFORM_VERSION = "eks-local-outposts.1"
DEFAULT_KUBERNETES_VERSION = "1.31"
LOCAL_CLUSTER_VERSIONS = ("1.29", "1.30", "1.31", "1.32")
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
_PATCHED_MARK = "_lifeline_lab_patched"


@dataclass(frozen=True)
class ProvisionRequest:
    """What the Region knows when EKS CreateCluster asks the lab for a control plane."""

    name: str
    cluster_id: str
    kubernetes_version: str
    creator_arn: str
    outpost_config: dict[str, Any] | None
    tags: dict[str, str]

    @property
    def is_local(self) -> bool:
        return self.outpost_config is not None


Provisioner = Callable[[str, ProvisionRequest], tuple[str, bytes]]
Deprovisioner = Callable[[str], None]


@dataclass
class RegionHooks:
    """The lab's side of the patches: callbacks, settings, and what the patches recorded."""

    region_url: str = ""
    activation_delay: float = 0.0
    provisioner: Provisioner | None = None
    deprovisioner: Deprovisioner | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sandboxes: Sandboxes | None = None  # the Lambda runtime, set while the Region runs


_hooks = RegionHooks()


def current_hooks() -> RegionHooks:
    return _hooks


def apply_all(hooks: RegionHooks) -> None:
    """Apply every patch once per process and make them use ``hooks``."""
    global _hooks
    _hooks = hooks
    enable_step_functions_execution()
    import moto.moto_server.werkzeug_app as werkzeug_app

    if getattr(werkzeug_app, _PATCHED_MARK, False):
        return
    patch_eks_local_clusters()
    patch_sts_presigned_get()
    patch_lambda_deployed_code()
    patch_events_state_machine_targets()
    patch_events_recording()
    patch_cloudformation_template_url()
    patch_cloudformation_change_set_outputs()
    patch_cloudformation_state_machine()
    patch_cloudformation_kms_key_policy()
    patch_cloudformation_function_properties()
    patch_cloudformation_layer_version()
    patch_cloudformation_log_group_key()
    register_cloudformation_models()
    setattr(werkzeug_app, _PATCHED_MARK, True)


def enable_step_functions_execution() -> None:
    # moto only records executions unless told to interpret the ASL; the workflow must really run.
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}


# --- EKS ------------------------------------------------------------------------------------------


class _EksErrors:
    @staticmethod
    def invalid_parameter(message: str) -> Exception:
        from moto.eks.exceptions import InvalidParameterException

        return InvalidParameterException(message=message)

    @staticmethod
    def server(message: str) -> Exception:
        from moto.eks.exceptions import EKSError

        class ServerException(EKSError):
            TYPE = "ServerException"
            STATUS = 500

        return ServerException(message=message)


def validate_outpost_config(config: object) -> dict[str, Any]:
    """EKS's rules for ``outpostConfig``: exactly one Outpost ARN and a control-plane instance type."""
    if not isinstance(config, dict):
        raise _EksErrors.invalid_parameter("outpostConfig must be an object")
    arns = config.get("outpostArns")
    if not isinstance(arns, list) or not arns:
        raise _EksErrors.invalid_parameter("outpostConfig.outpostArns is required")
    if len(arns) != 1:
        raise _EksErrors.invalid_parameter("Only a single Outpost ARN is supported in outpostConfig.outpostArns")
    if not isinstance(arns[0], str) or ":outposts:" not in arns[0] or ":outpost/op-" not in arns[0]:
        raise _EksErrors.invalid_parameter(f"Invalid Outpost ARN: {arns[0]!r}")
    if not config.get("controlPlaneInstanceType"):
        raise _EksErrors.invalid_parameter("outpostConfig.controlPlaneInstanceType is required")
    result = {"outpostArns": list(arns), "controlPlaneInstanceType": config["controlPlaneInstanceType"]}
    placement = config.get("controlPlanePlacement")
    if placement is not None:
        if not isinstance(placement, dict) or not isinstance(placement.get("groupName", ""), str):
            raise _EksErrors.invalid_parameter("outpostConfig.controlPlanePlacement.groupName must be a string")
        result["controlPlanePlacement"] = placement
    return result


def caller_arn(access_key_id: str) -> str:
    """The ARN STS GetCallerIdentity would return for this access key."""
    from moto.iam.models import get_account_id_from
    from moto.sts.models import sts_backends

    account = get_account_id_from(access_key_id)
    _, arn, _ = sts_backends[account]["aws"].get_caller_identity(access_key_id, "us-west-2")
    return str(arn)


def _refresh_cluster_status(cluster: Any) -> None:
    """CREATING -> ACTIVE once the activation time has passed and no health issue holds it back."""
    ready_at = getattr(cluster, "lab_ready_at", None)
    if ready_at is None or cluster.status != "CREATING":
        return
    if cluster.health.get("issues") or time.monotonic() < ready_at:
        return
    cluster.status = "ACTIVE"
    cluster.endpoint = cluster.lab_endpoint
    cluster.certificate_authority = {"data": cluster.lab_ca_data}


def patch_eks_local_clusters() -> None:
    # moto's CreateCluster drops outpostConfig, has no id/health, is ACTIVE at once and returns a random
    # string as CA. EKS local clusters keep outpostConfig, have an id, stay CREATING for a while (maybe
    # forever, with health issues) and, once ACTIVE, return the CA (base64 PEM) and endpoint of a real
    # control plane: the lab's, started by the provisioner callback. DeleteCluster stops it again.
    from moto.eks.models import EKSBackend
    from moto.eks.responses import EKSResponse

    original_describe = EKSBackend.describe_cluster

    def describe_cluster(self: Any, name: str) -> Any:
        cluster = original_describe(self, name)
        _refresh_cluster_status(cluster)
        return cluster

    def create_cluster(self: Any) -> Any:
        from moto.core.responses import ActionResult

        name = self._get_param("name")
        version = self._get_param("version") or DEFAULT_KUBERNETES_VERSION
        outpost_config = self._get_param("outpostConfig")
        if outpost_config is not None:
            outpost_config = validate_outpost_config(outpost_config)
            if version not in LOCAL_CLUSTER_VERSIONS:
                raise _EksErrors.invalid_parameter(
                    f"Kubernetes version {version} is not supported for local clusters on AWS Outposts; "
                    f"supported: {', '.join(LOCAL_CLUSTER_VERSIONS)}"
                )
        backend = self.eks_backend
        cluster = backend.create_cluster(
            name=name,
            version=version,
            role_arn=self._get_param("roleArn"),
            resources_vpc_config=self._get_param("resourcesVpcConfig"),
            kubernetes_network_config=self._get_param("kubernetesNetworkConfig"),
            logging=self._get_param("logging"),
            client_request_token=self._get_param("clientRequestToken"),
            tags=self._get_param("tags"),
            encryption_config=self._get_param("encryptionConfig"),
            remote_network_config=self._get_param("remoteNetworkConfig"),
        )
        creator = caller_arn(self.get_access_key())
        try:
            _make_lab_cluster(cluster, outpost_config, creator)
        except Exception as exc:
            backend.clusters.pop(name, None)
            raise _EksErrors.server(f"lab could not provision the control plane: {exc}") from exc
        request_parameters = {
            key: value
            for key in ("name", "version", "roleArn", "resourcesVpcConfig", "clientRequestToken", "tags")
            if (value := self._get_param(key)) is not None
        }
        if outpost_config is not None:
            request_parameters["outpostConfig"] = outpost_config
        emit_cloudtrail_event(backend.account_id, backend.region_name, "CreateCluster", creator, request_parameters)
        return ActionResult({"cluster": cluster})

    original_delete = EKSBackend.delete_cluster

    def delete_cluster(self: Any, name: str) -> Any:
        cluster = original_delete(self, name)
        if _hooks.deprovisioner is not None and getattr(cluster, "lab_endpoint", None):
            _hooks.deprovisioner(name)
        cluster.status = "DELETING"
        return cluster

    EKSBackend.describe_cluster = describe_cluster  # type: ignore[method-assign]
    EKSBackend.delete_cluster = delete_cluster  # type: ignore[method-assign]
    EKSResponse.create_cluster = create_cluster  # type: ignore[method-assign]


def _make_lab_cluster(cluster: Any, outpost_config: dict[str, Any] | None, creator: str) -> None:
    hooks = _hooks
    cluster.id = str(uuid.uuid4())
    cluster.health = {"issues": []}
    cluster.outpost_config = outpost_config
    cluster.lab_creator_arn = creator
    if outpost_config is not None:
        cluster.platformVersion = LOCAL_PLATFORM_VERSION
        cluster.access_config = {"authenticationMode": "CONFIG_MAP"}
    request = ProvisionRequest(
        name=cluster.name,
        cluster_id=cluster.id,
        kubernetes_version=cluster.version,
        creator_arn=creator,
        outpost_config=outpost_config,
        tags=dict(cluster.tags or {}),
    )
    if hooks.provisioner is None:
        raise RuntimeError("no provisioner registered")
    endpoint, ca_pem = hooks.provisioner(cluster.name, request)
    delay = float(request.tags.get("lab:activation-delay", hooks.activation_delay))
    cluster.lab_endpoint = endpoint
    cluster.lab_ca_data = base64.b64encode(ca_pem).decode("ascii")
    cluster.lab_ready_at = time.monotonic() + delay
    # EKS returns neither endpoint nor CA while the cluster is CREATING.
    cluster.status = "CREATING"
    cluster.endpoint = None
    cluster.certificate_authority = {}
    _refresh_cluster_status(cluster)


def _trail_is_logging(account_id: str, region: str) -> bool:
    from moto.cloudtrail.models import cloudtrail_backends

    for trail_region, backend in cloudtrail_backends[account_id].items():
        for trail in backend.trails.values():
            if trail.status.is_logging and (trail_region == region or trail.is_multi_region):
                return True
    return False


def emit_cloudtrail_event(
    account_id: str, region: str, event_name: str, caller: str, request_parameters: dict[str, Any]
) -> None:
    # moto has no CloudTrail -> EventBridge delivery. On AWS, while a trail is logging, a management API
    # call reaches the default bus as "AWS API Call via CloudTrail" (what the Lifeline trigger rule matches).
    if not _trail_is_logging(account_id, region):
        return
    from moto.events.models import events_backends

    identity_type = "AssumedRole" if ":assumed-role/" in caller else "IAMUser"
    detail = {
        "eventVersion": "1.08",
        "userIdentity": {"type": identity_type, "arn": caller, "accountId": account_id},
        "eventTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "eks.amazonaws.com",
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": "lab",
        "requestParameters": request_parameters,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account_id,
        "eventCategory": "Management",
    }
    entry = {"Source": "aws.eks", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(detail)}
    events_backends[account_id][region].put_events([entry])


# --- STS: the EKS token ------------------------------------------------------------------------------


class PresignError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _sts_error(code: str, message: str) -> Response:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Response(body, status=403, content_type="text/xml")


def _secret_for(access_key_id: str) -> tuple[str, str | None] | None:
    """The secret (and session token) moto holds for an access key, or None when moto does not know it."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account in list(sts_backends.keys()):
        role = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key_id)
        if role is not None:
            return role.secret_access_key, role.session_token
    for account in list(iam_backends.keys()):
        iam = iam_backends[account]["aws"]
        user = iam.get_user_from_access_key_id(access_key_id)
        if user is not None:
            for key in iam.list_access_keys(user.name):
                if key.access_key_id == access_key_id:
                    return key.secret_access_key, None
    return None


def verify_presigned_sts_get(
    method: str, host: str, path: str, raw_query: str, headers: dict[str, str], now: dt.datetime | None = None
) -> str:
    """Check expiry and SigV4 query signature like STS; returns the Authorization header moto can route."""
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    try:
        credential = params["X-Amz-Credential"]
        signed_at = dt.datetime.strptime(params["X-Amz-Date"], SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)
        expires = int(params["X-Amz-Expires"])
        signature = params["X-Amz-Signature"]
        signed_headers = params["X-Amz-SignedHeaders"]
        access_key_id, _date, region, service, _ = credential.split("/")
    except (KeyError, ValueError) as exc:
        raise PresignError("IncompleteSignature", f"presigned URL is incomplete: {exc}") from exc
    now = now or dt.datetime.now(dt.UTC)
    if now > signed_at + dt.timedelta(seconds=expires):
        raise PresignError("ExpiredToken", "Request has expired")
    if signed_at > now + MAX_CLOCK_SKEW:
        raise PresignError("SignatureDoesNotMatch", "Signature not yet current")
    secret = _secret_for(access_key_id)
    if secret is not None:
        unsigned_query = "&".join(p for p in raw_query.split("&") if not p.startswith("X-Amz-Signature="))
        request = AWSRequest(method=method, url=f"http://{host}{path}?{unsigned_query}")
        for name in signed_headers.split(";"):
            request.headers[name] = host if name == "host" else headers.get(name, "")
        request.context["timestamp"] = params["X-Amz-Date"]
        signer = SigV4QueryAuth(Credentials(access_key_id, secret[0], secret[1]), service, region, expires)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if expected != signature:
            raise PresignError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed_headers}, Signature={signature}"


def _is_presigned_sts_get(environ: dict[str, Any]) -> bool:
    query = environ.get("QUERY_STRING", "")
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and "HTTP_AUTHORIZATION" not in environ
        and "X-Amz-Credential=" in query
        and "Action=GetCallerIdentity" in query
    )


def patch_sts_presigned_get() -> None:
    # moto's server picks the service from the Authorization header, so a presigned GET (the EKS token)
    # lands in S3; and moto checks neither expiry nor signature. STS rejects expired URLs and URLs whose
    # signature (which covers x-k8s-aws-id, i.e. the cluster) does not match: that is what makes a token
    # for another cluster fail. Checked here, then routed to moto's STS with an equivalent header.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original_call = DomainDispatcherApplication.__call__

    def dispatch(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if _is_presigned_sts_get(environ):
            headers = {
                key[5:].lower().replace("_", "-"): str(value)
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            try:
                environ["HTTP_AUTHORIZATION"] = verify_presigned_sts_get(
                    "GET", headers.get("host", ""), environ.get("PATH_INFO") or "/",
                    environ.get("QUERY_STRING", ""), headers,
                )
            except PresignError as exc:
                return _sts_error(exc.code, str(exc))(environ, start_response)
        return original_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = dispatch  # type: ignore[method-assign]


# --- Lambda ----------------------------------------------------------------------------------------


def _function_code(fn: Any) -> Any:
    from moto.awslambda.models import lambda_backends

    from lab.region.lambda_sandbox import FunctionCode

    backend = lambda_backends[fn.account_id][fn.region]
    layers = []
    for layer in fn.layers:
        version = backend.layers_versions_by_arn(layer["Arn"])
        if version is None:
            raise ValueError(f"{fn.function_name}: layer {layer['Arn']} does not exist")
        layers.append(version.code_bytes)
    return FunctionCode(
        function_name=fn.function_name,
        function_arn=fn.function_arn,
        handler=fn.handler,
        runtime=fn.run_time,
        architecture=(fn.architectures or ["x86_64"])[0],
        memory_mb=int(fn.memory_size),
        timeout_seconds=float(fn.timeout),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        code=fn.code_bytes,
        layers=tuple(layers),
    )


def patch_lambda_deployed_code() -> None:
    # moto runs Lambda functions in Docker (none here). The lab runs each function's deployed code (its zip
    # and its layers' zips, as moto received them) in a sandbox interpreter of the runtime's Python with only
    # those and the runtime's boto3 on its path (lab/region/lambda_sandbox.py); errors keep their name
    # (errorType) for Retry/Catch, and a module missing from the package fails as Runtime.ImportModuleError.
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: str | bytes | dict[str, Any] | None = None) -> tuple[str, bool, str]:
        if _hooks.sandboxes is None:
            raise RuntimeError("the lab Region has no Lambda sandboxes (not started)")
        payload = json.loads(event) if isinstance(event, str | bytes) and event else (event or {})
        return _hooks.sandboxes.invoke(_function_code(self), payload).as_moto()

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]


# --- CloudFormation --------------------------------------------------------------------------------


def _loopback_template_location(template_url: str) -> tuple[str, str] | None:
    from urllib.parse import urlparse

    parts = urlparse(template_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    bucket, _, key = parts.path.lstrip("/").partition("/")
    return bucket, key


def patch_cloudformation_template_url() -> None:
    # The CDK CLI, pointed at the lab with AWS_ENDPOINT_URL, hands CloudFormation a path-style TemplateURL
    # ``http://127.0.0.1:PORT/<bucket>/<key>``; moto reads the bucket from the path only when the host is
    # "localhost" and otherwise takes the first label of the host ("127") as the bucket.
    import moto.cloudformation.responses as responses
    import moto.cloudformation.utils as utils

    original = utils.get_stack_from_s3_url

    def get_stack_from_s3_url(template_url: str, account_id: str, partition: str) -> str:
        location = _loopback_template_location(template_url)
        if location is None:
            return original(template_url, account_id, partition)
        from moto.s3.models import s3_backends

        key = s3_backends[account_id][partition].get_object(*location)
        return key.value.decode("utf-8")  # type: ignore[union-attr]

    utils.get_stack_from_s3_url = get_stack_from_s3_url
    responses.get_stack_from_s3_url = get_stack_from_s3_url  # type: ignore[attr-defined]


def patch_cloudformation_change_set_outputs() -> None:
    # The CDK CLI creates a stack through a change set. moto makes such a stack with an empty template and
    # ExecuteChangeSet creates the resources but never reads the template's Outputs, so DescribeStacks showed
    # none and `cdk deploy` printed none (docs/cloud.md's recovery reads SecretWriterRoleArn from them).
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        self.stack.template = self.template
        self.stack._parse_template()
        self.stack.output_map = self.stack._create_output_map()

    ChangeSet.apply = apply  # type: ignore[method-assign]


def _state_machine_configuration(properties: dict[str, Any]) -> dict[str, Any]:
    logging_in = properties.get("LoggingConfiguration") or {}
    settings: dict[str, Any] = {}
    if logging_in:
        settings["loggingConfiguration"] = {
            "level": logging_in.get("Level", "OFF"),
            "includeExecutionData": bool(logging_in.get("IncludeExecutionData", False)),
            "destinations": [
                {"cloudWatchLogsLogGroup": {"logGroupArn": d["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                for d in logging_in.get("Destinations", [])
            ],
        }
    if "TracingConfiguration" in properties:
        settings["tracingConfiguration"] = {"enabled": bool(properties["TracingConfiguration"].get("Enabled"))}
    return settings


def patch_cloudformation_state_machine() -> None:
    # moto's CloudFormation creates (and deletes) a state machine in the plain Step Functions backend, but
    # with execute_state_machine on, StartExecution and EventBridge targets look in the executing (parser)
    # backend, so executions of a deployed state machine failed with StateMachineDoesNotExist. It also drops
    # the template's LoggingConfiguration and TracingConfiguration.
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend
    from moto.utilities.tagging_service import TaggingService

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
               **kwargs: Any) -> Any:  # fmt: skip
        properties = cloudformation_json["Properties"]
        return get_backend(account_id, region_name).create_state_machine(
            properties.get("StateMachineName", resource_name),
            properties.get("DefinitionString", ""),
            properties.get("RoleArn", ""),
            tags=TaggingService.convert_dict_to_tags_input(
                {t["Key"]: t["Value"] for t in properties.get("Tags", [])}
            ),
            sm_type=properties.get("StateMachineType"),
            **_state_machine_configuration(properties),
        )

    def delete(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str) -> None:
        get_backend(account_id, region_name).delete_state_machine(resource_name)

    StateMachine.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    StateMachine.delete_from_cloudformation_json = classmethod(delete)  # type: ignore[method-assign,assignment]


def patch_cloudformation_kms_key_policy() -> None:
    # CloudFormation takes AWS::KMS::Key's KeyPolicy as a JSON object; moto stores that object where
    # CreateKey stores the policy text, and every later call on the key (DescribeKey, Encrypt) failed with
    # TypeError in moto's policy check. The object is serialized as CreateKey would receive it.
    from moto.kms.models import Key

    original = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
               **kwargs: Any) -> Any:  # fmt: skip
        properties = dict(cloudformation_json["Properties"])
        if not isinstance(properties.get("KeyPolicy"), str):
            properties["KeyPolicy"] = json.dumps(properties.get("KeyPolicy") or {})
        return original(cls, resource_name, {**cloudformation_json, "Properties": properties}, account_id,
                        region_name, **kwargs)  # fmt: skip

    Key.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]


# Properties of AWS::Lambda::Function that moto's CreateFunction takes but its CloudFormation model drops.
_FUNCTION_PROPERTIES_MOTO_DROPS = ("Layers", "Architectures", "TracingConfig", "KmsKeyArn", "EphemeralStorage",
                                   "LoggingConfig", "Tags")  # fmt: skip


def patch_cloudformation_function_properties() -> None:
    # moto's CloudFormation model of a Lambda function passes only Code, Handler, Role, Runtime and a few
    # optional properties to CreateFunction: the functions lost their layer (so the deployed code could not
    # import its dependencies), their architecture, tracing and log group. The dropped ones are passed on.
    # moto's Lambda has no LoggingConfig at all: it is kept on the function and GetFunction(Configuration)
    # returns it, with Lambda's default LogFormat "Text" (from the template only; UpdateFunctionConfiguration
    # still drops it).
    from moto.awslambda.models import LambdaFunction, get_backend

    original = LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
               **kwargs: Any) -> Any:  # fmt: skip
        function = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json["Properties"]
        changed = {key: properties[key] for key in _FUNCTION_PROPERTIES_MOTO_DROPS if key in properties}
        if "Layers" in changed:  # ARNs: a Ref to the stack's layer, since patch_cloudformation_layer_version
            function.layers = function._get_layers_data(list(changed["Layers"]))
        if "Architectures" in changed:
            function.architectures = list(changed["Architectures"])
        if "TracingConfig" in changed:
            function.tracing_config = changed["TracingConfig"]
        if "KmsKeyArn" in changed:
            function.kms_key_arn = changed["KmsKeyArn"]
        if "EphemeralStorage" in changed:
            function.ephemeral_storage = changed["EphemeralStorage"]["Size"]
        if "LoggingConfig" in changed:
            function.lab_logging_config = {"LogFormat": "Text", **changed["LoggingConfig"]}
        if "Tags" in changed:
            get_backend(account_id, region_name).tag_resource(
                function.function_arn, {t["Key"]: t["Value"] for t in changed["Tags"]}
            )
        return function

    original_configuration = LambdaFunction.get_configuration

    def get_configuration(self: Any, on_create: bool = False) -> dict[str, Any]:
        configuration = original_configuration(self, on_create)
        if getattr(self, "lab_logging_config", None):
            configuration["LoggingConfig"] = dict(self.lab_logging_config)
        return configuration

    LambdaFunction.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]


def patch_cloudformation_layer_version() -> None:
    # moto's CloudFormation model of AWS::Lambda::LayerVersion drops CompatibleArchitectures and has no
    # physical ID, so the stack listed the layer without one (CloudFormation's is the LayerVersionArn) and a
    # Ref to it resolved to moto's object rather than the ARN.
    from moto.awslambda.models import LayerVersion

    original = LayerVersion.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
               **kwargs: Any) -> Any:  # fmt: skip
        layer = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        layer.compatible_architectures = list(cloudformation_json["Properties"].get("CompatibleArchitectures", []))
        return layer

    LayerVersion.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    LayerVersion.physical_resource_id = property(lambda self: self.arn)  # type: ignore[attr-defined]


def patch_cloudformation_log_group_key() -> None:
    # moto's CloudFormation passes AWS::Logs::LogGroup's properties as they are named in the template
    # (KmsKeyId), but its LogGroup reads CreateLogGroup's kmsKeyId: every log group of the stack lost the key
    # that encrypts it, and DescribeLogGroups showed none.
    from moto.logs.models import LogGroup

    original = LogGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
               **kwargs: Any) -> Any:  # fmt: skip
        group = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        group.kms_key_id = cloudformation_json["Properties"].get("KmsKeyId")
        return group

    LogGroup.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]


def _alarm_arguments(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    queries = None
    if properties.get("Metrics"):
        queries = []
        for query in properties["Metrics"]:
            stat = query.get("MetricStat")
            metric_stat = None
            if stat:
                metric = stat["Metric"]
                dimensions = [Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])]
                metric_stat = MetricStat(Metric(metric["MetricName"], metric.get("Namespace"), dimensions),
                                         stat.get("Period"), stat.get("Stat"), stat.get("Unit"))  # fmt: skip
            queries.append(MetricDataQuery(query["Id"], query.get("Label"), query.get("Period"),
                                           query.get("ReturnData"), query.get("Expression"), metric_stat))  # fmt: skip
    return {
        "name": name, "namespace": properties.get("Namespace"), "metric_name": properties.get("MetricName"),
        "metric_data_queries": queries, "comparison_operator": properties["ComparisonOperator"],
        "evaluation_periods": int(properties["EvaluationPeriods"]),
        "datapoints_to_alarm": properties.get("DatapointsToAlarm"), "period": properties.get("Period"),
        "threshold": properties.get("Threshold"), "statistic": properties.get("Statistic"),
        "extended_statistic": properties.get("ExtendedStatistic"),
        "description": properties.get("AlarmDescription"), "dimensions": properties.get("Dimensions", []),
        "alarm_actions": properties.get("AlarmActions", []), "ok_actions": properties.get("OKActions", []),
        "insufficient_data_actions": properties.get("InsufficientDataActions", []),
        "unit": properties.get("Unit"), "actions_enabled": properties.get("ActionsEnabled", True),
        "treat_missing_data": properties.get("TreatMissingData"),
        "threshold_metric_id": properties.get("ThresholdMetricId"),
    }  # fmt: skip


def register_cloudformation_models() -> None:
    # moto's CloudFormation has no model for AWS::CloudWatch::Alarm or AWS::SQS::QueuePolicy: it logs
    # "No Moto CloudFormation support", marks the resource CREATE_COMPLETE and creates nothing, so the
    # stack's alarms did not exist and its dead-letter queue had no policy. moto finds models as the
    # direct subclasses of CloudFormationModel, in lru_caches that are cleared here.
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel
    from moto.sqs.models import sqs_backends

    class StackAlarm(CloudFormationModel):
        def __init__(self, name: str, arn: str) -> None:
            self.name, self.arn = name, arn

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "AlarmName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Arn"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> StackAlarm:
            properties = cloudformation_json["Properties"]
            name = properties.get("AlarmName", resource_name)
            alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(**_alarm_arguments(name, properties))
            return cls(name, alarm.alarm_arn)

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

    class StackQueuePolicy(CloudFormationModel):
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SQS::QueuePolicy"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> StackQueuePolicy:
            properties = cloudformation_json["Properties"]
            backend = sqs_backends[account_id][region_name]
            policy = json.dumps(properties["PolicyDocument"])
            for url in properties["Queues"]:
                backend.set_queue_attributes(url.rstrip("/").rsplit("/", 1)[-1], {"Policy": policy})
            return cls(resource_name)

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


# --- EventBridge -----------------------------------------------------------------------------------


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> str:
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse  # type: ignore[attr-defined]

        matches = parse(target["InputPath"]).find(event)
        return json.dumps(matches[0].value if matches else None)
    if "InputTransformer" in target:
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        return json.dumps(
            EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event=cast(Any, event),
            )
        )
    return json.dumps({k: v for k, v in event.items() if k != "ingestion-time"})


def _as_delivered_event(event: dict[str, Any]) -> dict[str, Any]:
    """moto keeps ``time`` as epoch seconds; targets see EventBridge's ISO-8601 string."""
    delivered = dict(event)
    when = event.get("time")
    if isinstance(when, int | float):
        delivered["time"] = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def _start_execution(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.stepfunctions.responses import get_backend

    _, _, _, region, account, _ = target["Arn"].split(":", 5)
    execution_input = _target_input(target, _as_delivered_event(event))
    name = f"{rule.name[:40]}-{uuid.uuid4().hex[:24]}"
    execution = get_backend(account, region).start_execution(
        target["Arn"], name=name, execution_input=execution_input
    )
    with _hooks.lock:
        _hooks.delivered.append(
            {
                "rule": rule.name,
                "target": target["Arn"],
                "executionArn": execution.execution_arn,
                "input": json.loads(execution_input),
            }
        )


def patch_events_state_machine_targets() -> None:
    # moto raises NotImplementedError for a rule whose target is a state machine; EventBridge starts an
    # execution with the event (or the target's Input/InputPath/InputTransformer) as input. Disabled
    # rules deliver nothing.
    import copy

    from moto.events.models import Rule

    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        state_machines = [t for t in self.targets if t["Arn"].split(":")[2] == "states"]
        others = [t for t in self.targets if t not in state_machines]
        if state_machines and self.event_pattern.matches_event(original_event):
            for target in state_machines:
                _start_execution(self, target, original_event)
        if others:
            shadow = copy.copy(self)
            shadow.targets = others
            original_send(shadow, cast(Any, original_event), transform_input)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]


def patch_events_recording() -> None:
    # Not a moto gap: the lab records every event put on a bus, so tests can see what the workflow published.
    from moto.events.models import EventsBackend

    original_put = EventsBackend.put_events

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = original_put(self, events)
        with _hooks.lock:
            for event, entry in zip(events, entries, strict=False):
                if "EventId" not in entry:
                    continue
                _hooks.events.append(
                    {
                        "id": entry["EventId"],
                        "bus": event.get("EventBusName") or "default",
                        "source": event.get("Source"),
                        "detail-type": event.get("DetailType"),
                        "detail": json.loads(event["Detail"]),
                        "resources": event.get("Resources", []),
                    }
                )
        return entries

    EventsBackend.put_events = put_events  # type: ignore[method-assign]
