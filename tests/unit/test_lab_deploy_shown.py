"""The CDK CLI commands the lab ran, as the demo shows them (lab.deploy.CliRun): a reader who types the shown
line into a POSIX shell runs the same arguments with the same settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab.deploy import CliRun

ARGUMENTS = ["deploy", "Lifeline", "--require-approval", "never", "--output", "/tmp/lab state/cdk.out",
             "-c", "lifeline:pollIntervalSeconds=1", "-c", 'lifeline:allowedOutpostArns=["arn:aws:outposts:x"]',
             "-c", "lifeline:note=it's $HOME"]  # fmt: skip
ENVIRONMENT = {"AWS_ENDPOINT_URL": "http://127.0.0.1:45123", "AWS_REGION": "us-west-2"}


def test_the_shown_command_typed_into_a_shell_runs_the_same_arguments_and_settings(tmp_path: Path) -> None:
    npx = tmp_path / "npx"  # stands in for npx: reports what the shell gave it
    names = list(ENVIRONMENT)
    report = f"print(json.dumps({{'argv': sys.argv[1:], 'env': {{k: os.environ.get(k) for k in {names}}}}}))"
    npx.write_text(f"#!{sys.executable}\nimport json, os, sys\n{report}\n")
    npx.chmod(0o755)
    run = CliRun(["/repo/node_modules/.bin/cdk", *ARGUMENTS], 1.0, "", dict(ENVIRONMENT))
    shell = subprocess.run(["/bin/sh", "-c", run.shown], capture_output=True, text=True, check=True,
                           env={"PATH": f"{tmp_path}:{os.environ['PATH']}", "HOME": "/home/nobody"})  # fmt: skip
    seen = json.loads(shell.stdout)
    assert seen == {"argv": ["cdk", *ARGUMENTS], "env": ENVIRONMENT}


def test_the_result_lines_are_the_clis_own_done_and_time_lines() -> None:
    output = ("Lifeline: deploying... [1/1]\n\n ✅  Lifeline\n\n✨  Deployment time: 0.5s\n\nOutputs:\n"
              "Lifeline.StateMachineArn = arn:x\n✨  Total time: 7.7s\n")  # fmt: skip
    run = CliRun(["cdk", "deploy"], 1.0, output, {})
    assert run.result_lines == ["✅  Lifeline", "✨  Deployment time: 0.5s", "✨  Total time: 7.7s"]
