"""CertificateSigningRequests: validation, admission (subject restriction, approval) and the signer."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from lab.pki import ClusterCA, CsrError, parse_csr

from . import errors
from .rbac_eval import MASTERS_GROUP, UserInfo
from .store import ObjectStore, timestamp

log = logging.getLogger(__name__)

GROUP = "certificates.k8s.io"
PLURAL = "certificatesigningrequests"
KIND = "CertificateSigningRequest"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
BACKDATE = dt.timedelta(minutes=5)
SIGNING_DELAY = 0.05
GC_INTERVAL = 30.0
FINISHED_TTL = dt.timedelta(hours=1)
PENDING_TTL = dt.timedelta(hours=24)
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
        problems.append(errors.required("spec.usages", "usages must be provided"))
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


def usage_problem(usages: list[str]) -> str | None:
    """The kube-apiserver-client signer's usage rule; the message the controller puts in ``Failed``."""
    for usage in usages:
        if usage not in ("digital signature", "key encipherment", "client auth"):
            return f"invalid usage for client certificate: {usage}"
    if "client auth" not in usages:
        return "missing required usage for client certificate: client auth"
    return None


class Signer:
    """The controller-manager's csrsigning controller for ``kubernetes.io/kube-apiserver-client``."""

    def __init__(self, store: ObjectStore, ca: ClusterCA, signing_duration_seconds: int) -> None:
        self.store = store
        self.ca = ca
        self.signing_duration_seconds = signing_duration_seconds
        self.clock_offset = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="csr-signer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def restarted(self) -> Signer:
        """A fresh signer with this one's settings (a thread runs only once)."""
        again = Signer(self.store, self.ca, self.signing_duration_seconds)
        again.clock_offset = self.clock_offset
        return again

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset)

    def _run(self) -> None:
        since = self.store.resource_version
        self._sweep()
        next_collection = time.monotonic() + GC_INTERVAL
        for event in self.store.events(PLURAL, since, self._stopped.is_set):
            if time.monotonic() >= next_collection:
                self.collect_garbage()
                next_collection = time.monotonic() + GC_INTERVAL
            if event is None or event.type == "DELETED":
                continue
            if self._wants_signing(event.object):
                time.sleep(SIGNING_DELAY)
                self._sign_one(event.object["metadata"]["name"])

    def _sweep(self) -> None:
        items, _ = self.store.list(PLURAL)
        for csr in items:
            if self._wants_signing(csr):
                self._sign_one(csr["metadata"]["name"])

    def collect_garbage(self) -> list[str]:
        """Delete CSRs as kube-controller-manager's csrcleaner does; returns the names deleted.

        Approved, denied or failed: one hour after that condition. Pending: 24 hours after creation.
        Issued: also once the certificate has expired.
        """
        now = self.now()
        doomed = []
        for csr in self.store.list(PLURAL)[0]:
            if self._expired(csr, now):
                doomed.append(csr["metadata"]["name"])
        for name in doomed:
            try:
                self.store.delete(PLURAL, "", name)
            except errors.ApiError:
                continue
        return doomed

    @staticmethod
    def _expired(csr: Obj, now: dt.datetime) -> bool:
        def parse(stamp: str | None) -> dt.datetime | None:
            if not stamp:
                return None
            return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)

        status = csr.get("status") or {}
        for condition in status.get("conditions") or []:
            updated = parse(condition.get("lastUpdateTime"))
            if condition.get("type") in ("Approved", "Denied", "Failed") and updated and now - updated > FINISHED_TTL:
                return True
        certificate = status.get("certificate")
        if certificate:
            try:
                issued = x509.load_pem_x509_certificate(base64.b64decode(certificate))
            except ValueError:
                return False
            return issued.not_valid_after_utc < now
        created = parse(csr["metadata"].get("creationTimestamp"))
        return not status.get("conditions") and created is not None and now - created > PENDING_TTL

    @staticmethod
    def _wants_signing(csr: Obj) -> bool:
        status = csr.get("status") or {}
        return (
            csr["spec"].get("signerName") == KUBE_APISERVER_CLIENT
            and has_condition(csr, "Approved")
            and not has_condition(csr, "Denied")
            and not has_condition(csr, "Failed")
            and not status.get("certificate")
        )

    def _sign_one(self, name: str) -> None:
        def change(csr: Obj) -> None:
            if not self._wants_signing(csr):
                return
            status = csr.setdefault("status", {})
            problem = usage_problem(csr["spec"].get("usages") or [])
            if problem is None:
                try:
                    status["certificate"] = base64.b64encode(self.issue(csr)).decode("ascii")
                    return
                except (CsrError, ValueError) as exc:
                    problem = str(exc)
            now = timestamp()
            status.setdefault("conditions", []).append({
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": problem, "lastUpdateTime": now, "lastTransitionTime": now,
            })

        try:
            self.store.mutate(PLURAL, "", name, change)
        except errors.ApiError as exc:  # deleted meanwhile
            log.debug("signer skipped %s: %s", name, exc)

    def issue(self, csr: Obj) -> bytes:
        now = self.now()
        cap = self.signing_duration_seconds
        requested = csr["spec"].get("expirationSeconds")
        seconds = min(requested, cap) if requested else cap
        not_after = min(now + dt.timedelta(seconds=seconds), self.ca.certificate.not_valid_after_utc)
        return self.ca.sign_csr(request_bytes(csr), now - BACKDATE, not_after, csr["spec"].get("usages") or [])
