"""Field selectors (``fieldSelector=metadata.name=x,involvedObject.uid=…``).

As in Kubernetes, every type supports ``metadata.name`` and ``metadata.namespace``; some types add
their own fields (events by ``involvedObject.*``, which ``kubectl describe`` uses; pods by
``spec.nodeName`` and ``status.phase``). Operators are ``=``, ``==`` and ``!=``. An unsupported
field is a 400, worded as the apiserver words it, so a client bug does not pass silently.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sandbox.errors import BadRequest

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_COMMON = ("metadata.name", "metadata.namespace")
_EVENT = (
    *(
        f"involvedObject.{f}"
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    ),
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "events"): _EVENT,
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("apps", "replicasets"): ("status.replicas",),
}


def _value(obj: Obj, path: str) -> str:
    if path == "source":  # events: source.component, as the apiserver's event field set maps it
        return str((obj.get("source") or {}).get("component", ""))
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if current is None:
        return ""
    return str(current)


@lru_cache(maxsize=1024)
def _parse(text: str) -> tuple[tuple[str, bool, str], ...]:
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        for op, negate in (("!=", True), ("==", False), ("=", False)):
            if op in part:
                field, value = part.split(op, 1)
                terms.append((field.strip(), negate, value.strip()))
                break
        else:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
    return tuple(terms)


def field_predicate(group: str, plural: str, text: str | None) -> Predicate | None:
    """A predicate for a ``fieldSelector`` (None when there is nothing to filter)."""
    if not text:
        return None
    terms = _parse(text)
    supported = _COMMON + _EXTRA.get((group, plural), ())
    for field, _, _ in terms:
        if field not in supported:
            raise BadRequest(f'field label not supported: "{field}"')

    def matches(obj: Obj) -> bool:
        return all((_value(obj, f) == v) != negate for f, negate, v in terms)

    return matches


def single_name(text: str | None) -> str | None:
    """The name a selector pins down (``metadata.name=x``), to turn a scan into one lookup."""
    if not text:
        return None
    for field, negate, value in _parse(text):
        if field == "metadata.name" and not negate:
            return value
    return None
