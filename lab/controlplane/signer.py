"""The csrsigning and csrcleaner controllers of kube-controller-manager, for the lab's cluster CA."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from typing import Any

from cryptography import x509

from lab.pki import ClusterCA, CsrError

from . import errors
from .csr import KUBE_APISERVER_CLIENT, PLURAL, has_condition, request_bytes
from .store import ObjectStore, timestamp

log = logging.getLogger(__name__)

BACKDATE = dt.timedelta(minutes=5)
SHORT_TTL = dt.timedelta(hours=8)
# kube-controller-manager v1.28.7's csrsigning puts the certificate in the CSR a median 4.1 and 5.5 ms (two runs
# of 60 rounds, lab loopback, 2 CPUs) after the approval PUT is answered, as seen in a watch event
# (bench/lab_speed.py; bench/results/lab_speed.json is the 5.5 ms run). This signer's own work (signing, the
# store update, the watch event) takes ~2 ms of that; it waits the rest (emulated median in that run: 4.7 ms).
SIGNING_DELAY = 0.0025
GC_INTERVAL = 30.0
FINISHED_TTL = dt.timedelta(hours=1)
PENDING_TTL = dt.timedelta(hours=24)
Obj = dict[str, Any]


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
        ttl = dt.timedelta(seconds=min(requested, cap) if requested else cap)
        not_before = now - BACKDATE
        # kube-controller-manager v1.28 (measured on the real backend): a TTL under 8 h ends TTL after now,
        # a longer one TTL after the backdated notBefore.
        not_after = now + ttl if ttl < SHORT_TTL else not_before + ttl
        not_after = min(not_after, self.ca.certificate.not_valid_after_utc)
        return self.ca.sign_csr(request_bytes(csr), not_before, not_after, csr["spec"].get("usages") or [])
