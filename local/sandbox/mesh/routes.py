"""VirtualService routing: which HTTP route a request takes and which destination gets it.

Supported from Istio's ``HTTPRoute``: ``match`` (``uri``, ``method``, ``authority``, ``scheme`` with
exact/prefix/suffix/regex; ``headers`` and ``withoutHeaders``; ``queryParams``; ``port``;
``sourceNamespace``; several match blocks are OR-ed, fields within one are AND-ed), weighted
``route`` destinations (host, subset, port), ``mirror`` with ``mirrorPercentage``, ``timeout``,
``fault`` (``delay``/``abort`` with a percentage), ``rewrite.uri``, and route-level ``headers``
(``request``/``response`` ``set``, ``add``, ``remove``), and ``delegate``: a root VirtualService's
route that matched hands the request to the delegate VirtualService it names (``name``,
``namespace`` defaulting to the root's), whose own first matching route decides — Istio's
delegation, as Flagger's ``service.delegation`` Canaries use it (a delegate has no hosts, so it
is never looked up by host itself). Not supported: ``retries`` (accepted, ignored),
``redirect``, per-destination request headers, TCP/TLS routes (per-destination response headers
are applied: Flagger's session-affinity cookie rides on them).

Weighted choice is a smooth weighted round-robin per route (nginx's algorithm), not a random draw:
with weights 90/10, exactly one request in ten goes to the canary, so short measurement windows read
the configured split.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.hosts import host_matches
from sandbox.mesh.metrics import Peer
from worker.kubecache import Change, ClusterView

Obj = dict[str, Any]
GROUP, PLURAL = "networking.istio.io", "virtualservices"


@dataclass(frozen=True)
class RequestFacts:
    """What routing may look at."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    authority: str
    port: int
    source_namespace: str


@dataclass(frozen=True)
class Destination:
    host: str  # canonical (service FQDN or outside name)
    subset: str | None
    port: int | None
    weight: int
    response_headers: Obj | None = None  # the route destination's own headers.response


@dataclass
class RoutePlan:
    """One matched route, resolved against the VirtualService's namespace."""

    key: str
    destinations: list[Destination]
    mirror: Destination | None = None
    mirror_percent: float = 100.0
    timeout: float | None = None
    delay: tuple[float, float] | None = None  # (seconds, percent)
    abort: tuple[int, float] | None = None  # (http status, percent)
    rewrite: tuple[str, str] | None = None  # (matched prefix, replacement)
    request_headers: Obj = field(default_factory=dict)  # Istio's HeaderOperations
    response_headers: Obj = field(default_factory=dict)
    via: Peer | None = None
    """The gateway proxy the request passed through: the caller its destination sees."""


def apply_header_ops(headers: dict[str, str], ops: Obj) -> dict[str, str]:
    """Istio's ``HeaderOperations`` on a header map: remove, then set, then add (appended)."""
    if not ops:
        return headers
    removed = {name.lower() for name in ops.get("remove") or []}
    setting = {str(k).lower(): str(v) for k, v in (ops.get("set") or {}).items()}
    out = {k: v for k, v in headers.items() if k.lower() not in removed | set(setting)}
    out.update(setting)
    for name, value in (ops.get("add") or {}).items():
        existing = next((k for k in out if k.lower() == str(name).lower()), None)
        if existing is None:
            out[str(name).lower()] = str(value)
        else:
            out[existing] = f"{out[existing]},{value}"
    return out


def parse_duration(value: object) -> float | None:
    """``"1.5s"``, ``"300ms"``, ``"1m"`` → seconds."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h)?\s*", str(value))
    if not match:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * scale


def string_match(rule: Obj | None, value: str | None) -> bool:
    if not rule:
        return True
    if value is None:
        return False
    if "exact" in rule:
        return value == str(rule["exact"])
    if "regex" in rule:
        return re.fullmatch(str(rule["regex"]), value) is not None
    if "prefix" in rule:
        return value.startswith(str(rule["prefix"]))
    return value.endswith(str(rule.get("suffix", "")))  # no kind given: "" matches all


def _match_block(block: Obj, facts: RequestFacts) -> bool:
    checks = [
        string_match(block.get("uri"), facts.path),
        string_match(block.get("method"), facts.method),
        string_match(block.get("authority"), facts.authority),
        string_match(block.get("scheme"), "http"),
        block.get("port") in (None, facts.port),
        block.get("sourceNamespace") in (None, facts.source_namespace),
    ]
    for name, rule in (block.get("headers") or {}).items():
        checks.append(string_match(rule, facts.headers.get(name.lower())))
    for name, rule in (block.get("withoutHeaders") or {}).items():
        checks.append(not string_match(rule, facts.headers.get(name.lower())))
    for name, rule in (block.get("queryParams") or {}).items():
        checks.append(string_match(rule, facts.query.get(name)))
    return all(checks)


def match_route(vs: Obj, facts: RequestFacts) -> tuple[int, Obj, Obj | None] | None:
    """The first HTTP route whose match accepts the request: (index, route, matched block)."""
    for index, route in enumerate((vs.get("spec") or {}).get("http") or []):
        blocks = route.get("match") or []
        if not blocks:
            return index, route, None
        for block in blocks:
            if _match_block(block, facts):
                return index, route, block
    return None


def delegate_of(route: Obj, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the VirtualService a root route delegates to, if it does."""
    delegate = route.get("delegate")
    if not delegate or not delegate.get("name"):
        return None
    return str(delegate.get("namespace") or namespace), str(delegate["name"])


def _percent(value: object, default: float = 100.0) -> float:
    if isinstance(value, dict):
        return float(value.get("value", default))
    return float(str(value)) if value is not None else default


def _destination(
    raw: Obj, qualify: Callable[[str], str], weight: int, headers: Obj | None = None
) -> Destination:
    port = (raw.get("port") or {}).get("number")
    return Destination(
        host=qualify(str(raw.get("host", ""))),
        subset=raw.get("subset"),
        port=int(port) if port else None,
        weight=weight,
        response_headers=dict((headers or {}).get("response") or {}) or None,
    )


def plan_route(
    vs: Obj, index: int, route: Obj, block: Obj | None, qualify: Callable[[str], str]
) -> RoutePlan:
    """Resolve a matched route's destinations and options."""
    raw = route.get("route") or []
    single = len(raw) == 1
    destinations = [
        _destination(
            item.get("destination") or {},
            qualify,
            int(item.get("weight", 100 if single else 0) or 0),
            item.get("headers"),
        )
        for item in raw
    ]
    md = vs.get("metadata") or {}
    plan = RoutePlan(
        key=f"{md.get('namespace')}/{md.get('name')}#{index}", destinations=destinations
    )
    if route.get("mirror"):
        plan.mirror = _destination(route["mirror"], qualify, 100)
        plan.mirror_percent = _percent(route.get("mirrorPercentage", route.get("mirrorPercent")))
    plan.timeout = parse_duration(route.get("timeout"))
    fault = route.get("fault") or {}
    if delay := fault.get("delay"):
        seconds = parse_duration(delay.get("fixedDelay")) or 0.0
        plan.delay = (seconds, _percent(delay.get("percentage", delay.get("percent"))))
    if abort := fault.get("abort"):
        plan.abort = (int(abort.get("httpStatus", 503)), _percent(abort.get("percentage")))
    header_ops = route.get("headers") or {}
    plan.request_headers = dict(header_ops.get("request") or {})
    plan.response_headers = dict(header_ops.get("response") or {})
    rewrite = (route.get("rewrite") or {}).get("uri")
    prefix = ((block or {}).get("uri") or {}).get("prefix")
    if rewrite is not None and prefix:
        plan.rewrite = (str(prefix), str(rewrite))
    return plan


class WeightedPicker:
    """Smooth weighted round-robin, one state per (route, weights)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, tuple[int, ...]], list[int]] = {}

    def pick(self, key: str, destinations: list[Destination]) -> Destination | None:
        weights = tuple(d.weight for d in destinations)
        total = sum(weights)
        if total <= 0:
            return None
        current = self._state.setdefault((key, weights), [0] * len(weights))
        best = 0
        for i, weight in enumerate(weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= total
        return destinations[best]


class VirtualServiceIndex:
    """VirtualServices by canonical host, rebuilt lazily after any VirtualService change (or a
    re-list of them after a lost watch: the view reports what changed)."""

    def __init__(self, view: ClusterView, qualify: Callable[[str, str], str]) -> None:
        self._view = view
        self._qualify = qualify
        self._entries: list[tuple[str, str, str]] | None = None
        # Only these changes change which host means what.
        view.listen(self._invalidate, group=GROUP, plural=PLURAL)
        view.listen(self._invalidate, group="", plural="namespaces")

    def _invalidate(self, change: Change) -> None:
        del change
        self._entries = None

    def _build(self) -> list[tuple[str, str, str]]:
        entries = []
        for vs in self._view.scan(GROUP, PLURAL):
            md = vs.get("metadata") or {}
            namespace = str(md.get("namespace", "default"))
            for host in (vs.get("spec") or {}).get("hosts") or []:
                entries.append(
                    (self._qualify(str(host), namespace), namespace, str(md.get("name")))
                )
        # Exact names before wildcards, as Istio prefers the most specific host.
        entries.sort(key=lambda e: ("*" in e[0], e[1], e[2]))
        return entries

    def find(self, host: str) -> Obj | None:
        if self._entries is None:
            self._entries = self._build()
        for pattern, namespace, name in self._entries:
            if host_matches(pattern, host):
                found: Obj | None = self._view.peek(GROUP, PLURAL, namespace, name)
                return found
        return None
