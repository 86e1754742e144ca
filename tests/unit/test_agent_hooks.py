"""The post-install hook (lifeline_agent.hooks): real child processes, their arguments, environment, time bound
and outcome; and its configuration, refused with named errors when hostile."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifeline_agent.config import ClusterSettings, ConfigError, load_config
from lifeline_agent.hooks import KILL_GRACE, InstallHook, _StderrTail, _wait, run_hook, wait_for_hooks
from lifeline_agent.keys import generate_key, key_pem
from lifeline_agent.observability import Observer, configure_logging
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

NOT_AFTER = 1_800_000_000.0  # 2027-01-15T08:00:00Z
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "agent" / "examples" / "copy-kubeconfig-to-jump-host"


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o700)
    return path


def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A hook that appends its arguments, its LIFELINE_* environment and the names of all its environment
    variables, one JSON line per run."""
    out = tmp_path / "runs.jsonl"
    hook = script(tmp_path, "record.sh", f"""exec {sys.executable} -c '
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.startswith("LIFELINE_")}}
run = {{"argv": sys.argv[1:], "env": env, "names": sorted(os.environ), "cwd": os.getcwd()}}
open("{out}", "a").write(json.dumps(run) + "\\n")' "$@"
""")
    return hook, out


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def leftovers() -> Iterator[list[Path]]:
    """Files the tests' hooks write the pids of their setsid children into: those are killed after the test."""
    files: list[Path] = []
    yield files
    for pid in (int(line) for path in files if path.exists() for line in path.read_text().split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def hook_counts(observer: Observer, cluster: str) -> dict[str, float]:
    families = text_string_to_metric_families(generate_latest(observer.registry).decode())
    return {s.labels["result"]: s.value for f in families if f.name == "lifeline_install_hooks"
            for s in f.samples if s.name.endswith("_total") and s.labels["cluster"] == cluster}  # fmt: skip


def test_the_hook_gets_cluster_path_and_expiry_as_arguments_and_environment(tmp_path: Path) -> None:
    hook, out = recorder(tmp_path)
    kubeconfig = tmp_path / "state" / "edge-1" / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    outcome = run_hook((str(hook), "--to", "jump-1"), cluster="edge-1", kubeconfig=kubeconfig, not_after=NOT_AFTER,
                       kind="new-certificate", timeout=10)  # fmt: skip
    assert outcome.result == "success", outcome.detail
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["argv"] == ["--to", "jump-1", "edge-1", str(kubeconfig), "2027-01-15T08:00:00Z"]
    assert run["env"] == {"LIFELINE_CLUSTER": "edge-1", "LIFELINE_KUBECONFIG": str(kubeconfig),
                          "LIFELINE_NOT_AFTER": "2027-01-15T08:00:00Z", "LIFELINE_NOT_AFTER_EPOCH": "1800000000",
                          "LIFELINE_INSTALL": "new-certificate"}  # fmt: skip
    assert run["cwd"] == str(kubeconfig.parent)


def test_installed_returns_before_the_hook_ends_and_runs_each_install_once_in_order(tmp_path: Path) -> None:
    hook, out = recorder(tmp_path)
    gate = tmp_path / "go"  # each run waits for it: installed() returning first shows it did not wait
    gated = script(tmp_path, "gated.sh", f'i=0\nwhile [ ! -e {gate} ]; do\n  i=$((i+1)); [ $i -lt 400 ] || exit 9\n'
                                         f'  sleep 0.05\ndone\nexec "{hook}" "$@"\n')  # fmt: skip
    observer = Observer()
    runner = InstallHook(ClusterSettings("edge-1", post_install_hook=(str(gated),), post_install_hook_timeout=60),
                         observer)  # fmt: skip
    for expiry in (NOT_AFTER, NOT_AFTER + 3600):
        runner.installed(tmp_path / "kubeconfig", expiry)
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER + 3600, "new-server")
    assert not out.exists() and not wait_for_hooks(0)  # renewal never waits for the hook
    gate.touch()
    assert wait_for_hooks(60)
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["argv"][-1], r["env"]["LIFELINE_INSTALL"]) for r in runs] == [
        ("2027-01-15T08:00:00Z", "new-certificate"), ("2027-01-15T09:00:00Z", "new-certificate"),
        ("2027-01-15T09:00:00Z", "new-server")]  # fmt: skip
    assert hook_counts(observer, "edge-1") == {"success": 3.0}
    deadline = time.monotonic() + 5
    while runner._worker is not None:  # the worker ends once the queue is empty
        assert time.monotonic() < deadline
        time.sleep(0.01)
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER)  # and a later install starts a new one
    assert wait_for_hooks(20) and len(out.read_text().splitlines()) == 4


def test_a_failing_hook_is_logged_with_its_redacted_stderr_and_counted(tmp_path: Path) -> None:
    key = key_pem(generate_key("ecdsa-p256")).decode()  # made now: no key is committed
    key_body = key.splitlines()[1]
    failing = script(tmp_path, "fail.sh", f"echo 'scp: jump-1: connection refused' >&2\necho '{key}' >&2\nexit 3\n")
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        observer = Observer()
        InstallHook(ClusterSettings("edge-1", post_install_hook=(str(failing),)), observer).installed(
            tmp_path / "kubeconfig", NOT_AFTER)
        assert wait_for_hooks(20)
    finally:
        logging.getLogger().handlers.clear()
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines() if "post-install hook" in line]
    assert record["level"] == "WARNING" and record["result"] == "failure" and record["cluster"] == "edge-1"
    assert "exit status 3" in record["message"] and "connection refused" in record["message"]
    assert key_body not in stream.getvalue()
    assert hook_counts(observer, "edge-1") == {"failure": 1.0}


@pytest.mark.parametrize("prelude", ["", "trap '' TERM\n"], ids=["terminated", "ignores-sigterm"])
def test_a_hanging_hook_is_killed_with_its_children_at_the_timeout(tmp_path: Path, prelude: str) -> None:
    marker = tmp_path / "child.pid"
    hanging = script(tmp_path, "hang.sh", f"{prelude}sleep 300 &\necho $! > {marker}\nwait\n")
    started = time.monotonic()
    outcome = run_hook((str(hanging),), cluster="edge-1", kubeconfig=tmp_path / "kubeconfig", not_after=NOT_AFTER,
                       kind="new-certificate", timeout=2)  # fmt: skip
    assert outcome.result == "timeout" and time.monotonic() - started < 2 + 2 * KILL_GRACE + 5  # its bound, slack
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while alive(child):
        assert time.monotonic() < deadline, "the hook's child outlived the kill"
        time.sleep(0.05)


def test_the_hook_gets_a_minimal_environment_without_the_agents_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("LC_")]:
        monkeypatch.delenv(name)
    agent_environment = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
                         "AWS_SESSION_TOKEN": "token", "AWS_REGION": "us-west-2", "DATABASE_PASSWORD": "hunter2",
                         "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": str(tmp_path),
                         "PATH": "/usr/bin:/bin"}  # fmt: skip
    for name, value in agent_environment.items():
        monkeypatch.setenv(name, value)
    hook, out = recorder(tmp_path)
    outcome = run_hook((str(hook),), cluster="edge-1", kubeconfig=tmp_path / "kubeconfig", not_after=NOT_AFTER,
                       kind="new-server", timeout=10)  # fmt: skip
    assert outcome.result == "success", outcome.detail
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    lifeline = {"LIFELINE_CLUSTER", "LIFELINE_KUBECONFIG", "LIFELINE_NOT_AFTER", "LIFELINE_NOT_AFTER_EPOCH",
                "LIFELINE_INSTALL"}  # fmt: skip
    assert set(run["names"]) - {"PWD"} == {"PATH", "LANG", "LC_TIME", "TZ", "HOME"} | lifeline  # PWD: the shell's
    assert run["env"]["LIFELINE_INSTALL"] == "new-server"


@pytest.mark.parametrize(("code", "result"), [(0, "success"), (4, "failure")])
def test_a_hook_that_leaves_a_child_holding_its_stderr_is_done_when_it_exits(
    tmp_path: Path, leftovers: list[Path], code: int, result: str
) -> None:
    children = tmp_path / "children"
    leftovers.append(children)
    hook = script(tmp_path, "daemonize.sh", f"setsid sleep 300 &\necho $! >> {children}\n"
                                            f"echo 'started the sync daemon' >&2\nexit {code}\n")  # fmt: skip
    outcome = run_hook((str(hook),), cluster="edge-1", kubeconfig=tmp_path / "kubeconfig", not_after=NOT_AFTER,
                       kind="new-certificate", timeout=60)  # fmt: skip
    (child,) = [int(pid) for pid in children.read_text().split()]
    assert alive(child)  # the outcome came while the child still held the hook's stderr
    assert outcome.result == result, outcome.detail
    if code:
        assert outcome.detail == "exit status 4; stderr: started the sync daemon"


def test_what_the_hook_wrote_just_before_it_exited_is_kept() -> None:
    """The race the last reads are for: the hook had exited before any of its stderr was read."""
    process = subprocess.Popen(["/bin/sh", "-c", "echo 'scp: lost connection' >&2; exit 1"], stderr=subprocess.PIPE)
    process.wait()
    assert process.stderr is not None
    with process.stderr:
        stderr = _StderrTail(process.stderr.fileno())
        assert _wait(process, stderr, 5) == 1
    assert stderr.data == b"scp: lost connection\n"


def test_a_hook_runs_while_the_agent_has_more_than_1024_descriptors_open(tmp_path: Path) -> None:
    """Its stderr pipe then gets a descriptor past select()'s FD_SETSIZE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        failing = script(tmp_path, "fail.sh", "sleep 0.3\necho 'jump-1: no route' >&2\nexit 2\n")
        outcome = run_hook((str(failing),), cluster="edge-1", kubeconfig=tmp_path / "kubeconfig",
                           not_after=NOT_AFTER, kind="new-certificate", timeout=10)  # fmt: skip
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert outcome.detail == "exit status 2; stderr: jump-1: no route"


def test_a_hook_that_leaves_a_child_and_hangs_is_killed_at_its_timeout_and_the_next_hook_runs(
    tmp_path: Path, leftovers: list[Path]
) -> None:
    hook, out = recorder(tmp_path)
    children = tmp_path / "children"
    leftovers.append(children)
    hangs_first = script(tmp_path, "hang.sh", f'if [ "$LIFELINE_INSTALL" = new-certificate ]; then\n'
                                              f'  setsid sleep 300 &\n  echo $! >> {children}\n  sleep 300\nfi\n'
                                              f'exec "{hook}" "$@"\n')  # fmt: skip
    observer = Observer()
    runner = InstallHook(ClusterSettings("edge-1", post_install_hook=(str(hangs_first),),
                                         post_install_hook_timeout=1), observer)  # fmt: skip
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER)
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER, "new-server")
    assert wait_for_hooks(1 + 2 * KILL_GRACE + 10)  # its bound, and slack for a busy machine
    assert hook_counts(observer, "edge-1") == {"timeout": 1.0, "success": 1.0}
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["env"]["LIFELINE_INSTALL"] == "new-server"
    (child,) = [int(pid) for pid in children.read_text().split()]
    assert alive(child)  # out of the hook's session: not killed, and not waited for either


def test_an_install_whose_hook_thread_cannot_start_is_counted_and_the_next_install_runs_its_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook, out = recorder(tmp_path)
    observer = Observer()
    runner = InstallHook(ClusterSettings("edge-1", post_install_hook=(str(hook),)), observer)

    def refuse(_thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:  # what TasksMax does to the agent
        patch.setattr(threading.Thread, "start", refuse)
        runner.installed(tmp_path / "kubeconfig", NOT_AFTER)  # renewal gets no exception
    assert wait_for_hooks(0) and hook_counts(observer, "edge-1") == {"failure": 1.0}
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER + 3600)
    assert wait_for_hooks(20) and hook_counts(observer, "edge-1") == {"failure": 1.0, "success": 1.0}
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["argv"][-1] == "2027-01-15T09:00:00Z"


def test_the_documented_example_hook_copies_the_kubeconfig_privately(tmp_path: Path) -> None:
    """agent/examples/copy-kubeconfig-to-jump-host with the real scp. A local directory stands in for the jump
    host: given a destination without a host part, scp copies locally (its ssh options then go unused)."""
    docs = (REPO / "docs" / "agent-install.md").read_text()
    assert f"```sh\n{EXAMPLE.read_text()}```" in docs  # the script the docs show is this one
    jump_host = tmp_path / "jump-host" / "srv" / "break-glass"
    jump_host.mkdir(parents=True)
    kubeconfig = tmp_path / "state" / "edge-1" / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_bytes(b"apiVersion: v1\nkind: Config\n")
    kubeconfig.chmod(0o600)
    outcome = run_hook((str(EXAMPLE), f"{jump_host}/"), cluster="edge-1", kubeconfig=kubeconfig,
                       not_after=NOT_AFTER, kind="new-certificate", timeout=30)  # fmt: skip
    assert outcome.result == "success", outcome.detail
    copy = jump_host / "edge-1.kubeconfig"
    assert copy.read_bytes() == kubeconfig.read_bytes() and copy.stat().st_mode & 0o777 == 0o600


def test_a_hook_that_cannot_start_is_a_failure(tmp_path: Path) -> None:
    gone = tmp_path / "gone.sh"
    outcome = run_hook((str(gone),), cluster="edge-1", kubeconfig=tmp_path / "kubeconfig", not_after=NOT_AFTER,
                       kind="new-certificate", timeout=5)  # fmt: skip
    assert outcome.result == "failure" and "cannot start" in outcome.detail


def test_no_hook_configured_runs_nothing(tmp_path: Path) -> None:
    runner = InstallHook(ClusterSettings("edge-1"))
    runner.installed(tmp_path / "kubeconfig", NOT_AFTER)
    assert runner._worker is None and wait_for_hooks(0)


# --- configuration ----------------------------------------------------------------------------------------


def load(tmp_path: Path, table: str) -> object:
    path = tmp_path / "agent.toml"
    path.write_text(f'clusters = ["edge-1"]\nhost_id = "h1"\n[cluster.edge-1]\n{table}\n')
    return load_config(path)


def test_a_hook_and_its_timeout_are_read_per_cluster(tmp_path: Path) -> None:
    hook = script(tmp_path, "copy.sh", "exit 0\n")
    config = load(tmp_path, f'post_install_hook = ["{hook}", "--to", "jump-1"]\npost_install_hook_timeout = "45s"')
    settings = config.cluster("edge-1")  # type: ignore[attr-defined]
    assert settings.post_install_hook == (str(hook), "--to", "jump-1")
    assert settings.post_install_hook_timeout == 45.0
    assert load(tmp_path, "").cluster("edge-1").post_install_hook == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("table", "message"), [
    ('post_install_hook = ["copy.sh"]', "must be an absolute path"),
    ('post_install_hook = ["/nonexistent/copy.sh"]', "is not an executable file"),
    ('post_install_hook = "HOOK"', "expected list"),
    ('post_install_hook = ["HOOK", 3]', "post_install_hook[1]"),
    ('post_install_hook = ["HOOK", "a\\u0000b"]', "post_install_hook[1]"),
    ("post_install_hook = [" + ", ".join(['"HOOK"'] * 40) + "]", "at most 32 items"),
    ('post_install_hook = ["HOOK"]\npost_install_hook_timeout = "11m"', "post_install_hook_timeout: at most 600"),
    ('post_install_hook = ["HOOK"]\npost_install_hook_timeout = "0s"', "post_install_hook_timeout"),
    ('post_install_hook = ["NOEXEC"]', "is not an executable file"),
    ('post_install_hook = ["WRITABLE"]', "refused"),
])  # fmt: skip
def test_hostile_hook_settings_are_refused_with_the_key_named(tmp_path: Path, table: str, message: str) -> None:
    hook = script(tmp_path, "copy.sh", "exit 0\n")
    noexec = tmp_path / "noexec.sh"
    noexec.write_text("exit 0\n")
    writable = script(tmp_path, "writable.sh", "exit 0\n")
    writable.chmod(0o777)
    table = table.replace("NOEXEC", str(noexec)).replace("WRITABLE", str(writable)).replace("HOOK", str(hook))
    with pytest.raises(ConfigError) as error:
        load(tmp_path, table)
    assert "cluster.edge-1.post_install_hook" in str(error.value) and message in str(error.value)
