"""Kubernetes label selectors (``app=web,tier in (a,b),!canary``), parsed once and cached.

The grammar is apimachinery's ``labels.Parse``: comma-separated requirements, each one of ``key``,
``!key``, ``key=value`` / ``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``,
``key>n``, ``key<n``. As in Kubernetes, ``!=`` and ``notin`` also match objects that lack the key. A
malformed selector is a `BadRequest`, which is what the apiserver answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from sandbox.errors import BadRequest

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=|>|<)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in | notin | exists | !exists | gt | lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
            case _:
                return present and _compare(self.op, value, self.values)


def _compare(op: str, value: str | None, bound: frozenset[str]) -> bool:
    try:
        have, want = int(value or ""), int(next(iter(bound)))
    except ValueError:
        return False
    return have > want if op == "gt" else have < want


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split(text: str) -> list[str]:
    """Split on commas that are not inside a ``( … )`` value set."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Requirement:
    if m := _SET.match(text):
        if m.group(1):
            raise BadRequest(f"unable to parse requirement: {text!r}")
        values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
        return Requirement(m.group(2), m.group(3), values)
    if m := _CMP.match(text):
        key, op, value = m.groups()
        mapped = {"=": "in", "==": "in", "!=": "notin", ">": "gt", "<": "lt"}[op]
        return Requirement(key, mapped, frozenset({value}))
    if m := _EXISTS.match(text):
        return Requirement(m.group(2), "!exists" if m.group(1) else "exists")
    raise BadRequest(
        f"unable to parse requirement: found '{text.strip()}', expected: valid selector"
    )


@lru_cache(maxsize=4096)
def parse_selector(text: str) -> Selector:
    """The selector a query string's ``labelSelector`` names (empty matches everything)."""
    return Selector(tuple(_requirement(part) for part in _split(text)))


def selector_string(selector: Mapping[str, object] | None) -> str:
    """A ``metav1.LabelSelector`` as selector text (what /scale reports)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]  # type: ignore[attr-defined]
    for expr in selector.get("matchExpressions") or []:  # type: ignore[attr-defined]
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
