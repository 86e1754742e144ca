"""cdk-nag AwsSolutions and cfn-lint over the synthesized stack, and `make synth` with the pinned CDK CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.infrastructure.conftest import Synthesized

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_cdk_nag_reports_no_unsuppressed_finding(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    annotations = Annotations.from_stack(synth.stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    errors = [f"{m.id}: {m.entry.data}" for m in annotations.find_error("*", pattern)]
    warnings = [f"{m.id}: {m.entry.data}" for m in annotations.find_warning("*", pattern)]
    assert errors == [] and warnings == []


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_every_nag_suppression_names_a_rule_and_gives_a_reason(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    suppressions = [
        rule
        for resource in synth.json["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions, "expected the justified suppressions to be recorded in the template"
    for rule in suppressions:
        assert rule["id"].startswith("AwsSolutions-")
        assert len(rule["reason"]) >= 30, rule


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_cfn_lint_finds_nothing(variant: str, request: pytest.FixtureRequest) -> None:
    from cfnlint.api import ManualArgs, lint

    synth: Synthesized = request.getfixturevalue(variant)
    # W3005 (DependsOn already implied by a GetAtt): CDK writes both on purpose for Role/DefaultPolicy pairs.
    config = ManualArgs(regions=["us-west-2"], ignore_checks=["W3005"])
    matches = lint(json.dumps(synth.json), config=config)
    assert [str(m) for m in matches] == []


def test_make_synth_command_writes_the_template_with_the_pinned_cli(tmp_path: Path) -> None:
    cli = REPO / "node_modules" / ".bin" / "cdk"
    assert cli.exists(), "node_modules/.bin/cdk missing: run make install"
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "1"}
    completed = subprocess.run(
        [str(cli), "synth", "--quiet", "--no-notices", "--output", str(tmp_path / "cdk.out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    template = json.loads((tmp_path / "cdk.out" / "Lifeline.template.json").read_text())
    types = {r["Type"] for r in template["Resources"].values()}
    # cdk.json deploys with the dependencies layer (tests/infrastructure/test_lambda_package.py imports it)
    assert {"AWS::StepFunctions::StateMachine", "AWS::Events::Rule", "AWS::KMS::Key",
            "AWS::Lambda::LayerVersion"} <= types  # fmt: skip
    assert "AwsSolutions" not in completed.stderr
