#!/usr/bin/env python3
"""CDK app: the Lifeline Region stack, checked with cdk-nag AwsSolutions. Parameters: CDK context (docs/cloud.md)."""

from __future__ import annotations

import sys
from pathlib import Path

# From a fresh clone the agent package may not be installed: the Lambdas' asset copies it from here.
sys.path.insert(0, str(Path(__file__).resolve().parent / "agent"))

from cdk.application import build_app  # noqa: E402

if __name__ == "__main__":
    application, _ = build_app()
    application.synth()
