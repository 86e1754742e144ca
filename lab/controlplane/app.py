"""The API server's WSGI application: authentication, authorization, dispatch, Status errors, watch."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from werkzeug.wrappers import Request, Response

from . import discovery, errors, protobuf, rbac_eval, requestinfo, selectors, tables, watch
from .authn import AuthenticationError, IamTokenAuthenticator, authenticate_certificate
from .handlers import Handlers
from .rbac_eval import ANONYMOUS_USER, UNAUTHENTICATED_GROUP, Attributes, Decision, UserInfo
from .store import ObjectStore

log = logging.getLogger(__name__)
Obj = dict[str, Any]

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class StorePolicy:
    """RBAC objects read from the store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def cluster_role(self, name: str) -> Obj | None:
        return self.store.find("clusterroles", "", name)

    def role(self, namespace: str, name: str) -> Obj | None:
        return self.store.find("roles", namespace, name)

    def cluster_role_bindings(self) -> Iterable[Obj]:
        return self.store.list("clusterrolebindings")[0]

    def role_bindings(self, namespace: str) -> Iterable[Obj]:
        return self.store.list("rolebindings", namespace)[0]


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    remaining: int


@dataclass
class ApiServerApp:
    store: ObjectStore
    ca_cert: x509.Certificate
    ca_pem: bytes
    version_info: Obj
    min_expiration_seconds: int
    iam: IamTokenAuthenticator | None = None
    server_address: Callable[[], str] = lambda: ""
    stopping: threading.Event = field(default_factory=threading.Event)
    _faults: list[Fault] = field(default_factory=list)
    _faults_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.policy = StorePolicy(self.store)
        self.handlers = Handlers(self.store, self.ca_pem, self.min_expiration_seconds, self.authorize)

    # --- fault injection ------------------------------------------------------------------------------
    def fail_next(self, path_regex: str, status: int = 500, count: int = 1) -> None:
        with self._faults_lock:
            self._faults.append(Fault(re.compile(path_regex), status, count))

    def _injected_fault(self, path: str) -> errors.ApiError | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.pattern.search(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    reason = _REASONS.get(fault.status, "InternalError")
                    return errors.ApiError(fault.status, reason, f"injected fault: {reason}")
        return None

    # --- authn / authz --------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> UserInfo:
        problems: list[str] = []
        cert_pem = request.environ.get("SSL_CLIENT_CERT")
        if cert_pem:
            try:
                return authenticate_certificate(cert_pem, self.ca_cert)
            except AuthenticationError as exc:
                problems.append(str(exc))
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            if self.iam is not None and token:
                try:
                    return self.iam.authenticate(token)
                except AuthenticationError as exc:
                    problems.append(str(exc))
            else:
                problems.append("invalid bearer token")
        if problems:
            log.info("authentication failed: %s", "; ".join(problems))
            raise errors.unauthorized()
        return UserInfo(ANONYMOUS_USER, (UNAUTHENTICATED_GROUP,))

    def impersonate(self, request: Request, user: UserInfo) -> UserInfo:
        """Apply ``Impersonate-User``/``-Group``/``-Uid`` headers after checking the ``impersonate`` verb."""
        name = request.headers.get("Impersonate-User")
        groups = request.headers.getlist("Impersonate-Group")
        uid = request.headers.get("Impersonate-Uid", "")
        if not name:
            if groups or uid:
                raise errors.bad_request("requested impersonation without a user")
            return user
        wanted = [("", "users", name)] + [("", "groups", g) for g in groups]
        if uid:
            wanted.append(("authentication.k8s.io", "uids", uid))
        for group, resource, value in wanted:
            attrs = Attributes(user, "impersonate", True, group, resource, "", "", value)
            decision = self.authorize(attrs)
            if not decision.allowed:
                raise errors.forbidden(group, resource, value, rbac_eval.forbidden_message(attrs, decision.reason))
        if name == ANONYMOUS_USER:
            return UserInfo(name, tuple(dict.fromkeys([*groups, UNAUTHENTICATED_GROUP])), uid)
        return UserInfo(name, tuple(dict.fromkeys([*groups, rbac_eval.AUTHENTICATED_GROUP])), uid)

    def authorize(self, attrs: Attributes) -> Decision:
        return rbac_eval.authorize(attrs, self.policy)

    def _check_access(self, info: requestinfo.RequestInfo, user: UserInfo) -> None:
        attrs = Attributes(user, info.verb, info.resource_request, info.api_group, info.resource, info.subresource,
                           info.namespace, info.name, info.path)
        decision = self.authorize(attrs)
        if not decision.allowed:
            message = rbac_eval.forbidden_message(attrs, decision.reason)
            raise errors.forbidden(info.api_group, info.resource, info.name, message)

    # --- WSGI -----------------------------------------------------------------------------------------
    def __call__(self, environ: Obj, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.handle(request)
        except errors.ApiError as exc:
            response = self.json(exc.status(), exc.code)
        except Exception as exc:  # a bug here must still answer like an API server
            log.exception("internal error on %s %s", request.method, request.path)
            error = errors.internal_error(str(exc))
            response = self.json(error.status(), 500)
        return response(environ, start_response)

    @staticmethod
    def json(body: Obj, status: int = 200, content_type: str = "application/json") -> Response:
        return Response(json.dumps(body, separators=(",", ":")), status=status, content_type=content_type)

    def handle(self, request: Request) -> Response:
        fault = self._injected_fault(request.path)
        if fault is not None:
            raise fault
        user = self.impersonate(request, self.authenticate(request))
        watch = request.args.get("watch", "").lower() in ("true", "1")
        info = requestinfo.parse(request.method, request.path, watch)
        self._check_access(info, user)
        if not info.resource_request:
            return self.non_resource(request)
        if info.rtype is None:
            raise errors.path_not_found()
        if info.verb not in info.rtype.verbs and not (info.subresource and info.verb in ("get", "update", "patch")):
            raise errors.method_not_supported(info.api_group, info.resource, info.verb)
        return self.resource(request, info, user)

    def non_resource(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path in HEALTH_PATHS:
            return Response("ok", content_type="text/plain; charset=utf-8")
        if path == "/version":
            return self.json(self.version_info)
        if path in ("/api", "/apis") and discovery.wants_aggregated(request.headers.get("Accept", "")):
            aggregated = discovery.aggregated_discovery(legacy=path == "/api")
            return self.json(aggregated, content_type=discovery.AGGREGATED_V2)
        if path == "/api":
            return self.json(discovery.api_versions(self.server_address()))
        if path == "/apis":
            return self.json(discovery.api_group_list())
        if path == "/openapi/v3":
            return self.json(discovery.openapi_root())
        parts = path.strip("/").split("/")
        document: Obj | None = None
        if parts[0] == "api" and len(parts) == 2:
            document = discovery.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            document = discovery.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            document = discovery.api_resource_list(parts[1], parts[2])
        elif parts[:2] == ["openapi", "v3"] and len(parts) >= 4:
            group, version = ("", parts[3]) if parts[2] == "api" else (parts[3], parts[4] if len(parts) > 4 else "")
            document = discovery.openapi_document(group, version)
        if document is None:
            raise errors.path_not_found()
        return self.json(document)

    # --- resources ------------------------------------------------------------------------------------
    def _body(self, request: Request) -> Obj:
        if request.headers.get("Content-Type", "").startswith(protobuf.CONTENT_TYPE):
            return protobuf.decode(request.get_data())
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError as exc:
            raise errors.bad_request(f"the body of the request was in an unknown format: {exc}") from exc
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not a JSON object")
        return body

    def resource(self, request: Request, info: requestinfo.RequestInfo, user: UserInfo) -> Response:
        rtype = info.rtype
        assert rtype is not None
        dry_run = bool(request.args.getlist("dryRun"))
        if info.verb == "create":
            strict = request.args.get("fieldValidation") == "Strict"
            return self.json(self.handlers.create(info, user, self._body(request), dry_run, strict), 201)
        if info.verb == "update":
            return self.json(self.handlers.update(info, user, self._body(request), dry_run))
        if info.verb == "patch":
            content_type = request.headers.get("Content-Type", "")
            return self.json(self.handlers.patch(info, user, content_type, request.get_data(), dry_run))
        if info.verb == "delete":
            return self.json(self.handlers.delete(info, dry_run))
        matches = selectors.matcher(request.args.get("labelSelector"), request.args.get("fieldSelector"))
        namespace = info.namespace if rtype.namespaced and info.namespace else None
        if info.verb == "deletecollection":
            items, _ = self.store.list(rtype.plural, namespace)
            gone = [self.store.delete(rtype.plural, i["metadata"].get("namespace", ""), i["metadata"]["name"])
                    for i in items if matches(i)]
            return self.json(self._list_body(rtype.kind, rtype.api_version, gone, self.store.resource_version))
        if info.verb == "watch":
            return watch.stream_response(self.store, request, rtype, watch.Scope(namespace, matches), self.stopping)
        as_table = "as=Table" in request.headers.get("Accept", "")
        include = request.args.get("includeObject", "Metadata")
        if info.verb == "get":
            obj = self.store.get(rtype.plural, info.object_namespace, info.name)
            if as_table:
                return self.json(tables.table(rtype.plural, [obj], obj["metadata"]["resourceVersion"], include))
            return self.json(obj)
        items, version = self.store.list(rtype.plural, namespace)
        items = [i for i in items if matches(i)]
        if as_table:
            return self.json(tables.table(rtype.plural, items, str(version), include))
        return self.json(self._list_body(rtype.kind, rtype.api_version, items, version))

    @staticmethod
    def _list_body(kind: str, api_version: str, items: list[Obj], version: int) -> Obj:
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(version)}, "items": items}
