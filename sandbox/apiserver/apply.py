"""Server-side apply and field ownership: a faithful-enough subset of structured-merge-diff.

What it does, as the real apiserver does:

- Every write through the API records who set which fields in ``metadata.managedFields``
  (`fieldsets` paths, ``fieldsType: FieldsV1``): a create or an update/patch gives its manager
  (``fieldManager``, or the user agent's first word) an ``operation: Update`` entry for the fields
  it changed, taking them from the other managers. A request that sets managedFields itself
  (kubectl's client-side to server-side apply migration does) is trusted as it is.
- An apply merges the configuration into the live object with the schema's list semantics
  (associative lists by merge key, everything else atomic), creating the object if it does not
  exist, and records the applied field set as the manager's ``operation: Apply`` entry. A field the
  manager applied last time but omits now is removed, unless another manager still owns it.
- Applying a different value to a field another manager owns is a 409 Conflict listing each field
  (``conflict with "kubectl" with subresource "scale" using apps/v1 at …: .spec.replicas``);
  ``force=true`` takes the fields over instead. Applying the same value shares ownership.

What it does not do: type-check values against a schema, track ``status`` (subresource) ownership,
or record writes the controllers make through the store directly (they bypass the API, so their
fields belong to no manager and never conflict).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sandbox.apiserver.fieldsets import (
    Path,
    diff,
    field_set,
    from_tree,
    remove_path,
    render,
    to_tree,
    value_at,
)
from sandbox.apiserver.patch import strategic_merge, strip
from sandbox.errors import Conflict
from sandbox.store import now

Obj = dict[str, Any]


def manager_from_user_agent(user_agent: str) -> str:
    """The default field manager: the user agent up to its first ``/``, as the apiserver has it."""
    return user_agent.split("/", 1)[0] or "unknown"


def _entries(obj: Obj | None) -> list[Obj]:
    return list(((obj or {}).get("metadata") or {}).get("managedFields") or [])


def _entry(
    manager: str, operation: str, api_version: str, paths: set[Path], *, stamp: str, sub: str = ""
) -> Obj:
    entry: Obj = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": stamp,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_tree(paths),
    }
    if sub:
        entry["subresource"] = sub
    return entry


def _owned(entry: Obj) -> set[Path]:
    return from_tree(entry.get("fieldsV1") or {})


def _is(entry: Obj, manager: str, operation: str, sub: str = "") -> bool:
    same = entry.get("manager") == manager and entry.get("operation") == operation
    return same and entry.get("subresource", "") == sub


def _rebuild(entries: list[Obj], before: list[set[Path]], after: list[set[Path]]) -> list[Obj]:
    """Entries with their new field sets; an entry left owning nothing is dropped."""
    out = []
    for entry, old, new in zip(entries, before, after, strict=True):
        if new:
            out.append(entry if new == old else {**entry, "fieldsV1": to_tree(new)})
    return out


def track_update(
    old: Obj | None, new: Obj, *, manager: str, kind: str, api_version: str, subresource: str = ""
) -> None:
    """Record in ``new`` that ``manager`` set the fields it changed (an ``Update`` operation)."""
    # A patched object may share its metadata map with the stored one: write to a copy.
    meta = new["metadata"] = dict(new.get("metadata") or {})
    old_entries = _entries(old)
    if "managedFields" in meta and meta["managedFields"] != old_entries:
        return  # the request manages managedFields itself
    present, changed = diff(old, new, kind)
    if not changed and old is not None:
        meta["managedFields"] = old_entries
        return
    before = [_owned(e) for e in old_entries]
    owned = [(b & present) - changed for b in before]
    mine = next(
        (i for i, e in enumerate(old_entries) if _is(e, manager, "Update", subresource)), None
    )
    if mine is None:
        old_entries.append(
            _entry(manager, "Update", api_version, changed, stamp=now(), sub=subresource)
        )
        before.append(changed)
        owned.append(changed)
    else:
        owned[mine] |= changed
        old_entries[mine] = {**old_entries[mine], "time": now(), "apiVersion": api_version}
    meta["managedFields"] = _rebuild(old_entries, before, owned)


def _conflicts(
    current: Obj, config: Obj, owned: list[set[Path]], applied: set[Path], mine: int | None
) -> Iterator[tuple[int, Path]]:
    """(entry index, path) of each field another manager owns with a different value."""
    for index, paths in enumerate(owned):
        if index == mine:
            continue
        for path in sorted(paths & applied):
            if path[-1] != "." and value_at(current, path) != value_at(config, path):
                yield index, path


def _who(entry: Obj) -> str:
    """A manager as the apiserver names it in conflicts (printManager)."""
    who = f'"{entry.get("manager", "")}"'
    if entry.get("subresource"):
        who += f' with subresource "{entry["subresource"]}"'
    if entry.get("operation") == "Update":
        who += f" using {entry.get('apiVersion', '')}"
        if entry.get("time"):
            who += f" at {entry['time']}"
    return who


def _refuse(entries: list[Obj], found: list[tuple[int, Path]]) -> Conflict:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_who(entries[i])}",
            "field": render(path),
        }
        for i, path in found
    ]
    lines = [f"{c['message']}: {c['field']}" for c in causes]
    plural = "conflict" if len(lines) == 1 else "conflicts"
    error = Conflict(f"Apply failed with {len(lines)} {plural}: " + "\n".join(lines))
    error.causes = causes
    return error


def server_side_apply(
    current: Obj | None,
    config: Obj,
    *,
    manager: str,
    kind: str,
    api_version: str,
    force: bool = False,
) -> Obj:
    """The object after ``manager`` applies ``config`` (current None: the object is created)."""
    config = strip(config)
    applied = field_set(config, kind)
    entries = _entries(current)
    before = [_owned(e) for e in entries]
    mine = next((i for i, e in enumerate(entries) if _is(e, manager, "Apply")), None)
    found = list(_conflicts(current or {}, config, before, applied, mine))
    if found and not force:
        raise _refuse(entries, found)
    taken = set(found)
    owned = [{p for p in b if (i, p) not in taken} for i, b in enumerate(before)]
    previous = owned[mine] if mine is not None else set()
    others: set[Path] = set().union(*(p for i, p in enumerate(owned) if i != mine))
    result = strategic_merge(current or {}, config, kind)
    # Whole list items first (their key fields identify them), then single fields.
    for path in sorted(previous - applied - others, key=lambda p: (p[-1] != ".", -len(p))):
        remove_path(result, path)
    # An unchanged field set keeps its time, so a repeated apply is a no-op write.
    unchanged = mine is not None and previous == applied
    stamp = str(entries[mine].get("time") or now()) if unchanged and mine is not None else now()
    entry = _entry(manager, "Apply", api_version, applied, stamp=stamp)
    if mine is None:
        entries.append(entry)
        before.append(applied)
        owned.append(applied)
    else:
        entries[mine], before[mine], owned[mine] = entry, applied, applied
    result.setdefault("metadata", {})["managedFields"] = _rebuild(entries, before, owned)
    return result
