"""Strategic merge patch, as apimachinery's ``strategicpatch.StrategicMergePatch`` applies it
server-side.

A strategic merge patch is a JSON merge patch whose lists can merge instead of being replaced: the
Go types carry ``patchStrategy:"merge"`` and ``patchMergeKey`` tags, and `STRUCTS` below restates
those tags for the paths the sandbox's kinds use (containers, init and ephemeral containers, env,
volumes and image pull secrets merge by name; container ports by containerPort; volume mounts by
mountPath; service ports by port; status conditions by type; owner references by uid; finalizers as
a set). Every other list is atomic, as in Kubernetes (tolerations, args, metrics… are replaced
whole).

Directives, as documented in the Kubernetes "strategic merge patch" design:

- ``null`` deletes a map key;
- ``$patch: replace`` replaces a map (or, as a list element, the whole list), ``$patch: delete``
  empties a map or deletes the list element with that merge key, ``$patch: merge`` is the default;
- ``$setElementOrder/<field>`` orders a merged list (patch items in the given order, server-only
  items kept where the live list had them); without it the patch list's own order counts, so new
  items come first, as kubectl's documentation shows for an added container;
- ``$retainKeys`` drops every key of the map that the list does not name;
- ``$deleteFromPrimitiveList/<field>`` removes values from a primitive merge list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sandbox.errors import Invalid

Obj = dict[str, Any]


@dataclass(frozen=True)
class F:
    """Patch metadata of one field: the struct it holds and how its list merges."""

    type: str | None = None
    key: str | None = None  # merge key of a list of maps
    merge: bool = False  # a primitive list merged as a set


_META = F("ObjectMeta")
STRUCTS: dict[str, dict[str, F]] = {
    "ObjectMeta": {"finalizers": F(merge=True), "ownerReferences": F(key="uid")},
    "PodTemplateSpec": {"metadata": _META, "spec": F("PodSpec")},
    "PodSpec": {
        "containers": F("Container", "name"),
        "initContainers": F("Container", "name"),
        "ephemeralContainers": F("Container", "name"),
        "volumes": F(None, "name"),
        "imagePullSecrets": F(None, "name"),
        "hostAliases": F(None, "ip"),
        "topologySpreadConstraints": F(None, "topologyKey"),
        "resourceClaims": F(None, "name"),
        "schedulingGates": F(None, "name"),
    },
    "Container": {
        "env": F(None, "name"),
        "ports": F(None, "containerPort"),
        "volumeMounts": F(None, "mountPath"),
        "volumeDevices": F(None, "devicePath"),
    },
    "WorkloadSpec": {"template": F("PodTemplateSpec")},
    "Conditions": {"conditions": F(None, "type")},
    "PodStatus": {"conditions": F(None, "type"), "podIPs": F(None, "ip")},
    "ServiceSpec": {"ports": F(None, "port")},
}
_ROOT: Final = {"metadata": _META}
ROOTS: dict[str, dict[str, F]] = {
    "Deployment": {**_ROOT, "spec": F("WorkloadSpec"), "status": F("Conditions")},
    "ReplicaSet": {**_ROOT, "spec": F("WorkloadSpec"), "status": F("Conditions")},
    "Pod": {**_ROOT, "spec": F("PodSpec"), "status": F("PodStatus")},
    "Service": {**_ROOT, "spec": F("ServiceSpec"), "status": F("Conditions")},
    "HorizontalPodAutoscaler": {**_ROOT, "status": F("Conditions")},
    "Namespace": {**_ROOT, "status": F("Conditions")},
}

_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge(original: Obj, patch: Obj, kind: str) -> Obj:
    """``original`` with ``patch`` applied strategically (neither argument is modified)."""
    if not isinstance(patch, dict):
        raise Invalid("strategic merge patch must be a JSON object")
    return _merge_map(original, patch, ROOTS.get(kind, _ROOT))


def strip(value: Any) -> Any:
    """A patch value without its directives (what lands when there is nothing to merge into)."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _merge_map(original: Obj, patch: Obj, schema: dict[str, F]) -> Obj:
    directive = patch.get("$patch", "merge")
    if directive == "delete":
        return {}  # handleDirectiveInMergeMap: a deleted map is an empty one
    if directive == "replace":
        result: Obj = strip(patch)
        return result
    if directive != "merge":
        raise Invalid(f"Unknown patch type: {directive!r} in map: {patch!r}")
    result = dict(original)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM) :]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        else:
            _merge_field(result, key, value, schema.get(key, F()))
    # Orders apply after merging: they sort the merged list.
    for key, order in patch.items():
        field = key[len(_ORDER) :]
        if key.startswith(_ORDER) and isinstance(result.get(field), list):
            live = original.get(field)
            live_list = live if isinstance(live, list) else []
            result[field] = _reorder(result[field], order, live_list, schema.get(field, F()).key)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_field(result: Obj, key: str, value: Any, field: F) -> None:
    sub_schema = STRUCTS.get(field.type or "", {})
    old = result.get(key)
    if isinstance(value, dict):
        result[key] = _merge_map(old if isinstance(old, dict) else {}, value, sub_schema)
    elif isinstance(value, list):
        result[key] = _merge_list(old if isinstance(old, list) else [], value, field, sub_schema)
    else:
        result[key] = value


def _merge_list(old: list[Any], patch: list[Any], field: F, schema: dict[str, F]) -> list[Any]:
    if field.key is None and not field.merge:
        return strip(patch)  # type: ignore[no-any-return]  # atomic: replaced whole
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return strip(patch)  # type: ignore[no-any-return]
    if field.merge:
        merged = old + [v for v in patch if v not in old]
    else:
        merged = _merge_keyed(old, patch, field.key or "", schema)
    # Like apimachinery's mergeSlice: the patch's items take the patch's order, and items only the
    # server had keep their places around them (so a new container lands first, as documented).
    order = [e for e in patch if not (isinstance(e, dict) and "$patch" in e)]
    return _reorder(merged, order, old, field.key)


def _merge_keyed(old: list[Any], patch: list[Any], key: str, schema: dict[str, F]) -> list[Any]:
    result = list(old)
    for element in patch:
        if not isinstance(element, dict) or key not in element:
            raise Invalid(f"map: {element!r} does not contain declared merge key: {key}")
        wanted = element[key]
        index = next(
            (i for i, e in enumerate(result) if isinstance(e, dict) and e.get(key) == wanted),
            None,
        )
        if element.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        merged = _merge_map(result[index] if index is not None else {}, element, schema)
        if index is not None:
            result[index] = merged
        else:
            result.append(merged)
    return result


def _identity(item: Any, key: str | None) -> Any:
    return item.get(key) if key is not None and isinstance(item, dict) else item


def _reorder(merged: list[Any], order: list[Any], live: list[Any], key: str | None) -> list[Any]:
    """As apimachinery's normalizeElementOrder: patch items in `order`, others interleaved."""
    wanted = [_identity(o, key) for o in order]
    live_ids = [_identity(item, key) for item in live]

    def live_index(item: Any) -> int:
        ident = _identity(item, key)
        return live_ids.index(ident) if ident in live_ids else -1

    in_patch = sorted(
        (m for m in merged if _identity(m, key) in wanted),
        key=lambda m: wanted.index(_identity(m, key)),
    )
    server_only = sorted((m for m in merged if _identity(m, key) not in wanted), key=live_index)
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(in_patch):
        a, b = live_index(server_only[i]), live_index(in_patch[j])
        # mergeSortedSlice: a server-only item goes first only if both were live and it came first.
        if 0 <= a < b:
            out.append(server_only[i])
            i += 1
        else:
            out.append(in_patch[j])
            j += 1
    return out + server_only[i:] + in_patch[j:]
