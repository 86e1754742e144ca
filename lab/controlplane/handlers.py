"""Resource operations: create, get, list, update (incl. subresources), patch, delete, reviews."""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import yaml

from . import csr as csrs
from . import errors
from .rbac_eval import Attributes, Decision, UserInfo
from .requestinfo import RequestInfo
from .resources import ResourceType
from .store import ObjectStore

Obj = dict[str, Any]
Authorizer = Callable[[Attributes], Decision]

MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used, approximately, for strategic merge patches)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(5))


PATH_SEGMENT_NAMED = {"certificatesigningrequests", "clusterroles", "clusterrolebindings", "roles", "rolebindings"}
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def name_problem(name: str, rtype: ResourceType) -> str | None:
    """Kubernetes' name validation: path segments for CSRs and RBAC, DNS names for the rest."""
    if rtype.plural in PATH_SEGMENT_NAMED:
        if name in (".", ".."):
            return f"may not be '{name}'"
        for forbidden in ("/", "%"):
            if forbidden in name:
                return f"may not contain '{forbidden}'"
        return None
    if rtype.plural == "namespaces":
        if len(name) <= 63 and re.fullmatch(DNS_LABEL, name):
            return None
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                f"start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                f"validation is '{DNS_LABEL}')")
    if len(name) <= 253 and re.fullmatch(DNS_SUBDOMAIN, name):
        return None
    return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
            f"is '{DNS_SUBDOMAIN}')")


def _check_name(name: str, rtype: ResourceType) -> None:
    if not name:
        raise errors.unprocessable(rtype.group, rtype.kind, "",
                                   [errors.required("metadata.name", "name or generateName is required")])
    problem = name_problem(name, rtype)
    if problem:
        raise errors.unprocessable(rtype.group, rtype.kind, name,
                                   [errors.invalid("metadata.name", f'"{name}"', problem)])


@dataclass
class Handlers:
    store: ObjectStore
    ca_pem: bytes
    min_expiration_seconds: int
    authorize: Authorizer

    # --- create -------------------------------------------------------------------------------------
    def create(self, info: RequestInfo, user: UserInfo, body: Obj, dry_run: bool, strict: bool = False) -> Obj:
        rtype = info.rtype
        assert rtype is not None
        if strict and rtype.plural == csrs.PLURAL:
            csrs.check_strict_fields(body)
        if not rtype.stored:
            return self.review(rtype, user, body)
        meta = body.setdefault("metadata", {})
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != info.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = info.namespace
            if self.store.find("namespaces", "", info.namespace) is None:
                raise errors.not_found("", "namespaces", info.namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _random_suffix()
        _check_name(meta.get("name", ""), rtype)
        if rtype.plural == csrs.PLURAL:
            csrs.validate(body, self.min_expiration_seconds)
            csrs.admit_subject(body)
            csrs.prepare_create(body, user)
        if rtype.plural == "namespaces":
            body["status"] = {"phase": "Active"}
            body.setdefault("spec", {"finalizers": ["kubernetes"]})
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        if dry_run:
            if self.store.find(rtype.plural, info.object_namespace, meta["name"]) is not None:
                raise errors.already_exists(rtype.group, rtype.plural, meta["name"])
            return {**body, "apiVersion": rtype.api_version, "kind": rtype.kind}
        created = self.store.create(rtype.plural, body)
        if rtype.plural == "namespaces":
            self.store.create("configmaps", {"metadata": {"name": "kube-root-ca.crt", "namespace": meta["name"]},
                                             "data": {"ca.crt": self.ca_pem.decode("ascii")}})
        return created

    # --- reviews ------------------------------------------------------------------------------------
    def review(self, rtype: ResourceType, user: UserInfo, body: Obj) -> Obj:
        result: Obj = {"kind": rtype.kind, "apiVersion": rtype.api_version,
                       "metadata": {"creationTimestamp": None}}
        if rtype.plural == "selfsubjectreviews":
            result["status"] = {"userInfo": user.as_dict()}
            return result
        spec = body.get("spec") or {}
        if rtype.plural == "subjectaccessreviews":
            subject = UserInfo(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""))
        else:
            subject = user
        decision = self.authorize(self._review_attributes(subject, spec))
        result["spec"] = spec
        result["status"] = {"allowed": decision.allowed}
        if decision.reason:
            result["status"]["reason"] = decision.reason
        return result

    @staticmethod
    def _review_attributes(user: UserInfo, spec: Obj) -> Attributes:
        if spec.get("nonResourceAttributes"):
            attrs = spec["nonResourceAttributes"]
            return Attributes(user, attrs.get("verb", ""), False, path=attrs.get("path", ""))
        attrs = spec.get("resourceAttributes") or {}
        return Attributes(
            user, attrs.get("verb", ""), True, api_group=attrs.get("group", ""), resource=attrs.get("resource", ""),
            subresource=attrs.get("subresource", ""), namespace=attrs.get("namespace", ""),
            name=attrs.get("name", ""),
        )

    # --- update -------------------------------------------------------------------------------------
    def update(self, info: RequestInfo, user: UserInfo, body: Obj, dry_run: bool) -> Obj:
        rtype = info.rtype
        assert rtype is not None
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != info.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({info.name})")
        meta["name"] = info.name
        if rtype.namespaced:
            meta["namespace"] = info.namespace
        current = self.store.get(rtype.plural, info.object_namespace, info.name)
        wanted_version = meta.get("resourceVersion")
        merged = self._merge_update(info, user, current, body)
        merged["metadata"]["resourceVersion"] = wanted_version
        if dry_run:
            return merged
        return self.store.update(rtype.plural, merged)

    def _merge_update(self, info: RequestInfo, user: UserInfo, current: Obj, body: Obj) -> Obj:
        rtype = info.rtype
        assert rtype is not None
        if info.subresource == "approval" and rtype.plural == csrs.PLURAL:
            csrs.admit_approval(current, lambda name: self._can(user, "approve", name))
            conditions = csrs.normalise_conditions((body.get("status") or {}).get("conditions") or [], info.name)
            updated = copy.deepcopy(current)
            updated.setdefault("status", {})["conditions"] = conditions
            return updated
        if info.subresource == "status":
            updated = copy.deepcopy(current)
            updated["status"] = body.get("status") or {}
            return updated
        if info.subresource:
            raise errors.path_not_found()
        updated = copy.deepcopy(body)
        if rtype.plural == csrs.PLURAL:
            updated["spec"], updated["status"] = current.get("spec"), current.get("status")
        elif "status" in current and rtype.subresources and "status" in rtype.subresources:
            updated["status"] = current["status"]
        return updated

    def _can(self, user: UserInfo, verb: str, signer_name: str) -> bool:
        attrs = Attributes(user, verb, True, api_group=csrs.GROUP, resource="signers", name=signer_name)
        return self.authorize(attrs).allowed

    # --- patch --------------------------------------------------------------------------------------
    def patch(self, info: RequestInfo, user: UserInfo, content_type: str, raw: bytes, dry_run: bool) -> Obj:
        rtype = info.rtype
        assert rtype is not None
        kind = content_type.split(";")[0].strip()
        current = self.store.find(rtype.plural, info.object_namespace, info.name)
        try:
            if kind == JSON_PATCH:
                if current is None:
                    raise errors.not_found(rtype.group, rtype.plural, info.name)
                patched = jsonpatch.JsonPatch(json.loads(raw)).apply(current)
            elif kind in MERGE_PATCH_TYPES or kind == APPLY_PATCH:
                document = yaml.safe_load(raw) if kind == APPLY_PATCH else json.loads(raw)
                if current is None:
                    if kind != APPLY_PATCH:
                        raise errors.not_found(rtype.group, rtype.plural, info.name)
                    return self.create(info, user, document, dry_run)
                patched = merge_patch(current, document)
            else:
                raise errors.ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                      f"format - accepted media types include: {JSON_PATCH}, "
                                      f"{', '.join(MERGE_PATCH_TYPES)}, {APPLY_PATCH}")
        except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        assert current is not None
        patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.update(info, user, patched, dry_run)

    # --- delete -------------------------------------------------------------------------------------
    def delete(self, info: RequestInfo, dry_run: bool) -> Obj:
        rtype = info.rtype
        assert rtype is not None
        if dry_run:
            return self.store.get(rtype.plural, info.object_namespace, info.name)
        deleted = self.store.delete(rtype.plural, info.object_namespace, info.name)
        if rtype.plural == "namespaces":
            self.store.purge_namespace(info.name)
        return deleted
