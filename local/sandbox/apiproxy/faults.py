"""Fault rules: make the next matching API requests fail or slow down, to exercise retries.

The semantics are the stand-in API server's, unchanged, so the fault suites work as written::

    POST /sandbox/faults {"verb": "patch", "resource": "deployments", "name": "podinfo",
                          "status": 500, "times": 3}
    POST /sandbox/faults {"resource": "virtualservices", "delay_seconds": 0.5}

Match keys (all optional; absent matches anything) are compared with the request's `RequestInfo`:
``verb``, ``group``, ``resource``, ``namespace``, ``name``, ``subresource`` exactly, ``user_agent``
as a substring. Only resource requests are matched. Effects: ``delay_seconds`` (before the request
is forwarded), ``status`` (answer that code with a Kubernetes ``Status`` body instead of forwarding:
409 is a Conflict, 429 a TooManyRequests with ``Retry-After`` from ``retry_after_seconds``, other
codes carry the apiserver's usual reason), ``message``. ``times`` limits how many requests a rule
affects (absent: until removed). Every matching rule counts a hit; delays add up; the first rule
with a status answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.apiproxy.requestinfo import RequestInfo

Obj = dict[str, Any]

MATCH_KEYS = ("verb", "group", "resource", "namespace", "name", "subresource")
_EFFECT_KEYS = ("status", "delay_seconds", "times", "message", "retry_after_seconds", "user_agent")

# The reasons apimachinery's errors package gives each code (k8s.io/apimachinery/pkg/api/errors).
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class FaultRuleError(ValueError):
    """A fault rule that cannot be applied (``POST /sandbox/faults`` answers it with a 400)."""


def status_body(
    code: int, message: str, *, info: RequestInfo | None = None, retry_after: int | None = None
) -> Obj:
    """A ``meta.k8s.io/v1`` ``Status`` for an error answer, as the apiserver words one."""
    details: Obj = {}
    if info is not None and info.name:
        details["name"] = info.name
    if info is not None and info.group:
        details["group"] = info.group
    if info is not None and info.resource:
        details["kind"] = info.resource
    if retry_after is not None:
        details["retryAfterSeconds"] = retry_after
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "InternalError"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass(frozen=True, slots=True)
class Injected:
    """The answer a fault rule gives instead of forwarding the request."""

    rule_id: int
    code: int
    body: Obj
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the fault rules do to one request: wait ``delay``, then answer ``injected`` if set."""

    delay: float = 0.0
    rule_id: int | None = None  # the rule that answered, else the last one that matched
    injected: Injected | None = None


@dataclass
class FaultRule:
    id: int
    match: dict[str, str]
    status: int | None = None
    delay_seconds: float = 0.0
    times: int | None = None
    message: str = ""
    retry_after_seconds: int | None = None
    user_agent: str | None = None
    hits: int = 0

    def matches(self, info: RequestInfo, user_agent: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.user_agent and self.user_agent not in user_agent:
            return False
        return all(getattr(info, key) == value for key, value in self.match.items())

    def answer(self, info: RequestInfo) -> Injected | None:
        if self.status is None:
            return None
        message = self.message or f"injected fault {self.id}"
        body = status_body(self.status, message, info=info, retry_after=self.retry_after_seconds)
        headers = {}
        if self.retry_after_seconds is not None:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return Injected(self.id, self.status, body, headers)

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


class Faults:
    """The active fault rules, in the order they were added."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, spec: Mapping[str, Any]) -> FaultRule:
        """Validate a rule as posted to ``/sandbox/faults`` and activate it."""
        rule = _parse_rule(spec, next(self._ids))
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()

    def take(self, info: RequestInfo, user_agent: str) -> Outcome:
        """What the rules do to a request; each matching rule counts one hit."""
        if not info.is_resource or not self.rules:
            return Outcome()
        delay, rule_id, injected = 0.0, None, None
        for rule in self.rules:
            if not rule.matches(info, user_agent):
                continue
            rule.hits += 1
            delay += rule.delay_seconds
            if injected is None:
                rule_id = rule.id
                injected = rule.answer(info)
        return Outcome(delay, rule_id, injected)


def _parse_rule(spec: Mapping[str, Any], rule_id: int) -> FaultRule:
    if not isinstance(spec, Mapping):
        raise FaultRuleError("a fault rule is a JSON object")
    unknown = set(spec) - {*MATCH_KEYS, *_EFFECT_KEYS}
    if unknown:
        raise FaultRuleError(f"unknown fault rule fields: {sorted(unknown)}")
    status = spec.get("status")
    if status is not None and not (
        isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599
    ):
        raise FaultRuleError("status must be an HTTP error code (400-599)")
    try:
        delay = float(spec.get("delay_seconds") or 0.0)
        times = None if spec.get("times") is None else int(spec["times"])
        retry_after = spec.get("retry_after_seconds")
        retry_after = None if retry_after is None else int(retry_after)
    except (TypeError, ValueError) as exc:
        raise FaultRuleError(f"a fault rule field has the wrong type: {exc}") from exc
    if status is None and delay <= 0:
        raise FaultRuleError("a fault rule needs a status or a positive delay_seconds")
    user_agent = spec.get("user_agent")
    return FaultRule(
        id=rule_id,
        match={k: str(spec[k]) for k in MATCH_KEYS if spec.get(k) is not None},
        status=status,
        delay_seconds=delay,
        times=times,
        message=str(spec.get("message") or ""),
        retry_after_seconds=retry_after,
        user_agent=None if user_agent is None else str(user_agent),
    )
