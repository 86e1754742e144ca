"""Building the CDK app: the Lifeline stack with cdk-nag AwsSolutions checks (used by app.py and tests)."""

from __future__ import annotations

import os

import aws_cdk as cdk

from cdk.nag import apply_checks
from cdk.stack import LifelineStack


def build_app(context: dict[str, object] | None = None) -> tuple[cdk.App, LifelineStack]:
    app = cdk.App(context=context) if context is not None else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack_name = str(app.node.try_get_context("lifeline:stackName") or "Lifeline")
    stack = LifelineStack(app, stack_name, env=env)
    apply_checks(app)
    return app, stack
