"""The agent against the lab: real lifeline-agent processes, real TLS, real kubectl."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import agentkit
from lab.agentkit import AGENT, read_status, write_config
from tests.conftest import both_backends, lab_of_backend

wait_for = functools.partial(agentkit.wait_for, interval=0.2)


def agent_env(lab: Any) -> dict[str, str]:
    """The agent's environment here: only the endpoint its configuration names, no SDK default endpoint."""
    return agentkit.agent_env(lab, sdk_endpoint=False)


def run_agent(lab: Any, config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return agentkit.run_once(lab, config, *args, timeout=timeout, env=agent_env(lab))


def whoami(kubectl: Any, kubeconfig: Path) -> dict[str, Any]:
    """The user the API server sees, asked with kubectl through ``kubeconfig`` (a SelfSubjectReview)."""
    review = kubeconfig.parent.parent / "ssr.json"
    review.write_text('{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}')
    rc, out, err = kubectl(kubeconfig, "create", "--validate=false", "-f", str(review), "-o", "json")
    assert rc == 0, err
    return dict(json.loads(out)["status"]["userInfo"])


lab = pytest.fixture(name="lab")(lab_of_backend)


@pytest.fixture
def seeded_cluster(lab: Any, unique_name: str) -> str:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    return unique_name


@both_backends
def test_once_from_nothing_gives_a_working_offline_kubeconfig(lab, seeded_cluster, tmp_path, kubectl):
    config = write_config(lab, tmp_path, [seeded_cluster], host_id="edge-host-1")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err
    assert "kubernetes" in out
    user = whoami(kubectl, kubeconfig)
    assert user["username"] == "lifeline:edge-host-1"
    assert "lifeline:breakglass" in user["groups"]


# --- helpers for the longer scenarios -----------------------------------------------------------------


class RunningAgent(agentkit.AgentProcess):
    """``lifeline-agent run`` as a subprocess with only its configured endpoint; JSON logs in a file."""

    def __init__(self, lab: Any, config: Path, log_path: Path) -> None:
        super().__init__(lab, config, log_path, env=agent_env(lab))


@pytest.fixture
def running_agents() -> Iterator[list[RunningAgent]]:
    agents: list[RunningAgent] = []
    yield agents
    for agent in agents:
        agent.stop()


def key_material_forms(key_pem: bytes) -> list[str]:
    """Secret parts of the key as they could appear in text: PEM lines, base64 of the PEM, the scalar in hex."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, None)
    body = [line for line in key_pem.decode().splitlines() if line and not line.startswith("-----")]
    kubeconfig_form = base64.b64encode(key_pem).decode()[80:140]  # past the constant PEM/PKCS#8 header
    return [*body, kubeconfig_form, format(key.private_numbers().private_value, "x")]


# --- scenarios ------------------------------------------------------------------------------------------


def test_the_key_never_leaves_the_host(lab, seeded_cluster, tmp_path):
    config = write_config(lab, tmp_path, [seeded_cluster], log_level="DEBUG")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stderr
    key_pem = (tmp_path / "state" / seeded_cluster / "key.pem").read_bytes()
    assert b"PRIVATE KEY" in key_pem
    control_plane = lab.control_plane(seeded_cluster)
    secrets_client = lab.client("secretsmanager")
    secret_values = [secrets_client.get_secret_value(SecretId=s["ARN"]).get("SecretString", "")
                     for s in secrets_client.list_secrets()["SecretList"]]
    places = {
        "agent logs": result.stdout + result.stderr,
        "secrets": json.dumps(secret_values),
        "API objects": repr(control_plane.store._objects),
        "API watch events": repr(list(control_plane.store._events)),
    }
    assert '"level": "DEBUG"' in places["agent logs"] or '"level": "INFO"' in places["agent logs"]
    assert "X-Amz-Signature" not in places["agent logs"] and "k8s-aws-v1." not in places["agent logs"]
    for form in key_material_forms(key_pem):
        for place, text in places.items():
            assert form not in text, f"private key material found in {place}"


@both_backends
def test_renews_offline_with_its_own_certificate_and_kubectl_never_fails(
        lab, seeded_cluster, tmp_path, kubectl, link_restored, running_agents):
    lab.control_plane(seeded_cluster).set_signing_duration(20)  # renewed 14-18 s apart
    config = write_config(lab, tmp_path, [seeded_cluster], probe_interval="1s")
    state = tmp_path / "state"
    agent = RunningAgent(lab, config, tmp_path / "agent.log")
    running_agents.append(agent)
    kubeconfig = state / seeded_cluster / "kubeconfig"
    wait_for(lambda: read_status(state, seeded_cluster).get("state") == "ready", 60, "the first kubeconfig")

    link_restored.cut()
    wait_for(lambda: read_status(state, seeded_cluster).get("link") == "disconnected" or
             any(r.get("message") == "service link disconnected" for r in agent.records()), 30, "link down noticed")
    installed_before = sum(r.get("message") == "installed a new kubeconfig" for r in agent.records())
    failures, calls = [], 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
        calls += 1
        if rc != 0:
            failures.append(err)
        renewals = sum(r.get("message") == "installed a new kubeconfig" for r in agent.records()) - installed_before
        if renewals >= 3 and calls >= 10:
            break
        time.sleep(0.3)
    assert failures == [], failures[:3]
    assert renewals >= 3, f"only {renewals} renewals while the link was down"
    installed = [r for r in agent.records() if r.get("message") == "installed a new kubeconfig"][installed_before:]
    assert all(r["server"].startswith("https://127.0.0.1:") for r in installed), "renewed on the local control plane"
    assert not any(r.get("level") == "ERROR" for r in agent.records() if "needs-link" in str(r.get("message")))
    assert agent.stop() == 0


def install_expired_certificate(lab: Any, cluster: str, kubeconfig: Path, user: str) -> bytes:
    """What a host powered off for longer than the certificate's life finds: an expired kubeconfig."""
    from lifeline_agent.kubeconfig import atomic_write, build_kubeconfig, dump_kubeconfig, load_kubeconfig

    current = load_kubeconfig(kubeconfig.read_bytes())["clusters"][0]["cluster"]
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    cert, key = lab.control_plane(cluster).ca.issue_client_cert(user, ["lifeline:breakglass"], dt.timedelta(hours=1),
                                                                not_before=long_ago)
    expired = build_kubeconfig(cluster_name=cluster, server=current["server"],
                               ca_pem=base64.b64decode(current["certificate-authority-data"]), user_name=user,
                               client_cert_pem=cert, client_key_pem=key, tls_server_name=current["tls-server-name"])
    data = dump_kubeconfig(expired)
    atomic_write(kubeconfig, data)
    return data


@both_backends
def test_expired_certificate_with_the_link_down_needs_the_link_then_recovers(
        lab, seeded_cluster, tmp_path, kubectl, link_restored, running_agents):
    config = write_config(lab, tmp_path, [seeded_cluster], host_id="powered-off", probe_interval="1s")
    state = tmp_path / "state"
    kubeconfig = state / seeded_cluster / "kubeconfig"
    assert run_agent(lab, config, "once").returncode == 0
    expired = install_expired_certificate(lab, seeded_cluster, kubeconfig, "lifeline:powered-off")

    link_restored.cut()
    once = run_agent(lab, config, "once")
    assert once.returncode == 3, once.stdout + once.stderr
    assert "needs-link" in once.stdout
    agent = RunningAgent(lab, config, tmp_path / "agent.log")
    running_agents.append(agent)
    wait_for(lambda: any(r["level"] == "ERROR" and r["message"].startswith("needs-link") for r in agent.records()),
             30, "the daemon to report needs-link")

    def status_says_needs_link() -> bool:  # between two retries; during one, the state is "renewing"
        status = run_agent(lab, config, "status", "--json")
        return status.returncode == 3 and json.loads(status.stdout)[0]["state"] == "needs-link"

    wait_for(status_says_needs_link, 30, "status --json to say needs-link (exit code 3)")
    assert kubeconfig.read_bytes() == expired  # the last kubeconfig is kept

    link_restored.restore()
    wait_for(lambda: read_status(state, seeded_cluster).get("state") == "ready", 60, "recovery after the link")
    assert agent.process.poll() is None  # recovered without a restart
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err
    assert kubeconfig.with_name("kubeconfig.prev").read_bytes() == expired


@both_backends
def test_deleted_breakglass_binding_means_revoked_without_a_tight_retry(lab, seeded_cluster, tmp_path, monkeypatch):
    from kubernetes import client
    from lifeline_agent.observability import ClusterState

    config_path = write_config(lab, tmp_path, [seeded_cluster], timing={"backoff_cap": 120})
    assert run_agent(lab, config_path, "once").returncode == 0
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    before = kubeconfig.read_bytes()
    with lab.kubernetes_api_client(seeded_cluster) as api:
        client.RbacAuthorizationV1Api(api).delete_cluster_role_binding("lifeline-breakglass")

    once = run_agent(lab, config_path, "once")
    assert once.returncode == 4, once.stdout + once.stderr
    assert "revoked" in once.stdout
    verify = run_agent(lab, config_path, "verify", seeded_cluster)
    assert verify.returncode == 4
    assert "REVOKED" in verify.stdout and "lifeline-breakglass" in verify.stdout
    assert kubeconfig.read_bytes() == before

    agent = in_process_agent(lab, config_path, seeded_cluster, monkeypatch)
    delays = [agent.step() for _ in range(2)]
    assert agent.state is ClusterState.REVOKED
    assert all(delay >= 120 for delay in delays), delays  # waits the backoff cap, not a tight loop
    lab.seed_cluster_for_agent(seeded_cluster)  # the Region workflow puts the binding back
    agent.step()
    assert agent.state is ClusterState.READY


@both_backends
def test_a_ca_change_is_followed_only_when_eks_confirms_it_and_a_wrong_ca_keeps_the_last_good_kubeconfig(
        lab, seeded_cluster, tmp_path, kubectl):
    from lifeline_agent.contract import ClusterSecret, secret_name

    from lab.pki import ClusterCA

    config = write_config(lab, tmp_path, [seeded_cluster])
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    assert run_agent(lab, config, "once").returncode == 0
    good = kubeconfig.read_bytes()
    secrets_client = lab.client("secretsmanager")
    original = ClusterSecret.from_json(secrets_client.get_secret_value(SecretId=secret_name(seeded_cluster))
                                       ["SecretString"])

    def publish_ca(ca_pem: bytes) -> None:
        document = original.to_dict() | {"certificateAuthorityData": base64.b64encode(ca_pem).decode(),
                                         "caSha256": hashlib.sha256(ca_pem).hexdigest()}  # fmt: skip
        secrets_client.put_secret_value(SecretId=secret_name(seeded_cluster),
                                        SecretString=json.dumps(document))  # fmt: skip

    def still_good() -> None:
        assert kubeconfig.read_bytes() == good
        rc, _, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
        assert rc == 0, err

    impostor = ClusterCA.create("impostor").cert_pem
    # A bundle (one more CA next to the cluster's) would make kubectl trust both: refused by the contract.
    publish_ca(impostor + original.ca_pem)
    result = run_agent(lab, config, "once")
    assert "keeping the cached cluster secret" in result.stderr, result.stdout + result.stderr
    assert "exactly one" in result.stderr
    still_good()

    # A CA that only the secret names (EKS reports the cluster's own): untrusted, nothing replaced.
    publish_ca(impostor)
    result = run_agent(lab, config, "once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "untrusted" in result.stdout
    still_good()

    # EKS itself reports the new CA, but the API server's certificate does not chain to it: the renewal
    # fails on TLS and the working kubeconfig stays.
    lab.region.eks_cluster(seeded_cluster).certificate_authority = {"data": base64.b64encode(impostor).decode()}
    result = run_agent(lab, config, "once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CA changed" in result.stderr
    assert "TlsError" in result.stdout
    still_good()


def unshare_without_hosts(tmp_path: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a mount namespace where /etc/hosts is empty: ``localhost`` does not resolve."""
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    script = 'mount --bind "$0" /etc/hosts && if getent hosts localhost; then exit 97; fi; exec "$@"'
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, str(empty), *command], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_kubeconfig_works_when_the_endpoint_name_does_not_resolve(lab, seeded_cluster, tmp_path):
    from tests.conftest import KUBECTL

    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    cluster = kubeconfig_cluster(kubeconfig)
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert cluster["tls-server-name"] == "localhost"

    probe = unshare_without_hosts(tmp_path, ["true"], agent_env(lab))
    if probe.returncode == 97:
        pytest.skip("localhost still resolves without /etc/hosts on this machine")
    if probe.returncode != 0:
        pytest.skip(f"unshare --mount is not permitted here: {probe.stderr.strip()}")
    kubectl_run = unshare_without_hosts(tmp_path, [str(KUBECTL), f"--kubeconfig={kubeconfig}", "get", "svc",
                                                   "kubernetes", "-n", "default"], agent_env(lab))
    assert kubectl_run.returncode == 0, kubectl_run.stderr
    assert "kubernetes" in kubectl_run.stdout
    # The agent itself, with the link up but DNS gone, keeps the cached address and stays ready.
    once = unshare_without_hosts(tmp_path, [str(AGENT), "once", "--config", str(config)], agent_env(lab))
    assert once.returncode == 0, once.stdout + once.stderr
    verify = unshare_without_hosts(tmp_path, [str(AGENT), "verify", "--config", str(config)], agent_env(lab))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert kubeconfig_cluster(kubeconfig)["server"] == cluster["server"]


def kubeconfig_cluster(path: Path) -> dict[str, Any]:
    from lifeline_agent.kubeconfig import load_kubeconfig

    return dict(load_kubeconfig(path.read_bytes())["clusters"][0]["cluster"])


def test_fails_over_to_another_cached_address_when_the_first_dies(lab, seeded_cluster, tmp_path, kubectl):
    control_plane = lab.control_plane(seeded_cluster)
    control_plane.start_listener("127.0.0.2")  # a second control-plane instance
    try:
        config = write_config(lab, tmp_path, [seeded_cluster],
                              cluster={seeded_cluster: {"endpoint_ips": ["127.0.0.2"]}})
        assert run_agent(lab, config, "once").returncode == 0
        kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
        assert kubeconfig_cluster(kubeconfig)["server"].startswith("https://127.0.0.2:")
        cached = json.loads((tmp_path / "state" / seeded_cluster / "cluster.json").read_text())
        assert cached["ips"][:2] == ["127.0.0.2", "127.0.0.1"]
    finally:
        control_plane.stop_listener("127.0.0.2")

    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "127.0.0.2 stopped answering" in result.stderr
    assert kubeconfig_cluster(kubeconfig)["server"].startswith("https://127.0.0.1:")
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err


def test_three_clusters_in_one_agent_each_with_its_own_kubeconfig_and_state(lab, tmp_path, kubectl, unique_name):
    names = [f"{unique_name[:40]}-{i}" for i in range(3)]
    for name in names:
        lab.create_local_cluster(name)
        lab.seed_cluster_for_agent(name)
    config = write_config(lab, tmp_path, names)
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    servers = set()
    for name in names:
        directory = tmp_path / "state" / name
        assert {"kubeconfig", "key.pem", "cluster.json", "status.json"} <= {p.name for p in directory.iterdir()}
        servers.add(kubeconfig_cluster(directory / "kubeconfig")["server"])
        rc, _, err = kubectl(directory / "kubeconfig", "get", "svc", "kubernetes", "-n", "default")
        assert rc == 0, err
    assert len(servers) == 3
    keys = {(tmp_path / "state" / name / "key.pem").read_bytes() for name in names}
    assert len(keys) == 3

    table = run_agent(lab, config, "status")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["CLUSTER", "STATE", "EXPIRES"]
    assert "KUBECONFIG" in lines[0]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(names)
    assert all(line.split()[1] == "ready" for line in lines[1:])
    documents = json.loads(run_agent(lab, config, "status", "--json").stdout)
    assert {d["cluster"]: d["state"] for d in documents} == dict.fromkeys(names, "ready")
    verify = run_agent(lab, config, "verify")
    assert verify.returncode == 0, verify.stdout
    assert verify.stdout.count(": OK: ") == 3


def test_get_token_prints_an_exec_credential(lab):
    from lifeline_agent.eks_token import decode_token

    env = agent_env(lab) | {"AWS_ENDPOINT_URL": lab.outpost_region_url}
    result = subprocess.run([str(AGENT), "get-token", "--cluster", "edge-1", "--region", "us-west-2"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    credential = json.loads(result.stdout)
    assert credential["kind"] == "ExecCredential"
    url = decode_token(credential["status"]["token"])
    assert url.startswith(lab.outpost_region_url)
    assert "x-k8s-aws-id" in url.lower()


def test_bootstrap_kubeconfig_is_used_instead_of_an_iam_token(lab, seeded_cluster, tmp_path):
    from lifeline_agent.kubeconfig import atomic_write, build_kubeconfig, dump_kubeconfig

    control_plane = lab.control_plane(seeded_cluster)
    cert, key = control_plane.ca.issue_client_cert("bootstrap:rack-7", ["lifeline:agents"])
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    atomic_write(bootstrap, dump_kubeconfig(build_kubeconfig(
        cluster_name=seeded_cluster, server=control_plane.endpoint, ca_pem=control_plane.ca_pem,
        user_name="bootstrap", client_cert_pem=cert, client_key_pem=key)))
    config = write_config(lab, tmp_path, [seeded_cluster],
                          cluster={seeded_cluster: {"bootstrap_kubeconfig": str(bootstrap)}})
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    history = control_plane.store.events("certificatesigningrequests", 0, lambda: False, poll=0)
    made = [e.object["spec"]["username"] for e in itertools.takewhile(bool, history) if e.type == "ADDED"]
    assert made == ["bootstrap:rack-7"]
    assert control_plane.store.list("certificatesigningrequests")[0] == []  # deleted as the new certificate


def test_run_stops_cleanly_on_sigterm(lab, seeded_cluster, tmp_path, running_agents):
    config = write_config(lab, tmp_path, [seeded_cluster])
    agent = RunningAgent(lab, config, tmp_path / "agent.log")
    running_agents.append(agent)
    wait_for(lambda: read_status(tmp_path / "state", seeded_cluster).get("state") == "ready", 60, "ready")
    assert agent.stop() == 0
    messages = [r["message"] for r in agent.records()]
    assert "stopping on SIGTERM" in messages and messages[-1] == "stopped"


def test_endpoint_change_in_the_secret_gives_a_new_kubeconfig(lab, seeded_cluster, tmp_path, kubectl):
    from lifeline_agent.contract import ClusterSecret, secret_name

    config = write_config(lab, tmp_path, [seeded_cluster])
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    assert run_agent(lab, config, "once").returncode == 0
    assert kubeconfig_cluster(kubeconfig)["tls-server-name"] == "localhost"
    secrets_client = lab.client("secretsmanager")
    secret = ClusterSecret.from_json(secrets_client.get_secret_value(SecretId=secret_name(seeded_cluster))
                                     ["SecretString"])
    port = lab.control_plane(seeded_cluster).port
    lab.region.eks_cluster(seeded_cluster).endpoint = f"https://127.0.0.1:{port}"  # a genuine move: EKS says so
    moved = ClusterSecret.from_dict(secret.to_dict() | {"endpoint": f"https://127.0.0.1:{port}"})
    secrets_client.put_secret_value(SecretId=secret_name(seeded_cluster), SecretString=moved.to_json())

    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "endpoint changed" in result.stderr
    assert kubeconfig_cluster(kubeconfig)["tls-server-name"] == "127.0.0.1"
    rc, _, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err


def in_process_agent(lab: Any, config_path: Path, cluster: str, monkeypatch: Any) -> Any:
    """The same ClusterAgent the CLI runs, driven step by step by the test."""
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    for name, value in agent_env(lab).items():
        monkeypatch.setenv(name, value)
    config = load_config(config_path)
    return ClusterAgent(config, cluster, make_link_monitor(config, None))


def test_failures_back_off_exponentially_and_recover(lab, seeded_cluster, tmp_path, monkeypatch):
    from lifeline_agent.observability import ClusterState

    config = write_config(lab, tmp_path, [seeded_cluster], timing={"backoff_base": 2, "backoff_cap": 8})
    agent = in_process_agent(lab, config, seeded_cluster, monkeypatch)
    lab.control_plane(seeded_cluster).fail_next("certificatesigningrequests", 500, count=4)
    delays = [agent.step() for _ in range(4)]
    assert agent.state is ClusterState.FAILED
    assert "ServerError" in agent.last_error and "injected fault" in agent.last_error
    for failures, delay in enumerate(delays, start=1):
        assert 1 <= delay <= min(8, 2 * 2 ** (failures - 1)), delays
    agent.step()  # the fifth attempt gets through
    assert agent.state is ClusterState.READY and agent.failures == 0


def test_new_host_id_or_key_type_reissues_at_once(lab, seeded_cluster, tmp_path, kubectl):
    from lifeline_agent.keys import parse_certificate

    def certificate() -> Any:
        from lifeline_agent.kube import from_kubeconfig
        from lifeline_agent.kubeconfig import load_kubeconfig

        _, credential = from_kubeconfig(load_kubeconfig(kubeconfig.read_bytes()))
        return parse_certificate(credential.cert_pem)

    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    assert run_agent(lab, write_config(lab, tmp_path, [seeded_cluster], host_id="old-name"), "once").returncode == 0
    assert (certificate().common_name, certificate().key_type) == ("lifeline:old-name", "ecdsa-p256")

    config = write_config(lab, tmp_path, [seeded_cluster], host_id="new-name", key_type="rsa-2048")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "subject CN 'lifeline:old-name' is not 'lifeline:new-name'" in result.stderr
    assert (certificate().common_name, certificate().key_type) == ("lifeline:new-name", "rsa-2048")
    assert whoami(kubectl, kubeconfig)["username"] == "lifeline:new-name"


def test_verify_falls_back_to_selfsubjectaccessreview_where_selfsubjectreview_is_not_served(
        lab, seeded_cluster, tmp_path):
    from kubernetes import client

    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    control_plane = lab.control_plane(seeded_cluster)
    control_plane.fail_next("selfsubjectreviews", 404, count=2)  # neither v1 nor v1beta1 served
    verify = run_agent(lab, config, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not control_plane.app._faults  # both 404s were consumed: the fallback ran

    with lab.kubernetes_api_client(seeded_cluster) as api:
        client.RbacAuthorizationV1Api(api).delete_cluster_role_binding("lifeline-breakglass")
    control_plane.fail_next("selfsubjectreviews", 404, count=2)
    verify = run_agent(lab, config, "verify")
    assert verify.returncode == 4, verify.stdout + verify.stderr
    assert "SelfSubjectAccessReview" in verify.stdout
    lab.seed_cluster_for_agent(seeded_cluster)


def test_the_break_glass_group_comes_from_the_secret(lab, unique_name, tmp_path, kubectl):
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name, breakglass_group="ops:breakglass")
    config = write_config(lab, tmp_path, [unique_name], host_id="Rack_9.a")  # CSR names must be lower-case DNS
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    user = whoami(kubectl, tmp_path / "state" / unique_name / "kubeconfig")
    assert user["username"] == "lifeline:Rack_9.a"
    assert "ops:breakglass" in user["groups"] and "lifeline:breakglass" not in user["groups"]


def test_all_clusters_means_every_lifeline_secret(lab, seeded_cluster, tmp_path, monkeypatch, link_restored):
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import cluster_names, make_link_monitor

    path = write_config(lab, tmp_path, [])
    path.write_text(path.read_text().replace("clusters = []", 'clusters = "all"'))
    for name, value in agent_env(lab).items():
        monkeypatch.setenv(name, value)
    config = load_config(path)
    assert config.all_clusters
    assert seeded_cluster in cluster_names(config, make_link_monitor(config, None))
    (tmp_path / "state" / "cached-only").mkdir(parents=True)
    (tmp_path / "state" / "cached-only" / "cluster.json").write_text("{}")
    link_restored.cut()  # disconnected: the clusters cached on this host
    assert cluster_names(config, make_link_monitor(config, None)) == ["cached-only"]


def test_a_corrupt_kubeconfig_is_replaced_while_connected(lab, seeded_cluster, tmp_path, kubectl):
    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    kubeconfig.write_bytes(kubeconfig.read_bytes()[:100])  # torn by something that is not the agent
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed kubeconfig unusable" in result.stderr
    rc, _, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err


def test_a_corrupt_cache_is_fetched_again_while_connected_and_named_while_not(
        lab, seeded_cluster, tmp_path, link_restored):
    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    cache = tmp_path / "state" / seeded_cluster / "cluster.json"
    good = cache.read_bytes()
    cache.write_bytes(b"{garbage")
    link_restored.cut()
    result = run_agent(lab, config, "once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "StoreError" in result.stdout and "cluster.json" in result.stdout and "Traceback" not in result.stderr
    link_restored.restore()
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(cache.read_bytes())["secret"] == json.loads(good)["secret"]


def test_a_corrupt_kubeconfig_falls_back_to_the_previous_generation_while_disconnected(
        lab, seeded_cluster, tmp_path, kubectl, link_restored):
    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    kubeconfig.with_name("kubeconfig.prev").write_bytes(kubeconfig.read_bytes())
    kubeconfig.write_bytes(b"\x00" * 64)
    link_restored.cut()
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restored kubeconfig.prev" in result.stderr
    rc, _, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err


def test_a_certificate_the_server_stops_accepting_is_replaced_through_the_region(
        lab, seeded_cluster, tmp_path, link_restored):
    config = write_config(lab, tmp_path, [seeded_cluster])
    assert run_agent(lab, config, "once").returncode == 0
    kubeconfig = tmp_path / "state" / seeded_cluster / "kubeconfig"
    first = kubeconfig.read_bytes()
    control_plane = lab.control_plane(seeded_cluster)

    link_restored.cut()
    control_plane.fail_next("selfsubjectreviews", 401, count=1)
    result = run_agent(lab, config, "once")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no longer accepts the certificate" in result.stdout
    assert kubeconfig.read_bytes() == first

    link_restored.restore()
    control_plane.fail_next("selfsubjectreviews", 401, count=1)
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert kubeconfig.read_bytes() != first
