"""Personal break-glass kubeconfigs: ``lifeline-agent grant CLUSTER --user NAME``.

With the agent's installed (current) certificate, so it works while the service link is down: a key made
here, a CSR for ``CN=lifeline-user:<name>, O=<operators' group>`` created and approved through the CSR API
(signer ``kubernetes.io/kube-apiserver-client``, ``expirationSeconds`` = the TTL), the certificate admitted
like the agent's own (:func:`lifeline_agent.admission.admit`) and no longer-lived than asked, the new
kubeconfig proven on its own (the server sees that person), then written with the requester's own rights
(the user behind ``sudo``: :mod:`lifeline_agent.requester`), 0600, never over an existing file, and recorded
in the ledger (the file is removed again if the ledger cannot be written). The key is never logged, never in
the ledger, never sent.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline_agent import kube
from lifeline_agent.admission import admit
from lifeline_agent.config import MIN_CERTIFICATE_LIFETIME, AgentConfig, parse_duration
from lifeline_agent.contract import AGENTS_GROUP, PERSONAL_USER_PREFIX
from lifeline_agent.csr_cleanup import CsrCleanup
from lifeline_agent.deadline import Wanted
from lifeline_agent.keys import (
    CSR_USAGES,
    IssuedCertificate,
    generate_key,
    key_pem,
    make_csr,
    parse_certificate,
    utc,
)
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig, write_new_file
from lifeline_agent.ledger import Grant, Ledger
from lifeline_agent.requester import Requester, as_requester
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


class OutputNotWritable(GrantError, ValueError):
    """The requester (the user behind ``sudo``) may not create ``--output``: it is written with their rights."""


class OutputNotWritten(GrantError):
    """Writing ``--output`` failed for another reason than the requester's rights (a full disk, an I/O error)."""


class CertificateTooLong(GrantError):
    """The signer issued a certificate that outlives the TTL asked for (it ignored ``expirationSeconds``)."""


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
    _as_requester(requester, output, lambda: _check_creatable(output))
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
        now = clock()
        admit(certificate, key, Wanted(user, group, config.key_type, target.ca_pem), now=now,
              clock_skew=config.timing.clock_skew,
              min_remaining=min(config.timing.min_remaining_lifetime, ttl / 2))  # fmt: skip
        check_lifetime(certificate, now=now, ttl=ttl, clock_skew=config.timing.clock_skew)
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
        data = dump_kubeconfig(kubeconfig)
        _as_requester(requester, output, lambda: write_new_file(output, data, mode=0o600))
        try:
            ledger.record(grant)
        except BaseException:
            try:
                as_requester(requester, lambda: output.unlink(missing_ok=True))
            except OSError as exc:
                log.error("the grant could not be recorded, and its kubeconfig %s could not be removed (%s): "
                          "remove it", output, exc.strerror or exc)  # fmt: skip
            raise
    log.info("granted a personal kubeconfig", extra={
        "cluster": cluster, "for": user, "group": group, "requested_by": str(requester), "serial": grant.serial,
        "not_after": utc(grant.not_after), "path": str(output)})  # fmt: skip
    return Issued(grant=grant, identity=identity)


def check_lifetime(certificate: IssuedCertificate, *, now: float, ttl: int, clock_skew: float) -> None:
    """:class:`CertificateTooLong` when ``certificate`` outlives the ``ttl`` asked for at ``now``: a signer that
    ignores ``spec.expirationSeconds`` (the CSR API allows it) would otherwise hand out a year-long personal
    credential, which Kubernetes cannot revoke one by one."""
    if certificate.not_after > now + ttl + clock_skew:
        raise CertificateTooLong(f"the cluster's signer issued a certificate valid until {utc(certificate.not_after)}"
                                 f", longer than the {ttl} s asked for: refused (does the signer ignore "
                                 "spec.expirationSeconds?)")  # fmt: skip


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


def _check_creatable(output: Path) -> None:
    """Run as the requester: :class:`OSError` unless they can create ``output`` (which must not exist)."""
    if os.path.lexists(output):
        raise FileExistsError(errno.EEXIST, "exists", str(output))
    if not stat.S_ISDIR(os.stat(output.parent).st_mode):  # FileNotFoundError, PermissionError as they come
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(output.parent))
    if not os.access(output.parent, os.R_OK | os.W_OK | os.X_OK):  # R: the new file is made durable (fsync)
        raise PermissionError(errno.EACCES, "cannot create files in that directory", str(output.parent))


def _as_requester(requester: Requester, output: Path, action: Callable[[], None]) -> None:
    try:
        as_requester(requester, action)
    except FileExistsError:
        raise OutputExists(f"--output {output} exists: a grant never replaces a file; remove it or name "
                           "another") from None  # fmt: skip
    except (PermissionError, FileNotFoundError, NotADirectoryError) as exc:
        where = exc.filename or output
        raise OutputNotWritable(f"--output {output}: {requester} may not create it ({where}: "
                                f"{exc.strerror or exc}); it is written with that user's rights") from None  # fmt: skip
    except OSError as exc:
        raise OutputNotWritten(f"--output {output}: {exc.strerror or exc}") from None
