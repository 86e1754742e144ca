"""CertificateSigningRequests: validation and admission (subject restriction, approval), as kube-apiserver does."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from cryptography.x509.oid import NameOID

from lab.pki import CsrError, parse_csr

from . import errors
from .rbac_eval import MASTERS_GROUP, UserInfo
from .store import timestamp

GROUP = "certificates.k8s.io"
PLURAL = "certificatesigningrequests"
KIND = "CertificateSigningRequest"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
VALID_USAGES = sorted([
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
])
Obj = dict[str, Any]


def request_bytes(csr: Obj) -> bytes:
    """The decoded ``spec.request`` (JSON carries it base64); 400 like the real decoder otherwise."""
    raw = (csr.get("spec") or {}).get("request") or ""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.bad_request(
            f"CertificateSigningRequest in version \"v1\" cannot be handled as a {KIND}: "
            f"illegal base64 data: {exc}"
        ) from exc


_OBJECT_META = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
                "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
                "ownerReferences", "finalizers", "managedFields"}
_KNOWN_FIELDS: dict[str, set[str]] = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "metadata": _OBJECT_META,
    "spec": {"request", "signerName", "expirationSeconds", "usages", "username", "uid", "groups", "extra"},
    "status": {"conditions", "certificate"},
}


def check_strict_fields(csr: Obj) -> None:
    """``fieldValidation=Strict`` (kubectl's default): unknown fields are a 400, as the real decoder says."""
    unknown = [key for key in csr if key not in _KNOWN_FIELDS[""]]
    for section in ("metadata", "spec", "status"):
        value = csr.get(section)
        if isinstance(value, dict):
            unknown += [f"{section}.{key}" for key in value if key not in _KNOWN_FIELDS[section]]
    if unknown:
        listed = ", ".join(f'unknown field "{field}"' for field in unknown)
        raise errors.bad_request(f'{KIND} in version "v1" cannot be handled as a {KIND}: '
                                 f"strict decoding error: {listed}")


def validate(csr: Obj, min_expiration_seconds: int) -> None:
    """Kubernetes' ``ValidateCertificateSigningRequestCreate`` for the rules this lab cares about (422)."""
    name = csr["metadata"].get("name", "")
    spec = csr.get("spec") or {}
    problems: list[errors.FieldError] = []
    request = request_bytes(csr)
    try:
        parse_csr(request)
    except CsrError as exc:
        problems.append(errors.invalid("spec.request", errors.go_bytes(request), str(exc)))
    usages = spec.get("usages") or []
    if not usages:
        problems.append(errors.required("spec.usages"))  # v1.28 kube-apiserver gives no detail
    for index, usage in enumerate(usages):
        if usage not in VALID_USAGES:
            problems.append(errors.not_supported(f"spec.usages[{index}]", usage, VALID_USAGES))
    signer = spec.get("signerName") or ""
    if not signer:
        problems.append(errors.required("spec.signerName"))
    elif "/" not in signer:
        problems.append(errors.invalid(
            "spec.signerName", f'"{signer}"',
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
    expiration = spec.get("expirationSeconds")
    if expiration is not None and expiration < min_expiration_seconds:
        minimum = _describe_minimum(min_expiration_seconds)
        problems.append(errors.invalid("spec.expirationSeconds", str(expiration),
                                       f"may not specify a duration less than {minimum}"))
    if problems:
        raise errors.unprocessable(GROUP, KIND, name, problems)


def _describe_minimum(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{seconds} seconds ({minutes} minute{'s' if minutes != 1 else ''})"
    return f"{seconds} seconds"


def admit_subject(csr: Obj) -> None:
    """``CertificateSubjectRestriction``: no ``O=system:masters`` for the kube-apiserver-client signer."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBE_APISERVER_CLIENT:
        return
    name = csr["metadata"].get("name", "")
    try:
        parsed = parse_csr(request_bytes(csr))
    except CsrError as exc:
        raise errors.forbidden(GROUP, PLURAL, name, f"failed to parse CSR: {exc}") from exc
    for attribute in parsed.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        if attribute.value == MASTERS_GROUP:
            raise errors.forbidden(GROUP, PLURAL, name,
                                   f"use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed")


def prepare_create(csr: Obj, user: UserInfo) -> Obj:
    """Set the requester fields from the authenticated user and clear the status (as the strategy does)."""
    spec = csr.setdefault("spec", {})
    spec["username"] = user.name
    spec["groups"] = list(user.groups)
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    csr["status"] = {}
    return csr


def signer_allowed(signer_name: str, can_approve: Callable[[str], bool]) -> bool:
    """``approve`` on ``signers`` named exactly, or the ``<domain>/*`` wildcard."""
    return can_approve(signer_name) or can_approve(signer_name.split("/", 1)[0] + "/*")


def admit_approval(current: Obj, can_approve: Callable[[str], bool]) -> None:
    signer = current["spec"].get("signerName", "")
    if not signer_allowed(signer, can_approve):
        raise errors.forbidden(GROUP, PLURAL, current["metadata"]["name"],
                               f'user not permitted to approve requests with signerName "{signer}"')


def normalise_conditions(conditions: list[Obj], name: str) -> list[Obj]:
    now = timestamp()
    types = set()
    for condition in conditions:
        condition.setdefault("status", "True")
        condition.setdefault("lastUpdateTime", now)
        condition.setdefault("lastTransitionTime", now)
        types.add(condition.get("type"))
    if {"Approved", "Denied"} <= types:
        index = next(i for i, c in enumerate(conditions) if c.get("type") in ("Approved", "Denied") and i > 0)
        kind = conditions[index]["type"]
        raise errors.unprocessable(GROUP, KIND, name, [errors.invalid(
            f"status.conditions[{index}].type", f'"{kind}"', "Approved and Denied conditions are mutually exclusive"
        )])
    return conditions


def has_condition(csr: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True"
               for c in (csr.get("status") or {}).get("conditions") or [])
