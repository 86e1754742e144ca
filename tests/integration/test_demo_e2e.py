"""The product's end-to-end test: the same story as ``make demo`` (``lab.demo.run_demo``), on this process's lab.

CloudTrail event -> the synthesized workflow -> secret and RBAC -> a real ``lifeline-agent run`` process ->
link cut -> the drill with real kubectl -> offline renewals with kubectl never failing -> restore.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from lab.demo import GRANT_LANE, OFFLINE_LANE, DemoOptions, DemoResult, run_demo
from lab.deploy import lab_deployment
from lab.drill import TLS_HANDSHAKE_TIMEOUT, UNAUTHORIZED

pytestmark = pytest.mark.xdist_group("demo-e2e")  # one worker runs the story once for every test here


@pytest.fixture(scope="module")
def demo(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, list[str], Path]:
    output = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    try:
        result = run_demo(DemoOptions(output_dir=output, lab=lab, cluster_prefix="e2e-demo", log=lines.append))
    finally:
        lab.link.restore()
    return result, lines, output


def test_every_outcome_of_the_story_is_the_expected_one(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, _ = demo
    assert result.passed, "\n".join(lines)
    assert all(result.checks.values()) and len(result.checks) == 9


def test_before_the_cut_the_region_shows_the_cluster_ready(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, _ = demo
    assert result.region_shows_ready
    text = "\n".join(lines)
    assert "Lifeline/OfflineAccessReady{ClusterName=e2e-demo-local} = 1 at " in text
    assert "alarm lifeline-readiness-e2e-demo-local (Outpost op-" in text and "): OK once this 5-minute" in text
    assert text.index("): OK once this") < text.index("the service link is cut")


def test_the_region_side_is_deployed_with_the_two_cdk_commands_shown_as_a_user_types_them(
    demo: tuple[DemoResult, list[str], Path], lab: Any
) -> None:
    _, lines, _ = demo
    messages = [line.split("] ", 1)[1] for line in lines]
    shown = [i for i, message in enumerate(messages) if message.startswith("  $ ")]
    assert len(shown) == 2, messages
    runs = lab_deployment(lab).cli_runs  # the deployment the demo made (one per lab)
    for index, run in zip(shown, runs, strict=True):
        words = shlex.split(messages[index][4:])
        environment = dict(word.split("=", 1) for word in words[: words.index("npx")])
        assert environment["AWS_ENDPOINT_URL"] == lab.region_url and environment["AWS_REGION"] == lab.region.name
        assert words[words.index("npx"):] == ["npx", "cdk", *run.command[1:]]  # retyped, it is what ran
    environment = f"aws://{lab.region.account_id}/{lab.region.name}"
    bootstrap, deploy = (shlex.split(messages[index][4:]) for index in shown)
    assert bootstrap[bootstrap.index("cdk") :][:3] == ["cdk", "bootstrap", environment]
    assert deploy[deploy.index("cdk") :][:3] == ["cdk", "deploy", "Lifeline"]
    context = dict(deploy[i + 1].split("=", 1) for i, word in enumerate(deploy) if word == "-c")
    assert context["lifeline:pollIntervalSeconds"] == "1"
    outposts = list(lab.describe_cluster("e2e-demo-local").outpost_arns)
    assert json.loads(context["lifeline:allowedOutpostArns"]) == outposts
    indented = [itertools.takewhile(lambda m: m.startswith("    "), messages[i + 1 :]) for i in shown]
    results = [[m.strip() for m in block] for block in indented]
    bootstrapped, deployed = results  # the CLI's result lines, then the seconds the command took
    assert f"✅  Environment {environment} bootstrapped." in bootstrapped and "✅  Lifeline" in deployed
    assert any(line.startswith("✨  Deployment time: ") for line in deployed)
    assert all(re.fullmatch(r"\(\d+\.\d s\)", lines[-1]) for lines in results)


def test_the_workflow_ran_from_the_cloudtrail_event_to_ready(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, _ = demo
    assert result.workflow_status == "SUCCEEDED"
    for state in ("NormaliseRequest", "CheckCluster", "StoreSecret", "BootstrapRbac", "PublishReady", "Ready"):
        assert state in result.workflow_states
        assert any(line.endswith(f"workflow state: {state}") for line in lines), f"{state} not shown live"


def test_the_drill_reproduces_the_field_experiment(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, _ = demo
    rows = {row.case.key: row for row in result.drill.rows}
    assert list(rows) == ["extended-iam", "local-iam", "local-lifeline"]
    assert all(row.before.lists_kubernetes_service for row in rows.values())
    assert rows["extended-iam"].after.message == TLS_HANDSHAKE_TIMEOUT
    assert rows["local-iam"].after.message == UNAUTHORIZED
    assert rows["local-lifeline"].after.lists_kubernetes_service
    assert rows["local-lifeline"].after.message.startswith("kubernetes ClusterIP 172.20.0.1 <none> 443/TCP")
    table = result.drill.table()
    assert f"`{TLS_HANDSHAKE_TIMEOUT}`" in table and f"`{UNAUTHORIZED}`" in table and "UNEXPECTED" not in table
    assert table.splitlines()[0] in "\n".join(lines), "the table is printed"


def test_the_agent_renews_offline_and_kubectl_never_fails(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, _, _ = demo
    assert result.renewals_offline >= 2
    assert len(result.offline_calls) >= 10
    assert result.offline_failures == []
    cut_at = result.drill.cut_at
    assert all(call.started >= cut_at for call in result.offline_calls)
    assert result.agent_exit_code == 0


def test_during_the_outage_an_operator_gets_a_personal_kubeconfig(demo: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, output = demo
    assert result.granted_as == "lifeline-user:alice"
    assert any("kubectl auth whoami: lifeline-user:alice in lifeline:operators" in line for line in lines)
    data = json.loads((output / "timeline.json").read_text())
    down, up = data["link"][1]["t"], data["link"][2]["t"]
    (grant,) = data["grants"]
    assert grant["user"] == "lifeline-user:alice" and down <= grant["issued"] <= up
    (whoami,) = [call for call in data["kubectl"] if call["lane"] == GRANT_LANE]
    assert whoami["ok"] and down <= whoami["started"] <= up


def test_iam_works_again_after_the_restore(demo: tuple[DemoResult, list[str], Path], lab: Any) -> None:
    result, _, _ = demo
    assert result.iam_after_restore is not None and result.iam_after_restore.lists_kubernetes_service
    assert lab.link.is_up


def test_the_timeline_records_link_certificates_and_every_kubectl_call(
    demo: tuple[DemoResult, list[str], Path],
) -> None:
    result, _, output = demo
    assert result.timeline_json == output / "timeline.json" and result.timeline_png == output / "timeline.png"
    data = json.loads(result.timeline_json.read_text())
    assert [change["state"] for change in data["link"]] == ["up", "down", "up"]
    down, up = data["link"][1]["t"], data["link"][2]["t"]
    renewed_offline = [c for c in data["certificates"][1:] if down <= c["installed"] <= up]
    assert len(renewed_offline) >= 2
    offline = [call for call in data["kubectl"] if call["lane"] == OFFLINE_LANE]
    assert len(offline) == len(result.offline_calls) and all(call["ok"] for call in offline)
    assert sum(not call["ok"] for call in data["kubectl"]) == 2  # cases 1 and 2 after the cut, nothing else
    assert result.timeline_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((output / "summary.json").read_text())
    assert summary["passed"] is True and summary["offline_failures"] == []
