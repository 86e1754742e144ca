"""One kubectl script over every CSR rule of DESIGN §1, run against the emulated and the real control plane:
the normalized transcripts must be equal line for line (the real kube-apiserver v1.28.7 settles what is right)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import run_kubectl
from tests.integration.test_controlplane_csr import pem_csr

pytestmark = pytest.mark.xdist_group("real-lab")

SIGNER = "kubernetes.io/kube-apiserver-client"
SIGNING_DURATION = 86400  # over 8 h: the signer's long-lifetime rule applies to the cap


def _options() -> ControlPlaneOptions:
    return ControlPlaneOptions(cluster_name="differential", cluster_id=str(uuid.uuid4()),
                               signing_duration_seconds=SIGNING_DURATION, min_expiration_seconds=600)  # fmt: skip


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Any]]:
    from lab.controlplane.real import RealControlPlane, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"real control plane unavailable: {reason}")
    with ControlPlane(_options()) as emulated, RealControlPlane(_options()) as real:
        yield {"emulated": emulated, "real": real}


class Script:
    """Runs kubectl against one control plane as named users; records normalized lines."""

    def __init__(self, cp: Any, directory: Path) -> None:
        self.cp, self.directory, self.lines = cp, directory, []
        directory.mkdir(parents=True, exist_ok=True)
        self.users: dict[str, Path] = {"admin": self._kubeconfig("admin", *cp.admin_credentials())}

    def _kubeconfig(self, name: str, cert: bytes | None = None, key: bytes | None = None,
                    token: str | None = None) -> Path:  # fmt: skip
        if cert is None or key is None:
            cert, key = self.cp.admin_credentials()  # replaced by the token below
        config = build_kubeconfig(cluster_name="differential", server=f"https://127.0.0.1:{self.cp.port}",
                                  ca_pem=self.cp.ca_pem, user_name=name, client_cert_pem=cert,
                                  client_key_pem=key)  # fmt: skip
        if token is not None:
            config["users"][0]["user"] = {"token": token}
        path = self.directory / f"{name}.kubeconfig"
        path.write_bytes(dump_kubeconfig(config))
        return path

    def user(self, name: str, groups: list[str] | None = None) -> None:
        cert, key = self.cp.ca.issue_client_cert(name, groups or [], dt.timedelta(hours=1))
        self.users[name] = self._kubeconfig(name, cert, key)

    def token_user(self, name: str, token: str) -> None:
        self.users[name] = self._kubeconfig(name, token=token)

    def run(self, label: str, as_user: str, *args: str, stdin: str | None = None) -> str:
        result = run_kubectl(self.users[as_user], *args)
        out = (result.stdout + result.stderr).strip().replace(str(self.directory), "<dir>")
        self.lines.append(f"## {label} (as {as_user}): rc={result.rc}")
        self.lines += [_normalize(line) for line in out.splitlines() if line.strip()]
        return result.stdout

    def note(self, line: str) -> None:
        self.lines.append(line)

    def csr(self, name: str, *, request: bytes | None = None, usages: list[str] | None = None,
            expiration: int | None = None, organizations: tuple[str, ...] = ()) -> Path:  # fmt: skip
        spec: dict[str, Any] = {"request": base64.b64encode(request or pem_csr(name, organizations)).decode(),
                                "signerName": SIGNER}  # fmt: skip
        if usages is not None:
            spec["usages"] = usages
        if expiration is not None:
            spec["expirationSeconds"] = expiration
        path = self.directory / f"{name}.json"
        document = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                    "metadata": {"name": name}, "spec": spec}  # fmt: skip
        path.write_text(json.dumps(document))
        return path

    def wait(self, name: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            csr = json.loads(run_kubectl(self.users["admin"], "get", "csr", name, "-o", "json").stdout or "{}")
            if until(csr) or time.monotonic() > deadline:
                return csr
            time.sleep(0.2)


def _normalize(line: str) -> str:
    line = re.sub(r"\b\d+(\.\d+)?(ms|s|m|h)\d*s?\b(?=\s|$)", "<age>", line) if line.startswith(("d-", "NAME")) \
        else line
    return " ".join(line.split())


def _conditions(csr: dict[str, Any]) -> str:
    return ",".join(c.get("type", "") for c in (csr.get("status") or {}).get("conditions") or [])


def _issued(csr: dict[str, Any]) -> bool:
    return bool((csr.get("status") or {}).get("certificate"))


def _settled(csr: dict[str, Any]) -> bool:
    return _issued(csr) or any(c in _conditions(csr) for c in ("Failed", "Denied"))


def _timing(csr: dict[str, Any], asked: dt.datetime) -> str:
    certificate = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    backdate = (asked - certificate.not_valid_before_utc).total_seconds()
    lifetime = (certificate.not_valid_after_utc - asked).total_seconds()
    return f"backdate {round(backdate / 60)}m, lifetime from now {round(lifetime / 60)}m"


def script(s: Script) -> list[str]:
    s.user("nobody")
    s.user("approver-without-signer")
    s.token_user("bad-token", "not-a-valid-token")
    s.run("subject restriction: O=system:masters", "admin", "create", "-f",
          str(s.csr("d-masters", usages=["client auth"], organizations=("system:masters",))))  # fmt: skip
    s.run("duration below 600 s", "admin", "create", "-f",
          str(s.csr("d-short", usages=["client auth"], expiration=599)))
    s.run("no usages", "admin", "create", "-f", str(s.csr("d-nousage")))
    s.run("request not a CSR", "admin", "create", "-f",
          str(s.csr("d-notcsr", request=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    usages=["client auth"])))  # fmt: skip
    s.run("server auth usage", "admin", "create", "-f", str(s.csr("d-server", usages=["client auth", "server auth"])))
    s.run("approve it", "admin", "certificate", "approve", "d-server")
    s.note(f"server auth conditions: {_conditions(s.wait('d-server', _settled))}")

    s.run("approval needs the approval subresource", "admin", "create", "-f",
          str(s.csr("d-approve", usages=["client auth", "digital signature"], expiration=600)))  # fmt: skip
    s.run("nobody approves", "nobody", "certificate", "approve", "d-approve")
    s.run("role: update approval only", "admin", "create", "clusterrole", "d-approval-only",
          "--verb=get,update", "--resource=certificatesigningrequests,certificatesigningrequests/approval")  # fmt: skip
    s.run("binding", "admin", "create", "clusterrolebinding", "d-approval-only", "--clusterrole=d-approval-only",
          "--user=approver-without-signer")  # fmt: skip
    s.run("approve without the signer permission", "approver-without-signer", "certificate", "approve", "d-approve")
    asked = dt.datetime.now(dt.UTC)
    s.run("admin approves", "admin", "certificate", "approve", "d-approve")
    issued = s.wait("d-approve", _settled)
    s.note(f"600 s request: conditions {_conditions(issued)}; {_timing(issued, asked)}")

    s.run("no expirationSeconds", "admin", "create", "-f", str(s.csr("d-default", usages=["client auth"])))
    asked = dt.datetime.now(dt.UTC)
    s.run("approve", "admin", "certificate", "approve", "d-default")
    s.note(f"no duration requested: {_timing(s.wait('d-default', _issued), asked)}")
    s.run("just under 8 h", "admin", "create", "-f",
          str(s.csr("d-under8h", usages=["client auth"], expiration=8 * 3600 - 60)))  # fmt: skip
    asked = dt.datetime.now(dt.UTC)
    s.run("approve", "admin", "certificate", "approve", "d-under8h")
    s.note(f"8 h - 1 min requested: {_timing(s.wait('d-under8h', _issued), asked)}")
    s.run("8 h", "admin", "create", "-f", str(s.csr("d-8h", usages=["client auth"], expiration=8 * 3600)))
    asked = dt.datetime.now(dt.UTC)
    s.run("approve", "admin", "certificate", "approve", "d-8h")
    s.note(f"8 h requested: {_timing(s.wait('d-8h', _issued), asked)}")
    s.run("longer than the signer's cap", "admin", "create", "-f",
          str(s.csr("d-long", usages=["client auth"], expiration=4 * SIGNING_DURATION)))  # fmt: skip
    asked = dt.datetime.now(dt.UTC)
    s.run("approve", "admin", "certificate", "approve", "d-long")
    s.note(f"4x the cap requested: {_timing(s.wait('d-long', _issued), asked)}")

    s.run("deny", "admin", "create", "-f", str(s.csr("d-deny", usages=["client auth"], expiration=600)))
    s.run("deny it", "admin", "certificate", "deny", "d-deny")
    s.wait("d-deny", _settled)
    s.run("kubectl get csr", "admin", "get", "csr", "--sort-by=.metadata.name")

    s.run("401: a bad token", "bad-token", "get", "svc")
    s.run("403: a user without RBAC", "nobody", "get", "svc")
    return s.lines


def test_the_csr_script_reads_the_same_on_both_backends(backends: dict[str, Any], tmp_path: Path) -> None:
    transcripts = {name: script(Script(cp, tmp_path / name)) for name, cp in backends.items()}
    emulated, real = transcripts["emulated"], transcripts["real"]
    differing = [f"line {i}:\n  emulated: {e}\n  real:     {r}"
                 for i, (e, r) in enumerate(zip(emulated, real, strict=False)) if e != r]  # fmt: skip
    if len(emulated) != len(real):
        differing.append(f"{len(emulated)} lines emulated, {len(real)} real")
    assert not differing, "\n".join(differing) + "\n\nreal transcript:\n" + "\n".join(real)
    assert any("Approved,Failed" in line for line in real)  # the script exercised the rules it claims
    assert any('user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"'
               in line for line in real), real  # fmt: skip
    assert "600 s request: conditions Approved; backdate 5m, lifetime from now 10m" in real
