"""What a worker's last write of an object left: its ``resourceVersion`` and the fields the next
write needs, so that write is one patch guarded by that version with no read first (a conflict
means someone else wrote since: read, and write again). Thread-safe (activities run on many
threads) and bounded: beyond ``limit`` objects the least recently written is forgotten, which
only costs its next write a read."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

Key = tuple[str, str]
"""``(namespace, name)``."""


class LastWrites:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._kept.get(key)

    def put(self, key: Key, kept: dict[str, Any]) -> None:
        with self._lock:
            self._kept[key] = kept
            self._kept.move_to_end(key)
            while len(self._kept) > self._limit:
                self._kept.popitem(last=False)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._kept.pop(key, None)
