"""Proving a kubeconfig works, using it alone: who does the API server say we are, and may we read?"""

from __future__ import annotations

from typing import Any

from lifeline_agent import kube
from lifeline_agent.keys import CertificateError, parse_certificate


class Revoked(Exception):
    """The API server authenticates the certificate but forbids it: the break-glass binding is gone."""

    def __init__(self, problem: str, group: str) -> None:
        self.problem, self.group = problem, group
        super().__init__(f"{problem} (was the {group!r} ClusterRoleBinding lifeline-breakglass deleted?)")


class WrongIdentity(CertificateError):
    """The API server sees another user or groups than the kubeconfig's certificate is for."""


def verify_kubeconfig(config: dict[str, Any], user: str, group: str, *, timeout: float) -> kube.Identity:
    """Use ``config`` alone to ask who we are and read the ``kubernetes`` service.

    :class:`Revoked` when the server forbids it (403); :class:`kube.KubeError` on other failures;
    :class:`WrongIdentity` when the server sees another identity.
    """
    target, credential = kube.from_kubeconfig(config)
    with kube.KubeSession(target, credential, timeout=timeout) as session:
        try:
            identity = session.who_am_i()
            if identity is None:  # no SelfSubjectReview: the certificate says who we are, RBAC says what
                if credential.cert_pem is None:
                    raise CertificateError("cannot check the identity: no SelfSubjectReview and no certificate")
                certificate = parse_certificate(credential.cert_pem)
                identity = kube.Identity(certificate.common_name, certificate.organizations)
                if not session.can("get", "services", "default", "kubernetes"):
                    raise kube.Forbidden("SelfSubjectAccessReview: get services/kubernetes is not allowed")
            if identity.user != user or group not in identity.groups:
                raise WrongIdentity(f"the API server sees user {identity.user!r} in groups "
                                       f"{list(identity.groups)}, not {user!r} in {group!r}")  # fmt: skip
            session.read_kubernetes_service()
        except kube.Forbidden as exc:
            raise Revoked(str(exc), group) from None
    return identity
