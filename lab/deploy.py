"""Deploy the Lifeline stack into the lab Region the way a user does: the pinned CDK CLI's ``cdk bootstrap``
and ``cdk deploy``, pointed at the lab with ``AWS_ENDPOINT_URL`` (docs/cloud.md). moto's CloudFormation
creates the stack, with the gaps it has patched in lab/region/moto_patches.py; the Lambda functions then run
the code asset and layer CloudFormation received (lab/region/lambda_sandbox.py).

One stack per lab (``lab_deployment``): a second one would add a second CloudTrail rule. Lab-only settings
reach it as CDK context (``lab_context``, passed with ``-c``); the functions' lab-only environment
comes from the lab's Lambda runtime, never from the template.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_NAME = "Lifeline"
CLI_TIMEOUT_SECONDS = 600.0
LAB_POLL_INTERVAL_SECONDS = 1
LAB_MAX_WAIT_SECONDS = 20
LAB_ALARM_TOPIC = "lifeline-lab-alarms"


class DeployError(RuntimeError):
    """The stack could not be deployed into the lab Region (the step and what it said)."""


@dataclass(frozen=True)
class CliRun:
    command: list[str]
    seconds: float
    output: str
    environment: dict[str, str] = field(default_factory=dict)  # what the user sets besides the keys

    @property
    def shown(self) -> str:
        """The command as a user retypes it in the repository: its environment (the keys aside), ``npx cdk``
        (the pinned CLI in node_modules) and every argument, quoted for a POSIX shell."""
        environment = [f"{name}={shlex.quote(value)}" for name, value in self.environment.items()]
        return " ".join([*environment, "npx", "cdk", *map(shlex.quote, self.command[1:])])

    @property
    def result_lines(self) -> list[str]:
        """The CLI's own result lines: what it reports done (✅) and how long it took (✨)."""
        return [line.strip() for line in self.output.splitlines() if line.lstrip().startswith(("✅", "✨"))]


@dataclass
class DeployedStack:
    """What CloudFormation created, by the template's logical IDs."""

    stack_name: str
    state_machine_arn: str
    kms_key_arn: str
    dead_letter_queue_url: str
    functions: dict[str, str] = field(default_factory=dict)  # logical ID -> function name
    rules: dict[str, str] = field(default_factory=dict)  # logical ID -> rule name
    physical: dict[str, str] = field(default_factory=dict)  # logical ID -> physical ID
    allowed_outpost_arns: list[str] = field(default_factory=list)
    cli_runs: list[CliRun] = field(default_factory=list)  # how it was deployed

    def function_named(self, handler_package: str) -> str:
        """The function name whose logical ID contains ``handler_package`` (e.g. ``NormaliseRequest``)."""
        matches = [name for logical, name in self.functions.items() if handler_package in logical]
        if len(matches) != 1:
            raise DeployError(f"no single function matches {handler_package!r}: {matches}")
        return matches[0]


def lab_context(lab: Any, allowed_outpost_arns: list[str], alarm_topic_arn: str) -> dict[str, Any]:
    """CDK context for the lab: 1 s polls, a short wait bound, no grace before the readiness alarm (a lab test
    reports for its agent itself), the lab's agent principal, and an alarm topic (so the alarms have actions)."""
    return {
        "lifeline:pollIntervalSeconds": LAB_POLL_INTERVAL_SECONDS,
        "lifeline:readinessGraceSeconds": 0,
        "lifeline:maxWaitSeconds": LAB_MAX_WAIT_SECONDS,
        "lifeline:allowedOutpostArns": list(allowed_outpost_arns),
        "lifeline:agentPrincipalArns": [lab.agent_principal.arn],
        "lifeline:alarmTopicArn": alarm_topic_arn,
    }


def read_stack(lab: Any, stack_name: str = STACK_NAME) -> DeployedStack:
    """The deployed stack's resources, from CloudFormation."""
    cloudformation = lab.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(f"stack {stack_name} is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}")
    resources = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    by_type: dict[str, dict[str, str]] = {}
    for resource in resources:
        by_type.setdefault(resource["ResourceType"], {})[resource["LogicalResourceId"]] = resource.get(
            "PhysicalResourceId", ""
        )

    def single(resource_type: str) -> str:
        found = list(by_type.get(resource_type, {}).values())
        if len(found) != 1:
            raise DeployError(f"stack {stack_name} has {len(found)} {resource_type}, not one")
        return found[0]

    key = lab.client("kms").describe_key(KeyId=single("AWS::KMS::Key"))["KeyMetadata"]
    return DeployedStack(
        stack_name=stack_name,
        state_machine_arn=single("AWS::StepFunctions::StateMachine"),
        kms_key_arn=key["Arn"],
        dead_letter_queue_url=single("AWS::SQS::Queue"),
        functions=dict(by_type.get("AWS::Lambda::Function", {})),
        rules=dict(by_type.get("AWS::Events::Rule", {})),
        physical={r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources},
    )


# --- the CDK CLI -------------------------------------------------------------------------------------------


def cli_command(*arguments: str) -> list[str]:
    return [str(REPO_ROOT / "node_modules" / ".bin" / "cdk"), *arguments]


# The CLI's environment as a user sets it; the keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) are not shown.
SHOWN_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_REGION", "CDK_DISABLE_VERSION_CHECK", "CDK_DISABLE_CLI_TELEMETRY")


def cli_environment(lab: Any) -> dict[str, str]:
    """The CLI's environment: the lab Region's address and the creator's keys; no notices, no telemetry,
    no version check (nothing may leave the machine)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))},
        **lab.env(),
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    }


def _context_arguments(context: Mapping[str, Any]) -> list[str]:
    arguments = []
    for key, value in context.items():
        arguments += ["-c", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return arguments


def _run_cli(lab: Any, arguments: list[str], workdir: Path) -> CliRun:
    command = cli_command(*arguments)
    environment = cli_environment(lab)
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_SECONDS, check=False)  # fmt: skip
    output = done.stdout + done.stderr
    (workdir / f"cdk-{arguments[0]}.log").write_text(output)
    if done.returncode != 0:
        raise DeployError(f"`cdk {arguments[0]}` failed ({done.returncode}); its output is in "
                          f"{workdir / f'cdk-{arguments[0]}.log'}:\n{output[-3000:]}")  # fmt: skip
    return CliRun(command, time.monotonic() - started, output, {name: environment[name] for name in SHOWN_ENVIRONMENT})


def deploy_with_cli(lab: Any, context: Mapping[str, Any], workdir: Path) -> DeployedStack:
    """``cdk bootstrap`` and ``cdk deploy`` into the lab Region, as docs/cloud.md tells a user to."""
    workdir.mkdir(parents=True, exist_ok=True)
    common = ["--no-notices", "--no-color", "--output", str(workdir / "cdk.out")]
    runs = [
        _run_cli(lab, ["bootstrap", f"aws://{lab.region.account_id}/{lab.region.name}", *common], workdir),
        _run_cli(lab, ["deploy", STACK_NAME, "--require-approval", "never", "--progress", "events", *common,
                       *_context_arguments(context)], workdir),  # fmt: skip
    ]
    deployed = read_stack(lab)
    deployed.cli_runs = runs
    return deployed


# --- one stack per lab -------------------------------------------------------------------------------------

_lab_deployments: weakref.WeakKeyDictionary[Any, DeployedStack] = weakref.WeakKeyDictionary()
_deploying = threading.Lock()


def lab_deployment(lab: Any, allowed_outpost_arns: list[str] | None = None) -> DeployedStack:
    """The Lifeline stack deployed once per lab with ``cdk bootstrap`` + ``cdk deploy`` (later calls return the
    same deployment; its ``cli_runs`` say how it was made). The CLI's output is in ``<state_dir>/cdk``."""
    from lab.lab import DEFAULT_OUTPOST_ARN

    allowed = list(allowed_outpost_arns or [DEFAULT_OUTPOST_ARN])
    with _deploying:
        if lab not in _lab_deployments:
            topic = lab.client("sns").create_topic(Name=LAB_ALARM_TOPIC)["TopicArn"]
            deployed = deploy_with_cli(lab, lab_context(lab, allowed, topic), lab.state_dir / "cdk")
            deployed.allowed_outpost_arns = allowed
            _lab_deployments[lab] = deployed
        deployed = _lab_deployments[lab]
    # A second stack would add a second CloudTrail rule, and every event would start two executions.
    if set(allowed) - set(deployed.allowed_outpost_arns):
        raise DeployError(
            f"the lab's Lifeline stack allows {deployed.allowed_outpost_arns}; {allowed} were asked for. "
            "Use an allowed Outpost, or pass every Outpost the lab needs to the first lab_deployment call."
        )
    return deployed
