"""The sandbox cluster's object store: etcd plus the apiserver's registry layer of Kubernetes.

One `Store` per sandbox, shared by the HTTP API server and the simulated controllers in one asyncio
event loop, so it needs no locks — and must never block. Design:

- Objects are plain JSON-like dicts, stored version-independently under (group, plural) → namespace
  → name, so a get is two dict lookups and a namespaced list touches only that namespace. ``""`` is
  the core group and the namespace key of cluster-scoped objects. Stored dicts are never mutated
  after commit (a write replaces the whole object), so watch history and internal readers can share
  them; the public methods hand out copies.
- One monotonic counter gives every committed write its ``resourceVersion``; an unchanged update
  commits nothing, as the apiserver skips no-op writes.
- Each (group, plural) keeps a bounded history of its events for watch replay (`sandbox.history`);
  asking for events older than the history raises `Expired` (HTTP 410), which is what a real server
  answers after etcd compaction.
- Writes run the type's strategy (`sandbox.strategies`): defaults, validation, generation bumps.
- Deletes cascade as the garbage collector and namespace controller would, but at once: a namespace
  takes its contents with it, and objects whose ``ownerReferences`` name a deleted uid are deleted
  too (unless orphaned).
- The `Registry` follows CRD writes, so custom kinds appear and disappear with their definitions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox import strategies
from sandbox.errors import AlreadyExists, Conflict, Invalid, NotFound
from sandbox.history import Event, History, Listener, Listeners
from sandbox.labels import parse_selector
from sandbox.resources import Registry, ResourceType, default_crds

__all__ = ["Event", "Listener", "Store", "clone", "copy_obj", "now"]

Obj = dict[str, Any]
Objs = list[Obj]
_EventList = list[Event]
_Buckets = list[tuple[str, dict[str, Obj]]]  # module-level: inside Store, `list` names the method
Callback = Callable[[str, str, str, Obj], None]

log = logging.getLogger(__name__)

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def clone(value: Any) -> Any:
    """A deep copy of JSON-like data, several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def copy_obj(obj: Obj) -> Obj:
    """`clone` for one object, typed."""
    return {k: clone(v) for k, v in obj.items()}


def _out(obj: Obj, copy: bool) -> Obj:
    return copy_obj(obj) if copy else obj


_clock: list[Any] = [-1, ""]  # (whole second, its RFC 3339 form): formatted once per second


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC)."""
    second = int(time.time())
    if second != _clock[0]:
        _clock[0] = second
        _clock[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(_clock[1])


class Store:
    """A single-process object store with Kubernetes write semantics (see the module docstring)."""

    def __init__(
        self,
        *,
        registry: Registry | None = None,
        history_size: int = 5000,
        namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
        install_default_crds: bool = True,
    ) -> None:
        self.registry = registry or Registry()
        self._data: dict[tuple[str, str], dict[str, dict[str, Obj]]] = {}
        self._rv = 0
        self._history = History(history_size)
        self._subscribers: list[Callback] = []
        self._listeners = Listeners()
        # owner uid -> keys of its dependents, for cascading deletes without a scan
        self._dependents: dict[str, set[tuple[str, str, str, str]]] = {}
        for name in namespaces:
            self.create("", "namespaces", {"metadata": {"name": name}})
        if install_default_crds:
            for doc in default_crds():
                self.create(*CRD_KEY, doc)

    # --- reads

    @property
    def resource_version(self) -> int:
        """The version of the latest committed write (a list's metadata.resourceVersion)."""
        return self._rv

    def get(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        found = self.peek(group, plural, namespace, name)
        return None if found is None else clone(found)

    def peek(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        """The stored object itself, without a copy: read it, never mutate it."""
        return self._data.get((group, plural), {}).get(namespace or "", {}).get(name)

    def list(
        self,
        group: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> Objs:
        return [
            clone(o) for o in self.scan(group, plural, namespace, label_selector=label_selector)
        ]

    def scan(
        self,
        group: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> Objs:
        """Stored objects (no copies), ordered by namespace then name as etcd keys order them."""
        by_ns = self._data.get((group, plural), {})
        if namespace:
            buckets: _Buckets = [(namespace, by_ns.get(namespace, {}))]
        else:
            buckets = sorted(by_ns.items())
        selector = parse_selector(label_selector) if label_selector else None
        out: Objs = []
        for _, bucket in buckets:
            for name in sorted(bucket):
                obj = bucket[name]
                if selector is None or selector.matches(obj["metadata"].get("labels") or {}):
                    out.append(obj)
        return out

    def count(self) -> int:
        """How many objects are stored (for benchmarks and health checks)."""
        return sum(len(b) for by_ns in self._data.values() for b in by_ns.values())

    def history(self, group: str, plural: str, after: int) -> _EventList:
        """Events of a type newer than ``after``; raises `Expired` if some were forgotten."""
        return self._history.since(group, plural, after)

    # --- writes

    def create(self, group: str, plural: str, obj: Obj, *, copy: bool = True) -> Obj:
        """Store a new object; raises `AlreadyExists` (a `Conflict`) if the name is taken.

        ``copy=False`` (here and in the other writes) returns the stored object itself, read-only:
        the API server only serialises it, and a copy per write is its largest avoidable cost. On
        create it also adopts ``obj`` instead of copying it: the caller hands over an object it
        will not touch again (the API server's freshly decoded request body).
        """
        rt = self._type(group, plural)
        strategies.check_shape(rt, obj)
        new = self._typed(rt, obj, deep=copy)
        meta = new.setdefault("metadata", {})
        strategies.prepare_create(rt, new)
        namespace = self._namespace_of(rt, meta)
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = self._generate_name(rt, namespace, str(meta["generateName"]))
            meta["name"] = name
        strategies.validate(rt, new)
        bucket = self._data.setdefault(rt.key, {}).setdefault(namespace, {})
        if name in bucket:
            raise AlreadyExists.of(group, plural, name)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        for stale in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(stale, None)
        if rt.generation:
            meta["generation"] = 1
        return _out(self._commit("ADDED", rt, namespace, new), copy)

    def update(self, group: str, plural: str, obj: Obj, *, copy: bool = True) -> Obj:
        """Replace spec and metadata (status is kept when the type has a /status subresource)."""
        rt = self._type(group, plural)
        current, new = self._replacing(rt, obj)
        if rt.status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = clone(current["status"])
        strategies.prepare_update(rt, new, current)
        strategies.validate(rt, new)
        return _out(self._replace(rt, current, new), copy)

    def update_status(self, group: str, plural: str, obj: Obj, *, copy: bool = True) -> Obj:
        """Replace status only; everything else stays as stored."""
        rt = self._type(group, plural)
        current, incoming = self._replacing(rt, obj)
        new = clone(current)
        if "status" in incoming:
            new["status"] = incoming["status"]
        else:
            new.pop("status", None)
        return _out(self._replace(rt, current, new), copy)

    def delete(
        self,
        group: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        preconditions: Obj | None = None,
        propagation: str = "Background",
        copy: bool = True,
    ) -> Obj | None:
        """Delete at once (no finalizers); returns the deleted object, or None if there was none."""
        rt = self._type(group, plural)
        ns = (namespace or "") if rt.namespaced else ""
        current = self._data.get(rt.key, {}).get(ns, {}).get(name)
        if current is None:
            return None
        meta = current["metadata"]
        for field in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                raise Conflict(
                    f"Precondition failed: {field} in precondition: {wanted}, "
                    f"{field} in object meta: {meta.get(field)}",
                    group=group,
                    plural=plural,
                    name=name,
                )
        if rt.key == CRD_KEY:
            self._purge_custom(current)
        del self._data[rt.key][ns][name]
        gone = clone(current)
        gone["metadata"]["resourceVersion"] = str(self._rv + 1)
        self._commit("DELETED", rt, ns, gone, previous=current)
        if propagation != "Orphan":
            self._cascade(rt, gone)
        return _out(gone, copy)

    # --- notifications

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(type, group, plural, copy)`` after each write; returns unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def listen(
        self,
        listener: Listener,
        *,
        group: str | None = None,
        plural: str | None = None,
        namespace: str | None = None,
    ) -> Callable[[], None]:
        """Like `subscribe` but without copies (for watches, which only serialise), optionally only
        for one type (``group`` and ``plural``) and namespace; returns the way to stop listening."""
        return self._listeners.add(listener, group, plural, namespace)

    # --- internals

    def _type(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, plural)
        if rt is None:
            raise NotFound(f"the server could not find the requested resource ({plural}.{group})")
        return rt

    @staticmethod
    def _typed(rt: ResourceType, obj: Obj, *, deep: bool = True) -> Obj:
        """A copy stamped with the preferred apiVersion and kind (storage is version-free)."""
        rest = {
            k: clone(v) if deep else v for k, v in obj.items() if k not in ("apiVersion", "kind")
        }
        return {"apiVersion": rt.api_version(), "kind": rt.kind, **rest}

    def _namespace_of(self, rt: ResourceType, meta: Obj) -> str:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        namespace = meta.get("namespace")
        if not namespace:
            kind = rt.kind
            raise Invalid.field(
                kind,
                rt.group,
                rt.plural,
                meta.get("name", ""),
                "metadata.namespace",
                "Required value",
            )
        return str(namespace)

    def _generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        bucket = self._data.get(rt.key, {}).get(namespace, {})
        while True:
            name = prefix + uuid.uuid4().hex[:5]
            if name not in bucket:
                return name

    def _replacing(self, rt: ResourceType, obj: Obj) -> tuple[Obj, Obj]:
        """The stored object an update replaces (resourceVersion checked) and the update."""
        strategies.check_shape(rt, obj)
        new = self._typed(rt, obj)
        meta = new.setdefault("metadata", {})
        namespace = self._namespace_of(rt, meta) if rt.namespaced else ""
        name = str(meta.get("name") or "")
        current = self._data.get(rt.key, {}).get(namespace, {}).get(name)
        if current is None:
            raise NotFound.of(rt.group, rt.plural, name)
        wanted = meta.get("resourceVersion")
        if wanted and str(wanted) != current["metadata"]["resourceVersion"]:
            raise Conflict.modified(rt.group, rt.plural, name)
        # What the apiserver owns cannot be changed by an update.
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        return current, new

    def _replace(self, rt: ResourceType, current: Obj, new: Obj) -> Obj:
        if new == current:
            return current  # a no-op write is not committed
        namespace = new["metadata"].get("namespace", "") if rt.namespaced else ""
        if rt.generation and strategies.spec_changed(rt, current, new):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 0)) + 1
        self._data[rt.key][namespace][new["metadata"]["name"]] = new
        return self._commit("MODIFIED", rt, namespace, new, previous=current)

    def _commit(
        self,
        event_type: str,
        rt: ResourceType,
        namespace: str,
        obj: Obj,
        previous: Obj | None = None,
    ) -> Obj:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        if event_type == "ADDED":
            self._data.setdefault(rt.key, {}).setdefault(namespace, {})[meta["name"]] = obj
        self._index_owners(rt, namespace, obj, previous, removed=event_type == "DELETED")
        before = previous if event_type == "MODIFIED" else None
        event = Event(self._rv, event_type, rt.group, rt.plural, namespace, obj, before)
        self._history.record(event)
        if rt.key == CRD_KEY:
            self.registry.on_crd_event(event_type, obj)
        self._notify(event)
        return obj

    def _notify(self, event: Event) -> None:
        self._listeners.notify(event)
        for callback in list(self._subscribers):
            try:
                callback(event.type, event.group, event.plural, clone(event.obj))
            except Exception:
                log.exception("store subscriber failed")

    def _index_owners(
        self, rt: ResourceType, namespace: str, obj: Obj, previous: Obj | None, *, removed: bool
    ) -> None:
        key = (rt.group, rt.plural, namespace, obj["metadata"]["name"])
        for old in (previous or {}).get("metadata", {}).get("ownerReferences") or []:
            self._dependents.get(str(old.get("uid")), set()).discard(key)
        if removed:
            return
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._dependents.setdefault(str(ref.get("uid")), set()).add(key)

    def _cascade(self, rt: ResourceType, gone: Obj) -> None:
        """Delete what the deleted object owned (and a namespace's contents), as the GC would."""
        for group, plural, ns, name in sorted(self._dependents.pop(gone["metadata"]["uid"], set())):
            if self.registry.lookup(group, plural) is not None:
                self.delete(group, plural, ns, name)
        if rt.key == ("", "namespaces"):
            for key, by_ns in list(self._data.items()):
                for name in sorted(by_ns.get(gone["metadata"]["name"], {})):
                    self.delete(*key, gone["metadata"]["name"], name)

    def _purge_custom(self, crd: Obj) -> None:
        """Deleting a CRD deletes every object of its kind (while the kind is still registered)."""
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        for obj in self.scan(group, plural):
            self.delete(group, plural, obj["metadata"].get("namespace"), obj["metadata"]["name"])
