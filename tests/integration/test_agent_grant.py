"""``lifeline-agent grant``: personal kubeconfigs issued with the agent's certificate, with the link down;
real lifeline-agent processes, real TLS, real kubectl, on both control-plane backends."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lifeline_agent import kube, rbac
from lifeline_agent.kubeconfig import load_kubeconfig

from lab import agentkit
from lab.agentkit import write_config
from tests.conftest import both_backends, lab_of_backend
from tests.integration.test_agent_lab import key_material_forms

lab = pytest.fixture(name="lab")(lab_of_backend)


def run_agent(lab: Any, config: Path, *args: str) -> Any:
    return agentkit.run_once(lab, config, *args, timeout=120, env=agentkit.agent_env(lab, sdk_endpoint=False))


@pytest.fixture
def seeded_cluster(lab: Any, unique_name: str) -> str:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    return unique_name


@pytest.fixture
def agent_config(lab: Any, seeded_cluster: str, tmp_path: Path) -> Path:
    """An agent with a verified kubeconfig for ``seeded_cluster`` (DEBUG logs: the most it ever says)."""
    config = write_config(lab, tmp_path, [seeded_cluster], host_id="edge-host-1", log_level="DEBUG")
    result = run_agent(lab, config, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    return config


def whoami(kubectl: Any, kubeconfig: Path) -> dict[str, Any]:
    rc, out, err = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    assert rc == 0, err
    return dict(json.loads(out)["status"]["userInfo"])


def stored_objects(lab: Any, cluster: str, kubectl: Any) -> str:
    """What the API server stores that a grant could have touched, as the lab admin reads it."""
    admin = lab.admin_kubeconfig(cluster)
    rc, out, err = kubectl(admin, "get", "certificatesigningrequests,clusterrolebindings,configmaps,secrets", "-A",
                           "-o", "json")  # fmt: skip
    assert rc == 0, err
    return out


@both_backends
def test_with_the_link_down_a_grant_works_as_that_person_until_the_operators_binding_is_deleted(
        lab, seeded_cluster, agent_config, tmp_path, kubectl, link_restored):  # fmt: skip
    link_restored.cut()
    output = tmp_path / "alice.kubeconfig"
    result = run_agent(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--ttl", "15m",
                       "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600 and output.stat().st_uid == os.getuid()

    user = whoami(kubectl, output)
    assert user["username"] == "lifeline-user:alice"
    assert "lifeline:operators" in user["groups"] and "lifeline:breakglass" not in user["groups"]
    rc, out, err = kubectl(output, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0 and "kubernetes" in out, err

    config = load_kubeconfig(output.read_bytes())
    _, credential = kube.from_kubeconfig(config)
    assert credential.cert_pem is not None and credential.key_pem is not None
    certificate = x509.load_pem_x509_certificate(credential.cert_pem)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert 15 * 60 <= lifetime.total_seconds() <= 15 * 60 + 6 * 60  # the signer backdates notBefore 5 minutes

    listing = run_agent(lab, agent_config, "grants", seeded_cluster, "--json")
    assert listing.returncode == 0, listing.stderr
    (record,) = json.loads(listing.stdout)
    assert record["user"] == "lifeline-user:alice" and record["state"] == "active"
    assert record["serial"] == format(certificate.serial_number, "x")
    assert record["output"] == str(output) and str(os.getuid()) in record["requested_by"]
    assert "alice" in run_agent(lab, agent_config, "grants").stdout
    grant_log = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (logged,) = [r for r in grant_log if r["message"] == "granted a personal kubeconfig"]
    assert logged["serial"] == record["serial"] and logged["for"] == "lifeline-user:alice"
    assert logged["requested_by"] == record["requested_by"] and logged["not_after"]

    ledger = tmp_path / "state" / seeded_cluster / "grants.json"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    places = {"grant's output and logs": result.stdout + result.stderr, "ledger": ledger.read_text(),
              "Kubernetes objects": stored_objects(lab, seeded_cluster, kubectl)}  # fmt: skip
    store = getattr(lab.control_plane(seeded_cluster), "store", None)
    if store is not None:  # the emulated API server keeps every event, also of the grant's CSR, since deleted
        places["API watch events"] = repr(list(store._events))
        assert "lifeline-grant-" in places["API watch events"]
    for form in key_material_forms(credential.key_pem):
        for place, text in places.items():
            assert form not in text, f"private key material found in {place}"

    with lab.kube_session(seeded_cluster) as session:
        assert rbac.delete_object(session, "ClusterRoleBinding", rbac.OPERATORS_BINDING)
    rc, _, err = kubectl(output, "get", "svc", "kubernetes", "-n", "default")
    assert rc != 0 and "forbidden" in err.lower(), err
    agents_own = tmp_path / "state" / seeded_cluster / "kubeconfig"
    rc, out, err = kubectl(agents_own, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0 and "kubernetes" in out, err

    refused = run_agent(lab, agent_config, "grant", seeded_cluster, "--user", "bob",
                        "--output", str(tmp_path / "bob.kubeconfig"))  # fmt: skip
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "lifeline-operators" in refused.stderr
    assert not (tmp_path / "bob.kubeconfig").exists()
    assert len(json.loads(ledger.read_text())["grants"]) == 1


@pytest.mark.parametrize(("args", "error"), [
    (("--user", "alice", "--ttl", "5m"), "TtlOutOfRange"),
    (("--user", "alice", "--ttl", "2h"), "TtlOutOfRange"),
    (("--user", "system:admin"), "ReservedUserName"),
    (("--user", "lifeline:edge-host-1"), "ReservedUserName"),
    (("--user", "Alice Smith"), "InvalidUserName"),
    (("--user", "../../etc/passwd"), "InvalidUserName"),
])  # fmt: skip
def test_bad_names_and_lifetimes_are_refused_by_name_and_nothing_is_written(
        lab, seeded_cluster, agent_config, tmp_path, args, error):  # fmt: skip
    output = tmp_path / "out.kubeconfig"
    result = run_agent(lab, agent_config, "grant", seeded_cluster, *args, "--output", str(output))
    assert result.returncode == 2, result.stdout + result.stderr
    assert error in result.stderr
    assert not output.exists()
    assert not (tmp_path / "state" / seeded_cluster / "grants.json").exists()
    with lab.kube_session(seeded_cluster) as session:
        csrs = session.request("GET", kube.CSR_PATH)["items"]
    assert not [c for c in csrs if c["metadata"]["name"].startswith("lifeline-grant-")]


def test_an_existing_output_file_is_never_replaced(lab, seeded_cluster, agent_config, tmp_path):
    output = tmp_path / "mine.kubeconfig"
    output.write_text("someone's kubeconfig\n")
    result = run_agent(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--output", str(output))
    assert result.returncode == 2 and "OutputExists" in result.stderr, result.stderr
    assert output.read_text() == "someone's kubeconfig\n"


NOBODY = 65534


def test_behind_sudo_the_kubeconfig_is_created_with_that_users_rights_only(
        lab, seeded_cluster, agent_config, shared_tmp, nobodys_dir, kubectl):  # fmt: skip
    """Root running ``grant`` for a sudo user writes where *that user* may create files, nowhere else: a
    directory root can write but the user cannot (/etc/profile.d, say) is refused before anything is issued."""
    as_nobody = agentkit.agent_env(lab, sdk_endpoint=False, SUDO_UID=str(NOBODY), SUDO_GID=str(NOBODY))
    theirs = nobodys_dir
    roots = shared_tmp / "profile.d"
    roots.mkdir(mode=0o755)
    ledger = agent_config.parent / "state" / seeded_cluster / "grants.json"

    refused = agentkit.run_once(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--output",
                                str(roots / "alice.sh"), timeout=120, env=as_nobody)  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "OutputNotWritable" in refused.stderr and "nobody (uid 65534)" in refused.stderr
    assert list(roots.iterdir()) == [] and not ledger.exists()

    output = theirs / "alice.kubeconfig"
    result = agentkit.run_once(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--output",
                               str(output), timeout=120, env=as_nobody)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    info = output.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o600)
    assert sorted(p.name for p in theirs.iterdir()) == ["alice.kubeconfig"]  # no temp file left
    assert whoami(kubectl, output)["username"] == "lifeline-user:alice"
    (record,) = json.loads(ledger.read_text())["grants"]
    assert record["requested_by"] == "nobody (uid 65534)" and record["output"] == str(output)


def test_a_symlink_planted_at_the_output_is_never_followed(lab, seeded_cluster, agent_config, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    output = tmp_path / "alice.kubeconfig"
    output.symlink_to(target)
    result = run_agent(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--output", str(output))
    assert result.returncode == 2 and "OutputExists" in result.stderr, result.stderr
    assert output.is_symlink() and target.read_text() == "untouched\n"


def test_a_grant_shorter_than_the_agents_minimum_remaining_lifetime_is_still_issued(
        lab, seeded_cluster, agent_config, tmp_path):  # fmt: skip
    """timing.min_remaining_lifetime is for the agent's own certificate; a 15-minute grant asked for under a
    2-hour minimum must not be signed and then thrown away (it is held to half its own lifetime instead)."""
    text = agent_config.read_text()
    assert "min_remaining_lifetime = 10\n" in text
    agent_config.write_text(text.replace("min_remaining_lifetime = 10\n", 'min_remaining_lifetime = "2h"\n'))
    output = tmp_path / "alice.kubeconfig"
    result = run_agent(lab, agent_config, "grant", seeded_cluster, "--user", "alice", "--ttl", "15m",
                       "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert output.is_file()
