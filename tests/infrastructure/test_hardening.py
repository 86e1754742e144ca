"""Issue 9, Region side: the secret's write-deny policy, encrypted log groups, the agent policy output, the
state order (secret last, RBAC rolled back), no asserts in product code, and checkov on the template."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lambdas import constants
from lambdas.store_secret.logic import WRITER_ONLY_ACTIONS, reader_policy
from tests.infrastructure.conftest import AGENT_ROLE, AGENT_USER, Synthesized

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
WRITER = "arn:aws:iam::123456789012:role/Lifeline-FunctionsStoreSecretRole-ABC"
ADMIN = "arn:aws:iam::123456789012:role/Admin"


def _definition(synth: Synthesized) -> dict[str, Any]:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return dict(json.loads("".join(p if isinstance(p, str) else "x" for p in parts)))


def _key_logical_id(synth: Synthesized) -> str:
    (key_id,) = synth.resources("AWS::KMS::Key")
    return key_id


# -- the secret's resource policy ------------------------------------------------------------------------


def _decision(policy: dict[str, Any], principal: str, action: str) -> str:
    """IAM evaluation for this policy's shapes (Principal "*" or {"AWS": [...]}, ArnNotEquals on
    aws:PrincipalArn): an explicit Deny wins, then an Allow; otherwise "implicit" (IAM policies decide)."""
    decisions = set()
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if action not in actions:
            continue
        principals = statement["Principal"]
        if principals != "*" and principal not in principals["AWS"]:
            continue
        excluded = statement.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn")
        if excluded is not None:
            excluded = excluded if isinstance(excluded, list) else [excluded]
            if principal in excluded:
                continue
        decisions.add(statement["Effect"])
    return "Deny" if "Deny" in decisions else "Allow" if "Allow" in decisions else "implicit"


@pytest.mark.parametrize("action", WRITER_ONLY_ACTIONS)
def test_only_the_writer_role_may_change_a_secret_or_its_policy(action: str) -> None:
    policy = reader_policy((AGENT_ROLE, AGENT_USER), WRITER)
    assert _decision(policy, WRITER, action) == "implicit"  # its IAM policy allows what it needs
    for other in (AGENT_ROLE, AGENT_USER, ADMIN, "arn:aws:iam::210987654321:role/Anyone"):
        assert _decision(policy, other, action) == "Deny", other


def test_the_write_deny_covers_every_way_to_change_what_agents_read() -> None:
    required = {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:PutResourcePolicy",
                "secretsmanager:DeleteResourcePolicy", "secretsmanager:UpdateSecretVersionStage"}
    assert required <= set(WRITER_ONLY_ACTIONS)
    policy = reader_policy((AGENT_ROLE,), WRITER)
    assert _decision(policy, AGENT_ROLE, "secretsmanager:GetSecretValue") == "Allow"
    assert _decision(policy, ADMIN, "secretsmanager:GetSecretValue") == "Deny"
    assert _decision(policy, WRITER, "secretsmanager:GetSecretValue") == "implicit"
    # Deleting stays possible for an admin: it is the documented recovery (docs/cloud.md).
    assert _decision(policy, ADMIN, "secretsmanager:DeleteSecret") == "implicit"


def test_the_writer_named_in_the_policy_is_the_role_that_writes(synthesized: Synthesized) -> None:
    for function in synthesized.resources("AWS::Lambda::Function").values():
        if function["Properties"]["Handler"] == "lambdas.store_secret.handler.handler":
            variables = function["Properties"]["Environment"]["Variables"]
            writer = {"Fn::GetAtt": [function["Properties"]["Role"]["Fn::GetAtt"][0], "Arn"]}
            assert variables[constants.ENV_SECRET_WRITER_ARN] == writer
            assert synthesized.json["Outputs"]["SecretWriterRoleArn"]["Value"] == writer
            return
    raise AssertionError("no StoreSecret function")


# -- log groups, agent policy, origin check --------------------------------------------------------------


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_every_log_group_is_encrypted_with_the_stacks_key(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    groups = synth.resources("AWS::Logs::LogGroup")
    assert len(groups) == len(synth.resources("AWS::Lambda::Function")) + 1  # + the state machine's
    key = _key_logical_id(synth)
    for logical, group in groups.items():
        assert group["Properties"].get("KmsKeyId") == {"Fn::GetAtt": [key, "Arn"]}, logical


def test_the_key_policy_lets_cloudwatch_logs_of_this_region_use_the_key_for_log_groups_only(
    synthesized: Synthesized,
) -> None:
    (key,) = synthesized.resources("AWS::KMS::Key").values()
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (logs,) = [s for s in statements if s.get("Sid") == "CloudWatchLogsEncryptLifelineLogs"]
    assert logs["Principal"] == {"Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    assert "kms:GenerateDataKey" in logs["Action"] and "kms:Decrypt" in logs["Action"]
    context = json.dumps(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert ":log-group:*" in context


def test_the_agent_policy_output_grants_describe_cluster_besides_reading_the_secrets(synthesized: Synthesized) -> None:
    parts = synthesized.json["Outputs"]["AgentPolicyDocument"]["Value"]["Fn::Join"][1]
    document = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {"ReadLifelineSecrets", "DecryptLifelineSecrets", "VerifySecretAgainstEks",
                               "ReportReadiness"}  # fmt: skip
    # PutMetricData has no resource-level permissions: only into the Lifeline namespace, nothing else
    assert statements["ReportReadiness"]["Action"] == "cloudwatch:PutMetricData"
    assert statements["ReportReadiness"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Lifeline"}}
    assert statements["VerifySecretAgainstEks"]["Action"] == "eks:DescribeCluster"
    assert statements["VerifySecretAgainstEks"]["Resource"].endswith(":cluster/*")
    assert statements["ReadLifelineSecrets"]["Resource"].endswith(":secret:lifeline/*")
    assert "kms:ViaService" in statements["DecryptLifelineSecrets"]["Condition"]["StringEquals"]
    assert all(s["Effect"] == "Allow" for s in statements.values())


def test_normalise_request_knows_the_stacks_account_and_region(synthesized: Synthesized) -> None:
    for function in synthesized.resources("AWS::Lambda::Function").values():
        if function["Properties"]["Handler"] == "lambdas.normalise_request.handler.handler":
            variables = function["Properties"]["Environment"]["Variables"]
            assert variables[constants.ENV_STACK_ACCOUNT] == {"Ref": "AWS::AccountId"}
            assert variables[constants.ENV_STACK_REGION] == {"Ref": "AWS::Region"}
            return
    raise AssertionError("no NormaliseRequest function")


# -- state order -----------------------------------------------------------------------------------------


def test_the_secret_is_written_after_the_rbac_and_a_failed_write_rolls_the_rbac_back(
    synthesized: Synthesized,
) -> None:
    states = _definition(synthesized)["States"]
    ready = [c["Next"] for c in states["ClusterState"]["Choices"] if c.get("StringEquals") == "READY"]
    assert ready == ["BootstrapRbac"]
    assert states["BootstrapRbac"]["Next"] == "StoreSecret"
    assert states["StoreSecret"]["Next"] == "PublishReady"
    assert [c["Next"] for c in states["StoreSecret"]["Catch"]] == ["RollbackRbac"]
    rollback = states["RollbackRbac"]
    assert rollback["Next"] == "PublishFailure"
    assert [c["Next"] for c in rollback["Catch"]] == ["PublishFailure"]
    assert set(rollback["Parameters"]) == {"cluster.$", "created.$", "failure.$"}


# -- code ------------------------------------------------------------------------------------------------


def test_no_assert_statement_in_product_code() -> None:
    found = []
    for root in ("lambdas", "cdk", "app.py"):
        for path in [REPO / root] if root.endswith(".py") else sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Assert)]
    assert found == []


def test_the_stack_module_imports_neither_scanner() -> None:
    tree = ast.parse((REPO / "cdk" / "stack.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"cdk.nag", "cdk.checkov"}


# -- checkov ---------------------------------------------------------------------------------------------


def test_the_checkov_environment_runs_the_pinned_version() -> None:
    import tomllib

    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["lifeline"]["tools"]["checkov"]
    assert f"checkov=={pinned}\n" in (REPO / "requirements-checkov.lock").read_text()
    assert CHECKOV.exists(), f"{CHECKOV} missing: run make install (checkov has its own environment)"
    completed = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip() == pinned


def _checkov(template: dict[str, Any], directory: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: run make install (checkov has its own environment)"
    path = directory / "template.json"
    path.write_text(json.dumps(template))
    completed = subprocess.run(
        [str(CHECKOV), "--file", str(path), "--framework", "cloudformation", "--output", "json", "--quiet",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    return dict(report[0] if isinstance(report, list) else report)


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    report = _checkov(synth.json, tmp_path)
    summary = report["summary"]
    failed = [f"{f['check_id']} {f['resource']}" for f in report["results"]["failed_checks"]]
    assert failed == [] and summary["parsing_errors"] == 0
    assert summary["passed"] > 100 and summary["resource_count"] == len(synth.json["Resources"])
    skips = [
        rule
        for resource in synth.json["Resources"].values()
        for rule in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips and summary["skipped"] == len(skips)
    for rule in skips:
        assert rule["id"].startswith("CKV_") and len(rule["comment"]) >= 40, rule


def test_checkov_does_fail_an_unencrypted_log_group(synthesized: Synthesized, tmp_path: Path) -> None:
    """The scan is live: the same template with one log group's key removed is a finding."""
    template = json.loads(json.dumps(synthesized.json))
    logical = next(iter(synthesized.resources("AWS::Logs::LogGroup")))
    del template["Resources"][logical]["Properties"]["KmsKeyId"]
    failed = [(f["check_id"], f["resource"]) for f in _checkov(template, tmp_path)["results"]["failed_checks"]]
    assert failed == [("CKV_AWS_158", f"AWS::Logs::LogGroup.{logical}")]
