"""Server-side apply: a faithful-enough subset of structured-merge-diff.

What it does, as the real apiserver does:

- The applied configuration merges into the live object with the schema's list semantics
  (associative lists by merge key, everything else atomic), creating the object if it does not
  exist.
- Each field manager's applied field set is recorded in ``metadata.managedFields`` (``operation:
  Apply``, ``fieldsType: FieldsV1``, the ``f:``/``k:``/``.`` tree format), and a field the same
  manager applied last time but omits now is removed from the object — unless another Apply manager
  still owns it.

What it does not do: ownership of fields written by non-apply requests (``operation: Update``
entries are not recorded), and therefore no conflict detection — ``force`` is accepted and changes
nothing, and an apply never answers 409 for a field another manager set. Values are not type-checked
against a schema.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.apiserver.patch import _ROOT, ROOTS, STRUCTS, F, strategic_merge, strip
from sandbox.store import now

Obj = dict[str, Any]
Path = tuple[str, ...]

_UNOWNED_TOP = {"apiVersion", "kind", "status"}
_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "managedFields", "generation"}


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
                    item_path = (
                        *here,
                        "k:" + json.dumps({field.key: item[field.key]}, separators=(",", ":")),
                    )
                    paths.add((*item_path, "."))
                    paths |= _fields(item, sub_schema, item_path)
        else:
            paths.add(here)
    return paths


def field_set(config: Obj, kind: str) -> set[Path]:
    """The fields an applied configuration sets, as managedFields paths."""
    owned = {k: v for k, v in config.items() if k not in _UNOWNED_TOP}
    meta = owned.get("metadata")
    if isinstance(meta, dict):
        owned["metadata"] = {k: v for k, v in meta.items() if k not in _UNOWNED_META}
    return _fields(owned, ROOTS.get(kind, _ROOT))


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


def _remove(obj: Obj, path: Path) -> None:
    """Remove the field (or, for a trailing ``.``, the list item) a managedFields path names.

    Lists and maps the removal leaves empty go too, as structured-merge-diff drops them.
    """
    parents: list[tuple[Any, Any]] = []
    node: Any = obj
    for part in path:
        if part == ".":
            break
        if part.startswith("f:") and isinstance(node, dict) and part[2:] in node:
            parents.append((node, part[2:]))
            node = node[part[2:]]
        elif part.startswith("k:") and isinstance(node, list):
            key, value = next(iter(json.loads(part[2:]).items()))
            index = next((i for i, e in enumerate(node) if e.get(key) == value), None)
            if index is None:
                return
            parents.append((node, index))
            node = node[index]
        else:
            return
    while parents:
        container, key = parents.pop()
        del container[key]
        if container or not parents:
            return


def _managers(current: Obj | None) -> list[Obj]:
    return list(((current or {}).get("metadata") or {}).get("managedFields") or [])


def server_side_apply(
    current: Obj | None, config: Obj, *, manager: str, kind: str, api_version: str
) -> Obj:
    """The object after ``manager`` applies ``config`` (current None: the object is created)."""
    config = strip(config)
    new_fields = field_set(config, kind)
    entries = _managers(current)
    previous: set[Path] = set()
    others: set[Path] = set()
    stamp = now()
    for entry in entries:
        paths = from_tree(entry.get("fieldsV1") or {})
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            previous = paths
            # An unchanged field set keeps its time, so a repeated apply is a no-op write.
            stamp = entry.get("time", stamp) if paths == new_fields else stamp
        elif entry.get("operation") == "Apply":
            others |= paths
    result = strategic_merge(current or {}, config, kind)
    # Whole list items first (their key fields identify them), then single fields.
    for path in sorted(previous - new_fields - others, key=lambda p: (p[-1] != ".", -len(p))):
        _remove(result, path)
    kept = [
        e for e in entries if not (e.get("manager") == manager and e.get("operation") == "Apply")
    ]
    kept.append(
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": stamp,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_tree(new_fields),
        }
    )
    result.setdefault("metadata", {})["managedFields"] = kept
    return result
