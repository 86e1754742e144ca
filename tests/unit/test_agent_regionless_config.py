"""Region-less clusters in the configuration: endpoint and CA validated like the secret's, errors name the key;
and their cluster.json record."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from lifeline_agent.config import ConfigError, load_config
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig
from lifeline_agent.store import CachedCluster, ClusterStore, ConfiguredCluster

from lab.pki import ClusterCA

CA = ClusterCA.create("kubernetes")
OTHER_CA = ClusterCA.create("other")


@pytest.fixture
def machine_id(tmp_path: Path) -> Path:
    path = tmp_path / "machine-id"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    return path


def bootstrap_kubeconfig(tmp_path: Path, server: str = "https://10.0.0.20:443", *,
                         tls_server_name: str | None = None, ca_pem: bytes = CA.cert_pem) -> Path:  # fmt: skip
    cert, key = CA.issue_client_cert("bootstrap", ["lifeline:agents"], dt.timedelta(hours=1))
    path = tmp_path / "bootstrap.kubeconfig"
    path.write_bytes(dump_kubeconfig(build_kubeconfig(
        cluster_name="lab-1", server=server, ca_pem=ca_pem, user_name="bootstrap", client_cert_pem=cert,
        client_key_pem=key, tls_server_name=tls_server_name)))  # fmt: skip
    path.chmod(0o600)
    return path


def load(tmp_path: Path, machine_id: Path, table: str, top: str = "") -> object:
    path = tmp_path / "agent.toml"
    path.write_text(f'{top}clusters = ["lab-1"]\n[cluster.lab-1]\n{table}')
    return load_config(path, machine_id_path=machine_id)


def error_of(tmp_path: Path, machine_id: Path, table: str, top: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, machine_id, table, top)
    return str(caught.value)


def test_endpoint_and_ca_file_make_a_region_less_cluster_that_needs_no_region(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CA.cert_pem)
    config = load(tmp_path, machine_id, f'endpoint = "https://10.0.0.10:443/"\ncertificate_authority = "{ca}"\n'
                  f'breakglass_group = "ops:breakglass"\nbootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
    settings = config.cluster("lab-1")
    assert settings.regionless and not config.needs_region and config.region is None
    assert settings.endpoint == "https://10.0.0.10:443"
    assert settings.ca_pem == CA.cert_pem
    assert settings.breakglass_group == "ops:breakglass"
    assert settings.endpoint_ips == ()


def test_inline_ca_as_pem_or_as_a_kubeconfigs_base64(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    for data in (CA.cert_pem.decode(), base64.b64encode(CA.cert_pem).decode()):
        config = load(tmp_path, machine_id, f'endpoint = "https://edge.example:6443"\n'
                      f'certificate_authority_data = """{data}"""\nbootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
        assert config.cluster("lab-1").ca_pem == CA.cert_pem


def test_endpoint_and_ca_from_the_bootstrap_kubeconfig(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path, "https://10.0.0.30:6443")
    settings = load(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n').cluster("lab-1")
    assert (settings.endpoint, settings.ca_pem) == ("https://10.0.0.30:6443", CA.cert_pem)
    # The agent's own kubeconfig form: server an IP, tls-server-name the endpoint's host, which gets pinned.
    bootstrap = bootstrap_kubeconfig(tmp_path, "https://10.0.0.31:443", tls_server_name="api.edge.internal")
    settings = load(tmp_path, machine_id, f'regionless = true\nendpoint_ips = ["10.0.0.32"]\n'
                    f'bootstrap_kubeconfig = "{bootstrap}"\n').cluster("lab-1")  # fmt: skip
    assert settings.endpoint == "https://api.edge.internal:443"
    assert settings.endpoint_ips == ("10.0.0.32", "10.0.0.31")


def test_only_the_endpoint_given_takes_the_ca_from_the_bootstrap_kubeconfig(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path, "https://10.0.0.30:6443", tls_server_name="api.edge.internal")
    settings = load(tmp_path, machine_id, f'endpoint = "https://10.0.0.40"\nbootstrap_kubeconfig = "{bootstrap}"\n'
                    ).cluster("lab-1")  # fmt: skip
    assert (settings.endpoint, settings.ca_pem, settings.endpoint_ips) == ("https://10.0.0.40", CA.cert_pem, ())


def test_a_mixed_configuration_needs_the_region(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    path = tmp_path / "agent.toml"
    path.write_text(f'region = "us-west-2"\nclusters = ["lab-1", "edge-1"]\n[cluster.lab-1]\nregionless = true\n'
                    f'bootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
    config = load_config(path, machine_id_path=machine_id)
    assert config.cluster("lab-1").regionless and not config.cluster("edge-1").regionless
    assert config.needs_region


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("http://10.0.0.10", "is not an https://host[:port] URL"),
    ("https://user:pw@10.0.0.10", "carries user information"),
    ("https://10.0.0.10/?x=1", "has a query or fragment"),
    ("https://10.0.0.10/#top", "has a query or fragment"),
    ("https://10.0.0.10/api", "is not an https://host[:port] URL"),
])  # fmt: skip
def test_a_bad_endpoint_is_refused_with_the_contract_rules(tmp_path, machine_id, endpoint, expected):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    message = error_of(tmp_path, machine_id, f'endpoint = "{endpoint}"\nbootstrap_kubeconfig = "{bootstrap}"\n')
    assert message.startswith(f"{tmp_path / 'agent.toml'}: cluster.lab-1.endpoint: "), message
    assert expected in message


def test_a_ca_that_is_not_exactly_one_ca_certificate_is_refused(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    leaf, _ = CA.issue_client_cert("someone", [], dt.timedelta(hours=1))
    cases = {
        CA.cert_pem + OTHER_CA.cert_pem: ("2 PEM blocks; expected exactly one certificate",),
        leaf: ("has no BasicConstraints; it is not a CA", "is not a CA (BasicConstraints CA:FALSE)"),
        b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n": ("not a PEM certificate",),
    }
    for pem, expected in cases.items():
        ca = tmp_path / "ca.crt"
        ca.write_bytes(pem)
        message = error_of(tmp_path, machine_id, f'endpoint = "https://10.0.0.10"\ncertificate_authority = "{ca}"\n'
                           f'bootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
        assert message.startswith(f"{tmp_path / 'agent.toml'}: cluster.lab-1.certificate_authority: {ca}: "), message
        assert any(text in message for text in expected), message


def test_a_ca_file_others_could_change_is_refused(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CA.cert_pem)
    ca.chmod(0o666)
    message = error_of(tmp_path, machine_id, f'endpoint = "https://10.0.0.10"\ncertificate_authority = "{ca}"\n'
                       f'bootstrap_kubeconfig = "{bootstrap}"\n')  # fmt: skip
    assert "cluster.lab-1.certificate_authority: refused: " in message and "chmod go-w" in message


@pytest.mark.parametrize(("table", "key", "expected"), [
    ('endpoint = "https://10.0.0.10"\n', "bootstrap_kubeconfig", "required for a Region-less cluster"),
    ("regionless = true\n", "bootstrap_kubeconfig", "required for a Region-less cluster"),
    ('regionless = false\nendpoint = "https://10.0.0.10"\nbootstrap_kubeconfig = "{bootstrap}"\n', "regionless",
     "false, but endpoint make the cluster Region-less"),
    ('breakglass_group = "ops"\n', "breakglass_group", "only for a Region-less cluster"),
    ('endpoint = "https://10.0.0.10"\nbreakglass_group = "system:masters"\nbootstrap_kubeconfig = "{bootstrap}"\n',
     "breakglass_group", "is not an allowed group name"),
    ('endpoint = "https://10.0.0.10"\ncertificate_authority = "/ca.crt"\ncertificate_authority_data = "x"\n'
     'bootstrap_kubeconfig = "{bootstrap}"\n', "certificate_authority_data", "not both"),
    ('endpoint = "https://10.0.0.10"\ncertificate_authority_data = "bm90IGEgY2VydA=="\n'
     'bootstrap_kubeconfig = "{bootstrap}"\n', "certificate_authority_data", "not a PEM certificate"),
    ('endpoint = "https://10.0.0.10"\ncertificate_authority_data = "%%%"\nbootstrap_kubeconfig = "{bootstrap}"\n',
     "certificate_authority_data", "neither a PEM certificate nor base64 of one"),
    ('regionless = "yes"\n', "regionless", "expected bool"),
])  # fmt: skip
def test_bad_region_less_settings_name_the_key(tmp_path, machine_id, table, key, expected):
    bootstrap = bootstrap_kubeconfig(tmp_path)
    message = error_of(tmp_path, machine_id, table.format(bootstrap=bootstrap))
    assert message.startswith(f"{tmp_path / 'agent.toml'}: cluster.lab-1.{key}: "), message
    assert expected in message, message


def test_a_bootstrap_kubeconfig_without_a_usable_cluster_entry_is_refused(tmp_path, machine_id):
    bootstrap = bootstrap_kubeconfig(tmp_path, "http://10.0.0.10")
    message = error_of(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n')
    assert f"cluster.lab-1.bootstrap_kubeconfig: {bootstrap}: its cluster's server: " in message, message
    bootstrap.write_text("kind: Config\n")
    message = error_of(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n')
    assert "no usable cluster entry to take the endpoint and CA from" in message, message
    bootstrap = bootstrap_kubeconfig(tmp_path, ca_pem=CA.cert_pem + OTHER_CA.cert_pem)
    message = error_of(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n')
    assert "bootstrap_kubeconfig: its cluster's CA: 2 PEM blocks" in message, message


def test_the_configured_view_round_trips_through_cluster_json_and_is_never_read_as_a_secret(tmp_path):
    store = ClusterStore(tmp_path / "lab-1")
    view = ConfiguredCluster.configured("lab-1", "https://10.0.0.10", CA.cert_pem, None)
    store.save_cache(CachedCluster(secret=view, ips=("10.0.0.10",), fetched_at=12.5))
    text = (tmp_path / "lab-1" / "cluster.json").read_text()
    assert '"configured"' in text and '"secret"' not in text and "outpost" not in text.lower()
    loaded = store.load_cache()
    assert loaded == CachedCluster(secret=view, ips=("10.0.0.10",), fetched_at=12.5)
    assert isinstance(loaded.secret, ConfiguredCluster) and loaded.secret.breakglass_group == "lifeline:breakglass"
    assert loaded.secret.ca_pem == CA.cert_pem
    with pytest.raises(ValueError, match="schemaVersion"):  # not a secret of the contract
        ClusterSecret.from_dict(view.to_dict())


def test_the_link_probe_only_for_region_clusters(tmp_path, machine_id):
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent
    from lifeline_agent.regionless import NoLink

    bootstrap = bootstrap_kubeconfig(tmp_path)
    state = f'state_dir = "{tmp_path / "state"}"\n'
    config = load(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n', state)
    link = make_link_monitor(config, None)
    assert isinstance(link, NoLink) and link.is_up(fresh=True) and link.last is None
    mixed = load(tmp_path, machine_id, f'regionless = true\nbootstrap_kubeconfig = "{bootstrap}"\n[cluster.edge-1]\n',
                 state)  # fmt: skip
    region_link = make_link_monitor(mixed, None)
    assert not isinstance(region_link, NoLink)
    assert isinstance(ClusterAgent(mixed, "lab-1", region_link).link, NoLink)
    assert ClusterAgent(mixed, "edge-1", region_link).link is region_link


def test_a_region_cluster_forgets_a_view_a_region_less_configuration_cached(tmp_path, machine_id):
    from lifeline_agent.link import LinkMonitor
    from lifeline_agent.reconcile import ClusterAgent

    config = load(tmp_path, machine_id, "", f'state_dir = "{tmp_path / "state"}"\n')
    store = ClusterStore(tmp_path / "state" / "lab-1")
    view = ConfiguredCluster.configured("lab-1", "https://10.0.0.10", CA.cert_pem, None)
    store.save_cache(CachedCluster(secret=view, ips=(), fetched_at=1.0))
    ClusterAgent(config, "lab-1", LinkMonitor(lambda: False, 30.0))
    assert store.load_cache() is None  # the Region's secret must be confirmed by EKS, not by an old configuration
