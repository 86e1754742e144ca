"""Hostile configuration and command lines (issue 9, cases 8 and 9): non-finite durations, files and
directories others could change, directories created with the umask's mode, and command-line
arguments that are no cluster names — each a named error, never a traceback, nothing read or written
where it should not be. The command-line cases run the real `lifeline-agent` console script."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lifeline_agent.config import ConfigError, check_state_dir, load_config
from lifeline_agent.store import ClusterStore

AGENT = Path(sys.executable).with_name("lifeline-agent")
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_config(directory: Path, text: str = "", *, state_dir: Path | None = None) -> Path:
    """An agent.toml whose Region is a closed loopback port: the link is down, nothing leaves the host."""
    config = private_dir(directory) / "agent.toml"
    fast_probe = "" if "probe_timeout" in text else 'probe_timeout = "1s"\n'
    config.write_text(
        f'region = "us-west-2"\nclusters = ["edge-1"]\nhost_id = "hostile-config"\n'
        f'state_dir = "{state_dir or directory / "state"}"\naws_endpoint_url = "http://127.0.0.1:9"\n'
        f"{fast_probe}{text}"
    )
    return config


def no_aws_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS credential or setting, and no instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_REGION="us-west-2", **extra)  # fmt: skip
    return env


def agent(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([str(AGENT), *args], capture_output=True, text=True, timeout=timeout, check=False,
                               env=no_aws_env() if env is None else env)  # fmt: skip
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


# --- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("probe_interval = nan", "probe_interval"),
        ("probe_interval = inf", "probe_interval"),
        ("probe_timeout = -inf", "probe_timeout"),
        ("probe_timeout = -1", "probe_timeout"),
        ("certificate_lifetime = 1e400", "certificate_lifetime"),
        ('certificate_lifetime = "400d"', "certificate_lifetime"),
        ("[timing]\napi_timeout = nan", "timing.api_timeout"),
        ("[timing]\ncsr_timeout = 1e400", "timing.csr_timeout"),
        ("[timing]\nbackoff_base = -1", "timing.backoff_base"),
        ("[timing]\nbackoff_cap = inf", "timing.backoff_cap"),
        ("[timing]\nverify_interval = 0", "timing.verify_interval"),
        ("[timing]\nsecret_refresh_interval = nan", "timing.secret_refresh_interval"),
        ("[timing]\nclock_skew = inf", "timing.clock_skew"),
        ("[timing]\nmin_remaining_lifetime = nan", "timing.min_remaining_lifetime"),
    ],
)
def test_a_duration_that_is_not_finite_and_positive_is_refused_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    config = write_config(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{config}: {key}: "), caught.value


def test_probe_interval_nan_stops_the_agent_at_once_instead_of_spinning(tmp_path: Path) -> None:
    config = write_config(tmp_path, "probe_interval = nan\n")
    started = time.monotonic()
    completed = agent("run", "--config", str(config), timeout=30)
    assert completed.returncode == 2, completed.stderr
    assert time.monotonic() - started < 20
    assert f"{config}: probe_interval: " in completed.stderr
    assert not (tmp_path / "state").exists()


# --- files and directories others could change -------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o664, 0o620])
def test_a_config_file_writable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    config = write_config(tmp_path)
    config.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert message.startswith(f"{config}: refused: ") and f"`chmod go-w {config}`" in message
    completed = agent("status", "--config", str(config))
    assert completed.returncode == 2 and f"chmod go-w {config}" in completed.stderr


def test_a_config_file_in_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc")
    config.parent.chmod(0o777)
    with pytest.raises(ConfigError, match=f"{config.parent} is writable by its group or others"):
        load_config(config)
    config.parent.chmod(0o1777)  # sticky, like /tmp: others cannot replace the file, only add their own
    assert load_config(config).host_id == "hostile-config"
    link = private_dir(tmp_path / "links") / "agent.toml"
    link.symlink_to(config)
    config.parent.chmod(0o775)
    with pytest.raises(ConfigError, match=f"{config.parent} is writable"):  # found through the symlink too
        load_config(link)


@as_root
def test_a_config_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    os.chown(config, NOBODY, -1)
    with pytest.raises(ConfigError, match=f"{config} is owned by uid {NOBODY}, neither root nor this user"):
        load_config(config)
    os.chown(config, 0, -1)
    assert load_config(config).clusters[0].name == "edge-1"


def test_a_bootstrap_kubeconfig_readable_by_others_is_refused(tmp_path: Path) -> None:
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    bootstrap.write_text("kind: Config\n")
    config = write_config(tmp_path, f'[cluster.edge-1]\nbootstrap_kubeconfig = "{bootstrap}"\n')
    for mode in (0o644, 0o640, 0o604, 0o660):
        bootstrap.chmod(mode)
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        message = str(caught.value)
        assert message.startswith(f"{config}: cluster.edge-1.bootstrap_kubeconfig: refused: "), message
        assert f"`chmod 600 {bootstrap}`" in message
    bootstrap.chmod(0o600)
    assert load_config(config).cluster("edge-1").bootstrap_kubeconfig == bootstrap


@pytest.mark.parametrize("writable", ["state", "parent"])
def test_a_state_directory_writable_by_others_is_refused_by_every_command(tmp_path: Path, writable: str) -> None:
    state = private_dir(tmp_path / "lib" / "state")
    config = write_config(tmp_path / "etc", state_dir=state)
    bad = state if writable == "state" else state.parent
    bad.chmod(0o757)
    for command in ("once", "status", "verify", "run"):
        completed = agent(command, "--config", str(config))
        assert completed.returncode == 2, (command, completed.stdout, completed.stderr)
        assert f"{config}: state_dir: refused: {bad} is writable" in completed.stderr, completed.stderr
        assert f"`chmod go-w {bad}`" in completed.stderr
    assert list(state.iterdir()) == []  # nothing was written into it


@as_root
def test_a_state_directory_owned_by_another_user_is_refused_to_the_agent_not_to_an_operator(tmp_path: Path) -> None:
    state = private_dir(tmp_path / "state")
    config = write_config(tmp_path / "etc", state_dir=state)
    os.chown(state, NOBODY, -1)
    with pytest.raises(ConfigError, match=f"state_dir: refused: {state} is owned by uid {NOBODY}"):
        check_state_dir(load_config(config), writer=True)
    check_state_dir(load_config(config), writer=False)  # `status` by an operator: the agent's user owns it
    completed = agent("once", "--config", str(config))
    assert completed.returncode == 2 and f"{state} is owned by uid {NOBODY}" in completed.stderr
    assert agent("status", "--config", str(config)).returncode == 1  # pending: read, not refused


# --- directories the agent creates ------------------------------------------------------------------------


def test_once_creates_every_missing_directory_0700_whatever_the_umask(tmp_path: Path) -> None:
    root = private_dir(tmp_path / "root")
    state = root / "var" / "lib" / "lifeline"
    config = write_config(tmp_path / "etc", state_dir=state)
    completed = subprocess.run(["sh", "-c", 'umask 000 && exec "$0" once --config "$1"', str(AGENT), str(config)],
                               capture_output=True, text=True, timeout=60, env=no_aws_env(AWS_ACCESS_KEY_ID="x",
                               AWS_SECRET_ACCESS_KEY="y"), check=False)  # fmt: skip
    assert completed.returncode == 3, completed.stdout + completed.stderr  # needs-link: the "Region" is closed
    created = [root / "var", root / "var" / "lib", state, state / "edge-1"]
    assert {str(d): oct(stat.S_IMODE(d.stat().st_mode)) for d in created} == {str(d): "0o700" for d in created}
    assert (state / "edge-1" / "status.json").is_file()


def test_a_store_with_the_operators_group_creates_its_directories_0750_to_the_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getegid())
    fresh = private_dir(tmp_path / "root") / "a" / "b" / "edge-1"
    previous = os.umask(0o077)  # stricter than wanted: the modes are set, not left to the umask
    try:
        ClusterStore(fresh, operators_group=group.gr_name).ensure()
    finally:
        os.umask(previous)
    for directory in (fresh.parent.parent, fresh.parent, fresh):
        info = directory.stat()
        assert (oct(stat.S_IMODE(info.st_mode)), info.st_gid) == ("0o750", group.gr_gid), directory


# --- command-line arguments -------------------------------------------------------------------------------


def test_get_token_without_aws_credentials_is_one_named_line(tmp_path: Path) -> None:
    completed = agent("get-token", "--cluster", "edge-1")
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [completed.stderr.strip()]
    assert completed.stderr.startswith("lifeline-agent: get-token: no usable AWS credentials")


def test_get_token_with_partial_credentials_is_named(tmp_path: Path) -> None:
    completed = agent("get-token", "--cluster", "edge-1", env=no_aws_env(AWS_ACCESS_KEY_ID="AKIDEXAMPLE"))
    assert completed.returncode == 1 and "get-token: no usable AWS credentials" in completed.stderr


@pytest.mark.parametrize("name", ["../../etc", "edge-1/../../x", "..", "", "a" * 101, "edge 1", "_x"])
def test_cluster_arguments_that_are_no_cluster_names_are_refused(tmp_path: Path, name: str) -> None:
    config = write_config(tmp_path / "etc")
    token = agent("get-token", "--cluster", name, env=no_aws_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y"))
    assert token.returncode == 2 and token.stdout == "", token.stderr
    assert "is not a valid EKS cluster name" in token.stderr
    verify = agent("verify", name, "--config", str(config))
    assert verify.returncode == 2 and verify.stdout == "", verify.stderr
    assert "is not a valid EKS cluster name" in verify.stderr


def test_verify_does_not_read_outside_the_state_directory(tmp_path: Path) -> None:
    state = private_dir(tmp_path / "lib" / "state")
    outside = private_dir(tmp_path / "lib" / "outside")
    (outside / "kubeconfig").write_text("not: [a kubeconfig\n")  # read, it would fail with a parse error
    (outside / "cluster.json").write_text("{}")
    config = write_config(tmp_path / "etc", state_dir=state)
    traversal = agent("verify", "../outside", "--config", str(config))
    assert traversal.returncode == 2 and "not a valid EKS cluster name" in traversal.stderr
    (state / "edge-9").symlink_to(outside)  # a cluster directory that leads elsewhere
    through_link = agent("verify", "edge-9", "--config", str(config))
    assert through_link.returncode == 2, through_link.stdout + through_link.stderr
    assert f"{state / 'edge-9'} leads outside {state}" in through_link.stderr
    assert through_link.stdout == ""


def test_verify_of_an_unknown_cluster_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc")
    completed = agent("verify", "edge-2", "--config", str(config))
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.strip() == (
        f"lifeline-agent: unknown cluster 'edge-2': not in {config} nor in {tmp_path / 'etc' / 'state'} (known: edge-1)"
    )
