"""Turning an HTTP request into what the apiserver calls ``RequestInfo``: verb, resource, namespace,
name.

Resource paths are ``/api/v1/...`` (core) or ``/apis/<group>/<version>/...`` followed by one of::

    <plural>                                   collection (cluster-scoped, or every namespace)
    <plural>/<name>[/<subresource>]            cluster-scoped object
    namespaces/<ns>/<plural>                   namespaced collection
    namespaces/<ns>/<plural>/<name>[/<sub>]    namespaced object

``namespaces/<name>/status`` and ``/finalize`` are the Namespace's own subresources. The old
``/watch/`` path prefix is accepted and means ``?watch=true``. Query parameters follow Go's
``strconv.ParseBool`` (``1``, ``t``, ``T``, ``true``, ``True``, ``TRUE``), because that is how the
apiserver decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.errors import BadRequest

_TRUE = {"1", "t", "T", "true", "True", "TRUE"}
_FALSE = {"0", "f", "F", "false", "False", "FALSE"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


def go_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean query parameter, decoded as Go's strconv.ParseBool decodes it."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise BadRequest(
        f'invalid value for {name}: strconv.ParseBool: parsing "{raw}": invalid syntax'
    )


def go_int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f'invalid value for {name}: "{raw}"') from exc


@dataclass(frozen=True)
class Target:
    """What a resource request addresses."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool = False  # the deprecated /watch/ path form


def parse_path(path: str) -> tuple[str, str, list[str]] | None:
    """(group, version, rest segments) of an API path, or None for a non-resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


def parse_target(group: str, version: str, rest: list[str]) -> Target | None:
    """The resource a path's remaining segments name, or None if they name nothing."""
    watch = bool(rest) and rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return Target(group, version, plural, namespace, name, sub, watch)


def k8s_verb(method: str, target: Target, watch: bool) -> str:
    """The Kubernetes verb of an HTTP method on a target (as RBAC and audit name it)."""
    if method in ("GET", "HEAD"):
        if watch or target.watch_prefix:
            return "watch"
        return "get" if target.name else "list"
    collection = target.name is None
    verbs = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "deletecollection" if collection else "delete",
    }
    return verbs.get(method, method.lower())
