"""The agent configuration: defaults, and errors that name the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lifeline_agent.config import ConfigError, load_config


@pytest.fixture
def machine_id(tmp_path: Path) -> Path:
    path = tmp_path / "machine-id"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_defaults_and_host_id_from_machine_id(tmp_path, machine_id):
    config = load_config(write(tmp_path, 'clusters = ["edge-1"]\n'), machine_id_path=machine_id)
    assert [c.name for c in config.clusters] == ["edge-1"]
    assert config.state_dir == Path("/var/lib/lifeline")
    assert config.certificate_lifetime == 7 * 86400
    assert config.key_type == "ecdsa-p256"
    assert config.host_id == "0123456789abcdef0123456789abcdef"
    assert config.user_name == "lifeline:0123456789abcdef0123456789abcdef"
    assert config.breakglass_group is None
    assert config.group_for("ops:from-secret") == "ops:from-secret"
    assert config.group_for(None) == "lifeline:breakglass"
    assert config.metrics_address == "127.0.0.1:9877"
    assert config.operators_group is None
    assert config.cluster_dir("edge-1") == Path("/var/lib/lifeline/edge-1")


def test_full_configuration(tmp_path, machine_id):
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    bootstrap.write_text("kind: Config\n")
    bootstrap.chmod(0o600)  # it holds a credential: readable by others it is refused
    text = f"""
region = "us-west-2"
clusters = "all"
state_dir = "{tmp_path / 'state'}"
certificate_lifetime = "12h"
key_type = "rsa-4096"
host_id = "rack-7.host-3"
breakglass_group = "ops:breakglass"
probe_interval = "10s"
metrics_address = "[::1]:9100"
aws_endpoint_url = "https://vpce-1.sts.us-west-2.vpce.amazonaws.com"

[timing]
backoff_base = 2
backoff_cap = "1m"

[cluster.edge-2]
endpoint_ips = ["10.0.0.10", "fd00::10"]
bootstrap_kubeconfig = "{bootstrap}"
"""
    config = load_config(write(tmp_path, text), machine_id_path=machine_id)
    assert config.all_clusters
    assert config.certificate_lifetime == 12 * 3600
    assert config.key_type == "rsa-4096"
    assert config.probe_interval == 10
    assert config.group_for("ops:from-secret") == "ops:breakglass"
    assert config.timing.backoff_cap == 60
    edge2 = config.cluster("edge-2")
    assert edge2.endpoint_ips == ("10.0.0.10", "fd00::10")
    assert edge2.bootstrap_kubeconfig == bootstrap
    assert config.cluster("discovered").endpoint_ips == ()


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('clusters = ["a"]\nfavourite_colour = "blue"\n', "favourite_colour", "unknown key"),
        ('clusters = ["a"]\n[timing]\nbackof_base = 3\n', "timing.backof_base", "unknown key"),
        ('clusters = ["a"]\n[cluster.a]\nendpoint_ip = ["10.0.0.1"]\n', "cluster.a.endpoint_ip", "unknown key"),
        ('clusters = "a"\n', "clusters", "list of cluster names"),
        ("clusters = [1]\n", "clusters[0]", "not an EKS cluster name"),
        ('clusters = ["a"]\nkey_type = "dsa"\n', "key_type", "ecdsa-p256"),
        ('clusters = ["a"]\nkey_type = 256\n', "key_type", "expected str"),
        ('clusters = ["a"]\ncertificate_lifetime = "5m"\n', "certificate_lifetime", "too short"),
        ('clusters = ["a"]\ncertificate_lifetime = "a week"\n', "certificate_lifetime", "not a duration"),
        ('clusters = ["a"]\nprobe_interval = true\n', "probe_interval", "expected int"),
        ('clusters = ["a"]\nprobe_interval = nan\n', "probe_interval", "not a finite duration"),
        ('clusters = ["a"]\n[timing]\napi_timeout = 1e400\n', "timing.api_timeout", "not a finite duration"),
        ('clusters = ["a"]\n[timing]\ncsr_timeout = -1\n', "timing.csr_timeout", "too short"),
        ('clusters = ["a"]\nstate_dir = "relative/dir"\n', "state_dir", "absolute path"),
        ('clusters = ["a"]\nmetrics_address = "0.0.0.0:9877"\n', "metrics_address", "loopback"),
        ('clusters = ["a"]\nmetrics_address = "localhost"\n', "metrics_address", "IP:PORT"),
        ('clusters = ["a"]\nbreakglass_group = "system:masters"\n', "breakglass_group", "not system"),
        ('clusters = ["a"]\nhost_id = "bad host"\n', "host_id", "letters"),
        ('clusters = ["a"]\nregion = "mars"\n', "region", "Region"),
        ('clusters = ["a"]\noperators_group = "no-such-group-xyz"\n', "operators_group", "does not exist"),
        ('clusters = ["a"]\n[cluster.a]\nendpoint_ips = ["10.0.0.300"]\n', "cluster.a.endpoint_ips[0]", "IP"),
        ('clusters = ["a"]\n[cluster.a]\nbootstrap_kubeconfig = "/nonexistent/k"\n', "cluster.a.bootstrap_kubeconfig",
         "readable file"),
        ('clusters = ["a"]\n[timing]\nbackoff_base = 10\nbackoff_cap = 5\n', "timing.backoff_cap", "smaller"),
        ("region = \"us-west-2\"\n", "clusters", "no cluster configured"),
        ("clusters = [" + ", ".join(f'"c{i}"' for i in range(101)) + "]\n", "clusters", "at most 100"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, machine_id, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, machine_id_path=machine_id)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert key in message
    assert words in message


def test_unreadable_and_malformed_files(tmp_path, machine_id):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=f"{missing}: cannot read"):
        load_config(missing, machine_id_path=machine_id)
    broken = write(tmp_path, "clusters = [\n")
    with pytest.raises(ConfigError, match=f"{broken}: not valid TOML"):
        load_config(broken, machine_id_path=machine_id)
    if os.geteuid() != 0:  # root reads anything
        unreadable = write(tmp_path, 'clusters = ["a"]\n')
        unreadable.chmod(0)
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(unreadable, machine_id_path=machine_id)


def test_missing_machine_id_is_named(tmp_path):
    with pytest.raises(ConfigError, match="host_id: not set and .*machine-id is unreadable"):
        load_config(write(tmp_path, 'clusters = ["a"]\n'), machine_id_path=tmp_path / "machine-id")
