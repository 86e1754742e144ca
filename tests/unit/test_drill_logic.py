"""The drill's logic: reading kubectl's output, the table, the order cut/calls, bad options; and the timeline file.

The kubectl boundary is faked here (a shell script) only to test that logic; the real kubectl runs in
tests/integration/test_demo_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from lab import drill
from lab.drill import (
    TLS_HANDSHAKE_TIMEOUT,
    UNAUTHORIZED,
    WORKS,
    DrillCase,
    DrillError,
    DrillReport,
    DrillRow,
    KubectlCall,
    command_action,
    render_table,
    run_drill,
    seconds_until_fresh_tokens,
)
from lab.timeline import Timeline, _link_spans

SERVICE_TABLE = "NAME         TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\n" \
                "kubernetes   ClusterIP   172.20.0.1   <none>        443/TCP   5m\n"  # fmt: skip
DISCOVERY_NOISE = 'E1127 09:30:01.000000 memcache.go:265] "Unhandled Error" err="couldn\'t get current server"\n'


def call(returncode: int, stdout: str = "", stderr: str = "", case: str = "c") -> KubectlCall:
    return KubectlCall(case, "after", 0.0, 1.0, returncode, stdout, stderr)


def test_a_listed_kubernetes_service_is_success_and_its_line_is_the_message() -> None:
    listed = call(0, SERVICE_TABLE)
    assert listed.lists_kubernetes_service and listed.meets(WORKS)
    assert listed.message == "kubernetes ClusterIP 172.20.0.1 <none> 443/TCP 5m"
    assert not listed.meets(UNAUTHORIZED)


def test_a_failure_message_is_kubectls_last_error_line() -> None:
    failed = call(1, "", DISCOVERY_NOISE * 5 + TLS_HANDSHAKE_TIMEOUT + "\n")
    assert failed.message == TLS_HANDSHAKE_TIMEOUT
    assert failed.meets(TLS_HANDSHAKE_TIMEOUT) and not failed.meets(WORKS) and not failed.meets(UNAUTHORIZED)


def test_an_empty_answer_and_a_list_without_the_service_are_not_success() -> None:
    assert call(0, "No resources found in default namespace.\n").meets(WORKS) is False
    silent = call(137)
    assert silent.message == "kubectl exited 137 without a message" and not silent.meets(WORKS)


def row(key: str, before: KubectlCall, after: KubectlCall, expected: str) -> DrillRow:
    return DrillRow(DrillCase(key, "Outpost (local cluster)", "IAM token", Path("/x"), expected), before, after)


def test_the_table_is_markdown_with_kubectls_words_and_marks_what_was_unexpected() -> None:
    good = row("a", call(0, SERVICE_TABLE), call(1, "", UNAUTHORIZED), UNAUTHORIZED)
    bad = row("b", call(0, SERVICE_TABLE), call(0, SERVICE_TABLE), TLS_HANDSHAKE_TIMEOUT)
    lines = render_table([good, bad]).splitlines()
    assert len(lines) == 4
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert set(lines[1]) <= {"|", "-"}
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == [
        "case", "control plane", "credential", "result before the cut", "result after the cut"]  # fmt: skip
    assert f"`{UNAUTHORIZED}`" in lines[2] and "UNEXPECTED" not in lines[2]
    assert lines[3].rstrip(" |").endswith("(UNEXPECTED)")
    assert len({len(line) for line in lines}) == 1, "columns are aligned"
    report = DrillReport(rows=[good, bad])
    assert not report.passed and DrillReport(rows=[good]).passed and not DrillReport().passed
    assert [r["as_expected"] for r in report.as_dict()["rows"]] == [True, False]


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A kubectl stand-in: lists the service until the marker file exists, then says Unauthorized."""
    marker = tmp_path / "link-is-cut"
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'if [ -e "$FAKE_LINK_CUT" ]; then printf \'%s\\n\' "$FAKE_ERROR" >&2; exit 1; fi\n'
        f"printf '{SERVICE_TABLE.replace(chr(10), chr(92) + 'n')}'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_LINK_CUT", str(marker))
    monkeypatch.setenv("FAKE_ERROR", UNAUTHORIZED)
    return script, marker


def test_run_drill_calls_every_case_before_the_cut_then_after_it(
    fake_kubectl: tuple[Path, Path], tmp_path: Path
) -> None:
    script, marker = fake_kubectl
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("kind: Config\n")
    cases = [DrillCase("one", "Outpost", "IAM", kubeconfig, UNAUTHORIZED),
             DrillCase("two", "Outpost", "X.509", kubeconfig, WORKS)]  # fmt: skip
    cuts: list[float] = []

    def cut() -> None:
        cuts.append(time.time())
        marker.touch()

    seen: list[KubectlCall] = []
    report = run_drill(cases, cut, log=lambda _: None, on_call=seen.append, kubectl=script, cache_dir=tmp_path)
    assert len(cuts) == 1 and len(seen) == 4
    assert [r.case.key for r in report.rows] == ["one", "two"]
    assert all(r.before.ended <= cuts[0] <= r.after.started for r in report.rows)
    assert [r.after.message for r in report.rows] == [UNAUTHORIZED, UNAUTHORIZED]
    assert [r.as_expected for r in report.rows] == [True, False] and not report.passed


def test_a_missing_kubeconfig_stops_the_drill_before_the_link_is_cut(tmp_path: Path) -> None:
    cuts: list[int] = []
    case = DrillCase("one", "Outpost", "IAM", tmp_path / "nope.yaml", UNAUTHORIZED)
    with pytest.raises(DrillError, match="nope.yaml does not exist"):
        run_drill([case], lambda: cuts.append(1), log=lambda _: None, kubectl=tmp_path)
    assert cuts == []


def test_cut_and_restore_commands_run_and_their_failures_are_named() -> None:
    command_action("true", "cut")()
    with pytest.raises(DrillError, match=r"cut command 'false' exited 1"):
        command_action("false", "cut")()
    with pytest.raises(DrillError, match="restore command is empty"):
        command_action("   ", "restore")
    with pytest.raises(DrillError, match="failed"):
        command_action("/nonexistent/cut-the-link", "cut")()


def drill_args(tmp_path: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {"state_dir": tmp_path, "kubeconfig": [], "cut_command": None,
                                 "restore_command": None, "kubectl": None, "restore_timeout": 1.0,
                                 **overrides}  # fmt: skip
    return argparse.Namespace(**values)


def test_drill_command_without_a_lab_or_kubeconfigs_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert drill.drill_command(drill_args(tmp_path, kubeconfig=["local-iam=/k/iam.yaml"])) == 2
    error = capsys.readouterr().err
    assert "no kubeconfig for extended-iam, local-x509" in error and "--kubeconfig CASE=PATH" in error


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kubeconfig": ["bogus=/k"]}, "expected CASE=PATH"),
        ({"kubeconfig": ["local-iam"]}, "expected CASE=PATH"),
        ({"kubeconfig": [f"{key}=/k/{key}" for key in drill.CASE_KEYS], "cut_command": "true"},
         "--cut-command and --restore-command go together"),
    ],
)
def test_drill_command_rejects_bad_options_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, object], message: str
) -> None:
    assert drill.drill_command(drill_args(tmp_path, **overrides)) == 2
    assert message in capsys.readouterr().err


def test_link_spans_follow_the_recorded_changes() -> None:
    data = {"link": [{"t": 0.0, "state": "up"}, {"t": 10.0, "state": "down"}, {"t": 30.0, "state": "up"}],
            "ended": 35.0}  # fmt: skip
    assert _link_spans(data) == [(0.0, 10.0, "up"), (10.0, 30.0, "down"), (30.0, 35.0, "up")]
    assert _link_spans({"link": [], "ended": 5.0}) == [(0.0, 5.0, "up")]


def test_the_timeline_is_written_as_json_and_png(tmp_path: Path) -> None:
    timeline = Timeline(started=time.time() - 60)
    now = time.time()
    timeline.link_state("up", now - 60)
    timeline.phase("link cut", now - 40)
    timeline.link_state("down", now - 40)
    timeline.workflow_state("Ready", now - 50)
    timeline.certificate("aa", now - 400, now + 40, now - 45)
    timeline.certificate("bb", now - 330, now + 80, now - 20)
    timeline.kubectl_call("case 2", now - 39, now - 33, False, UNAUTHORIZED)
    timeline.kubectl_call("offline", now - 38, now - 37.8, True, "kubernetes ClusterIP")
    timeline.link_state("up", now - 5)
    json_path, png_path = timeline.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert [c["state"] for c in data["link"]] == ["up", "down", "up"]
    assert data["certificates"][0]["not_before"] < 0 < data["certificates"][0]["installed"]
    assert {c["lane"] for c in data["kubectl"]} == {"case 2", "offline"}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


def test_a_failing_cut_command_still_restores_the_link_and_exits_2(
    fake_kubectl: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script, _ = fake_kubectl
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("kind: Config\n")
    restored = tmp_path / "restored"
    args = drill_args(tmp_path, kubeconfig=[f"{key}={kubeconfig}" for key in drill.CASE_KEYS], kubectl=script,
                      cut_command="false", restore_command=f"touch {restored}")  # fmt: skip
    assert drill.drill_command(args) == 2
    assert "cut command 'false' exited 1" in capsys.readouterr().err
    assert restored.exists()


def test_the_drill_against_a_lab_that_is_not_running_is_a_named_error(
    fake_kubectl: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script, _ = fake_kubectl
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("kind: Config\n")
    args = drill_args(tmp_path, kubeconfig=[f"{key}={kubeconfig}" for key in drill.CASE_KEYS], kubectl=script)
    assert drill.drill_command(args) == 2
    assert "cannot set the lab's link down: no running lab" in capsys.readouterr().err


def test_a_kubectl_that_is_not_there_is_a_named_error_before_the_cut(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("kind: Config\n")
    cuts: list[int] = []
    case = DrillCase("one", "Outpost", "IAM", kubeconfig, UNAUTHORIZED)
    with pytest.raises(DrillError, match="no kubectl at"):
        run_drill([case], lambda: cuts.append(1), log=lambda _: None, kubectl=tmp_path / "kubectl")
    assert cuts == []
    with pytest.raises(DrillError, match="cannot run"):
        drill.run_kubectl("one", "after", kubeconfig, kubectl=tmp_path / "kubectl")


@pytest.mark.parametrize(("made_at", "now", "wait"), [
    (100.2, 100.5, 0.5),   # same second: wait for the next one
    (100.9, 100.95, 0.05),
    (100.2, 101.0, 0.0),   # already a new second
    (100.2, 103.7, 0.0),
])  # fmt: skip
def test_the_calls_after_the_cut_wait_for_a_second_no_token_before_it_was_signed_in(
    made_at: float, now: float, wait: float
) -> None:
    assert seconds_until_fresh_tokens(made_at, now) == pytest.approx(wait)
