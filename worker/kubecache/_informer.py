"""One resource type kept current from the API server, as client-go's reflector and indexer do.

`Informer.run` LISTs the type (all namespaces, in pages), replaces what it held with the result,
then WATCHes from the list's ``resourceVersion`` with ``allowWatchBookmarks=true``:

- ``ADDED`` / ``MODIFIED`` / ``DELETED`` change one object; ``BOOKMARK`` only moves the version on;
- a watch the server ends (its ``timeoutSeconds``) is reopened from the last version seen;
- ``410 Gone`` (an ``ERROR`` event, or the watch request's answer) and any other ``ERROR`` event
  mean the version is too old: LIST again;
- a refused or dropped connection, a failed LIST or an unexpected answer: LIST again after an
  exponential backoff (reset once a watch delivers events), because a restarted server may not know
  the old version at all (etcd restored from a backup);
- a line that is not JSON, or an object without a name, is logged and skipped: one bad event never
  ends the type's view.

A re-LIST is applied as the difference from what was held (``ADDED`` / ``MODIFIED`` by
resourceVersion / ``DELETED``), so listeners hear about what changed while the watch was down.
Objects are stored as decoded, minus ``metadata.managedFields`` (most of a pod's bytes and read by
nobody here); readers get the stored dicts and must not change them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from activities.errors import ApiUnavailable, KubernetesError
from worker.kubecache._http import request_json, status_error

Obj = dict[str, Any]
log = logging.getLogger("coalmine.kubecache")


@dataclass(frozen=True)
class Resource:
    """A resource type to cache: ``Resource("discovery.k8s.io", "v1", "endpointslices")``."""

    group: str
    version: str
    plural: str

    @property
    def path(self) -> str:
        """The all-namespaces collection path (``/api/v1/pods``, ``/apis/<g>/<v>/<plural>``)."""
        if not self.group:
            return f"/api/{self.version}/{self.plural}"
        return f"/apis/{self.group}/{self.version}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Change(NamedTuple):
    """One change to the cached view, as listeners receive it; ``obj`` is the stored dict."""

    type: str  # ADDED | MODIFIED | DELETED
    group: str
    plural: str
    namespace: str  # "" for cluster-scoped objects
    obj: Obj
    previous: Obj | None = None  # the object before a MODIFIED


IndexFunc = Callable[[Obj], Iterable[str]]
"""The index values of an object (client-go's ``IndexFunc``): e.g. ``["test/podinfo"]``."""


@dataclass(frozen=True)
class WatchSettings:
    """Timing of every type's LIST and WATCH."""

    page_size: int = 500
    """Objects per LIST page (``limit``); further pages follow ``continue``."""
    watch_timeout: float = 300.0
    """A watch's ``timeoutSeconds`` is this times 1–2 (spread, as client-go spreads it)."""
    request_timeout: float = 60.0
    """Seconds for one LIST page."""
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


def _meta(obj: Obj) -> Obj:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-delimited lines of any length (aiohttp's own ``readline`` caps them at 128 KiB)."""
    buffer = bytearray()
    async for chunk in content.iter_any():
        search = len(buffer)  # only the new bytes can hold the next newline
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", search)) >= 0:
            if end > start:
                yield bytes(buffer[start:end])
            start = search = end + 1
        del buffer[:start]
    if buffer.strip():
        yield bytes(buffer)


class _Index:
    """Objects by the values an `IndexFunc` gives them."""

    def __init__(self, name: str, fn: IndexFunc) -> None:
        self.name, self._fn = name, fn
        self._buckets: dict[str, dict[tuple[str, str], Obj]] = {}
        self._values: dict[tuple[str, str], tuple[str, ...]] = {}

    def put(self, key: tuple[str, str], obj: Obj) -> None:
        self.remove(key)
        try:
            values = tuple(self._fn(obj))
        except Exception:
            log.exception("index %s failed on %s: object not indexed", self.name, key)
            return
        self._values[key] = values
        for value in values:
            self._buckets.setdefault(value, {})[key] = obj

    def remove(self, key: tuple[str, str]) -> None:
        for value in self._values.pop(key, ()):
            bucket = self._buckets.get(value, {})
            bucket.pop(key, None)
            if not bucket:
                self._buckets.pop(value, None)

    def get(self, value: str) -> list[Obj]:
        return list(self._buckets.get(value, {}).values())

    def clear(self) -> None:
        self._buckets.clear()
        self._values.clear()


class Informer:
    """The cached objects of one type, and the task that keeps them current."""

    def __init__(
        self,
        resource: Resource,
        *,
        url: str,
        settings: WatchSettings,
        notify: Callable[[Change], None],
    ) -> None:
        self.resource = resource
        self._url = url
        self._settings = settings
        self._notify = notify
        self._objects: dict[str, dict[str, Obj]] = {}  # namespace → name → object
        self._indexes: dict[str, _Index] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.lists = 0
        """LISTs completed (the first one, then one per re-LIST)."""
        self.last_error = ""
        """Why the latest attempt failed; empty once a LIST succeeds again."""

    # --- reads -------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._objects.get(namespace, {}).get(name)

    def items(self, namespace: str | None) -> list[Obj]:
        if namespace is not None:
            return list(self._objects.get(namespace, {}).values())
        return [obj for objects in self._objects.values() for obj in objects.values()]

    def add_index(self, name: str, fn: IndexFunc) -> None:
        index = self._indexes[name] = _Index(name, fn)
        for namespace, objects in self._objects.items():
            for obj_name, obj in objects.items():
                index.put((namespace, obj_name), obj)

    def by_index(self, name: str, value: str) -> list[Obj]:
        index = self._indexes.get(name)
        if index is None:
            raise KeyError(f"{self.resource} has no index {name!r}: add_index it first")
        return index.get(value)

    # --- applying what the server says -------------------------------------------------------

    def _key(self, obj: Obj) -> tuple[str, str] | None:
        md = _meta(obj)
        name = md.get("name")
        if not isinstance(name, str) or not name:
            log.warning("%s: object without metadata.name skipped: %.200r", self.resource, obj)
            return None
        md.pop("managedFields", None)
        return str(md.get("namespace") or ""), name

    def _store(self, key: tuple[str, str], obj: Obj | None) -> Obj | None:
        """Put (or, for ``None``, remove) one object; returns what was there."""
        namespace, name = key
        objects = self._objects.setdefault(namespace, {})
        previous = objects.pop(name, None) if obj is None else objects.get(name)
        if obj is not None:
            objects[name] = obj
        elif not objects:
            del self._objects[namespace]
        for index in self._indexes.values():
            if obj is None:
                index.remove(key)
            else:
                index.put(key, obj)
        return previous

    def _change(self, kind: str, key: tuple[str, str], obj: Obj, previous: Obj | None) -> Change:
        group, plural = self.resource.group, self.resource.plural
        return Change(kind, group, plural, key[0], obj, previous)

    def apply(self, kind: str, obj: Obj) -> Change | None:
        """One watch event's object (ADDED, MODIFIED or DELETED) into the view."""
        key = self._key(obj)
        if key is None:
            return None
        if kind == "DELETED":
            gone = self._store(key, None)
            return None if gone is None else self._change("DELETED", key, obj, None)
        previous = self._store(key, obj)
        return self._change("ADDED" if previous is None else "MODIFIED", key, obj, previous)

    def replace(self, objs: list[Obj]) -> list[Change]:
        """A LIST's result as the new view; the changes it makes to the old one."""
        old = self._objects
        self._objects = {}
        for index in self._indexes.values():
            index.clear()  # refilled by _store below
        changes = []
        for obj in objs:
            key = self._key(obj)
            if key is None:
                continue
            self._store(key, obj)
            before = old.get(key[0], {}).pop(key[1], None)
            if before is None:
                changes.append(self._change("ADDED", key, obj, None))
            elif _meta(before).get("resourceVersion") != _meta(obj).get("resourceVersion"):
                changes.append(self._change("MODIFIED", key, obj, before))
        for namespace, objects in old.items():
            for name, obj in objects.items():
                changes.append(self._change("DELETED", (namespace, name), obj, None))
        return changes

    # --- talking to the server ---------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        """LIST and WATCH until cancelled; never returns, never raises (but for cancellation)."""
        settings = self._settings
        delay = settings.backoff_initial
        must_list, failures = True, 0
        while True:
            try:
                if must_list:
                    await self._list(session)
                    must_list = False
                    if failures:
                        log.info("%s: listed again after %d failures", self.resource, failures)
                    failures, self.last_error = 0, ""
                must_list, healthy = await self._watch(session)
                if healthy:
                    delay = settings.backoff_initial
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as err:  # whatever went wrong, the type's view must live on
                must_list, failures = True, failures + 1
                self._failed(err, delay, first=failures == 1)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, settings.backoff_max)

    def _failed(self, err: Exception, delay: float, *, first: bool) -> None:
        self.last_error = f"{type(err).__name__}: {err}"
        expected = isinstance(err, KubernetesError | aiohttp.ClientError | TimeoutError)
        # A server that is down fails every retry the same way: say so once, loudly.
        level = logging.WARNING if first else logging.DEBUG
        log.log(
            level if expected else logging.ERROR,
            "%s: %s; list again in %.1fs",
            self.resource,
            self.last_error,
            delay,
            exc_info=not expected,
        )

    async def _list(self, session: aiohttp.ClientSession) -> None:
        params = {"limit": str(self._settings.page_size)}
        items: list[Any] = []
        first: Obj | None = None
        while True:
            page = await request_json(
                session, "GET", self._url, params=params, seconds=self._settings.request_timeout
            )
            first = first or page
            items.extend(page.get("items") or [])
            token = _meta(page).get("continue")
            if not token:
                break
            params = {"limit": str(self._settings.page_size), "continue": str(token)}
        # Pages of one LIST are one snapshot: the first page's version is the list's.
        version = str(_meta(first).get("resourceVersion") or "")
        kind = str(first.get("kind") or "").removesuffix("List")
        objs = [item for item in items if isinstance(item, dict)]
        for obj in objs:  # list items carry no apiVersion/kind; watch events do
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", kind)
        changes = self.replace(objs)
        self.resource_version = version
        self.lists += 1
        self.synced.set()
        log.debug("%s: listed %d objects at version %s", self.resource, len(objs), version)
        for change in changes:
            self._notify(change)

    async def _watch(self, session: aiohttp.ClientSession) -> tuple[bool, bool]:
        """One watch until it ends: (whether to LIST again, whether it was healthy)."""
        seconds = int(self._settings.watch_timeout * random.uniform(1.0, 2.0))
        params = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(seconds, 1)),
        }
        # A bound beyond the server's own timeout: a half-open connection cannot hang us forever.
        timeout = aiohttp.ClientTimeout(total=seconds + 30, sock_connect=10)
        started, events = time.monotonic(), 0
        try:
            async with session.get(self._url, params=params, timeout=timeout) as response:
                if response.status == 410:
                    log.info(
                        "%s: version %s is gone: list again",
                        self.resource,
                        params["resourceVersion"],
                    )
                    return True, False
                if response.status != 200:
                    raise status_error(
                        response.status, response.reason or "", await response.read()
                    )
                relist = False
                async for line in _lines(response.content):
                    events += 1
                    if relist := self._event(line):
                        break
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ApiUnavailable(f"watch {self.resource}: {type(err).__name__}: {err}") from err
        # Without ERROR the server ended the watch (its timeout): reopen from the last version
        # seen. A watch that ended at once, with nothing or only its ERROR, was not healthy: back
        # off before the next one, so a server that keeps refusing is not asked in a tight loop.
        healthy = events > int(relist) or time.monotonic() - started >= 1.0
        return relist, healthy

    def _event(self, line: bytes) -> bool:
        """Apply one watch line; True when the type must be listed again."""
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("%s: undecodable watch event skipped: %.200r", self.resource, line)
            return False
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(obj, dict):
            log.warning("%s: watch event without an object skipped: %.200r", self.resource, line)
            return False
        kind = event.get("type")
        if kind == "ERROR":
            log.info(
                "%s: watch error %s %s: list again",
                self.resource,
                obj.get("code"),
                obj.get("message"),
            )
            return True
        version = _meta(obj).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            change = self.apply(str(kind), obj)
            if change is not None:
                self._notify(change)
        elif kind != "BOOKMARK":
            log.warning("%s: unknown watch event type %r skipped", self.resource, kind)
            return False
        if version:
            self.resource_version = str(version)
        return False
