"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the apiserver applies them.

Merge patch: maps merge recursively, ``null`` deletes, everything else (lists included) replaces.
JSON patch: ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test`` on RFC 6901 pointers
(``~0``/``~1`` escapes, ``-`` appends). A failed ``test`` or a path that does not exist is a 422
Invalid, the code the apiserver answers for a patch that cannot apply.
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import BadRequest, Invalid
from sandbox.store import clone

Obj = dict[str, Any]


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386: the result of applying ``patch`` to ``original`` (neither is modified)."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise Invalid(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit():
        raise Invalid(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) or (not adding and index == len(container)):
        raise Invalid(f"array index out of bounds: {index}")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, adding=False)]
        else:
            raise Invalid(f"doc is missing path: /{'/'.join(tokens)}")
    return current


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, adding=False)]
    raise Invalid(f"doc is missing path: /{'/'.join(tokens)}")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, adding=False))
    raise Invalid(f"unable to remove nonexistent key: {last}: missing value")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True), value)
    else:
        raise Invalid(f"doc is missing path: /{'/'.join(tokens)}")
    return doc


def _operation(doc: Any, op: Obj) -> Any:
    kind = op.get("op")
    tokens = _pointer(op.get("path"))
    if kind == "add":
        return _add(doc, tokens, clone(op.get("value")))
    if kind == "remove":
        _remove(doc, tokens)
        return doc
    if kind == "replace":
        _get(doc, tokens)  # the target must exist
        if not tokens:
            return clone(op.get("value"))
        _remove(doc, tokens)
        return _add(doc, tokens, clone(op.get("value")))
    if kind in ("move", "copy"):
        source = _pointer(op.get("from"))
        value = _remove(doc, source) if kind == "move" else clone(_get(doc, source))
        return _add(doc, tokens, value)
    if kind == "test":
        if _get(doc, tokens) != op.get("value"):
            raise Invalid(f"testing value {op.get('path')} failed: test operation does not apply")
        return doc
    raise BadRequest(f"Unexpected kind: {kind}")


def json_patch(original: Any, operations: Any) -> Any:
    """RFC 6902: the document after all operations (the original is untouched on failure)."""
    if not isinstance(operations, list):
        raise BadRequest("json patch must be a list of operations")
    doc = clone(original)
    for op in operations:
        if not isinstance(op, dict):
            raise BadRequest(f"invalid json patch operation: {op!r}")
        doc = _operation(doc, op)
    return doc
