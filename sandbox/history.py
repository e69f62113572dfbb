"""The store's event side: committed-write events, their bounded history, and who listens.

Every committed write becomes one `Event`. `History` keeps the latest events of each resource type
(bounded, like etcd's compaction window) so a watch can resume from a resourceVersion; asking for
events it has forgotten raises `Expired`, the 410 a real apiserver answers. `Listeners` delivers
each event to the listeners registered for its type and namespace only, so a busy type does not wake
every open watch in the cluster.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from sandbox.errors import Expired

Obj = dict[str, Any]
log = logging.getLogger(__name__)


class Event(NamedTuple):
    """One committed write, as watches replay it; ``obj`` is the stored dict: never mutate."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    group: str
    plural: str
    namespace: str
    obj: Obj
    previous: Obj | None = None  # the object before a MODIFIED (watches re-filter with it)


Listener = Callable[[Event], None]
_Key = tuple[str | None, str | None, str | None]


class _TypeHistory:
    """A bounded event history of one type; `floor` is the newest version it has forgotten."""

    def __init__(self, size: int) -> None:
        self.events: deque[Event] = deque(maxlen=size)
        self.floor = 0

    def append(self, event: Event) -> None:
        if len(self.events) == self.events.maxlen:
            self.floor = self.events[0].rv
        self.events.append(event)


class History:
    """The latest ``size`` events of each (group, plural)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._types: dict[tuple[str, str], _TypeHistory] = {}

    def record(self, event: Event) -> None:
        key = (event.group, event.plural)
        kept = self._types.get(key)
        if kept is None:
            kept = self._types[key] = _TypeHistory(self.size)
        kept.append(event)

    def since(self, group: str, plural: str, after: int) -> list[Event]:
        """Events of a type newer than ``after``; raises `Expired` if some were forgotten."""
        kept = self._types.get((group, plural))
        if kept is None:
            return []
        if after < kept.floor:
            raise Expired(f"too old resource version: {after} ({kept.floor + 1})")
        out: list[Event] = []
        for event in reversed(kept.events):
            if event.rv <= after:
                break
            out.append(event)
        out.reverse()
        return out


class Listeners:
    """Listeners keyed by (group, plural, namespace); ``None`` parts match anything."""

    def __init__(self) -> None:
        self._by_key: dict[_Key, list[Listener]] = {}

    def add(
        self, listener: Listener, group: str | None, plural: str | None, namespace: str | None
    ) -> Callable[[], None]:
        key: _Key = (group, plural, namespace) if plural is not None else (None, None, None)
        self._by_key.setdefault(key, []).append(listener)

        def stop() -> None:
            bucket = self._by_key.get(key, [])
            if listener in bucket:
                bucket.remove(listener)
            if not bucket:
                self._by_key.pop(key, None)

        return stop

    def notify(self, event: Event) -> None:
        keys: list[_Key] = [(None, None, None), (event.group, event.plural, None)]
        if event.namespace:
            keys.append((event.group, event.plural, event.namespace))
        for listener in [f for key in keys for f in self._by_key.get(key, ())]:
            try:
                listener(event)
            except Exception:  # one broken watcher must not fail a write
                log.exception("store listener failed")
