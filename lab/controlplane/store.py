"""A thread-safe in-memory object store with resourceVersions and a watch event log (the lab's etcd)."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from .resources import RESOURCE_TYPES, ResourceType

Object = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace or "", name)

EVENT_HISTORY = 2000


def timestamp(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    plural: str
    object: Object


class ResourceVersionTooOld(Exception):
    """The watch asked to resume from a version no longer in the event log (HTTP 410 Gone)."""


class ObjectStore:
    """Objects keyed by (plural, namespace, name). Every method returns deep copies."""

    def __init__(self) -> None:
        self._objects: dict[Key, Object] = {}
        self._types = {t.plural: t for t in RESOURCE_TYPES}
        self._revision = 1
        self._changed = threading.Condition(threading.RLock())
        self._events: collections.deque[WatchEvent] = collections.deque(maxlen=EVENT_HISTORY)

    @property
    def resource_version(self) -> int:
        with self._changed:
            return self._revision

    def _type(self, plural: str) -> ResourceType:
        return self._types[plural]

    @staticmethod
    def _key(plural: str, obj: Object) -> Key:
        meta = obj.get("metadata") or {}
        return plural, meta.get("namespace") or "", meta.get("name") or ""

    def _record(self, kind: str, plural: str, obj: Object) -> None:
        self._events.append(WatchEvent(self._revision, kind, plural, copy.deepcopy(obj)))
        self._changed.notify_all()

    def _bump(self, obj: Object) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)

    def get(self, plural: str, namespace: str, name: str) -> Object:
        with self._changed:
            obj = self._objects.get((plural, namespace, name))
            if obj is None:
                rtype = self._type(plural)
                raise errors.not_found(rtype.group, plural, name)
            return copy.deepcopy(obj)

    def find(self, plural: str, namespace: str, name: str) -> Object | None:
        with self._changed:
            obj = self._objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, plural: str, namespace: str | None = None) -> tuple[list[Object], int]:
        """Objects of one resource (in ``namespace`` if given), sorted by namespace and name."""
        with self._changed:
            items = [
                copy.deepcopy(obj)
                for (p, ns, _), obj in sorted(self._objects.items())
                if p == plural and (namespace is None or ns == namespace)
            ]
            return items, self._revision

    def create(self, plural: str, obj: Object) -> Object:
        rtype = self._type(plural)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        with self._changed:
            key = self._key(plural, obj)
            if key in self._objects:
                raise errors.already_exists(rtype.group, plural, key[2])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = timestamp()
            obj["apiVersion"] = rtype.api_version
            obj["kind"] = rtype.kind
            self._bump(obj)
            self._objects[key] = obj
            self._record("ADDED", plural, obj)
            return copy.deepcopy(obj)

    def update(self, plural: str, obj: Object) -> Object:
        """Replace an object; its ``metadata.resourceVersion``, if set, must be the current one (409)."""
        rtype = self._type(plural)
        obj = copy.deepcopy(obj)
        with self._changed:
            key = self._key(plural, obj)
            current = self._objects.get(key)
            if current is None:
                raise errors.not_found(rtype.group, plural, key[2])
            wanted = obj.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rtype.group, plural, key[2])
            for field in ("uid", "creationTimestamp"):
                obj["metadata"][field] = current["metadata"][field]
            obj["apiVersion"] = rtype.api_version
            obj["kind"] = rtype.kind
            self._bump(obj)
            self._objects[key] = obj
            self._record("MODIFIED", plural, obj)
            return copy.deepcopy(obj)

    def mutate(self, plural: str, namespace: str, name: str, change: Callable[[Object], None]) -> Object:
        """Atomically read, change in place and write back one object (for controllers)."""
        with self._changed:
            obj = self.get(plural, namespace, name)
            change(obj)
            obj["metadata"].pop("resourceVersion", None)
            return self.update(plural, obj)

    def delete(self, plural: str, namespace: str, name: str) -> Object:
        rtype = self._type(plural)
        with self._changed:
            obj = self._objects.pop((plural, namespace, name), None)
            if obj is None:
                raise errors.not_found(rtype.group, plural, name)
            self._revision += 1
            self._record("DELETED", plural, obj)
            return copy.deepcopy(obj)

    def purge_namespace(self, namespace: str) -> None:
        """Delete every object in ``namespace`` (what the namespace controller does after a delete)."""
        with self._changed:
            for plural, ns, name in [k for k in self._objects if k[1] == namespace]:
                self.delete(plural, ns, name)

    def events(
        self, plural: str, since: int, stop: Callable[[], bool], poll: float = 0.5
    ) -> Iterator[WatchEvent | None]:
        """Events of ``plural`` after revision ``since``; yields ``None`` while idle so callers can stop."""
        with self._changed:
            full = len(self._events) == self._events.maxlen
            if full and since < self._events[0].resource_version - 1:
                oldest = self._events[0].resource_version - 1
                raise ResourceVersionTooOld(f"too old resource version: {since} ({oldest})")
        position = since
        while not stop():
            with self._changed:
                pending = [e for e in self._events if e.resource_version > position]
                if not pending:
                    self._changed.wait(poll)
                    pending = [e for e in self._events if e.resource_version > position]
            if not pending:
                yield None
                continue
            for event in pending:
                position = event.resource_version
                if event.plural == plural:
                    yield event
