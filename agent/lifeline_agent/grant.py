"""Personal break-glass kubeconfigs: ``lifeline-agent grant CLUSTER --user NAME``.

With the agent's installed (current) certificate, so it works while the service link is down: a key made
here, a CSR for ``CN=lifeline-user:<name>, O=<operators' group>`` created and approved through the CSR API
(signer ``kubernetes.io/kube-apiserver-client``, ``expirationSeconds`` = the TTL), the certificate admitted
like the agent's own (:func:`lifeline_agent.admission.admit`), the new kubeconfig proven on its own (the
server sees that person), recorded in the ledger, and only then written: 0600, owned by the invoking user
(the one behind ``sudo``). The key is never logged, never in the ledger, never sent.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline_agent import kube
from lifeline_agent.admission import admit
from lifeline_agent.config import MIN_CERTIFICATE_LIFETIME, AgentConfig, parse_duration
from lifeline_agent.contract import AGENTS_GROUP, PERSONAL_USER_PREFIX
from lifeline_agent.csr_cleanup import CsrCleanup
from lifeline_agent.deadline import Wanted
from lifeline_agent.keys import CSR_USAGES, generate_key, key_pem, make_csr, parse_certificate, utc
from lifeline_agent.kubeconfig import atomic_write, build_kubeconfig, dump_kubeconfig
from lifeline_agent.ledger import Grant, Ledger
from lifeline_agent.store import ClusterStore
from lifeline_agent.verify import Revoked, verify_kubeconfig

log = logging.getLogger(__name__)

# A plain user name: what useradd accepts by default, and an email-style local part; never a ':' (no prefix).
USER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
RESERVED_NAMES = ("system", "lifeline", "admin", "root", "kubernetes")


class GrantError(Exception):
    """A grant could not be made; subclasses say why."""


class InvalidUserName(GrantError, ValueError):
    """``--user`` is not a plain user name."""


class ReservedUserName(InvalidUserName):
    """``--user`` names (or starts like) a system or Lifeline identity: ``system:*``, ``lifeline:*``..."""


class TtlOutOfRange(GrantError, ValueError):
    """``--ttl`` is not a duration from the API's minimum (10 minutes) to the configured ``grant.max_ttl``."""


class GroupRefused(GrantError, ValueError):
    """The operators' group is a ``system:`` group or one of the agents' own groups."""


class OutputExists(GrantError, ValueError):
    """``--output`` names an existing file: a grant never replaces a file."""


class NoAgentCertificate(GrantError):
    """The agent has no installed, unexpired kubeconfig for the cluster to issue with."""


class GrantRevoked(GrantError):
    """The API server authenticates the personal certificate but forbids it: the operators' binding is gone."""


def validate_user_name(name: str) -> str:
    """``name`` when it is a plain user name; :class:`InvalidUserName` / :class:`ReservedUserName` otherwise."""
    lowered = name.lower()
    if lowered.startswith(("system:", "system-")) or lowered.split(":")[0] in RESERVED_NAMES or \
            lowered in RESERVED_NAMES:  # fmt: skip
        raise ReservedUserName(f"--user {name!r}: {name.split(':')[0]!r} names are reserved (system:, the agents' "
                               "identities, admin, root): give the person's own user name, like alice")  # fmt: skip
    if not USER_NAME.fullmatch(name):
        raise InvalidUserName(f"--user {name!r} is not a plain user name: 1-64 lowercase letters, digits, '.', '_' "
                              "or '-', starting and ending with a letter or digit (like alice or j.doe)")  # fmt: skip
    return name


def parse_ttl(value: str | None, maximum: int) -> int:
    """Whole seconds from ``--ttl`` (default: ``maximum``), from 10 minutes up to ``maximum``."""
    if value is None:
        return maximum
    seconds = parse_duration(value) if value.strip() else None
    if seconds is None:
        raise TtlOutOfRange(f"--ttl {value!r} is not a duration (like 30m or 1h)")
    if seconds < MIN_CERTIFICATE_LIFETIME:
        raise TtlOutOfRange(f"--ttl {value}: shorter than {MIN_CERTIFICATE_LIFETIME // 60} minutes, the least the "
                            "Kubernetes CSR API issues")  # fmt: skip
    if seconds > maximum:
        raise TtlOutOfRange(f"--ttl {value}: longer than the configured maximum grant.max_ttl ({maximum} s)")
    return int(seconds)


@dataclass(frozen=True)
class Requester:
    """Who runs the command: the user behind ``sudo`` when root runs it for them."""

    name: str
    uid: int
    gid: int

    @classmethod
    def of_this_process(cls, environ: dict[str, str] | None = None) -> Requester:
        environ = dict(os.environ if environ is None else environ)
        uid, gid = os.getuid(), os.getgid()
        sudo_uid, sudo_gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
        if uid == 0 and sudo_uid.isdigit() and sudo_gid.isdigit():
            uid, gid = int(sudo_uid), int(sudo_gid)
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid-{uid}"
        return cls(name=name, uid=uid, gid=gid)

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid})"


@dataclass(frozen=True)
class Issued:
    grant: Grant
    identity: kube.Identity


def default_output(cluster: str, name: str) -> Path:
    return Path.cwd() / f"lifeline-{cluster}-{name}.kubeconfig"


def operators_group(config: AgentConfig, store: ClusterStore) -> str:
    """The personal kubeconfigs' group; :class:`GroupRefused` when it is one of this cluster's agent groups."""
    group = config.grant.group
    cached = store.load_cache()
    breakglass = config.group_for(cached.secret.breakglass_group if cached else None)
    if group.startswith("system:") or group in (AGENTS_GROUP, breakglass):
        raise GroupRefused(f"grant.group {group!r} is a system: group or one of the agents' own groups "
                           f"({AGENTS_GROUP}, {breakglass}): not for personal kubeconfigs")  # fmt: skip
    return group


def issue(config: AgentConfig, cluster: str, name: str, ttl: int, output: Path, requester: Requester, *,
          clock: Any = time.time) -> Issued:  # fmt: skip
    """Issue, prove, record and write a personal kubeconfig for ``name``; nothing is written on failure."""
    store = ClusterStore(config.cluster_dir(cluster), operators_group=config.operators_group)
    ledger = Ledger(store.directory, operators_group=config.operators_group)
    group = operators_group(config, store)
    output = output if output.is_absolute() else Path.cwd() / output
    if output.exists() or output.is_symlink():
        raise OutputExists(f"--output {output} exists: a grant never replaces a file; remove it or name another")
    if not output.parent.is_dir():
        raise OutputExists(f"--output {output}: the directory {output.parent} does not exist")
    ledger.check_writable()
    installed = store.current()
    if installed is None:
        raise NoAgentCertificate(f"no kubeconfig at {store.kubeconfig_path} yet: the agent has not issued one")
    target, credential = kube.from_kubeconfig(installed)
    if credential.cert_pem is None or parse_certificate(credential.cert_pem).expired(clock()):
        raise NoAgentCertificate(f"the agent's kubeconfig {store.kubeconfig_path} has no current certificate: "
                                 "a grant is issued with it (lifeline-agent status says why)")  # fmt: skip
    user = PERSONAL_USER_PREFIX + name
    key = generate_key(config.key_type)
    with ledger.locked():
        cert_pem, csr_name = _request(config, cluster, target, credential, make_csr(key, user, group),
                                      ttl, f"for {user}, asked by {requester}")  # fmt: skip
        certificate = parse_certificate(cert_pem)
        admit(certificate, key, Wanted(user, group, config.key_type, target.ca_pem), now=clock(),
              clock_skew=config.timing.clock_skew, min_remaining=config.timing.min_remaining_lifetime)  # fmt: skip
        kubeconfig = build_kubeconfig(cluster_name=cluster, server=target.server, ca_pem=target.ca_pem,
                                      user_name=user, client_cert_pem=cert_pem, client_key_pem=key_pem(key),
                                      tls_server_name=target.tls_server_name)  # fmt: skip
        try:
            identity = verify_kubeconfig(kubeconfig, user, group, timeout=config.timing.api_timeout)
        except Revoked as exc:
            raise GrantRevoked(f"the personal kubeconfig for {user} is forbidden ({exc.problem}): is the "
                               f"ClusterRoleBinding lifeline-operators for {group!r} deleted?") from None  # fmt: skip
        grant = Grant(cluster=cluster, user=user, group=group, requested_by=str(requester),
                      serial=format(certificate.certificate.serial_number, "x"),
                      fingerprint_sha256=certificate.fingerprint.hex(), not_before=certificate.not_before,
                      not_after=certificate.not_after, issued_at=clock(), output=str(output), server=target.server,
                      csr=csr_name)  # fmt: skip
        _write_owned(output, dump_kubeconfig(kubeconfig), requester)
        try:
            ledger.record(grant)
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    log.info("granted a personal kubeconfig", extra={
        "cluster": cluster, "for": user, "group": group, "requested_by": str(requester), "serial": grant.serial,
        "not_after": utc(grant.not_after), "path": str(output)})  # fmt: skip
    return Issued(grant=grant, identity=identity)


def _request(config: AgentConfig, cluster: str, target: kube.Target,
             credential: kube.Credential, csr: bytes, ttl: int, why: str) -> tuple[bytes, str]:  # fmt: skip
    """The CSR round trip with the agent's credential: ``(certificate PEM, CSR name)``; the CSR is deleted after."""
    name = f"lifeline-grant-{secrets.token_hex(6)}"
    with kube.KubeSession(target, credential, timeout=config.timing.api_timeout) as session:
        created = session.create_csr(name, csr, CSR_USAGES, ttl)
        try:
            session.approve_csr(name, f"lifeline-agent grant on host {config.host_id} {why}", created)
            return session.wait_for_certificate(name, config.timing.csr_timeout), name
        finally:
            CsrCleanup(cluster).after_use(session, name)


def _write_owned(path: Path, data: bytes, requester: Requester) -> None:
    """0600, then owned by the requester when root writes it for them (``sudo``)."""
    atomic_write(path, data, mode=0o600)
    if os.geteuid() == 0 and requester.uid != 0:
        os.chown(path, requester.uid, requester.gid, follow_symlinks=False)
