"""Sandbox-only extras under ``/sandbox/``: an audit log of every request, and fault injection.

Neither is part of Kubernetes. The audit log lets tests count the writes a component makes per
object and derive the RBAC it needs (every request is recorded with its Kubernetes verb, group,
resource, namespace, name, subresource, user agent and response code); it keeps the latest
`AUDIT_LIMIT` entries.

Fault rules make the next matching requests fail or slow down, to exercise retries::

    POST /sandbox/faults {"verb": "patch", "resource": "deployments", "name": "podinfo",
                          "status": 500, "times": 3}
    POST /sandbox/faults {"resource": "virtualservices", "delay_seconds": 0.5}

Match keys (all optional; absent matches anything): ``verb``, ``group``, ``resource``,
``namespace``, ``name``, ``subresource``, ``user_agent`` (substring). Effects: ``delay_seconds``
(before the request runs), ``status`` (answer that code with a Status body instead of running the
request; 409 is a Conflict, 429 carries ``retry_after_seconds``), ``message``. ``times`` limits how
many requests a rule affects (absent: until cleared). ``GET /sandbox/faults`` lists rules with their
remaining counts, ``DELETE /sandbox/faults`` clears them, ``DELETE /sandbox/faults/{id}`` removes
one.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError, BadRequest, for_code

Obj = dict[str, Any]

AUDIT_LIMIT = 100_000
_MATCH_KEYS = ("verb", "group", "resource", "namespace", "name", "subresource")


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
    code: int = 0  # 0 while the request is in flight (an open watch)
    fault: int | None = None  # id of the fault rule that affected the request
    # The object written: the URL's name, or for a create the created object's (as a real audit
    # event's objectRef has it; ``name`` stays the URL's, empty for a create).
    object_name: str = ""


AUDIT_ENTRY = web.RequestKey("audit", AuditEntry)


class AuditLog:
    def __init__(self, limit: int = AUDIT_LIMIT) -> None:
        self.entries: deque[AuditEntry] = deque(maxlen=limit)

    def add(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def query(self, filters: dict[str, str]) -> list[Obj]:
        """Entries as dicts, filtered by exact values (``?verb=patch&resource=deployments``)."""
        out = []
        for entry in self.entries:
            data = asdict(entry)
            if all(str(data.get(k)) == v for k, v in filters.items() if k in data):
                out.append(data)
        return out

    def clear(self) -> None:
        self.entries.clear()


_ids = itertools.count(1)


@dataclass
class FaultRule:
    match: dict[str, str]
    status: int | None = None
    delay_seconds: float = 0.0
    times: int | None = None
    message: str = ""
    retry_after_seconds: int | None = None
    user_agent: str | None = None
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def matches(self, entry: AuditEntry) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.user_agent and self.user_agent not in entry.user_agent:
            return False
        fields = {"verb": entry.verb, "group": entry.group, "resource": entry.resource,
                  "namespace": entry.namespace, "name": entry.name,
                  "subresource": entry.subresource}  # fmt: skip
        return all(fields[k] == v for k, v in self.match.items())

    def error(self) -> ApiError:
        assert self.status is not None
        error = for_code(self.status, self.message or f"injected fault {self.id}")
        error.retry_after_seconds = self.retry_after_seconds
        return error

    def describe(self) -> Obj:
        remaining = None if self.times is None else max(0, self.times - self.hits)
        return {
            "id": self.id,
            **self.match,
            "status": self.status,
            "delay_seconds": self.delay_seconds,
            "times": self.times,
            "remaining": remaining,
            "hits": self.hits,
            "message": self.message,
            "user_agent": self.user_agent,
        }


def parse_rule(body: Any) -> FaultRule:
    if not isinstance(body, dict):
        raise BadRequest("a fault rule is a JSON object")
    unknown = set(body) - {*_MATCH_KEYS, "status", "delay_seconds", "times", "message",
                           "retry_after_seconds", "user_agent"}  # fmt: skip
    if unknown:
        raise BadRequest(f"unknown fault rule fields: {sorted(unknown)}")
    status = body.get("status")
    delay = float(body.get("delay_seconds") or 0.0)
    if status is None and delay <= 0:
        raise BadRequest("a fault rule needs a status or a positive delay_seconds")
    if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
        raise BadRequest("status must be an HTTP error code (400-599)")
    times = body.get("times")
    return FaultRule(
        match={k: str(body[k]) for k in _MATCH_KEYS if body.get(k) is not None},
        status=status,
        delay_seconds=delay,
        times=int(times) if times is not None else None,
        message=str(body.get("message") or ""),
        retry_after_seconds=body.get("retry_after_seconds"),
        user_agent=body.get("user_agent"),
    )


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def remove(self, rule_id: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()

    def take(self, entry: AuditEntry) -> tuple[float, ApiError | None]:
        """The delay and error for a request; each matching rule counts one hit."""
        delay, error = 0.0, None
        for rule in self.rules:
            if rule.matches(entry):
                rule.hits += 1
                entry.fault = rule.id
                delay += rule.delay_seconds
                if rule.status is not None and error is None:
                    error = rule.error()
        return delay, error


def new_entry(method: str, path: str, user_agent: str) -> AuditEntry:
    return AuditEntry(time.time(), method, path, "", "", "", "", "", "", "", user_agent)
