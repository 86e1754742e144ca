"""Deleting a cluster's CSRs after use, whenever the identity making the request may.

The contract's RBAC lets the bootstrap identity (``lifeline:agents``) create and approve CSRs but not
delete them; the break-glass identity may. A 403 is remembered per identity, not for the process: a
renewal with the agent's own certificate still deletes its CSR, and the ones a refused identity left.
"""

from __future__ import annotations

import hashlib
import logging
import time

from cryptography import x509

from lifeline_agent import kube

log = logging.getLogger(__name__)

LEFTOVERS_KEPT = 16  # the API server's csrcleaner removes the rest after about an hour


def identity_of(credential: kube.Credential) -> str:
    """Who the API server sees: a certificate's subject; every bearer token is the bootstrap identity."""
    if credential.cert_pem is None:
        return "bearer token"
    try:
        return "certificate " + x509.load_pem_x509_certificate(credential.cert_pem).subject.rfc4514_string()
    except ValueError:
        return "certificate sha256:" + hashlib.sha256(credential.cert_pem).hexdigest()


class CsrCleanup:
    """One cluster's CSR deletions: identities refused before, and the CSRs they had to leave behind."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._refused: set[str] = set()
        self._leftovers: list[str] = []

    def after_use(self, session: kube.KubeSession, name: str) -> None:
        """Delete ``name`` unless this identity was refused before; then the leftovers, within one timeout.

        The deletion is sent at once and its answer read before the session's next request or at its close,
        so the server deletes while the agent verifies and installs the new kubeconfig.
        """
        identity = identity_of(session.credential)
        if identity in self._refused:
            self._leave(name)
            return

        def answered(error: kube.KubeError | None) -> None:
            if isinstance(error, kube.Forbidden):
                log.info("%s may not delete CSRs; leaving them to the API server's cleanup", identity,
                         extra={"cluster": self.cluster})  # fmt: skip
                self._refused.add(identity)
                self._leave(name)
                return
            self._delete_leftovers(session)

        session.request_later("DELETE", f"{kube.CSR_PATH}/{name}", answered)

    def _leave(self, name: str) -> None:
        self._leftovers = [*self._leftovers, name][-LEFTOVERS_KEPT:]

    def _delete_leftovers(self, session: kube.KubeSession) -> None:
        budget = time.monotonic() + session.timeout
        while self._leftovers and time.monotonic() < budget:
            if not session.delete_csr(self._leftovers[0]):
                return
            self._leftovers.pop(0)
