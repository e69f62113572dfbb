"""The /status and /scale subresources.

``/status`` reads the whole object and writes only its status (the store keeps everything else), the
mirror image of the main resource, which keeps status. ``/scale`` speaks ``autoscaling/v1``
``Scale``: replicas from the type's spec and status paths (the CRD ``subresources.scale`` paths for
custom kinds), the label selector as a string (from ``spec.selector`` for the apps kinds, from
``labelSelectorPath`` for custom ones), and writes go to the spec replicas path under the Scale's
resourceVersion precondition.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.apiserver.handlers import Call, check_identity, editable, patched, write_update
from sandbox.apiserver.responses import read_body, read_object, respond
from sandbox.errors import BadRequest, Invalid, NotFound
from sandbox.labels import selector_string
from sandbox.store import clone

Obj = dict[str, Any]


def _path(path: str) -> list[str]:
    return [p for p in path.strip().lstrip(".").split(".") if p]


def read_path(obj: Any, path: str) -> Any:
    for part in _path(path):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def write_path(obj: Obj, path: str, value: Any) -> None:
    parts = _path(path)
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def scale_of(call: Call, obj: Obj) -> Obj:
    spec = call.rt.scale
    assert spec is not None
    meta = obj["metadata"]
    if call.rt.group == "apps":
        selector = selector_string((obj.get("spec") or {}).get("selector"))
    else:
        selector = str(read_path(obj, spec.label_selector or "") or "")
    status: Obj = {"replicas": _count(read_path(obj, spec.status_replicas))}
    if selector:
        status["selector"] = selector
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {"replicas": _count(read_path(obj, spec.spec_replicas))},
        "status": status,
    }


def _write_scale(call: Call, current: Obj, scale: Obj) -> web.Response:
    spec = call.rt.scale
    assert spec is not None
    for part in ("metadata", "spec"):
        if not isinstance(scale.get(part) or {}, dict):
            raise BadRequest(f"the Scale's {part} must be a JSON object")
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        name = current["metadata"]["name"]
        raise Invalid.field(
            "Scale", "autoscaling", "scale", name, "spec.replicas", "Invalid value: must be >= 0"
        )
    new = clone(current)
    write_path(new, spec.spec_replicas, replicas)
    wanted = (scale.get("metadata") or {}).get("resourceVersion")
    new["metadata"]["resourceVersion"] = wanted or current["metadata"]["resourceVersion"]
    return respond(scale_of(call, write_update(call, new)))


async def handle_scale(call: Call) -> web.Response:
    # The body is read before the object: no await may fall between reading and writing it, or a
    # concurrent write would turn this request into a spurious Conflict.
    method = call.request.method
    if method == "GET":
        return respond(scale_of(call, call.require()))
    if method == "PUT":
        body = await read_object(call.request)
        return _write_scale(call, call.require(), body)
    if method == "PATCH":
        patch = await read_body(call.request)
        current = call.require()
        return _write_scale(call, current, patched(call, scale_of(call, current), patch, "Scale"))
    raise BadRequest(f"{method} is not supported on scale")


async def handle_status(call: Call) -> web.Response:
    method = call.request.method
    if method == "GET":
        return call.answer(call.require())
    if method == "PUT":
        obj = check_identity(call, call.to_storage(await read_object(call.request)))
        call.require()
        return call.answer(write_update(call, obj, status=True))
    if method == "PATCH":
        patch = await read_body(call.request)
        result = call.to_storage(patched(call, editable(call, call.require()), patch, call.rt.kind))
        check_identity(call, result)
        return call.answer(write_update(call, result, status=True))
    raise BadRequest(f"{method} is not supported on status")


async def handle_subresource(call: Call) -> web.Response:
    sub = call.target.subresource
    if sub == "status" and call.rt.status:
        return await handle_status(call)
    if sub == "scale" and call.rt.scale is not None:
        return await handle_scale(call)
    raise NotFound("the server could not find the requested resource")
