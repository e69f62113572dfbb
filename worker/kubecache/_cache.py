"""`KubeCache`: the read-only, watch-backed view of a few resource types.

One `Informer` per type, each its own task on the caller's event loop, all sharing one aiohttp
session. `start` returns once every type has completed its first LIST, so a reader never sees an
empty view of a type the server has objects of; after that each type follows its watch and lists
again whenever it has to (see ``_informer``). Reads are synchronous dictionary lookups on the
stored objects (the controller reads them on every change; the local stack's mesh on every
request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol

import aiohttp

from worker.kubecache._config import KubeConfig
from worker.kubecache._informer import (
    Change,
    IndexFunc,
    Informer,
    Obj,
    Resource,
    WatchSettings,
)

log = logging.getLogger("coalmine.kubecache")

Listener = Callable[[Change], None]


class ClusterView(Protocol):
    """`KubeCache`'s read surface (what the controller and the local stack's mesh read)."""

    def peek(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None: ...

    def scan(self, group: str, plural: str, namespace: str | None = None) -> Iterable[Obj]: ...

    def listen(self, callback: Listener, *, group: str, plural: str) -> Callable[[], None]: ...

    def add_index(self, group: str, plural: str, name: str, fn: IndexFunc) -> None: ...

    def by_index(self, group: str, plural: str, name: str, value: str) -> Iterable[Obj]: ...


class CacheNotSynced(TimeoutError):
    """`KubeCache.start` gave up: some types never completed a LIST (the message says why)."""


class KubeCache:
    """Objects of the given types, as a kube-apiserver has them, kept current by watches.

    ``session``: an aiohttp session made by ``config.session()`` to share (the caller closes it);
    by default the cache makes its own in `start` and closes it in `close`.
    """

    def __init__(
        self,
        config: KubeConfig,
        resources: Iterable[Resource],
        *,
        session: aiohttp.ClientSession | None = None,
        settings: WatchSettings | None = None,
    ) -> None:
        self._config = config
        self._session = session
        self._own_session = session is None
        self._settings = settings or WatchSettings()
        self._listeners: dict[tuple[str, str], list[Listener]] = {}
        self._informers: dict[tuple[str, str], Informer] = {}
        for resource in resources:
            self._informers[(resource.group, resource.plural)] = Informer(
                resource,
                url=config.url(resource.path),
                settings=self._settings,
                notify=self._dispatch,
            )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def informers(self) -> list[Informer]:
        """One per type: its version, LIST count and last error (for diagnostics and tests)."""
        return list(self._informers.values())

    def _informer(self, group: str, plural: str) -> Informer:
        try:
            return self._informers[(group, plural)]
        except KeyError:
            name = f"{plural}.{group}" if group else plural
            raise KeyError(f"{name} is not one of the cached types") from None

    # --- reads (synchronous; the stored objects: never change them) -------------------------

    def peek(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        """One object; ``namespace`` ``None`` or ``""`` for cluster-scoped types."""
        return self._informer(group, plural).get(namespace or "", name)

    def scan(self, group: str, plural: str, namespace: str | None = None) -> list[Obj]:
        """Every object of a type (in one namespace, or all), in no particular order."""
        return self._informer(group, plural).items(namespace)

    def add_index(self, group: str, plural: str, name: str, fn: IndexFunc) -> None:
        """Index a type by ``fn``'s values (client-go's ``AddIndexers``); at any time."""
        self._informer(group, plural).add_index(name, fn)

    def by_index(self, group: str, plural: str, name: str, value: str) -> list[Obj]:
        """The objects whose index ``name`` gives ``value``."""
        return self._informer(group, plural).by_index(name, value)

    def listen(self, callback: Listener, *, group: str, plural: str) -> Callable[[], None]:
        """Call ``callback(change)`` after each change to the type; returns the unsubscribe.

        Called on the event loop, right after the view changed; an exception is logged and
        never reaches the watch.
        """
        self._informer(group, plural)
        callbacks = self._listeners.setdefault((group, plural), [])
        callbacks.append(callback)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)

        return stop

    def _dispatch(self, change: Change) -> None:
        for callback in list(self._listeners.get((change.group, change.plural), ())):
            try:
                callback(change)
            except Exception:
                log.exception("listener %r failed on %s %s", callback, change.type, change.plural)

    # --- life cycle ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Every type has completed its first LIST."""
        return all(informer.synced.is_set() for informer in self._informers.values())

    async def start(self, *, within: float | None = 60.0) -> None:
        """Start following every type; return once each has completed its first LIST.

        Raises `CacheNotSynced` after ``within`` seconds (naming each unsynced type and its last
        error), having stopped everything it started.
        """
        if self._tasks:
            raise RuntimeError("KubeCache.start called twice")
        if self._session is None:
            self._session = self._config.session()
        session = self._session
        self._tasks = [
            asyncio.create_task(informer.run(session), name=f"kubecache {informer.resource}")
            for informer in self._informers.values()
        ]
        waits = [informer.synced.wait() for informer in self._informers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), within)
        except TimeoutError:
            missing = [
                f"{i.resource} ({i.last_error or 'no answer yet'})"
                for i in self._informers.values()
                if not i.synced.is_set()
            ]
            await self.close()
            raise CacheNotSynced(
                f"{self._config.server}: not listed after {within}s: {', '.join(missing)}"
            ) from None

    async def close(self) -> None:
        """Stop every watch (and close the session if the cache made it)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeCache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
