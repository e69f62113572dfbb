"""A de-duplicating work queue of object keys, the heart of every controller.

Store events arrive synchronously inside a store write; they only *enqueue* a key, never reconcile
inline, so a write never recurses into another write. A key already waiting is not added twice: a
burst of events on one object (create, status, status…) collapses into one reconcile, which is what
makes the controllers cheap with thousands of objects. Delayed keys (a pod that becomes ready in 0.5
s) go through ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NamedTuple

from sandbox.errors import Conflict

log = logging.getLogger(__name__)


class Key(NamedTuple):
    """Which reconciler, and which object: ``Key("deployments", "test", "podinfo")``."""

    kind: str
    namespace: str
    name: str


class WorkQueue:
    """FIFO of unique keys, drained by one task calling the reconciler registered for the kind."""

    def __init__(self) -> None:
        self._pending: dict[Key, None] = {}
        self._wakeup = asyncio.Event()
        self._reconcilers: dict[str, Callable[[str, str], None]] = {}
        self.processed = 0
        self.failures = 0

    def register(self, kind: str, reconcile: Callable[[str, str], None]) -> None:
        self._reconcilers[kind] = reconcile

    def add(self, key: Key) -> None:
        if key not in self._pending:
            self._pending[key] = None
            self._wakeup.set()

    def add_after(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(delay, 0.0), self.add, key)

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Drain the queue forever; a failing reconcile is logged and retried, never fatal."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            handled = 0
            while self._pending:
                key = next(iter(self._pending))
                del self._pending[key]
                self._reconcile(key)
                handled += 1
                if handled % 50 == 0:
                    # Let the API server and the mesh answer between batches: one loop serves all.
                    await asyncio.sleep(0)

    def _reconcile(self, key: Key) -> None:
        reconcile = self._reconcilers.get(key.kind)
        if reconcile is None:
            return
        try:
            reconcile(key.namespace, key.name)
            self.processed += 1
        except Conflict as err:
            # A concurrent client write won the race: normal, try again on a fresh read.
            self.failures += 1
            log.debug("reconcile %s conflicted (%s); retrying", key, err)
            self.add_after(key, 0.1)
        except Exception:
            self.failures += 1
            log.exception("reconcile %s failed; retrying in 1 s", key)
            self.add_after(key, 1.0)
