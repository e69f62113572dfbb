"""The aiohttp application: routing, the audit/fault middleware, and the non-resource endpoints.

Every request goes through one middleware that records it in the audit log and turns any `ApiError`
into a ``Status`` response. Routing is by hand rather than by aiohttp routes because Kubernetes
paths are positional (``/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/<sub>``) and resolve
against a registry that changes at run time; `request.parse_target` does the splitting. Faults are
applied once the request is resolved, so rules can match on verb, resource and name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.apiserver import openapi, reviews
from sandbox.apiserver.audit import AUDIT_ENTRY, AuditLog, Faults, new_entry, parse_rule
from sandbox.apiserver.discovery import (
    AGGREGATED_CONTENT_TYPE,
    VERSION_INFO,
    Discovery,
    wants_aggregated,
)
from sandbox.apiserver.handlers import (
    Call,
    handle_create,
    handle_delete,
    handle_deletecollection,
    handle_get,
    handle_list,
    handle_patch,
    handle_update,
)
from sandbox.apiserver.request import Target, go_bool, k8s_verb, parse_path, parse_target
from sandbox.apiserver.responses import read_body, respond, respond_error
from sandbox.apiserver.subresources import handle_subresource
from sandbox.apiserver.watch import WatchSettings, handle_watch
from sandbox.errors import ApiError, MethodNotAllowed, NotFound
from sandbox.store import Store

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiServer:
    """Everything the handlers share: the store, discovery, watch settings, audit log and faults."""

    store: Store
    watch: WatchSettings = field(default_factory=WatchSettings)
    audit: AuditLog = field(default_factory=AuditLog)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.discovery = Discovery(self.store.registry)
        self._openapi: dict[str, Any] = {}
        self._openapi_revision = -1

    def openapi_cached(self, key: str, build: Callable[[], Any]) -> Any:
        if self._openapi_revision != self.store.registry.revision:
            self._openapi.clear()
            self._openapi_revision = self.store.registry.revision
        if key not in self._openapi:
            self._openapi[key] = build()
        return self._openapi[key]


_VERBS: dict[str, Callable[[Call], Awaitable[web.StreamResponse]]] = {
    "get": handle_get,
    "list": handle_list,
    "create": handle_create,
    "update": handle_update,
    "patch": handle_patch,
    "delete": handle_delete,
    "deletecollection": handle_deletecollection,
}
_KEY = web.AppKey("api_server", ApiServer)
_NOT_FOUND = "the server could not find the requested resource"


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = request.app[_KEY]
    entry = new_entry(request.method, request.path, request.headers.get("User-Agent", ""))
    request[AUDIT_ENTRY] = entry
    if not request.path.startswith("/sandbox/"):
        # Recorded on arrival (code 0 until answered), so an open watch shows in the log.
        server.audit.add(entry)
    try:
        response = await handler(request)
    except ApiError as error:
        response = respond_error(error)
    except web.HTTPException:
        raise
    except Exception as exc:
        # A bug must still answer a Status, as the apiserver's panic filter does.
        log.exception("sandbox apiserver: %s %s failed", request.method, request.path_qs)
        response = respond_error(ApiError(f"Internal error occurred: {exc!r}"))
    entry.code = response.status
    return response


async def _non_resource(  # noqa: PLR0911 - one branch per endpoint
    request: web.Request, server: ApiServer
) -> web.StreamResponse:
    path = request.path.rstrip("/")
    accept = request.headers.get("Accept", "")
    if path in ("/api", "/apis"):
        if wants_aggregated(accept):
            document = server.discovery.aggregated(core=path == "/api")
            return respond(document, content_type=AGGREGATED_CONTENT_TYPE)
        if path == "/api":
            return respond(server.discovery.api_versions(request.host))
        return respond(server.discovery.group_list())
    if path == "/version":
        return respond(VERSION_INFO)
    if path in ("/healthz", "/livez", "/readyz"):
        return web.Response(text="ok")
    if path == "/openapi/v3":
        return respond(server.openapi_cached("index", lambda: openapi.index(server.store.registry)))
    if path.startswith("/openapi/v3/"):
        parsed = parse_path(path[len("/openapi/v3") :])
        if parsed is not None and not parsed[2]:
            group, version, _ = parsed
            document = server.openapi_cached(
                path,
                lambda: openapi.group_version_document(server.store.registry, group, version),
            )
            if document is not None:
                return respond(document)
    if path.startswith("/apis/") and path.count("/") == 2:
        group_doc = server.discovery.group(path.split("/")[2])
        if group_doc is not None:
            return respond({"kind": "APIGroup", "apiVersion": "v1", **group_doc})
    raise NotFound(_NOT_FOUND)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    server = request.app[_KEY]
    if request.path.startswith("/sandbox/"):
        return await _sandbox(request, server)
    parsed = parse_path(request.path)
    if parsed is None:
        return await _non_resource(request, server)
    group, version, rest = parsed
    if not rest:
        document = server.discovery.resource_list(group, version)
        if document is None or request.method != "GET":
            raise NotFound(_NOT_FOUND)
        return respond(document)
    target = parse_target(group, version, rest)
    if target is None:
        raise NotFound(_NOT_FOUND)
    return await _resource(request, server, target)


async def _resource(request: web.Request, server: ApiServer, target: Target) -> web.StreamResponse:
    watch = go_bool(request.query, "watch")
    entry = request[AUDIT_ENTRY]
    entry.verb = k8s_verb(request.method, target, watch)
    entry.group, entry.version, entry.resource = target.group, target.version, target.plural
    entry.namespace, entry.name = target.namespace or "", target.name or ""
    entry.object_name = entry.name
    entry.subresource = target.subresource or ""
    rt = server.store.registry.served(target.group, target.version, target.plural)
    if rt is None or (target.namespace is not None and not rt.namespaced):
        raise NotFound(_NOT_FOUND)
    delay, error = server.faults.take(entry)
    if delay:
        await asyncio.sleep(delay)
    if error is not None:
        raise error
    call = Call(request, target, rt, server.store)
    if rt.group == reviews.GROUP:
        if entry.verb != "create":
            raise MethodNotAllowed(
                "the server does not allow this method on the requested resource"
            )
        return await reviews.handle_review(call)
    if target.subresource:
        return await handle_subresource(call)
    if entry.verb == "watch":
        return await handle_watch(call, server.watch)
    handler = _VERBS.get(entry.verb)
    if handler is None or (entry.verb in ("update", "patch") and target.name is None):
        raise MethodNotAllowed("the server does not allow this method on the requested resource")
    if entry.verb == "create" and target.name is not None:
        raise MethodNotAllowed("the server does not allow this method on the requested resource")
    return await handler(call)


async def _sandbox(request: web.Request, server: ApiServer) -> web.StreamResponse:
    path, method = request.path.rstrip("/"), request.method
    if path == "/sandbox/audit":
        if method == "GET":
            return respond({"items": server.audit.query(dict(request.query))})
        if method == "DELETE":
            server.audit.clear()
            return respond({"cleared": True})
    if path == "/sandbox/faults":
        if method == "GET":
            return respond({"items": [r.describe() for r in server.faults.rules]})
        if method == "POST":
            rule = parse_rule(await read_body(request))
            server.faults.add(rule)
            return respond(rule.describe(), status=201)
        if method == "DELETE":
            server.faults.clear()
            return respond({"cleared": True})
    if path.startswith("/sandbox/faults/") and method == "DELETE":
        rule_id = path.rsplit("/", 1)[1]
        if rule_id.isdigit() and server.faults.remove(int(rule_id)):
            return respond({"removed": int(rule_id)})
    raise NotFound(_NOT_FOUND)


def build_app(store: Store, *, watch: WatchSettings | None = None) -> web.Application:
    server = ApiServer(store, watch=watch or WatchSettings())
    app = web.Application(middlewares=[_middleware], client_max_size=16 * 1024 * 1024)
    app[_KEY] = server
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def api_server(app: web.Application) -> ApiServer:
    """The `ApiServer` behind an app (its audit log and fault rules, for in-process tests)."""
    return app[_KEY]
