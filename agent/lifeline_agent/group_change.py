"""A break-glass group renamed in the cluster's secret: a named state, not ``revoked``.

When the secret names another group than the installed certificate's ``O`` (and the config does
not pin one), the agent re-issues its certificate for the new group and keeps the kubeconfig for
the old group until the new one is verified. When the API server does not grant the new group
(its ``lifeline-breakglass`` binding still names the old one), that is :class:`GroupChanged`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lifeline_agent.deadline import Wanted
from lifeline_agent.keys import IssuedCertificate
from lifeline_agent.verify import Revoked, WrongIdentity


class GroupChanged(Exception):
    """The secret's break-glass group changed and the API server does not accept the new one yet."""


def changed_group(certificate: IssuedCertificate, wanted: Wanted, *, pinned: bool) -> str | None:
    """The installed certificate's group when the secret now names another one, else ``None``."""
    if pinned or certificate.organizations == (wanted.organization,):
        return None
    return ", ".join(certificate.organizations) or "(none)"


@contextmanager
def reissue_for_group(old: str | None, new: str) -> Iterator[None]:
    """Around re-issuing for ``new``: a refusal of the new group becomes :class:`GroupChanged`.

    ``old`` is what :func:`changed_group` returned; with ``None`` nothing is changed.
    """
    try:
        yield
    except Revoked as exc:
        if old is None:
            raise
        raise GroupChanged(_message(old, new, exc.problem)) from None
    except WrongIdentity as exc:
        if old is None:
            raise
        raise GroupChanged(_message(old, new, str(exc))) from None


def _message(old: str, new: str, problem: str) -> str:
    return (f"the break-glass group changed in the secret from {old!r} to {new!r}; the API server does not "
            f"grant {new!r} yet ({problem}). The kubeconfig for {old!r} is kept and the agent retries with "
            f"back-off; bind {new!r} in the ClusterRoleBinding lifeline-breakglass (the Region workflow does "
            f"when it runs for this cluster) or pin breakglass_group = {old!r} in the agent config")  # fmt: skip
