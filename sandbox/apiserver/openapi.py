"""OpenAPI v3 documents: just enough for ``kubectl apply`` with its default ``--validate=strict``.

kubectl 1.32 reads ``/openapi/v3`` (an index of group-version documents) and then the document of
the group-version it writes to, looking for the resource's operations (tagged with
``x-kubernetes-group-version-kind``) and whether they accept the ``fieldValidation`` query
parameter. When they do, kubectl leaves validation to the server and sends
``fieldValidation=Strict``; the sandbox accepts the parameter and does not check fields (see the
README). The documents carry no component schemas for built-in kinds, so kubectl computes its
client-side strategic merge patches from its compiled-in Go types — exactly the patches it sends a
real cluster. Custom kinds get their CRD's ``openAPIV3Schema``. ``/openapi/v2`` is answered with
404, which kubectl tolerates.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox.resources import Registry, ResourceType

Obj = dict[str, Any]

_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_OK: Obj = {"200": {"description": "OK"}}


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _operation(rt: ResourceType, version: str, action: str) -> Obj:
    return {
        "operationId": f"{action}{rt.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": version, "kind": rt.kind},
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _PARAMS
        ],
        "responses": _OK,
    }


def _paths(rt: ResourceType, version: str) -> Obj:
    base = "/" + _gv_path(rt.group, version)
    scope = f"{base}/namespaces/{{namespace}}" if rt.namespaced else base
    collection, item = f"{scope}/{rt.plural}", f"{scope}/{rt.plural}/{{name}}"
    paths: Obj = {
        collection: {
            "get": _operation(rt, version, "list"),
            "post": _operation(rt, version, "post"),
        },
        item: {
            "get": _operation(rt, version, "get"),
            "put": _operation(rt, version, "put"),
            "patch": _operation(rt, version, "patch"),
            "delete": _operation(rt, version, "delete"),
        },
    }
    for sub in ("status", "scale"):
        if (sub == "status" and rt.status) or (sub == "scale" and rt.scale is not None):
            paths[f"{item}/{sub}"] = {
                "get": _operation(rt, version, "get"),
                "put": _operation(rt, version, "put"),
                "patch": _operation(rt, version, "patch"),
            }
    return paths


def _schema(rt: ResourceType, version: str) -> Obj:
    schema = dict(rt.schemas.get(version) or {"type": "object"})
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "version": version, "kind": rt.kind}
    ]
    return schema


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    types = registry.in_version(group, version)
    if not types:
        return None
    paths: Obj = {}
    schemas: Obj = {}
    for rt in types:
        paths.update(_paths(rt, version))
        if rt.custom:
            name = ".".join(reversed(rt.group.split("."))) + f".{version}.{rt.kind}"
            schemas[name] = _schema(rt, version)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _hash(document: Obj) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()


def index(registry: Registry) -> Obj:
    """``/openapi/v3``: each group-version document's URL, with the content hash kubectl expects."""
    paths: Obj = {}
    for group, versions in registry.groups().items():
        for version in versions:
            document = group_version_document(registry, group, version)
            if document is None:
                continue
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(document)}"}
    return {"paths": paths}
