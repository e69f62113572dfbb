"""The resource verbs: get, list, create, update, patch, delete and deletecollection.

Each handler reads the request, runs it against the `Store` (which owns the write semantics:
resource versions, conflicts, generation, status preservation, cascades) and answers the object in
the version the request named. What lives here is the HTTP-facing part of the apiserver's request
pipeline: namespace admission (no objects in a missing namespace), name/namespace consistency
between URL and body, status dropped on create for types with a /status subresource, paging with
``limit``/``continue``, dry runs, and the patch media types (strategic merge is refused for custom
resources with 415, as a real server does). Watch is in `sandbox.apiserver.watch`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox import strategies
from sandbox.apiserver import tables
from sandbox.apiserver.apply import manager_from_user_agent, server_side_apply, track_update
from sandbox.apiserver.audit import AUDIT_ENTRY
from sandbox.apiserver.conversion import from_storage, to_storage
from sandbox.apiserver.fields import field_predicate, single_name
from sandbox.apiserver.jsonpatch import json_patch, merge_patch
from sandbox.apiserver.patch import strategic_merge
from sandbox.apiserver.request import Target, go_bool, go_int
from sandbox.apiserver.responses import media_type, read_body, read_object, respond, success
from sandbox.errors import AlreadyExists, BadRequest, Conflict, NotFound, UnsupportedMediaType
from sandbox.resources import ResourceType
from sandbox.store import Store, clone, copy_obj

Obj = dict[str, Any]

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = ("application/apply-patch+yaml", "application/apply-patch+cbor")
_CUSTOM_PATCH_TYPES = f"{JSON_PATCH}, {MERGE}, {APPLY[0]}"
# Go zero values that serialise without omitempty, so a fresh object shows them.
_EMPTY_STATUS: dict[tuple[str, str], Obj] = {
    ("autoscaling", "horizontalpodautoscalers"): {"desiredReplicas": 0},
    ("", "services"): {"loadBalancer": {}},
}


@dataclass
class Call:
    """One resource request, resolved."""

    request: web.Request
    target: Target
    rt: ResourceType
    store: Store

    @property
    def query(self) -> Any:
        return self.request.query

    @property
    def namespace(self) -> str | None:
        return self.target.namespace if self.rt.namespaced else None

    def present(self, obj: Obj) -> Obj:
        """The stored object as the requested version shows it (a shallow copy)."""
        shown = from_storage(self.rt.group, self.rt.plural, self.target.version, obj)
        return {**shown, "apiVersion": self.rt.api_version(self.target.version)}

    def to_storage(self, obj: Obj) -> Obj:
        """A request body in the requested version, as storage keeps it."""
        return to_storage(self.rt.group, self.rt.plural, self.target.version, obj)

    def answer(self, obj: Obj, status: int = 200) -> web.Response:
        if tables.wants_table(self.request.headers.get("Accept", "")):
            return respond(tables.table(self.rt, [obj], self.request.query), status)
        return respond(self.present(obj), status)

    def require(self) -> Obj:
        found = self.store.peek(
            self.rt.group, self.rt.plural, self.namespace, self.target.name or ""
        )
        if found is None:
            raise NotFound.of(self.rt.group, self.rt.plural, self.target.name or "")
        return found

    def manager(self) -> dict[str, str]:
        """Who this request writes as, for managedFields (`track_update` keyword arguments)."""
        name = self.request.query.get("fieldManager") or manager_from_user_agent(
            self.request.headers.get("User-Agent", "")
        )
        version = self.rt.api_version(self.target.version)
        return {"manager": name, "kind": self.rt.kind, "api_version": version}

    @property
    def dry_run(self) -> bool:
        return "All" in self.request.query.getall("dryRun", [])


# --- reads


async def handle_get(call: Call) -> web.Response:
    return call.answer(call.require())


def _continue_token(rv: int, obj: Obj) -> str:
    meta = obj["metadata"]
    raw = json.dumps({"rv": rv, "start": [meta.get("namespace", ""), meta["name"]]})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _start_after(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["start"][0]), str(data["start"][1])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadRequest("continue key is not valid: invalid continue token") from exc


def select(call: Call) -> list[Obj]:
    """The stored objects a list (or deletecollection) request selects."""
    rt, query = call.rt, call.query
    fields = query.get("fieldSelector")
    name = single_name(fields)
    if name is not None:
        found = call.store.peek(rt.group, rt.plural, call.namespace, name)
        candidates = [found] if found is not None else []
        labels = query.get("labelSelector")
        if labels and candidates:
            candidates = call.store.scan(rt.group, rt.plural, call.namespace, label_selector=labels)
            candidates = [o for o in candidates if o["metadata"]["name"] == name]
    else:
        candidates = call.store.scan(
            rt.group, rt.plural, call.namespace, label_selector=query.get("labelSelector")
        )
    predicate = field_predicate(rt.group, rt.plural, fields)
    return [o for o in candidates if predicate is None or predicate(o)]


async def handle_list(call: Call) -> web.Response:
    rv = call.store.resource_version
    items = select(call)
    meta: Obj = {"resourceVersion": str(rv)}
    token = call.query.get("continue")
    if token:
        start = _start_after(token)
        items = [
            o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
        ]
    limit = go_int(call.query, "limit")
    if limit is not None and limit > 0 and len(items) > limit:
        meta["continue"] = _continue_token(rv, items[limit - 1])
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    if tables.wants_table(call.request.headers.get("Accept", "")):
        table = tables.table(call.rt, items, call.query)
        table["metadata"] = meta
        return respond(table)
    return respond(
        {
            "kind": call.rt.list_kind,
            "apiVersion": call.rt.api_version(call.target.version),
            "metadata": meta,
            "items": [call.present(o) for o in items],
        }
    )


# --- writes


def check_identity(call: Call, obj: Obj) -> Obj:
    """Fill namespace and name from the URL; refuse a body that names another object."""
    found = obj.get("metadata")
    if found is not None and not isinstance(found, dict):
        raise BadRequest("the object's metadata must be a JSON object")
    # A patched object may share its metadata map with the stored one: write to a copy.
    meta = obj["metadata"] = dict(found or {})
    if call.rt.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and call.target.namespace and body_ns != call.target.namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = call.target.namespace or body_ns
    if call.target.name is not None:
        if meta.get("name") and meta["name"] != call.target.name:
            raise BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({call.target.name})"
            )
        meta["name"] = call.target.name
    return obj


def _admit_namespace(call: Call) -> None:
    """NamespaceLifecycle admission: nothing is created in a namespace that does not exist."""
    ns = call.target.namespace
    if call.rt.namespaced and ns and call.store.peek("", "namespaces", None, ns) is None:
        raise NotFound.of("", "namespaces", ns)


def _dry_create(call: Call, obj: Obj) -> Obj:
    new = {"apiVersion": call.rt.api_version(), "kind": call.rt.kind, **copy_obj(obj)}
    strategies.prepare_create(call.rt, new)
    meta = new["metadata"]
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = f"{meta['generateName']}dryrun"
    strategies.validate(call.rt, new)
    if call.store.peek(call.rt.group, call.rt.plural, call.namespace, meta["name"]) is not None:
        raise AlreadyExists.of(call.rt.group, call.rt.plural, meta["name"])
    return new


def create_object(call: Call, obj: Obj) -> web.Response:
    obj = call.to_storage(obj)
    if call.target.namespace is None and call.rt.namespaced:
        raise BadRequest("a namespaced object must be created in a namespace")
    check_identity(call, obj)
    _admit_namespace(call)
    kind = obj.get("kind")
    if kind and kind != call.rt.kind:
        raise BadRequest(f"the kind of the object ({kind}) does not match the URL ({call.rt.kind})")
    if call.rt.status and call.rt.key not in (("", "namespaces"), ("", "pods")):
        # PrepareForCreate: status is the controllers' to write (built-ins show it empty).
        obj.pop("status", None)
        if not call.rt.custom:
            obj["status"] = clone(_EMPTY_STATUS.get(call.rt.key, {}))
    if call.rt.key == ("", "pods"):
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    track_update(None, obj, **call.manager())
    if call.dry_run:
        return call.answer(_dry_create(call, obj), 201)
    created = call.store.create(call.rt.group, call.rt.plural, obj, copy=False)
    entry = call.request.get(AUDIT_ENTRY)
    if entry is not None:
        entry.object_name = created["metadata"]["name"]
    return call.answer(created, 201)


async def handle_create(call: Call) -> web.Response:
    return create_object(call, await read_object(call.request))


def write_update(call: Call, obj: Obj, *, status: bool = False) -> Obj:
    """Store a full object through the main resource or its /status (dry runs store nothing)."""
    if not status:
        sub = call.target.subresource or ""
        track_update(call.require(), obj, subresource=sub, **call.manager())
    if call.dry_run:
        current = call.require()
        rv = obj.get("metadata", {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict.modified(call.rt.group, call.rt.plural, current["metadata"]["name"])
        return obj
    write = call.store.update_status if status else call.store.update
    return write(call.rt.group, call.rt.plural, obj, copy=False)


async def handle_update(call: Call) -> web.Response:
    obj = check_identity(call, call.to_storage(await read_object(call.request)))
    call.require()
    return call.answer(write_update(call, obj))


def editable(call: Call, stored: Obj) -> Obj:
    """The stored object as a patch starts from it.

    Strategic merge and merge patch build new maps and never modify their input, so they may share
    the stored object's subtrees (the store copies whatever it keeps); server-side apply prunes in
    place and JSON patch copies anyway, so those get a deep copy.
    """
    shown = call.present(stored)
    return shown if media_type(call.request) in (STRATEGIC, MERGE) else clone(shown)


def patched(call: Call, current: Obj, body: Any, kind: str) -> Obj:
    """``current`` with the request's patch applied, by the request's patch media type."""
    content = media_type(call.request)
    if content != JSON_PATCH and not isinstance(body, dict):
        raise BadRequest(f"a {content} body must be a JSON object")
    if content == STRATEGIC:
        if call.rt.custom and kind == call.rt.kind:
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {_CUSTOM_PATCH_TYPES}"
            )
        return strategic_merge(current, body, kind)
    if content == MERGE:
        merged: Obj = merge_patch(current, body)
        return merged
    if content == JSON_PATCH:
        result = json_patch(current, body)
        if not isinstance(result, dict):
            raise BadRequest("json patch must produce an object")
        return result
    if content in APPLY:
        if not isinstance(body.get("metadata", {}), dict):
            raise BadRequest("the applied configuration's metadata must be a JSON object")
        manager = call.query.get("fieldManager")
        if not manager:
            raise BadRequest("PATCH, application/apply-patch+yaml requests must set fieldManager")
        version = call.rt.api_version(call.target.version)
        force = go_bool(call.query, "force")
        return server_side_apply(
            current or None, body, manager=manager, kind=kind, api_version=version, force=force
        )
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE}, {STRATEGIC}, {APPLY[0]}"
    )


async def handle_patch(call: Call) -> web.Response:
    body = await read_body(call.request)
    name = call.target.name or ""
    found = call.store.peek(call.rt.group, call.rt.plural, call.namespace, name)
    if found is None:
        if media_type(call.request) not in APPLY:
            raise NotFound.of(call.rt.group, call.rt.plural, name)
        if not isinstance(body, dict):
            raise BadRequest("an applied configuration must be an object")
        return create_object(call, patched(call, {}, body, call.rt.kind))
    result = call.to_storage(patched(call, editable(call, found), body, call.rt.kind))
    check_identity(call, result)
    return call.answer(write_update(call, result))


# --- deletes


async def _delete_options(request: web.Request) -> Obj:
    body = await read_body(request) if request.can_read_body else None
    options = dict(body) if isinstance(body, dict) else {}
    if "propagationPolicy" in request.query:
        options["propagationPolicy"] = request.query["propagationPolicy"]
    if go_bool(request.query, "orphanDependents") or options.get("orphanDependents"):
        options["propagationPolicy"] = "Orphan"
    return options


def _delete_one(call: Call, obj: Obj, options: Obj) -> Obj:
    meta = obj["metadata"]
    if call.dry_run:
        return obj
    gone = call.store.delete(
        call.rt.group,
        call.rt.plural,
        meta.get("namespace"),
        meta["name"],
        preconditions=options.get("preconditions"),
        propagation=str(options.get("propagationPolicy") or "Background"),
        copy=False,
    )
    if gone is None:
        raise NotFound.of(call.rt.group, call.rt.plural, meta["name"])
    return gone


async def handle_delete(call: Call) -> web.Response:
    options = await _delete_options(call.request)
    gone = _delete_one(call, call.require(), options)
    if call.rt.key == ("", "pods"):
        return respond(call.present(gone))  # the pod registry returns the deleted object
    meta = gone["metadata"]
    return respond(success(call.rt.group, call.rt.plural, meta["name"], meta.get("uid", "")))


async def handle_deletecollection(call: Call) -> web.Response:
    options = await _delete_options(call.request)
    gone = []
    for obj in select(call):
        try:
            gone.append(call.present(_delete_one(call, obj, options)))
        except NotFound:
            continue  # already taken by an earlier delete's cascade
    return respond(
        {
            "kind": call.rt.list_kind,
            "apiVersion": call.rt.api_version(call.target.version),
            "metadata": {"resourceVersion": str(call.store.resource_version)},
            "items": gone,
        }
    )
