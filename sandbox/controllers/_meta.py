"""Helpers the controllers share: timestamps, owner references, label selectors, template hashes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

# The alphabet Kubernetes uses for generated names and template hashes (no vowels, no look-alikes).
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    """An RFC 3339 timestamp with second precision, as Kubernetes writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp, ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def meta(obj: Obj) -> Obj:
    """The object's metadata (created when missing, so callers can write into it)."""
    result: Obj = obj.setdefault("metadata", {})
    return result


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid", ""))


def owner_ref(owner: Obj, *, kind: str, api_version: str) -> Obj:
    """A controller owner reference to ``owner`` (garbage collection and ``describe`` follow it)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta(owner)["name"],
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(obj: Obj, owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in meta(obj).get("ownerReferences") or [])


def controller_of(obj: Obj) -> Obj | None:
    """The owner reference marked ``controller: true`` (the first one when none is marked)."""
    refs = meta(obj).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


def _expression_matches(labels: dict[str, str], expr: Obj) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def selector_matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """Whether a ``LabelSelector`` (matchLabels + matchExpressions) selects ``labels``.

    An empty or missing selector selects nothing here: controllers must never adopt a whole
    namespace by accident.
    """
    if not selector:
        return False
    labels = labels or {}
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(_expression_matches(labels, expr) for expr in expressions)


def map_selector_matches(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """A Service-style selector (a plain map); empty selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selector_string(selector: dict[str, str]) -> str:
    """``a=b,c=d``: a map selector as a label-selector query string."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def template_hash(template: Obj) -> str:
    """The ``pod-template-hash`` of a pod template.

    Like Kubernetes: FNV-32a of the template, its decimal digits mapped onto ``ALPHANUMS``. The
    template is serialised canonically (sorted keys, nulls dropped: Go clients send
    ``creationTimestamp: null`` where Kubernetes hashes a typed struct), so the same template always
    names the same ReplicaSet.
    """
    canonical = json.dumps(_without_nulls(template), sort_keys=True, separators=(",", ":"))
    digest = fnv32a(canonical.encode())
    return "".join(ALPHANUMS[ord(ch) % len(ALPHANUMS)] for ch in str(digest))


_SUFFIX_COUNTER = [0]


def random_suffix(length: int = 5) -> str:
    """A generated-name suffix (``podinfo-7d9c5-x2kqz``): unique in the process, varied by run."""
    _SUFFIX_COUNTER[0] += 1
    value = fnv32a(f"{time.time_ns()}-{_SUFFIX_COUNTER[0]}".encode())
    chars = []
    for _ in range(length):
        chars.append(ALPHANUMS[value % len(ALPHANUMS)])
        value //= len(ALPHANUMS)
    return "".join(chars)
