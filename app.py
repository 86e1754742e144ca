#!/usr/bin/env python3
"""CDK app: the Lifeline Region stack, checked with cdk-nag AwsSolutions. Parameters: CDK context (docs/cloud.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "agent"))

import aws_cdk as cdk  # noqa: E402

from cdk.nag import apply_checks  # noqa: E402
from cdk.stack import LifelineStack  # noqa: E402


def build_app(context: dict[str, object] | None = None) -> tuple[cdk.App, LifelineStack]:
    app = cdk.App(context=context) if context is not None else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack_name = str(app.node.try_get_context("lifeline:stackName") or "Lifeline")
    stack = LifelineStack(app, stack_name, env=env)
    apply_checks(app)
    return app, stack


if __name__ == "__main__":
    application, _ = build_app()
    application.synth()
