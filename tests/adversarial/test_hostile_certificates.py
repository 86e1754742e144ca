"""Issue 9 items 2, 3, 7: the install invariant against an API server that issues what it should not.

Each renewal here runs the real :class:`ClusterAgent` in-process, over real TLS, against
:class:`HostileApiServer` (its own CA is the cluster CA in the cached secret, the link probe is
down, so the agent renews with its current certificate). The previously installed kubeconfig must
stay byte-identical and no refused certificate may ever be presented to a server. Where the lab can
show the same, the kept kubeconfig is also proven with real kubectl.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, write_config
from tests.adversarial.hostile_server import EXTRA_GROUP, HostileApiServer

CLUSTER = "adversarial-1"
HOST_ID = "host-adv"
DEFAULT_GROUP = "lifeline:breakglass"
NEW_GROUP = "ops:breakglass"
OUTPOST = "arn:aws:outposts:us-west-2:111122223333:outpost/op-0123456789abcdef0"
LIFETIME = 1000.0  # the initial certificate's; its renewal deadline is at 70 % (see Low)
MIN_REMAINING = 300.0


class Low(random.Random):
    """Every random choice at its low end: the renewal deadline is exactly 70 % of the lifetime."""

    def uniform(self, a: float, b: float) -> float:
        return a


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Rig:
    """A cluster served by ``server``: cached secret, a good kubeconfig signed by its CA, the link down.

    The initial certificate's renewal deadline is 2 s away; :meth:`step_at_deadline` moves the
    agent's clock 3 s ahead, so one step renews (the issued certificates keep the server's real time).
    """

    def __init__(self, server: HostileApiServer, directory: Path, *, secret_group: str = DEFAULT_GROUP,
                 cert_group: str = DEFAULT_GROUP, pinned_group: str | None = None) -> None:  # fmt: skip
        from lifeline_agent.config import AgentConfig, ClusterSettings, Timing
        from lifeline_agent.contract import ClusterSecret
        from lifeline_agent.link import LinkMonitor
        from lifeline_agent.store import CachedCluster, ClusterStore

        self.server = server
        timing = Timing(backoff_base=1, backoff_cap=5, csr_timeout=5, api_timeout=3,
                        min_remaining_lifetime=MIN_REMAINING)  # fmt: skip
        self.config = AgentConfig(source=directory / "agent.toml", clusters=(ClusterSettings(name=CLUSTER),),
                                  state_dir=directory / "state", host_id=HOST_ID, certificate_lifetime=3600,
                                  breakglass_group=pinned_group, timing=timing)  # fmt: skip
        self.secret = ClusterSecret(
            cluster_name=CLUSTER, cluster_arn=f"arn:aws:eks:us-west-2:111122223333:cluster/{CLUSTER}",
            endpoint=server.url, certificate_authority_data=b64(server.ca_pem), kubernetes_version="1.31",
            platform_version="eks-local-outposts.1", outpost_arns=(OUTPOST,), breakglass_group=secret_group,
        )  # fmt: skip
        self.store = ClusterStore(self.config.cluster_dir(CLUSTER))
        self.store.save_cache(CachedCluster(secret=self.secret, ips=(), fetched_at=time.time()))
        self.kubeconfig = self.store.kubeconfig_path
        self.previous = self.store.path("kubeconfig.prev")
        self.initial_cert = self.install(not_before=time.time() - 0.7 * LIFETIME + 2, group=cert_group)
        self.good = self.kubeconfig.read_bytes()
        self.shift = 0.0
        self.link = LinkMonitor(lambda: False, interval=3600)
        self.agent = self._agent()

    def _agent(self) -> Any:
        from lifeline_agent.reconcile import ClusterAgent

        return ClusterAgent(self.config, CLUSTER, self.link, clock=lambda: time.time() + self.shift, rng=Low())

    def install(self, *, not_before: float, lifetime: float = LIFETIME, group: str = DEFAULT_GROUP) -> bytes:
        """Install (as the store does) a kubeconfig whose certificate the server's CA signed; its PEM."""
        from lifeline_agent.kubeconfig import build_kubeconfig

        cert, key = self.server.issue_client_cert(self.config.user_name, [group], lifetime, not_before=not_before)
        config = build_kubeconfig(cluster_name=CLUSTER, server=self.server.url, ca_pem=self.server.ca_pem,
                                  user_name=self.config.user_name, client_cert_pem=cert,
                                  client_key_pem=key)  # fmt: skip
        self.store.install(config, key)
        return cert

    def step(self) -> str:
        self.delay = self.agent.step()
        assert 0 < self.delay < 3600, self.delay  # the loop keeps going, no tight spin
        return str(self.agent.state.value)

    def step_at_deadline(self) -> str:
        self.shift = 3.0
        return self.step()

    def installed_certificate(self) -> Any:
        from lifeline_agent.keys import parse_certificate
        from lifeline_agent.kube import from_kubeconfig
        from lifeline_agent.kubeconfig import load_kubeconfig

        _, credential = from_kubeconfig(load_kubeconfig(self.kubeconfig.read_bytes()))
        return parse_certificate(credential.cert_pem)

    def csrs_received(self) -> list[bytes]:
        return [c.value for c in self.server.credentials_seen() if c.kind == "csr"]

    def client_certs_presented(self) -> set[bytes]:
        return {c.value for c in self.server.credentials_seen() if c.kind == "client-certificate"}


def same_certificate(pem_a: bytes, pem_b: bytes) -> bool:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem_a) == x509.load_pem_x509_certificate(pem_b)


@pytest.fixture
def rig(hostile: HostileApiServer, tmp_path: Path) -> Iterator[Rig]:
    the_rig = Rig(hostile, tmp_path)
    assert the_rig.step() == "ready", the_rig.agent.last_error  # the good kubeconfig is verified first
    assert the_rig.csrs_received() == []
    yield the_rig


def test_an_honest_server_renews_and_the_new_kubeconfig_is_installed(rig: Rig) -> None:
    """The control: the same rig does install what an honest server issues."""
    assert rig.step_at_deadline() == "ready", rig.agent.last_error
    assert len(rig.csrs_received()) == 1
    assert rig.kubeconfig.read_bytes() != rig.good and rig.previous.read_bytes() == rig.good
    assert rig.installed_certificate().organizations == (DEFAULT_GROUP,)


@pytest.mark.parametrize(
    "mode, error, words",
    [
        ("expired", "NotValidNow", "expired at"),
        ("not-yet-valid", "NotValidNow", "tolerated clock skew"),
        ("ca-true", "IsCertificateAuthority", "CA:TRUE"),
        ("short-20s", "LifetimeTooShort", f"less than the {MIN_REMAINING:g} s required"),
        ("wrong-key", "WrongKey", "not for the key this agent made"),
        ("extra-group", "NotWanted", EXTRA_GROUP),
        ("garbage", "CertificateError", "not a PEM certificate"),
    ],
)
def test_a_hostile_certificate_is_refused_and_the_kubeconfig_is_kept(rig: Rig, mode: str, error: str,
                                                                     words: str) -> None:  # fmt: skip
    rig.server.mode = mode
    assert rig.step_at_deadline() == "renewing", rig.agent.last_error  # the kept kubeconfig still serves
    assert rig.agent.last_error.startswith(f"{error}: "), rig.agent.last_error
    assert words in rig.agent.last_error
    assert len(rig.csrs_received()) == 1  # it really renewed against the hostile server
    assert rig.kubeconfig.read_bytes() == rig.good
    assert not rig.previous.exists()
    presented = rig.client_certs_presented()  # the refused certificate was never used, not even to verify it
    assert len(presented) == 1 and same_certificate(presented.pop(), rig.initial_cert)
    assert rig.server.handshake_failures == []  # nor offered in a TLS handshake the server refused

    rig.server.mode = "honest"  # the next attempt against an honest server installs
    assert rig.step() == "ready", rig.agent.last_error
    assert rig.kubeconfig.read_bytes() != rig.good and rig.previous.read_bytes() == rig.good


def test_expired_kubeconfig_falls_back_to_a_valid_previous_one_offline(hostile: HostileApiServer,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    rig = Rig(hostile, tmp_path)
    valid = rig.good
    rig.install(not_before=time.time() - 7200, lifetime=3600)  # the current one expired an hour ago
    assert rig.previous.read_bytes() == valid
    assert rig.step() == "ready", rig.agent.last_error
    assert rig.kubeconfig.read_bytes() == valid
    assert rig.csrs_received() == []  # restored, not renewed: the link is down and nothing was due


@pytest.mark.parametrize("prev_not_before, prev_lifetime", [(-7200, 3600), (3600, 3600)],
                         ids=["prev-expired", "prev-not-yet-valid"])  # fmt: skip
def test_no_fallback_to_a_previous_kubeconfig_that_is_not_valid_either(hostile: HostileApiServer, tmp_path: Path,
                                                                       prev_not_before: float,
                                                                       prev_lifetime: float) -> None:  # fmt: skip
    rig = Rig(hostile, tmp_path)
    rig.install(not_before=time.time() + prev_not_before, lifetime=prev_lifetime)
    rig.install(not_before=time.time() - 7200, lifetime=3600)
    expired = rig.kubeconfig.read_bytes()
    assert rig.step() == "needs-link", rig.agent.last_error
    assert "expired" in rig.agent.last_error
    assert rig.kubeconfig.read_bytes() == expired
    assert hostile.credentials_seen() == []


def test_ca_data_with_two_certificates_or_a_non_ca_is_a_contract_error(hostile: HostileApiServer) -> None:
    from lifeline_agent.contract import ClusterSecret, ContractError

    other = HostileApiServer()
    client_cert, _ = hostile.issue_client_cert("someone", ["g"])
    base = dict(cluster_name=CLUSTER, cluster_arn="arn:aws:eks:us-west-2:111122223333:cluster/x",
                endpoint=hostile.url, kubernetes_version="1.31", platform_version="p", outpost_arns=(OUTPOST,))
    with pytest.raises(ContractError, match="exactly one certificate"):
        ClusterSecret(certificate_authority_data=b64(hostile.ca_pem + other.ca_pem), **base)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="not a CA"):
        ClusterSecret(certificate_authority_data=b64(client_cert), **base)  # type: ignore[arg-type]
    ClusterSecret(certificate_authority_data=b64(hostile.ca_pem), **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("extra", ["bundle", "non-ca"])
def test_a_cached_ca_bundle_or_non_ca_is_refused_and_nothing_is_sent(hostile: HostileApiServer, tmp_path: Path,
                                                                     extra: str) -> None:  # fmt: skip
    rig = Rig(hostile, tmp_path)
    attacker = HostileApiServer()
    cache = rig.store.path("cluster.json")
    document = json.loads(cache.read_bytes())
    ca = hostile.ca_pem + attacker.ca_pem if extra == "bundle" else hostile.issue_client_cert("x", ["g"])[0]
    document["secret"]["certificateAuthorityData"] = b64(ca)
    document["secret"]["caSha256"] = hashlib.sha256(ca).hexdigest()
    cache.write_text(json.dumps(document))
    assert rig.step() == "failed", rig.agent.last_error
    assert "StoreError" in rig.agent.last_error and "certificateAuthorityData" in rig.agent.last_error
    assert rig.kubeconfig.read_bytes() == rig.good
    assert hostile.requests == []


def test_a_renamed_group_is_group_changed_and_the_old_kubeconfig_is_kept(hostile: HostileApiServer,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    hostile.bound_groups = {DEFAULT_GROUP}  # RBAC still binds only the old group
    rig = Rig(hostile, tmp_path, secret_group=NEW_GROUP, cert_group=DEFAULT_GROUP)
    assert rig.step() == "group-changed", rig.agent.last_error
    message = rig.agent.last_error
    assert f"from {DEFAULT_GROUP!r} to {NEW_GROUP!r}" in message and "kubeconfig for" in message
    assert "deleted" not in message  # not the revoked hint
    assert rig.kubeconfig.read_bytes() == rig.good and not rig.previous.exists()
    assert len(rig.csrs_received()) == 1  # it did ask for the new group

    hostile.bound_groups = {DEFAULT_GROUP, NEW_GROUP}  # the workflow bound the new group
    assert rig.step() == "ready", rig.agent.last_error
    assert rig.installed_certificate().organizations == (NEW_GROUP,)
    assert rig.previous.read_bytes() == rig.good


def test_a_pinned_group_ignores_the_secrets_group(hostile: HostileApiServer, tmp_path: Path) -> None:
    rig = Rig(hostile, tmp_path, secret_group=NEW_GROUP, cert_group=DEFAULT_GROUP, pinned_group=DEFAULT_GROUP)
    assert rig.step() == "ready", rig.agent.last_error
    assert rig.csrs_received() == [] and rig.kubeconfig.read_bytes() == rig.good


# --- the same against the lab, with real kubectl ---------------------------------------------------------


class LabAgent:
    """An in-process agent of a lab cluster with a verified kubeconfig."""

    def __init__(self, lab: Any, directory: Path, cluster: str, **settings: Any) -> None:
        from lifeline_agent.config import load_config
        from lifeline_agent.daemon import make_link_monitor
        from lifeline_agent.reconcile import ClusterAgent
        from lifeline_agent.store import ClusterStore

        self.lab, self.cluster = lab, cluster
        self.config = load_config(write_config(lab, directory, [cluster], probe_interval="1s", **settings))
        self.agent = ClusterAgent(self.config, cluster, make_link_monitor(self.config, None))
        self.store = ClusterStore(self.config.cluster_dir(cluster))
        self.kubeconfig = self.store.kubeconfig_path
        assert self.step() == "ready", self.agent.last_error
        self.good = self.kubeconfig.read_bytes()

    def step(self) -> str:
        self.agent.step()
        return str(self.agent.state.value)


def works(kubectl: Any, kubeconfig: Path) -> bool:
    return kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30).rc == 0


@pytest.fixture
def lab_cluster(lab: Any) -> str:
    from lab.agentkit import seeded_cluster

    return seeded_cluster(lab, "adv")


def test_lab_expired_kubeconfig_falls_back_to_the_previous_one_with_the_link_down(lab, lab_cluster, tmp_path,
                                                                                  link_restored, kubectl):
    import datetime as dt

    from lifeline_agent.kubeconfig import build_kubeconfig, load_kubeconfig

    with agent_credentials(lab):
        rig = LabAgent(lab, tmp_path, lab_cluster)
        cluster = load_kubeconfig(rig.good)["clusters"][0]["cluster"]
        expired_from = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        cert, key = lab.control_plane(lab_cluster).ca.issue_client_cert(
            rig.config.user_name, [DEFAULT_GROUP], dt.timedelta(hours=1), not_before=expired_from)
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        rig.store.install(build_kubeconfig(
            cluster_name=lab_cluster, server=cluster["server"], ca_pem=ca_pem, user_name=rig.config.user_name,
            client_cert_pem=cert, client_key_pem=key, tls_server_name=cluster.get("tls-server-name")), key)  # fmt: skip
        assert not works(kubectl, rig.kubeconfig)  # the cluster refuses the expired certificate
        link_restored.cut()
        rig.agent.link.is_up(fresh=True)
        assert rig.step() == "ready", rig.agent.last_error
        assert rig.kubeconfig.read_bytes() == rig.good
        assert works(kubectl, rig.kubeconfig)


def test_lab_renamed_group_is_group_changed_until_the_workflow_binds_it(lab, lab_cluster, tmp_path, kubectl):
    from lifeline_agent.contract import ClusterSecret, secret_name

    with agent_credentials(lab):
        rig = LabAgent(lab, tmp_path, lab_cluster, timing={"secret_refresh_interval": 1})
    secrets = lab.client("secretsmanager")
    secret = ClusterSecret.from_json(secrets.get_secret_value(SecretId=secret_name(lab_cluster))["SecretString"])
    renamed = ClusterSecret.from_dict(secret.to_dict() | {"breakglassGroup": NEW_GROUP})
    secrets.put_secret_value(SecretId=secret_name(lab_cluster), SecretString=renamed.to_json())

    time.sleep(1.1)  # the secret is due for a refresh
    with agent_credentials(lab):
        assert rig.step() == "group-changed", rig.agent.last_error
        assert NEW_GROUP in rig.agent.last_error and "deleted" not in rig.agent.last_error
        assert rig.kubeconfig.read_bytes() == rig.good
        assert works(kubectl, rig.kubeconfig)  # the kept kubeconfig still works for the old group

        lab.seed_cluster_for_agent(lab_cluster, breakglass_group=NEW_GROUP)  # what the workflow does
        assert rig.step() == "ready", rig.agent.last_error
    assert rig.kubeconfig.read_bytes() != rig.good
    assert works(kubectl, rig.kubeconfig)
    from lifeline_agent.keys import parse_certificate
    from lifeline_agent.kube import from_kubeconfig
    from lifeline_agent.kubeconfig import load_kubeconfig

    _, credential = from_kubeconfig(load_kubeconfig(rig.kubeconfig.read_bytes()))
    assert parse_certificate(credential.cert_pem).organizations == (NEW_GROUP,)
