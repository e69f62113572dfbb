"""Watch: a newline-delimited JSON stream of ``{"type": …, "object": …}`` events.

The stream starts from the request's ``resourceVersion``: absent or ``0`` sends a synthetic
``ADDED`` for each current object; a number replays the type's history after it, or — when the
history has forgotten that far back — sends one ``ERROR`` event carrying a 410 ``Expired`` Status,
which tells informers to relist (exactly what a real server does after etcd compaction). Live events
follow, filtered by namespace, name, label and field selectors; an object that starts matching
arrives as ADDED and one that stops matching as DELETED, as the apiserver's watch cache does.
``allowWatchBookmarks`` adds ``BOOKMARK`` events when the stream is idle; ``sendInitialEvents`` ends
the initial ``ADDED`` events with the ``k8s.io/initial-events-end`` bookmark; the stream closes at
``timeoutSeconds``. With a Table Accept header each event's object is a one-row Table, for ``kubectl
get -w``.

The listener is registered and the snapshot taken in one synchronous step, so no event falls between
them. A watcher that falls far behind (its queue over `WatchSettings.queue_limit`) is closed;
clients re-watch.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.apiserver import tables
from sandbox.apiserver.fields import field_predicate
from sandbox.apiserver.handlers import Call
from sandbox.apiserver.request import go_bool, go_int
from sandbox.apiserver.responses import encode
from sandbox.errors import BadRequest, Expired
from sandbox.labels import parse_selector
from sandbox.store import Event

Obj = dict[str, Any]
_LIVENESS_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class WatchSettings:
    bookmark_interval: float = 10.0  # seconds of idleness between BOOKMARK events
    default_timeout: float = 1800.0  # when the client gives no timeoutSeconds
    queue_limit: int = 20_000  # pending events before a slow watcher is dropped


class _Stream:
    """One open watch: its filters and how it writes events."""

    def __init__(self, call: Call) -> None:
        query = call.query
        self.call = call
        self.name = call.target.name
        labels = query.get("labelSelector")
        self.labels = parse_selector(labels) if labels else None
        self.fields = field_predicate(call.rt.group, call.rt.plural, query.get("fieldSelector"))
        self.table = tables.wants_table(call.request.headers.get("Accept", ""))

    def matches(self, obj: Obj) -> bool:
        meta = obj["metadata"]
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.labels is not None and not self.labels.matches(meta.get("labels") or {}):
            return False
        return self.fields is None or self.fields(obj)

    def lines_for(self, event: Event) -> list[bytes]:
        """What a live event means to this watcher, as the apiserver's watch cache decides it.

        An object that starts matching the filters is ADDED to this watcher, and one that stops
        matching is DELETED from it, even though the store saw a MODIFIED.
        """
        now = self.matches(event.obj)
        before = event.previous is not None and self.matches(event.previous)
        if event.type != "MODIFIED" or now == before:
            return [self.line(event.type, event.obj)] if now else []
        return [self.line("ADDED" if now else "DELETED", event.obj)]

    def line(self, event_type: str, obj: Obj) -> bytes:
        if self.table and event_type != "BOOKMARK":
            shown = tables.table(self.call.rt, [obj], self.call.query)
        else:
            shown = self.call.present(obj)
        return encode({"type": event_type, "object": shown}) + b"\n"

    def bookmark(self, rv: int, *, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {
            "kind": self.call.rt.kind,
            "apiVersion": self.call.rt.api_version(),
            "metadata": meta,
        }
        return encode({"type": "BOOKMARK", "object": obj}) + b"\n"


def _initial(call: Call, stream: _Stream, rv_param: str) -> tuple[list[bytes], int]:
    """The opening lines (snapshot or replay) and the version they bring the watcher to."""
    store, rt = call.store, call.rt
    if rv_param in ("", "0") or go_bool(call.query, "sendInitialEvents"):
        snapshot = store.scan(rt.group, rt.plural, call.namespace)
        lines = [stream.line("ADDED", o) for o in snapshot if stream.matches(o)]
        if go_bool(call.query, "sendInitialEvents"):
            lines.append(stream.bookmark(store.resource_version, initial_end=True))
        return lines, store.resource_version
    after = int(rv_param)
    events = store.history(rt.group, rt.plural, after)
    lines = [
        line
        for e in events
        if call.namespace is None or e.namespace == call.namespace
        for line in stream.lines_for(e)
    ]
    return lines, max(after, events[-1].rv if events else after)


async def handle_watch(call: Call, settings: WatchSettings) -> web.StreamResponse:
    rv_param = call.query.get("resourceVersion", "")
    if rv_param and not rv_param.isdigit():
        raise BadRequest(f"invalid resource version: {rv_param}")
    timeout = go_int(call.query, "timeoutSeconds") or settings.default_timeout
    bookmarks = go_bool(call.query, "allowWatchBookmarks")
    stream = _Stream(call)
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
    )
    await response.prepare(call.request)
    queue: asyncio.Queue[Event] = asyncio.Queue()
    rt, namespace = call.rt, call.namespace

    # No await between listen() and the snapshot: nothing can be committed in between.
    unlisten = call.store.listen(
        queue.put_nowait, group=rt.group, plural=rt.plural, namespace=namespace
    )
    try:
        try:
            lines, seen = _initial(call, stream, rv_param)
        except Expired as error:
            await response.write(encode({"type": "ERROR", "object": error.status()}) + b"\n")
            return response
        if lines:
            await response.write(b"".join(lines))
        await _pump(
            call,
            stream,
            response,
            queue,
            seen=seen,
            seconds=timeout,
            bookmarks=bookmarks,
            settings=settings,
        )
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        unlisten()
    with contextlib.suppress(ConnectionResetError, ConnectionError):
        await response.write_eof()
    return response


async def _pump(
    call: Call,
    stream: _Stream,
    response: web.StreamResponse,
    queue: asyncio.Queue[Event],
    *,
    seen: int,
    seconds: float,
    bookmarks: bool,
    settings: WatchSettings,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_bookmark = loop.time() + settings.bookmark_interval
    while (now := loop.time()) < deadline:
        transport = call.request.transport
        if transport is None or transport.is_closing():
            return
        if queue.qsize() > settings.queue_limit:
            return  # too slow a reader: close, and it will re-watch
        wake = min(deadline, now + _LIVENESS_CHECK_SECONDS)
        if bookmarks:
            wake = min(wake, next_bookmark)
        try:
            async with asyncio.timeout(max(0.0, wake - now)):
                first = await queue.get()
        except TimeoutError:
            if bookmarks and loop.time() >= next_bookmark:
                await response.write(stream.bookmark(max(seen, call.store.resource_version)))
                next_bookmark = loop.time() + settings.bookmark_interval
            continue
        batch = [first]
        while not queue.empty():
            batch.append(queue.get_nowait())
        lines = [line for e in batch if e.rv > seen for line in stream.lines_for(e)]
        seen = max(seen, batch[-1].rv)
        if lines:
            await response.write(b"".join(lines))
        next_bookmark = loop.time() + settings.bookmark_interval
