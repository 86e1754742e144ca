"""Building the CDK app: the Lifeline stack with cdk-nag AwsSolutions checks and the accepted findings of
cdk-nag and checkov (used by app.py and tests)."""

from __future__ import annotations

import os

import aws_cdk as cdk

from cdk.checkov import skip_accepted_findings
from cdk.nag import apply_checks, suppress_justified_findings
from cdk.stack import LifelineStack


def build_app(context: dict[str, object] | None = None) -> tuple[cdk.App, LifelineStack]:
    app = cdk.App(context=context) if context is not None else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack_name = str(app.node.try_get_context("lifeline:stackName") or "Lifeline")
    stack = LifelineStack(app, stack_name, env=env)
    suppress_justified_findings(stack)
    skip_accepted_findings(stack)
    apply_checks(app)
    return app, stack
