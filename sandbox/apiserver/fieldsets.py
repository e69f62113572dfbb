"""Field sets in managedFields' ``FieldsV1`` form: which fields of an object a manager owns.

A path is a tuple of steps: ``f:<field>`` into a map, ``k:{"<mergeKey>":<value>}`` into an
associative list (one whose items merge by key, per `sandbox.apiserver.patch.STRUCTS`), and a
trailing ``.`` for owning a list item itself. Everything below an atomic list or a scalar is a leaf.
``FieldsV1`` is the same set written as a tree (``{"f:spec": {"f:replicas": {}}}``). Status and the
identity fields (name, namespace, uid, resourceVersion, generation, managedFields) are never owned.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.apiserver.patch import _ROOT, ROOTS, STRUCTS, F

Obj = dict[str, Any]
Path = tuple[str, ...]

_UNOWNED_TOP = {"apiVersion", "kind", "status"}
_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "managedFields", "generation"}
_MISSING = object()


def _key_step(key: str, value: Any) -> str:
    return "k:" + json.dumps({key: value}, separators=(",", ":"))


def _fields(value: Obj, schema: dict[str, F], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in value.items():
        if child is None:
            continue
        here = (*prefix, f"f:{key}")
        field = schema.get(key, F())
        sub_schema = STRUCTS.get(field.type or "", {})
        if isinstance(child, dict) and child:
            paths |= _fields(child, sub_schema, here)
        elif isinstance(child, list) and field.key is not None:
            for item in child:
                if isinstance(item, dict) and field.key in item:
                    item_path = (*here, _key_step(field.key, item[field.key]))
                    paths.add((*item_path, "."))
                    paths |= _fields(item, sub_schema, item_path)
        else:
            paths.add(here)
    return paths


def field_set(obj: Obj, kind: str) -> set[Path]:
    """The owned-field paths an object (or an applied configuration) sets."""
    owned = {k: v for k, v in obj.items() if k not in _UNOWNED_TOP}
    meta = owned.get("metadata")
    if isinstance(meta, dict):
        owned["metadata"] = {k: v for k, v in meta.items() if k not in _UNOWNED_META}
    return _fields(owned, ROOTS.get(kind, _ROOT))


def _walk_diff(
    old: Any,
    new: Obj,
    schema: dict[str, F],
    prefix: Path,
    *,
    present: set[Path],
    changed: set[Path],
) -> None:
    """One pass over ``new``: every owned path into ``present``, the ones ``old`` lacks or holds
    with another value into ``changed``."""
    old_map = old if isinstance(old, dict) else {}
    for key, child in new.items():
        if child is None:
            continue
        here = (*prefix, f"f:{key}")
        before = old_map.get(key, _MISSING)
        field = schema.get(key, F())
        sub_schema = STRUCTS.get(field.type or "", {})
        if isinstance(child, dict) and child:
            _walk_diff(before, child, sub_schema, here, present=present, changed=changed)
        elif isinstance(child, list) and field.key is not None:
            key_name = field.key
            olds = {
                item.get(key_name): item
                for item in (before if isinstance(before, list) else [])
                if isinstance(item, dict)
            }
            for item in child:
                if isinstance(item, dict) and key_name in item:
                    item_path = (*here, _key_step(key_name, item[key_name]))
                    was = olds.get(item[key_name], _MISSING)
                    present.add((*item_path, "."))
                    if was is _MISSING:
                        changed.add((*item_path, "."))
                    _walk_diff(was, item, sub_schema, item_path, present=present, changed=changed)
        else:
            present.add(here)
            if before != child:
                changed.add(here)


def diff(old: Obj | None, new: Obj, kind: str) -> tuple[set[Path], set[Path]]:
    """(paths ``new`` sets, paths among them that ``old`` did not set to the same value)."""
    present: set[Path] = set()
    changed: set[Path] = set()
    owned = {k: v for k, v in new.items() if k not in _UNOWNED_TOP}
    meta = owned.get("metadata")
    if isinstance(meta, dict):
        owned["metadata"] = {k: v for k, v in meta.items() if k not in _UNOWNED_META}
    _walk_diff(old, owned, ROOTS.get(kind, _ROOT), (), present=present, changed=changed)
    return present, changed


def to_tree(paths: set[Path]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_tree(tree: Obj, prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for part, child in tree.items():
        here = (*prefix, part)
        if isinstance(child, dict) and child:
            paths |= from_tree(child, here)
        else:
            paths.add(here)
    return paths


def _step(node: Any, part: str) -> tuple[Any, Any]:
    """(container key, child) one step down, or (None, _MISSING)."""
    if part.startswith("f:") and isinstance(node, dict) and part[2:] in node:
        return part[2:], node[part[2:]]
    if part.startswith("k:") and isinstance(node, list):
        key, value = next(iter(json.loads(part[2:]).items()))
        for index, item in enumerate(node):
            if isinstance(item, dict) and item.get(key) == value:
                return index, item
    return None, _MISSING


def value_at(obj: Obj, path: Path) -> Any:
    """The value a path names (for an item's ``.``, whether it exists), or a missing marker."""
    node: Any = obj
    for part in path:
        if part == ".":
            return True
        _, node = _step(node, part)
        if node is _MISSING:
            return _MISSING
    return node


def remove_path(obj: Obj, path: Path) -> None:
    """Remove the field (or, for a trailing ``.``, the list item) a path names.

    Lists and maps the removal leaves empty go too, as structured-merge-diff drops them.
    """
    parents: list[tuple[Any, Any]] = []
    node: Any = obj
    for part in path:
        if part == ".":
            break
        container = node
        key, node = _step(container, part)
        if node is _MISSING:
            return
        parents.append((container, key))
    while parents:
        container, key = parents.pop()
        del container[key]
        if container or not parents:
            return


def render(path: Path) -> str:
    """A path as the apiserver prints it in conflicts: ``.spec.containers[name="app"].image``."""
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            key, value = next(iter(json.loads(part[2:]).items()))
            out += f"[{key}={json.dumps(value)}]"
    return out
