"""Deleting a cluster's CSRs after use, whenever the identity making the request may.

Deleting is hygiene (the API server's csrcleaner removes an approved CSR after about an hour), so it never
delays a new kubeconfig: the agent queues each CSR it made (:meth:`CsrCleanup.later`) and deletes the queue as
its installed credential in a step that installs nothing, and before its loop stops. The contract's RBAC lets
the bootstrap identity (``lifeline:agents``) create and approve CSRs but not delete them; the break-glass
identity may. A 403 is remembered per identity, not for the process: the names stay queued for another one.
"""

from __future__ import annotations

import hashlib
import logging
import time

from cryptography import x509

from lifeline_agent import kube

log = logging.getLogger(__name__)

KEPT = 16  # CSR names queued at most; the API server's csrcleaner removes the rest after about an hour


def identity_of(credential: kube.Credential) -> str:
    """Who the API server sees: a certificate's subject; every bearer token is the bootstrap identity."""
    if credential.cert_pem is None:
        return "bearer token"
    try:
        return "certificate " + x509.load_pem_x509_certificate(credential.cert_pem).subject.rfc4514_string()
    except ValueError:
        return "certificate sha256:" + hashlib.sha256(credential.cert_pem).hexdigest()


class CsrCleanup:
    """One cluster's CSRs still to delete, and the identities refused before."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._refused: set[str] = set()
        self.pending: list[str] = []

    def later(self, name: str) -> None:
        """Delete ``name`` at the next :meth:`delete_pending`."""
        self.pending = [*self.pending, name][-KEPT:]

    def after_use(self, session: kube.KubeSession, name: str) -> None:
        """Delete ``name`` (and what is queued) now, over ``session`` (a one-off request: ``grant``)."""
        self.later(name)
        self._delete(session)

    def delete_pending(self, target: kube.Target, credential: kube.Credential, timeout: float) -> None:
        """Delete the queued CSRs as ``credential``, over one connection, within about ``timeout``; never raises
        a :class:`kube.KubeError` (what could not be deleted stays queued)."""
        if self.pending and identity_of(credential) not in self._refused:
            with kube.KubeSession(target, credential, timeout=timeout) as session:
                self._delete(session)

    def _delete(self, session: kube.KubeSession) -> None:
        identity = identity_of(session.credential)
        budget = time.monotonic() + session.timeout
        while self.pending and identity not in self._refused and time.monotonic() < budget:
            try:
                session.request("DELETE", f"{kube.CSR_PATH}/{self.pending[0]}")
            except kube.NotFound:
                pass
            except kube.Forbidden:
                log.info("%s may not delete CSRs; leaving them to another identity or the API server's cleanup",
                         identity, extra={"cluster": self.cluster})  # fmt: skip
                self._refused.add(identity)
                return
            except kube.KubeError as exc:
                log.debug("CSR %s not deleted yet: %s", self.pending[0], exc, extra={"cluster": self.cluster})
                return
            self.pending.pop(0)
