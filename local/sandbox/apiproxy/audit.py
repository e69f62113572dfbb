"""The ``/sandbox/audit`` log, read from kube-apiserver's own audit log file.

kube-apiserver (``--audit-log-path``, a policy at level ``Metadata``) writes one ``audit.k8s.io/v1``
``Event`` per line and per stage. A request is taken from its ``ResponseComplete`` (or ``Panic``)
event; long-running requests (watches) also from ``ResponseStarted``, so an open watch shows, and
its entry is completed in place when the watch ends (a failed authentication is logged at
``ResponseStarted`` only, with its 401). Each becomes the entry the stand-in API server
returned: ``time`` (when received), ``method``, ``path``, ``verb``, ``group``, ``version``,
``resource``, ``namespace``, ``name`` (the URL's, as `RequestInfo` parses ``requestURI``: empty
for a create), ``subresource``, ``user_agent``, ``code``, ``object_name`` (``objectRef.name``,
which the apiserver fills for creates too), ``fault`` (the id of a rule that delayed it), and
``user`` (``user.username``). Requests a fault rule answered never reach the server: the proxy
records those itself (`AuditLog.record`) and they are merged in by time.

The file is read incrementally from the last offset (a rotated or truncated file is read from its
start), in a thread so a large first read does not stall the proxy. The apiserver writes
``ResponseComplete`` after the response has gone out, so a client can see its answer before the
line exists; the proxy therefore tags every request it forwards with an ``Audit-ID`` (kept when
the client sent one: the apiserver uses it as the event's ``auditID``) and a query first waits, at
most `GRACE_SECONDS` per request, until the requests it has answered are in the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.apiproxy.requestinfo import request_info_of_uri

Obj = dict[str, Any]

AUDIT_LIMIT = 100_000
GRACE_SECONDS = 2.0
# Requests logged as started and never completed: open watches, and failed authentications (the
# apiserver logs those at ResponseStarted only).
_OPEN_LIMIT = 10_000
_FINAL_STAGES = {"ResponseComplete", "Panic"}
_VERB_METHODS = {
    "get": "GET",
    "list": "GET",
    "watch": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}


@dataclass(slots=True)  # slots: a full log is 100,000 of these
class AuditEntry:
    time: float
    method: str
    path: str
    verb: str
    group: str
    version: str
    resource: str
    namespace: str
    name: str
    subresource: str
    user_agent: str
    code: int = 0
    fault: int | None = None  # the fault rule that answered or delayed the request
    object_name: str = ""
    user: str = ""


def entry_from_event(event: Mapping[str, Any]) -> AuditEntry:
    """The log entry for one ``audit.k8s.io/v1`` ``Event``."""
    ref = event.get("objectRef") or {}
    verb = str(event.get("verb") or "")
    # The event has no HTTP method: a resource verb implies it, a non-resource verb is it.
    method = _VERB_METHODS.get(verb, "") if ref else verb.upper()
    info = request_info_of_uri(method or "GET", str(event.get("requestURI") or ""))
    received = event.get("requestReceivedTimestamp") or event.get("stageTimestamp")
    return AuditEntry(
        time=_timestamp(received),
        method=method,
        path=request_path(str(event.get("requestURI") or "")),
        verb=verb,
        group=str(ref.get("apiGroup") or info.group),
        version=str(ref.get("apiVersion") or info.version),
        resource=str(ref.get("resource") or info.resource),
        namespace=info.namespace,
        name=info.name,
        subresource=str(ref.get("subresource") or info.subresource),
        user_agent=str(event.get("userAgent") or ""),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        object_name=str(ref.get("name") or ""),
        user=str((event.get("user") or {}).get("username") or ""),
    )


def request_path(uri: str) -> str:
    """The decoded path of a request URI (what the stand-in logged: no query)."""
    return unquote(urlsplit(uri).path)


def _timestamp(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return time.time()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


class _LogFile:
    """A JSON-lines file read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode = -1
        self._offset = 0
        self._partial = b""

    def read_events(self) -> list[Obj]:
        """The complete lines written since the last call, decoded (a torn last line waits)."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return []
        with handle:
            stat = os.fstat(handle.fileno())
            if stat.st_ino != self._inode or stat.st_size < self._offset:
                self._inode, self._offset, self._partial = stat.st_ino, 0, b""
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


class AuditLog:
    """The entries for ``/sandbox/audit``: the apiserver's audit log plus the proxy's own."""

    def __init__(self, path: Path | None, *, limit: int = AUDIT_LIMIT) -> None:
        self._file = None if path is None else _LogFile(path)
        self._entries: deque[AuditEntry] = deque(maxlen=limit)
        self._own: deque[AuditEntry] = deque(maxlen=limit)
        self._open: dict[str, AuditEntry | None] = {}  # started, not completed (None: cleared)
        self._answered: dict[str, float] = {}  # audit id → when the proxy finished answering
        self._delayed: dict[str, int] = {}  # audit id → the fault rule that delayed it
        self._lock = asyncio.Lock()

    def record(self, entry: AuditEntry) -> None:
        """A request the proxy answered itself (a fault), so the apiserver never logged it."""
        self._own.append(entry)

    def delayed(self, audit_id: str, rule_id: int) -> None:
        """A request a fault rule delayed, about to be forwarded: its entry names the rule."""
        if self._file is None:
            return
        self._delayed[audit_id] = rule_id
        while len(self._delayed) > AUDIT_LIMIT:  # events the policy does not log never claim one
            del self._delayed[next(iter(self._delayed))]

    def forwarded(self, audit_id: str) -> None:
        """A request the proxy has finished forwarding: its event is due in the file."""
        if self._file is None or audit_id in self._open:
            return  # its entry is in already
        now = time.monotonic()
        self._answered[audit_id] = now
        _drop_older(self._answered, now - GRACE_SECONDS)

    async def query(self, filters: Mapping[str, str]) -> list[Obj]:
        """Entries as dicts in the order received, filtered by exact values of their fields."""
        await self.catch_up()
        entries = sorted((*self._entries, *self._own), key=lambda e: e.time)
        out = []
        for entry in entries:
            data = asdict(entry)
            if all(str(data.get(k)) == v for k, v in filters.items() if k in data):
                out.append(data)
        return out

    async def clear(self) -> None:
        await self.catch_up(wait=False)
        self._entries.clear()
        self._own.clear()
        self._open = dict.fromkeys(self._open)

    async def catch_up(self, *, wait: bool = True) -> None:
        """Read the file to its end; with ``wait``, until the requests answered so far are in it."""
        await self._read()
        while wait and self._answered:
            _drop_older(self._answered, time.monotonic() - GRACE_SECONDS)
            if not self._answered:
                break
            await asyncio.sleep(0.02)
            await self._read()

    async def _read(self) -> None:
        if self._file is None:
            return
        async with self._lock:
            events = await asyncio.to_thread(self._file.read_events)
            self._apply(events)

    def _apply(self, events: Iterable[Obj]) -> None:
        for event in events:
            stage = event.get("stage")
            if stage not in _FINAL_STAGES and stage != "ResponseStarted":
                continue  # RequestReceived: the request shows once it is answered
            audit_id = str(event.get("auditID") or "")
            self._answered.pop(audit_id, None)
            if audit_id in self._open:
                started = self._open.pop(audit_id) if stage in _FINAL_STAGES else None
                if started is not None:  # a watch ending: complete its entry in place
                    started.code = entry_from_event(event).code or started.code
                continue
            entry = entry_from_event(event)
            entry.fault = self._delayed.pop(audit_id, None)
            self._entries.append(entry)
            if stage == "ResponseStarted":
                self._open[audit_id] = entry
                while len(self._open) > _OPEN_LIMIT:
                    del self._open[next(iter(self._open))]


def _drop_older(stamps: dict[str, float], cutoff: float) -> None:
    """Drop the entries stamped before ``cutoff`` (insertion order is stamp order)."""
    while stamps:
        key = next(iter(stamps))
        if stamps[key] >= cutoff:
            return
        del stamps[key]
