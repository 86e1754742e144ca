"""Watch streams (``?watch=true``): newline-delimited JSON events, Table rows for ``kubectl get -w``,
and the initial-events bookmark client-go's WatchList expects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from . import errors, selectors, tables
from .resources import ResourceType
from .store import ObjectStore, ResourceVersionTooOld

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_TIMEOUT_SECONDS = 1800
BOOKMARK_INTERVAL = 30.0
Obj = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    namespace: str | None  # None = all namespaces
    matches: selectors.Predicate

    def __contains__(self, obj: Obj) -> bool:
        return (self.namespace is None or obj["metadata"].get("namespace") == self.namespace) and self.matches(obj)


def stream_response(store: ObjectStore, request: Request, rtype: ResourceType, scope: Scope,
                    stopping: threading.Event) -> Response:
    since_text = request.args.get("resourceVersion", "")
    initial_events = request.args.get("sendInitialEvents", "").lower() == "true"
    if since_text not in ("", "0") and not since_text.isdigit():
        raise errors.bad_request(f'invalid resource version "{since_text}"')
    try:
        timeout = float(request.args.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
    except ValueError as exc:
        raise errors.bad_request(f"invalid timeoutSeconds: {exc}") from exc
    deadline = time.monotonic() + timeout
    as_table = "as=Table" in request.headers.get("Accept", "")
    include = request.args.get("includeObject", "Metadata")

    bookmarks = request.args.get("allowWatchBookmarks", "").lower() == "true"

    def bookmark(version: int, annotations: dict[str, str] | None = None) -> Obj:
        meta: Obj = {"resourceVersion": str(version)}
        if annotations:
            meta["annotations"] = annotations
        return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta}

    def stop() -> bool:
        return stopping.is_set() or time.monotonic() >= deadline

    def line(kind: str, obj: Obj) -> bytes:
        if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = tables.table(rtype.plural, [obj], obj["metadata"].get("resourceVersion", ""), include)
        return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

    def stream() -> Iterator[bytes]:
        if since_text in ("", "0") or initial_events:
            items, since = store.list(rtype.plural, scope.namespace)
            for item in items:
                if item in scope:
                    yield line("ADDED", item)
            if initial_events:
                yield line("BOOKMARK", bookmark(since, {INITIAL_EVENTS_END: "true"}))
        else:
            since = int(since_text)
        try:
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            for event in store.events(rtype.plural, since, stop):
                if event is not None and event.object in scope:
                    yield line(event.type, event.object)
                if bookmarks and time.monotonic() >= next_bookmark:
                    # Also how a watch whose client went away ends: the write fails.
                    yield line("BOOKMARK", bookmark(store.resource_version))
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        except ResourceVersionTooOld as exc:
            yield line("ERROR", errors.ApiError(410, "Expired", str(exc)).status())

    return Response(stream(), content_type="application/json", direct_passthrough=True)
